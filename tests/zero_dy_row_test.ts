/**
 * Rows whose dy are all 0 beside a huge gamma / std (issue 10): SwitchNorm2d [1, 2, 1, 3] with
 * x [[0, 1, 2], [-4, -1, -1]], an evaluation on running_var [0, 1] with eps 1e-20, LN and BN
 * means weighted 0.5 each, the variance BN's alone, gamma [3e38, 1], dy 1 at flat index 4 and 0
 * elsewhere. Channel 0's dy are all 0, yet its dx is LN's mean term A = Gmu / M = -0.0833 (channel
 * 1's dy reach it through LN's mean). Its gamma s is ~2^160, so the row takes WebGPU's wide dx
 * map (sn_bwd_coef: wide_coef), whose unit U was set by the bound of dy gs with dy in units of 1
 * bounded by 2^40 (nothing told it the row's dy were 0): U ~2^136, A 2^-U flushed, dx 0. WASM
 * was right. sn_bwd_rows now gives such a wide row the dy unit of its largest |dy| where every
 * |dy| lies below 1 (2^-126 for a row of 0), from MX's exponent, which sn_bwd_reduce keeps in
 * the unlisted segments' fourth word (PART_MX).
 *
 * The neighbours below (layouts "2d" and "3d", training and evaluation, gamma 1e30 to 3e38, eps
 * 0 to 1e-20, the zero rows in other channels or several, rows of 3 and 5000, one and two
 * samples) all failed on WebGPU before (dx 0 where the reference's is ~0.02 to 0.11). Layout
 * "1d" forms dx per element (sn1d_bwd_wide_dx, its own dy unit) and passed such calls before.
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";

/** The issue's reproducer. */
function reproducer(eps: number): LayerCall {
  return {
    layer: "2d",
    shape: [1, 2, 1, 3],
    options: { eps },
    state: {
      weight: Float32Array.of(3e38, 1),
      bias: Float32Array.of(0, 0),
      mean_weight: Float32Array.of(-1e30, 0, 0),
      var_weight: Float32Array.of(-1e30, -1e30, 0),
      running_mean: Float32Array.of(0, 0),
      running_var: Float32Array.of(0, 1),
    },
    partial: true,
    training: false,
    x: Float32Array.of(0, 1, 2, -4, -1, -1),
    dy: Float32Array.of(0, 0, 0, 0, 1, 0),
    scales: true,
  };
}

interface ZeroRows {
  readonly layer: "1d" | "2d" | "3d";
  readonly training: boolean;
  readonly gamma: number;
  readonly eps: number;
  /** Row length (layouts "2d", "3d") or batch (layout "1d"). */
  readonly m: number;
  /** Samples (layouts "2d", "3d"). */
  readonly n: number;
  /** The channel of the large gamma, its data constant and its running_var 0 (1e-36 for eps 0). */
  readonly big: number;
  /** Channels whose dy are all 0 (`big` among them). */
  readonly zero: readonly number[];
}

/** Three channels, LN and BN means weighted 0.5 each, the variance BN's alone. */
function zeroRows(s: ZeroRows): LayerCall {
  const c = 3, nd = s.layer !== "1d";
  const n = nd ? s.n : s.m, m = nd ? s.m : 1;
  const shape = s.layer === "1d" ? [n, c] : s.layer === "2d" ? [n, c, 1, m] : [n, c, 1, 1, m];
  const len = n * c * m;
  const chan = (i: number) => nd ? Math.floor(i / m) % c : i % c;
  const pos = (i: number) => nd ? (i % m) + Math.floor(i / (m * c)) * 13 : Math.floor(i / c);
  return {
    layer: s.layer,
    shape,
    options: { eps: s.eps },
    state: {
      weight: Float32Array.from([1, 2, 0.5], (v, k) => k === s.big ? s.gamma : v),
      bias: new Float32Array(c),
      mean_weight: nd ? Float32Array.of(-1e30, 0, 0) : Float32Array.of(0, 0),
      var_weight: nd ? Float32Array.of(-1e30, -1e30, 0) : Float32Array.of(-1e30, 0),
      running_mean: new Float32Array(c),
      running_var: Float32Array.from(
        [1, 1, 1],
        (v, k) => k === s.big ? (s.eps === 0 ? 1e-36 : 0) : v,
      ),
    },
    partial: true,
    training: s.training,
    x: Float32Array.from({ length: len }, (_, i) => {
      const k = chan(i);
      return k === s.big ? 1 : ((pos(i) * 7 + k * 3) % 11) - 5 + k;
    }),
    dy: Float32Array.from({ length: len }, (_, i) => {
      const k = chan(i);
      return s.zero.includes(k) ? 0 : ((pos(i) * 5 + k) % 7) - 3 || 1;
    }),
    scales: true,
  };
}

/** The flat index of the first element of channel `k` (sample 0). */
function firstOf(s: ZeroRows, k: number): number {
  return s.layer === "1d" ? k : k * s.m;
}

for (const eps of [1e-20, 1e-30]) {
  rangeTests(
    `SwitchNorm2d: an evaluation's row of dy 0 under gamma / std ~2^160 (eps ${eps}) gets LN's mean term in dx`,
    async (backend) => {
      const call = reproducer(eps);
      const { got, want } = await runBoth(call, backend);
      for (let i = 0; i < 3; i++) {
        assert.ok(Math.abs(want.dx[i] / -0.08333 - 1) < 1e-3, `dx[${i}] ${want.dx[i]}`);
      }
      assertRangeChecks(call, got, want);
    },
  );
}

const cases: ZeroRows[] = [
  { layer: "2d", training: false, gamma: 1e30, eps: 0, m: 3, n: 1, big: 0, zero: [0] },
  { layer: "2d", training: false, gamma: 3e38, eps: 1e-36, m: 5000, n: 2, big: 0, zero: [0, 2] },
  { layer: "2d", training: false, gamma: 3e38, eps: 1e-20, m: 3, n: 2, big: 2, zero: [2] },
  { layer: "2d", training: true, gamma: 3e38, eps: 1e-20, m: 5000, n: 1, big: 1, zero: [0, 1] },
  { layer: "2d", training: true, gamma: 1e30, eps: 1e-36, m: 3, n: 2, big: 0, zero: [0] },
  { layer: "3d", training: false, gamma: 3e38, eps: 0, m: 3, n: 1, big: 1, zero: [0, 1] },
  { layer: "3d", training: true, gamma: 3e38, eps: 1e-36, m: 5000, n: 2, big: 2, zero: [2] },
];

for (const s of cases) {
  rangeTests(
    `SwitchNorm${s.layer}: rows of dy 0 in channels ${s.zero} beside gamma ${s.gamma} over a std of ~${
      s.eps === 0 ? "1e-18" : Math.sqrt(s.eps).toExponential(0)
    } (${s.training ? "training" : "evaluation"}, ${s.n} x ${s.m}) get LN's mean term in dx`,
    async (backend) => {
      const call = zeroRows(s);
      const { got, want } = await runBoth(call, backend);
      const at = firstOf(s, s.big);
      assert.ok(Math.abs(want.dx[at]) > 1e-3, `the reference's dx[${at}] ${want.dx[at]}`);
      assertRangeChecks(call, got, want);
    },
  );
}

/**
 * A row that sn_bwd_rows sums on its plain path (gamma / std within 2^80: dy in units of 1, its
 * record's dy unit 0) but sn_bwd_coef maps wide because a mixing weight lies below float32's
 * normal range (P_TINY_WEIGHTS): the map bounds the row's dy by 2^40, and under a gamma s of
 * ~2^75 (gamma 1e20 over sqrt(1e-5)) that unit flushed A, LN's mean term (-8.3e-24 from channel
 * 1's dy 1e-22): dx 0 in channel 0. sn_bwd_coef's lower unit where A would fall below 2^-100
 * (low_a) keeps it; these failed with that line undone.
 */
interface TinyWeightRow {
  readonly layer: "2d" | "3d";
  readonly training: boolean;
  readonly gamma: number;
  readonly eps: number;
  /** Channel 1's dy at the one element where it is nonzero (channel 0's dy are all 0). */
  readonly dy: number;
  readonly meanLogits: readonly number[];
  readonly varLogits: readonly number[];
  /** Samples and row length (the issue's x for 1 x 3). */
  readonly n: number;
  readonly m: number;
}

function tinyWeightRow(s: TinyWeightRow): LayerCall {
  const c = 2, len = s.n * c * s.m;
  const chan = (i: number) => Math.floor(i / s.m) % c;
  const issue = s.n === 1 && s.m === 3;
  return {
    layer: s.layer,
    shape: s.layer === "2d" ? [s.n, c, 1, s.m] : [s.n, c, 1, 1, s.m],
    options: { eps: s.eps },
    state: {
      weight: Float32Array.of(s.gamma, 1),
      bias: Float32Array.of(0, 0),
      mean_weight: Float32Array.from(s.meanLogits),
      var_weight: Float32Array.from(s.varLogits),
      running_mean: Float32Array.of(0, 0),
      running_var: Float32Array.of(0, 1),
    },
    partial: true,
    training: s.training,
    x: issue
      ? Float32Array.of(0, 1, 2, -4, -1, -1)
      : Float32Array.from({ length: len }, (_, i) =>
        chan(i) === 0 ? (i % s.m) % 3 : ((i * 7) % 11) - 5),
    dy: issue
      ? Float32Array.of(0, 0, 0, 0, s.dy, 0)
      : Float32Array.from({ length: len }, (_, i) => chan(i) === 1 && i % 5 === 1 ? s.dy : 0),
    scales: true,
  };
}

const ONLY_VAR_BN = [-1e30, -1e30, 0];
const tinyWeightRows: TinyWeightRow[] = [
  // The issue's call: dx -8.3e-24 in channel 0.
  {
    layer: "2d",
    training: false,
    gamma: 1e20,
    eps: 1e-5,
    dy: 1e-22,
    meanLogits: [-95, 0, 0],
    varLogits: ONLY_VAR_BN,
    n: 1,
    m: 3,
  },
  {
    layer: "2d",
    training: false,
    gamma: 1e20,
    eps: 1e-5,
    dy: 1e-30,
    meanLogits: [0, 0, -100],
    varLogits: ONLY_VAR_BN,
    n: 1,
    m: 3,
  },
  {
    layer: "2d",
    training: true,
    gamma: 1e24,
    eps: 1e-5,
    dy: 1e-22,
    meanLogits: [-95, 0, 0],
    varLogits: ONLY_VAR_BN,
    n: 1,
    m: 3,
  },
  {
    layer: "2d",
    training: true,
    gamma: 1e22,
    eps: 1e-20,
    dy: 1e-30,
    meanLogits: [0, 0, -100],
    varLogits: ONLY_VAR_BN,
    n: 1,
    m: 3,
  },
  {
    layer: "3d",
    training: false,
    gamma: 1e20,
    eps: 1e-5,
    dy: 1e-22,
    meanLogits: [-95, 0, 0],
    varLogits: [0, -100, 30],
    n: 2,
    m: 7,
  },
];

for (const s of tinyWeightRows) {
  rangeTests(
    `SwitchNorm${s.layer}: a plain row of dy 0 under gamma ${
      s.gamma.toExponential(0)
    } (eps ${s.eps}, ${
      s.training ? "training" : "evaluation"
    }) with a mixing weight below float32's normal range (logits ${s.meanLogits} / ${s.varLogits}) gets LN's mean term in dx`,
    async (backend) => {
      const call = tinyWeightRow(s);
      const { got, want } = await runBoth(call, backend);
      // Well above the range checks' floor (~9.4e-38): the reference's dx in channel 0.
      assert.ok(Math.abs(want.dx[0]) > s.dy * 1e-3, `the reference's dx[0] ${want.dx[0]}`);
      assertRangeChecks(call, got, want);
    },
  );
}
