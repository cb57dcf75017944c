/**
 * Saved state (README, "Call order and saved state"): a backward differentiates the forward that
 * ran, with the parameter values it used, once; `out` never overwrites an x kept for a backward.
 */
import assert from "node:assert/strict";
import {
  type Gradients,
  type SwitchNorm,
  SwitchNorm1d,
  SwitchNorm2d,
  SwitchNorm3d,
} from "../mod.ts";
import type { ResidentTensor } from "../backends/_backend.ts";
import { assertClose } from "./_close.ts";
import { testEachBackend } from "./_backends.ts";
import { GRAD } from "./_tolerances.ts";
import { type ForwardStep, loadVectors } from "./_vectors.ts";
import {
  assertSameState,
  backwardOf,
  data,
  EXACT,
  forwardOf,
  kindsOf,
  LENGTH,
  makeLayer,
  read,
  SHAPE,
  tensors,
} from "./_call_order.ts";

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
