/**
 * Faults between a call and the moment it runs, on every backend: dispose() while the running
 * buffers are newer on a device (its read-back is ordered with later calls, and CPU writes made
 * after it win), an x or dy detached or resized after the call was made, an optimiser step whose
 * update throws part-way, dispose() during a backward, and validators' error types.
 */
import assert from "node:assert/strict";
import { SwitchNorm2d } from "../mod.ts";
import type { BackendName } from "../backends/_backend.ts";
import { testEachBackend } from "./_backends.ts";
import { assertClose, assertSameValues } from "./_close.ts";
import { RUNNING, Y } from "./_tolerances.ts";

const SHAPE = [2, 3, 4, 4];
const X1 = new Float32Array(96).map((_, i) => Math.sin(i) * 3 + 5);
const X2 = X1.map((v) => 2 * v - 1);
const LOADED = {
  weight: [1, 1, 1],
  bias: [0, 0, 0],
  mean_weight: [1, 1, 1],
  var_weight: [1, 1, 1],
};

/** x as the backend takes it best: resident where the backend holds tensors (the device case). */
function input(layer: SwitchNorm2d, backend: BackendName, x: Float32Array) {
  return backend === "reference" ? Promise.resolve(x) : layer.upload(x, SHAPE);
}

/** Runs a forward on x, resident or not. */
async function forwardOn(
  layer: SwitchNorm2d,
  x: Float32Array | Awaited<ReturnType<SwitchNorm2d["upload"]>>,
) {
  return x instanceof Float32Array ? await layer.forward(x, SHAPE) : await layer.forward(x);
}

/** A reference layer after two training forwards on X1 then X2: the running buffers to expect. */
async function twoForwards(): Promise<SwitchNorm2d> {
  const want = new SwitchNorm2d(3, { backend: "reference" });
  await want.forward(X1, SHAPE);
  await want.forward(X2, SHAPE);
  return want;
}

await testEachBackend(
  "dispose() after a training forward keeps the running buffers that forward made, for the next one",
  async (backend) => {
    const sn = new SwitchNorm2d(3, { backend });
    await forwardOn(sn, await input(sn, backend, X1)); // on a GPU: running buffers newer there
    sn.dispose();
    await sn.forward(X2, SHAPE);
    await sn.sync();
    const want = await twoForwards();
    assertClose(sn.running_mean, want.running_mean, RUNNING, "running_mean");
    assertClose(sn.running_var, want.running_var, RUNNING, "running_var");
  },
);

await testEachBackend(
  "loadStateDict and resetRunningStats right after dispose() are not overwritten by its read-back",
  async (backend) => {
    for (const what of ["load", "reset"] as const) {
      const sn = new SwitchNorm2d(3, { backend });
      await forwardOn(sn, await input(sn, backend, X1));
      sn.dispose();
      if (what === "load") {
        sn.loadStateDict({ ...LOADED, running_mean: [7, 7, 7], running_var: [2, 2, 2] });
      } else sn.resetRunningStats();
      await new Promise((r) => setTimeout(r, 300)); // the read-back, had it not been ordered
      await sn.sync();
      const want = new SwitchNorm2d(3, { backend: "reference" });
      if (what === "load") {
        want.loadStateDict({ ...LOADED, running_mean: [7, 7, 7], running_var: [2, 2, 2] });
      } else want.resetRunningStats();
      assertSameValues(sn.running_mean, want.running_mean, `${what}: running_mean`);
      assertSameValues(sn.running_var, want.running_var, `${what}: running_var`);
    }
  },
);

await testEachBackend(
  "an x detached or resized after the call but before it runs is refused, changing nothing",
  async (backend) => {
    const sn = new SwitchNorm2d(3, { backend });
    const want = new SwitchNorm2d(3, { backend: "reference" });
    await want.forward(X1, SHAPE);
    // Detached right after the call (an idle layer starts it at once, but runs it asynchronously).
    const a = X1.slice();
    const p0 = sn.forward(a, SHAPE);
    a.buffer.transfer();
    const r0 = await p0.then(() => "resolved", (e: Error) => e.message);
    // Queued behind a forward, then detached, or (a length-tracking view) shrunk.
    const b = X1.slice(), queuedFirst = sn.forward(X1, SHAPE);
    const p1 = sn.forward(b, SHAPE);
    b.buffer.transfer();
    const grow = new ArrayBuffer(96 * 4, { maxByteLength: 200 * 4 });
    const c = new Float32Array(grow);
    c.set(X1);
    const p2 = sn.forward(c, SHAPE);
    grow.resize(50 * 4);
    const [r1, r2] = await Promise.all(
      [p1, p2].map((p) => p.then(() => "resolved", (e: Error) => e.message)),
    );
    await queuedFirst;
    if (r0 === "resolved") await want.forward(X1, SHAPE); // read before the detach: a forward
    else assert.match(r0, /forward: x was detached after the call was made \(it had 96 elements\)/);
    assert.match(r1, /forward: x was detached after the call was made/);
    assert.match(r2, /forward: x changed length to 50 after the call was made/);
    await sn.sync();
    assertClose(
      sn.running_mean,
      want.running_mean,
      RUNNING,
      "running_mean: only the good forwards",
    );
    assertClose(sn.running_var, want.running_var, RUNNING, "running_var: only the good forwards");
  },
);

await testEachBackend(
  "upload data detached before the backend is ready is refused",
  async (backend) => {
    if (backend === "reference") return; // no resident tensors there
    const sn = new SwitchNorm2d(3, { backend });
    const data = X1.slice();
    const p = sn.upload(data, SHAPE);
    data.buffer.transfer();
    await assert.rejects(p, /upload: data was detached after the call was made/);
  },
);

await testEachBackend(
  "a dy detached before its backward runs, or a kept x detached since its forward, is named",
  async (backend) => {
    const sn = new SwitchNorm2d(3, { backend });
    const x = X1.slice();
    const y = await sn.forward(x, SHAPE);
    const dy = y.slice();
    void sn.sync(); // queued behind it, the backward runs after the detach
    const p = sn.backward(dy);
    dy.buffer.transfer();
    await assert.rejects(
      p,
      /backward: dy was detached after the call was made \(it had 96 elements\)/,
    );
    x.buffer.transfer();
    await assert.rejects(
      sn.backward(y.slice()),
      /backward: the x its forward kept was detached after the call was made/,
    );
    assertSameValues(sn.grads.weight, new Float32Array(3), "no gradient was added");
  },
);

await testEachBackend(
  "a step whose update throws part-way leaves every parameter as it was",
  async (backend) => {
    const sn = new SwitchNorm2d(3, { backend }).eval();
    const y0 = await sn.forward(X1, SHAPE);
    for (const failAt of ["bias", "var_weight"]) {
      assert.throws(
        () =>
          sn.step((param, _grad, name) => {
            if (name === failAt) throw new Error("optimizer bug");
            param.fill(name === "mean_weight" ? 5 : 2);
          }),
        /optimizer bug/,
      );
      const want = new SwitchNorm2d(3, { backend: "reference" });
      for (const key of ["weight", "bias", "mean_weight", "var_weight"] as const) {
        assertSameValues(sn[key], want[key], `${failAt}: ${key}`);
      }
      assertSameValues(sn.meanImportance, want.meanImportance, `${failAt}: meanImportance`);
      assertSameValues(await sn.forward(X1, SHAPE), y0, `${failAt}: y after the failed step`);
    }
  },
);

await testEachBackend(
  "a step that writes NaN or Infinity into a parameter is refused and leaves every parameter as it was",
  async (backend) => {
    const sn = new SwitchNorm2d(3, { backend }).eval();
    const y0 = await sn.forward(X1, SHAPE);
    for (
      const [name, value] of [["weight", NaN], ["bias", Infinity], [
        "var_weight",
        -Infinity,
      ]] as const
    ) {
      assert.throws(
        () =>
          sn.step((param, _grad, n) => {
            param.fill(n === "mean_weight" ? 5 : 2);
            if (n === name) param[1] = value;
          }),
        (e: unknown) =>
          e instanceof RangeError &&
          e.message ===
            `SwitchNorm2d.step: the update wrote ${value} into "${name}"[1]; parameters must be ` +
              `finite (no parameter changed)`,
      );
      const want = new SwitchNorm2d(3, { backend: "reference" });
      for (const key of ["weight", "bias", "mean_weight", "var_weight"] as const) {
        assertSameValues(sn[key], want[key], `${name}: ${key}`);
      }
      assertSameValues(await sn.forward(X1, SHAPE), y0, `${name}: y after the refused step`);
    }
    // The refused step changed nothing: a finite one still takes effect.
    sn.step((param) => param.fill(0.5));
    assertSameValues(sn.bias, new Float32Array(3).fill(0.5), "bias after a finite step");
  },
);

await testEachBackend(
  "a parameter array kept from a step and written after it changes nothing, on every backend alike",
  async (backend) => {
    // An optimiser that keeps references to its parameters: the live array used to be handed
    // out, whose later writes WASM used at once and WebGPU not (y 7x apart, misuse helper-93).
    const sn = new SwitchNorm2d(3, { backend }).eval();
    let kept: Float32Array | undefined;
    sn.step((param, _grad, name) => {
      if (name === "weight") kept = param;
      param.fill(name === "weight" ? 2 : param[0]);
    });
    const want = new SwitchNorm2d(3, { backend: "reference" }).eval();
    want.loadStateDict({ weight: new Float32Array(3).fill(2) }, { strict: false });
    const y = await sn.forward(X1, SHAPE);
    kept!.fill(7);
    assertSameValues(sn.weight, new Float32Array(3).fill(2), "weight after the late write");
    assertSameValues(await sn.forward(X1, SHAPE), y, "y after the late write");
    assertClose(y, await want.forward(X1, SHAPE), Y, "y of the stepped weight");
  },
);

await testEachBackend(
  "a step whose update is async is refused and changes no parameter",
  async (backend) => {
    const sn = new SwitchNorm2d(3, { backend }).eval();
    let late: Promise<void> | undefined;
    assert.throws(
      () =>
        sn.step((param) => {
          late = (async () => {
            await Promise.resolve();
            param.fill(NaN);
          })();
          return late as unknown as void;
        }),
      (e: unknown) =>
        e instanceof TypeError && /update returned a Promise/.test((e as Error).message),
    );
    await late;
    const want = new SwitchNorm2d(3, { backend: "reference" });
    for (const key of ["weight", "bias", "mean_weight", "var_weight"] as const) {
      assertSameValues(sn[key], want[key], key);
    }
    assert.ok((await sn.forward(X1, SHAPE)).every(Number.isFinite), "y after the refused step");
  },
);

await testEachBackend(
  "dispose() during a backward says the layer was disposed, and so does a retry",
  async (backend) => {
    const sn = new SwitchNorm2d(3, { backend });
    const y = await sn.forward(X1, SHAPE);
    const p = sn.backward(y);
    sn.dispose();
    const r = await p.then(() => "resolved", (e: Error) => e.message);
    // A CPU backend may have read all it needed before the dispose: then the backward stands.
    if (r !== "resolved") assert.match(r, /backward: the layer was disposed while this call ran/);
    else await sn.forward(X1, SHAPE).then(() => sn.dispose());
    await assert.rejects(
      sn.backward(y),
      /backward: the layer was disposed after its latest forward/,
    );
    // Disposed while the backward waits its turn: refused when it runs, by name.
    await sn.forward(X1, SHAPE);
    void sn.sync();
    const queued = sn.backward(y);
    sn.dispose();
    await assert.rejects(queued, /backward: the layer was disposed after its latest forward/);
  },
);

await testEachBackend(
  "a disposed resident x, dy or out is refused by name, and the layer's state stays as it was",
  async (backend) => {
    if (backend === "reference") return; // it holds no tensors of its own
    const sn = new SwitchNorm2d(3, { backend });
    const x = await sn.upload(X1, SHAPE), dy = await sn.upload(X2, SHAPE);
    const y = await sn.forward(x);
    const running = async () => {
      await sn.sync();
      return [sn.running_mean.slice(), sn.running_var.slice()];
    };
    const before = await running();
    x.dispose();
    // WebGPU said only "GpuTensor: used after dispose()" for the forward's x.
    await assert.rejects(
      sn.backward(dy),
      (e: unknown) =>
        e instanceof TypeError && /the forward's x must be a live tensor/.test(e.message),
    );
    await assert.rejects(
      sn.forward(x),
      (e: unknown) => e instanceof TypeError && /backend: x must be a live tensor/.test(e.message),
    );
    const x2 = await sn.upload(X1, SHAPE), out = await sn.upload(X1, SHAPE);
    out.dispose();
    await assert.rejects(
      sn.forward(x2, { out }),
      (e: unknown) =>
        e instanceof TypeError && /backend: out must be a live tensor/.test(e.message),
    );
    // The failed forwards moved no running buffer.
    const [mean, variance] = await running();
    assertSameValues(mean, before[0], "running_mean");
    assertSameValues(variance, before[1], "running_var");
    await sn.forward(x2);
    const grads = sn.grads;
    dy.dispose();
    await assert.rejects(
      sn.backward(dy),
      (e: unknown) => e instanceof TypeError && /backend: dy must be a live tensor/.test(e.message),
    );
    assert.deepEqual(sn.grads, grads);
    y.dispose();
    sn.dispose();
  },
);

Deno.test("a non-number option is a TypeError and a bad dimension says positive integer", async () => {
  assert.throws(() => new SwitchNorm2d(2, { eps: {} as never }), TypeError);
  assert.throws(() => new SwitchNorm2d(2, { momentum: "0.1" as never }), TypeError);
  assert.throws(() => new SwitchNorm2d(2, { eps: NaN }), RangeError);
  assert.throws(() => new SwitchNorm2d("2" as never), TypeError);
  assert.throws(() => {
    new SwitchNorm2d(2, { sparse: true }).radius = [0.5] as never;
  }, TypeError);
  const sn = new SwitchNorm2d(2, { backend: "reference" });
  await assert.rejects(sn.forward(new Float32Array(8), [2, 2, "1", 2] as never), TypeError);
  await assert.rejects(
    sn.forward(new Float32Array(8), [2, 2, -1, 2]),
    /shape\[2\] must be a positive integer, got -1/,
  );
});

await testEachBackend(
  "a state change from inside step()'s update is refused, since the update's values replace the parameters",
  async (backend) => {
    // With the update's copies taken in when it returns, a loadStateDict or a nested step made
    // inside it was silently overwritten (misuse helper-93's re-entrant calls).
    const sn = new SwitchNorm2d(3, { backend });
    const loaded = { weight: new Float32Array([5, 5, 5]) };
    for (
      const [what, call] of [
        ["loadStateDict", () => sn.loadStateDict(loaded, { strict: false })],
        ["step", () => sn.step((p) => p.fill(7))],
      ] as const
    ) {
      assert.throws(
        () =>
          sn.step((param, _grad, name) => {
            if (name === "bias") call();
            param.fill(2);
          }),
        new RegExp(`SwitchNorm2d\\.${what}: called from inside step\\(\\)'s update`),
      );
      assertSameValues(sn.weight, new Float32Array([1, 1, 1]), `${what}: weight`);
    }
    sn.step((param) => param.fill(2)); // usable after
    assertSameValues(sn.bias, new Float32Array([2, 2, 2]), "bias after a plain step");
    assert.equal((await sn.forward(X1, SHAPE)).length, X1.length);
  },
);
