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
  // Where the float64 truth is beyond float32 both give the same infinity (assertClose checks);
  // finite values near float32's largest value (dy gamma / std passes it) must stay finite.
  assertClose(got.dx, want.dx, GRAD, "dx");
  for (const k of ["weight", "bias", "mean_weight", "var_weight"] as const) {
    assertClose(got.grads[k], want.grads[k], GRAD, `grad of ${k}`);
  }
});

/**
 * SwitchNorm2d on [4, 4, 5, 7] (rows of 35 floats: the four-row sweeps), eps 0, whose channels
 * leave float32's range in different ways while the float64 results fit: gamma 1e33 over a std
 * of 3e-7 (gamma / std = 3e39), gamma 3e38 with beta -3e38 (gamma xhat passes float32's largest
 * value, y = that + beta does not), gamma 10 over a std of 3e-38, and an ordinary channel;
 * sample 2's dy is ~1e38. y, dx and the gradients must be the float64 reference's, rounded to
 * float32 once (beyond float32's largest: the infinity of the value's sign).
 */
async function factorsOutOfRange(backend: "reference" | "wasm", training: boolean) {
  const shape = [4, 4, 5, 7], m = 35, c = 4;
  const stds = [3e-7, 1, 3e-38, 1];
  const random = seededRandom(2024);
  const x = new Float32Array(4 * c * m), dy = new Float32Array(4 * c * m);
  for (let i = 0; i < x.length; i++) {
    const j = Math.floor(i / m) % c, n = Math.floor(i / (c * m));
    x[i] = (random() * 2 - 1) * stds[j] + (j === 1 ? 0.5 : 0);
    dy[i] = (random() * 2 - 1) * (n === 2 ? 1e38 : 1);
  }
  const layer = new SwitchNorm2d(c, { backend, eps: 0 });
  layer.loadStateDict({
    weight: new Float32Array([1e33, 3e38, 10, 0.9]),
    bias: new Float32Array([0.5, -3e38, 0.1, -0.2]),
    mean_weight: new Float32Array([1.5, -0.5, -1]),
    var_weight: new Float32Array([2, -1, -2]),
    running_mean: new Float32Array([0, 0.5, 0, 0.1]),
    running_var: new Float32Array([1e-13, 0.3, 1e-75, 1.2]),
  });
  layer.train(training);
  const y = await layer.forward(x, shape, { keepForBackward: true });
  const dx = await layer.backward(dy);
  return { y, dx, grads: layer.grads };
}

for (const training of [true, false]) {
  Deno.test(`WASM rows whose gamma / std, gamma with beta, or dy leave float32's range match the float64 reference (${training ? "training" : "evaluation"})`, async () => {
    const want = await factorsOutOfRange("reference", training);
    const got = await factorsOutOfRange("wasm", training);
    assertClose(got.y, want.y, Y, "y");
    assertClose(got.dx, want.dx, GRAD, "dx");
    for (const k of ["weight", "bias", "mean_weight", "var_weight"] as const) {
      assertClose(got.grads[k], want.grads[k], GRAD, `grad of ${k}`);
    }
  });
}
