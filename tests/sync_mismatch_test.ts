/**
 * SyncSN replicas that do not match: layers made with different options (eps, momentum, the
 * moving average or the batch average, numFeatures, the layer class, Sparse SN, its radius), batch
 * averages begun apart, and replicas making different calls (one in training mode, one in
 * evaluation mode; a forward against a backward), and two layers with the same settings sharing
 * a group that the replicas call in different orders (one layer's statistics merged with the
 * other's). Each used to be accepted silently (running buffers drifting apart or wrong, or a
 * training replica waiting for a gather that never came): now the call fails at once on every
 * replica, naming the difference and both values, and changes no parameter, buffer or gradient.
 * The replicas run in this process over an in-memory all-gather (the transport does not matter
 * here; tests/sync_failure_test.ts uses Workers).
 */
import assert from "node:assert/strict";
import { type SwitchNorm, SwitchNorm1d, SwitchNorm2d, type SyncGroup } from "../mod.ts";
import type { BackendName } from "../backends/_backend.ts";
import { testEachBackend } from "./_backends.ts";
import { seededRandom } from "../examples/_data.ts";

/**
 * `size` groups over one in-memory all-gather: a gather completes once every replica has posted
 * a vector, and a replica that never posts leaves the others waiting (no timeout: a test whose
 * replicas wait fails as a pending promise, never by a timing).
 */
function groups(size: number, extra: Partial<SyncGroup> = {}): SyncGroup[] {
  const posted: Float64Array[][] = Array.from({ length: size }, () => []);
  const waiting: ((all: Float64Array[]) => void)[][] = Array.from({ length: size }, () => []);
  const flush = () => {
    while (posted.every((q) => q.length > 0)) {
      const all = posted.map((q) => q.shift()!);
      for (const w of waiting) w.shift()!(all.map((v) => v.slice()));
    }
  };
  return Array.from({ length: size }, (_, rank) => ({
    ...extra,
    size,
    allGather(v: Float64Array) {
      return new Promise<Float64Array[]>((resolve) => {
        posted[rank].push(v.slice());
        waiting[rank].push(resolve);
        flush();
      });
    },
  }));
}

/**
 * Everything a failed call must leave as it was: parameters and buffers (through the getters:
 * `stateDict()` refuses a batch average's sums), gradients, batch count.
 */
function snapshot(layer: SwitchNorm) {
  return {
    state: [
      layer.weight,
      layer.bias,
      layer.mean_weight,
      layer.var_weight,
      layer.running_mean,
      layer.running_var,
    ],
    grads: structuredClone(layer.grads),
    batches: layer.batchesAccumulated,
  };
}

/** Random input of `shape`, seeded. */
function input(shape: number[], seed: number): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: shape.reduce((a, b) => a * b) }, () => 2 * r() - 1);
}

/** The two replicas' layers of one case and the shapes of their inputs. */
interface Pair {
  readonly label: string;
  readonly make: (backend: BackendName, sync: SyncGroup, rank: number) => SwitchNorm;
  readonly shapes: readonly [number[], number[]];
  /** What the message must say: the difference and both values. */
  readonly says: RegExp;
}

const S2 = [2, 3, 2, 2];
const pairs: Pair[] = [
  {
    label: "eps",
    make: (backend, sync, rank) => new SwitchNorm2d(3, { backend, sync, eps: [1e-5, 1][rank] }),
    shapes: [S2, S2],
    says: /differ in eps: replica 0 \(of 2\) has 0\.00001, replica 1 has 1;/,
  },
  {
    label: "momentum",
    make: (backend, sync, rank) =>
      new SwitchNorm2d(3, { backend, sync, momentum: [0.1, 0.9][rank] }),
    shapes: [S2, S2],
    says: /differ in momentum: replica 0 \(of 2\) has 0\.1, replica 1 has 0\.9;/,
  },
  {
    label: "usingMovingAverage",
    make: (backend, sync, rank) =>
      new SwitchNorm2d(3, { backend, sync, usingMovingAverage: rank === 0 }),
    shapes: [S2, S2],
    says: /differ in usingMovingAverage: replica 0 \(of 2\) has true, replica 1 has false;/,
  },
  {
    label: "numFeatures",
    make: (backend, sync, rank) => new SwitchNorm2d(3 + rank, { backend, sync }),
    shapes: [S2, [2, 4, 2, 2]],
    says: /differ in numFeatures: replica 0 \(of 2\) has 3, replica 1 has 4;/,
  },
  {
    label: "the layer class (same numFeatures)",
    make: (backend, sync, rank) =>
      rank === 0 ? new SwitchNorm1d(3, { backend, sync }) : new SwitchNorm2d(3, { backend, sync }),
    shapes: [[2, 3], S2],
    says:
      /differ in layer class: replica 0 \(of 2\) has a SwitchNorm1d, replica 1 has a SwitchNorm2d;/,
  },
  {
    label: "sparse",
    make: (backend, sync, rank) =>
      new SwitchNorm2d(3, { backend, sync, sparse: rank === 1, momentum: 0.9 }),
    shapes: [S2, S2],
    says: /differ in sparse: replica 0 \(of 2\) has false, replica 1 has true;/,
  },
  {
    label: "Sparse SN's radius",
    make: (backend, sync, rank) => {
      const layer = new SwitchNorm2d(3, { backend, sync, sparse: true });
      layer.radius = [0.25, 0.5][rank];
      return layer;
    },
    shapes: [S2, S2],
    says: /differ in radius: replica 0 \(of 2\) has 0\.25, replica 1 has 0\.5; set the same radius/,
  },
];

await testEachBackend(
  "SyncSN: replicas whose layers differ in an option that shapes the result fail each call at once on every replica, naming it and both values, changing nothing",
  async (backend) => {
    for (const { label, make, shapes, says } of pairs) {
      const sync = groups(2);
      const layers = sync.map((g, rank) => make(backend, g, rank));
      const before = layers.map(snapshot);
      const forwards = await Promise.allSettled(
        layers.map((l, rank) => l.forward(input(shapes[rank], rank), shapes[rank])),
      );
      for (const [rank, f] of forwards.entries()) {
        assert.equal(f.status, "rejected", `${label}: replica ${rank}'s forward resolved`);
        assert.match(String((f as PromiseRejectedResult).reason), says, label);
        assert.match(String((f as PromiseRejectedResult).reason), /This call changed nothing/);
        assert.deepEqual(snapshot(layers[rank]), before[rank], `${label}: replica ${rank}`);
      }
      // The group stays usable: the same difference fails the next call the same way.
      const again = await Promise.allSettled(
        layers.map((l, rank) => l.forward(input(shapes[rank], rank), shapes[rank])),
      );
      for (const f of again) assert.match(String((f as PromiseRejectedResult).reason), says);
    }
  },
);

await testEachBackend(
  "SyncSN: with localEvaluation: false, a replica in evaluation mode while another trains fails both forwards at once, changing nothing",
  async (backend) => {
    const sync = groups(2, { localEvaluation: false });
    const layers = sync.map((g) => new SwitchNorm2d(3, { backend, sync: g }));
    layers[1].eval();
    const before = layers.map(snapshot);
    // Without a timeout, a replica waiting for a gather that never comes would never settle.
    const forwards = await Promise.allSettled(
      layers.map((l, rank) => l.forward(input(S2, rank), S2)),
    );
    for (const [rank, f] of forwards.entries()) {
      assert.equal(f.status, "rejected", `replica ${rank}'s forward resolved`);
      assert.match(
        String((f as PromiseRejectedResult).reason),
        /replica 0 \(of 2\) is making a training-mode forward but replica 1 an evaluation-mode forward/,
      );
      assert.deepEqual(snapshot(layers[rank]), before[rank], `replica ${rank}`);
    }
    // In the same mode, they go on together: training, then evaluation.
    layers[1].train();
    await Promise.all(layers.map((l, rank) => l.forward(input(S2, rank), S2)));
    assert.deepEqual(layers[0].running_var, layers[1].running_var);
    for (const l of layers) l.eval();
    await Promise.all(layers.map((l, rank) => l.forward(input(S2, rank), S2)));
  },
);

await testEachBackend(
  "SyncSN: a backward on one replica against a forward on another fails both at once, adding no gradient and changing no buffer",
  async (backend) => {
    const sync = groups(2);
    const layers = sync.map((g) => new SwitchNorm2d(3, { backend, sync: g }));
    await Promise.all(layers.map((l, rank) => l.forward(input(S2, rank), S2)));
    const before = layers.map(snapshot);
    const calls = await Promise.allSettled([
      layers[0].backward(input(S2, 7)),
      layers[1].forward(input(S2, 8), S2),
    ]);
    for (const [rank, c] of calls.entries()) {
      assert.equal(c.status, "rejected", `replica ${rank}'s call resolved`);
      assert.match(
        String((c as PromiseRejectedResult).reason),
        /replica 0 \(of 2\) is making a backward but replica 1 a training-mode forward/,
      );
      assert.deepEqual(snapshot(layers[rank]), before[rank], `replica ${rank}`);
    }
  },
);

await testEachBackend(
  "SyncSN: batch averages begun apart (one replica reset, the other not) fail the next forward on every replica, saying to reset both",
  async (backend) => {
    const sync = groups(2);
    const layers = sync.map((g) =>
      new SwitchNorm2d(3, { backend, sync: g, usingMovingAverage: false })
    );
    await Promise.all(layers.map((l, rank) => l.forward(input(S2, rank), S2)));
    layers[0].resetRunningStats();
    const before = layers.map(snapshot);
    const forwards = await Promise.allSettled(
      layers.map((l, rank) => l.forward(input(S2, rank), S2)),
    );
    for (const [rank, f] of forwards.entries()) {
      assert.match(
        String((f as PromiseRejectedResult).reason),
        /differ in batchesAccumulated: replica 0 \(of 2\) has 0, replica 1 has 1; .*call resetRunningStats\(\) on every replica/,
      );
      assert.deepEqual(snapshot(layers[rank]), before[rank], `replica ${rank}`);
    }
  },
);

Deno.test("SyncSN: by default (localEvaluation), an evaluation forward exchanges nothing, so one replica may evaluate alone, as with PyTorch's SyncBatchNorm", async () => {
  let gathers = 0;
  const group: SyncGroup = {
    size: 2,
    allGather: () => (gathers++, new Promise(() => {})), // the other replica is busy elsewhere
  };
  const layer = new SwitchNorm2d(3, { backend: "reference", sync: group }).eval();
  assert.equal((await layer.forward(input(S2, 1), S2)).length, 24);
  assert.equal(gathers, 0);
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => new SwitchNorm2d(3, { sync: { ...group, localEvaluation: "yes" as any } }),
    /sync\.localEvaluation must be a boolean, got "yes" \(string\)/,
  );
});

/**
 * Two layers A and B of each replica on one group, as a model's layers share it; the same
 * settings, so only their identity on the group (the order they were made in) tells them apart.
 */
function sharedPairs(backend: BackendName, sync: SyncGroup[]) {
  const make = () => sync.map((g) => new SwitchNorm2d(3, { backend, sync: g }));
  return { a: make(), b: make() };
}

/** A's inputs near 0, B's near 50 (a merge of the two shows in A's running mean). */
const inputA = (rank: number) => input(S2, 10 + rank);
const inputB = (rank: number) => input(S2, 20 + rank).map((v) => 50 + 10 * v);

const LAYER_ORDER =
  /SyncSN: replica 0 \(of 2\) is calling the group's layer 0 \(the first made on it\) but replica 1 layer 1 \(the second made on it\): layers that share a group must be made in the same order and called in the same order on every replica; this call changed nothing/;
const LAYER_ORDER_SWAPPED =
  /SyncSN: replica 0 \(of 2\) is calling the group's layer 1 \(the second made on it\) but replica 1 layer 0 \(the first made on it\): layers that share a group/;

await testEachBackend(
  "SyncSN: two layers sharing a group, called in different orders by the replicas, fail every call at once on every replica, changing nothing (forward, evaluation with localEvaluation: false, backward)",
  async (backend) => {
    for (const localEvaluation of [true, false]) {
      const sync = groups(2, { localEvaluation });
      const { a, b } = sharedPairs(backend, sync);
      const all = [...a, ...b];
      const expect = async (calls: Promise<unknown>[], what: string) => {
        // Replica 0 calls A then B, replica 1 B then A: the first gathers pair A with B.
        const settled = await Promise.allSettled(calls);
        for (const [i, s] of settled.entries()) {
          assert.equal(s.status, "rejected", `${what}: call ${i} resolved`);
          const reason = String((s as PromiseRejectedResult).reason);
          assert.match(reason, i === 0 || i === 2 ? LAYER_ORDER : LAYER_ORDER_SWAPPED, what);
        }
      };
      let before = all.map(snapshot);
      await expect([
        a[0].forward(inputA(0), S2),
        b[0].forward(inputB(0), S2),
        b[1].forward(inputB(1), S2),
        a[1].forward(inputA(1), S2),
      ], "training forwards");
      assert.deepEqual(all.map(snapshot), before, "training forwards changed something");
      // The group stays usable: in the same order, both layers train, each on its own batch.
      await Promise.all([
        a[0].forward(inputA(0), S2),
        b[0].forward(inputB(0), S2),
        a[1].forward(inputA(1), S2),
        b[1].forward(inputB(1), S2),
      ]);
      assert.deepEqual(a[0].running_mean, a[1].running_mean);
      assert.ok(a[0].running_mean.every((v) => Math.abs(v) < 0.1), `A: ${a[0].running_mean}`);
      before = all.map(snapshot);
      await expect([
        a[0].backward(input(S2, 30)),
        b[0].backward(input(S2, 31)),
        b[1].backward(input(S2, 32)),
        a[1].backward(input(S2, 33)),
      ], "backwards");
      assert.deepEqual(all.map(snapshot), before, "backwards changed something");
      if (localEvaluation) continue;
      for (const l of all) l.eval();
      await expect([
        a[0].forward(inputA(0), S2),
        b[0].forward(inputB(0), S2),
        b[1].forward(inputB(1), S2),
        a[1].forward(inputA(1), S2),
      ], "evaluation forwards");
      assert.deepEqual(all.map(snapshot), before, "evaluation forwards changed something");
    }
  },
);

await testEachBackend(
  "SyncSN: layers sharing a group, called in the same order on every replica (without awaiting in between), each merge their own statistics and sum their own gradients",
  async (backend) => {
    const sync = groups(2, { localEvaluation: false });
    const { a, b } = sharedPairs(backend, sync);
    const reference = (x: (rank: number) => Float32Array) => {
      const whole = new Float32Array(2 * 24);
      whole.set(x(0));
      whole.set(x(1), 24);
      const layer = new SwitchNorm2d(3, { backend: "reference" });
      return layer.forward(whole, [4, 3, 2, 2]).then(() => layer);
    };
    await Promise.all([
      a[0].forward(inputA(0), S2),
      b[0].forward(inputB(0), S2),
      a[1].forward(inputA(1), S2),
      b[1].forward(inputB(1), S2),
    ]);
    for (const [layers, x] of [[a, inputA], [b, inputB]] as const) {
      const one = await reference(x);
      for (const l of layers) {
        for (
          const [got, want] of [[l.running_mean, one.running_mean], [
            l.running_var,
            one.running_var,
          ]]
        ) {
          for (const [j, v] of got.entries()) {
            assert.ok(Math.abs(v - want[j]) <= 1e-4 * (1 + Math.abs(want[j])), `${got} ${want}`);
          }
        }
      }
    }
    await Promise.all([
      a[0].backward(input(S2, 30)),
      b[0].backward(input(S2, 31)),
      a[1].backward(input(S2, 32)),
      b[1].backward(input(S2, 33)),
    ]);
    assert.deepEqual(a[0].grads, a[1].grads);
    assert.deepEqual(b[0].grads, b[1].grads);
    for (const l of [...a, ...b]) l.eval();
    await Promise.all([
      a[0].forward(inputA(0), S2),
      b[0].forward(inputB(0), S2),
      a[1].forward(inputA(1), S2),
      b[1].forward(inputB(1), S2),
    ]);
  },
);
