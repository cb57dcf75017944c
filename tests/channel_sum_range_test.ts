/**
 * Gradient sums over a channel's samples (dgamma, GmB, GvB) or a sample's channels (GmL, GvL, the
 * logit dots) whose terms each fit float32 and whose float64 sum does too, but whose float32
 * partial sums need not: terms near 1e38 that cancel across rows. SwitchNorm1d on WebGPU summed an
 * element's dy xhat, gm, gv and dots over a tile line of 32 in float32 (sn1d_bwd_reduce), and the
 * lines over a group (sn_bwd_groups), with no bound on the element's size (an evaluation's
 * xhat reaches ~2^88 under a variance weight of 2^-100, s 2^50): dgamma +Infinity or NaN where the
 * reference has ~1e38, and var_weight's gradient and a sample's every dx NaN. Such lines are now
 * summed again of wide elements, whose records carry exponents (sn1d_bwd_element.wgsl:
 * line_sums_wide, line_again). Layout "nd" bounds a plain row's dgamma = s S2 (steps_wide, dy
 * and x - mu within their in-range bounds), so that only a channel of ~2^26 elements could reach
 * float32's range there, and rows past that bound are wide, their dgamma in a unit of its own:
 * the "nd" call here, rows of dgamma ~8.5e37 that cancel, passed before and passes now; the
 * bound sn_bwd_rows.wgsl adds for such channels is not run here (plain rows reach it only in
 * calls of 2^22 elements or more, NUMERICS.md).
 * The calls run on WASM (float64 sums) and WebGPU (ignored without an adapter, a failure under
 * CI=true) and are held to the float64 reference with the range tests' tolerances
 * (tests/_range_compare.ts).
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";

const f32 = (...v: number[]) => Float32Array.from(v);
/** A logit whose softmax weight is exactly 0 beside logits near 0. */
const OFF = -1e30;
/** A variance logit of weight 2^-100 beside one of 0. */
const TINY = -100 * Math.LN2;

interface Case {
  readonly what: string;
  readonly call: LayerCall;
}

/**
 * A SwitchNorm1d call on [n, c], eps 0: x and dy by sample r and channel j, gamma `gamma` in
 * every channel, running buffers 0 and 1, the logits given.
 */
function call1d(
  n: number,
  c: number,
  training: boolean,
  x: (r: number, j: number) => number,
  dy: (r: number, j: number) => number,
  gamma: number,
  meanLogits: number[],
  varLogits: number[],
): LayerCall {
  const at = (f: (r: number, j: number) => number) =>
    Float32Array.from({ length: n * c }, (_, i) => f(Math.floor(i / c), i % c));
  return {
    layer: "1d",
    shape: [n, c],
    options: { eps: 0 },
    training,
    x: at(x),
    dy: at(dy),
    state: {
      weight: new Float32Array(c).fill(gamma),
      bias: new Float32Array(c).fill(0.1),
      mean_weight: f32(...meanLogits),
      var_weight: f32(...varLogits),
      running_mean: new Float32Array(c),
      running_var: new Float32Array(c).fill(1),
    },
    scales: true,
  };
}

/**
 * A training step of 256 samples, two channels: even samples at a = 2^-20.9 beside a + ulp (an LN
 * variance of ~1e-27, s ~2^44.5 under LN's variance weight), odd samples at 2^40 and 2^40 + 2^30
 * `far` (their LN groups scaled: |x| beyond 2^40) or - 2^30, the mean BN's (~2^39): xhat ~2^82.5
 * and, under dy 2^40 at the even samples, dy xhat ~2^122.5. Row tiles of 32 alternate dy's sign
 * (1, then -0.9): each tile line's dgamma is ~-1e38, four of them of one sign ~-4e38.
 */
function trainingTiles(far: boolean): LayerCall {
  const a = 2 ** -20.9, b = 2 ** 40, odd = far ? 2 ** 30 : -(2 ** 30);
  return call1d(
    256,
    2,
    true,
    (r, j) => (r % 2 ? b + j * odd : a * (1 + j * 2 ** -23)),
    (r) => (r % 2 ? 0 : (Math.floor(r / 32) % 2 === 0 ? 1 : -0.9) * 2 ** 40),
    2 ** -110,
    [OFF, 0],
    [0, OFF],
  );
}

/**
 * Layout "nd": an evaluation of [10, 1, 1, 2], rows of constant x 2^38 (IN variance 0) under a
 * BN variance weight of 2^-100 on a running_var of 1 (s 2^50) and BN's mean weight on a
 * running_mean of 0: each row's dgamma 2 dy xhat ~8.5e37 under dy +-2^37, five of one sign and
 * four of the other. steps_wide sends such rows to wide_row, whose dgamma takes a unit of its own.
 */
function ndWideRows(): LayerCall {
  const n = 10, m = 2, signs = [1, 1, 1, 1, 1, -1, -1, -1, -1, 0];
  return {
    layer: "2d",
    shape: [n, 1, 1, m],
    options: { eps: 0 },
    training: false,
    x: new Float32Array(n * m).fill(2 ** 38),
    dy: Float32Array.from({ length: n * m }, (_, i) => signs[Math.floor(i / m)] * 2 ** 37),
    state: {
      weight: f32(2 ** -120),
      bias: f32(0.1),
      mean_weight: f32(OFF, OFF, 0),
      var_weight: f32(0, OFF, TINY),
      running_mean: f32(0),
      running_var: f32(1),
    },
    scales: true,
  };
}

const CASES: readonly Case[] = [
  {
    // dgamma +Infinity for 8.5e37 (a column line: 5 x 8.5e37 passed float32's range).
    what: "SwitchNorm1d evaluation, a column of ten samples of dy xhat +-8.5e37",
    call: call1d(
      10,
      2,
      false,
      () => 2 ** 38,
      (r) => [1, 1, 1, 1, 1, -1, -1, -1, -1, 0][r] * 2 ** 38,
      2 ** -120,
      [OFF, 0],
      [0, TINY],
    ),
  },
  {
    // var_weight's gradient NaN for +-3.4e7 and every dx NaN for ~1e-3 (GvL, a row line of gv
    // ~8.5e37 of four of one sign, passed float32's range).
    what: "SwitchNorm1d evaluation, a sample of eight channels of gv +-8.5e37",
    call: call1d(
      1,
      8,
      false,
      () => 2 ** 38,
      (_r, j) => [1, 1, 1, 1, -1, -1, -1, -0.5][j] * 2 ** 38,
      2 ** -98,
      [0, 0],
      [0, TINY],
    ),
  },
  {
    // dgamma NaN for -4.8e37 in both channels: each tile line fit, their sum over the row tiles
    // did not.
    what: "SwitchNorm1d training, 32-row lines of dgamma ~1e38 summed over eight row tiles",
    call: trainingTiles(false),
  },
  {
    // dgamma NaN for -4.8e37: the lines carried exponents (wide elements at the odd samples,
    // dy 0) while the even samples' terms stayed in units of 1.
    what: "SwitchNorm1d training, lines of wide elements of dy 0 beside dy xhat ~2^122.5",
    call: trainingTiles(true),
  },
  {
    // Passed before: layout "nd" rows of such a dgamma are wide.
    what: "SwitchNorm2d evaluation, ten rows of dgamma +-8.5e37",
    call: ndWideRows(),
  },
];

rangeTests(
  "gradient sums whose float32 partial sums pass float32's range give the reference's finite gradients",
  async (backend) => {
    const failures: string[] = [];
    for (const { what, call } of CASES) {
      const { got, want } = await runBoth(call, backend);
      // The reference's results are finite: an infinity or NaN of a backend fails.
      for (const key of ["weight", "mean_weight", "var_weight"] as const) {
        assert.ok(want.grads[key].every(Number.isFinite), `${what}: the reference's ${key}`);
      }
      assert.ok(want.dx.every(Number.isFinite), `${what}: the reference's dx`);
      try {
        assertRangeChecks(call, got, want);
      } catch (e) {
        failures.push(`${what}: ${String(e).slice(0, 300)}`);
      }
    }
    assert.deepEqual(failures, []);
  },
);
