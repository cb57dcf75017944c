/**
 * A dy far below its row's largest |dy| (session 47, helper-200; found by helper-196's probe):
 * WebGPU's sn_bwd_wide_dx (layout "nd") formed dy[i] 2^-D gs' in the row's dy unit 2^D, a dy
 * below float32's normal range there lifted by at most 2^64, and added it to the row's other
 * terms in the row's dx unit 2^U: a dy more than ~2^190 below the row's largest |dy| gave a term
 * of 0 (SwitchNorm2d evaluation under BN alone, dy 1.565e38 beside -2.05e-28: dx 0 for the
 * reference's 1.08e-23, ~5000x its tolerance; lavapipe and SwiftShader alike, WASM right).
 * The evaluation rows here put the tiny dy's term alone in dx (BN alone: gamma dy / std), or
 * beside mean and variance terms (IN and LN weights of e^-190 .. e^-120, whose terms are those
 * of the row's huge dy times such a weight); the training rows (whose mean terms carry the huge
 * dy, so that the tiny dy's term is within tolerance) and layout "1d" (sn1d_bwd_wide_dx: each
 * dy in a unit of its own, right before) are members of the class checked alike. (Left open:
 * a mean term A far below the row's unit, NUMERICS.md.)
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";

interface Row {
  x: number[];
  dy: number[];
  gamma: number;
  runningVar: number;
  runningMean?: number;
  meanWeight?: number[];
  varWeight?: number[];
}

const BN_ALONE = [-1e30, -1e30, 0];

function ndCall(layer: "2d" | "3d", r: Row, training: boolean, samples = 1): LayerCall {
  const m = r.x.length / samples;
  return {
    layer,
    shape: layer === "2d" ? [samples, 1, 1, m] : [samples, 1, 1, 1, m],
    options: { eps: 0 },
    state: {
      weight: Float32Array.of(r.gamma),
      bias: new Float32Array(1),
      mean_weight: Float32Array.from(r.meanWeight ?? BN_ALONE),
      var_weight: Float32Array.from(r.varWeight ?? BN_ALONE),
      running_mean: Float32Array.of(r.runningMean ?? 0),
      running_var: Float32Array.of(r.runningVar),
    },
    partial: true,
    training,
    x: Float32Array.from(r.x),
    dy: Float32Array.from(r.dy),
    scales: true,
  };
}

/** Layout "1d": r.x as [N, 2] (two channels, gamma on both). */
function call1d(r: Row, training: boolean): LayerCall {
  const n = r.x.length / 2;
  const w = (v?: number[]) => Float32Array.from(v ? [v[1], v[2]] : [-1e30, 0]);
  return {
    layer: "1d",
    shape: [n, 2],
    options: { eps: 0 },
    state: {
      weight: Float32Array.of(r.gamma, r.gamma),
      bias: new Float32Array(2),
      mean_weight: w(r.meanWeight),
      var_weight: w(r.varWeight),
      running_mean: Float32Array.of(r.runningMean ?? 0, r.runningMean ?? 0),
      running_var: Float32Array.of(r.runningVar, r.runningVar),
    },
    partial: true,
    training,
    x: Float32Array.from(r.x),
    dy: Float32Array.from(r.dy),
    scales: true,
  };
}

/** A deterministic generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const REPRO: Row = {
  x: [1, 2, 3, 4],
  dy: [1.565e38, 15.6, -2.05e-28, 9.47e-18],
  gamma: -1.18e22,
  runningVar: 5.04e34,
};

/** Rows of 8 with one dy of 1e30 .. 3e38 and the rest 1e-38 .. 1e-8 (and one ordinary). */
function randomRows(seed: number, count: number): Row[] {
  const r = rng(seed);
  const sign = () => (r() < 0.5 ? -1 : 1);
  const rows: Row[] = [];
  for (let k = 0; k < count; k++) {
    const dy = Array.from({ length: 8 }, () => sign() * 10 ** (-38 + 30 * r()));
    dy[k % 8] = sign() * 10 ** (30 + 8.4 * r());
    dy[(k + 3) % 8] = sign() * 10 ** (4 * r());
    rows.push({
      x: Array.from({ length: 8 }, () => sign() * 10 ** (6 * r() - 3)),
      dy,
      gamma: sign() * 10 ** (30 * r() - 5),
      runningVar: 10 ** (70 * r() - 35),
      runningMean: sign() * r(),
    });
  }
  return rows;
}

const EVAL_CASES: [string, Row][] = [
  ["the repro: dy -2.05e-28 beside 1.565e38 under gamma -1.18e22, running_var 5.04e34", REPRO],
  ["dy 1e-38 beside 3e38, gamma 1, running_var 1", {
    x: [0.5, -1, 2, 3],
    dy: [3e38, 1e-38, -2e-35, 1],
    gamma: 1,
    runningVar: 1,
  }],
  ["dy 1e-30 beside -1e35, gamma 1e25, running_var 1e-20", {
    x: [0.5, -1, 2, 3],
    dy: [-1e35, 1e-30, 3e-25, -7e-12],
    gamma: 1e25,
    runningVar: 1e-20,
  }],
  ["the repro's row beside mean and variance terms of IN (e^-150) and LN (e^-120)", {
    ...REPRO,
    meanWeight: [-150, -1e30, 0],
    varWeight: [-1e30, -120, 0],
  }],
  ["dy 1e-38 beside 3e38 with IN mean and variance weights e^-190", {
    x: [0.5, -1, 2, 3],
    dy: [3e38, 1e-38, -2e-35, 1],
    gamma: 1,
    runningVar: 1,
    meanWeight: [-190, -1e30, 0],
    varWeight: [-190, -1e30, 0],
  }],
  ...randomRows(47200, 12).map((r, i): [string, Row] => [`random row ${i} (seed 47200)`, r]),
];

for (const layer of ["2d", "3d"] as const) {
  for (const [name, row] of EVAL_CASES) {
    rangeTests(
      `SwitchNorm${
        layer[0]
      }d evaluation: a dy far below its row's largest, ${name}, gives the reference's dx`,
      async (backend) => {
        const call = ndCall(layer, row, false);
        const { got, want } = await runBoth(call, backend);
        assertRangeChecks(call, got, want);
      },
    );
  }
  rangeTests(
    `SwitchNorm${
      layer[0]
    }d training: the repro's row (two samples) gives the reference's gradients`,
    async (backend) => {
      const call = ndCall(
        layer,
        { ...REPRO, x: [...REPRO.x, 5, 6, 7, 8], dy: [...REPRO.dy, ...REPRO.dy] },
        true,
        2,
      );
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}

for (const [name, row] of EVAL_CASES) {
  if (row.x.length % 2 !== 0) continue;
  rangeTests(
    `SwitchNorm1d evaluation: a dy far below others of its sample, ${name}, gives the reference's dx`,
    async (backend) => {
      const call = call1d(row, false);
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}
rangeTests(
  "SwitchNorm1d training: the repro's row gives the reference's gradients",
  async (backend) => {
    const call = call1d(REPRO, true);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);
