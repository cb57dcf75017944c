/**
 * SwitchNorm1d (and a running_mean's class in layout "nd") at centred values x - mu far below 1
 * in their unit, on WebGPU (WASM passed every case before): tests/fuzz/sn1d_wide_small_xc_sweep.ts
 * 1 to 1000 failed 12, now 0, and neighbour probes found two more classes. Each block below names
 * its class and what it gave; its cases failed on WebGPU before its fix, but for the neighbours
 * named as passing (NUMERICS.md, "SwitchNorm1d's
 * statistics and wide elements"). Expected values are the float64 reference's, and each case
 * asserts that the value it is about lies well above the range checks' floor.
 *
 * First: evaluations whose mean is a `running_mean` at most 2^-100, subnormal ones included
 * (8 of the sweep's 12: dgamma -1.7e-4 for 0.068 under dy ~7e36, seed 101; y of seeds 515 and
 * 632): sn_group_stats held such a mean in the unit 1 of its `running_var`, where the GPU read a
 * subnormal one as 0. x - mu of data 0 beside it is then the mean itself, and dgamma -rm sum(dy)
 * under |dy| ~1e37 is up to ~0.1.
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { make } from "./fuzz/sn1d_wide_small_xc_sweep.ts";

/**
 * An evaluation of layout "1d" [2, 2] or "nd" [2, 2, 1, 2] of data 0 in channel 0, whose
 * running_mean is `rm`, under `running_var` 1, dy ~1e37 and mean weights BN-heavy (`equal`:
 * equal, each mean's share then half of it). Passing before: rm 2e-36 (normal, now wide too), and
 * 1e-45 under equal weights in layout "nd".
 */
function tinyRunningMean(layer: "1d" | "2d", rm: number, equal: boolean): LayerCall {
  const nd = layer === "2d";
  const k = nd ? 3 : 2;
  const logits = (bn: number) => Float32Array.from({ length: k }, (_, i) => i === k - 1 ? bn : 0);
  const len = nd ? 8 : 4;
  return {
    layer,
    shape: nd ? [2, 2, 1, 2] : [2, 2],
    options: { eps: 1e-5 },
    state: {
      weight: Float32Array.of(1, 1),
      bias: new Float32Array(2),
      mean_weight: equal ? new Float32Array(k) : logits(87),
      var_weight: logits(87),
      running_mean: Float32Array.of(rm, 0),
      running_var: Float32Array.of(1, 1),
    },
    partial: true,
    training: false,
    // Channel 0 all 0 (dgamma -rm sum(dy)), channel 1 +-2e-41.
    x: Float32Array.from({ length: len }, (_, i) => {
      const ch = nd ? Math.floor(i / 2) % 2 : i % 2;
      return ch === 0 ? 0 : (i % 3 ? 1 : -1) * 2e-41;
    }),
    dy: Float32Array.from({ length: len }, (_, i) => (i % 2 ? -1 : 1) * 7e36 * (1 + i / 8)),
    scales: true,
  };
}

for (const layer of ["1d", "2d"] as const) {
  for (const rm of [1e-38, -5e-39, 1e-45, 2e-36]) {
    for (const equal of [false, true]) {
      rangeTests(
        `SwitchNorm${layer}: an evaluation on a running_mean of ${rm} (mean weights ${
          equal ? "equal" : "BN-heavy"
        }) beside data of 0 under dy ~7e36 gives the reference's dgamma`,
        async (backend) => {
          const call = tinyRunningMean(layer, rm, equal);
          const { got, want } = await runBoth(call, backend);
          // dgamma of channel 0 is -rm sum(dy) (~1e-9 to 0.1): far above the checks' floor.
          assert.ok(Math.abs(want.grads.weight[0]) > 1e-10, `dgamma ${want.grads.weight[0]}`);
          assertRangeChecks(call, got, want);
        },
      );
    }
  }
}

for (const seed of [43, 101, 170, 176, 515, 632, 669, 915]) {
  rangeTests(
    `sn1d_wide_small_xc_sweep seed ${seed}: an evaluation on a running_mean of 1e-38`,
    async (backend) => {
      const call = make(seed);
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}

/**
 * An evaluation of layout "1d" [2, 2] whose samples are 1 and 1 + 2^-23 (x - mu_LN +-6e-8 in
 * LN's unit 1) under LN weights e^-87 (1.6e-38; `lnLogit` apart from BN's 0): channel 1's
 * gamma 3e38 over a running std of 1e-10 makes its elements wide and its gv ~1.5e47 (x - mu ~1
 * there, running_mean 0), so dx's LN variance term w_var gv 2 (x - mu_LN) is ~+-290 in channel
 * 0, whose own gamma s dy is 0. sn1d_bwd_wide_dx took x - mu_LN with its exponent floored at
 * 0: w_var (x - mu_LN) ~1e-45 was flushed (dx -256 for -250 in sweep seed 435).
 */
function smallLnCentred(lnLogit: number, gamma1: number): LayerCall {
  const one = 1 + 2 ** -23;
  return {
    layer: "1d",
    shape: [2, 2],
    options: { eps: 1e-30 },
    state: {
      weight: Float32Array.of(1, gamma1),
      bias: new Float32Array(2),
      mean_weight: Float32Array.of(lnLogit, 0),
      var_weight: Float32Array.of(lnLogit, 0),
      running_mean: Float32Array.of(1, 0),
      running_var: Float32Array.of(1, 1e-20),
    },
    partial: true,
    training: false,
    x: Float32Array.of(1, one, one, 1),
    dy: Float32Array.of(0, -1e-21, 0, 2e-21),
    scales: true,
  };
}

for (const [lnLogit, gamma1] of [[-87, 3e38], [-80, 3e38], [-87, -1e30], [-50, 3e38]]) {
  rangeTests(
    `SwitchNorm1d: an evaluation of samples 1 and 1 + 2^-23 under LN weights e^${lnLogit} and gamma ${gamma1} over a std of 1e-10 gives the reference's dx`,
    async (backend) => {
      const call = smallLnCentred(lnLogit, gamma1);
      const { got, want } = await runBoth(call, backend);
      // dx of channel 0 is the LN variance term alone: far above the checks' floor.
      assert.ok(Math.abs(want.dx[0]) > 1e-20, `dx ${want.dx[0]}`);
      assertRangeChecks(call, got, want);
    },
  );
}

for (const seed of [181, 220, 435]) {
  rangeTests(
    `sn1d_wide_small_xc_sweep seed ${seed}: an evaluation of samples a few float32 spacings about an offset, an LN weight near 2^-126`,
    async (backend) => {
      const call = make(seed);
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}

/**
 * An evaluation of layout "1d" [2, 2] whose channel 0 holds `x0` (0 or 1e-36) on a running_mean
 * `rm` of 1e-30 or 1e-20 (2^60 or more below the unit 1 of the unscaled mix, yet above 2^-100),
 * under running_var 1 and mean weights `meanLogits`: its elements are wide (dy beyond 2^40, or
 * s^2 gamma dy below 2^-120 under gamma 1e-36), and wide_element took x - mu as x wherever
 * fine_mean held the mean (x0 1e-36 under dy 1e38: dgamma 150 for -1.5e8; x0 0: dgamma 0).
 */
function smallXBesideMean(
  gamma0: number,
  dy0: number,
  x0: number,
  rm: number,
  meanLogits: number[],
): LayerCall {
  return {
    layer: "1d",
    shape: [2, 2],
    options: { eps: 1e-5 },
    state: {
      weight: Float32Array.of(gamma0, 1),
      bias: new Float32Array(2),
      mean_weight: Float32Array.from(meanLogits),
      var_weight: Float32Array.from(meanLogits),
      running_mean: Float32Array.of(rm, 0),
      running_var: Float32Array.of(1, 1),
    },
    partial: true,
    training: false,
    x: Float32Array.of(x0, 1, x0, -1),
    dy: Float32Array.of(dy0, 1, dy0 / 2, -1),
    scales: true,
  };
}

for (
  const [gamma0, dy0, x0, rm, meanLogits] of [
    [1, 1e38, 1e-36, 1e-30, [0, 87]],
    [1, 1e38, 0, 1e-20, [-1e30, 0]],
    [1, 1e20, 1e-36, 1e-20, [0, 87]],
    [1e-36, 1, 0, 1e-30, [-1e30, 0]],
    [1e-36, 1, 1e-36, 1e-20, [0, 87]],
    [1, 1e38, 1e-36, 1e-20, [0, 0]],
  ] as [number, number, number, number, number[]][]
) {
  rangeTests(
    `SwitchNorm1d: an evaluation of x ${x0} on a running_mean of ${rm} (mean logits ${meanLogits}) under gamma ${gamma0} and dy ${dy0} gives the reference's dgamma`,
    async (backend) => {
      const call = smallXBesideMean(gamma0, dy0, x0, rm, meanLogits);
      const { got, want } = await runBoth(call, backend);
      // dgamma of channel 0 is ~-1.5 dy0 rm: far above the checks' floor.
      assert.ok(Math.abs(want.grads.weight[0]) > 1e-31, `dgamma ${want.grads.weight[0]}`);
      assertRangeChecks(call, got, want);
    },
  );
}

/**
 * An evaluation of layout "1d" [2, 3] whose channel 0 holds 0 on a running_mean of 0 under a
 * running_var of 3e38 (std 2^64), its mean mixed with an LN weight of e^`lnLogit` (e^-104
 * ~2^-150) over samples whose LN mean is ~2^-34: x - mu ~2^-184, xhat ~2^-248, and dgamma under
 * dy ~3e38 ~1e-36, ~12x the range checks' floor. wide_element held dgamma's unit at least
 * 2^-120 of dy's (2^128), where 2^-248 lay below float32's normal range: dgamma 0.
 */
function tinyXhat(lnLogit: number, dy0: number, gamma0: number): LayerCall {
  const a = 2 ** -33;
  return {
    layer: "1d",
    shape: [2, 3],
    options: { eps: 1e-5 },
    state: {
      weight: Float32Array.of(gamma0, 1, 1),
      bias: new Float32Array(3),
      mean_weight: Float32Array.of(lnLogit, 0),
      var_weight: Float32Array.of(-1e30, 0),
      running_mean: new Float32Array(3),
      running_var: Float32Array.of(3e38, 1, 1),
    },
    partial: true,
    training: false,
    x: Float32Array.of(0, a, 0, 0, 2 * a, 0),
    dy: Float32Array.of(dy0, 1, 1, 0.75 * dy0, -1, 1),
    scales: true,
  };
}

for (
  const [lnLogit, dy0, gamma0] of [[-104, 3e38, 1], [-104, 1e38, 1], [-104, 3e38, 1e-36], [
    -95,
    3e38,
    1,
  ]]
) {
  rangeTests(
    `SwitchNorm1d: an evaluation of xhat ~2^-248 (LN mean weight e^${lnLogit}, running_var 3e38) under dy ${dy0} and gamma ${gamma0} gives the reference's dgamma`,
    async (backend) => {
      const call = tinyXhat(lnLogit, dy0, gamma0);
      const { got, want } = await runBoth(call, backend);
      assert.ok(Math.abs(want.grads.weight[0]) > 3e-37, `dgamma ${want.grads.weight[0]}`);
      assertRangeChecks(call, got, want);
    },
  );
}

/**
 * A training step of layout "1d" [3, 2] whose channel 1 is one value X (its BN mean, the mix's
 * anchor under BN's mean weight ~1) beside channel 0 a few float32 spacings about X, under an
 * LN mean weight of e^-(87 - `lnLogit`) (1.6e-38 for 0, 2.4e-36 for 5) and gamma 3e38 over a
 * mixed std ~2^-23 of X: x - mu of channel 1 is LN's share w_LN (X - mu_LN), ~2^-148 of X, which
 * the wide map's lo held below float32's normal range: y -5.0, -3.3 or 0 for -3.5 (sweep seed
 * 206); 24 of 64 such steps (X -3e20 to 1e-10) failed.
 */
function lnShareBelowNormal(X: number, lnLogit: number, training: boolean): LayerCall {
  const u = (k: number) => Math.fround(X * (1 + k * 2 ** -23));
  return {
    layer: "1d",
    shape: [3, 2],
    options: { eps: 2 ** -126 },
    state: {
      weight: Float32Array.of(1, 3e38),
      bias: new Float32Array(2),
      mean_weight: Float32Array.of(lnLogit, 87),
      var_weight: Float32Array.of(28, -4),
      running_mean: Float32Array.of(X, X),
      running_var: Float32Array.of(1, 1e-20),
    },
    partial: true,
    training,
    x: Float32Array.of(u(0), u(2), u(-4), u(2), u(1), u(2)),
    dy: Float32Array.of(1, 3e38, 1, -1e38, 1, 2e38),
    scales: true,
  };
}

for (
  const [X, lnLogit, training] of [
    [-3e20, 0, true],
    [1, 0, true],
    [1e30, 5, true],
    [1e-10, 1, true],
    [1, 0, false],
  ] as [number, number, boolean][]
) {
  rangeTests(
    `SwitchNorm1d: ${
      training ? "a training step" : "an evaluation"
    } of a constant channel of ${X} beside LN's share e^${
      lnLogit - 87
    } (X - mu_LN) under gamma 3e38 gives the reference's y and gradients`,
    async (backend) => {
      const call = lnShareBelowNormal(X, lnLogit, training);
      const { got, want } = await runBoth(call, backend);
      assert.ok(Math.abs(want.y[1]) > 1, `y ${want.y[1]}`);
      assertRangeChecks(call, got, want);
    },
  );
}

rangeTests(
  "sn1d_wide_small_xc_sweep seed 206: a training step of constant channels of -3e20 under an LN mean weight of e^-87",
  async (backend) => {
    const call = make(206);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);
