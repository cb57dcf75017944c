/**
 * SyncSN when a replica fails or stops answering: the failure reaches every replica (naming the
 * replica) instead of leaving them waiting, a bounded wait (timeoutMs, signal) ends the call, and
 * a call that fails so changes nothing. Replicas are Deno Workers (tests/_sync_fail_worker.ts).
 */
import assert from "node:assert/strict";
import { SwitchNorm2d, type SyncGroup } from "../mod.ts";
import type { BackendName } from "../backends/_backend.ts";
import { assertClose } from "./_close.ts";
import { testEachBackend } from "./_backends.ts";
import type { Act } from "./_sync_fail_worker.ts";
import { seededRandom as rng } from "../examples/_data.ts";
import { startReplicas } from "./_replicas.ts";

// Replicas merge the same numbers in another order than one layer does: a few float32 ulps.
const SAME = { atol: 1e-5, rtol: 1e-5, why: "float64 merge order, float32 outputs" };

interface StepResult {
  y?: Float32Array;
  dx?: Float32Array;
  error?: string;
  grads: Record<string, Float32Array>;
  state: Record<string, Float32Array>;
}

const C = 3, INNER = [3, 5], SPLIT = [2, 3, 2];
const M = INNER[0] * INNER[1];

function setupData(steps: number) {
  const r = rng(17);
  const n = SPLIT.reduce((a, b) => a + b);
  const state = {
    weight: Float32Array.from({ length: C }, () => 1 + 0.3 * r()),
    bias: Float32Array.from({ length: C }, () => r() - 0.5),
    mean_weight: Float32Array.from({ length: 3 }, () => r() - 0.5),
    var_weight: Float32Array.from({ length: 3 }, () => r() - 0.5),
    running_mean: Float32Array.from({ length: C }, () => r() - 0.5),
    running_var: Float32Array.from({ length: C }, () => 1 + 0.5 * r()),
  };
  const data = Array.from({ length: steps }, (_, i) => ({
    x: Float32Array.from({ length: n * C * M }, () => 3 * r() + i),
    dy: Float32Array.from({ length: n * C * M }, () => r() - 0.5),
  }));
  return { n, state, data };
}

/** Runs the replicas of SPLIT through `acts[step][rank]`; resolves to each replica's results. */
async function runReplicas(
  backend: BackendName,
  acts: Act[][],
  timeoutMs?: number,
): Promise<{ results: StepResult[] }[]> {
  const { state, data } = setupData(acts.length);
  const { workers, done } = startReplicas<{ results: StepResult[] }>(
    new URL("./_sync_fail_worker.ts", import.meta.url),
    SPLIT.length,
  );
  let start = 0;
  SPLIT.forEach((nLocal, rank) => {
    const slice = (a: Float32Array) => a.slice(start * C * M, (start + nLocal) * C * M);
    workers[rank].postMessage({
      job: {
        size: SPLIT.length,
        c: C,
        backend,
        timeoutMs,
        state,
        steps: data.map((s, i) => ({
          act: acts[i][rank],
          x: slice(s.x),
          dy: slice(s.dy),
          shape: [nLocal, C, ...INNER],
        })),
      },
    });
    start += nLocal;
  });
  try {
    return await Promise.all(done);
  } finally {
    for (const w of workers) w.terminate();
  }
}

/**
 * One layer on the whole batch, through the steps `which` of the data only; the steps in
 * `forwardOnly` without their backward.
 */
async function wholeBatch(
  backend: BackendName,
  steps: number,
  which: number[],
  forwardOnly: number[] = [],
) {
  const { n, state, data } = setupData(steps);
  const layer = new SwitchNorm2d(C, { backend });
  layer.loadStateDict(state);
  const out = new Map<number, StepResult>();
  for (const i of which) {
    layer.zeroGrad();
    const y = await layer.forward(data[i].x, [n, C, ...INNER]);
    if (forwardOnly.includes(i)) continue;
    const dx = await layer.backward(data[i].dy);
    out.set(i, {
      y,
      dx,
      grads: { ...structuredClone(layer.grads) },
      state: { ...layer.stateDict() },
    });
  }
  return out;
}

function assertStepMatches(got: StepResult, want: StepResult, rank: number, at: string): void {
  assert.equal(got.error, undefined, `${at}: ${got.error}`);
  const start = SPLIT.slice(0, rank).reduce((a, b) => a + b, 0) * C * M;
  const len = SPLIT[rank] * C * M;
  assertClose(got.y!, want.y!.subarray(start, start + len), SAME, `${at}: y`);
  assertClose(got.dx!, want.dx!.subarray(start, start + len), SAME, `${at}: dx`);
  for (const key of ["weight", "bias", "mean_weight", "var_weight"]) {
    assertClose(got.grads[key], want.grads[key], SAME, `${at}: grad of ${key}`);
  }
  for (const key of ["running_mean", "running_var"]) {
    assertClose(got.state[key], want.state[key], SAME, `${at}: ${key}`);
  }
}

function assertSameState(a: StepResult, b: StepResult, at: string): void {
  for (const key of Object.keys(b.state)) {
    assert.deepEqual([...a.state[key]], [...b.state[key]], `${at}: ${key} changed`);
  }
}

await testEachBackend(
  "SyncSN: a replica that fails before its allGather (forward or backward) makes that call fail " +
    "on every replica, naming it, with nothing changed, and the group goes on",
  async (backend) => {
    const acts: Act[][] = [
      ["run", "run", "run"],
      ["run", "badForward", "run"], // replica 1: a wrong channel count
      ["run", "run", "run"],
      ["run", "run", "badBackward"], // replica 2: dy of the wrong length
      ["run", "run", "run"],
    ];
    const replicas = await runReplicas(backend, acts);
    // Step 3's forward ran everywhere; only its backward failed.
    const want = await wholeBatch(backend, acts.length, [0, 2, 3, 4], [3]);
    replicas.forEach(({ results }, rank) => {
      assert.equal(results.length, acts.length);
      const failedForward = results[1], failedBackward = results[3];
      if (rank === 1) assert.doesNotMatch(failedForward.error ?? "", /SyncSN/);
      else assert.match(failedForward.error ?? "no error", /replica 1 \(of 3\) failed/);
      assert.equal(failedForward.y, undefined);
      if (rank === 2) assert.match(failedBackward.error ?? "no error", /dy/);
      else assert.match(failedBackward.error ?? "no error", /replica 2 \(of 3\) failed/);
      assert.equal(failedBackward.dx, undefined);
      for (const g of Object.values(failedBackward.grads)) {
        assert.ok(g.every((v) => v === 0), "a failed backward added gradients");
      }
      // The failed forward changed nothing: step 2 starts from step 0's state.
      assertSameState(failedForward, results[0], `replica ${rank}, failed forward`);
      for (const i of [0, 2, 4]) {
        assertStepMatches(results[i], want.get(i)!, rank, `replica ${rank}, step ${i}`);
      }
    });
  },
);

await testEachBackend(
  "SyncSN: with timeoutMs, a replica that stops answering makes the others' call reject in " +
    "time with nothing changed, and later calls on the group reject at once",
  async (backend) => {
    const acts: Act[][] = [
      ["run", "run", "run"],
      ["run", "hang", "run"],
      ["run", "run", "run"],
    ];
    const t0 = performance.now();
    const replicas = await runReplicas(backend, acts, 300);
    assert.ok(performance.now() - t0 < 60_000, "the wait was not bounded");
    for (const [rank, { results }] of replicas.entries()) {
      if (rank === 1) {
        assert.equal(results.length, 1);
        continue;
      }
      assert.match(results[1].error ?? "no error", /did not answer within 300 ms \(timeoutMs\)/);
      assertSameState(results[1], results[0], `replica ${rank}, timed-out forward`);
      assert.match(results[2].error ?? "no error", /group is unusable since allGather/);
      assertSameState(results[2], results[0], `replica ${rank}, call on the unusable group`);
    }
  },
);

Deno.test("SyncSN: aborting the group's signal ends a pending wait, changing nothing", async () => {
  const controller = new AbortController();
  let calls = 0;
  const group: SyncGroup = {
    size: 2,
    allGather: () => (calls++, new Promise(() => {})), // the other replica never answers
    signal: controller.signal,
  };
  const sn = new SwitchNorm2d(2, { backend: "reference", sync: group });
  const before = sn.stateDict();
  const x = Float32Array.from({ length: 2 * 2 * 4 }, (_, i) => i % 5);
  const pending = sn.forward(x, [2, 2, 2, 2]);
  setTimeout(() => controller.abort(new Error("replica 1 crashed")), 20);
  await assert.rejects(
    pending,
    /allGather for BN statistics was aborted \(Error: replica 1 crashed\)/,
  );
  assert.deepEqual(sn.stateDict(), before);
  await assert.rejects(
    sn.forward(x, [2, 2, 2, 2]),
    /group is unusable since .*aborted.*; make a new group and new layers on it \(a layer keeps its group for life; carry its state over with stateDict\(\) and loadStateDict\(\)\)$/,
  );
  // By default (localEvaluation), evaluation exchanges nothing, so it still runs.
  sn.eval();
  assert.equal((await sn.forward(x, [2, 2, 2, 2])).length, x.length);
  assert.equal(calls, 1, "no gather for a local evaluation");
  // With localEvaluation: false an evaluation forward checks the replicas' calls with a gather:
  // refused at once too.
  const checked = new SwitchNorm2d(2, {
    backend: "reference",
    sync: { ...group, localEvaluation: false },
  }).eval();
  await assert.rejects(checked.forward(x, [2, 2, 2, 2]), /group is unusable since .*aborted/);
  assert.equal(calls, 1, "no gather on an unusable group");
});

Deno.test("SyncSN: a malformed timeoutMs or signal is refused at construction, naming it", () => {
  const allGather = (v: Float64Array) => Promise.resolve([v]);
  for (const timeoutMs of [0, -5, Infinity, NaN, "100"]) {
    assert.throws(
      // deno-lint-ignore no-explicit-any
      () => new SwitchNorm2d(2, { sync: { size: 1, allGather, timeoutMs: timeoutMs as any } }),
      /SwitchNorm2d: sync\.timeoutMs must be a positive finite number/,
    );
  }
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => new SwitchNorm2d(2, { sync: { size: 1, allGather, signal: {} as any } }),
    /sync\.signal must be an AbortSignal/,
  );
});
