/**
 * Issue 10, point 1, under SyncSN: a BN mean that cancels to ~0 only across replicas. Replica 0
 * holds a narrow row (std 0.3) and a row of std 1.7e7 with mean 1e6 + 5, replica 1 a narrow row
 * and a row of mean -1e6: each replica's own BN mean is ~5e5, far from 0, while the global one is
 * ~1.25, which the float32 rounding of the big rows' means (~2^-25 of their std, ~0.5) reaches.
 * Under a BN-mixed mean the narrow rows take that as their x - mu. WASM summed such groups again
 * within one replica only: y 1.1e3 times its bound, dx 19.7x and dgamma 31x (4.3e-3 relative).
 * Two replicas in one process against the float64 reference on the whole batch, with the nd
 * fuzzer's bounds (tests/fuzz/nd_range_fuzz.ts, `compare`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { type BackendName, SwitchNorm2d, type SyncGroup } from "../mod.ts";
import { seededRandom } from "../examples/_data.ts";
import { type Case, compare, runCase } from "./fuzz/nd_range_fuzz.ts";
import { batchSync } from "../_sync.ts";
import { webgpuTest } from "./_webgpu.ts";

/** How `replicas` delivers: after `latency` ms, and the other replicas' vectors through JSON. */
interface Transport {
  latency?: number;
  json?: boolean;
  /** Counts each replica's gathers. */
  gathers?: number[];
}

/** SyncGroups of `size` replicas in this process: each gather waits for every replica's. */
function replicas(size: number, transport: Transport = {}): SyncGroup[] {
  const queues: { v: Float64Array; resolve: (all: Float64Array[]) => void }[][] = Array.from(
    { length: size },
    () => [],
  );
  const { latency, json, gathers } = transport;
  const through = (v: Float64Array) =>
    json ? Float64Array.from(JSON.parse(JSON.stringify(Array.from(v)))) : v;
  return queues.map((queue, rank) => ({
    size,
    timeoutMs: 10_000,
    allGather: (v: Float64Array) =>
      new Promise<Float64Array[]>((resolve) => {
        if (gathers) gathers[rank] = (gathers[rank] ?? 0) + 1;
        queue.push({ v: v.slice(), resolve });
        if (queues.every((q) => q.length > 0)) {
          const round = queues.map((q) => q.shift()!);
          const deliver = () =>
            round.forEach((me, i) => me.resolve(round.map((s, j) => i === j ? s.v : through(s.v))));
          if (latency === undefined) deliver();
          else setTimeout(deliver, latency);
        }
      }),
  }));
}

const m = 28;

/** A replica's rows: "narrow" (uniform in +-0.5, dy in +-1) or a big row's mean (std 1.7e7). */
type Row = "narrow" | number;

/**
 * The whole batch, SwitchNorm2d [rows, 1, 1, 28], the replicas' rows one after another: narrow
 * rows, and rows of +-pairs of ~3e7 moved to a mean (dy ~1e-3), under a BN-mixed mean and an IN
 * variance.
 */
function cancellingCase(rows: readonly (readonly Row[])[]): Case {
  const r = seededRandom(3);
  const x: number[] = [], dy: number[] = [];
  for (const row of rows.flat()) {
    if (row === "narrow") {
      x.push(...Array.from({ length: m }, () => Math.fround(r() - 0.5)));
      dy.push(...Array.from({ length: m }, () => Math.fround(r() * 2 - 1)));
      continue;
    }
    const half = Array.from({ length: m / 2 }, () => Math.fround((r() * 2 - 1) * 3e7));
    const big = [...half, ...half.map((v) => -v)];
    big[0] = Math.fround(big[0] + row * m);
    x.push(...big);
    dy.push(...Array.from({ length: m }, () => Math.fround((r() * 2 - 1) * 1e-3)));
  }
  return {
    kind: "2d",
    shape: [rows.flat().length, 1, 1, m],
    eps: 1e-5,
    usingBN: true,
    mode: "train",
    weight: [1],
    bias: [0],
    mw: [-30, -30, 2],
    vw: [2, -30, -30],
    rm: [0],
    rv: [1],
    x,
    dy,
    xEval: x,
  };
}

/** A layer of the case's settings on `sync`, in training mode. */
function layerOf(k: Case, backend: BackendName, sync: SyncGroup): SwitchNorm2d {
  const l = new SwitchNorm2d(1, { backend, eps: k.eps, sync });
  l.loadStateDict({
    weight: new Float32Array(k.weight),
    bias: new Float32Array(k.bias),
    mean_weight: new Float32Array(k.mw),
    var_weight: new Float32Array(k.vw),
  }, { strict: false });
  l.train(true);
  return l;
}

/**
 * One training step of the case over one replica per entry of `rows` (on `backends`, as
 * Float32Arrays or resident tensors): y and dx joined again, the gradients and running buffers
 * of replica 0 (every replica's are the global batch's: checked equal).
 */
async function syncedStep(
  k: Case,
  rows: readonly (readonly Row[])[],
  backends: readonly BackendName[],
  resident = false,
  transport: Transport = {},
): Promise<Record<string, Float32Array>> {
  const groups = replicas(rows.length, transport);
  const layers = groups.map((sync, i) => layerOf(k, backends[i], sync));
  const starts = rows.map((_, i) => rows.slice(0, i).flat().length * m);
  const part = (v: number[], i: number) =>
    new Float32Array(v.slice(starts[i], starts[i] + rows[i].length * m));
  const shape = (i: number) => [rows[i].length, 1, 1, m];
  // Resident inputs stay alive until the backward, which reads the x its forward kept.
  const xs = resident
    ? await Promise.all(layers.map((l, i) => l.upload(part(k.x, i), shape(i))))
    : [];
  try {
    const ys = await Promise.all(layers.map(async (l, i) => {
      if (!resident) return await l.forward(part(k.x, i), shape(i), { keepForBackward: true });
      using y = await l.forward(xs[i], { keepForBackward: true });
      return await y.read();
    }));
    const dxs = await Promise.all(layers.map(async (l, i) => {
      if (!resident) return await l.backward(part(k.dy, i));
      using dy = await l.upload(part(k.dy, i), shape(i));
      using dx = await l.backward(dy);
      return await dx.read();
    }));
    const join = (parts: Float32Array[]) => Float32Array.from(parts.flatMap((p) => [...p]));
    const out: Record<string, Float32Array> = { y: join(ys), dx: join(dxs) };
    for (const q of ["weight", "bias", "mean_weight", "var_weight"] as const) {
      out[`d${q}`] = layers[0].grads[q].slice();
      for (const l of layers) assert.deepEqual(l.grads[q], out[`d${q}`], `replicas' d${q}`);
    }
    out.rm = layers[0].running_mean.slice();
    out.rv = layers[0].running_var.slice();
    return out;
  } finally {
    for (const x of xs) x.dispose();
  }
}

/** The nd fuzzer's REAL mismatches of `got` against the reference on the whole batch. */
async function mismatches(k: Case, got: Record<string, Float32Array>): Promise<string[]> {
  const whole = await runCase(k, "reference");
  const want: Record<string, Float32Array> = {};
  for (const key of Object.keys(got)) want[key] = whole[key];
  return compare(k, want, got).filter((line) => line.startsWith("REAL"));
}

for (
  const [name, big] of [
    ["means 1e6 + 5 and -1e6", [1e6 + 5, -1e6]],
    ["means -1e6 and 1e6 + 5", [-1e6, 1e6 + 5]],
    ["means 3e6, -1e6 and -2e6 + 7", [3e6, -1e6, -2e6 + 7]],
  ] as const
) {
  const rows = big.map((mean) => ["narrow", mean] as const);
  for (const resident of [false, true]) {
    Deno.test(
      `wasm: SyncSN sums a BN group again where its mean cancels across replicas (${name}, ` +
        `${resident ? "resident tensors" : "Float32Arrays"})`,
      async () => {
        const k = cancellingCase(rows);
        const gathers: number[] = [];
        const got = await syncedStep(k, rows, rows.map(() => "wasm"), resident, { gathers });
        const real = await mismatches(k, got);
        assert.deepEqual(real, [], real.join("; "));
        // Two for the forward, one for the backward's sums.
        assert.deepEqual(gathers, rows.map(() => 3));
      },
    );
  }
}

Deno.test("reference: SyncSN's cancelling case agrees with the whole batch (the harness)", async () => {
  const rows = [["narrow", 1e6 + 5], ["narrow", -1e6]] as const;
  const k = cancellingCase(rows);
  assert.deepEqual(await mismatches(k, await syncedStep(k, rows, ["reference", "reference"])), []);
});

for (
  const [name, rows, backends] of [
    [
      "the narrow rows on a reference replica, the big ones on WASM replicas",
      [["narrow", "narrow"], [1e6 + 5, 0], [-1e6, 0]],
      ["reference", "wasm", "wasm"],
    ],
    [
      "the narrow row and a big one on a WASM replica, the other on a reference replica",
      [["narrow", 1e6 + 5], ["narrow", -1e6]],
      ["wasm", "reference"],
    ],
  ] as const
) {
  Deno.test(`SyncSN on mixed backends takes the second merge: ${name}`, async () => {
    const k = cancellingCase(rows);
    const real = await mismatches(k, await syncedStep(k, rows, backends));
    assert.deepEqual(real, [], real.join("; "));
  });
}

/**
 * Replicas on `backends` over a transport that sends the other replicas' vectors as JSON: no
 * infinity in any payload (a replica without a narrowest row sends the largest finite double),
 * so every replica takes the same second merge.
 */
async function overJson(backends: readonly BackendName[]): Promise<void> {
  const rows = [["narrow", 1e6 + 5], ["narrow", -1e6], ["narrow", 0]].slice(0, backends.length);
  const k = cancellingCase(rows as Row[][]);
  const gathers: number[] = [];
  const got = await syncedStep(k, rows as Row[][], backends, false, { json: true, gathers });
  assert.deepEqual(gathers, backends.map(() => 3));
  const real = await mismatches(k, got);
  assert.deepEqual(real, [], real.join("; "));
}

Deno.test(
  "SyncSN over a JSON transport: WASM and reference replicas take the second merge together",
  () => overJson(["wasm", "reference"]),
);

Deno.test(
  "SyncSN over a JSON transport: a cancelling channel without narrow rows takes no second merge",
  async () => {
    // Before, a replica without narrowest rows (here the reference) sent Infinity, which JSON
    // turns into 0: the WASM replica took that for a narrow row and waited for a second merge
    // that the reference replica did not take.
    const rows: Row[][] = [[1e6 + 5, 3e6], [-1e6, -3e6]];
    const k = cancellingCase(rows);
    const gathers: number[] = [];
    const got = await syncedStep(k, rows, ["wasm", "reference"], false, { json: true, gathers });
    assert.deepEqual(gathers, [2, 2]);
    const real = await mismatches(k, got);
    assert.deepEqual(real, [], real.join("; "));
  },
);

webgpuTest(
  "SyncSN over a JSON transport: a WebGPU replica (no narrowest rows) takes the second merge too",
  () => overJson(["wasm", "reference", "webgpu"]),
);

Deno.test("SyncSN: a group of one takes no second merge", async () => {
  const rows = [["narrow", 1e6 + 5, "narrow", -1e6]] as const;
  const k = cancellingCase(rows);
  const gathers: number[] = [];
  const got = await syncedStep(k, rows, ["wasm"], false, { gathers });
  assert.deepEqual(gathers, [2]);
  // The replica's own groups were the batch's: taken again by the statistics pass already.
  const real = await mismatches(k, got);
  assert.deepEqual(real, [], real.join("; "));
});

Deno.test(
  "SyncSN: a second merge keeps its place among other layers' gathers whatever the timing",
  async () => {
    // Two layers on one group, called in the same order on every replica; the first one's data
    // cancel (two gathers), the second's are ordinary. Replica 1 starts its second layer's
    // forward 20 ms later, while the transport takes 5 ms: its first layer's second gather
    // came before the second layer's gather, replica 0's after (the gathers paired wrongly:
    // running means 25000.7 and -24999.4 for 0.127, y 157211 for 0.867).
    const rows = [["narrow", 1e6 + 5], ["narrow", -1e6]] as const;
    const k = cancellingCase(rows);
    const r = seededRandom(5);
    const ordinary = Array.from({ length: 4 * m }, () => Math.fround(r() * 4 + 10));
    const step = async (delays: number[], latency?: number) => {
      const groups = replicas(2, { latency });
      const first = groups.map((g) => layerOf(k, "wasm", g));
      const second = groups.map((g) => layerOf(k, "wasm", g));
      const ys = await Promise.all([0, 1].map(async (i) => {
        const x1 = new Float32Array(k.x.slice(i * 2 * m, (i + 1) * 2 * m));
        const p1 = first[i].forward(x1, [2, 1, 1, m], { keepForBackward: true });
        await new Promise((resolve) => setTimeout(resolve, delays[i]));
        const x2 = new Float32Array(ordinary.slice(i * 2 * m, (i + 1) * 2 * m));
        const p2 = second[i].forward(x2, [2, 1, 1, m], { keepForBackward: true });
        return [await p1, await p2];
      }));
      return {
        ys,
        running: [...first, ...second].map((l) => l.running_mean[0]),
      };
    };
    const want = await step([0, 0]);
    assert.equal(want.running[0], want.running[1]);
    for (const delays of [[0, 20], [20, 0]]) {
      const got = await step(delays, 5);
      assert.deepEqual(got.running, want.running, `delays ${delays}`);
      assert.deepEqual(got.ys, want.ys, `delays ${delays}`);
    }
  },
);

Deno.test("SyncSN: a replica whose second merge fails makes the others' fail too", async () => {
  const groups = replicas(2);
  const config = {
    rank: 4,
    numFeatures: 1,
    usingBN: true,
    eps: 1e-5,
    momentum: 0.1,
    usingMovingAverage: true,
    sparse: false,
    radius: 0,
    batchesAccumulated: 0,
  };
  const syncs = groups.map((g) => {
    const s = batchSync(g);
    s.describeWith(() => config);
    s.begin("trainingForward");
    return s;
  });
  // Channel 0's merged mean cancels (5e5 + 5 and -5e5 over a variance of 1e14), and replica 1
  // has a row of variance 0.1: both are asked to sum again; replica 0 fails doing so.
  const calls = syncs.map((s, rank) =>
    s.mergeStats(
      2,
      new Float64Array([rank === 0 ? 5e5 + 5 : -5e5]),
      new Float64Array([1e14]),
      new Float64Array([rank === 0 ? 1e14 : 0.1]),
      () =>
        rank === 0 ? Promise.reject(new Error("replica 0's rows are gone")) : Promise.resolve({
          mean: new Float64Array([-5e5]),
          m2: new Float64Array([1e14]),
        }),
    )
  );
  const [a, b] = await Promise.allSettled(calls);
  assert.equal(a.status, "rejected");
  assert.match(String((a as PromiseRejectedResult).reason), /replica 0's rows are gone/);
  assert.equal(b.status, "rejected");
  assert.match(
    String((b as PromiseRejectedResult).reason),
    /replica 0 \(of 2\) failed its call before the allGather for BN statistics/,
  );
});
