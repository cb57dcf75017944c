/**
 * A failed call changes nothing (README, "Call order and saved state"): a forward or backward
 * whose SyncSN exchange fails, is disposed of or loses its device midway leaves every parameter,
 * buffer and gradient as it was.
 */
import assert from "node:assert/strict";
import { resetWebGpuForTesting, webgpuBackend } from "../backends/select.ts";
import { assertClose } from "./_close.ts";
import { testEachBackend } from "./_backends.ts";
import { webgpuTest } from "./_webgpu.ts";
import {
  assertSameState,
  backwardOf,
  data,
  delayedGroup,
  EXACT,
  forwardOf,
  kindsOf,
  makeLayer,
  outcome,
  read,
  tensors,
} from "./_call_order.ts";

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
