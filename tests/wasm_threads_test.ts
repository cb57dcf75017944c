/**
 * The WASM backend on several threads: results must be the same bits for any thread count (each
 * row is done by one thread, cross-row sums once on the calling thread), and every way threads
 * can be missing or fail must leave a working single-threaded backend that says why.
 *
 * Thread counts here go above this machine's cores on purpose (3 and 4 on 2 cores): the split
 * must not depend on timing. Calls are split from 1 element up (a test hook), so small random
 * shapes exercise every range boundary.
 */
import assert from "node:assert/strict";
import { getNumThreads, setNumThreads, SwitchNorm1d, SwitchNorm2d, SwitchNorm3d } from "../mod.ts";
import type { Gradients, ResidentTensor, SyncGroup } from "../mod.ts";
import { chooseBackend } from "../backends/select.ts";
import { loadWasmBackend, type WasmBackend, type WasmTensor } from "../backends/wasm.ts";
import { setThreadTestHooks, type ThreadTestHooks } from "../backends/_wasm_threads.ts";
import type { SavedForward } from "../backends/_backend.ts";
import { stopThread, type Thread } from "../backends/_wasm_spawn.ts";
import { CTL_BYTES, CTL_SEQ, CTL_STATE, STATE_EXIT } from "../backends/_wasm_worker.ts";
import { MOVING, randomCase, randomDy } from "./_wasm_cases.ts";

// The process-wide backend must load as the threads build, which it does only at 2 threads or
// more (on a one-core machine the default is 1).
if (getNumThreads() < 2) setNumThreads(2);

function random(seed: number) {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
}

/** The first index where two float arrays differ in bits, or -1. */
function firstBitDifference(a: Float32Array | Float64Array, b: Float32Array | Float64Array) {
  if (a.length !== b.length) return 0;
  const ua = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const ub = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i / a.BYTES_PER_ELEMENT | 0;
  return -1;
}

function assertSameBits(what: string, got: Float32Array, want: Float32Array): void {
  const at = firstBitDifference(got, want);
  assert.equal(at, -1, `${what}: differs first at ${at}: ${got[at]} vs ${want[at]}`);
}

/**
 * Sets hooks that split every call into chunks of 4 rows, and counts split calls by thread count
 * (and chunks that workers ran, under "workers").
 */
function splitEverything(extra: ThreadTestHooks = {}): Map<number | "workers", number> {
  const splits = new Map<number | "workers", number>();
  setThreadTestHooks({
    minElements: 1,
    chunkElements: 1,
    noBackoff: true,
    onSplit: (t, ran) => {
      splits.set(t, (splits.get(t) ?? 0) + 1);
      splits.set("workers", (splits.get("workers") ?? 0) + ran);
    },
    ...extra,
  });
  return splits;
}

async function wasmBackend(): Promise<WasmBackend> {
  return (await chooseBackend("wasm")).backend as WasmBackend;
}

interface Case {
  shape: number[];
  options: { usingBN?: boolean; usingMovingAverage?: boolean; eps?: number; sync?: SyncGroup };
  /** x is multiplied by it: tiny rows with eps 0 are "wide" (f64 sweeps, their own flags). */
  scale?: number;
  /** gamma per channel instead of random ones (gamma / std beyond float32: wide rows). */
  gamma?: number[];
  /**
   * Each row's second half is its first half negated (rows of an even length): every mean lies
   * near 0 beside its std, and a forward that a backward may follow sums such rows again in f64.
   */
  mirrored?: boolean;
}

/** Everything a training step, an eval step and a resident step give, as float arrays. */
async function workload(kase: Case, seed: number): Promise<Map<string, Float32Array>> {
  const r = random(seed);
  const [n, c] = kase.shape;
  const length = kase.shape.reduce((a, b) => a * b, 1);
  const Layer = kase.shape.length === 5
    ? SwitchNorm3d
    : kase.shape.length === 2
    ? SwitchNorm1d
    : SwitchNorm2d;
  const sn = new Layer(c, { ...kase.options, backend: "wasm" });
  const k = (kase.shape.length === 2 ? 1 : 2) + (kase.options.usingBN === false ? 0 : 1);
  sn.loadStateDict({
    weight: Float32Array.from({ length: c }, (_, j) => kase.gamma?.[j] ?? 1 + 0.3 * r()),
    bias: Float32Array.from({ length: c }, r),
    mean_weight: Float32Array.from({ length: k }, r),
    var_weight: Float32Array.from({ length: k }, r),
    ...(kase.options.usingBN === false ? {} : {
      running_mean: Float32Array.from({ length: c }, r),
      running_var: Float32Array.from({ length: c }, () => 1 + 0.5 * r()),
    }),
  });
  // Rows of different offsets and scales, so that each row's shift and sums differ.
  const scale = kase.scale ?? 1;
  const x = Float32Array.from({ length }, (_, i) => (5 * r() + (i % 7) * 100 + n) * scale);
  if (kase.mirrored) {
    const m = length / (n * c);
    for (let row = 0; row < n * c; row++) {
      for (let k = 0; k < m / 2; k++) x[row * m + m / 2 + k] = -x[row * m + k];
    }
  }
  const dy = Float32Array.from({ length }, r);
  const out = new Map<string, Float32Array>();
  const grads = (tag: string, g: Gradients) => {
    for (const [name, v] of Object.entries(g)) out.set(`${tag} grad ${name}`, v.slice());
  };
  sn.train();
  sn.zeroGrad();
  out.set("train y", await sn.forward(x, kase.shape));
  out.set("train dx", await sn.backward(dy));
  grads("train", sn.grads);
  out.set("running_mean", sn.running_mean.slice());
  out.set("running_var", sn.running_var.slice());
  // A batch average must be finalized before an evaluation forward uses it.
  if (!sn.usingMovingAverage) sn.finalizeBatchAverage();
  sn.eval();
  const y = new Float32Array(length);
  await sn.forward(x, kase.shape, { out: y });
  out.set("eval y (out)", y);
  sn.train();
  sn.zeroGrad();
  const xr: ResidentTensor = await sn.upload(x, kase.shape);
  const yr = await sn.forward(xr);
  out.set("resident y", await yr.read());
  const dyr = await sn.upload(dy, kase.shape);
  const dxr = await sn.backward(dyr);
  out.set("resident dx", await dxr.read());
  grads("resident", sn.grads);
  for (const t of [xr, yr, dyr, dxr]) t.dispose();
  sn.dispose();
  return out;
}

const CASES: Case[] = [
  { shape: [2, 3, 5, 7], options: {} },
  { shape: [3, 5, 1, 49], options: {} },
  { shape: [1, 7, 3, 1], options: { usingBN: false } },
  { shape: [4, 9, 300, 1], options: { usingMovingAverage: false } },
  { shape: [2, 13, 2, 3, 11], options: {} },
  { shape: [5, 3, 1, 1], options: {} },
  // Variances ~1e-40 with eps 0: rows outside [2^-60, 2^60] take the f64 (wide) sweeps, whose
  // kernels get extra arguments (the wide flag) on every thread.
  { shape: [3, 5, 4, 4], options: { eps: 0 }, scale: 1e-22 },
  // gamma / std beyond float32 (forward and backward wide rows: f64 constants found through the
  // range's offsets) beside ordinary channels, in the four-row sweeps.
  { shape: [4, 5, 5, 7], options: { eps: 0 }, scale: 1e-3, gamma: [1e33, 1, 3e38, -2, 1e36] },
  // Rows of mean ~0: their means are summed again in f64 on every thread (MODE_REFINE_MEANS).
  { shape: [3, 4, 2, 14], options: {}, mirrored: true },
];

Deno.test("1, 2, 3 and 4 threads give the same bits, forward and backward, Float32Array and resident", async () => {
  const backend = await wasmBackend();
  const before = getNumThreads();
  let splits = splitEverything();
  try {
    const want = new Map<number, Map<string, Float32Array>>();
    setNumThreads(1);
    for (const [i, kase] of CASES.entries()) want.set(i, await workload(kase, 11 + i));
    assert.equal(splits.size, 0, "one thread must not split");
    for (const threads of [2, 3, 4]) {
      setNumThreads(threads);
      await backend.threadsReady();
      assert.match(backend.threadNote, new RegExp(`^${threads} threads`));
      // Chunks as they come (the calling thread takes what the workers do not), then every
      // chunk on the workers (the calling thread waits), so that both paths run.
      for (const workersFirst of [false, true]) {
        splits = splitEverything({ workersFirst });
        for (const [i, kase] of CASES.entries()) {
          const got = await workload(kase, 11 + i);
          for (const [what, w] of want.get(i)!) {
            const how = `${threads} threads${workersFirst ? ", workers first" : ""}`;
            assertSameBits(`[${kase.shape}] ${how}: ${what}`, got.get(what)!, w);
          }
        }
        assert.ok((splits.get(threads) ?? 0) > 0, `no call was split ${threads} ways`);
        if (workersFirst) assert.ok(splits.get("workers")! > 0, "the workers ran no chunk");
      }
    }
  } finally {
    setNumThreads(before);
    setThreadTestHooks(undefined);
  }
});

Deno.test("SyncSN on 2 threads gives the same bits as on 1", async () => {
  const backend = await wasmBackend();
  const before = getNumThreads();
  const splits = splitEverything();
  try {
    const run = async () => {
      const r = random(5);
      const shape = [6, 4, 3, 9], length = 6 * 4 * 27;
      const sn = new SwitchNorm2d(4, {
        backend: "wasm",
        sync: { size: 1, allGather: (v) => Promise.resolve([v]) },
      });
      const x = Float32Array.from({ length }, () => 3 * r() + 1);
      const dy = Float32Array.from({ length }, r);
      const y = await sn.forward(x, shape);
      const dx = await sn.backward(dy);
      const out = [y, dx, sn.grads.weight.slice(), sn.grads.mean_weight.slice(), sn.running_var];
      sn.dispose();
      return out;
    };
    setNumThreads(1);
    const want = await run();
    setNumThreads(2);
    await backend.threadsReady();
    const got = await run();
    got.forEach((g, i) => assertSameBits(`SyncSN output ${i}`, g, want[i]));
    assert.ok((splits.get(2) ?? 0) > 0, "no call was split");
  } finally {
    setNumThreads(before);
    setThreadTestHooks(undefined);
  }
});

/**
 * SwitchNorm1d shapes above the one-thread threshold (2^18 elements, default hooks), so that the
 * tiles and chunks are those of real calls: N large and C small (statistics in blocks of 256
 * rows, backward tiles of rows), C large and N small (statistics in row and column tiles,
 * backward tiles of columns), odd C (the column tail inside the last column tile), N >= C > 256
 * (backward tiles of rows, statistics in row and column tiles), batch
 * average, and SyncSN (its partials path).
 */
const CASES_1D: Case[] = [
  { shape: [16384, 16], options: {} },
  { shape: [2051, 129], options: { usingMovingAverage: false } },
  { shape: [8, 32768], options: {} },
  { shape: [37, 8195], options: {} },
  { shape: [601, 600], options: { eps: 1e-3 } },
  {
    shape: [4099, 65],
    options: { sync: { size: 1, allGather: (v) => Promise.resolve([v]) } },
  },
  {
    shape: [33, 8192],
    options: { sync: { size: 1, allGather: (v) => Promise.resolve([v]) } },
  },
];

/** The 1d kernels that a split call runs, each of which must split. */
const KERNELS_1D = [
  "sn_stats_tile_1d",
  "sn_normalize_rows_1d",
  "sn_backward_tile_1d",
  "sn_backward_dx_rows_1d",
];

Deno.test("SwitchNorm1d gives the same bits on 1, 2, 3 and 4 threads, and its four passes really split", async () => {
  const backend = await wasmBackend();
  const before = getNumThreads();
  /** Per kernel: the most ranges a pass split into, and the chunks workers ran. */
  let seen = new Map<string, { ranges: number; workers: number }>();
  const watch = (workersFirst: boolean) => {
    seen = new Map();
    setThreadTestHooks({
      noBackoff: true,
      workersFirst,
      onSplit: (ranges, ran, kernel) => {
        const s = seen.get(kernel) ?? { ranges: 0, workers: 0 };
        seen.set(kernel, { ranges: Math.max(s.ranges, ranges), workers: s.workers + ran });
      },
    });
  };
  try {
    watch(false);
    setNumThreads(1);
    const want = new Map<number, Map<string, Float32Array>>();
    for (const [i, kase] of CASES_1D.entries()) want.set(i, await workload(kase, 40 + i));
    assert.equal(seen.size, 0, "one thread must not split");
    for (const threads of [2, 3, 4]) {
      setNumThreads(threads);
      await backend.threadsReady();
      for (const workersFirst of [false, true]) {
        watch(workersFirst);
        for (const [i, kase] of CASES_1D.entries()) {
          const got = await workload(kase, 40 + i);
          for (const [what, w] of want.get(i)!) {
            const how = `${threads} threads${workersFirst ? ", workers first" : ""}`;
            assertSameBits(`[${kase.shape}] ${how}: ${what}`, got.get(what)!, w);
          }
        }
        for (const kernel of KERNELS_1D) {
          const s = seen.get(kernel);
          assert.ok(s !== undefined, `${kernel} never split at ${threads} threads`);
          // Every shape has at least 4 tiles, and 4 chunks of rows but the shortest.
          assert.equal(s.ranges, threads, `${kernel}: at most ${s.ranges} of ${threads} threads`);
          // Workers first: the calling thread waits, so the workers ran every chunk.
          if (workersFirst) assert.ok(s.workers > 0, `${kernel}: the workers ran no chunk`);
        }
      }
    }
  } finally {
    setNumThreads(before);
    setThreadTestHooks(undefined);
  }
});

/** Two replicas of one process: each allGather resolves once both ranks have posted. */
function pairOfReplicas(): [SyncGroup, SyncGroup] {
  let posted: (Float64Array | undefined)[] = [undefined, undefined];
  let waiting: ((all: Float64Array[]) => void)[] = [];
  const group = (rank: number): SyncGroup => ({
    size: 2,
    allGather: (v) =>
      new Promise((resolve) => {
        posted[rank] = v.slice();
        waiting.push(resolve);
        if (posted.every((p) => p !== undefined)) {
          const all = posted as Float64Array[], ready = waiting;
          posted = [undefined, undefined];
          waiting = [];
          for (const r of ready) r(all);
        }
      }),
  });
  return [group(0), group(1)];
}

Deno.test("SyncSN SwitchNorm1d across two replicas gives the same bits on 1 and 3 threads, split", async () => {
  const backend = await wasmBackend();
  const before = getNumThreads();
  const split = new Set<string>();
  try {
    const run = async () => {
      const [n, c] = [3000, 100], r = random(9);
      const x = Float32Array.from({ length: 2 * n * c }, () => 4 * r() + 2);
      const dy = Float32Array.from({ length: 2 * n * c }, r);
      const groups = pairOfReplicas();
      const layers = groups.map((sync) => new SwitchNorm1d(c, { backend: "wasm", sync }));
      // Both replicas at once on the one backend: each call awaits the other in its middle.
      const half = (a: Float32Array, k: number) => a.slice(k * n * c, (k + 1) * n * c);
      const ys = await Promise.all(layers.map((l, k) => l.forward(half(x, k), [n, c])));
      const dxs = await Promise.all(layers.map((l, k) => l.backward(half(dy, k))));
      const out = [...ys, ...dxs, ...layers.flatMap((l) => [l.grads.weight, l.grads.var_weight])];
      out.push(layers[0].running_var.slice());
      for (const l of layers) l.dispose();
      return out.map((a) => a.slice());
    };
    setThreadTestHooks({ noBackoff: true });
    setNumThreads(1);
    const want = await run();
    setNumThreads(3);
    await backend.threadsReady();
    setThreadTestHooks({ noBackoff: true, onSplit: (_t, _ran, kernel) => split.add(kernel) });
    const got = await run();
    got.forEach((g, i) => assertSameBits(`SyncSN 1d output ${i}`, g, want[i]));
    for (const kernel of KERNELS_1D) assert.ok(split.has(kernel), `${kernel} did not split`);
  } finally {
    setNumThreads(before);
    setThreadTestHooks(undefined);
  }
});

Deno.test("setNumThreads refuses what is not an integer from 1 to 1024, naming it", () => {
  const before = getNumThreads();
  for (const bad of [0, -1, 1.5, NaN, Infinity, 1025, "2", undefined, null]) {
    // A number out of range is a RangeError, anything else a TypeError (as every validator).
    const kind = typeof bad === "number" ? RangeError : TypeError;
    assert.throws(
      () => setNumThreads(bad as number),
      (e: Error) => e instanceof kind && /integer from 1 to 1024, got/.test(e.message),
      String(bad),
    );
    assert.equal(getNumThreads(), before, "a refused value must not change the setting");
  }
  assert.throws(() => setNumThreads("2" as unknown as number), /got "2" \(string\)/);
  setNumThreads(3);
  assert.equal(getNumThreads(), 3);
  setNumThreads(before);
});

/**
 * A forward on a fresh backend (not the process-wide one) loaded under `hooks`: what it says about
 * threads, and whether it computes what a backend on one thread does.
 */
async function freshBackendForward(hooks: ThreadTestHooks) {
  const problem = {
    layout: "nd" as const,
    n: 2,
    c: 2,
    m: 40,
    training: true,
    usingBN: true,
    eps: 1e-5,
  };
  const params = {
    layerId: 1e9,
    weight: new Float32Array([1, 2]),
    bias: new Float32Array([0, 1]),
    meanMix: new Float64Array([0.2, 0.3, 0.5]),
    varMix: new Float64Array([0.5, 0.3, 0.2]),
    runningMean: new Float32Array(2),
    runningVar: new Float32Array([1, 1]),
    version: 0,
  };
  const x = Float32Array.from({ length: 2 * 2 * 40 }, (_, i) => Math.sin(i));
  const run = async (backend: WasmBackend) => {
    try {
      await backend.threadsReady();
      const y = await backend.forward(problem, x, params, { kind: "batchAverage" });
      return { note: backend.threadNote, y: y as Float32Array };
    } finally {
      backend.dispose();
    }
  };
  const before = getNumThreads();
  setNumThreads(1);
  const want = (await run(await loadWasmBackend())).y;
  setNumThreads(2);
  setThreadTestHooks({ minElements: 1, ...hooks });
  try {
    const got = await run(await loadWasmBackend());
    assertSameBits("the fallback's y", got.y, want);
    return got.note;
  } finally {
    setThreadTestHooks(undefined);
    setNumThreads(before);
  }
}

for (const missing of ["Worker", "SharedArrayBuffer", "Atomics"] as const) {
  Deno.test(`without ${missing} the backend runs on one thread and says why`, async () => {
    const note = await freshBackendForward({ missing });
    assert.equal(note, `1 thread: ${missing} is not available`);
  });
}

Deno.test("setNumThreads(1) before the backend loads gives the single-threaded build, and it stays so", async () => {
  const before = getNumThreads();
  let spawned = 0;
  setNumThreads(1);
  setThreadTestHooks({ onSpawn: () => spawned++ });
  const backend = await loadWasmBackend();
  try {
    assert.equal(backend.threadNote, "1 thread: setNumThreads(1) when the backend loaded");
    setNumThreads(2);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await backend.threadsReady();
    assert.equal(spawned, 0);
    assert.equal(backend.threadNote, "1 thread: setNumThreads(1) when the backend loaded");
  } finally {
    backend.dispose();
    setThreadTestHooks(undefined);
    setNumThreads(before);
  }
});

Deno.test("a backend loaded on 2 threads and set to 1 splits nothing, and splits again at 2", async () => {
  const backend = await wasmBackend();
  const before = getNumThreads();
  const splits = splitEverything();
  try {
    setNumThreads(2);
    await backend.threadsReady();
    setNumThreads(1);
    assert.equal(backend.threadNote, "1 thread (setNumThreads(1))");
    await workload(CASES[0], 1);
    assert.equal(splits.size, 0);
    setNumThreads(2);
    await workload(CASES[0], 1);
    assert.ok((splits.get(2) ?? 0) > 0);
  } finally {
    setNumThreads(before);
    setThreadTestHooks(undefined);
  }
});

Deno.test("a worker that fails to start leaves one thread, with the reason", async () => {
  const note = await freshBackendForward({
    workerSource: 'throw new Error("this worker cannot start");',
  });
  assert.match(note, /^1 thread: a worker thread failed to start: .*cannot start/);
});

Deno.test("a worker that traps fails the call with a clear error, and the next call works", async () => {
  const backend = await wasmBackend();
  const before = getNumThreads();
  try {
    setNumThreads(2);
    splitEverything();
    await backend.threadsReady();
    const sn = new SwitchNorm2d(3, { backend: "wasm" });
    const x = Float32Array.from({ length: 4 * 3 * 20 }, (_, i) => Math.cos(i));
    const want = await sn.forward(x, [4, 3, 4, 5]);
    const weight = sn.weight.slice(), runningMean = sn.running_mean.slice();
    splitEverything({ trapNextJob: true });
    await assert.rejects(
      () => sn.forward(x, [4, 3, 4, 5]),
      /wasm backend: worker thread 1 trapped in sn_stats_rows_nd: .*out of bounds/,
    );
    assertSameBits("weight after the failed call", sn.weight, weight);
    assertSameBits("running_mean after the failed call", sn.running_mean, runningMean);
    assert.match(backend.threadNote, /^2 threads/);
    // The buffers are as before the failed call, so the next call gives the same y... after
    // the same running update: compare with a fresh layer's second call instead.
    const again = await sn.forward(x, [4, 3, 4, 5]);
    assert.ok(again.every(Number.isFinite));
    sn.dispose();
    const fresh = new SwitchNorm2d(3, { backend: "wasm" });
    await fresh.forward(x, [4, 3, 4, 5]);
    assertSameBits("the call after the trap", again, await fresh.forward(x, [4, 3, 4, 5]));
    fresh.dispose();
    assert.equal(want.length, again.length);
  } finally {
    setNumThreads(before);
    setThreadTestHooks(undefined);
  }
});

Deno.test("a worker that traps in a SwitchNorm1d pass fails the call naming the kernel, and the next call works", async () => {
  const backend = await wasmBackend();
  const before = getNumThreads();
  try {
    setNumThreads(2);
    await backend.threadsReady();
    // 600 rows of 4: three blocks of rows, so the statistics pass has three tiles to split.
    const x = Float32Array.from({ length: 600 * 4 }, (_, i) => Math.cos(i));
    const fresh = new SwitchNorm1d(4, { backend: "wasm" });
    splitEverything();
    await fresh.forward(x, [600, 4]);
    const want = await fresh.forward(x, [600, 4]);
    fresh.dispose();
    const sn = new SwitchNorm1d(4, { backend: "wasm" });
    await sn.forward(x, [600, 4]);
    const runningMean = sn.running_mean.slice();
    splitEverything({ trapNextJob: true });
    await assert.rejects(
      () => sn.forward(x, [600, 4]),
      /wasm backend: worker thread 1 trapped in sn_stats_tile_1d: .*out of bounds/,
    );
    assertSameBits("running_mean after the failed call", sn.running_mean, runningMean);
    assertSameBits("the call after the trap", await sn.forward(x, [600, 4]), want);
    sn.dispose();
  } finally {
    setNumThreads(before);
    setThreadTestHooks(undefined);
  }
});

Deno.test("after a worker was late, calls run on one thread for a while, with the same bits", async () => {
  const backend = await loadWasmBackend();
  const before = getNumThreads();
  setNumThreads(2);
  let splits = 0;
  const run = () => {
    const problem = {
      layout: "nd" as const,
      n: 4,
      c: 4,
      m: 64,
      training: false,
      usingBN: false,
      eps: 1e-5,
    };
    const params = {
      layerId: 5,
      weight: new Float32Array(4).fill(1),
      bias: new Float32Array(4),
      meanMix: new Float64Array([0.5, 0.5, 0]),
      varMix: new Float64Array([0.5, 0.5, 0]),
      runningMean: new Float32Array(0),
      runningVar: new Float32Array(0),
      version: 0,
    };
    const x = Float32Array.from({ length: 4 * 4 * 64 }, (_, i) => Math.sin(i * 0.3));
    return backend.forward(problem, x, params, { kind: "batchAverage" }) as Promise<Float32Array>;
  };
  try {
    await backend.threadsReady();
    const hooks = { minElements: 1, chunkElements: 1, onSplit: () => splits++ };
    setThreadTestHooks({ ...hooks, noBackoff: true });
    const want = await run();
    assert.equal(splits, 2, "the statistics and the normalize pass are split");
    // Worker 1 takes each job, then sleeps 30 ms: the caller waits on it, and backs off (for
    // 500 ms here, not 5, so that a busy machine cannot end it before the next call).
    setThreadTestHooks({ ...hooks, slowWorkerMs: 30, backoffStartMs: 500 });
    assertSameBits("with a late worker", await run(), want);
    assert.equal(splits, 3, "the pass after the late worker must run on one thread");
    assert.match(backend.threadNote, /on 1 for 500 ms after a late worker/);
    assertSameBits("during the back-off", await run(), want);
    assert.equal(splits, 3);
    await new Promise((resolve) => setTimeout(resolve, 600));
    setThreadTestHooks({ ...hooks, noBackoff: true });
    assertSameBits("after the back-off", await run(), want);
    assert.ok(splits > 3, "calls split again after the back-off");
  } finally {
    backend.dispose();
    setThreadTestHooks(undefined);
    setNumThreads(before);
  }
});

Deno.test("the memory grows between split calls and the workers see the new pages", async () => {
  const backend = await wasmBackend();
  const before = getNumThreads();
  splitEverything();
  try {
    setNumThreads(1);
    const kase: Case = { shape: [3, 4, 33, 5], options: {} };
    const want = await workload(kase, 3);
    setNumThreads(2);
    await backend.threadsReady();
    const bytes = backend.memoryBytes;
    // A block larger than the memory so far: the next tensors live in pages added now.
    const big = backend.upload(new Float32Array(bytes / 4 + 1), [bytes / 4 + 1]);
    assert.ok(backend.memoryBytes > bytes, "the memory did not grow");
    const got = await workload(kase, 3);
    big.dispose();
    for (const [what, w] of want) assertSameBits(`after growth: ${what}`, got.get(what)!, w);
  } finally {
    setNumThreads(before);
    setThreadTestHooks(undefined);
  }
});

Deno.test("a script that ran multi-threaded exits by itself, with no permission flag", async () => {
  const mod = new URL("../mod.ts", import.meta.url).href;
  const hooksAt = new URL("../backends/_wasm_threads.ts", import.meta.url).href;
  const script = `
import { setNumThreads, SwitchNorm2d } from "${mod}";
import { setThreadTestHooks } from "${hooksAt}";
setNumThreads(2);
setThreadTestHooks({ minElements: 1, chunkElements: 1, workersFirst: true });
const sn = new SwitchNorm2d(4, { backend: "wasm" });
const x = Float32Array.from({ length: 8 * 4 * 64 }, (_, i) => Math.sin(i));
let reason = "";
for (let i = 0; i < 200 && !reason.includes("2 threads"); i++) {
  await sn.forward(x, [8, 4, 8, 8]);
  reason = sn.backendInfo.reason;
  await new Promise((r) => setTimeout(r, 10));
}
await sn.forward(x, [8, 4, 8, 8]);
console.log(sn.backendInfo.reason);
`;
  // 20 s: a busy CI machine starts Deno slowly; a pool that kept the process alive never ends.
  const out = await runScript(script, 20_000);
  assert.equal(out.code, 0, `the script did not exit by itself (code ${out.code}):\n${out.stderr}`);
  assert.match(out.stdout, /2 threads/);
});

/** Runs `script` in a fresh Deno process, killed after `killAfterMs`: its exit code and output. */
async function runScript(script: string, killAfterMs: number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", "--no-lock", "--no-config", script],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const timer = setTimeout(() => child.kill(), killAfterMs);
  const out = await child.output();
  clearTimeout(timer);
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

/** A small nd forward on `backend` (not a layer's): its y. */
function smallForward(backend: WasmBackend, seed = 1): Promise<Float32Array> {
  const problem = { layout: "nd" as const, n: 4, c: 4, m: 64, training: false, usingBN: false };
  const params = {
    layerId: 5,
    weight: new Float32Array(4).fill(1),
    bias: new Float32Array(4),
    meanMix: new Float64Array([0.5, 0.5, 0]),
    varMix: new Float64Array([0.5, 0.5, 0]),
    runningMean: new Float32Array(0),
    runningVar: new Float32Array(0),
    version: 0,
  };
  const x = Float32Array.from({ length: 4 * 4 * 64 }, (_, i) => Math.sin(i * 0.3 + seed));
  return backend.forward({ ...problem, eps: 1e-5 }, x, params, {
    kind: "batchAverage",
  }) as Promise<Float32Array>;
}

/** Waits (polling, at most `ms`) until `ok()` holds; whether it did. */
async function until(ok: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (!ok() && performance.now() < end) await new Promise((r) => setTimeout(r, 5));
  return ok();
}

Deno.test("a worker whose thread ends between calls is replaced, and 20 such ends give back each one's block", async () => {
  const before = getNumThreads();
  setNumThreads(2);
  let spawned = 0, workerChunks = 0;
  const hooks: ThreadTestHooks = {
    minElements: 1,
    chunkElements: 1,
    noBackoff: true,
    onSpawn: () => spawned++,
    onSplit: (_, ran) => workerChunks += ran,
  };
  setThreadTestHooks(hooks);
  const backend = await loadWasmBackend();
  try {
    await backend.threadsReady();
    assert.equal(spawned, 1);
    const want = await smallForward(backend);
    const used = backend.usedBytes, bytes = backend.memoryBytes;
    for (let i = 1; i <= 20; i++) {
      // Worker 1 runs its share of this call, then its thread ends.
      setThreadTestHooks({ ...hooks, endNextJob: true });
      assertSameBits(`the call before end ${i}`, await smallForward(backend), want);
      assert.ok(
        await until(() => spawned === i + 1, 10_000),
        `no worker replaced the one that ended (${i}): ${spawned} started`,
      );
      await backend.threadsReady();
      // The ended worker's stack and control block went back to the heap; its successor's
      // took their place.
      assert.equal(backend.usedBytes, used, `bytes in use after end ${i}`);
    }
    assert.equal(backend.memoryBytes, bytes);
    // The last successor runs rows: every chunk on the workers, with the same bits.
    setThreadTestHooks({ ...hooks, workersFirst: true });
    workerChunks = 0;
    assertSameBits("the call after the last end", await smallForward(backend), want);
    assert.ok(workerChunks > 0, "the replacement ran no chunk");
    assert.match(backend.threadNote, /^2 threads/);
  } finally {
    backend.dispose();
    setThreadTestHooks(undefined);
    setNumThreads(before);
  }
});

Deno.test("10,000 calls split across 2 threads (training steps, Float32Array and resident) keep the memory size and the bytes in use", async () => {
  const before = getNumThreads();
  setNumThreads(2);
  const splits = splitEverything({ waitForWorkers: true });
  const backend = await loadWasmBackend();
  try {
    const cases = [
      randomCase(1, "nd", [2, 3, 17], true, true),
      randomCase(2, "nd", [4, 8, 49], true, false),
      randomCase(3, "nd", [5, 2, 300], true, true),
      randomCase(4, "1d", [33, 12, 1], true, true),
      randomCase(5, "nd", [3, 1, 1], true, true),
    ];
    const params = cases.map((c, i) => ({ ...c.params(), layerId: 20 + i }));
    const dys = cases.map((c, i) => randomDy(30 + i, c.x.length));
    const step = async (i: number) => {
      const k = i % cases.length, c = cases[k], p = params[k], saved: SavedForward = {};
      if (i % 3 === 0) {
        using x = backend.upload(c.x, [c.x.length]);
        using dy = backend.upload(dys[k], [c.x.length]);
        using _y = await backend.forward(c.problem, x, p, MOVING, undefined, saved) as Disposable;
        using _dx = (await backend.backward(saved, dy, p)).dx as Disposable;
      } else {
        await backend.forward(c.problem, c.x, p, MOVING, undefined, saved);
        await backend.backward(saved, dys[k], p);
      }
    };
    for (let i = 0; i < 3 * cases.length; i++) await step(i);
    const bytes = backend.memoryBytes, used = backend.usedBytes;
    splits.clear();
    // A forward and a backward per step.
    for (let i = 0; i < 5000; i++) await step(i);
    assert.equal(backend.memoryBytes, bytes, "the memory grew");
    assert.equal(backend.usedBytes, used, "bytes in use changed");
    // 3 of the 5 cases are nd with more than one chunk of rows: each of their 1000 steps splits
    // the forward's 2 passes and the backward's 2 across both threads; the 1d case [33, 12] splits
    // 2 of its 4 (its 33 rows make one tile for the statistics and the reduction: oned::Tiles).
    assert.equal(splits.get(2), 3 * 1000 * 4 + 1000 * 2, "passes split 2 ways");
    assert.ok(splits.get("workers")! > 0, "the worker ran no chunk");
  } finally {
    backend.dispose();
    setThreadTestHooks(undefined);
    setNumThreads(before);
  }
});

Deno.test("the memory grows 4 times right after split calls, and the worker runs every row of the next call in the new pages", async () => {
  const before = getNumThreads();
  setNumThreads(2);
  splitEverything({ waitForWorkers: true });
  const backend = await loadWasmBackend();
  try {
    const c = randomCase(9, "nd", [4, 6, 45], true, true);
    /** The forward of c on x, in place (y over x). */
    const run = async (x: WasmTensor) => {
      await backend.forward(c.problem, x, c.params(), MOVING, x);
      return await x.read();
    };
    setNumThreads(1);
    using one = backend.upload(c.x, [c.x.length]);
    const want = await run(one);
    setNumThreads(2);
    const splits = splitEverything({ waitForWorkers: true, workersFirst: true });
    for (let i = 0; i < 4; i++) {
      using first = backend.upload(c.x, [c.x.length]);
      await run(first); // split: the worker ran every chunk and is spinning or just asleep now
      // Tensors until one lands past the memory's end so far: it grew, and x is in new pages.
      const bytes = backend.memoryBytes, plugs: WasmTensor[] = [];
      do plugs.push(backend.upload(c.x, [c.x.length])); while (
        plugs.at(-1)!.data.byteOffset < bytes
      );
      assert.ok(backend.memoryBytes > bytes, "the memory did not grow");
      assertSameBits(`y after growth ${i + 1}`, await run(plugs.at(-1)!), want);
      for (const p of plugs) p.dispose();
    }
    assert.equal(splits.get(2), 4 * 2 * 2, "the statistics and normalize passes, split");
    assert.ok(splits.get("workers")! > 0, "the worker ran no chunk");
  } finally {
    backend.dispose();
    setThreadTestHooks(undefined);
    setNumThreads(before);
  }
});

Deno.test("a worker that fails to start keeps its block until its thread has ended, then gives it back", async () => {
  const before = getNumThreads();
  setNumThreads(2);
  setThreadTestHooks({
    // Says it failed, but its thread lives on for 300 ms (as one that answers late would, and
    // might still write its control block).
    workerSource: `
      require("node:worker_threads").parentPort.postMessage({ error: "late failure" });
      setTimeout(() => {}, 300);`,
  });
  const backend = await loadWasmBackend();
  try {
    await backend.threadsReady();
    assert.match(backend.threadNote, /^1 thread: a worker thread failed to start: late failure/);
    const held = backend.usedBytes;
    assert.ok(
      await until(() => backend.usedBytes < held, 10_000),
      "the block was not given back after the thread ended",
    );
    assert.equal(held - backend.usedBytes, 512 + 65536, "the worker's control block and stack");
  } finally {
    backend.dispose();
    setThreadTestHooks(undefined);
    setNumThreads(before);
  }
});

Deno.test("stopThread tells a worker to exit and terminates it once, however often it is called", () => {
  const ctl = new Int32Array(new SharedArrayBuffer(CTL_BYTES));
  let terminated = 0;
  const thread: Thread = {
    ctl,
    ctlAt: 0,
    block: 0,
    seq: 0,
    stopped: false,
    terminate: () => terminated++,
  };
  stopThread(thread);
  stopThread(thread);
  assert.equal(terminated, 1);
  assert.equal(ctl[CTL_STATE], STATE_EXIT);
  assert.equal(ctl[CTL_SEQ], 1, "told to exit once");
});

Deno.test("a loop of awaited calls that never yields to the event loop starts its workers and runs on them", async () => {
  // The workers' start waited for the task that loaded the backend to end, which a loop of
  // awaited calls (microtasks) never does: 150 training calls over 1.25 s all ran on one thread
  // (realistic-use helper-83). A split call now begins a start waiting for over 50 ms.
  const mod = new URL("../mod.ts", import.meta.url).href;
  const hooksAt = new URL("../backends/_wasm_threads.ts", import.meta.url).href;
  const script = `
import { setNumThreads, SwitchNorm2d } from "${mod}";
import { setThreadTestHooks } from "${hooksAt}";
setNumThreads(2);
setThreadTestHooks({ minElements: 1 });
const sn = new SwitchNorm2d(4, { backend: "wasm" });
const x = Float32Array.from({ length: 8 * 4 * 64 }, (_, i) => Math.sin(i));
let reason = "";
const t0 = performance.now();
while (performance.now() - t0 < 8000 && !reason.startsWith("requested: wasm; 2 threads")) {
  await sn.forward(x, [8, 4, 8, 8]);
  reason = sn.backendInfo.reason;
}
console.log(reason);
Deno.exit(0);
`;
  const out = await runScript(script, 30_000);
  assert.equal(out.code, 0, `the script failed (code ${out.code}):\n${out.stderr}`);
  assert.match(out.stdout, /; 2 threads/);
});
