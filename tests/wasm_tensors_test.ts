/**
 * The WASM backend's resident tensors and `out`, SyncSN's await gaps, and its memory management
 * (one module instance per test that measures memory).
 */
import assert from "node:assert/strict";
import type { BatchSync, NormProblem, SavedForward } from "../backends/_backend.ts";
import { loadWasmBackend, WasmTensor } from "../backends/wasm.ts";
import { SwitchNorm2d } from "../mod.ts";
import { assertSameValues } from "./_close.ts";
import { ignore, MOVING, randomCase, randomDy, wasm } from "./_wasm_cases.ts";

Deno.test({
  name: "resident tensors chain through two layers and give the Float32Array path's numbers",
  ignore,
  async fn() {
    const shape = [3, 4, 5, 7];
    const x = Float32Array.from({ length: 420 }, (_, i) => Math.sin(i * 0.37) * 3 + (i % 5));
    const make = () => [
      new SwitchNorm2d(4, { backend: "wasm" }),
      new SwitchNorm2d(4, { backend: "wasm", usingBN: false }),
    ];
    const [a1, b1] = make(), [a2, b2] = make();
    const viaArrays = await b1.forward(await a1.forward(x, shape), shape);

    using t = await a2.upload(x, shape);
    using u = await a2.forward(t);
    using v = await b2.forward(u);
    assert.ok(v instanceof WasmTensor && v !== u && u !== t);
    assert.deepEqual(v.shape, shape);
    assertSameValues(await v.read(), viaArrays, "read()");
    assertSameValues(v.data, viaArrays, "data");
    assertSameValues(a2.running_mean, a1.running_mean, "running_mean");
    assertSameValues(a2.running_var, a1.running_var, "running_var");
  },
});

Deno.test({
  name: "out receives y on both paths, and a resident tensor can be normalized in place",
  ignore,
  async fn() {
    const c = randomCase(800, "nd", [2, 3, 11], true, true);
    const plain = await wasm.forward(c.problem, c.x, c.params(), MOVING) as Float32Array;

    const out = new Float32Array(c.x.length).fill(7);
    assert.equal(await wasm.forward(c.problem, c.x, c.params(), MOVING, out), out);
    assertSameValues(out, plain, "out");

    using t = wasm.upload(c.x, [2, 3, 11]);
    using o = wasm.upload(new Float32Array(c.x.length), [2, 3, 11]);
    assert.equal(await wasm.forward(c.problem, t, c.params(), MOVING, o), o);
    assertSameValues(o.data, plain, "resident out");
    assert.equal(await wasm.forward(c.problem, t, c.params(), MOVING, t), t);
    assertSameValues(t.data, plain, "in place");

    await assert.rejects(
      () => wasm.forward(c.problem, c.x, c.params(), MOVING, o),
      /out must be a Float32Array/,
    );
    await assert.rejects(
      () => wasm.forward(c.problem, t, c.params(), MOVING, new Float32Array(66)),
      /out must be a live tensor/,
    );
  },
});

Deno.test({
  name: "disposing a WasmTensor frees its memory for the next tensor, and it cannot be used after",
  ignore,
  async fn() {
    const b = await loadWasmBackend();
    const used = b.usedBytes;
    const t = b.upload(new Float32Array(1000).fill(1), [10, 100]);
    const at = t.byteOffset;
    assert.ok(b.usedBytes >= used + 4000);
    t.dispose();
    t.dispose(); // idempotent
    assert.equal(b.usedBytes, used);
    assert.throws(() => t.data, /disposed/);
    const problem: NormProblem = {
      layout: "nd",
      n: 10,
      c: 100,
      m: 1,
      training: false,
      usingBN: false,
      eps: 1e-5,
    };
    await assert.rejects(
      () => b.forward(problem, t, randomCase(1, "nd", [10, 100, 1], false, false).params(), MOVING),
      /live tensor/,
    );
    using u = b.upload(new Float32Array(1000), [10, 100]);
    assert.equal(u.byteOffset, at);
  },
});

Deno.test({
  name: "a tensor's data view survives memory growth, and an old view detaches or stays valid",
  ignore,
  async fn() {
    const b = await loadWasmBackend();
    using t = b.upload(Float32Array.from({ length: 64 }, (_, i) => i), [8, 8]);
    const before = t.data;
    const bytes = b.memoryBytes;
    using big = b.upload(new Float32Array(bytes), [1, bytes]); // forces the memory to grow
    assert.ok(b.memoryBytes > bytes && big.length === bytes);
    // A private memory detaches its old buffer; a shared one (the threads build) never does, and
    // the old view keeps showing the same bytes.
    if (before.buffer instanceof SharedArrayBuffer) {
      assertSameValues(before, Float32Array.from({ length: 64 }, (_, i) => i), "old shared view");
    } else assert.equal(before.length, 0, "the old view is detached by the growth");
    assertSameValues(t.data, Float32Array.from({ length: 64 }, (_, i) => i), "data after growth");
    assertSameValues(await t.read(), t.data, "read() after growth");
  },
});

Deno.test({
  name: "10,000 forwards of varying small shapes keep the memory size at its first-pass size",
  ignore,
  async fn() {
    const b = await loadWasmBackend();
    const cases = [
      randomCase(1, "nd", [2, 3, 17], true, true),
      randomCase(2, "nd", [1, 8, 64], true, false),
      randomCase(3, "nd", [5, 2, 300], false, true),
      randomCase(4, "1d", [33, 12, 1], true, true),
      randomCase(5, "nd", [4, 16, 49], true, true),
      randomCase(6, "1d", [2, 500, 1], false, true),
      randomCase(7, "nd", [3, 1, 1], true, true),
    ];
    const params = cases.map((c) => c.params());
    const run = async (i: number) => {
      const c = cases[i % cases.length], p = params[i % cases.length];
      if (i % 3 === 0) {
        // Resident: upload, forward into a new tensor, free both.
        using t = b.upload(c.x, [c.x.length]);
        using y = await b.forward(c.problem, t, p, MOVING) as WasmTensor;
        assert.equal(y.length, c.x.length);
      } else {
        const y = await b.forward(c.problem, c.x, p, MOVING) as Float32Array;
        assert.equal(y.length, c.x.length);
      }
    };
    for (let i = 0; i < 3 * cases.length; i++) await run(i);
    const size = b.memoryBytes, used = b.usedBytes;
    for (let i = 0; i < 10_000; i++) await run(i);
    assert.equal(b.memoryBytes, size);
    assert.equal(b.usedBytes, used);
  },
});

Deno.test({
  name: "upload rejects a shape that does not match the data, and a used-up backend refuses work",
  ignore,
  async fn() {
    const b = await loadWasmBackend();
    assert.throws(() => b.upload(new Float32Array(6), [4, 2]), /does not describe 6 elements/);
    b.dispose();
    assert.throws(() => b.upload(new Float32Array(6), [2, 3]), /after dispose/);
  },
});

/** A group of one replica whose operations resolve only after `gap` ran (another layer's call). */
function slowSolo(gap: () => Promise<void>): BatchSync {
  return {
    replicas: 1,
    async mergeStats(count, mean, m2) {
      await gap();
      return { count, mean, m2 };
    },
    async sum(local) {
      await gap();
      return local;
    },
  };
}

Deno.test({
  name: "SyncSN calls survive other layers' calls in their await, on Float32Arrays and tensors",
  ignore,
  async fn() {
    const b = await loadWasmBackend();
    for (const [layout, shape] of [["nd", [3, 4, 21]], ["1d", [8, 5, 1]]] as const) {
      for (const resident of [false, true]) {
        const k = randomCase(1700, layout, [...shape], true, true);
        const other = randomCase(1701, layout, [shape[0] + 2, shape[1] + 1, shape[2]], true, true);
        const po = { ...other.params(), layerId: 99 };
        // The interloper uses every shared region (a Float32Array x, larger, so the regions grow
        // and move) and this layer's neighbour's own regions.
        const gap = async () => {
          const s: SavedForward = {};
          await b.forward(other.problem, other.x, po, MOVING, undefined, s);
          await b.backward(s, randomDy(1, other.x.length), po);
        };
        const dy = randomDy(1702, k.x.length);
        const want: SavedForward = {}, pw = k.params();
        const yWant = await b.forward(k.problem, k.x, pw, MOVING, undefined, want) as Float32Array;
        const gWant = await b.backward(want, dy, pw);

        const problem = { ...k.problem, sync: slowSolo(gap) }, ps = { ...k.params(), layerId: 7 };
        const saved: SavedForward = {};
        const what = `${layout} resident=${resident}`;
        if (resident) {
          using xt = b.upload(k.x, [k.x.length]);
          using dyt = b.upload(dy, [dy.length]);
          using y = await b.forward(problem, xt, ps, MOVING, undefined, saved) as WasmTensor;
          assertSameValues(y.data, yWant as Float32Array, `${what}: y`);
          const g = await b.backward(saved, dyt, ps);
          using dx = g.dx as WasmTensor;
          assertSameValues(dx.data, gWant.dx as Float32Array, `${what}: dx`);
          assertSameValues(g.dWeight, gWant.dWeight, `${what}: dWeight`);
        } else {
          const y = await b.forward(problem, k.x, ps, MOVING, undefined, saved);
          assertSameValues(y as Float32Array, yWant as Float32Array, `${what}: y`);
          const g = await b.backward(saved, dy, ps);
          assertSameValues(g.dx as Float32Array, gWant.dx as Float32Array, `${what}: dx`);
          assertSameValues(g.dWeight, gWant.dWeight, `${what}: dWeight`);
        }
        assertSameValues(ps.runningMean, pw.runningMean, `${what}: running_mean`);
        b.releaseLayer(po);
        b.releaseLayer(ps);
        b.releaseLayer(pw);
      }
    }
  },
});

Deno.test({
  name: "1,000 training steps (forward and backward) keep the memory size, and release frees it",
  ignore,
  async fn() {
    const b = await loadWasmBackend();
    const used = b.usedBytes;
    const cases = [
      randomCase(1, "nd", [2, 3, 17], true, true),
      randomCase(2, "nd", [4, 8, 49], true, false),
      randomCase(3, "1d", [33, 12, 1], true, true),
    ];
    const params = cases.map((c, i) => ({ ...c.params(), layerId: 10 + i }));
    const step = async (i: number) => {
      const c = cases[i % cases.length], p = params[i % cases.length], s: SavedForward = {};
      const dy = new Float32Array(c.x.length).fill(0.5);
      if (i % 2) {
        using t = b.upload(c.x, [c.x.length]);
        using dyt = b.upload(dy, [dy.length]);
        using _y = await b.forward(c.problem, t, p, MOVING, undefined, s) as WasmTensor;
        using _dx = (await b.backward(s, dyt, p)).dx as WasmTensor;
      } else {
        await b.forward(c.problem, c.x, p, MOVING, undefined, s);
        await b.backward(s, dy, p);
      }
    };
    for (let i = 0; i < 2 * cases.length; i++) await step(i);
    const size = b.memoryBytes, held = b.usedBytes;
    for (let i = 0; i < 1000; i++) await step(i);
    assert.equal(b.memoryBytes, size);
    assert.equal(b.usedBytes, held);
    for (const p of params) b.releaseLayer(p);
    assert.ok(b.usedBytes < held, "the layers' own regions are freed");
    assert.ok(b.usedBytes >= used);
  },
});
