/**
 * A mixed mean far from its row's own (IN) mean, at which WebGPU's wide map of layout "nd"
 * anchors: an evaluation whose running_mean of 0 has mean weight ~1 beside an IN mean of 1.5e29
 * of weight e^-37 (8.5e-17), in a row whose largest |x| is 6e29. The mixed mean is 1.3e13, 2^56
 * below the row's unit (fine_mean took only means more than 2^60 below it), and the wide map's
 * words hi (the IN shift, ~2^97) and lo cancel to it: x - mu of the elements near it rounded to
 * hi's ulp (~2^74). Under gamma 1e20, y of 6e29 is +Infinity, so the row's finite y are those
 * near mu, held to their own size: y of x = 1 was 0 for -1.3e33 (attack fuzzer seeds 2310, 2005
 * and 1534: y = beta, -1e-40 for 1.3e22 and -1e-40 or 1e30 for +-Infinity, under gamma 3e38).
 * fine_mean now takes such rows too (fine_words, shaders/common.wgsl). Layout "1d" anchors its
 * wide map at the heavier of LN and BN (sn1d_mix.wgsl: bn_anchors) and passed before.
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
import { check, make } from "./fuzz/attack_fuzz.ts";
import { Y_SCALED } from "./_tolerances.ts";

/** The case above; layout "nd" [1, 1, 1, 4] or "1d" [1, 4] (the row is then a sample). */
function farFromAnchor(layer: "1d" | "2d", gamma: number): LayerCall {
  const nd = layer === "2d";
  const c = nd ? 1 : 4;
  return {
    layer,
    shape: nd ? [1, 1, 1, 4] : [1, 4],
    options: { eps: 0 },
    state: {
      weight: new Float32Array(c).fill(gamma),
      bias: new Float32Array(c),
      // Weights e^-37 on IN (LN for "1d"), ~1 on BN; the variance BN's alone.
      mean_weight: nd ? Float32Array.of(50, -1e30, 87) : Float32Array.of(50, 87),
      var_weight: nd ? Float32Array.of(-1e30, -1e30, 0) : Float32Array.of(-1e30, 0),
      running_mean: new Float32Array(c),
      running_var: new Float32Array(c).fill(1),
    },
    partial: true,
    training: false,
    x: Float32Array.of(6e29, 1, -2, 3),
    dy: Float32Array.of(1, 0.5, -1, 2),
    scales: true,
  };
}

for (const layer of ["1d", "2d"] as const) {
  for (const gamma of [1e20, 3e38]) {
    rangeTests(
      `SwitchNorm${layer}: an evaluation whose mixed mean lies 2^54 below its IN or LN mean (gamma ${gamma.toExponential()}) gives the reference's y and gradients`,
      async (backend) => {
        const call = farFromAnchor(layer, gamma);
        const { got, want } = await runBoth(call, backend);
        if (gamma === 1e20) assert.ok(Math.abs(want.y[1] / -1.3e33 - 1) < 0.05, `y ${want.y[1]}`);
        assertRangeChecks(call, got, want);
      },
    );
  }
}

for (const seed of [2310, 2005, 1534]) {
  rangeTests(
    `attack fuzzer seed ${seed}: an evaluation after a step, a running_mean far from the row's IN mean, gamma 3e38`,
    async (backend) => {
      const call = make(seed);
      const { got, want } = await runBoth(call, backend);
      assert.equal(check(call, got, want), null);
    },
  );
}

/**
 * A mixed mean whose parts besides its anchor lie below float32's normal range: an evaluation
 * on a running_mean of 1 of weight ~1 and running_var 0 under eps 1e-5, IN (and LN) means of
 * 0.25 of weights just below 2^-126 (split into a mantissa and exponent factors) and 1.6e-38, so
 * that x - mu of x = 1 is 2.1e-38 (1.2e-38 and 0.9e-38 apart) and y = gamma (x - mu) / std is 2003
 * under gamma 3e38. fine_mean's parts, in its unit 2^2, were flushed (y = beta; attack fuzzer seed
 * 2985: 1 for 2596); fine_low (shaders/common.wgsl) keeps them in a unit of their own.
 */
function partsBelowNormal(): LayerCall {
  return {
    layer: "2d",
    shape: [1, 1, 1, 4],
    options: { eps: 1e-5 },
    state: {
      weight: Float32Array.of(3e38),
      bias: Float32Array.of(0),
      mean_weight: Float32Array.of(-87.34, -87, 0),
      var_weight: Float32Array.of(-1e30, -1e30, 0),
      running_mean: Float32Array.of(1),
      running_var: Float32Array.of(0),
    },
    partial: true,
    training: false,
    x: Float32Array.of(1, 1e-30, -1e-30, 2e-30),
    dy: Float32Array.of(1, 0.5, -1, 2),
    scales: true,
  };
}

rangeTests(
  "SwitchNorm2d: an evaluation whose mixed mean's parts lie below float32's normal range gives the reference's y",
  async (backend) => {
    const call = partsBelowNormal();
    const { got, want } = await runBoth(call, backend);
    assert.ok(Math.abs(want.y[0] / 2003 - 1) < 0.01, `y ${want.y[0]}`);
    assertRangeChecks(call, got, want);
  },
);

// Seed 1572 is of that kind in training (weights ~3.6e-46 times a mean difference of 3e-38: x - mu
// ~1e-83 over a std of ~1e-45; y 0 for 15.19).
for (const seed of [2985, 1572]) {
  rangeTests(
    `attack fuzzer seed ${seed}: a mixed mean whose parts lie below float32's normal range`,
    async (backend) => {
      const call = make(seed);
      const { got, want } = await runBoth(call, backend);
      assert.equal(check(call, got, want), null);
    },
  );
}

/**
 * A batch mean of exactly 0 (fine_mean takes no unit of its own) or one far below the row's
 * small elements (above fine_mean's range, x alone): training, all weight on BN, over
 * x = [0, 0, -b, -B, c, 0, b, B] with B 3e38 (or 4.65e28) and b 0.98 (or 1e-10), so that x = -b
 * lies 2^129 below the mix's unit; gamma 3e38 makes its y -1.75 (-1.15). WebGPU's
 * sn_wide_normalize took x alone as x 2^-e, flushed: y 0. Layout "nd" [2, 1, 1, 4] and "1d"
 * [8, 2] (the data in channel 0, channel 1 all 1; LN of weight 0 needs two channels).
 */
function meanBelowSmallData(layer: "1d" | "2d", B: number, b: number, c: number): LayerCall {
  const nd = layer === "2d";
  const x = [0, 0, -b, -B, c, 0, b, B];
  const dy = [-4.5, 2, 4.4, 0, -4.5, 2, 4.4, 0];
  return {
    layer,
    shape: nd ? [2, 1, 1, 4] : [8, 2],
    options: { eps: 1e-5 },
    state: {
      weight: new Float32Array(nd ? 1 : 2).fill(3e38),
      bias: new Float32Array(nd ? 1 : 2),
      mean_weight: nd ? Float32Array.of(-1e30, -1e30, 0) : Float32Array.of(-1e30, 0),
      var_weight: nd ? Float32Array.of(-1e30, -1e30, 0) : Float32Array.of(-1e30, 0),
      running_mean: new Float32Array(nd ? 1 : 2),
      running_var: new Float32Array(nd ? 1 : 2),
    },
    partial: true,
    training: true,
    x: Float32Array.from(nd ? x : x.flatMap((v) => [v, 1])),
    dy: Float32Array.from(nd ? dy : dy.flatMap((v) => [v, 0.5])),
    scales: true,
  };
}

// y of x = -b, gamma b / std: layout "1d"'s BN std over its 8 values unbiased, "nd"'s not
// (y2 for "nd", then for "1d").
const CASES: [number, number, number, number, number][] = [
  [3e38, 0.98, 0, -1.753, -1.833],
  [4.65e28, 1e-10, 0, -1.154, -1.207],
  [3e38, 0.98, 1e-35, -1.753, -1.833],
];
for (const layer of ["1d", "2d"] as const) {
  for (const [B, b, c, y2nd, y21d] of CASES) {
    rangeTests(
      `SwitchNorm${layer}: training rows of batch mean ${
        c / 8
      } over ${B} and ${b} give the reference's y and gradients`,
      async (backend) => {
        const call = meanBelowSmallData(layer, B, b, c);
        const { got, want } = await runBoth(call, backend);
        const y = want.y[layer === "2d" ? 2 : 4];
        assert.ok(Math.abs(y / (layer === "2d" ? y2nd : y21d) - 1) < 0.01, `y ${y}`);
        assertRangeChecks(call, got, want);
      },
    );
  }
}

/**
 * An evaluation's `running_mean` far below its std's unit: 1e-33 beside a `running_var` of 3e37
 * in channel 0, all mean weight on BN, the variance mostly on LN (a column of ~5e24 beside it),
 * data ~`xs` and dy ~`ds`. WebGPU's BN record (sn_group_stats) held that mean in the unit of its
 * std, 2^-172 below: 0, so x - mu was x (dgamma -2.3e-26 for -1.04e-21 in layout "1d",
 * `tests/fuzz/mean_below_unit_sweep.ts 32 32 webgpu 1d`). Layout "nd" [1, 3, 1, m] or "1d"
 * [m, 3] (the row is then a channel).
 */
function runningMeanBelowStd(layer: "1d" | "2d", xs: number, ds: number): LayerCall {
  const nd = layer === "2d";
  const m = 16;
  const x: number[] = [];
  const dy: number[] = [];
  for (let k = 0; k < 3; k++) {
    for (let i = 0; i < m; i++) {
      const t = ((i * 7 + k * 5) % m) / m; // [0, 1), a fixed pattern
      x.push(k === 0 ? (t - 0.8) * xs : k === 1 ? (t - 0.5) * 1e25 : t - 0.5);
      dy.push((0.3 + t) * ds * (k === 2 ? -1 : 1));
    }
  }
  // "1d" takes [m, 3]: element (i, k) from channel k's row.
  const perm = (v: number[]) =>
    nd ? v : Array.from({ length: 3 * m }, (_, j) => v[(j % 3) * m + Math.floor(j / 3)]);
  return {
    layer,
    shape: nd ? [1, 3, 1, m] : [m, 3],
    options: { eps: 1e-5 },
    state: {
      weight: Float32Array.of(1, 1, 1),
      bias: new Float32Array(3),
      mean_weight: nd ? Float32Array.of(-1e30, -1e30, 0) : Float32Array.of(-1e30, 0),
      var_weight: nd ? Float32Array.of(-1e30, 0, -3) : Float32Array.of(0, -3),
      running_mean: Float32Array.of(1e-33, 1e-33, 0.1),
      running_var: Float32Array.of(3e37, 3e37, 3e37),
    },
    partial: true,
    training: false,
    x: Float32Array.from(perm(x)),
    dy: Float32Array.from(perm(dy)),
    scales: true,
  };
}

for (const layer of ["1d", "2d"] as const) {
  for (const [xs, ds] of [[1e-38, 1e36], [1e-33, 1e30], [1e-30, 1e30]]) {
    rangeTests(
      `SwitchNorm${layer}: an evaluation's running_mean of 1e-33 beside a running_var of 3e37, data ~${xs}, dy ~${ds}`,
      async (backend) => {
        const call = runningMeanBelowStd(layer, xs, ds);
        const { got, want } = await runBoth(call, backend);
        // dgamma of channel 0 is mostly -mu sum dy / s: the running mean's share, far above
        // the checks' absolute floor.
        const dg = want.grads.weight[0];
        assert.ok(Math.abs(dg) > 1e-30, `dgamma ${dg}`);
        assertRangeChecks(call, got, want);
      },
    );
  }
}

/**
 * Layout "1d": a sample [-3e38, -2e38, -1e38] (LN mean -2e38, its low word -3.4e30) mixed with
 * BN `running_mean`s of 1 under equal (or near-equal) mean weights, the variance LN's: the mixed
 * mean -1e38 lies 1.7e30 from x = -1e38, below the ulp of the wide map's lo (~1e38, anchored at
 * LN), which lost LN's low word: x - mu 0, y = beta (-1e-40) where the reference has -1.7e22 under
 * gamma -1e30 (attack fuzzer seed 6780). x - mu is now formed from exact pairs where (x - hi) -
 * lo cancels (d_pairs_1d, shaders/sn1d_mix.wgsl). Data 1e10 times the same sample (wide through
 * channel 0's gamma of 3e38) failed alike, x - mu 0 for 1.7.
 */
function farLnLowWord(
  meanLogits: [number, number],
  gamma: number,
  scale: number,
  runningMean = 1,
): LayerCall {
  return {
    layer: "1d",
    shape: [2, 3],
    options: { eps: 2 ** -126, momentum: 1 },
    state: {
      weight: Float32Array.of(3e38, 1e-45, gamma),
      bias: Float32Array.of(1, -1e-40, -1e-40),
      mean_weight: Float32Array.from(meanLogits),
      var_weight: Float32Array.of(1.3, -87),
      running_mean: Float32Array.of(0, 0, runningMean),
      running_var: new Float32Array(3),
    },
    partial: true,
    training: false,
    x: Float32Array.from([-3, -2, -1, 0, 1, 2], (v) => v * scale),
    dy: Float32Array.of(0, 0, 1, 0, 0, 0),
    scales: true,
  };
}

rangeTests(
  "attack fuzzer seed 6780: SwitchNorm1d's evaluation, a mixed mean 1.7e30 from x = -1e38 beside an LN mean's low word, gives the reference's y",
  async (backend) => {
    const call = make(6780);
    const { got, want } = await runBoth(call, backend);
    assert.equal(check(call, got, want), null);
  },
);

for (const meanLogits of [[1.3, 1.3], [0, 0], [-20, -20]] as [number, number][]) {
  for (const gamma of [-1e30, 1e20]) {
    for (const scale of [1e38, 1e10]) {
      rangeTests(
        `SwitchNorm1d: an evaluation whose mixed mean lies below the wide map's lo word's ulp from x (mean logits ${meanLogits}, gamma ${gamma}, data ${scale}) gives the reference's y and gradients`,
        async (backend) => {
          const call = farLnLowWord(meanLogits, gamma, scale);
          const { got, want } = await runBoth(call, backend);
          if (scale === 1e38) {
            assert.ok(Math.abs(want.y[2] / (gamma * 1.69e-8) - 1) < 0.05, `y ${want.y[2]}`);
          }
          assertRangeChecks(call, got, want);
        },
      );
    }
  }
}

/**
 * Layout "nd" (SwitchNorm2d, whose wide map anchors at the row's IN mean): sample 0 is [O, T] over
 * two channels, T = [-3.9, -1.05, -1.05] s (IN mean -2 s; [-4, -1, -1] for s = 2^33), and the
 * mixed mean is put near -1.05 s by channel 1's `running_mean` (an evaluation), by its batch mean
 * (training: a second sample whose row of channel 1 is solved for it) or by O (LN's mean, where BN
 * has no weight), under mean weights equal, uneven (logit 1.0924: 0.2512 and 0.7488) or all three
 * nonzero (logits [0.3098, 0, 0]), each weight of a term far from the anchor within 2^-44 of its
 * float32 rounding (the shaders take the float32 weight: a rounding of 2^-25 times means ~s apart
 * is itself of x - mu's size here). x - mu near -1.05 s is the float32 rounding of the data, the
 * running mean and the weights' products (~1e-8 s), below the ulp of the wide map's single float32
 * lo (~s): WebGPU's sn_wide_normalize took x - mu as (x 2^-e - hi) - lo, y = beta (-1e-40) for
 * 8.5e28 to 5.3e31, elsewhere 2x to 11x off (-1.2e32 for -1.1e31); all 38 calls below failed,
 * WASM none. The element at -3.9 s lies 2.85 s from mu: its y is +-Infinity (the variance a
 * `running_var` of 1 under gamma 1e39 / s in the evaluations, IN's, std 1.6 s, under gamma 3e38 in
 * training), so the row's finite y are those near mu, held to their own size. x - mu is now formed
 * from lo as exact pairs where (x 2^-e - hi) - lo lies within 2^-5 of lo's largest part
 * (wide_lo_pair, shaders/common.wgsl). The backward keeps x - hi - lo: the same calls' dx and
 * gradients passed their checks before (mu's float32 rounding lies within their term scales).
 */
const ND_MIXES: Record<string, number[]> = {
  "IN and BN equal": [0, -1e30, 0],
  "IN and LN equal": [0, 0, -1e30],
  "LN and BN equal, IN 0": [-1e30, 0, 0],
  "IN 0.25, BN 0.75": [0, -1e30, 1.092376708984375],
  "LN 0.75, BN 0.25, IN 0": [-1e30, 1.092376708984375, 0],
  "IN 0.41, LN and BN 0.30": [0.30984458327293396, 0, 0],
};

/** The case above; `repeat` > 1 repeats each row's 3 values (the same means, rows of 3 repeat). */
function ndLoWord(mix: string, training: boolean, s: number, repeat = 1): LayerCall {
  const mw = ND_MIXES[mix];
  const e = mw.map((v) => Math.exp(v - Math.max(...mw)));
  const w = e.map((v) => v / e.reduce((a, b) => a + b));
  // Data of 2^33: [-4, -1, -1] s, whose sums float32 holds exactly; at 1e10 they round, and in
  // training the other rows' do (WASM's float32 sums of such rows: see ndLoWordLeftOut).
  const near = s === 2 ** 33 ? -1 : -1.05;
  const T = [-6 - 2 * near, near, near], O0 = [0, 1, 2];
  // The means in units of s: IN's -2, LN's (sum O - 6) / 6; the unknown puts mu at `near`.
  const lnOf = (o: number[]) => (o[0] + o[1] + o[2] - 6) / 6;
  const centred = (mean: number) => [mean - 1, mean, mean + 1];
  let O = O0, rm = 0, T2 = [1, 2, 3];
  const rest = near + 2 * w[0];
  if (w[2] > 0) {
    const bn = (rest - w[1] * lnOf(O0)) / w[2];
    if (training) T2 = centred(2 * bn + 2); // BN's batch mean (-6 + sum T2) / 6
    else rm = bn;
  } else O = centred(2 * (rest / w[1]) + 2);
  const rows = training ? [O, T, [0, -1, -2], T2] : [O, T];
  const x = Float32Array.from(rows.flatMap((r) => Array(repeat).fill(r).flat()), (v) => v * s);
  if (!x.every(Number.isFinite)) throw new Error("x beyond float32's range");
  return {
    layer: "2d",
    shape: [training ? 2 : 1, 2, 1, 3 * repeat],
    options: { eps: 2 ** -126, momentum: 1 },
    state: {
      weight: Float32Array.of(1, training ? 3e38 : Math.min(3e38, 1e39 / s)),
      bias: Float32Array.of(0, -1e-40),
      mean_weight: Float32Array.from(mw),
      var_weight: training ? Float32Array.of(0, -1e30, -1e30) : Float32Array.of(-1e30, -1e30, 0),
      running_mean: Float32Array.of(0, rm * s),
      running_var: Float32Array.of(1, 1),
    },
    partial: true,
    training,
    x,
    dy: Float32Array.from(x, (_, i) => (i === 3 * repeat + 1 ? 1 : 0)),
    scales: true,
  };
}

// Left out: data of 2^33 under equal weights and LN and BN equal at 1e20 (x - mu exactly 0 there).
// Data of 2^33 in training and of 3e11 to 1e10 (whose T and the other rows' sums float32 rounds)
// have x - mu ~2^-28 of the data, below the float32 rounding of the means mu is formed from:
// WASM's statistics of such rows (float32 sums of x - K) left y 2e4x to 4.8e4x Y off (-6.0e29 for
// 6.9e29, the wrong sign), 10 calls; rows whose y may overflow now have the rows their mixed mean
// takes summed again in f64 (`refine_overflowing_rows`, wasm/src/nd.rs). WebGPU's (sn_stats'
// float32 x - K, K cut to 12 bits, and sn_normalize's single float32 lo) failed every call at
// 3e10, two training calls at 3e11 and one at 1e10 (y 8.6e29 for -1.47e30 under IN 0.25, 1.26e31
// for 6.6e30 at 3e10), 15 of the calls here, and 2 of the rows of 15 and 66 below; the groups of
// rows whose y may overflow are now summed again in exact pairs
// (sn_group_stats: may_overflow) and the rows' y formed from the pairs (sn_mix lists them for
// sn_wide_normalize). Training under LN and BN equal at 1e10 (rows of 3, 15 and 66) has x - mu
// exactly 0 in exact arithmetic: WebGPU's y is now beta, as there, and the reference's +-1.74e22
// is its float64 rounding of the means and their mix: left out. (WASM rounds them so too, and
// matched the reference's -1.74e22 until the reference took its means from compensated sums, session
// 48: +1.74e22 there now, WASM's still -1.74e22; neither is the exact beta.)
const ndLoWordLeftOut = (mix: string, training: boolean, s: number) =>
  s === 2 ** 33
    ? mix.includes("equal")
    : s === 1e20
    ? !training && mix.startsWith("LN and BN")
    : s === 1e10 && training && mix.startsWith("LN and BN");

for (const mix of Object.keys(ND_MIXES)) {
  for (const training of [false, true]) {
    for (const s of [5e37, 1e30, 1e20, 3e11, 3e10, 2 ** 33, 1e10]) {
      for (const backend of ["wasm", "webgpu"] as const) {
        if (ndLoWordLeftOut(mix, training, s)) continue;
        rangeTest(
          backend,
          `SwitchNorm2d: ${
            training ? "training" : "an evaluation"
          } whose mixed mean (${mix}) lies below the wide map's lo word's ulp from x (data ${s}) gives the reference's y and gradients`,
          async () => {
            const call = ndLoWord(mix, training, s);
            const { got, want } = await runBoth(call, backend);
            // The row's finite y are those near mu, nonzero; its first element's y is infinite.
            const yNear = want.y[4] + 1e-40;
            assert.ok(Number.isFinite(yNear) && Math.abs(yNear) > 1e20, `y ${want.y[4]}`);
            assert.ok(!Number.isFinite(want.y[3]), `y ${want.y[3]}`);
            assertRangeChecks(call, got, want);
          },
        );
      }
    }
  }
}

// Rows of 15 and 66 floats (WASM's four-row sweep of rows up to 48 floats, and its one-row
// sweep), data ~1e10: all 24 WASM calls failed before `refine_overflowing_rows`.
for (const mix of Object.keys(ND_MIXES)) {
  for (const training of [false, true]) {
    for (const repeat of [5, 22]) {
      for (const backend of ["wasm", "webgpu"] as const) {
        if (ndLoWordLeftOut(mix, training, 1e10)) continue;
        rangeTest(
          backend,
          `SwitchNorm2d: ${
            training ? "training" : "an evaluation"
          } whose mixed mean (${mix}) lies ~2^-28 of the data from x, rows of ${
            3 * repeat
          } floats of ~1e10, gives the reference's y and gradients`,
          async () => {
            const call = ndLoWord(mix, training, 1e10, repeat);
            const { got, want } = await runBoth(call, backend);
            const yNear = want.y[3 * repeat + 1] + 1e-40;
            assert.ok(Number.isFinite(yNear) && Math.abs(yNear) > 1e20, `y ${yNear}`);
            assert.ok(!Number.isFinite(want.y[3 * repeat]), `y ${want.y[3 * repeat]}`);
            assertRangeChecks(call, got, want);
          },
        );
      }
    }
  }
}

// The evaluations above as inference forwards (no dy: no keepForBackward, so no backward may
// follow), y alone: WebGPU failed all 12 at 3e10 (y 5.97e31 for 3.70e31 under IN and BN equal),
// rows of 3 and 15. sn_group_stats now lists the groups of rows whose y may overflow in every
// forward of one block (P_OVERFLOW_ONLY where no backward may follow).
for (const mix of Object.keys(ND_MIXES)) {
  for (const s of [3e11, 3e10, 1e10]) {
    for (const repeat of [1, 5]) {
      for (const backend of ["wasm", "webgpu"] as const) {
        rangeTest(
          backend,
          `SwitchNorm2d: an inference forward whose mixed mean (${mix}) lies ~2^-28 of the data from x, rows of ${
            3 * repeat
          } floats of ~${s}, gives the reference's y`,
          async () => {
            const call = { ...ndLoWord(mix, false, s, repeat), dy: undefined };
            const { got, want } = await runBoth(call, backend);
            const yNear = want.y[3 * repeat + 1] + 1e-40;
            assert.ok(Number.isFinite(yNear) && Math.abs(yNear) > 1e20, `y ${yNear}`);
            assert.ok(!Number.isFinite(want.y[3 * repeat]), `y ${want.y[3 * repeat]}`);
            assertOutputsClose(got, want, {
              y: { tol: Y_SCALED, rows: 3 * repeat, termScale: affineSizes(call, want.y) },
            });
          },
        );
      }
    }
  }
}

/**
 * The same sample with the `running_mean` at 2e33 to 2e35 under equal weights: x - mu at -1e38 is
 * ~1e33 to ~1e35 (2^-17 to 2^-10 of the wide map's lo, ~1e38), where d_pairs_1d was taken only
 * below 2^-18 of lo: lo's float32 rounding (~1e31) put y 4e-5 to 5.7e-3 relative off under gamma
 * 3e38 (-3.01e33 for -2.99e33 at 2e33; the sample's other y are infinite). Now taken below 2^-5.
 */
for (const runningMean of [2e33, 1e34, 2e35]) {
  rangeTests(
    `SwitchNorm1d: an evaluation whose mixed mean lies 2^-17 to 2^-10 of the wide map's lo from x (running_mean ${runningMean}) gives the reference's y and gradients`,
    async (backend) => {
      const call = farLnLowWord([0, 0], 3e38, 1e38, runningMean);
      const { got, want } = await runBoth(call, backend);
      assert.ok(Math.abs(want.y[2] / (-1.5 * runningMean) - 1) < 0.01, `y ${want.y[2]}`);
      assert.ok(!Number.isFinite(want.y[0]), `y ${want.y[0]}`);
      assertRangeChecks(call, got, want);
    },
  );
}

/**
 * Attack fuzzer seed 4744: an evaluation of SwitchNorm3d [8, 2, 2, 1, 17] whose row 9, a constant
 * -1.67e29, mixes its LN mean -3.33e29 (3x the row less its neighbour's -5e29: exactly) and a
 * running_mean of 1 under equal weights, over a std of 2^-63 (IN's variance 0, eps 2^-126) under
 * gamma 1e-10. x - mu is exactly -0.5, 2^-97 of the wide map's parts (~8e28), below float64's
 * rounding of them: the reference (and WASM) lose it, y 0, and wide_lo_pair's exact pairs gave
 * -4.6e8. Those pairs are taken only from 2^-48 of the parts up.
 */
rangeTests(
  "attack fuzzer seed 4744: an x - mu below float64's rounding of the mixed mean's parts gives the reference's y",
  async (backend) => {
    const call = make(4744);
    const { got, want } = await runBoth(call, backend);
    assert.equal(want.y[9 * 34], 0);
    assert.equal(check(call, got, want), null);
  },
);

/**
 * Layout "1d"'s member of seed 4744's kind: a sample [-5e29, -1.67e29] (3x the second less the
 * first: exactly 0) beside a `running_mean` of 1 under equal LN and BN mean weights, BN's variance
 * weight 1 on a `running_var` of 0 under eps 2^-126 (std 2^-63): x - mu at -1.67e29 is exactly
 * -0.5, below float64's rounding of the wide map's lo (~1.67e29), y 0 in the reference and WASM;
 * d_pairs_1d gave -4.6e8 under gamma 1e-10 (channel 0's gamma 1e-45 keeps the sample's y
 * small, so that the row's scale does not hold it).
 */
rangeTests(
  "SwitchNorm1d: an x - mu below float64's rounding of the wide map's lo gives the reference's y",
  async (backend) => {
    const call: LayerCall = {
      layer: "1d",
      shape: [1, 2],
      options: { eps: 2 ** -126 },
      state: {
        weight: Float32Array.of(1e-45, 1e-10),
        bias: new Float32Array(2),
        mean_weight: Float32Array.of(1.3, 1.3),
        var_weight: Float32Array.of(-1e30, 0),
        running_mean: Float32Array.of(1, 1),
        running_var: Float32Array.of(0, 0),
      },
      partial: true,
      training: false,
      x: Float32Array.of(-5.000000075237331e29, -1.666666691745777e29),
      dy: Float32Array.of(1, 1),
      scales: true,
    };
    const { got, want } = await runBoth(call, backend);
    assert.equal(want.y[1], 0);
    assert.equal(check(call, got, want), null);
  },
);

/**
 * Layout "1d" alike: a sample [-12, 1, -1, 1] s (LN mean -2.75 s) whose element -s lies ~2^-28 s
 * from its mixed mean, under unequal LN and BN mean weights (logits [l, 0]), gamma 3e38: in an
 * evaluation channel 2's `running_mean` puts the mix at -s (variance BN's, `running_var` 1e20), in
 * training a second sample's element of channel 2 does (variance LN's); the float32 rounding of
 * the data, the running mean and the weights leaves x - mu there. The sample's element -12 s has
 * y +-Infinity, so its finite y are those near mu. WebGPU's d_pairs_1d (sn1d_mix.wgsl) took
 * the lighter weight as its float32 rounding, 2^-25 of it times the anchor's distance from the other
 * mean (~3.5 s), which is of x - mu's size: all 12 evaluations failed (y -1.18e30 for 1.58e31 at
 * s = 1e10 under l = 1.3; training passed), now with that weight's rest (wmean_lo) as wide_lo_pair
 * has it in layout "nd".
 */
function lnNearX(s: number, logit: number, training: boolean): LayerCall {
  const e = Math.exp(logit), wLn = e / (e + 1), wBn = 1 / (e + 1);
  const bn2 = (-1 + 2.75 * wLn) / wBn; // channel 2's BN mean, in units of s
  const rows = training ? [[-12, 1, -1, 1], [0.5, 2, 2 * bn2 + 1, 3]] : [[-12, 1, -1, 1]];
  return {
    layer: "1d",
    shape: [rows.length, 4],
    options: { eps: 2 ** -126, momentum: 1 },
    state: {
      weight: new Float32Array(4).fill(3e38),
      bias: new Float32Array(4).fill(-1e-40),
      mean_weight: Float32Array.of(logit, 0),
      var_weight: training ? Float32Array.of(0, -1e30) : Float32Array.of(-1e30, 0),
      running_mean: Float32Array.of(0, 0, bn2 * s, 0),
      running_var: new Float32Array(4).fill(1e20),
    },
    partial: true,
    training,
    x: Float32Array.from(rows.flat(), (v) => v * s),
    dy: new Float32Array(4 * rows.length).fill(0.5),
    scales: true,
  };
}

for (const training of [false, true]) {
  for (const s of [1e10, 3e10, 1e11, 3e11]) {
    for (const logit of [0.5, -0.7, 1.3]) {
      rangeTests(
        `SwitchNorm1d: ${
          training ? "training" : "an evaluation"
        } whose mixed mean lies ~2^-28 of the data from x under unequal LN and BN mean weights (logit ${logit}, data ${s}) gives the reference's y and gradients`,
        async (backend) => {
          const call = lnNearX(s, logit, training);
          const { got, want } = await runBoth(call, backend);
          assert.ok(Number.isFinite(want.y[2]) && Math.abs(want.y[2]) > 1e20, `y ${want.y[2]}`);
          assert.ok(!Number.isFinite(want.y[0]), `y ${want.y[0]}`);
          assertRangeChecks(call, got, want);
        },
      );
    }
  }
}
