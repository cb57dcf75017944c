/**
 * The logit gradients' dots a_k = sum_r gm_r (mu_k - mu) and b_k = sum_r gv_r (var_k - var) of
 * rows on WebGPU's wide path (shaders/sn_bwd_rows.wgsl `wide_row`, backward_common.wgsl
 * `grad_units`, `grad_add_scaled`): each dot keeps an exponent of its own (Grad.low), and is
 * formed from factors brought to [1, 2), so that none is flushed where the dots span more than
 * float32's range or their factors' product is subnormal. Before, a record's four mean dots
 * shared one unit that put the largest at 2^100 (the variance dots another), and each dot was
 * gm' times a centred mean in one float32 product:
 * - a BN mean of -3e38 under a mean weight just above 2^-252 (its term ~2^226 beyond the IN
 *   dots of rows of 1e-30) flushed the IN and LN dots: `mean_weight`'s gradient -4.6e20 for
 *   9.2e26 (attack fuzzer seed 392, -1.8e21 for 3.7e27);
 * - gm' of 1e-30 (dy ~1e-31 beside subnormal dy, gamma 3e38 over a running_var of 1e30, kept
 *   apart as mantissas) times centred means of 1e-21 was subnormal and flushed: `mean_weight`'s
 *   gradient 0 for 5.3e-29 (attack fuzzer seed 85, 0 for 3.2e-28);
 * - the variance dots likewise: a running_var of 3e38 under a variance weight just above 2^-252
 *   beside IN variances of ~1e-30 left the IN and LN differences 0 in the unit of the largest
 *   variance (backward_common.wgsl `var_diffs`, now lifted) and in the record's one unit:
 *   `var_weight`'s gradient 0.0126 for -0.072.
 * The calls are those seeds' kinds made small; they run on WASM and WebGPU (ignored without an
 * adapter, a failure under CI=true) and are held to the float64 reference with the range tests'
 * tolerances (tests/_range_compare.ts).
 */
import assert from "node:assert/strict";
import { check } from "./fuzz/attack_fuzz.ts";
import { make } from "./fuzz/mean_below_unit_sweep.ts";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { seededRandom } from "../examples/_data.ts";

const f32 = (...v: number[]) => Float32Array.from(v);
/** The logit of a mean weight just above 2^-252 beside two of e^0 (attack fuzzer seed 392). */
const JUST_ABOVE_CUT = -173.9799346923828;

type Call = LayerCall & {
  readonly what: string;
  /** The logit gradient the call is about (far above the tolerances' floor). */
  readonly grad: "mean_weight" | "var_weight";
};

const CALLS: readonly Call[] = [
  {
    what: "evaluation, subnormal dy beside dy ~1e-31, gamma 3e38 over running_var 1e30 (seed 85)",
    grad: "mean_weight",
    layer: "2d",
    shape: [2, 1, 1, 4],
    options: { eps: 1e-30 },
    training: false,
    x: f32(3e-21, -7e-21, 5e-21, 1e-21, -2e-21, 6e-21, -4e-21, 9e-21),
    dy: f32(8e-31, -4e-42, -9e-31, 5e-31, 3e-42, -6e-31, 2e-31, 7e-42),
    state: {
      weight: f32(3e38),
      bias: f32(0),
      mean_weight: f32(0, -1e30, 0),
      var_weight: f32(-1e30, -1e30, 0),
      running_mean: f32(0),
      running_var: f32(1e30),
    },
    partial: true,
    scales: true,
  },
  {
    what: "evaluation, a BN mean of -3e38 under a weight just above 2^-252 beside rows of 1e-30 " +
      "(seed 392)",
    grad: "mean_weight",
    layer: "2d",
    shape: [2, 2, 1, 4],
    options: { eps: 2 ** -126 },
    training: false,
    x: Float32Array.from({ length: 16 }, (_, i) => [-1e-30, -2e-30 / 3, -1e-30 / 3, 0][i >> 2]),
    dy: new Float32Array(16).fill(3e38),
    state: {
      weight: f32(1, 2e-39),
      bias: f32(0, 0),
      mean_weight: f32(0, 0, JUST_ABOVE_CUT),
      var_weight: f32(-1e30, -1e30, 0),
      running_mean: f32(-3e38, 0.5),
      running_var: f32(0, 1),
    },
    partial: true,
    scales: true,
  },
  {
    what: "SwitchNorm3d evaluation, three channels, a BN mean of -3e38 beside rows of ~1e-30",
    grad: "mean_weight",
    layer: "3d",
    shape: [3, 3, 2, 1, 2],
    options: { eps: 2 ** -126 },
    training: false,
    x: Float32Array.from(
      { length: 36 },
      (_, i) =>
        [-1e-30, -2e-30 / 3, -1e-30 / 3, 0, 1e-30, 2e-30, -5e-31, 7e-31, 3e-31][i >> 2] *
        (1 + 0.01 * (i % 4)),
    ),
    dy: Float32Array.from({ length: 36 }, (_, i) => 3e38 * Math.sin(i + 1)),
    state: {
      weight: f32(1, 2e-39, 1),
      bias: f32(0, 0, 0),
      mean_weight: f32(0, 0, JUST_ABOVE_CUT),
      var_weight: f32(-1e30, -1e30, 0),
      running_mean: f32(-3e38, 0.5, 1e-30),
      running_var: f32(0, 1, 1),
    },
    partial: true,
    scales: true,
  },
  {
    // The variance dots alike: var_weight's gradient 0.0126 for -0.072.
    what: "evaluation, a running_var of 3e38 under a weight just above 2^-252 beside IN " +
      "variances of ~1e-30",
    grad: "var_weight",
    layer: "2d",
    shape: [2, 2, 1, 4],
    options: { eps: 2 ** -126 },
    training: false,
    x: Float32Array.from({ length: 16 }, (_, i) => 1e-15 * Math.sin(3 * i + 1)),
    dy: Float32Array.from({ length: 16 }, (_, i) => Math.cos(2 * i)),
    state: {
      weight: f32(1, 1),
      bias: f32(0, 0),
      mean_weight: f32(0, -1e30, -1e30),
      var_weight: f32(0, 0, JUST_ABOVE_CUT),
      running_mean: f32(0, 0),
      running_var: f32(3e38, 1e-30),
    },
    partial: true,
    scales: true,
  },
];

rangeTests(
  "dots far below the largest, or of a subnormal product, reach the logit gradients",
  async (backend) => {
    const failures: string[] = [];
    for (const { what, grad, ...call } of CALLS) {
      const { got, want } = await runBoth(call, backend);
      // The reference's gradient is far above the tolerances' floor: a backend's 0 fails.
      const top = Math.max(...Array.from(want.grads[grad], Math.abs));
      assert.ok(top > 1e-30, `${what}: the reference's ${grad} gradient is ${top}`);
      const err = check(call, got, want);
      if (err !== null) failures.push(`${what}: ${err.slice(0, 300)}`);
    }
    assert.deepEqual(failures, []);
  },
);

/**
 * A sample of rows ~1e-31 (mean off 0), ~1e29 and ~1 (or rows ~1e-20, ~1e20, ~1), one mean
 * weight e^-`logit` beside one of ~1, an evaluation on a running_mean of 0.1: `samples` copies of
 * the sample, so that every LN mean is the same.
 */
function farLnMean(
  logit: number,
  tinyAt: 0 | 2,
  samples: number,
  [small, big, dyScale]: [number, number, number],
): LayerCall {
  const r = seededRandom(Math.round(logit) * 7 + tinyAt);
  const m = 33, c = 3;
  const x: number[] = [], dy: number[] = [];
  for (let k = 0; k < c; k++) {
    for (let i = 0; i < m; i++) {
      x.push(k === 0 ? (r() * 2 - 1 + 0.3) * small : k === 1 ? (r() * 2 - 1) * big : r() * 2 - 1);
      dy.push((r() * 2 - 1) * dyScale);
    }
  }
  const meanWeight = tinyAt === 2 ? f32(0, -1e30, -logit) : f32(-logit, -1e30, 0);
  return {
    layer: "2d",
    shape: [samples, c, 1, m],
    options: { eps: 1e-5 },
    training: false,
    x: Float32Array.from({ length: samples * c * m }, (_, i) => x[i % (c * m)]),
    dy: Float32Array.from({ length: samples * c * m }, (_, i) => dy[i % (c * m)]),
    state: {
      weight: f32(1e-10, 2e-39, -1e30),
      bias: f32(0, 0, 0),
      mean_weight: meanWeight,
      var_weight: f32(0, 5, -1e30),
      running_mean: f32(0.1, 0.1, 0.1),
      running_var: f32(1, 1e-40, 1e-40),
    },
    partial: true,
    scales: true,
  };
}

/**
 * The mean dots about a centre K far from the means they hold: WASM took them about the first LN
 * mean wherever every LN mean lay within 2^-10 of it (`wasm/src/layout.rs` `dots_centre`), so in
 * one sample (or samples alike) of a row ~1e29 beside rows ~1e-31 and ~1 (K ~1e28), mu_k - K was
 * -K for the IN means and the running_mean of 0.1 alike, and `mean_weight`'s gradient was 0: for
 * -7.8e-35 under a BN weight of e^-174 (`mean_below_unit_sweep` seed 280), for -1.8e-2 under an
 * IN weight of e^-90 and for ~1e35 under weights of 1/2 and 0.047 (logits 0 and 3 apart). K is now not
 * taken where it rounds away an IN and BN mean's difference that the plain dots keep.
 */
rangeTests(
  "mean dots of means far from a sample's LN mean reach the logit gradients",
  async (backend) => {
    const calls: [string, number, LayerCall][] = [
      ["mean_below_unit_sweep seed 280 (BN weight e^-174)", 2, make(280)],
    ];
    for (const logit of [0, 3, 90, 120, 150]) {
      for (const tinyAt of [0, 2] as const) {
        for (const samples of [1, 2]) {
          calls.push([
            `weight e^-${logit} at ${tinyAt}, ${samples} sample(s) alike`,
            tinyAt,
            farLnMean(logit, tinyAt, samples, [1e-31, 1e29, 1e36]),
          ]);
        }
      }
    }
    calls.push([
      "weight e^-90, rows ~1e-20 beside ~1e20",
      2,
      farLnMean(90, 2, 1, [1e-20, 1e20, 1]),
    ]);
    const failures: string[] = [];
    for (const [what, k, call] of calls) {
      const { got, want } = await runBoth(call, backend);
      // Far above the range checks' floor (~1e-37): a backend's 0 fails.
      const expected = Math.abs(want.grads.mean_weight[k]);
      assert.ok(expected > 1e-36, `${what}: the reference's gradient is ${expected}`);
      try {
        assertRangeChecks(call, got, want);
      } catch (e) {
        failures.push(`${what}: ${String(e).slice(0, 300)}`);
      }
    }
    assert.deepEqual(failures, []);
  },
);
