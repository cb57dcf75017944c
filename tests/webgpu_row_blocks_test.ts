/**
 * WebGPU at any row count: layouts whose per-row statistics exceed one storage binding run in
 * blocks of whole samples (backends/_webgpu_row_blocks.ts), each block's records bound as
 * windows, the BN statistics summed in two levels. A test-only instance binds at most 64 KiB
 * (3276 row summaries of 20 bytes), so a few thousand rows take the paths that 6.7M rows take
 * under lavapipe's 128 MiB. Blocks change nothing but the BN sums' order: evaluation and
 * layers without BN give the bits of a run in one binding, training agrees within Y.
 */
import assert from "node:assert/strict";
import type { NormProblem, RunningUpdate, SavedForward } from "../backends/_backend.ts";
import { loadWebGpuBackend, type WebGpuBackend } from "../backends/webgpu.ts";
import { makePlan, type PlanLimits } from "../backends/_webgpu_plan.ts";
import { assertClose, assertSameValues } from "./_close.ts";
import { RUNNING, Y } from "./_tolerances.ts";
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
  const k = problem.usingBN ? 3 : 2;
  return {
    label,
    problem: { ...problem, layout: "nd", eps: 1e-5 },
    x,
    params: randomParams(r, c, k, problem.usingBN),
    update,
  };
}

/** The number of sample blocks of `c`'s forward plan under 64 KiB bindings. */
function blocks(c: Case): number {
  const plan = makePlan(c.problem, { ...c.params, update: c.update }, SMALL);
  return plan.listOffsets.length;
}

async function run(backend: WebGpuBackend, c: Case) {
  const params = copyParams(c.params);
  const y = await backend.forward(c.problem, c.x, params, c.update) as Float32Array;
  return { y, params };
}

const MOVING: RunningUpdate = { kind: "movingAverage", momentum: 0.9 };
const nd = { layout: "nd", training: true, usingBN: true } as const;

const CASES = [
  // 4000 rows: blocks of 640 samples (3200 rows), the second cut in the middle of the batch.
  make(1, { ...nd, n: 800, c: 5, m: 3 }, MOVING, "[800,5,3] train"),
  make(2, { ...nd, n: 800, c: 5, m: 3, training: false }, MOVING, "[800,5,3] eval"),
  make(3, { ...nd, n: 1000, c: 4, m: 2, usingBN: false }, MOVING, "[1000,4,2] no BN"),
  // M = 1: 9000 rows in 3 blocks, batch-average update.
  make(4, { ...nd, n: 3000, c: 3, m: 1 }, { kind: "batchAverage" }, "[3000,3,1] train"),
  // Rows of two segments (40 bytes of summaries per row): 1680 rows in 2 blocks.
  make(5, { ...nd, n: 420, c: 4, m: 4097 }, MOVING, "[420,4,4097] train"),
  // Wide rows (|x| ~ 1e30) and a NaN in the second block: its lists of wide rows, its NaN rows.
  make(6, { ...nd, n: 800, c: 5, m: 3 }, MOVING, "[800,5,3] train, wide and NaN", (x) => {
    for (let i = 700 * 15; i < 701 * 15; i++) x[i] *= 1e30;
    x[750 * 15 + 4] = NaN;
  }),
];

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
      if (c.problem.training && c.problem.usingBN) {
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
  "a backward of a forward in blocks of samples throws a RangeError naming the per-row statistics",
  async () => {
    await using backend = await loadWebGpuBackend({ maxBindingBytes: SMALL.maxBinding });
    const c = CASES[0];
    const params = copyParams(c.params), save: SavedForward = {};
    await backend.forward(c.problem, c.x, params, c.update, undefined, save);
    await assert.rejects(
      () => backend.backward(save, new Float32Array(c.x.length), params),
      (e: Error) => {
        assert.ok(e instanceof RangeError, String(e));
        assert.match(e.message, /per-row statistics .* more than one storage binding/);
        return true;
      },
    );
  },
);
