/**
 * Issue 10: means that lie below float32's normal range in the unit WebGPU holds them in, which
 * the importance-logit gradients difference (gm (mu_k - mu)). A row of +-v pairs of ~2^66 whose
 * small pair leaves a mean 2^-179 of its std (2^-113) held that mean as 0 in its row's unit, and
 * so did its LN and BN groups: `mean_weight`'s gradient 0 where the reference has 1.8e-34
 * (bn_mean_below_std_sweep seed 666). A row of 0 but one x of 6.3e-39, whose means are normal in
 * its own unit, took mu_IN = 1.26e-42 and mu_LN = 6.3e-43 in its mix's unit 1, ~900 and ~450
 * ulps of 2^-149: the gradient 1.045e-23 for 1.066e-23 (partial_zero_sweep seed 3402). Both
 * backends against the float64 reference (WASM passed both before; WebGPU failed both).
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { assertRunning, make as belowStdMake } from "./fuzz/bn_mean_below_std_sweep.ts";
import { make as partialZeroMake } from "./fuzz/partial_zero_sweep.ts";
import { seededRandom } from "../examples/_data.ts";

rangeTests(
  "a row whose mean is 2^-179 of its std gives the logit gradients as the reference (bn_mean_below_std_sweep seed 666)",
  async (backend) => {
    const call = belowStdMake(666);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
    assertRunning(call, got, want);
  },
);

rangeTests(
  "means below 2^-126 of their mix's unit give the logit gradients as the reference (partial_zero_sweep seed 3402)",
  async (backend) => {
    const call = partialZeroMake(3402);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);

/**
 * Seed 666's kind by design: [2, 2, 1, m] trainings whose channel 0 holds rows of +-v pairs of
 * ~s (v on a grid of s 2^-20), sample 1's row with a pair of 1.5 s 2^-below m / 2 at its end
 * (a row mean 1.5 s 2^-below), beside channel 1's rows of ~1e-38, which are mixed on those LN
 * means; seed 666's parameters. Rows of 300 (one segment) and of 5000 (two: the merged row's
 * fine word, from its segments').
 */
function pairsBesideTiny(m: number, s: number, below: number): LayerCall {
  const base = belowStdMake(666);
  const r = seededRandom(m + below);
  const n = 2, c = 2;
  const x = new Float32Array(n * c * m), dy = new Float32Array(n * c * m);
  for (let i = 0; i < n; i++) {
    const row0 = i * c * m;
    for (let k = 0; k + 1 < m - 2; k += 2) {
      const v = Math.round((r() * 2 - 1) * 2 ** 20) * s * 2 ** -20;
      x[row0 + k] = v;
      x[row0 + k + 1] = -v;
    }
    if (i === 1) x[row0 + m - 2] = x[row0 + m - 1] = 1.5 * s * 2 ** -below * m / 2;
    for (let k = 0; k < m; k++) x[row0 + m + k] = (r() * 2 - 1) * 1e-38;
  }
  for (let k = 0; k < dy.length; k++) dy[k] = r() * 2 - 0.5;
  return { ...base, shape: [n, c, 1, m], x, dy };
}

for (const m of [300, 5000]) {
  for (const [s, below] of [[2 ** 66, 179], [2 ** 100, 150], [2 ** 120, 179]]) {
    rangeTests(
      `rows of +-v pairs of 2^${
        Math.log2(s)
      } whose mean is 2^-${below} of them, beside rows of ~1e-38 (${m} floats), give the logit gradients as the reference`,
      async (backend) => {
        const call = pairsBesideTiny(m, s, below);
        const { got, want } = await runBoth(call, backend);
        assertRangeChecks(call, got, want);
      },
    );
  }
}
