/**
 * Issue 10, point 1: rows whose IN mean lies far from their mixed mean, in stds of the mix. WASM
 * sums dy (x - c) about c = f32(mu_in) in float32 and adds (c - mu) sum dy in float64; where the
 * elements that carry dy lie near mu and far from c (an outlier of dy 0 pulls the IN mean away,
 * and the mix takes its mean from running buffers or other rows), that sum cancels to
 * sum dy (x - mu) and leaves float32 rounding of |x - c|: an evaluation on a running_mean of 0
 * over a row [1e7, 0.5, -0.3, 0.2] with dy [0, 1, 1, 1] gave dgamma 0.25 for 0.40 (and with 1e4
 * for 1e7, 2.4e-4 relative off; with the variance IN's alone and dy [0, 1, -1], whose sum is 0,
 * 6% off: plausible-input helper-72). WebGPU likewise about the row's shift (x - shift 0.3125 for
 * 0.3 beside 1e6: dgamma 4% off, and 8.9% in an evaluation on a running_mean of -2999.84 beside
 * an outlier of -1.1e6). Both now take the sums about the mixed mean itself
 * (wasm/src/nd_grad.rs `centre`, shaders/backward_common.wgsl `long_centre`).
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { seededRandom } from "../examples/_data.ts";

/** Rows of m floats ~N(0, 1) but the first, `outlier`, whose dy is 0; an evaluation. */
function outlierOfDyZero(outlier: number, m: number, meanWeight: Float32Array): LayerCall {
  const r = seededRandom(17);
  const shape = [2, 2, 1, m];
  const len = 4 * m;
  return {
    layer: "2d",
    shape,
    options: { eps: 1e-5 },
    state: {
      weight: Float32Array.of(1, -2),
      bias: Float32Array.of(0, 0.5),
      mean_weight: meanWeight,
      var_weight: Float32Array.of(-1e30, -1e30, 0),
      running_mean: Float32Array.of(0, 0.1),
      running_var: Float32Array.of(1, 2),
    },
    partial: true,
    training: false,
    x: Float32Array.from({ length: len }, (_, i) => i % m === 0 ? outlier : r() * 2 - 1),
    dy: Float32Array.from({ length: len }, (_, i) => i % m === 0 ? 0 : r() + 0.5),
    scales: true,
  };
}

const cases: [string, number, number, Float32Array][] = [
  ["an outlier of 1e7 in rows of 4 (BN's mean alone)", 1e7, 4, Float32Array.of(-1e30, -1e30, 0)],
  ["an outlier of 1e4 in rows of 4 (BN's mean alone)", 1e4, 4, Float32Array.of(-1e30, -1e30, 0)],
  [
    "an outlier of 1e6 in rows of 300 (IN's weight e^-20)",
    1e6,
    300,
    Float32Array.of(-20, -1e30, 0),
  ],
];
/** A row [1, 1, 1, x.length] in evaluation, BN's mean alone, IN's variance alone. */
function outlierRow(x: number[], dy: number[], running: [number, number], eps: number): LayerCall {
  return {
    layer: "2d",
    shape: [1, 1, 1, x.length],
    options: { eps },
    state: {
      weight: Float32Array.of(1),
      bias: Float32Array.of(0),
      mean_weight: Float32Array.of(-1e30, -1e30, 0),
      var_weight: Float32Array.of(0, -1e30, -1e30),
      running_mean: Float32Array.of(running[0]),
      running_var: Float32Array.of(running[1]),
    },
    partial: true,
    training: false,
    x: Float32Array.from(x),
    dy: Float32Array.from(dy),
    scales: true,
  };
}

const rows: [string, LayerCall][] = [
  ["[1e6, 0.3, 0.7] under dy [0, 1, -1]", outlierRow([1e6, 0.3, 0.7], [0, 1, -1], [0, 1], 1e-5)],
  ["[1e6, 0.3] under dy [0, 1]", outlierRow([1e6, 0.3], [0, 1], [0, 1], 1e-3)],
  [
    "[-1103612.375, -3000.1638] on a running_mean of -2999.84",
    outlierRow([-1103612.375, -3000.1638], [0, 0.4357], [-2999.84, 0.766], 1e-5),
  ],
];
for (const [what, call] of rows) {
  rangeTests(
    `SwitchNorm2d: an evaluation of a row ${what}, IN's variance alone, gives the reference's gradients`,
    async (backend) => {
      const { want, got } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}

for (const [what, outlier, m, meanWeight] of cases) {
  rangeTests(
    `SwitchNorm2d: an evaluation with ${what} whose dy is 0 gives the reference's dgamma`,
    async (backend) => {
      const call = outlierOfDyZero(outlier, m, meanWeight);
      const { want, got } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}
