/**
 * Layout "nd"'s backward on rows that are 0 but for a few entries (tiny, subnormal or large),
 * and on dy that are subnormal and of one sign across a row (issue 10; the sweep
 * `tests/fuzz/partial_zero_sweep.ts` found them, NUMERICS.md "Scaled rows in the backward").
 * Each case is held to the float64 reference with the range tests' checks.
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { make as sweepMake } from "./fuzz/partial_zero_sweep.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";
import { outlierBesideTiny } from "./fuzz/outlier_beside_tiny_sweep.ts";

/**
 * [1, 1, 1, 5000] (several segments), an evaluation on running statistics (0.5, 1) under
 * equal weights, x spread ~1: dy 1, -0.5 and 0.75 in the first segment, every other dy
 * subnormal and positive (~5e-42). sn_bwd_wide_reduce sums the segments of subnormal dy again
 * in units of 2^-126 (D = -126); sn_bwd_rows' long sums read them as units of 1.
 */
function subnormalSegments(): LayerCall {
  const m = 5000;
  return {
    layer: "2d",
    shape: [1, 1, 1, m],
    options: { eps: 1e-5 },
    state: {
      weight: Float32Array.of(1),
      bias: new Float32Array(1),
      mean_weight: Float32Array.of(0, 0, 0),
      var_weight: Float32Array.of(0, 0, 0),
      running_mean: Float32Array.of(0.5),
      running_var: Float32Array.of(1),
    },
    partial: true,
    training: false,
    x: Float32Array.from({ length: m }, (_, i) => ((i * 37) % 101) / 50 - 1),
    dy: Float32Array.from(
      { length: m },
      (_, i) => i < 3 ? [1, -0.5, 0.75][i] : (1 + ((i * 13) % 7)) * 1e-42,
    ),
    scales: true,
  };
}

rangeTests(
  "SwitchNorm2d: a long row's segments of subnormal dy beside normal ones keep their unit",
  async (backend) => {
    const call = subnormalSegments();
    const { got, want } = await runBoth(call, backend);
    // dbeta is the sum of dy, 1.25 and ~2e-38: the subnormal segments must not add 2^126 times
    // theirs.
    assert.ok(Math.abs(want.grads.bias[0] - 1.25) < 1e-6);
    assertRangeChecks(call, got, want);
  },
);

/**
 * [2, 2, 1, 8], training with the mean on LN and the variance on BN (eps 2^-126): channel 0 is
 * a row of 0 but one x of 9.8e-45 beside a row of 0 (BN mean ~6e-46, below float32's
 * subnormals, held in the unit of that row), channel 1 data ~0.5 (LN means ~0.06). The BN std
 * is ~sqrt(eps), s ~9e18, and gamma 1e6: dL/dvar_BN ~1e61, so that the row of 0's dx holds
 * (2 / NB) GvB (0 - mu_bn) ~5e15 beside its dy gs ~1e-6.
 */
function zeroRowTinyGroup(): LayerCall {
  const x = new Float32Array(32);
  x[5] = 9.81e-45;
  for (let i = 0; i < 8; i++) {
    x[8 + i] = ((i * 5) % 8) / 8 + 0.1;
    x[24 + i] = ((i * 3) % 8) / 16 - 0.2;
  }
  const dy = Float32Array.from({ length: 32 }, (_, i) => {
    const r = Math.floor(i / 8);
    return r === 0 ? [-1.28, 0.3, -0.59, 0.8][i % 4] : r === 2 ? 1e-31 * ((i % 3) - 1.2) : 0.25;
  });
  return {
    layer: "2d",
    shape: [2, 2, 1, 8],
    options: { eps: 2 ** -126 },
    state: {
      weight: Float32Array.of(1e6, 1),
      bias: new Float32Array(2),
      mean_weight: Float32Array.of(-1e30, 0, -1e30),
      var_weight: Float32Array.of(-1e30, -1e30, 0),
      running_mean: new Float32Array(2),
      running_var: Float32Array.of(1, 1),
    },
    partial: true,
    training: true,
    x,
    dy,
    scales: true,
  };
}

rangeTests(
  "SwitchNorm2d: a row of 0's dx keeps (x - mu_bn) GvB where the BN mean is ~6e-46",
  async (backend) => {
    const call = zeroRowTinyGroup();
    const { got, want } = await runBoth(call, backend);
    // The row of 0 (sample 1, channel 0): its dx is the BN variance term alone, ~1e15 or more.
    assert.ok(Math.abs(want.dx[16]) > 1e12);
    assertRangeChecks(call, got, want);
  },
);

/**
 * [1, 1, 1, 16], an evaluation on a running_mean of 1 (running_var 1) with every weight on BN,
 * a row of 0 but one x of 1e20 (a wide row, its IN mean of weight 0 the mix's anchor), dy 1 at
 * an x of 0: dgamma = s dy (0 - 1) = -1. In the wide reduce's unit (2^-58) the IN mean ~2^124
 * and the BN term's difference to it cancelled to 0.
 */
function outlierRow(big: number, runningMean = 1): LayerCall {
  const x = new Float32Array(16);
  x[5] = big;
  const dy = new Float32Array(16);
  dy[1] = 1;
  return {
    layer: "2d",
    shape: [1, 1, 1, 16],
    options: { eps: 1e-5 },
    state: {
      weight: Float32Array.of(1),
      bias: new Float32Array(1),
      mean_weight: Float32Array.of(-1e30, -1e30, 0),
      var_weight: Float32Array.of(-1e30, -1e30, 0),
      running_mean: Float32Array.of(runningMean),
      running_var: Float32Array.of(1),
    },
    partial: true,
    training: false,
    x,
    dy,
    scales: true,
  };
}

for (const big of [1e20, 1e30, -3e38]) {
  rangeTests(
    `SwitchNorm2d: dgamma of a row of 0 but one x of ${big} on an evaluation's running_mean`,
    async (backend) => {
      const call = outlierRow(big);
      const { got, want } = await runBoth(call, backend);
      assert.ok(Math.abs(want.grads.weight[0] + 1) < 1e-4);
      assertRangeChecks(call, got, want);
    },
  );
}

/**
 * `outlierRow` on a running_mean of 3e11 and its neighbours (1e10 to 5e13, either sign) beside
 * an x of 1e18 or 1e20: the BN term's difference to the anchor hi (the IN mean, ~2^120 in the
 * unit 2^-58 for 1e20) rounded at hi's ulp (2^39 in units of 1) to a multiple of it, not to 0:
 * hi + lo cancelled by 23 bits, short of the cancelled-mean path's 24, and held mu at that ulp
 * (dgamma -5.5e11 for -3e11 at 1e20, -8.6e9 for -1e10 at 1e18). The forward's y of the same
 * calls (sn_wide_normalize: lo's exact parts) was right.
 */
for (const big of [1e18, 1e20]) {
  rangeTests(
    `SwitchNorm2d: dgamma of a row of 0 but one x of ${big.toExponential()} on running_means rounded to the anchor's ulp`,
    async (backend) => {
      for (const rm of [3e11, 1e10, 1e12, 5e13, -3e11]) {
        const call = outlierRow(big, rm);
        const { got, want } = await runBoth(call, backend);
        // dgamma = s dy (0 - mu), s ~1 (running_var 1, eps 1e-5).
        assert.ok(Math.abs(want.grads.weight[0] / -rm - 1) < 1e-4, `running_mean ${rm}`);
        assertRangeChecks(call, got, want, `running_mean ${rm}`);
      }
    },
  );
}

rangeTests("partial zero sweep seed 968 on a running_mean of 3e11", async (backend) => {
  const seed = sweepMake(968);
  const c = seed.state!.running_mean.length;
  const call = { ...seed, state: { ...seed.state, running_mean: new Float32Array(c).fill(3e11) } };
  const { got, want } = await runBoth(call, backend);
  assertRangeChecks(call, got, want);
});

/**
 * [1, 1, 1, 8], an evaluation of a row of 0 whose mean is a running_mean of 1e-30 (mean weight
 * on BN) and whose variance weights are LN's ~1 beside IN's e^-87 and BN's e^-174 (weights
 * below float32's normal range: the wide rows), running_var 1, eps 1e-30: s ~1e15; dy ~1e-20 of
 * one sign, gamma 1e30. S2 = -mu S1 ~4e-49 lies below float32's normal range where dgamma = s
 * S2 ~-3.6e-34 does not.
 */
function zeroRowSmallMean(): LayerCall {
  return {
    layer: "2d",
    shape: [1, 1, 1, 8],
    options: { eps: 1e-30 },
    state: {
      weight: Float32Array.of(1e30),
      bias: new Float32Array(1),
      mean_weight: Float32Array.of(-1e30, -1e30, 0),
      var_weight: Float32Array.of(0, 87, -87),
      running_mean: Float32Array.of(1e-30),
      running_var: Float32Array.of(1),
    },
    partial: true,
    training: false,
    x: new Float32Array(8),
    dy: Float32Array.from({ length: 8 }, (_, i) => (1 + i) * 1e-20),
    scales: true,
  };
}

rangeTests("SwitchNorm2d: dgamma of a row of 0 whose S2 = -mu S1 is ~1e-49", async (backend) => {
  const call = zeroRowSmallMean();
  const { got, want } = await runBoth(call, backend);
  assert.ok(want.grads.weight[0] < -1e-34 && want.grads.weight[0] > -1e-33);
  assertRangeChecks(call, got, want);
});

/**
 * [1, 1, 1, 16], an evaluation on BN alone (running_mean 0, running_var 1) of a row of 0 but
 * one x of 1e30 (a wide row), dy 1.04 at an x of 0 and subnormal dy 1e-42 everywhere else:
 * dgamma = s sum dy x ~1e-12, the subnormal dy's share alone (1e-42 times 1e30), which the wide
 * reduce's dy' = dy in units of 1 flushed.
 */
function subnormalDyOutlier(): LayerCall {
  const x = new Float32Array(16);
  x[5] = 1e30;
  const dy = new Float32Array(16).fill(1e-42);
  dy[1] = 1.04;
  return {
    layer: "2d",
    shape: [1, 1, 1, 16],
    options: { eps: 1e-30 },
    state: {
      weight: Float32Array.of(1),
      bias: new Float32Array(1),
      mean_weight: Float32Array.of(-1e30, -1e30, 0),
      var_weight: Float32Array.of(-1e30, -1e30, 0),
      running_mean: new Float32Array(1),
      running_var: Float32Array.of(1),
    },
    partial: true,
    training: false,
    x,
    dy,
    scales: true,
  };
}

rangeTests(
  "SwitchNorm2d: a subnormal dy at an x of 1e30 beside normal dy keeps its dgamma share",
  async (backend) => {
    const call = subnormalDyOutlier();
    const { got, want } = await runBoth(call, backend);
    assert.ok(want.grads.weight[0] > 5e-13 && want.grads.weight[0] < 2e-12);
    assertRangeChecks(call, got, want);
  },
);

// Calls of `outlierBesideTiny` (tests/fuzz/outlier_beside_tiny_sweep.ts: rows of 0 but one x of
// `big` beside rows of `tiny`, normal dy at the zeros, partial_zero_sweep seed 644's kind):
// [m, big, tiny, gamma of channels 1 and 2, the reference's var_weight gradient 0, its dx[0]].
// Before the fix WASM failed the first four: dx of row 0 -8.4e-42 for 2.3e-37 (m 5000), -1.7e-38
// for 1.2e-30 (m 8), `var_weight`'s gradient 0 for 2.2e-23 (m 33), dx -1.0e-32 for 1.1e-26
// (m 257; WebGPU's dx of row 2 there was 2.2e-26 off before 5e60988's wide_dy_unit). The last
// four failed on WebGPU alone, where row 2's gv = -0.5 gamma s^3 S2 passed through float32's
// subnormals (S2 = dy x at the large x, ~1e-36 to 7e-39, times s ~1e-7 to 1e-3) and its sample's
// LN term (2/C) gvL (mu_in - mu_ln) took it to dx of rows 0 and 1: a pair row's gv 8e-4 off
// (m 100, x 1e8: dx 2.6231e-24 for 2.6209e-24; m 1000, x 1e10), a wide row's gv 0 (m 100, x 1e6:
// dx -6.3e-29 for 2.6e-22, s ~2^-16 above the 2^-20 that kept s's exponent apart), and a long
// row's S2 0 (m 5000, x 1e6: segments of subnormal dy summed again in units of 2^-126, 7e-39 in
// units of 1; the large x's dx 7.4e-29 for ~0, 5000x its tolerance).
// The next seven, rows of one segment with x 1e3 to 1e5 (the sweep's seeds 1, 94, 185 and 283,
// two calls of its grid at other gammas, and a designed one, m 64 and x -3e4 under gamma 1e25),
// failed on WebGPU alone: S2 = dy x ~1e-41 to 1e-39 lay below float32's normal range in units
// of 1 as sn_bwd_reduce summed it, before the row's dy unit is chosen: gv 0 and dx of rows 0 and
// 1 lost (-1.7e-26 for 1.2e-18 at m 8), or the large x's own dx (m 1000: -1.9e-30 for -2.2e-30).
const outlierCases: [number, number, number, number, number, number][] = [
  [5000, 5.3e19, 1e-38, 1e30, -1.548e-13, 2.337e-37],
  [8, 1e15, 1e-38, 1e30, -2.362e-14, 1.201e-30],
  [33, 1e17, 1e-20, -3e20, 2.238e-23, -3.614e-40],
  [257, 1e10, 1e-20, 1e30, -7.010e-14, 1.092e-26],
  [100, 1e8, 1e-20, 1e30, -6.543e-14, 2.621e-24],
  [1000, 1e10, 1e-25, 1e30, -2.076e-13, 8.307e-27],
  [100, 1e6, 1e-20, 1e30, -6.543e-14, 2.621e-22],
  [5000, 1e6, 1e-20, 1e20, -1.548e-23, -4.459e-28],
  [8, 1e3, 1e-15, 1e30, -2.362e-14, 1.201e-18],
  [33, 1e3, 1e-30, 1e30, -7.459e-14, 9.078e-19],
  [100, 1e4, 1e-38, 1e30, -6.543e-14, 2.621e-20],
  [200, 1e5, 1e-25, 1e30, -2.163e-13, 4.330e-21],
  [1000, 1e5, 1e-20, -3e20, 6.229e-23, -1.994e-27],
  [300, 1e4, 1e-38, 1e20, -7.575e-24, -1.091e-26],
  [64, -3e4, 1e-30, 1e25, 5.224e-19, 1.074e-25],
];
for (const [m, big, tiny, gamma, vw0, dx0] of outlierCases) {
  const name =
    `SwitchNorm2d: a row of 0 but one x of ${big.toExponential()} beside rows of ${tiny}, ` +
    `normal dy at its zeros (${m} floats, gamma ${gamma.toExponential()})`;
  const check = async (backend: "wasm" | "webgpu") => {
    const call = outlierBesideTiny(m, big, tiny, gamma);
    const { got, want } = await runBoth(call, backend);
    assert.ok(Math.abs(want.grads.var_weight[0] / vw0 - 1) < 1e-3);
    assert.ok(Math.abs(want.dx[0] / dx0 - 1) < 1e-3);
    assertRangeChecks(call, got, want);
  };
  rangeTests(name, check);
}

// Sweep seeds of each kind: 140 (long rows of subnormal dy segments: dbias -2.3945 for
// -2.3778), 648 and 102 (rows of 0 beside groups of tiny means: dx 1.3e7 for 5e15, 1e-20 for
// 9.5e11), 968 (an evaluation of a row of 0 but one x of 6e19: dgamma 2.3e10 for 1.27e10),
// 953 (a row of 0's S2 ~1e-49 under s 1e15: dgamma 3.3e-35 for 8e-35), 484 and 844
// (subnormal dy at x ~1e20 beside normal dy in wide rows: dx without its dL/dvar term, 3% of
// its term scale; `var_weight`'s gradient 2.2e-21 for -4.7e-21), 644 (`outlierBesideTiny`'s
// kind: dx 1.7e-32 for 1.8e-36, `var_weight`'s gradient 2700x), 2060 and 2591 (trainings whose
// mix takes ~1 of its variance from a BN variance of ~1e72 under a weight of 2.7e-76: the IN and
// LN variance differences, ~1e-3 and ~1, lay ~2^-250 below the BN one and were flushed in its
// unit; `var_weight`'s gradient 0.147 for 0.098 and 1.65e-9 for 1.34e-9, 17x and 30x); 110 (a row
// of 0 under a mixed mean of ~5e-39, dy 1.3 beside subnormal ones: S2 ~1e-38, summed again for
// its S2 alone, which left MX where its pair row reads S2's low word: dx NaN, caught while fixing
// outlierBesideTiny); 3915 (a training: a row of 0 under a mix of unit ~2^123, set by an x of
// 1.6e38, whose mean is BN's -4.9e-42: the near unit, at most 2^120 below the mix's, flushed
// that mean, S2 = -mu S1 0, `var_weight`'s gradient 0 for -1.4e-30 on the LN logit, 1080x);
// 1620 (an evaluation: a row of 0 under a mixed mean of -1.6e-38 beside dy 1.45, listed for
// low_products alone with its D 0, was read as a pair row with MX as S2's low word: dgamma
// 2.0e10 for -1.7e-11).
for (const seed of [140, 648, 102, 968, 953, 484, 844, 644, 2060, 2591, 110, 3915, 1620]) {
  rangeTests(`partial zero sweep seed ${seed}`, async (backend) => {
    const call = sweepMake(seed);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  });
}

/**
 * [2, 1, 1, 8], training under eps 1 with the mean on IN and the variance on IN beside BN's
 * weight e^-174: row 0 spread over [0, 0.525] (its variance ~0.034), row 1 of 0 but one x of
 * 1e38 (a wide row; BN variance ~5.9e74, its weighted term ~0.16). Row 0's mix is wide (its BN
 * term scaled), in the unit 2^62 that the BN group's 2^127 drops to, 62 binades above its std's
 * unit 2^0 (eps): var + eps lay at ~2^-124 there, the IN and BN terms at 2^-129 and 2^-127
 * (subnormal), and a GPU that flushes them (NVIDIA, SwiftShader) took row 0's std for 1
 * (sqrt(eps)) for 1.10: y and dx 10% off (partial zero sweep seed 2060's kind: std 1 for 1.00043
 * there; NUMERICS.md "WebGPU on NVIDIA's Vulkan driver"). lavapipe keeps subnormals: the test
 * fails only on an adapter that flushes.
 */
function stdAtUnitFoot(): LayerCall {
  const x = Float32Array.from({ length: 16 }, (_, i) => i < 8 ? ((i * 5) % 8) / 8 * 0.6 : 0);
  x[11] = 1e38;
  return {
    layer: "2d",
    shape: [2, 1, 1, 8],
    options: { eps: 1 },
    state: {
      weight: Float32Array.of(1),
      bias: new Float32Array(1),
      mean_weight: Float32Array.of(0, -1e30, -1e30),
      var_weight: Float32Array.of(0, -1e30, -174),
    },
    partial: true,
    training: true,
    x,
    dy: Float32Array.from({ length: 16 }, (_, i) => [0.5, -1, 0.25, 0.75][i % 4] * (1 + i / 16)),
    scales: true,
  };
}

rangeTests(
  "SwitchNorm2d: a wide row whose std lies 2^62 below its unit keeps variance terms below eps",
  async (backend) => {
    const call = stdAtUnitFoot();
    const { got, want } = await runBoth(call, backend);
    // Row 0's std: sqrt(1 + its IN variance ~0.034 + BN's weighted ~0.16), ~1.10 (1 where the
    // terms flush).
    const std = (call.x[1] - call.x[0]) / (want.y[1] - want.y[0]);
    assert.ok(std > 1.05 && std < 1.2, `row 0's std ${std}`);
    assertRangeChecks(call, got, want);
  },
);

/**
 * [1, c, 1, m] evaluations (dy 0: y is what is held) of rows of 0 but one x of `v` under a gamma
 * whose gamma / std passes 2^80 (factor-wide: sn_wide_normalize in the unit 2^-86), the mean
 * on BN's running_mean of 1 (weight 1, or 1 - 2e-9 beside IN or LN): the wide map's anchor is
 * the row's IN mean (~v / m, 2^27 and more above mu), whose lo rounded to its ulp cancelled
 * it to 0, and x alone was taken for x - mu (y 0 where the reference has 3e30); its float32
 * weight of 1 - 2e-9 (1) left mu 1 for 2.29. Under LN's (or IN's and LN's) weight e^-25 the
 * rest of BN's float64 weight beyond 1 (-1.4e-11, held to ~2^-54 only) times the IN mean's
 * distance from mu (1.25e11 and 3.75e10) moved mu by up to 7e-6: 0.13200 for 0.13199 under x
 * -1e12 in rows of 8 beside a channel (y 5.5e-5 relative off); the shaders now take that rest
 * as 1 less the others, as the reference does (backends/_webgpu_weights.ts, weightRests).
 */
function factorWideZeros(
  m: number,
  c: number,
  v: number,
  meanWeight: number[],
  gamma: number,
  eps: number,
  dy = new Float32Array(c * m),
): LayerCall {
  const x = new Float32Array(c * m);
  x[5] = v;
  for (let i = m; i < c * m; i++) x[i] = 1 + (i % 3) * 0.25;
  return {
    layer: "2d",
    shape: [1, c, 1, m],
    options: { eps },
    state: {
      weight: new Float32Array(c).fill(gamma),
      bias: new Float32Array(c),
      mean_weight: Float32Array.from(meanWeight),
      var_weight: Float32Array.of(-1e30, -1e30, 0),
      running_mean: new Float32Array(c).fill(1),
      running_var: new Float32Array(c).fill(1e-20),
    },
    partial: true,
    training: false,
    x,
    dy,
    scales: true,
  };
}

rangeTests(
  "SwitchNorm2d: y of a factor-wide row of 0 but one large x keeps a mixed mean far below its IN mean",
  async (backend) => {
    for (
      const [m, c, v, mw, gamma, eps] of [
        [16, 1, 1e10, [-1e30, -1e30, 0], -3e20, 1e-30],
        [8, 2, 1e9, [-1e30, -1e30, 0], -3e20, 0],
        [16, 1, -1e12, [-1e30, -1e30, 0], 1e25, 1e-5],
        [16, 1, 1e10, [-20, -1e30, 0], -3e20, 1e-30],
        [100, 2, 1e10, [-1e30, -25, 0], -3e20, 1e-30],
        [8, 2, -1e12, [-1e30, -25, 0], -3e20, 0],
        [8, 2, -1e12, [-1e30, -25, 0], 1e25, 1e-10],
        [8, 1, -3e11, [-25, -25, 0], -3e20, 1e-30],
      ] as [number, number, number, number[], number, number][]
    ) {
      const call = factorWideZeros(m, c, v, mw, gamma, eps);
      const { got, want } = await runBoth(call, backend);
      const what = `m ${m}, c ${c}, x ${v}, mean_weight ${mw}`;
      // y of the row's 0s: -gamma mu / std, mu ~1 (2.3 with IN's share; 0.13 and -0.04 under the
      // weight e^-25), std 1e-10 (3e-3 for eps 1e-5).
      assert.ok(Math.abs(want.y[0]) > 1e27, what);
      assertRangeChecks(call, got, want, what);
    }
  },
);

/**
 * The backward of the factor-wide rows above, dy 1 but 0 at the large x: dgamma = S2 / std,
 * S2 = -mu sum dy over the 0s. The mixed pair (hi, lo) about the row's IN mean (centre_offset)
 * cancelled to 0 and its low word lo_rest (the mean itself, and the weights' rest beyond
 * float32, wmean_lo) was not read: dgamma 0 where the reference has -1.5e11 (-3.4e11 with IN's
 * share). Rows of 100 and 5000 (an IN mean 1e7 to 2e6 from mu, hi and lo cancelling by 2^20 and
 * less) lost the weights' rest: mu 1 for 1.02, dgamma 2% off.
 */
rangeTests(
  "SwitchNorm2d: dgamma of a factor-wide row of 0 but one large x keeps a mixed mean far below its IN mean",
  async (backend) => {
    for (
      const [m, c, v, mw, gamma, eps] of [
        [16, 1, 1e10, [-1e30, -1e30, 0], -3e20, 1e-30],
        [8, 2, 1e9, [-1e30, -1e30, 0], -3e20, 0],
        [16, 1, -1e12, [-1e30, -1e30, 0], 1e25, 1e-5],
        [16, 1, 1e10, [-20, -1e30, 0], -3e20, 1e-30],
        [100, 2, 1e10, [-1e30, -25, 0], -3e20, 1e-30],
        [100, 1, 1e9, [-20, -1e30, 0], -3e20, 1e-30],
        [5000, 1, 1e10, [-20, -1e30, 0], -3e20, 1e-30],
      ] as [number, number, number, number[], number, number][]
    ) {
      const dy = Float32Array.from({ length: c * m }, (_, i) => (i % m === 5 ? 0 : 1));
      const call = factorWideZeros(m, c, v, mw, gamma, eps, dy);
      const { got, want } = await runBoth(call, backend);
      const what = `m ${m}, c ${c}, x ${v}, mean_weight ${mw}`;
      // dgamma of channel 0: -mu (m - 1) / std, mu ~1 (2.3 with IN's share), std 1e-10.
      assert.ok(Math.abs(want.grads.weight[0]) > 1e3, what);
      assertRangeChecks(call, got, want, what);
    }
  },
);

/**
 * partial_zero_sweep seed 22: [2, 3, 1, 5000] (rows of several segments), an evaluation with
 * the mean on BN and equal variance weights: row (0, 2) is 0 but x -8.07e-39 (beside row (0, 1)
 * of 0 but 5.8e-39, LN mean -1.5e-43) under gamma -3e20, dy 1.37 beside dy ~5e-44. dx's
 * constant A (its (2/C) GvL (mu_in - mu_ln) term, -1.4e-25) lay at 2^-126 of the unit that dy
 * gs's bound set, and was flushed: dx of its 0s 1.2x the reference's (5e-24 for -2.3e-23 ...).
 */
rangeTests(
  "partial zero sweep seed 22 (dx of a row of 0 keeps its LN mean term)",
  async (backend) => {
    const call = sweepMake(22);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);

/**
 * Attack fuzzer seed 13052: SwitchNorm3d [2, 1, 2, 1, 1], an evaluation of rows of x ~-3e38
 * (spread ~1e32) under dy +-2e38 and gamma 1e-20. Lowering the unit of the wide dx map for
 * seed 22's A (to 2^120 under the largest term's bound) took B itself past float32's range
 * (|x - K| ~2^-20 in the row's unit): dx +-Infinity where the reference has +-2.58e-7.
 */
rangeTests(
  "attack fuzzer seed 13052 (a lowered dx unit keeps the dL/dvar coefficient finite)",
  async (backend) => {
    const call = make(13052);
    const { got, want } = await runBoth(call, backend);
    assert.equal(check(call, got, want), null);
  },
);

/**
 * Attack fuzzer seed 24681: SwitchNorm3d [8, 3, 2, 1, 2], an evaluation whose channel 2 is rows
 * of 1e10 under IN's variance weight ~1 (their variance 0), BN's e^-139 on a running_var of
 * 1e-30 and eps 0 (var + eps ~6e-91, below float32's normal range), dy ~1e-31 beside subnormal
 * ones. sn_bwd_reduce's `lifted` gate listed the rows for their S2 (the subnormal dy's products
 * bound it loosely), and sn_bwd_rows' wide row, which a listed row takes, gave dgamma 0 where the
 * reference has -2.0e5; such rows now keep the plain path, which holds s's exponent apart.
 */
rangeTests(
  "attack fuzzer seed 24681 (a row whose mixed variance lies below float32's normal range keeps the plain backward)",
  async (backend) => {
    const call = make(24681);
    const { got, want } = await runBoth(call, backend);
    assert.equal(check(call, got, want), null);
  },
);

/**
 * A row of tiny x (unit 1) beside its sample's 1e10 (the LN std ~2e9), an evaluation with the
 * mean on BN alone (running_mean 0) and gamma 3e38 (a factor-wide row: the wide passes, gamma's
 * exponent apart): t = (x - mu) scale' ~1e-39 lay below float32's normal range, where y = t 2^g
 * is ~0.1 to 1. A GPU that flushes (NVIDIA, SwiftShader) took t for 0: y 0 for 0.139 (layout
 * "nd", sn_wide_normalize) and 0.073 (SwitchNorm1d, sn1d_wide_normalize); outlier beside tiny
 * sweep seed 3369 (outlierBesideTiny, m 33, x 1e10, tiny 1e-30, gamma 3e38): y 0 for 0.51.
 */
function tinyUnderLargeGamma(layer: "2d" | "1d", tiny: number): LayerCall {
  const nd = layer === "2d";
  return {
    layer,
    shape: nd ? [1, 2, 1, 4] : [2, 3],
    options: { eps: 1e-5 },
    state: {
      weight: nd ? Float32Array.of(3e38, 1) : Float32Array.of(3e38, 1, 1),
      bias: new Float32Array(nd ? 2 : 3),
      mean_weight: nd ? Float32Array.of(-1e30, -1e30, 0) : Float32Array.of(-1e30, 0),
      var_weight: new Float32Array(nd ? 3 : 2),
      running_mean: new Float32Array(nd ? 2 : 3),
      running_var: nd ? Float32Array.of(1e-20, 1) : Float32Array.of(1e-20, 1, 1),
    },
    partial: true,
    training: false,
    x: nd
      ? Float32Array.of(tiny, 0, -0.5 * tiny, 0, 0, 0, 1e10, 0)
      : Float32Array.of(tiny, 0, 1e10, -0.5 * tiny, 0, 0),
    dy: Float32Array.from({ length: nd ? 8 : 6 }, (_, i) => i + 1),
    scales: true,
  };
}
for (const layer of ["2d", "1d"] as const) {
  rangeTests(
    `${layer}: y whose x scale' lies below float32's normal range under gamma 3e38`,
    async (backend) => {
      for (const tiny of [1e-30, 1e-29, -3e-30]) {
        const call = tinyUnderLargeGamma(layer, tiny);
        const { got, want } = await runBoth(call, backend);
        assert.ok(Math.abs(want.y[0]) > 0.05, `${want.y[0]}`);
        assertRangeChecks(call, got, want);
      }
    },
  );
}
rangeTests(
  "outlier beside tiny sweep seed 3369 (y of x 1e-30 under gamma 3e38)",
  async (backend) => {
    const call = outlierBesideTiny(33, 1e10, 1e-30, 3e38);
    const { got, want } = await runBoth(call, backend);
    assert.ok(want.y[33 + 3] > 0.5);
    assertRangeChecks(call, got, want);
  },
);
