/**
 * Issue 10, point 1: rows whose IN mean lies far from their mixed mean, in stds of the mix. WASM
 * sums dy (x - c) about c = f32(mu_in) in float32 and adds (c - mu) sum dy in float64; where the
 * elements that carry dy lie near mu and far from c (an outlier of dy 0 pulls the IN mean away,
 * and the mix takes its mean from running buffers or other rows), that sum cancels to
 * sum dy (x - mu) and leaves float32 rounding of |x - c|: an evaluation on a running_mean of 0
 * over a row [1e7, 0.5, -0.3, 0.2] with dy [0, 1, 1, 1] gave dgamma 0.25 for 0.40 (and with 1e4
 * for 1e7, 2.4e-4 relative off). Such rows are now summed about mu in float64
 * (wasm/src/nd_grad.rs: `far_centre`, beyond 2^10 stds).
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
