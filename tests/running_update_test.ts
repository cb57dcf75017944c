/**
 * Issue 10, point 1: WebGPU's moving-average update of the running buffers rounded in float32
 * steps, m r + (1 - m) mu: up to 1.5 ulps off the float64 reference's once-rounded value
 * (-3000.000732421875 for -3000.0009765625), within the buffers' tolerance, but an evaluation on
 * them over a `running_var` of 1e-6 amplifies an ulp of 3000 (y 0.031 for 0.023; plausible-input
 * helper-72: 8 of its fuzzer's seeds 1 to 1500 on WebGPU). The update now takes its factors as
 * float32 pairs and rounds once (shaders/pair.wgsl `moving_average`), as WASM does in float64.
 */
import assert from "node:assert/strict";
import { type LayerCall, rangeTests, runCall } from "./_range_compare.ts";
import { seededRandom } from "../examples/_data.ts";

/** A training step on rows of mean `mean` and spread `spread`, BN's statistics alone. */
function step(mean: number, spread: number, seed: number, shape: number[]): LayerCall {
  const r = seededRandom(seed);
  const c = shape[1], len = shape.reduce((a, b) => a * b, 1);
  // The mix's statistics BN's alone: logits 0 on BN (the last), -1e30 on the rest.
  const k = shape.length === 2 ? 2 : 3;
  const bnOnly = () => Float32Array.from({ length: k }, (_, i) => i === k - 1 ? 0 : -1e30);
  return {
    layer: shape.length === 2 ? "1d" : "2d",
    shape,
    options: { eps: 1e-3, momentum: 0.1 },
    state: {
      mean_weight: bnOnly(),
      var_weight: bnOnly(),
      running_mean: Float32Array.from({ length: c }, () => mean + spread * (r() - 0.5)),
      running_var: Float32Array.from({ length: c }, () => spread * spread * (0.5 + r())),
    },
    partial: true,
    training: true,
    running: true,
    x: Float32Array.from({ length: len }, () => mean + spread * (r() * 2 - 1)),
    dy: new Float32Array(len),
  };
}

const cases: [string, LayerCall][] = [
  ["a running_mean of -3000 and a batch of -3000.0009765625", {
    ...step(0, 1, 1, [1, 1, 1, 2]),
    state: {
      mean_weight: Float32Array.of(-1e30, -1e30, 0),
      var_weight: Float32Array.of(-1e30, -1e30, 0),
      running_mean: Float32Array.of(-3000),
      running_var: Float32Array.of(1e-6),
    },
    x: Float32Array.of(-3000.0009765625, -3000.0009765625),
    dy: new Float32Array(2),
  }],
  ["SwitchNorm2d batches of mean 1e4 and spread 1e-2", step(1e4, 1e-2, 2, [4, 8, 1, 16])],
  ["SwitchNorm2d batches of mean -3000 and spread 1", step(-3000, 1, 3, [3, 16, 1, 7])],
  ["SwitchNorm1d batches of mean 100 and spread 1e-3", step(100, 1e-3, 4, [16, 32])],
];
for (const [what, call] of cases) {
  rangeTests(
    `the running buffers after ${what} are the reference's, rounded once`,
    async (backend) => {
      const want = await runCall(call, "reference");
      const got = await runCall(call, backend);
      assert.deepEqual([...got.runningMean!], [...want.runningMean!], "running_mean");
      // running_var from the group's float32 variance (a few ulps: Chan's merge of the tiles
      // in "1d"), the update rounded once beyond it: within 2^-20 relative.
      got.runningVar!.forEach((v, i) => {
        const w = want.runningVar![i];
        assert.ok(Math.abs(v - w) <= 2 ** -20 * Math.abs(w), `running_var[${i}]: ${v} for ${w}`);
      });
    },
  );
}
