/**
 * Issue 10: a training step's running_var rounded from a float32 batch variance (attack fuzzer
 * seed 72749 on WebGPU: SwitchNorm3d [8, 1, 2, 1, 8], a step then an evaluation). WebGPU's BN
 * group variance in layout "nd" was float32 sums of the members' float32 variances and Welford's
 * M2 of their means (its pair's low word 0 on rows of one segment), ~1e-7 of itself off, so that
 * `running_update` rounded m r + (1 - m) var once, but from a value that lay past a rounding
 * midpoint: running_var 2.8109307e19 for the reference's 2.8109309e19, within RUNNING, which the
 * evaluation on it amplified 1.4e4x (`var_weight`'s gradient 2.43x its tolerance). The update now
 * takes the batch statistics as pairs (shaders/sn_group_stats.wgsl `run_pairs`: rows of one
 * segment or several, the BN parts of blocks of samples and their merge, SyncSN's groups, which
 * the CPU reads with their low words; sn_group_refine's update from the rows' pair quotients):
 * running_var is the reference's float64 value rounded once wherever the rows' M2 are exact, as
 * on the rows of small integers below (NUMERICS.md: what stays, the rows' own float32 M2).
 */
import assert from "node:assert/strict";
import { type LayerCall, rangeTests, runBoth, runCall } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";
import { seededRandom } from "../examples/_data.ts";
import type { BatchSync, NormProblem, RunningUpdate } from "../backends/_backend.ts";
import { ReferenceBackend } from "../backends/reference.ts";
import { loadWebGpuBackend } from "../backends/webgpu.ts";
import { makePlan, segments } from "../backends/_webgpu_plan.ts";
import { copyParams, randomParams, rng, webgpuTest } from "./_webgpu.ts";

rangeTests(
  "attack fuzzer seed 72749's step leaves the reference's running buffers and its evaluation passes",
  async (backend) => {
    const call = make(72749);
    const { want, got } = await runBoth(call, backend);
    assert.deepEqual([...got.runningMean!], [...want.runningMean!], "running_mean");
    assert.deepEqual([...got.runningVar!], [...want.runningVar!], "running_var");
    // The fuzzer's own checks: the step's outputs and buffers, then the evaluation's y, dx and
    // gradients (`var_weight`'s 2.43x its tolerance before).
    assert.equal(check(call, got, want), null);
  },
);

/**
 * A training step on rows of 2, 4 or 8 integers in [-100, 100], BN's statistics alone, momentum
 * 0.1, then the running buffers. Each row's M2 is exact in float32 (Welford's merges of halves,
 * whatever the threads' shares; rows of 16 merge 8 and 4 values in one thread, a quotient by
 * 12 that float32 rounds), its variance M2 / (m - 1) is not, and neither are their sums.
 */
function integerStep(layer: "2d" | "3d", shape: number[], seed: number): LayerCall {
  const r = seededRandom(seed);
  const c = shape[1], len = shape.reduce((a, b) => a * b, 1), k = 3;
  const bnOnly = () => Float32Array.from({ length: k }, (_, i) => i === k - 1 ? 0 : -1e30);
  return {
    layer,
    shape,
    options: { eps: 1e-5, momentum: 0.1 },
    state: {
      mean_weight: bnOnly(),
      var_weight: bnOnly(),
      running_mean: Float32Array.from({ length: c }, () => Math.round(200 * r() - 100)),
      running_var: Float32Array.from({ length: c }, () => Math.fround(1000 * r())),
    },
    partial: true,
    training: true,
    running: true,
    x: Float32Array.from({ length: len }, () => Math.round(200 * r() - 100)),
  };
}

const integerCases: [string, LayerCall][] = [
  ["SwitchNorm2d [8, 16, 1, 8]", integerStep("2d", [8, 16, 1, 8], 1)],
  ["SwitchNorm2d [5, 16, 2, 2]", integerStep("2d", [5, 16, 2, 2], 2)],
  ["SwitchNorm3d [8, 16, 2, 1, 4]", integerStep("3d", [8, 16, 2, 1, 4], 3)],
  ["SwitchNorm2d [64, 4, 1, 2]", integerStep("2d", [64, 4, 1, 2], 4)],
  ["SwitchNorm2d [3, 32, 4, 2]", integerStep("2d", [3, 32, 4, 2], 5)],
];
for (const [what, call] of integerCases) {
  rangeTests(
    `the running buffers after a step on rows of 2 to 8 integers, ${what}, are the reference's, rounded once`,
    async (backend) => {
      const want = await runCall(call, "reference");
      const got = await runCall(call, backend);
      assert.deepEqual([...got.runningMean!], [...want.runningMean!], "running_mean");
      assert.deepEqual([...got.runningVar!], [...want.runningVar!], "running_var");
    },
  );
}

/**
 * Rows of [N, C, M] (M a multiple of 4) whose every four values are m0 + p, m0 - p, m0 + q,
 * m0 - q for a row's integer m0 and integers p, q: each vec4 has the row's mean, so Welford's
 * merges add exact M2s in any order and any cut into segments or threads, and the row's mean is
 * m0. Only the quotients M2 / (M - 1), their sums and the rows' spread round.
 */
function balancedRows(
  n: number,
  c: number,
  m: number,
  seed: number,
  centred = false,
): Float32Array {
  const r = seededRandom(seed), x = new Float32Array(n * c * m);
  for (let row = 0; row < n * c; row++) {
    // Centred: every row's mean 0, and sample 0's rows all 0 (below).
    const m0 = centred ? 0 : Math.round(100 * r() - 50);
    if (centred && row < c) continue;
    for (let i = row * m; i < (row + 1) * m; i += 4) {
      const p = Math.round(30 * r()), q = Math.round(30 * r());
      x.set([m0 + p, m0 - p, m0 + q, m0 - q], i);
    }
  }
  return x;
}

rangeTests(
  "the running buffers after a step on rows of several segments are the reference's, rounded once",
  async (backend) => {
    const shape = [6, 4, 1, 4096];
    const segs = segments(
      { layout: "nd", training: true, usingBN: true, n: 6, c: 4, m: 4096, eps: 1e-5 },
      { maxBinding: 1 << 27, offsetAlign: 256 },
    );
    assert.ok(segs.chunks > 1, `rows of ${segs.chunks} segment(s)`);
    const call: LayerCall = {
      ...integerStep("2d", shape, 6),
      x: balancedRows(6, 4, 4096, 6),
    };
    const want = await runCall(call, "reference");
    const got = await runCall(call, backend);
    assert.deepEqual([...got.runningMean!], [...want.runningMean!], "running_mean");
    assert.deepEqual([...got.runningVar!], [...want.runningVar!], "running_var");
  },
);

/** SyncSN with one replica: the BN statistics are read back, merged and written again. */
const sync: BatchSync = {
  replicas: 1,
  mergeStats: (count, mean, m2) => Promise.resolve({ count, mean, m2 }),
  sum: (local) => Promise.resolve(local),
};

rangeTests(
  "the running buffers after a step whose BN means are 0 beside rows of one value are the reference's, rounded once",
  async (backend) => {
    // Each BN group's mean lies within 2^-9 of its std beside a member of variance 0: WebGPU
    // sums its members again (sn_group_refine) and makes the running update there, from the
    // members' float32 quotients M2 / (M - 1) before (running_var an ulp off).
    const call: LayerCall = {
      ...integerStep("2d", [24, 64, 1, 8], 7),
      x: balancedRows(24, 64, 8, 7, true),
    };
    const want = await runCall(call, "reference");
    const got = await runCall(call, backend);
    assert.deepEqual([...got.runningMean!], [...want.runningMean!], "running_mean");
    assert.deepEqual([...got.runningVar!], [...want.runningVar!], "running_var");
  },
);

webgpuTest(
  "WebGPU: the running buffers after a step in blocks of samples or under SyncSN are the reference's, rounded once",
  async () => {
    // Bindings of 64 KiB (tests/webgpu_row_blocks_test.ts): each block's BN part, then their
    // merge (P_BN_PARTS, P_BN_MERGE), the parts' M2 as pairs. SyncSN: the CPU's update, from
    // the groups' pairs.
    const maxBinding = 65536;
    await using small = await loadWebGpuBackend({ maxBindingBytes: maxBinding });
    await using whole = await loadWebGpuBackend();
    const reference = new ReferenceBackend();
    const update: RunningUpdate = { kind: "movingAverage", momentum: 0.1 };
    const cases: [number, number, number, boolean, boolean][] = [
      // n, c, m, blocks, SyncSN
      [4000, 2, 4, true, false],
      [420, 4, 4104, true, false],
      [8, 16, 8, false, true],
      [4000, 2, 4, true, true],
      [256, 8, 1, false, true],
    ];
    for (const [n, c, m, blocked, synced] of cases) {
      const problem: NormProblem = {
        layout: m === 1 ? "1d" : "nd",
        training: true,
        usingBN: true,
        n,
        c,
        m,
        eps: 1e-5,
        ...(synced ? { sync } : {}),
      };
      const params = randomParams(rng(n), c, m === 1 ? 2 : 3, true);
      const plan = makePlan(problem, { ...params, update }, { maxBinding, offsetAlign: 256 });
      const what = `[${n}, ${c}, ${m}]${synced ? ", SyncSN" : ""}`;
      assert.equal(plan.statsListOffsets.length > 1, blocked, `${what}: blocks`);
      const x = m === 1
        ? Float32Array.from({ length: n * c }, (_, i) => Math.round(200 * Math.sin(i * 7.1)))
        : balancedRows(n, c, m, n + m);
      const [got, want] = [copyParams(params), copyParams(params)];
      await (blocked ? small : whole).forward(problem, x, got, update);
      await reference.forward(problem, x, want, update);
      assert.deepEqual([...got.runningMean], [...want.runningMean], `${what}: running_mean`);
      assert.deepEqual([...got.runningVar], [...want.runningVar], `${what}: running_var`);
    }
  },
);
