/**
 * The WASM backend's backward against the float64 reference backend on random problems, on
 * resident tensors, through interleaved layers, and the layer's refusal of a backward after a
 * forward that kept nothing.
 */
import assert from "node:assert/strict";
import type { BackwardResult, SavedForward } from "../backends/_backend.ts";
import { type WasmBackend, WasmTensor } from "../backends/wasm.ts";
import { SwitchNorm1d, SwitchNorm2d } from "../mod.ts";
import { assertClose, assertSameValues, type Tolerance } from "./_close.ts";
import { seededRandom as rng } from "../examples/_data.ts";
import { type Case, ignore, MOVING, randomCase, randomDy, reference, wasm } from "./_wasm_cases.ts";

/**
 * dx of the WASM backward against the reference's float64 one. The reduction sums dy and
 * dy (x - f32 mean) per row in f32 within chunks of 256 floats (16 terms per partial sum) and
 * adds the chunks in f64; everything O(N*C) is f64, and the dx sweep is three f32 multiply-adds
 * from per-row constants rounded to f32, so dx is good to a few f32 ulps. Observed at most 0.02
 * of this bound on the problems below.
 */
const DX: Tolerance = {
  atol: 1e-5,
  rtol: 1e-5,
  why: "f32 dx sweep from f64 per-row constants: a few ulps of |dx|",
};

/**
 * The parameter gradients and the logit dot products: sums over N*M terms of those f32 chunk
 * sums, whose rounding (~1e-8 of the sum of |terms|, and not always unbiased) reaches a few 1e-5
 * absolute on rows of 3000 floats with terms up to ~10 (dBias is sum dy itself). Observed at
 * most 0.17 of this bound. GRAD (1e-4, the shared table's) would pass too, but would hide an f32
 * accumulation over whole rows.
 */
const SUMS: Tolerance = {
  atol: 5e-5,
  rtol: 5e-5,
  why: "sums over N*M of f32 chunk sums of 256 floats, added in f64",
};

/** Training forward (with save) then backward on both backends; compares every result. */
async function agreeBackward(wasm: WasmBackend, c: Case, dy: Float32Array, what: string) {
  const pw = c.params(), pr = c.params();
  const sw: SavedForward = {}, sr: SavedForward = {};
  await wasm.forward(c.problem, c.x, pw, MOVING, undefined, sw);
  await reference.forward(c.problem, c.x, pr, MOVING, undefined, sr);
  const gw = await wasm.backward(sw, dy, pw), gr = await reference.backward(sr, dy, pr);
  assertGradsClose(gw, gr, what);
}

function assertGradsClose(gw: BackwardResult, gr: BackwardResult, what: string): void {
  assert.ok(gw.dx instanceof Float32Array, `${what}: dx is a Float32Array`);
  assertClose(gw.dx, gr.dx as Float32Array, DX, `${what}: dx`);
  assertClose(gw.dWeight, gr.dWeight, SUMS, `${what}: dWeight`);
  assertClose(gw.dBias, gr.dBias, SUMS, `${what}: dBias`);
  // a_k = meanDots[k] + meanDotsOffset (each backend takes its own offset, where the data's is
  // large), and their differences a_k - a_0, which the logit gradients take.
  const whole = (g: BackwardResult) => g.meanDots.map((v) => v + (g.meanDotsOffset ?? 0));
  const apart = (g: BackwardResult) => g.meanDots.map((v) => v - g.meanDots[0]);
  assertClose(whole(gw), whole(gr), SUMS, `${what}: meanDots`);
  assertClose(apart(gw), apart(gr), SUMS, `${what}: meanDots' differences`);
  assertClose(gw.varDots, gr.varDots, SUMS, `${what}: varDots`);
}

Deno.test({
  name: "WASM backward matches the reference on random nd problems, train and eval, BN on/off",
  ignore,
  async fn() {
    let seed = 1000;
    for (const m of [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 49, 1023, 1024, 1025, 3000]) {
      for (const [n, c] of [[1, 3], [2, 1], [3, 5]] as const) {
        for (const training of [true, false]) {
          for (const usingBN of [true, false]) {
            const what = `nd [${n},${c},${m}] training=${training} usingBN=${usingBN}`;
            const k = randomCase(seed++, "nd", [n, c, m], training, usingBN);
            await agreeBackward(wasm, k, randomDy(seed, k.x.length), what);
          }
        }
      }
    }
  },
});

Deno.test({
  name:
    "WASM backward matches the reference on random 1d problems, odd widths and several tiles included",
  ignore,
  async fn() {
    let seed = 1200;
    // [300, 300]: the reduction's sums over two tiles of rows; [20, 7001]: over three tiles of
    // columns, the odd column in the last (wasm/src/oned_grad.rs, Tiles).
    const shapes: [number, number][] = [
      [2, 2],
      [7, 3],
      [16, 37],
      [300, 5],
      [33, 1000],
      [3, 2001],
      [300, 300],
      [20, 7001],
    ];
    for (const [n, c] of shapes) {
      for (const training of [true, false]) {
        const what = `1d [${n},${c}] training=${training}`;
        const k = randomCase(seed++, "1d", [n, c, 1], training, true);
        await agreeBackward(wasm, k, randomDy(seed, k.x.length), what);
      }
    }
  },
});

Deno.test({
  name: "WASM backward keeps full accuracy with mean offsets of 1e4 and unit spread",
  ignore,
  async fn() {
    let seed = 1300;
    for (const offset of [1e4, -3e4]) {
      for (
        const [layout, shape] of [
          ["nd", [2, 4, 49]],
          ["nd", [3, 2, 1500]],
          ["1d", [64, 6, 1]],
        ] as const
      ) {
        for (const training of [true, false]) {
          const k = randomCase(seed++, layout, [...shape], training, true, offset);
          const what = `${layout} [${shape}] offset ${offset} training=${training}`;
          await agreeBackward(wasm, k, randomDy(seed, k.x.length), what);
        }
      }
    }
  },
});

Deno.test({
  name: "a backward on resident tensors gives the Float32Array path's numbers, in a new tensor",
  ignore,
  async fn() {
    for (const [layout, shape] of [["nd", [3, 4, 37]], ["1d", [9, 7, 1]]] as const) {
      const k = randomCase(1400, layout, [...shape], true, true);
      const dy = randomDy(1401, k.x.length);
      const plain: SavedForward = {}, resident: SavedForward = {};
      const p1 = k.params(), p2 = { ...k.params(), layerId: 2 };
      await wasm.forward(k.problem, k.x, p1, MOVING, undefined, plain);
      const want = await wasm.backward(plain, dy, p1);

      using xt = wasm.upload(k.x, [k.x.length]);
      using dyt = wasm.upload(dy, [dy.length]);
      using yt = await wasm.forward(k.problem, xt, p2, MOVING, undefined, resident) as WasmTensor;
      const got = await wasm.backward(resident, dyt, p2);
      using dx = got.dx as WasmTensor;
      assert.ok(dx instanceof WasmTensor && dx !== dyt && dx !== xt && dx !== yt);
      assert.deepEqual(dx.shape, xt.shape);
      assertSameValues(dx.data, want.dx as Float32Array, `${layout}: dx`);
      assertSameValues(dyt.data, dy, `${layout}: dy is left alone`);
      assertSameValues(got.dWeight, want.dWeight, `${layout}: dWeight`);
      assertSameValues(got.dBias, want.dBias, `${layout}: dBias`);
      assertSameValues(got.meanDots, want.meanDots, `${layout}: meanDots`);
      assertSameValues(got.varDots, want.varDots, `${layout}: varDots`);
      wasm.releaseLayer(p1);
      wasm.releaseLayer(p2);
    }
  },
});

Deno.test({
  name: "two layers' forwards, then their backwards in reverse order, give the reference's results",
  ignore,
  async fn() {
    const shape = [4, 3, 5, 6], len = 360;
    const r = rng(1500);
    const x = Float32Array.from({ length: len }, () => r() * 4 - 1);
    const dy = Float32Array.from({ length: len }, () => r() * 2 - 1);
    const run = async (backend: "wasm" | "reference") => {
      const a = new SwitchNorm2d(3, { backend });
      const b = new SwitchNorm2d(3, { backend, usingBN: false });
      const y = await a.forward(x, shape);
      const z = await b.forward(y, shape);
      assert.equal(z.length, len);
      const dz = await b.backward(dy);
      const dx = await a.backward(dz);
      const out = { dx, a: structuredClone(a.grads), b: structuredClone(b.grads) };
      a.dispose();
      b.dispose();
      return out;
    };
    const got = await run("wasm"), want = await run("reference");
    assertClose(got.dx, want.dx, DX, "dx");
    for (const layer of ["a", "b"] as const) {
      for (const [name, g] of Object.entries(want[layer])) {
        assertClose(got[layer][name as "weight"], g, SUMS, `layer ${layer}: grad of ${name}`);
      }
    }
  },
});

Deno.test({
  name: "a backward after an evaluation forward that kept nothing is refused",
  ignore,
  async fn() {
    const sn = new SwitchNorm1d(3, { backend: "wasm" });
    const x = Float32Array.from([1, 2, 4, 3, 0, 1]);
    await sn.forward(x, [2, 3]);
    await sn.backward(new Float32Array(6)); // training keeps what backward needs
    sn.eval();
    await sn.forward(x, [2, 3]);
    await assert.rejects(
      () => sn.backward(new Float32Array(6)),
      /the latest forward ran in evaluation mode without \{ keepForBackward: true \}/,
    );
    await sn.forward(x, [2, 3], { keepForBackward: true });
    const dx = await sn.backward(new Float32Array(6).fill(1));
    assert.equal(dx.length, 6);
    sn.dispose();
  },
});

Deno.test({
  name:
    "the backend's backward refuses the wrong kind of dy and statistics a later forward replaced",
  ignore,
  async fn() {
    const k = randomCase(1600, "nd", [2, 3, 5], true, true);
    const p = { ...k.params(), layerId: 3 };
    const saved: SavedForward = {};
    await wasm.forward(k.problem, k.x, p, MOVING, undefined, saved);
    using t = wasm.upload(new Float32Array(30), [30]);
    await assert.rejects(() => wasm.backward(saved, t, p), /dy must be a Float32Array of 30/);
    await assert.rejects(
      () => wasm.backward(saved, new Float32Array(29), p),
      /dy must be a Float32Array of 30/,
    );
    await assert.rejects(
      () => wasm.backward({ problem: k.problem, x: k.x }, new Float32Array(30), p),
      /needs a forward run on the wasm backend/,
    );

    using xt = wasm.upload(k.x, [2, 3, 5]);
    const residentSaved: SavedForward = {};
    using _y = await wasm.forward(k.problem, xt, p, MOVING, undefined, residentSaved) as WasmTensor;
    await assert.rejects(() => wasm.backward(saved, new Float32Array(30), p), /statistics .* gone/);
    await assert.rejects(
      () => wasm.backward(residentSaved, new Float32Array(30), p),
      /dy must be a live tensor/,
    );
    wasm.releaseLayer(p);
    await assert.rejects(() => wasm.backward(residentSaved, t, p), /statistics .* gone/);
  },
});
