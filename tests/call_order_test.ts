/**
 * Call order (README, "Call order and saved state"): calls on one layer take effect in the order
 * they were made, as if each were awaited, with and without SyncSN, on Float32Array and resident
 * tensors. What a backward differentiates: kept_forward_test.ts; a failed call changes nothing:
 * failed_call_test.ts; per-call and constructor options: call_options_test.ts.
 */
import assert from "node:assert/strict";
import type { SwitchNorm2d } from "../mod.ts";
import type { ResidentTensor } from "../backends/_backend.ts";
import { assertClose } from "./_close.ts";
import { testEachBackend } from "./_backends.ts";
import { seededRandom } from "../examples/_data.ts";
import {
  assertSameState,
  backwardOf,
  data,
  EXACT,
  forwardOf,
  makeLayer,
  outcome,
  read,
  SHAPE,
  tensors,
  variants,
} from "./_call_order.ts";

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
