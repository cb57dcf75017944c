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
import {
  affineSizes,
  assertOutputsClose,
  assertRangeChecks,
  type LayerCall,
  rangeTest,
  rangeTests,
  runBoth,
} from "./_range_compare.ts";
import { Y_SCALED } from "./_tolerances.ts";
import { assertRunning, make as sweepMake } from "./fuzz/bn_mean_below_std_sweep.ts";
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

/**
 * The rows' neighbour: SwitchNorm1d [4, C] whose every sample is such pairs (its LN mean 2^-28 to
 * 2^-36 of its std) under an LN-heavy mixing, training and an evaluation on a `running_mean` of 0
 * (its backward differences the LN means with it). Wide rows are sn1d_wide_stats's lines too:
 * the evaluations at 2^-80 had `mean_weight`'s gradient off (4 of these 24 calls failed).
 */
function lnCall(scale: number, below: number, c: number, training: boolean): LayerCall {
  const r = seededRandom(c * 7 + below);
  const n = 4;
  const x = new Float32Array(n * c), dy = new Float32Array(n * c);
  for (let i = 0; i < n; i++) {
    const row = new Float64Array(c);
    for (let j = 0; j + 1 < c; j += 2) {
      row[j] = Math.round((r() * 2 - 1) * 2 ** 20) * scale * 2 ** -20;
      row[j + 1] = -row[j];
    }
    const last = c - 2 - (c % 2);
    row[last] = row[last + 1] = Math.fround(1.5 * scale * 2 ** -below * c / 2);
    for (let j = 0; j < c; j++) {
      x[i * c + j] = row[j];
      dy[i * c + j] = r() * 2 - 1;
    }
  }
  return {
    layer: "1d",
    shape: [n, c],
    options: { eps: 1e-5, momentum: 0 },
    state: {
      weight: new Float32Array(c).fill(-3e20),
      mean_weight: Float32Array.of(8, 0),
      var_weight: Float32Array.of(0, 0),
      running_mean: new Float32Array(c),
      running_var: new Float32Array(c).fill(scale * scale),
    },
    partial: true,
    training,
    x,
    dy,
    scales: true,
    dispose: true,
  };
}

rangeTests(
  "SwitchNorm1d: an LN mean 2^-28 to 2^-36 of a wide sample's std gives y and the gradients as the reference",
  async (backend) => {
    for (const scale of [2 ** 100, 2 ** 66, 2 ** -80]) {
      for (const below of [28, 36]) {
        for (const c of [16, 33]) {
          for (const training of [true, false]) {
            const call = lnCall(scale, below, c, training);
            const { want, got } = await runBoth(call, backend);
            const what = `scale 2^${Math.log2(scale)}, mean 2^-${below} of it, C ${c}, ` +
              (training ? "training" : "evaluation");
            assertRangeChecks(call, got, want, what);
          }
        }
      }
    }
  },
);

/*
 * Below: means 2^-56 to 2^-200 of their std (the sweep's pairs and a pair of small
 * elements, sums the reference forms exactly), past what an f64 sum resolves. WASM's f64 sums, in
 * their own lane order, left ~2^-53 of the data there, which was all of the mean: the logit
 * gradients 2.3x off or 0, an LN mean 1e14 off for 7.5 (y of a narrow row in its sample -6.6e-30
 * for -18.9), SwitchNorm1d's y at the mean 318x its tolerance; it now forms such means from
 * exact sums (wasm/src/exact.rs). WASM only: WebGPU's float32 pairs leave them (NUMERICS.md).
 *
 * SwitchNorm2d, pairs within each row (the IN means cancel): seeds 21 ([4, 3, 1, 33], logit
 * gradients 2.3x), 39 (0 for -1.5e-34), 872 (a narrow row's y), 604 (an evaluation, rows of
 * 300), 1147 (training, rows of 300). SwitchNorm1d, pairs down a column (its BN mean cancels): 1170
 * (y at the mean 318x), 237 (logit gradients 1.3x), 832 ([33, 2]: y 86x).
 */
for (const seed of [21, 39, 872, 604, 1147, 1170, 237, 832]) {
  rangeTest(
    "wasm",
    `a mean 2^-56 of its std or less gives y and the gradients as the reference (bn_mean_below_std_sweep seed ${seed})`,
    async () => {
      const call = sweepMake(seed);
      const { got, want } = await runBoth(call, "wasm");
      assertRangeChecks(call, got, want);
    },
  );
}

// A forward alone (no backward follows, so rows near 0 are not summed again up front): seed 604's
// evaluation, whose narrow rows take an LN mean over a row that cancels, summed again as a wide
// group's member (y -1.29e15 for -6.47e14 before).
rangeTest(
  "wasm",
  "a forward alone whose LN group holds a row that cancels gives y as the reference (seed 604)",
  async () => {
    const call = { ...sweepMake(604), dy: undefined };
    const { got, want } = await runBoth(call, "wasm");
    const rows = call.shape.slice(2).reduce((a, b) => a * b, 1);
    assertOutputsClose(got, want, {
      y: { tol: Y_SCALED, rows, termScale: affineSizes(call, want.y) },
    });
  },
);

/*
 * Forwards alone (evaluations without keepForBackward, where rows near 0 are not summed again up
 * front), whose LN group is near 0 because its wide row is, beside a narrow row mixed on it: that
 * row's mean, as the statistics sweeps' float32 sums leave it (2^-24 to 2^-27 of its std off),
 * was all of the narrow row's x - mu. Seeds 631, 957, 1278, 1287 (the wide row's mean 2^-56 of
 * its std or less: y -2421.65 for -2436.34; 1.8e22 for -1.0e18, 4.6e8x its tolerance; 188 for 1;
 * 824 for -1.3e-14), 2605 (a mean of -4.3e-34 left at 0; the LN group's sum about that 0 moved it
 * by nothing: y 597 for 1.75e7), 1445 and 3854 (means 2^-12 and 2^-17 of the std: y 1.26x and
 * 34x its tolerance). The group is now summed again in every forward, and a mean the sweeps leave
 * within 2^-20 of the std of 0 is summed again (exactly where it cancels). WebGPU, whose forward
 * alone kept every unscaled row's float32 mean, failed 957 (y 1.1e4 for -1.0e18: the row that
 * cancels, 2^-38 of its std, had mean 0); it now sums such rows again there too (refine_mean,
 * shaders/common.wgsl).
 */
for (const seed of [631, 957, 1278, 1287, 2605, 1445, 3854]) {
  rangeTests(
    `a forward alone whose LN group is near 0 by its wide row gives a narrow row's y as the reference (seed ${seed})`,
    async (backend) => {
      const call = { ...sweepMake(seed), dy: undefined };
      const { got, want } = await runBoth(call, backend);
      const rows = call.shape.slice(2).reduce((a, b) => a * b, 1);
      assertOutputsClose(got, want, {
        y: { tol: Y_SCALED, rows, termScale: affineSizes(call, want.y) },
      });
    },
  );
}

/*
 * SwitchNorm1d on WebGPU, a column of +-v pairs of ~0.5 (lines within (2^-21, 2^40], which
 * sn1d_stats sums as x - K with a float32 pair) and a pair of -1.3e-29, its BN mean 2^-99 of its
 * std: the pair sum kept ~2^-48 of count K, and the small pair was lost (the BN mean half the
 * reference's, y of the element at 0 2.3e7 for 4.6e7; seed 1798, training, or as a forward
 * alone). Such a line's mean is now summed again about 0 (sn1d_stats.wgsl).
 */
rangeTests(
  "SwitchNorm1d: a column whose in-range lines cancel to 2^-99 of their std gives y and the gradients as the reference (bn_mean_below_std_sweep seed 1798)",
  async (backend) => {
    const call = sweepMake(1798);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);

/*
 * SwitchNorm2d training steps under dy ~1e-38 beside a channel whose BN mean cancels, where the
 * products dy (x - mu) lie near float32's smallest normal value. Seed 632 ([2, 2, 1, 4], x ~0.9):
 * the products were lost in sn_bwd_reduce's float32 sums (dgamma 0 for -3.2e-40, `var_weight`'s
 * gradient 3.4e-14 for 1.5e-11, dx 5x off); such segments are now summed again in the unit of
 * the largest |dy| (low_products, PART_LOW). Seed 1338 ([4, 2, 1, 16], x ~1e5, dy ~1e-39): a row's
 * s S2 below float32's normal range lost dL/dvar (dx of the tiny rows 0.7% off, 28 of 128 beyond
 * tolerance); sn_bwd_rows now keeps it (pair_dots, long_lift). Both passed with dy 2^60 higher.
 */
for (const seed of [632, 1338]) {
  rangeTests(
    `products of a subnormal-scale dy beside a mean that cancels give dx and the gradients as the reference (bn_mean_below_std_sweep seed ${seed})`,
    async (backend) => {
      const call = sweepMake(seed);
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
      assertRunning(call, got, want);
    },
  );
}
