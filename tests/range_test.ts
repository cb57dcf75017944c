/**
 * Issue 10, point 1: finite float32 inputs over the whole range. The shared vectors hold the
 * PyTorch examples (tests/vectors/*range*); these tests add what vectors cannot: eps values the
 * layer refuses, and WASM rows of every kind (huge, ordinary, tiny) mixed in one call, in the
 * four-row sweeps, against the float64 reference backend.
 */
import assert from "node:assert/strict";
import { SwitchNorm1d, SwitchNorm2d } from "../mod.ts";
import { seededRandom } from "../examples/_data.ts";
import { assertClose } from "./_close.ts";
import { GRAD, Y } from "./_tolerances.ts";

Deno.test("an eps between 0 and float32's smallest normal number is refused, naming it", () => {
  for (const eps of [1e-45, 1e-40, 1e-39, 2 ** -127]) {
    assert.throws(
      () => new SwitchNorm2d(2, { eps }),
      (e: unknown) =>
        e instanceof RangeError && /eps must be 0 or at least 2\^-126/.test(e.message) &&
        e.message.includes(`got ${eps}`),
    );
    assert.throws(() => new SwitchNorm1d(2, { eps }), RangeError);
  }
  assert.equal(new SwitchNorm2d(2, { eps: 0 }).eps, 0);
  assert.equal(new SwitchNorm2d(2, { eps: 2 ** -126 }).eps, 2 ** -126);
});

/**
 * SwitchNorm2d without BN (so that each sample's rows share a scale through LN) on [4, 3, 5, 7]
 * with eps 0: samples scaled by 1e19, 1, 1e-22 and 1, so that rows of 35 floats (the four-row
 * sweeps) mix wide and ordinary rows within a group. dy is scaled like x, so dx is O(1).
 */
async function mixedScales(backend: "reference" | "wasm") {
  const shape = [4, 3, 5, 7], per = 3 * 35, scales = [1e19, 1, 1e-22, 1];
  const random = seededRandom(1010);
  const x = new Float32Array(4 * per), dy = new Float32Array(4 * per);
  for (let i = 0; i < x.length; i++) {
    const s = scales[Math.floor(i / per)];
    x[i] = (random() * 2 - 1 + 0.3) * s;
    dy[i] = (random() * 2 - 1) * s;
  }
  const layer = new SwitchNorm2d(3, { backend, eps: 0, usingBN: false });
  layer.loadStateDict({
    weight: new Float32Array([0.8, 1.1, 1.3]),
    bias: new Float32Array([0.1, -0.2, 0.3]),
    mean_weight: new Float32Array([0.3, -0.4]),
    var_weight: new Float32Array([-0.2, 0.5]),
  });
  layer.train(true);
  const y = await layer.forward(x, shape, { keepForBackward: true });
  const dx = await layer.backward(dy);
  return { y, dx, grads: layer.grads };
}

Deno.test("WASM rows of std 1e19, 1 and 1e-22 in one call match the float64 reference", async () => {
  const want = await mixedScales("reference");
  const got = await mixedScales("wasm");
  assertClose(got.y, want.y, Y, "y");
  assertClose(got.dx, want.dx, GRAD, "dx");
  for (const k of ["weight", "bias", "mean_weight", "var_weight"] as const) {
    // dweight and dbias of the 1e19 sample are ~1e19; mean_weight / var_weight are O(1).
    assertClose(got.grads[k], want.grads[k], GRAD, `grad of ${k}`);
  }
});

Deno.test("WASM backward with dy near float32's limit (row sums overflow float32) matches the reference", async () => {
  const shape = [2, 3, 7, 7], len = 2 * 3 * 49;
  const random = seededRandom(5);
  const x = Float32Array.from({ length: len }, () => random() * 2 - 1);
  const dy = Float32Array.from({ length: len }, () => (random() * 2 - 1) * 3e38);
  const run = async (backend: "reference" | "wasm") => {
    const layer = new SwitchNorm2d(3, { backend });
    layer.train(true);
    await layer.forward(x, shape, { keepForBackward: true });
    const dx = await layer.backward(dy);
    return { dx, grads: layer.grads };
  };
  const want = await run("reference"), got = await run("wasm");
  // Where the float64 truth is beyond float32 both give the same infinity (assertClose checks).
  // A dx within a factor 2 of float32's largest value may come out as the infinity of its sign:
  // the kernel adds its three float32 terms, which can pass the limit on the way (README).
  const near = 2 ** 127;
  const dxWant = Float64Array.from(
    want.dx,
    (e, i) => Math.abs(e) >= near && got.dx[i] === Math.sign(e) * Infinity ? got.dx[i] : e,
  );
  assertClose(got.dx, dxWant, GRAD, "dx");
  for (const k of ["weight", "bias", "mean_weight", "var_weight"] as const) {
    assertClose(got.grads[k], want.grads[k], GRAD, `grad of ${k}`);
  }
});
