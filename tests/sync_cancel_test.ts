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
import { SwitchNorm2d, type SyncGroup } from "../mod.ts";
import { seededRandom } from "../examples/_data.ts";
import { type Case, compare, runCase } from "./fuzz/nd_range_fuzz.ts";
import { batchSync } from "../_sync.ts";

/** SyncGroups of `size` replicas in this process: each gather waits for every replica's. */
function replicas(size: number): SyncGroup[] {
  const queues: { v: Float64Array; resolve: (all: Float64Array[]) => void }[][] = Array.from(
    { length: size },
    () => [],
  );
  return queues.map((queue) => ({
    size,
    allGather: (v: Float64Array) =>
      new Promise<Float64Array[]>((resolve) => {
        queue.push({ v: v.slice(), resolve });
        if (queues.every((q) => q.length > 0)) {
          const round = queues.map((q) => q.shift()!);
          for (const r of round) r.resolve(round.map((s) => s.v));
        }
      }),
  }));
}

const m = 28;

/**
 * The whole batch, SwitchNorm2d [4, 1, 1, 28]: per replica a narrow row (uniform in +-0.5, dy
 * uniform in +-1) and a row of +-pairs of ~3e7 whose mean is `big[replica]` (dy ~1e-3), under a
 * BN-mixed mean and an IN variance.
 */
function cancellingCase(big: readonly number[]): Case {
  const r = seededRandom(3);
  const x: number[] = [], dy: number[] = [];
  for (const mean of big) {
    x.push(...Array.from({ length: m }, () => Math.fround(r() - 0.5)));
    const half = Array.from({ length: m / 2 }, () => Math.fround((r() * 2 - 1) * 3e7));
    const row = [...half, ...half.map((v) => -v)];
    row[0] = Math.fround(row[0] + mean * m);
    x.push(...row);
  }
  for (let k = 0; k < big.length; k++) {
    dy.push(...Array.from({ length: m }, () => Math.fround(r() * 2 - 1)));
    dy.push(...Array.from({ length: m }, () => Math.fround((r() * 2 - 1) * 1e-3)));
  }
  return {
    kind: "2d",
    shape: [2 * big.length, 1, 1, m],
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

/**
 * One training step of the case split over `replicas` (each its consecutive samples, as
 * Float32Arrays or resident tensors): y and dx joined again, the gradients and running buffers
 * of replica 0 (every replica's are the global batch's: checked equal).
 */
async function syncedStep(
  k: Case,
  size: number,
  backend: "wasm" | "reference",
  resident: boolean,
): Promise<Record<string, Float32Array>> {
  const groups = replicas(size), per = k.x.length / size, shape = [...k.shape];
  shape[0] /= size;
  const layers = groups.map((sync) => {
    const l = new SwitchNorm2d(1, { backend, eps: k.eps, sync });
    l.loadStateDict({
      weight: new Float32Array(k.weight),
      bias: new Float32Array(k.bias),
      mean_weight: new Float32Array(k.mw),
      var_weight: new Float32Array(k.vw),
    }, { strict: false });
    l.train(true);
    return l;
  });
  const part = (v: number[], i: number) => new Float32Array(v.slice(i * per, (i + 1) * per));
  // Resident inputs stay alive until the backward, which reads the x its forward kept.
  const xs = resident ? await Promise.all(layers.map((l, i) => l.upload(part(k.x, i), shape))) : [];
  try {
    const ys = await Promise.all(layers.map(async (l, i) => {
      if (!resident) return await l.forward(part(k.x, i), shape, { keepForBackward: true });
      using y = await l.forward(xs[i], { keepForBackward: true });
      return await y.read();
    }));
    const dxs = await Promise.all(layers.map(async (l, i) => {
      if (!resident) return await l.backward(part(k.dy, i));
      using dy = await l.upload(part(k.dy, i), shape);
      using dx = await l.backward(dy);
      return await dx.read();
    }));
    return gathered(ys, dxs);
  } finally {
    for (const x of xs) x.dispose();
  }
  /** y and dx joined again; replica 0's gradients and running buffers. */
  function gathered(ys: Float32Array[], dxs: Float32Array[]): Record<string, Float32Array> {
    const join = (parts: Float32Array[]) => Float32Array.from(parts.flatMap((p) => [...p]));
    const out: Record<string, Float32Array> = { y: join(ys), dx: join(dxs) };
    for (const q of ["weight", "bias", "mean_weight", "var_weight"] as const) {
      out[`d${q}`] = layers[0].grads[q].slice();
      for (const l of layers) assert.deepEqual(l.grads[q], out[`d${q}`], `replicas' d${q}`);
    }
    out.rm = layers[0].running_mean.slice();
    out.rv = layers[0].running_var.slice();
    return out;
  }
}

for (
  const [name, big] of [
    ["means 1e6 + 5 and -1e6", [1e6 + 5, -1e6]],
    ["means -1e6 and 1e6 + 5", [-1e6, 1e6 + 5]],
    ["means 3e6, -1e6 and -2e6 + 7", [3e6, -1e6, -2e6 + 7]],
  ] as const
) {
  for (const resident of [false, true]) {
    Deno.test(
      `wasm: SyncSN sums a BN group again where its mean cancels across replicas (${name}, ` +
        `${resident ? "resident tensors" : "Float32Arrays"})`,
      async () => {
        const k = cancellingCase(big);
        const whole = await runCase(k, "reference");
        const want: Record<string, Float32Array> = {};
        const got = await syncedStep(k, big.length, "wasm", resident);
        for (const key of Object.keys(got)) want[key] = whole[key];
        const real = compare(k, want, got).filter((line) => line.startsWith("REAL"));
        assert.deepEqual(real, [], real.join("; "));
      },
    );
  }
}

Deno.test("reference: SyncSN's cancelling case agrees with the whole batch (the harness)", async () => {
  const k = cancellingCase([1e6 + 5, -1e6]);
  const whole = await runCase(k, "reference");
  const got = await syncedStep(k, 2, "reference", false);
  const want: Record<string, Float32Array> = {};
  for (const key of Object.keys(got)) want[key] = whole[key];
  assert.deepEqual(compare(k, want, got).filter((line) => line.startsWith("REAL")), []);
});

Deno.test(
  "wasm and reference replicas in one group both take part in the second merge",
  async () => {
    const k = cancellingCase([1e6 + 5, -1e6]);
    const whole = await runCase(k, "reference");
    const groups = replicas(2), per = k.x.length / 2, shape = [2, 1, 1, m];
    const layers = (["wasm", "reference"] as const).map((backend, i) => {
      const l = new SwitchNorm2d(1, { backend, eps: k.eps, sync: groups[i] });
      l.loadStateDict({
        mean_weight: new Float32Array(k.mw),
        var_weight: new Float32Array(k.vw),
      }, { strict: false });
      return l;
    });
    const ys = await Promise.all(
      layers.map((l, i) =>
        l.forward(new Float32Array(k.x.slice(i * per, (i + 1) * per)), shape, {
          keepForBackward: true,
        })
      ),
    );
    // The WASM replica's narrow row, mixed on the global BN mean: within y's bound of the
    // reference on the whole batch (the reference replica's own rows were summed in float64).
    const want = whole.y.subarray(0, m), got = ys[0].subarray(0, m);
    for (let i = 0; i < m; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-5, `y[${i}]`);
    await Promise.all(
      layers.map((l, i) => l.backward(new Float32Array(k.dy.slice(i * per, (i + 1) * per)))),
    );
    assert.ok(
      Math.abs(layers[0].grads.weight[0] - whole.dweight[0]) <= 1e-4 * Math.abs(whole.dweight[0]),
    );
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
