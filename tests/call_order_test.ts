/**
 * Call order and saved state (README, "Call order and saved state"): calls on one layer take
 * effect in the order they were made, as if each were awaited, with and without SyncSN, on
 * Float32Array and resident tensors; a backward differentiates the forward that ran, with the
 * parameter values it used, once; `out` never overwrites an x kept for a backward; a failed call
 * changes nothing.
 */
import assert from "node:assert/strict";
import {
  type Gradients,
  type SwitchNorm,
  SwitchNorm1d,
  SwitchNorm2d,
  SwitchNorm3d,
  type SyncGroup,
} from "../mod.ts";
import type { BackendName, ResidentTensor } from "../backends/_backend.ts";
import { resetWebGpuForTesting, webgpuBackend } from "../backends/select.ts";
import { assertClose, type Tolerance } from "./_close.ts";
import { testEachBackend } from "./_backends.ts";
import { GRAD } from "./_tolerances.ts";
import { type ForwardStep, loadVectors } from "./_vectors.ts";
import { seededRandom } from "../examples/_data.ts";
import { webgpuTest } from "./_webgpu.ts";

const EXACT: Tolerance = {
  atol: 0,
  rtol: 0,
  why: "the same calls in the same order on the same backend: bit-identical results",
};

const SHAPE = [4, 3, 5, 7];
const LENGTH = 4 * 3 * 5 * 7;

/** Data whose per-sample statistics differ from call to call (offset and scale by seed). */
function data(seed: number, length = LENGTH): Float32Array {
  const r = seededRandom(seed);
  const offset = 4 * r() - 2, scale = 0.5 + 2 * r();
  return Float32Array.from({ length }, () => offset + scale * (2 * r() - 1));
}

/** A one-replica SyncSN group whose allGather answers after `ms`, calling `onGather` first. */
function delayedGroup(
  ms = 5,
  hooks: { onGather?: () => void; fail?: boolean } = {},
): SyncGroup {
  return {
    size: 1,
    allGather: (v) => {
      hooks.onGather?.();
      return new Promise((resolve, reject) =>
        setTimeout(() => hooks.fail ? reject(new Error("replica failed")) : resolve([v]), ms)
      );
    },
  };
}

/** A SwitchNorm2d(3) with a non-trivial state, on `backend`, with a delayed group if `sync`. */
function makeLayer(backend: BackendName, sync: boolean, group?: SyncGroup): SwitchNorm2d {
  const layer = new SwitchNorm2d(3, {
    backend,
    sync: sync ? group ?? delayedGroup() : undefined,
  });
  layer.loadStateDict({
    weight: [1.2, 0.7, -0.4],
    bias: [0.1, -0.3, 0.5],
    mean_weight: [0.3, -0.2, 0.9],
    var_weight: [-0.5, 0.4, 0.2],
    running_mean: [0.2, -0.1, 0.4],
    running_var: [1.5, 0.8, 1.1],
  });
  return layer;
}

/** How the tests hand tensors to a layer: as Float32Arrays, or uploaded first. */
type Kind = "array" | "resident";

/** Tensors of `kind` for `layer`, and a way to read a result back. */
async function tensors(layer: SwitchNorm2d, kind: Kind, ...xs: Float32Array[]) {
  if (kind === "array") return xs;
  return await Promise.all(xs.map((x) => layer.upload(x, SHAPE)));
}

function forwardOf(layer: SwitchNorm2d, x: Float32Array | ResidentTensor) {
  return x instanceof Float32Array ? layer.forward(x, SHAPE) : layer.forward(x);
}

function backwardOf(layer: SwitchNorm2d, dy: Float32Array | ResidentTensor) {
  return dy instanceof Float32Array ? layer.backward(dy) : layer.backward(dy);
}

async function read(t: Float32Array | ResidentTensor): Promise<Float32Array> {
  return t instanceof Float32Array ? t : await t.read();
}

function kindsOf(backend: BackendName): Kind[] {
  return backend === "reference" ? ["array"] : ["array", "resident"];
}

/** Each (SyncSN or not, array or resident) variant a backend runs. */
function variants(backend: BackendName): { sync: boolean; kind: Kind; label: string }[] {
  return [false, true].flatMap((sync) =>
    kindsOf(backend).map((kind) => ({ sync, kind, label: `${kind}${sync ? ", SyncSN" : ""}` }))
  );
}

function assertSameState(a: SwitchNorm, b: SwitchNorm, at: string): void {
  const da: Record<string, Float32Array> = { ...a.stateDict() };
  const db: Record<string, Float32Array> = { ...b.stateDict() };
  for (const key of Object.keys(db)) assertClose(da[key], db[key], EXACT, `${at}: ${key}`);
  for (const key of ["weight", "bias", "mean_weight", "var_weight"] as const) {
    assertClose(a.grads[key], b.grads[key], EXACT, `${at}: grad of ${key}`);
  }
}

// ---- 1. Calls that overlap in time ----

await testEachBackend(
  "overlapping forwards of one layer give what the same forwards awaited in turn give",
  async (backend) => {
    const x1 = data(1), x2 = data(2);
    for (const { sync, kind, label } of variants(backend)) {
      const seq = makeLayer(backend, sync);
      const [s1, s2] = await tensors(seq, kind, x1, x2);
      const y1 = await read(await forwardOf(seq, s1));
      const y2 = await read(await forwardOf(seq, s2));
      await seq.sync();

      const con = makeLayer(backend, sync);
      const [c1, c2] = await tensors(con, kind, x1, x2);
      const [z1, z2] = await Promise.all([forwardOf(con, c1), forwardOf(con, c2)]);
      await con.sync();
      assertClose(await read(z1), y1, EXACT, `${label}: y of x1`);
      assertClose(await read(z2), y2, EXACT, `${label}: y of x2`);
      assertSameState(con, seq, label);
    }
  },
);

await testEachBackend(
  "a backward called right after a forward, without await, differentiates that forward",
  async (backend) => {
    const x1 = data(3), x2 = data(4), dy = data(5);
    for (const { sync, kind, label } of variants(backend)) {
      const seq = makeLayer(backend, sync);
      const [s1, s2, sd] = await tensors(seq, kind, x1, x2, dy);
      await forwardOf(seq, s1);
      const y = await read(await forwardOf(seq, s2));
      const dx = await read(await backwardOf(seq, sd));
      await seq.sync();

      const con = makeLayer(backend, sync);
      const [c1, c2, cd] = await tensors(con, kind, x1, x2, dy);
      await forwardOf(con, c1);
      const [z, dz] = await Promise.all([forwardOf(con, c2), backwardOf(con, cd)]);
      await con.sync();
      assertClose(await read(z), y, EXACT, `${label}: y`);
      assertClose(await read(dz), dx, EXACT, `${label}: dx`);
      assertSameState(con, seq, label);
    }
  },
);

/** One operation of a random schedule. */
type Op =
  | { op: "forward"; x: number; training: boolean; keep?: boolean }
  | { op: "backward"; dy: number }
  | { op: "sync" };

function randomSchedule(seed: number, length: number): Op[] {
  const r = seededRandom(seed);
  return Array.from({ length }, (): Op => {
    const u = r();
    if (u < 0.45) return { op: "forward", x: Math.floor(4 * r()), training: r() < 0.7 };
    if (u < 0.55) return { op: "forward", x: Math.floor(4 * r()), training: false, keep: true };
    if (u < 0.9) return { op: "backward", dy: Math.floor(4 * r()) };
    return { op: "sync" };
  });
}

/** Issues `op` on `layer` (sets the mode synchronously first, as a caller would). */
function issue(
  layer: SwitchNorm2d,
  op: Op,
  xs: (Float32Array | ResidentTensor)[],
  dys: (Float32Array | ResidentTensor)[],
): Promise<Float32Array | ResidentTensor | void> {
  if (op.op === "sync") return layer.sync();
  if (op.op === "backward") return backwardOf(layer, dys[op.dy]);
  layer.train(op.training);
  const x = xs[op.x], options = op.keep === undefined ? {} : { keepForBackward: op.keep };
  return x instanceof Float32Array ? layer.forward(x, SHAPE, options) : layer.forward(x, options);
}

/** What a call ended with: its result read back, or its error's message. */
async function outcome(p: Promise<Float32Array | ResidentTensor | void>) {
  try {
    const v = await p;
    return { value: v === undefined ? undefined : await read(v) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

await testEachBackend(
  "random schedules of forward, backward and sync issued without await match the same calls awaited in turn",
  async (backend) => {
    for (const { sync, kind, label } of variants(backend)) {
      for (let seed = 1; seed <= 6; seed++) {
        const schedule = randomSchedule(100 * seed + (sync ? 1 : 0), 10);
        const xs = [0, 1, 2, 3].map((i) => data(10 * seed + i));
        const dys = [0, 1, 2, 3].map((i) => data(10 * seed + 5 + i));
        const seq = makeLayer(backend, sync);
        const sx = await tensors(seq, kind, ...xs), sd = await tensors(seq, kind, ...dys);
        const want = [];
        for (const op of schedule) want.push(await outcome(issue(seq, op, sx, sd)));
        await seq.sync();

        const con = makeLayer(backend, sync);
        const cx = await tensors(con, kind, ...xs), cd = await tensors(con, kind, ...dys);
        const got = await Promise.all(schedule.map((op) => outcome(issue(con, op, cx, cd))));
        await con.sync();
        const at = `${label}, seed ${seed}, ${JSON.stringify(schedule)}`;
        for (const [i, w] of want.entries()) {
          assert.equal(got[i].error, w.error, `${at}: call ${i}'s error`);
          if (w.value) assertClose(got[i].value!, w.value, EXACT, `${at}: call ${i}`);
        }
        assertSameState(con, seq, at);
      }
    }
  },
);

await testEachBackend(
  "a forward runs in the mode in force when it was called, and synchronous changes wait for no call but refuse while one runs",
  async (backend) => {
    const layer = makeLayer(backend, false);
    const before = layer.running_mean, dict = { ...layer.stateDict() };
    const pending = layer.forward(data(6), SHAPE); // training mode
    layer.eval();
    assert.throws(() => layer.step(() => {}), /step: a forward, backward or sync .* still running/);
    assert.throws(() => layer.loadStateDict(dict), /loadStateDict: .* still running/);
    assert.throws(() => layer.zeroGrad(), /zeroGrad: .* still running/);
    assert.throws(() => layer.stateDict(), /stateDict: .* still running/);
    assert.throws(() => layer.resetRunningStats(), /resetRunningStats: .* still running/);
    await pending;
    assert.notDeepEqual(layer.running_mean, before, "the forward ran in training mode");
    await layer.backward(data(7)); // it kept x for backward, as training mode does
    layer.step(() => {}); // idle again
  },
);

// ---- 2. Parameters changed between forward and backward ----

const VECTORS = loadVectors().filter((v) =>
  ["sn2d_train_ema_basic", "sn1d_train_ema_basic", "sn2d_eval_basic", "sn3d_train_n1"].includes(
    v.name,
  )
);
const LAYERS = { SwitchNorm1d, SwitchNorm2d, SwitchNorm3d };

/** Changes made between a forward and its backward; none may change what backward returns. */
const CHANGES: Record<string, (layer: SwitchNorm) => void> = {
  "a step that changes only the importance logits": (layer) =>
    layer.step((p, _, name) => {
      if (name === "mean_weight" || name === "var_weight") p.forEach((_, i) => p[i] += i - 0.8);
    }),
  "a step that changes gamma and beta": (layer) =>
    layer.step((p, _, name) => {
      if (name === "weight" || name === "bias") p.forEach((_, i) => p[i] = 2 * p[i] + 0.5);
    }),
  "loadStateDict of other values and resetRunningStats": (layer) => {
    const d: Record<string, Float32Array> = { ...layer.stateDict() };
    for (const v of Object.values(d)) v.forEach((_, i) => v[i] = 0.3 + 0.1 * i);
    layer.loadStateDict(d);
    if (layer.usingBN) layer.resetRunningStats();
  },
};

await testEachBackend(
  "a backward differentiates the forward that ran, whatever changed the parameters after it (PyTorch autograd)",
  async (backend) => {
    for (const v of VECTORS) {
      const step = v.steps[0] as ForwardStep;
      for (const [change, apply] of Object.entries(CHANGES)) {
        for (const kind of kindsOf(backend)) {
          const layer = new LAYERS[v.layer](v.numFeatures, { ...v.options, backend });
          layer.loadStateDict(v.state);
          layer.train(step.mode === "train");
          const at = `${v.name}, ${kind}, after ${change}`;
          let dx: Float32Array;
          if (kind === "array") {
            await layer.forward(step.x, step.shape, { keepForBackward: true });
            apply(layer);
            layer.zeroGrad();
            dx = await layer.backward(step.dy);
          } else {
            using xt = await layer.upload(step.x, step.shape);
            using dyt = await layer.upload(step.dy, step.shape);
            (await layer.forward(xt, { keepForBackward: true })).dispose();
            await layer.sync();
            apply(layer);
            layer.zeroGrad();
            using dxt = await layer.backward(dyt);
            dx = await dxt.read();
          }
          assertClose(dx, step.expect.dx, GRAD, `${at}: dx`);
          for (const [name, want] of Object.entries(step.expect.grads)) {
            const got = layer.grads[name as keyof typeof layer.grads];
            assertClose(got, want, GRAD, `${at}: grad of ${name}`);
          }
        }
      }
    }
  },
);

await testEachBackend(
  "Sparse SN: a backward is unaffected by a new radius and new logits set after its forward",
  async (backend) => {
    const x = data(90), dy = data(91);
    const make = () => {
      const layer = makeLayer(backend, false);
      const sparse = new SwitchNorm2d(3, { backend, sparse: true });
      // A sparse layer's state dict also has SSN2d's fixed flags and radius.
      sparse.loadStateDict({
        ...layer.stateDict(),
        mean_fixed: [0],
        var_fixed: [0],
        radius: [0.3],
      });
      return sparse;
    };
    const plain = make();
    await plain.forward(x, SHAPE);
    const want = await plain.backward(dy);

    const changed = make();
    await changed.forward(x, SHAPE);
    changed.radius = 0.9;
    changed.step((p, _, name) => {
      if (name === "mean_weight" || name === "var_weight") p.reverse();
    });
    changed.zeroGrad();
    assertClose(await changed.backward(dy), want, EXACT, "dx");
    assertSameState(
      changed,
      (() => {
        plain.radius = 0.9;
        plain.step((p, _, name) => {
          if (name === "mean_weight" || name === "var_weight") p.reverse();
        });
        return plain;
      })(),
      "gradients",
    );
  },
);

// ---- 3. out aliasing an x kept for backward ----

await testEachBackend(
  "an in-place forward is refused while its x is kept for backward, and allowed when it is not",
  async (backend) => {
    const x = data(20), dy = data(21);
    const plain = makeLayer(backend, false);
    const want = await plain.forward(x, SHAPE);
    const wantDx = await plain.backward(dy);

    const layer = makeLayer(backend, false);
    const inPlace = x.slice();
    await assert.rejects(
      () => layer.forward(inPlace, SHAPE, { out: inPlace }),
      /out overlaps x, which this forward keeps for backward/,
    );
    const shifted = new Float32Array(LENGTH + 1);
    shifted.set(x);
    await assert.rejects(
      () => layer.forward(shifted.subarray(0, LENGTH), SHAPE, { out: shifted.subarray(1) }),
      /out overlaps x/,
    );
    assertClose(inPlace, x, EXACT, "x is untouched by the refused call");
    assertSameState(layer, makeLayer(backend, false), "the refused calls changed nothing");

    // A training forward of a copy of x keeps that copy; then the in-place one, not kept.
    await layer.forward(x.slice(), SHAPE);
    const dx = await layer.backward(dy);
    assertClose(dx, wantDx, EXACT, "dx of the forward before");
    // Training-mode y depends on the batch and the parameters only, so it is `want` again.
    await layer.forward(inPlace, SHAPE, { out: inPlace, keepForBackward: false });
    assertClose(inPlace, want, EXACT, "in place, not kept");

    // Evaluation mode keeps nothing: in place is fine.
    const evalLayer = makeLayer(backend, false).eval();
    const y = await evalLayer.forward(x, SHAPE);
    const inPlaceEval = x.slice();
    await evalLayer.forward(inPlaceEval, SHAPE, { out: inPlaceEval });
    assertClose(inPlaceEval, y, EXACT, "in place in evaluation mode");

    if (backend !== "reference") {
      const t = await layer.upload(x, SHAPE);
      await assert.rejects(() => layer.forward(t, { out: t }), /out overlaps x/);
      assertClose(await t.read(), x, EXACT, "resident x untouched by the refused call");
      await layer.forward(t, { out: t, keepForBackward: false });
      t.dispose();
    }
  },
);

await testEachBackend(
  "a backward whose kept x another forward's out overwrote is refused, and changes nothing",
  async (backend) => {
    const x = data(30), z = data(31), dy = data(32);
    const ref = makeLayer(backend, false);
    await ref.forward(x, SHAPE);
    const wantDx = await ref.backward(dy);
    for (const kind of kindsOf(backend)) {
      const a = makeLayer(backend, false), b = makeLayer(backend, false);
      const [xa, zb, dya] = await tensors(a, kind, x.slice(), z, dy);
      await forwardOf(a, xa);
      // b writes its y over a's kept x: allowed (a might never be differentiated) ...
      if (xa instanceof Float32Array) await b.forward(zb as Float32Array, SHAPE, { out: xa });
      else await b.forward(zb as ResidentTensor, { out: xa });
      // ... but a's backward would differentiate b's y: refused.
      await assert.rejects(
        () => backwardOf(a, dya),
        /the x this forward kept was overwritten since, as the out of a SwitchNorm2d forward/,
      );
      for (const [k, g] of Object.entries(a.grads)) {
        assert.ok(g.every((v: number) => v === 0), `${kind}: grad of ${k} unchanged`);
      }
      // A forward again on the restored data, then its backward, is the plain one.
      const restored = xa instanceof Float32Array ? (xa.set(x), xa) : await a.upload(x, SHAPE);
      await forwardOf(a, restored);
      assertClose(await read(await backwardOf(a, dya)), wantDx, EXACT, `${kind}: a's dx`);
      // A forward that is differentiated before its x is overwritten is unaffected.
      await forwardOf(a, restored);
      const dx = await read(await backwardOf(a, dya));
      if (restored instanceof Float32Array) await b.forward(z, SHAPE, { out: restored });
      assertClose(dx, wantDx, EXACT, `${kind}: dx before the overwrite`);
    }
  },
);

await testEachBackend(
  "a backward whose dy is the forward's own x gives the dx of a copy of it",
  async (backend) => {
    for (const kind of kindsOf(backend)) {
      const x = data(35);
      const copy = makeLayer(backend, false);
      const [cx, cdy] = await tensors(copy, kind, x, x.slice());
      await forwardOf(copy, cx);
      const want = await read(await backwardOf(copy, cdy));
      const same = makeLayer(backend, false);
      const [sx] = await tensors(same, kind, x);
      await forwardOf(same, sx);
      assertClose(await read(await backwardOf(same, sx)), want, EXACT, `${kind}: dx`);
      await same.sync();
      await copy.sync();
      assertSameState(same, copy, kind);
    }
  },
);

// ---- 4. Backward twice ----

await testEachBackend(
  "a second backward through one forward is refused and changes nothing, unless the first retained it",
  async (backend) => {
    for (const kind of kindsOf(backend)) {
      const layer = makeLayer(backend, false);
      const [x, dy] = await tensors(layer, kind, data(40), data(41));
      await forwardOf(layer, x);
      const dx = await read(await backwardOf(layer, dy));
      const grads: Record<string, Float32Array> = structuredClone({ ...layer.grads });
      await assert.rejects(() => backwardOf(layer, dy), /already differentiated/);
      for (const [k, g] of Object.entries(grads)) {
        assertClose(layer.grads[k as keyof Gradients], g, EXACT, `${kind}: ${k} unchanged`);
      }

      const retained = makeLayer(backend, false);
      const [rx, rdy] = await tensors(retained, kind, data(40), data(41));
      await forwardOf(retained, rx);
      const first = await read(
        rdy instanceof Float32Array
          ? await retained.backward(rdy, { retainGraph: true })
          : await retained.backward(rdy, { retainGraph: true }),
      );
      const second = await read(await backwardOf(retained, rdy));
      assertClose(first, dx, EXACT, `${kind}: dx of the retained backward`);
      assertClose(second, dx, EXACT, `${kind}: dx of the second backward`);
      for (const [k, g] of Object.entries(grads)) {
        const twice = g.map((v) => 2 * v);
        assertClose(retained.grads[k as keyof Gradients], twice, GRAD, `${kind}: 2 x ${k}`);
      }
      await assert.rejects(() => backwardOf(retained, rdy), /already differentiated/);
    }
  },
);

// ---- 6. A failed call changes nothing ----

await testEachBackend(
  "a forward or backward whose SyncSN exchange fails changes no parameter, buffer or gradient",
  async (backend) => {
    for (const kind of kindsOf(backend)) {
      const hooks = { fail: false };
      const layer = makeLayer(backend, true, delayedGroup(2, hooks));
      const clean = makeLayer(backend, true);
      const [x, dy] = await tensors(layer, kind, data(50), data(51));
      const [cx] = await tensors(clean, kind, data(50));
      hooks.fail = true;
      await assert.rejects(() => forwardOf(layer, x), /replica failed/);
      await layer.sync();
      assertSameState(layer, makeLayer(backend, true), `${kind}: after the failed forward`);
      // A failed exchange leaves the group unusable (a late answer would pair with the wrong
      // gather): later calls that would gather reject at once, still changing nothing.
      hooks.fail = false;
      await assert.rejects(() => forwardOf(layer, x), /group is unusable/);
      await assert.rejects(() => backwardOf(layer, dy), /group is unusable|no forward/);
      await layer.sync();
      assertSameState(layer, makeLayer(backend, true), `${kind}: after the refused calls`);

      // A backward whose exchange fails: parameters, buffers and gradients stay those of the
      // forward, equal to a layer that ran the same forward and no backward.
      const hooks2 = { fail: false };
      const layer2 = makeLayer(backend, true, delayedGroup(2, hooks2));
      const [x2, dy2] = await tensors(layer2, kind, data(50), data(51));
      await forwardOf(layer2, x2);
      await forwardOf(clean, cx);
      hooks2.fail = true;
      await assert.rejects(() => backwardOf(layer2, dy2), /replica failed/);
      await layer2.sync();
      await clean.sync();
      assertSameState(layer2, clean, `${kind}: after the failed backward`);
      hooks2.fail = false;
      await assert.rejects(() => backwardOf(layer2, dy2), /group is unusable/);
      assertSameState(layer2, clean, `${kind}: after the refused retry`);
    }
  },
);

await testEachBackend(
  "dispose() while a SyncSN training forward awaits the replicas fails it, or lets it finish, but never half",
  async (backend) => {
    for (const kind of kindsOf(backend)) {
      const hooks: { onGather?: () => void } = {};
      // 50 ms: long enough for the webgpu backend to have destroyed the released buffers.
      const layer = makeLayer(backend, true, delayedGroup(50, hooks));
      const [x] = await tensors(layer, kind, data(60));
      const before: Record<string, Float32Array> = { ...layer.stateDict() };
      hooks.onGather = () => layer.dispose();
      const result = await outcome(forwardOf(layer, x));
      hooks.onGather = undefined;
      await layer.sync();
      if (result.error !== undefined) {
        const after: Record<string, Float32Array> = { ...layer.stateDict() };
        for (const key of Object.keys(before)) {
          assertClose(after[key], before[key], EXACT, `${kind}: ${key} after the failed forward`);
        }
      } else {
        const seq = makeLayer(backend, true);
        const [sx] = await tensors(seq, kind, data(60));
        assertClose(result.value!, await read(await forwardOf(seq, sx)), EXACT, `${kind}: y`);
        await seq.sync();
        assertSameState(layer, seq, `${kind}: after the finished forward`);
      }
    }
  },
);

webgpuTest(
  "a device destroyed while a SyncSN training forward awaits the replicas leaves the running buffers alone",
  async () => {
    const backend = "webgpu";
    try {
      for (const kind of ["array", "resident"] as const) {
        resetWebGpuForTesting();
        const device = (await webgpuBackend()).device;
        const hooks: { onGather?: () => void } = {};
        const layer = makeLayer(backend, true, delayedGroup(5, hooks));
        const [x] = await tensors(layer, kind, data(70));
        const before: Record<string, Float32Array> = { ...layer.stateDict() };
        hooks.onGather = () => device.destroy();
        // (y is not read: on a lost device that fails whether the forward did or not)
        const result = await forwardOf(layer, x).then(() => ({ error: undefined }), (e) => ({
          error: (e as Error).message as string | undefined,
        }));
        // A Float32Array call reads y back, so it must see the loss. A resident call reads
        // nothing back: it may resolve before the loss is known (the next call reports it);
        // then it is a completed forward, whose running buffers the layer has.
        if (kind === "array") assert.match(result.error ?? "resolved", /device was lost/);
        const want: Record<string, Float32Array> = before;
        if (result.error === undefined) {
          resetWebGpuForTesting();
          const done = makeLayer(backend, true);
          const [dx] = await tensors(done, kind, data(70));
          await forwardOf(done, dx);
          await done.sync();
          Object.assign(want, done.stateDict());
        }
        const after: Record<string, Float32Array> = { ...layer.stateDict() };
        for (const key of Object.keys(want)) {
          assertClose(after[key], want[key], EXACT, `${kind}: ${key}`);
        }
      }
    } finally {
      resetWebGpuForTesting();
    }
  },
);

// ---- 12. Per-call and constructor options ----

await testEachBackend(
  "unknown or mistyped per-call options throw naming the option, and change nothing",
  async (backend) => {
    const layer = makeLayer(backend, false);
    const x = data(80), out = new Float32Array(LENGTH);
    const call = (options: unknown) => layer.forward(x, SHAPE, options as never);
    await assert.rejects(() => call({ outt: out }), /forward: unknown option "outt"/);
    assert.equal(out.every((v) => v === 0), true, "out untouched");
    await assert.rejects(
      () => call("abc"),
      /forward: options must be an object \{ out, keepForBackward \}, got "abc" \(string\)/,
    );
    await assert.rejects(() => call([]), /options must be an object .* got an array/);
    await assert.rejects(() => call(null), /options must be an object .* got null/);
    await assert.rejects(
      () => call({ keepForBackward: "no" }),
      /keepForBackward must be a boolean, got "no" \(string\)/,
    );
    await assert.rejects(() => call({ out: [1, 2] }), /out must be the same kind as x/);
    assertSameState(layer, makeLayer(backend, false), "the refused forwards changed nothing");
    await layer.forward(x, SHAPE);
    await assert.rejects(
      () => layer.backward(x, { retain: true } as never),
      /unknown option "retain"/,
    );
    await assert.rejects(
      () => layer.backward(x, { retainGraph: 1 } as never),
      /retainGraph must be a boolean, got 1/,
    );
    await assert.rejects(() => layer.backward(x, "x" as never), /got "x" \(string\)/);
    if (backend !== "reference") {
      const t = await layer.upload(x, SHAPE);
      await assert.rejects(() => layer.forward(t, { outt: t } as never), /unknown option "outt"/);
      await assert.rejects(
        () => (layer.forward as (...a: unknown[]) => Promise<unknown>)(t, {}, {}),
        /third argument/,
      );
      t.dispose();
    }
    // The forward kept above is still the one to differentiate: the refused calls left it.
    await layer.backward(x);
  },
);

Deno.test("constructor options treat null as a mistake, like undefined is the default", () => {
  assert.throws(
    () => new SwitchNorm2d(2, { eps: null as never }),
    /eps must be a finite number, got null/,
  );
  assert.throws(
    () => new SwitchNorm2d(2, { momentum: null as never }),
    /momentum must be a finite number, got null/,
  );
  assert.throws(() => new SwitchNorm2d(2, { backend: null as never }), /unknown backend null/);
  assert.throws(
    () => new SwitchNorm2d(2, { usingBN: null as never }),
    /usingBN must be a boolean, got null/,
  );
  assert.throws(
    () => new SwitchNorm2d(2, { eps: "1e-5" as never }),
    /eps must be a finite number, got "1e-5" \(string\)/,
  );
  assert.throws(
    () => new SwitchNorm2d(2, "abc" as never),
    /options must be an object, got "abc" \(string\)/,
  );
  assert.throws(
    () => new SwitchNorm2d("64" as never),
    /numFeatures must be a positive integer, got "64" \(string\)/,
  );
});

Deno.test("a layer too wide to hold is refused with a RangeError naming numFeatures", () => {
  assert.throws(() => new SwitchNorm2d(2 ** 40), RangeError);
  assert.throws(() => new SwitchNorm2d(2 ** 40), /numFeatures must be at most 2\^28/);
  assert.throws(() => new SwitchNorm1d(2 ** 28 + 1), /numFeatures must be at most 2\^28/);
});
