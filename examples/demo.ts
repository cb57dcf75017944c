/**
 * The demo: SwitchNorm2d on a built-in batch of synthetic feature maps. It runs a few training
 * steps, then evaluation, and prints the statistics SN mixes, the backend that ran and the time.
 *
 * Run: deno task demo
 */
import { SwitchNorm2d } from "../mod.ts";

const [N, C, H, W] = [8, 16, 32, 32];

/**
 * Feature maps with structure the three normalizers see differently: every channel has its own
 * offset and scale (what IN and BN remove), every sample its own brightness (what LN removes),
 * and a pattern over H x W.
 */
function syntheticBatch(seed: number): Float32Array {
  let s = seed;
  const noise = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32) - 0.5;
  const x = new Float32Array(N * C * H * W);
  for (let n = 0; n < N; n++) {
    const brightness = 2 * noise();
    for (let c = 0; c < C; c++) {
      const offset = c - C / 2, scale = 0.5 + c / C;
      for (let i = 0; i < H * W; i++) {
        const pattern = Math.sin((i % W) * (c + 1) / 7) * Math.cos(Math.floor(i / W) / 5);
        x[((n * C + c) * H * W) + i] = offset + brightness + scale * pattern + 0.1 * noise();
      }
    }
  }
  return x;
}

function meanStd(a: Float32Array): [number, number] {
  let sum = 0;
  for (const v of a) sum += v;
  const mean = sum / a.length;
  let m2 = 0;
  for (const v of a) m2 += (v - mean) ** 2;
  return [mean, Math.sqrt(m2 / a.length)];
}

const fmt = (v: ArrayLike<number>, digits = 3) =>
  Array.from(v, (x) => x.toFixed(digits).padStart(digits + 4)).join(" ");

const sn = new SwitchNorm2d(C);
const shape = [N, C, H, W];
console.log(`SwitchNorm2d(${C}) on a built-in batch [${shape.join(", ")}]`);

for (let step = 0; step < 5; step++) await sn.forward(syntheticBatch(step + 1), shape);
console.log(`backend: ${sn.backendInfo?.backend} (${sn.backendInfo?.reason})`);

const x = syntheticBatch(99);
const times: number[] = [];
let y: Float32Array = new Float32Array(0);
for (let i = 0; i < 20; i++) {
  const t0 = performance.now();
  y = await sn.forward(x, shape);
  times.push(performance.now() - t0);
}
times.sort((a, b) => a - b);
const mb = (x.byteLength / 2 ** 20).toFixed(1);
console.log(`training forward: median ${times[10].toFixed(2)} ms for ${mb} MiB in`);

const [xm, xs] = meanStd(x), [ym, ys] = meanStd(y);
console.log(`input  mean ${xm.toFixed(3)}, std ${xs.toFixed(3)}`);
console.log(`output mean ${ym.toFixed(3)}, std ${ys.toFixed(3)}`);
console.log(`importance of mean (in, ln, bn): ${fmt(sn.meanImportance)}`);
console.log(`importance of var  (in, ln, bn): ${fmt(sn.varImportance)}`);
console.log(`running_mean (first 8 channels): ${fmt(sn.running_mean.subarray(0, 8))}`);
console.log(`running_var  (first 8 channels): ${fmt(sn.running_var.subarray(0, 8))}`);

sn.eval();
const t0 = performance.now();
const yEval = await sn.forward(x, shape);
const [em, es] = meanStd(yEval);
console.log(
  `evaluation forward: ${(performance.now() - t0).toFixed(2)} ms, output mean ${
    em.toFixed(3)
  }, std ${es.toFixed(3)}`,
);
