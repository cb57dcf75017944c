/**
 * Issue 10: a training step of SwitchNorm1d whose batch BN mean lies far below its column's std
 * (2^-28 to 2^-40 of it: pairs +-v about 0 plus a pair of small elements) in a column of wide data
 * (|x| beyond 2^40 or below 2^-21, which WebGPU's sn1d_wide_stats summarizes again in scaled
 * units). Those tile lines summed x' - K in plain float32, ~2^-25 of the std off, so the BN mean
 * (and the running_mean taken from it) was off by that much: a sample's element at 0, whose y is
 * gamma (0 - mu) / std, was 1.03e12 for 5.3e11 (bn_mean_below_std_sweep seed 686), and
 * `mean_weight`'s gradient, which differences the LN and BN means, 124x its tolerance (seed 163).
 * WASM and WebGPU against the float64 reference, whose sums here are exact (the pairs cancel to 0
 * in its order before the small pair is added).
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { seededRandom } from "../examples/_data.ts";

interface Case {
  /** The column's data scale (a power of 2) and its mean as a power of 2 below it. */
  readonly scale: number;
  readonly below: number;
  readonly n: number;
  readonly mixing: number[];
}

const CASES: Case[] = [];
for (const scale of [2 ** 100, 2 ** 66, 2 ** -80]) {
  for (const below of [28, 36]) {
    for (const n of [16, 33]) CASES.push({ scale, below, n, mixing: [0, 0] });
  }
}
CASES.push({ scale: 2 ** 66, below: 30, n: 16, mixing: [1.3, 8] });

/** SwitchNorm1d [n, 2]: column 0 the pairs and the mean's pair (and a 0 where n is odd). */
function call(kase: Case): LayerCall {
  const r = seededRandom(kase.n * 7 + kase.below);
  const { n, scale } = kase;
  const col = new Float64Array(n);
  for (let i = 0; i + 1 < n; i += 2) {
    col[i] = Math.round((r() * 2 - 1) * 2 ** 20) * scale * 2 ** -20;
    col[i + 1] = -col[i];
  }
  // The last pair: 2t = n * mean, mean = 1.5 * scale * 2^-below.
  const t = 1.5 * scale * 2 ** -kase.below * n / 2;
  const last = n - 2 - (n % 2);
  col[last] = col[last + 1] = Math.fround(t);
  const x = new Float32Array(n * 2), dy = new Float32Array(n * 2);
  for (let i = 0; i < n; i++) {
    x[i * 2] = col[i];
    x[i * 2 + 1] = (r() * 2 - 1) * 1e-30;
    dy[i * 2] = r() * 2 - 1;
    dy[i * 2 + 1] = r() * 2 - 1;
  }
  return {
    layer: "1d",
    shape: [n, 2],
    options: { eps: 1e-5, momentum: 0 },
    state: {
      weight: Float32Array.of(-3e20, 1),
      mean_weight: Float32Array.from(kase.mixing),
      var_weight: Float32Array.of(0, 0),
    },
    partial: true,
    training: true,
    x,
    dy,
    scales: true,
    running: true,
    dispose: true,
  };
}

rangeTests(
  "SwitchNorm1d training: a BN mean 2^-28 to 2^-36 of a wide column's std gives y, the gradients and running_mean as the reference",
  async (backend) => {
    for (const kase of CASES) {
      const c = call(kase);
      const { want, got } = await runBoth(c, backend);
      const what = `scale 2^${Math.log2(kase.scale)}, mean 2^-${kase.below} of it, N ${kase.n}, ` +
        `logits ${kase.mixing}`;
      const mean = 1.5 * kase.scale * 2 ** -kase.below;
      // momentum 0: running_mean is the batch mean, which the reference has exactly here.
      assert.ok(Math.abs(want.runningMean![0] / mean - 1) < 1e-6, `${what}: reference's mean`);
      assertRangeChecks(c, got, want, what);
      // The promise holds running_mean to RUNNING of its terms (~the std), which any mean this
      // far below the std meets; the batch mean itself is what y and the gradients take.
      const rel = Math.abs(got.runningMean![0] / want.runningMean![0] - 1);
      assert.ok(
        rel < 1e-3,
        `${what}: running_mean ${got.runningMean![0]} for ${want.runningMean![0]}`,
      );
    }
  },
);
