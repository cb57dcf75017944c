/**
 * WebGPU at any row count: problems whose statistics exceed one storage binding run in blocks of
 * whole samples (backends/_webgpu_row_blocks.ts), each block's records bound as windows, the BN
 * statistics summed in two levels. A test-only instance binds at most 64 KiB (about 3300 row
 * summaries of 20 bytes), so a few thousand rows take the paths that 6.7M rows take under
 * lavapipe's 128 MiB. Blocks change nothing but the BN sums' order: evaluation and layers
 * without BN give the bits of a run in one binding, training agrees within Y.
 */
import assert from "node:assert/strict";
import type { BatchSync, NormProblem, RunningUpdate, SavedForward } from "../backends/_backend.ts";
import { loadWebGpuBackend, type WebGpuBackend } from "../backends/webgpu.ts";
import { makePlan, type PlanLimits, SLOT_BYTES } from "../backends/_webgpu_plan.ts";
import { makeBackwardPlan } from "../backends/_webgpu_backward_plan.ts";
import { assertClose, assertSameValues } from "./_close.ts";
import { GRAD, RUNNING, Y } from "./_tolerances.ts";
import { logitGrads } from "./_softmax.ts";
import { ReferenceBackend } from "../backends/reference.ts";
import { chooseBackend } from "../backends/select.ts";
import {
  type Case,
  copyParams,
  normal,
  ORACLE,
  oracleForward,
  randomParams,
  rng,
  webgpuTest,
} from "./_webgpu.ts";

const SMALL: PlanLimits = { maxBinding: 65536, offsetAlign: 256 };

function make(
  seed: number,
  problem: Omit<NormProblem, "eps">,
  update: RunningUpdate,
  label: string,
  edit?: (x: Float32Array) => void,
): Case {
  const r = rng(seed);
  const { n, c, m } = problem;
  const x = Float32Array.from(
    { length: n * c * m },
    (_, i) => 3 + (Math.floor(i / m) % c) * 0.5 + (1 + (Math.floor(i / (m * c)) % 3)) * normal(r),
  );
  edit?.(x);
  const k = problem.layout === "nd" && problem.usingBN ? 3 : 2;
  return {
    label,
    problem: { ...problem, eps: 1e-5 },
    x,
    params: randomParams(r, c, k, problem.usingBN),
    update,
  };
}

/** The number of sample blocks of `c`'s forward plan under 64 KiB bindings. */
function blocks(c: Case): number {
  const plan = makePlan(c.problem, { ...c.params, update: c.update }, SMALL);
  return plan.statsListOffsets.length;
}

async function run(backend: WebGpuBackend, c: Case) {
  const params = copyParams(c.params);
  const y = await backend.forward(c.problem, c.x, params, c.update) as Float32Array;
  return { y, params };
}

const MOVING: RunningUpdate = { kind: "movingAverage", momentum: 0.9 };
const nd = { layout: "nd", training: true, usingBN: true } as const;
const d1 = { layout: "1d", training: true, usingBN: true } as const;
/** SyncSN with one replica: the merged BN statistics are read back and written again. */
const sync: BatchSync = {
  replicas: 1,
  mergeStats: (count, mean, m2) => Promise.resolve({ count, mean, m2 }),
  sum: (local) => Promise.resolve(local),
};

const CASES = [
  // 4000 rows: two blocks (of 640 and 160 samples), the second cut in the middle of the batch.
  make(1, { ...nd, n: 800, c: 5, m: 3 }, MOVING, "[800,5,3] train"),
  make(2, { ...nd, n: 800, c: 5, m: 3, training: false }, MOVING, "[800,5,3] eval"),
  make(3, { ...nd, n: 1000, c: 4, m: 2, usingBN: false }, MOVING, "[1000,4,2] no BN"),
  // M = 1: 9000 rows in 3 blocks, batch-average update.
  make(4, { ...nd, n: 3000, c: 3, m: 1 }, { kind: "batchAverage" }, "[3000,3,1] train"),
  // Rows of two segments (two summaries per row): 1680 rows in 2 blocks.
  make(5, { ...nd, n: 420, c: 4, m: 4097 }, MOVING, "[420,4,4097] train"),
  // Wide rows (|x| ~ 1e30) and a NaN in the second block: its lists of wide rows, its NaN rows.
  make(6, { ...nd, n: 800, c: 5, m: 3 }, MOVING, "[800,5,3] train, wide and NaN", (x) => {
    for (let i = 700 * 15; i < 701 * 15; i++) x[i] *= 1e30;
    x[750 * 15 + 4] = NaN;
  }),
  make(7, { ...nd, n: 700, c: 6, m: 2, sync }, MOVING, "[700,6,2] train, SyncSN"),
  // More group statistics (N + C, 16 bytes each) than a binding holds: the LN groups in the
  // blocks' windows, the BN ones in a window of their own.
  make(8, { ...nd, n: 5000, c: 1, m: 4 }, MOVING, "[5000,1,4] train: 5001 groups"),
  make(9, { ...nd, n: 4500, c: 2, m: 1, training: false }, MOVING, "[4500,2,1] eval"),
  make(10, { ...nd, n: 4400, c: 1, m: 2, usingBN: false }, MOVING, "[4400,1,2] no BN"),
  // Layout "1d": tile summaries (CT per sample, C per 32 samples) in blocks of row tiles, the
  // BN groups in two levels, the LN and BN groups in windows, the lists of wide lines and
  // groups per block.
  make(11, { ...d1, n: 2000, c: 64, m: 1 }, MOVING, "1d [2000,64] train"),
  make(12, { ...d1, n: 2000, c: 64, m: 1, training: false }, MOVING, "1d [2000,64] eval"),
  make(13, { ...d1, n: 5000, c: 4, m: 1 }, { kind: "batchAverage" }, "1d [5000,4] train"),
  make(14, { ...d1, n: 9000, c: 1, m: 1, training: false }, MOVING, "1d [9000,1] eval"),
  make(15, { ...d1, n: 2000, c: 64, m: 1 }, MOVING, "1d [2000,64] train, wide and NaN", (x) => {
    for (let i = 1700 * 64; i < 1701 * 64; i++) x[i] *= 1e30; // a wide sample
    for (let i = 5; i < x.length; i += 64) x[i] *= 1e-30; // a wide channel
    x[1900 * 64 + 7] = NaN;
  }),
  make(16, { ...d1, n: 2000, c: 64, m: 1, sync }, MOVING, "1d [2000,64] train, SyncSN"),
  // Rows led by a value far from their mean (zeros after a 1e6: the segment is measured again
  // about its mean, tests/far_shift_test.ts), listed per block: rows of one segment (sn_stats
  // lists them) and of two (sn_row_merge does, and merges them again).
  make(17, { ...nd, n: 800, c: 5, m: 40 }, MOVING, "[800,5,40] train, rows led by 1e6", (x) => {
    leadRows(x, 5, 40, 2);
  }),
  make(18, { ...nd, n: 420, c: 4, m: 4097 }, MOVING, "[420,4,4097] train, rows led by 1e6", (x) => {
    leadRows(x, 4, 4097, 1);
  }),
];

/** Channel `channel`'s rows of x [N, c, m] set to a 1e6 followed by zeros. */
function leadRows(x: Float32Array, c: number, m: number, channel: number): void {
  for (let row = channel; row * m < x.length; row += c) {
    x.fill(0, row * m, (row + 1) * m);
    x[row * m] = 1e6;
  }
}

webgpuTest(
  `webgpu agrees with ${ORACLE} when the per-row statistics exceed one binding (blocks of samples)`,
  async () => {
    await using backend = await loadWebGpuBackend({ maxBindingBytes: SMALL.maxBinding });
    for (const c of CASES) {
      assert.ok(blocks(c) > 1, `${c.label}: expected several blocks, got ${blocks(c)}`);
      const got = await run(backend, c);
      const want = await oracleForward(c);
      assertClose(got.y, want.y, Y, `${c.label}: y vs ${ORACLE}`);
      assertClose(got.params.runningMean, want.params.runningMean, RUNNING, `${c.label}: mean`);
      assertClose(got.params.runningVar, want.params.runningVar, RUNNING, `${c.label}: var`);
    }
  },
);

webgpuTest(
  "webgpu in blocks of samples gives the bits of a run in one binding, but for the BN sums",
  async () => {
    await using small = await loadWebGpuBackend({ maxBindingBytes: SMALL.maxBinding });
    await using whole = await loadWebGpuBackend();
    for (const c of CASES) {
      const [a, b] = [await run(small, c), await run(whole, c)];
      if (c.problem.training && (c.problem.usingBN || c.problem.layout === "1d")) {
        // The BN statistics are merged per block first: another order of the same sums.
        assertClose(a.y, b.y, Y, `${c.label}: y`);
        assertClose(a.params.runningMean, b.params.runningMean, RUNNING, `${c.label}: mean`);
        assertClose(a.params.runningVar, b.params.runningVar, RUNNING, `${c.label}: var`);
      } else {
        assertSameValues(a.y, b.y, `${c.label}: y`);
      }
    }
  },
);

webgpuTest(
  "webgpu backward agrees with the float64 reference when the forward ran in blocks of samples",
  async () => {
    // Layout "nd": the backward runs in blocks too (the forward's row summaries, the segment
    // sums and dx maps in windows, each block's group statistics copied beside the BN ones);
    // "1d" reads the group statistics alone, copied likewise per window where they exceed a
    // binding (5004 and 9001 groups of 16 bytes).
    await using backend = await loadWebGpuBackend({ maxBindingBytes: SMALL.maxBinding });
    const reference = new ReferenceBackend();
    const labels = [
      "[800,5,3] train",
      "[800,5,3] eval",
      "[1000,4,2] no BN",
      "[800,5,3] train, wide and NaN",
      "[700,6,2] train, SyncSN",
      "[5000,1,4] train: 5001 groups",
      "1d [2000,64] train",
      "1d [5000,4] train",
      "1d [9000,1] eval",
    ];
    for (const label of labels) {
      const c = CASES.find((c) => c.label === label)!;
      const plan = makeBackwardPlan(c.problem, c.params, SMALL, c.problem.n);
      if (c.problem.layout === "nd" || c.problem.n > 4000) {
        assert.ok(plan.statCopies.length > 2, `${label}: expected a backward in blocks`);
      }
      const r = rng(77);
      const dy = Float32Array.from(c.x, () => normal(r));
      const grads = [];
      for (const b of [backend, reference]) {
        const params = copyParams(c.params), save: SavedForward = {};
        await b.forward(c.problem, c.x, params, c.update, undefined, save);
        grads.push(await b.backward(save, dy, params));
      }
      const [got, want] = grads;
      assertClose(got.dx as Float32Array, want.dx as Float32Array, GRAD, `${label}: dx`);
      assertClose(got.dWeight, want.dWeight, GRAD, `${label}: dWeight`);
      assertClose(got.dBias, want.dBias, GRAD, `${label}: dBias`);
      for (const [mix, key] of [[c.params.meanMix, "meanDots"], [c.params.varMix, "varDots"]]) {
        const k = key as "meanDots" | "varDots";
        const mixed = mix as ArrayLike<number>;
        assertClose(
          logitGrads(mixed, got[k]),
          logitGrads(mixed, want[k]),
          GRAD,
          `${label}: logit gradients from ${k}`,
        );
      }
    }
  },
);

webgpuTest(
  "webgpu's SwitchNorm1d BN means over blocks of more than 4096 samples keep dgamma ~0 under dy = 1",
  async () => {
    // Bindings of 256 KiB: blocks of ~7700 samples of [N, 2], whose BN parts are merged in
    // pairs times their counts; those products were exact only for counts of at most 12
    // significant bits (tile lines; blocks of whole row tiles of 32 up to 131072 samples), and
    // the last block of N = 30007 (7 samples past a tile) rounded them, ~2^-25 of each part's
    // share: samples drifting from mean 0 to 100 (parts ~25 apart) had the BN mean ~1e-6 off,
    // which dgamma on a mixing settled on BN under dy = 1 (sum (x - mu_BN) / std, ~0)
    // multiplies by N / std: 10.8x its tolerance.
    const limits: PlanLimits = { maxBinding: 262144, offsetAlign: 256 };
    await using backend = await loadWebGpuBackend({ maxBindingBytes: limits.maxBinding });
    const reference = new ReferenceBackend();
    const r = rng(91), n = 30007, c = 2;
    const problem: NormProblem = {
      layout: "1d",
      training: true,
      usingBN: true,
      n,
      c,
      m: 1,
      eps: 1e-5,
    };
    const params = {
      ...randomParams(r, c, 2, true),
      weight: new Float32Array(c).fill(1),
      meanMix: Float64Array.of(1e-6, 1 - 1e-6),
      varMix: Float64Array.of(1e-6, 1 - 1e-6),
    };
    assert.ok(makePlan(problem, { ...params, update: MOVING }, limits).statsListOffsets.length > 2);
    const x = Float32Array.from({ length: n * c }, (_, i) => (100 * i) / (n * c) + normal(r));
    const dy = new Float32Array(n * c).fill(1);
    const grads = [];
    for (const b of [backend, reference]) {
      const p = copyParams(params), save: SavedForward = {};
      await b.forward(problem, x, p, MOVING, undefined, save);
      grads.push(await b.backward(save, dy, p));
    }
    assertClose(grads[0].dWeight, grads[1].dWeight, GRAD, "dWeight");
  },
);

Deno.test("the blocks of samples take every row once, each block's windows aligned and within a binding", () => {
  for (const [n, c, m] of [[800, 5, 3], [3000, 3, 1], [420, 4, 4097], [700, 6, 2], [130, 32, 1]]) {
    for (const offsetAlign of [32, 256]) {
      const limits = { ...SMALL, offsetAlign };
      const problem: NormProblem = { ...nd, n, c, m, eps: 1e-5 };
      const plan = makePlan(problem, {
        meanMix: [0.2, 0.3, 0.5],
        varMix: [0.2, 0.3, 0.5],
        update: MOVING,
      }, limits);
      const slots = new DataView(plan.uniforms);
      // sn_mix's row ranges (Params.seg_first, seg_end) tile the rows, each from its window's
      // first row (Params.rec_base), its records within the windows.
      let next = 0;
      for (const d of plan.dispatches.filter((d) => d.kind === "mix")) {
        const u = (at: number) => slots.getUint32(d.slot * SLOT_BYTES + at, true);
        assert.equal(u(28), next, `[${n},${c},${m}]: rows in order, each once`);
        assert.equal(u(28) % c, 0, "whole samples");
        assert.equal(u(104), u(28), "records bound from the block's first row");
        const f = d.forward!;
        for (const w of [f.rows!, f.mixed!, f.parts!, f.groups!, f.chanGroups!, f.list!]) {
          assert.equal(w.offset % offsetAlign, 0);
          assert.ok(w.size <= limits.maxBinding);
        }
        assert.equal(d.forward!.mixed!.offset, u(28) * 16);
        next = u(32);
      }
      assert.equal(next, n * c);
      assert.ok(plan.listOffsets.length > 1, `[${n},${c},${m}]: several blocks`);
    }
  }
});

Deno.test("a problem whose smallest block of samples exceeds a binding is refused with a RangeError", () => {
  // 64 samples of 4000 rows: more row summaries than a binding of 64 KiB holds.
  const problem: NormProblem = { ...nd, n: 64, c: 4000, m: 1, eps: 1e-5 };
  assert.throws(
    () => makePlan(problem, { meanMix: [1, 0, 0], varMix: [1, 0, 0], update: MOVING }, SMALL),
    /per-row statistics of \d+ samples \(\d+ rows .* too many channels/,
  );
});

const twoSegments =
  `webgpu backward agrees with ${ORACLE} on rows of two segments in blocks of samples`;
if (Deno.env.get("SWITCHNORM_LARGE_TESTS") === "1") {
  webgpuTest(
    twoSegments,
    async () => {
      // 2080 rows of 2 segments: their segment sums (32 bytes a row) exceed 64 KiB. The oracle
      // is WASM where present: the float64 reference takes ~10 s on these 8.5M elements.
      await using backend = await loadWebGpuBackend({ maxBindingBytes: SMALL.maxBinding });
      const c = make(21, { ...nd, n: 520, c: 4, m: 4097 }, MOVING, "[520,4,4097] train");
      const plan = makeBackwardPlan(c.problem, c.params, SMALL, c.problem.n);
      assert.ok(plan.statCopies.length > 2, "expected a backward in blocks");
      const { backend: oracle } = await chooseBackend(ORACLE);
      const r = rng(78);
      const dy = Float32Array.from(c.x, () => normal(r));
      const grads = [];
      for (const b of [backend, oracle]) {
        const params = copyParams(c.params), save: SavedForward = {};
        await b.forward(c.problem, c.x, params, c.update, undefined, save);
        grads.push(await b.backward!(save, dy, params));
      }
      const [got, want] = grads;
      assertClose(got.dx as Float32Array, want.dx as Float32Array, GRAD, "dx");
      assertClose(got.dWeight, want.dWeight, GRAD, "dWeight");
      assertClose(got.dBias, want.dBias, GRAD, "dBias");
    },
  );
} else {
  Deno.test({
    name: `${twoSegments} (skipped: set SWITCHNORM_LARGE_TESTS=1; ~15 s on lavapipe)`,
    ignore: true,
    fn() {},
  });
}

const realName = "webgpu forward and backward agree with the float64 reference on 7M rows " +
  "([1000,7000,1]), beyond one binding of their statistics at the device's real limits";
if (Deno.env.get("SWITCHNORM_LARGE_TESTS") === "1") {
  webgpuTest(realName, async () => {
    // 7M row summaries of 20 bytes exceed lavapipe's 128 MiB binding (before, a RangeError).
    await using backend = await loadWebGpuBackend();
    const c = make(31, { ...nd, n: 1000, c: 7000, m: 1 }, MOVING, "[1000,7000,1]");
    const limits = { maxBinding: backend.ctx.maxBinding, offsetAlign: 256 };
    const plan = makePlan(c.problem, { ...c.params, update: c.update }, limits);
    assert.ok(plan.statsListOffsets.length > 1, "expected blocks of samples");
    const reference = new ReferenceBackend();
    const r = rng(32);
    const dy = Float32Array.from(c.x, () => normal(r));
    const out = [];
    for (const b of [backend, reference]) {
      const params = copyParams(c.params), save: SavedForward = {};
      const y = await b.forward(c.problem, c.x, params, c.update, undefined, save);
      out.push({ y: y as Float32Array, params, grads: await b.backward(save, dy, params) });
    }
    const [got, want] = out;
    assertClose(got.y, want.y, Y, "y");
    assertClose(got.params.runningMean, want.params.runningMean, RUNNING, "running mean");
    assertClose(got.params.runningVar, want.params.runningVar, RUNNING, "running var");
    assertClose(got.grads.dx as Float32Array, want.grads.dx as Float32Array, GRAD, "dx");
    assertClose(got.grads.dWeight, want.grads.dWeight, GRAD, "dWeight");
    assertClose(got.grads.dBias, want.grads.dBias, GRAD, "dBias");
  });
} else {
  Deno.test({
    name: `${realName} (skipped: set SWITCHNORM_LARGE_TESTS=1; ~30 s on lavapipe)`,
    ignore: true,
    fn() {},
  });
}
