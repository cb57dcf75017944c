/**
 * The demo's generated dataset: small grey-level textures of four kinds, each sample with its own
 * random brightness, contrast and noise, so that per-sample (instance and layer) statistics carry
 * nuisance that a normalizer can remove. Deterministic for a given seed.
 *
 * @module
 */
import { gaussian } from "./_tiny_layers.ts";

/** The class names, in label order. */
export const CLASSES = ["horizontal stripes", "vertical stripes", "checkerboard", "blobs"] as const;

/** Images [count, 1, size, size] and their labels. */
export interface Dataset {
  readonly images: Float32Array;
  readonly labels: Uint8Array;
  readonly count: number;
  readonly size: number;
  /** The class names, in label order. */
  readonly classes: readonly string[];
}

/** mulberry32: a small seeded generator of uniform numbers in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The texture of one class, zero-mean-ish with amplitude about 1, written into `out`. */
function texture(label: number, size: number, random: () => number, out: Float32Array): void {
  const period = 3 + 2.5 * random();
  const k = (2 * Math.PI) / period;
  const phase1 = 2 * Math.PI * random(), phase2 = 2 * Math.PI * random();
  if (label === 3) {
    // blobs: a few Gaussian spots, some bright and some dark
    out.fill(0);
    const spots = 2 + Math.floor(3 * random());
    for (let b = 0; b < spots; b++) {
      const cy = size * random(), cx = size * random();
      const sigma = 1.2 + 1.3 * random(), sign = b % 2 === 0 ? 1 : -1;
      for (let r = 0; r < size; r++) {
        for (let c = 0; c < size; c++) {
          const d2 = (r - cy) ** 2 + (c - cx) ** 2;
          out[r * size + c] += 1.5 * sign * Math.exp(-d2 / (2 * sigma * sigma));
        }
      }
    }
    return;
  }
  for (let r = 0; r < size; r++) {
    for (let c = 0; c < size; c++) {
      out[r * size + c] = label === 0
        ? Math.sin(k * r + phase1)
        : label === 1
        ? Math.sin(k * c + phase1)
        : 1.4 * Math.sin(k * r + phase1) * Math.sin(k * c + phase2);
    }
  }
}

/**
 * `count` samples of `size` x `size`, balanced classes in a random order:
 * x = brightness + contrast * (texture + noise * N(0, 1)) per pixel, with brightness ~ U(-2, 2)
 * and contrast log-uniform in [0.4, 2.5] per sample.
 */
export function makeDataset(count: number, size: number, seed: number, noise = 2): Dataset {
  const random = seededRandom(seed);
  const m = size * size;
  const images = new Float32Array(count * m);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) labels[i] = i % CLASSES.length;
  shuffle(labels, random);
  const pattern = new Float32Array(m);
  for (let i = 0; i < count; i++) {
    texture(labels[i], size, random, pattern);
    const brightness = 4 * random() - 2;
    const contrast = Math.exp(Math.log(0.4) + (Math.log(2.5) - Math.log(0.4)) * random());
    for (let j = 0; j < m; j++) {
      images[i * m + j] = brightness + contrast * (pattern[j] + noise * gaussian(random));
    }
  }
  return { images, labels, count, size, classes: CLASSES };
}

/** Fisher-Yates, in place. */
export function shuffle<T extends { length: number; [i: number]: number }>(
  a: T,
  random: () => number,
): T {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
