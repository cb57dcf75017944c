/**
 * How tests/_close.ts judges an infinity: as the values float32 rounds to it (float32Gap), so
 * that a tolerance spanning float32's range accepts a finite value for an infinity, and one that
 * does not refuses it (issue 10).
 *
 * @module
 */
import assert from "node:assert/strict";
import { assertClose, assertCloseToScale, FLOAT32_OVERFLOW, float32Gap } from "./_close.ts";
import { GRAD, GRAD_SCALED, Y } from "./_tolerances.ts";
import { make } from "./fuzz/attack_fuzz.ts";
import {
  affineSizes,
  assertRangeChecks,
  type LayerCall,
  rangeTest,
  runBoth,
} from "./_range_compare.ts";

const F32_MAX = 3.4028234663852886e38;

Deno.test("float32Gap takes an infinity as every value float32 rounds to it", () => {
  assert.equal(FLOAT32_OVERFLOW, 3.4028235677973366e38);
  assert.equal(Math.fround(FLOAT32_OVERFLOW), Infinity);
  assert.equal(Math.fround(FLOAT32_OVERFLOW - 2 ** 75), F32_MAX);
  assert.equal(float32Gap(Infinity, Infinity), 0);
  assert.equal(float32Gap(F32_MAX, Infinity), 2 ** 103);
  assert.equal(float32Gap(-F32_MAX, -Infinity), 2 ** 103);
  assert.equal(float32Gap(1e50, Infinity), 0); // a float64 value past float32's range
  assert.equal(float32Gap(0, -Infinity), FLOAT32_OVERFLOW);
  assert.equal(float32Gap(Infinity, -Infinity), 2 * FLOAT32_OVERFLOW);
  assert.equal(float32Gap(-Infinity, 1), FLOAT32_OVERFLOW + 1);
  assert.equal(float32Gap(3, 1), 2);
  assert.ok(Number.isNaN(float32Gap(NaN, 1)));
});

Deno.test("an infinity passes for itself and for float32's largest value, not for an O(1) value", () => {
  assertClose([Infinity, -Infinity, F32_MAX], [Infinity, -Infinity, Infinity], Y, "y");
  assert.throws(() => assertClose([1], [Infinity], GRAD, "dx"), /got 1, expected Infinity/);
  assert.throws(() => assertClose([-Infinity], [Infinity], GRAD, "dx"));
  assert.throws(() => assertClose([Infinity], [1], GRAD, "dx"));
  assert.throws(() => assertClose([1], [NaN], GRAD, "dx"));
  assert.throws(() => assertClose([NaN], [Infinity], GRAD, "dx"));
});

Deno.test("GRAD_SCALED takes any value for an infinity only where its terms pass 1e-4 of float32's range", () => {
  // 1e-4 T spans the gap from 0 to the range from T ~3.4e42 on, and from one infinity to the
  // other from T ~6.8e42 on.
  assertCloseToScale([0, Infinity], [Infinity, -Infinity], [1e43, 1e43], GRAD_SCALED, "dx");
  assert.throws(() => assertCloseToScale([0], [Infinity], [3e42], GRAD_SCALED, "dx"));
  assert.throws(() => assertCloseToScale([Infinity], [-Infinity], [6e42], GRAD_SCALED, "dx"));
  assert.throws(() => assertCloseToScale([NaN], [Infinity], [Infinity], GRAD_SCALED, "dx"));
});

// Attack fuzzer seed 968: two constant rows (-1e-37 and -6.7e-38) of SwitchNorm2d(1) under eps
// 0, mean logits [-138.6, -1e30, -174.7] (LN's weight exactly 0) and variance logits [-103.3,
// 87, 1.3], dy 1e37 everywhere, gamma 1e-20. Exactly, dx = gamma dy / sigma (1 - w_IN - w_BN) =
// 0 (w_LN = 0; the variance path cancels between the rows, whose x - mu are opposite), but its
// terms are gamma dy / sigma ~ 2.4e73 (term scale 4e98), so float64's rounding of 1 - w_IN - w_BN
// (~1e-16) leaves the reference +Infinity in float32; WASM gives 0. Under GRAD_SCALED (1e-4 T =
// 4e94) both are within tolerance, and the judge held this WASM result to +Infinity.
Deno.test("WASM's exact dx of 0 passes where the float64 reference's rounding of terms ~1e73 overflows float32", async () => {
  const call = make(968);
  const { got, want } = await runBoth(call, "wasm");
  assert.equal(want.dx[0], Infinity); // the reference's rounding, as described above
  assertRangeChecks(call, got, want);
});

// Attack fuzzer seed 2688 (SwitchNorm3d [8, 3, 2, 1, 1], an evaluation): channel 1 has gamma and
// beta 3e38 and -3e38, and a row's gamma xhat is 3e38 to float64's rounding, so its y is 0 there
// as a sum of terms of 3e38, accurate to float32's rounding of them (an ulp of 3e38 is 2.03e31).
// WebGPU gives -2.03e31; the range checks held that row's y to Y of its largest finite |y| (0,
// the other element being -Infinity): 1e36x. README's Y_SCALED holds it to the terms' size.
rangeTest(
  "webgpu",
  "y where gamma xhat and beta cancel is held to Y_SCALED of their size",
  async () => {
    const call = make(2688);
    const { got, want } = await runBoth(call, "webgpu");
    assertRangeChecks(call, got, want);
  },
);

Deno.test("affineSizes gives |gamma xhat| + |beta| per element, by channel, and 0 for an infinite y", () => {
  const call = {
    layer: "2d" as const,
    shape: [2, 2, 1, 2],
    training: false,
    x: new Float32Array(8),
    state: { bias: Float32Array.of(3, -3e38) },
  };
  const y = [3, 5, 0, -Infinity, 1, 3, 1e30, 0];
  const b = Math.fround(3e38); // beta as the Float32Array holds it
  assert.deepEqual(Array.from(affineSizes(call, y)), [3, 5, 2 * b, 0, 5, 3, 1e30 + 2 * b, 2 * b]);
});

Deno.test("the range checks still refuse a y 1e-3 off where gamma xhat and beta do not cancel", async () => {
  const call = make(968); // y = beta 3e38 there: take a call of O(1) y instead
  const plain = { ...call, state: { ...call.state!, bias: Float32Array.of(0.5) } };
  const { got, want } = await runBoth(plain, "wasm");
  assertRangeChecks(plain, got, want);
  const off = { ...got, y: got.y.map((v, i) => i === 7 ? v + 1e-3 * Math.max(1, Math.abs(v)) : v) };
  assert.throws(() => assertRangeChecks(plain, off, want), /y, row/);
});

// The checks' row scales took Math.max(...row): a row of ~150k floats or more overflowed the
// call stack (RangeError "Maximum call stack size exceeded") in the judge, not the backend.
Deno.test("the range checks judge a row of 300000 floats", async () => {
  const m = 300_000;
  const x = Float32Array.from({ length: m }, (_, i) => Math.sin(i) * 3 + 1);
  const dy = Float32Array.from({ length: m }, (_, i) => Math.cos(i * 0.7));
  const call: LayerCall = {
    layer: "2d",
    shape: [1, 1, 1, m],
    training: true,
    scales: true,
    x,
    dy,
  };
  const { got, want } = await runBoth(call, "wasm");
  assertRangeChecks(call, got, want);
});
