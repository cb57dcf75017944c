/**
 * Four of WebGPU's flushes in the backward's wide sums (sn_bwd_wide_reduce) at float32's bottom.
 *
 * A scaled row whose products dy (x - mu) lie far below float32's normal range in the mix's unit
 * (near_exp, shaders/backward_common.wgsl), with data far below that unit: an evaluation of data
 * ~1e-38 over a std of ~1.2e19 (a running_var of 3e38 of variance weight 1/2, eps 1e10), dy
 * ~1e36. The unit lies 2^62 below the std's at most, so x 2^-e was below float32's normal range for
 * the elements under 2^-125, and sn_bwd_wide_reduce flushed them before it took x - mu in units of
 * 2^f: dgamma lost their share (attack fuzzer seed 2847: 54x its tolerance). x - mu is now formed
 * from x 2^-(e + f). Below: a scaled row's mixed mean far from the IN mean the wide map anchors
 * at (x - mu rounded to that anchor's ulp on WebGPU, and WASM's f64 sums about the IN mean).
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";
import { make as cornerMake } from "./fuzz/corner_fuzz.ts";

/** Layout "nd" [1, 1, 1, 8]: half of the row's |x| below 2^-125 (2.35e-38). */
function dataBelowUnit(): LayerCall {
  return {
    layer: "2d",
    shape: [1, 1, 1, 8],
    options: { eps: 1e10 },
    state: {
      weight: Float32Array.of(1),
      bias: Float32Array.of(0),
      mean_weight: Float32Array.of(0, 0, 0),
      var_weight: Float32Array.of(0, -1e30, 0),
      running_mean: Float32Array.of(0),
      running_var: Float32Array.of(3e38),
    },
    partial: true,
    training: false,
    x: Float32Array.of(8e-38, -7e-38, 2e-38, -1.5e-38, 1.3e-38, 6e-38, -2.2e-38, 1.9e-38),
    dy: Float32Array.of(1e36, 2e36, -3e36, 4e36, 5e36, -1e36, -6e36, 7e36),
    scales: true,
  };
}

rangeTests(
  "SwitchNorm2d: an evaluation of data ~1e-38 over a std of 1.2e19 keeps the row's smaller elements in dgamma",
  async (backend) => {
    const call = dataBelowUnit();
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);

rangeTests(
  "attack fuzzer seed 2847: data ~1e-38 over a std of 1.2e19, dy ~1e36",
  async (backend) => {
    const call = make(2847);
    const { got, want } = await runBoth(call, backend);
    assert.equal(check(call, got, want), null);
  },
);

/**
 * A scaled row's segment of subnormal dy beside normal ones far below 1: lavapipe reads
 * subnormal operands as 0, and the segment's dy were taken in units of 1 (only a segment whose
 * every dy is subnormal took the unit 2^-126), so dy -2.8e-42 times x - mu of -4.6e28 over a std
 * of 1e5 (1.3e-18, nearly all of dgamma) was lost. A segment whose largest |dy| lies below 2^-60
 * now takes that dy's unit (attack fuzzer seeds 2602 and 1084: dgamma 120x, dx 783x).
 */
function subnormalDyBesideNormal(): LayerCall {
  return {
    layer: "2d",
    shape: [1, 1, 1, 4],
    options: { eps: 1e10 },
    state: {
      weight: Float32Array.of(1),
      bias: Float32Array.of(0),
      mean_weight: Float32Array.of(-1e30, -1e30, 0),
      var_weight: Float32Array.of(-1e30, -1e30, 0),
      running_mean: Float32Array.of(0),
      running_var: Float32Array.of(0),
    },
    partial: true,
    training: false,
    x: Float32Array.of(1, 0, -1, -4.6e28),
    dy: Float32Array.of(-4.5e-31, -5e-42, 4.4e-31, -2.8e-42),
    scales: true,
  };
}

rangeTests(
  "SwitchNorm2d: subnormal dy beside normal ones in a scaled row count in dgamma",
  async (backend) => {
    const call = subnormalDyBesideNormal();
    const { got, want } = await runBoth(call, backend);
    assert.ok(
      Math.abs(want.grads.weight[0] / 1.288e-18 - 1) < 0.01,
      `dgamma ${want.grads.weight[0]}`,
    );
    assertRangeChecks(call, got, want);
  },
);

for (const seed of [2602, 1084]) {
  rangeTests(
    `attack fuzzer seed ${seed}: subnormal dy beside normal ones far below 1`,
    async (backend) => {
      const call = make(seed);
      const { got, want } = await runBoth(call, backend);
      assert.equal(check(call, got, want), null);
    },
  );
}

// Corner fuzzer seed 3357 (an evaluation of data ~1e-38 under dy of 1e-31 beside subnormal ones:
// dx 0 for ~1e-19 to 1e-20) is of that kind: it fails before the fix above, passes since.
rangeTests(
  "corner fuzzer seed 3357: subnormal dy beside normal ones far below 1 (dx)",
  async (backend) => {
    const call = cornerMake(3357);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);

/**
 * A scaled row whose mixed mean lies below float32's normal range in the mix's unit, where its
 * products dy (x - mu) take the near unit: a row of ~5e-31 beside a row of ~1e29 in its sample,
 * the variance on LN (a std ~1e29, so the mix's unit lies near 2^34, and the row's mean 5.5e-31
 * ~2^-135 of it). wide_map's hi and lo of that mean were 0 (flushed), and the near unit took
 * them from there: x - mu was x, the row's S2 = sum dy (x - mu) 12x itself here (dgamma 12x; in
 * attack fuzzer seed 1296, 0.33x, and the LN's sum of dL/dvar cancelling across the sample put
 * dx of a row of gamma 2e-39 13x, 37x its tolerance). The near unit now takes the mean from
 * fine_mean (its own unit) where that holds it.
 */
function meanBelowUnit(training: boolean): LayerCall {
  return {
    layer: "2d",
    shape: [1, 2, 1, 4],
    options: { eps: 1e-5 },
    state: {
      weight: Float32Array.of(1, 1),
      bias: Float32Array.of(0, 0),
      mean_weight: Float32Array.of(0, -1e30, -1e30),
      var_weight: Float32Array.of(0, 1.3, -1e30),
      running_mean: Float32Array.of(0, 0),
      running_var: Float32Array.of(1, 1),
    },
    partial: true,
    training,
    x: Float32Array.of(4e-31, 5e-31, 6e-31, 7e-31, 1e29, -2e29, 3e28, -1.2e29),
    dy: Float32Array.of(1e36, 2e36, 3e36, 4e36, 5e36, -1e36, -6e36, 7e36),
    scales: true,
  };
}

for (const training of [false, true]) {
  rangeTests(
    `SwitchNorm2d: a mean below float32's normal range in the mix's unit counts in the near unit (${
      training ? "training" : "evaluation"
    })`,
    async (backend) => {
      const call = meanBelowUnit(training);
      const { got, want } = await runBoth(call, backend);
      // The mean matters here: sum dy x is 12 times sum dy (x - mu).
      const sxm = want.grads.weight[0], s = sxm / 5e5;
      const sx = [0, 1, 2, 3].reduce((a, i) => a + call.dy![i] * call.x[i], 0) * s;
      assert.ok(Math.abs(sx / sxm - 12) < 0.01, `dgamma ${sxm}, sum dy x s ${sx}`);
      assertRangeChecks(call, got, want);
    },
  );
}

rangeTests(
  "attack fuzzer seed 1296: a mean far below the mix's unit in the near unit (evaluation dx)",
  async (backend) => {
    const call = make(1296);
    const { got, want } = await runBoth(call, backend);
    assert.equal(check(call, got, want), null);
  },
);

/**
 * Layout "1d": an element whose x and mixed mean lie far below the mix's unit (wide_element,
 * sn1d_bwd_element.wgsl): x ~1e-10 beside a sample's 1e28 under LN's variance puts the unit near
 * 2^93, where x 2^-e lies below float32's normal range (flushed): dgamma was 0 for 0.1, and 0 for
 * 1e-37 under dy ~1. x - mu is now taken in a unit near the largest of x and the mean's words.
 */
function tinyBesideWide1d(dyScale: number): LayerCall {
  return {
    layer: "1d",
    shape: [2, 2],
    options: { eps: 1e-5 },
    state: {
      weight: Float32Array.of(1, 1),
      bias: Float32Array.of(0, 0),
      mean_weight: Float32Array.of(-1e30, 0),
      var_weight: Float32Array.of(0, 0),
      running_mean: Float32Array.of(0, 0),
      running_var: Float32Array.of(3e37, 1),
    },
    partial: true,
    training: false,
    x: Float32Array.of(1e-10, 1e28, 2e-10, -1e28),
    dy: Float32Array.from([1, 1, 2, -1], (v) => v * dyScale),
    scales: true,
  };
}

for (const dyScale of [1e36, 1]) {
  rangeTests(
    `SwitchNorm1d: an evaluation of x ~1e-10 beside a sample's 1e28 keeps x in dgamma (dy ~${dyScale})`,
    async (backend) => {
      const call = tinyBesideWide1d(dyScale);
      const { got, want } = await runBoth(call, backend);
      // sum dy x / std, std = sqrt(0.5 var_ln + 0.5 running_var) ~ 5e27
      const expected = 5e26 / 5e27 * (dyScale / 1e36);
      assert.ok(
        Math.abs(want.grads.weight[0] / expected - 1) < 1e-3,
        `dgamma ${want.grads.weight[0]}`,
      );
      assertRangeChecks(call, got, want);
    },
  );
}

/**
 * A scaled row whose mixed mean lies far from term 0's (the row's IN mean, of weight 0, which the
 * wide map anchors at: hi), so that hi and lo cancel to mu: (x 2^-e - hi) - lo rounded x - mu to
 * hi's ulp. An evaluation on a running_mean of 0 (weight ~1) and running_var of 0 under eps
 * 1e10 over a row [0, 0, -0.98, -4.65e28] (IN mean -1.2e28, in the unit 2^-29): x - mu was 0 for
 * -0.98, so dgamma was 0 for -4.4e-25 (dy 4.4e-20 there, 0 at -4.65e28) and, under gamma 3e38,
 * y 0 for -2.9e33. Seed 2602's evaluation with its subnormal dy set to 0 is of that kind (dgamma
 * 0 for -4.4e-36, 46x its tolerance; with them, dy -2.8e-42 at -4.65e28 outweighed it).
 */
function meanFarFromAnchor(gamma: number, training: boolean): LayerCall {
  const row = [0, 0, -0.98, -4.65e28], rowDy = [-4.5e-20, 0, 4.44e-20, 0];
  // Training: a second row of the negated values, so that the batch mean is exactly 0 (in the
  // reference's float64 sums too).
  const x = training ? [...row, ...row.map((v) => -v)] : row;
  const dy = training ? [...rowDy, ...rowDy] : rowDy;
  return {
    layer: "2d",
    shape: [training ? 2 : 1, 1, 1, 4],
    options: { eps: 1e10 },
    state: {
      weight: Float32Array.of(gamma),
      bias: Float32Array.of(0),
      mean_weight: Float32Array.of(-1e30, -1e30, 0),
      var_weight: Float32Array.of(-1e30, -1e30, 0),
      running_mean: Float32Array.of(0),
      running_var: Float32Array.of(0),
    },
    partial: true,
    training,
    x: Float32Array.from(x),
    dy: Float32Array.from(dy),
    scales: true,
  };
}

for (const gamma of [1, 3e38]) {
  rangeTests(
    `SwitchNorm2d: an evaluation whose running_mean lies far from the row's IN mean of weight 0 keeps x - mu (gamma ${gamma})`,
    async (backend) => {
      const call = meanFarFromAnchor(gamma, false);
      const { got, want } = await runBoth(call, backend);
      assert.ok(
        Math.abs(want.grads.weight[0] / -4.3512e-25 - 1) < 1e-4,
        `dgamma ${want.grads.weight[0]}`,
      );
      assertRangeChecks(call, got, want);
    },
  );
}

rangeTests(
  "SwitchNorm2d: training whose batch mean lies far from the rows' IN means of weight 0 keeps x - mu in y",
  async (backend) => {
    const call = meanFarFromAnchor(3e38, true);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);

rangeTests(
  "attack fuzzer seed 2602 with its subnormal dy at 0: dy 4.4e-31 times x - mu of -0.98 in dgamma",
  async (backend) => {
    const seeded = make(2602);
    const dy = seeded.dy!.map((v) => Math.abs(v) < 2 ** -126 ? 0 : v);
    const call = { ...seeded, dy };
    const { got, want } = await runBoth(call, backend);
    assert.ok(
      Math.abs(want.evaluation!.grads.weight[0] / -4.3692e-36 - 1) < 1e-4,
      `dgamma ${want.evaluation!.grads.weight[0]}`,
    );
    assert.equal(check(call, got, want), null);
  },
);
