/**
 * Rows whose s^2 S2 (s = 1 / sqrt(var + eps), S2 = sum dy (x - mu)) passes float32's range while
 * gamma s^3 S2, dL/dvar, fits under a small gamma (issue 10; attack fuzzer seed 19475 on WebGPU,
 * NUMERICS.md "Steps of gv past float32"): a mix of variance ~0 under eps 1e-30 (s ~1e15) whose
 * mean lies ~1e10 from the row's data (S2 ~1e10), gamma 1e-20. WebGPU's pair rows formed gv as
 * gamma s (s (s S2')), whose s^2 S2' ~1e40 overflowed: gv's pair became NaN, and every variance
 * dot with it (`var_weight`'s gradient NaN for 0). Layout "1d" forms gv's factor s^2 gamma dy
 * per element, gamma before dy: s^2 gamma below float32's normal range (s ~1e-10 over samples
 * of 1e10, gamma 1e-24: 1e-44, subnormal) while dy ~1e8 brings the product back lost its bits
 * (dx 34x its tolerance; tests/fuzz/gv_steps_sweep.ts seeds 442, 296). Each case is held to the
 * float64 reference with the range tests' checks.
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { make as sweepMake } from "./fuzz/gv_steps_sweep.ts";

/** dy ~ +-1, fixed. */
function dys(n: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => (((i * 37) % 29) - 14) / 14);
}

/** Rows of `m` floats, row r all `values[r]` plus `spread` times a small pattern. */
function rows(values: readonly number[], m: number, spread = 0): Float32Array {
  return Float32Array.from({ length: values.length * m }, (_, i) => {
    const r = Math.floor(i / m);
    return values[r] + spread * (((i * 5) % 7) - 3);
  });
}

/**
 * The fuzzer's call: SwitchNorm3d [2, 1, 2, 1, 8] evaluated on running_mean 1, running_var
 * 1e-30, rows constant (-1e10 and -6.667e9), BN's variance weight e^-175 (below 2^-252: WebGPU
 * takes it as 0), the rest on LN.
 */
function fuzzerSeed(): LayerCall {
  return {
    layer: "3d",
    shape: [2, 1, 2, 1, 8],
    options: { eps: 1e-30, momentum: 0 },
    state: {
      weight: Float32Array.of(1e-20),
      bias: Float32Array.of(-3e38),
      mean_weight: Float32Array.of(1.3, 0, 1.3),
      var_weight: Float32Array.of(-87, 0, -175.36624145507812),
      running_mean: Float32Array.of(1),
      running_var: Float32Array.of(1e-30),
    },
    partial: true,
    training: false,
    x: rows([-1e10, -6.666666496e9], 16),
    dy: dys(32),
    scales: true,
  };
}

/**
 * Training, SwitchNorm2d [2, 1, 1, 8]: constant rows of 2048 and -2048 (IN's and LN's variances
 * 0, BN's 4.5e6), the mean on BN (0), the variance on IN (and LN) with BN's weight below 2^-252
 * (`lnCut`: LN's too), eps 2^-88 (s 2^44), dy ~3e10 (S2 ~2^44): s^2 S2 ~2^132 under gamma 1e-25.
 */
function training(lnCut: boolean): LayerCall {
  return {
    layer: "2d",
    shape: [2, 1, 1, 8],
    options: { eps: 2 ** -88 },
    state: {
      weight: Float32Array.of(1e-25),
      bias: Float32Array.of(0.5),
      mean_weight: Float32Array.of(-20, -20, 0),
      var_weight: Float32Array.of(0, lnCut ? -200 : 0, -200),
    },
    partial: true,
    training: true,
    x: rows([2048, -2048], 8),
    dy: dys(16).map((v) => 3e10 * v),
    scales: true,
  };
}

/**
 * An evaluation of SwitchNorm2d [2, 1, 4, 4] with the variance on BN (running_var 1e-30) and the
 * IN and LN variance weights e^-100 or below 2^-252 (`cut`), rows of ~1 spread ~1e-6 (IN and LN
 * variances ~1e-12: their dots are not 0), the mean on running_mean -1e10.
 */
function spreadRows(cut: boolean): LayerCall {
  const v = cut ? -180 : -100;
  return {
    layer: "2d",
    shape: [2, 1, 4, 4],
    options: { eps: 1e-30 },
    state: {
      weight: Float32Array.of(2e-20),
      bias: Float32Array.of(0),
      mean_weight: Float32Array.of(-20, -20, 0),
      var_weight: Float32Array.of(v, v, 0),
      running_mean: Float32Array.of(-1e10),
      running_var: Float32Array.of(1e-30),
    },
    partial: true,
    training: false,
    x: rows([1, 1.5], 16, 3e-7),
    dy: dys(32),
    scales: true,
  };
}

/**
 * SwitchNorm1d [6, 3] (layout "1d"), every x -1e10: an evaluation with the mean on BN
 * (running_mean 1, 2, 3) and the variance on LN (0) with BN's weight cut; or training with
 * columns of -1e10, 2e9 and 6e9 (BN variances 0), the mean on LN and the variance on BN with
 * LN's weight cut.
 */
function switchNorm1d(training: boolean): LayerCall {
  return {
    layer: "1d",
    shape: [6, 3],
    options: { eps: 1e-30 },
    state: {
      weight: Float32Array.of(1e-20, 3e-20, 1e-20),
      bias: Float32Array.of(0, 1, 0),
      mean_weight: training ? Float32Array.of(5, -5) : Float32Array.of(-5, 5),
      var_weight: training ? Float32Array.of(-180, 0) : Float32Array.of(0, -180),
      running_mean: Float32Array.of(1, 2, 3),
      running_var: Float32Array.of(1e-30, 1e-30, 1e-30),
    },
    partial: true,
    training,
    x: Float32Array.from({ length: 18 }, (_, i) => training ? [-1e10, 2e9, 6e9][i % 3] : -1e10),
    dy: dys(18),
    scales: true,
  };
}

const cases: [string, () => LayerCall][] = [
  ["the fuzzer's evaluation of constant rows, BN's variance weight cut", fuzzerSeed],
  ["training on constant rows, BN's variance weight cut", () => training(false)],
  ["training on constant rows, LN's and BN's variance weights cut", () => training(true)],
  [
    "an evaluation of rows of spread 1e-6, IN and LN variance weights e^-100",
    () => spreadRows(false),
  ],
  ["an evaluation of rows of spread 1e-6, IN and LN variance weights cut", () => spreadRows(true)],
  ["SwitchNorm1d's evaluation, BN's variance weight cut", () => switchNorm1d(false)],
  ["SwitchNorm1d's training, LN's variance weight cut", () => switchNorm1d(true)],
  ["SwitchNorm1d's evaluation where s^2 gamma is subnormal (sweep seed 442)", () => sweepMake(442)],
  ["SwitchNorm1d's training where s^2 gamma is subnormal (sweep seed 296)", () => sweepMake(296)],
];

for (const [name, make] of cases) {
  rangeTests(`gv formed in steps that leave float32 while gv fits: ${name}`, async (backend) => {
    const call = make();
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  });
}
