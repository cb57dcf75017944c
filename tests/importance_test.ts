/**
 * softmax, sparsemax and sparsestmax (Sparse SN), and their backward passes.
 */
import assert from "node:assert/strict";
import { softmax, sparsemax, sparsestmax } from "../_importance.ts";
import { assertClose } from "./_close.ts";

const FD = { atol: 1e-7, rtol: 1e-6, why: "float64 central differences, h = 1e-6" };

function random(seed: number) {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
}

/** dL/dv by central differences for L = <g, f(v)>. */
function numericVjp(f: (v: Float64Array) => Float64Array, v: Float64Array, g: Float64Array) {
  return Float64Array.from(v, (_, i) => {
    const at = (h: number) => {
      const w = v.slice();
      w[i] += h;
      return f(w).reduce((a, x, q) => a + x * g[q], 0);
    };
    return (at(1e-6) - at(-1e-6)) / 2e-6;
  });
}

Deno.test("sparsemax projects onto the simplex and zeroes what falls below the threshold", () => {
  assert.deepEqual([...sparsemax([0, 0, 0])].map((x) => x.toFixed(6)), [
    "0.333333",
    "0.333333",
    "0.333333",
  ]);
  assert.deepEqual([...sparsemax([2, 0, 0])], [1, 0, 0]);
  assertClose(sparsemax([0.5, 0.3, -1]), [0.6, 0.4, 0], FD, "sparsemax");
});

Deno.test("the backward passes of softmax and sparsestmax equal finite differences", () => {
  const r = random(3);
  let checked = 0;
  for (let trial = 0; trial < 200; trial++) {
    const k = trial % 2 ? 3 : 2;
    const v = Float64Array.from({ length: k }, () => 1.5 * r());
    const g = Float64Array.from({ length: k }, r);
    assertClose(softmax(v).vjp(g), numericVjp((x) => softmax(x).weights, v, g), FD, "softmax");
    const radius = (trial % 10) / 10;
    const f = (x: Float64Array) => sparsestmax(x, radius).weights;
    // Skip points within h of a kink, where the function is not differentiable.
    const numeric = numericVjp(f, v, g);
    const near = numericVjp(f, v.map((x) => x + 1e-4), g);
    if (numeric.some((x, i) => Math.abs(x - near[i]) > 1e-3)) continue;
    assertClose(sparsestmax(v, radius).vjp(g), numeric, FD, `sparsestmax r=${radius} v=${v}`);
    checked++;
  }
  assert.ok(checked > 150, `only ${checked} points checked`);
});

Deno.test("sparsestmax stays on the simplex and becomes one-hot as the radius reaches 1", () => {
  const r = random(5);
  for (let trial = 0; trial < 100; trial++) {
    const v = Float64Array.from({ length: 3 }, r);
    for (const radius of [0, 0.2, 0.5, 0.8, 1]) {
      const w = sparsestmax(v, radius).weights;
      assert.ok(w.every((x) => x >= 0 && x <= 1));
      assert.ok(Math.abs(w.reduce((a, b) => a + b) - 1) < 1e-12);
    }
    const w = sparsestmax(v, 1).weights;
    assert.deepEqual([...w].sort(), [0, 0, 1], `not one-hot at r = 1: ${w}`);
    // It picks the largest logit.
    assert.equal(w.indexOf(1), v.indexOf(Math.max(...v)));
  }
  // Equal logits give no direction to move in: the uniform weights stay (a guarded 0/0).
  assert.deepEqual([...sparsestmax([1, 1, 1], 0.5).weights].map((x) => x.toFixed(6)), [
    "0.333333",
    "0.333333",
    "0.333333",
  ]);
});

Deno.test("softmax of logits in the hundreds is exact, not NaN (it subtracts the largest logit)", () => {
  // Without the shift, exp(1000) = Infinity and Infinity / Infinity = NaN; exp(-1000) = 0 for all
  // three gives 0 / 0. With it, the weights are exp of values <= 0: [1, e^-1000 = 0, 0], thirds.
  assert.deepEqual([...softmax([1000, 0, -1000]).weights], [1, 0, 0]);
  assert.deepEqual([...softmax([-1000, -1000, -1000]).weights], [1 / 3, 1 / 3, 1 / 3]);
  assert.deepEqual([...softmax([800, 800]).weights], [0.5, 0.5]);
  // exp(710) overflows float64: the largest two of these differ by 1, so their weights are
  // e/(1+e) and 1/(1+e) (to float64 rounding), the third 0.
  assertClose(
    softmax([711, 710, -5]).weights,
    [Math.E / (1 + Math.E), 1 / (1 + Math.E), 0],
    { atol: 1e-15, rtol: 1e-14, why: "float64 rounding of a three-term softmax" },
    "softmax([711, 710, -5])",
  );
  const grad = softmax([1000, 0, -1000]).vjp([1, 2, 3]);
  assert.ok(grad.every(Number.isFinite), `vjp of a saturated softmax is finite: ${grad}`);
});

Deno.test("sparsestmax takes a point that leaves the simplex to the top two logits' edge, still r from the centre", () => {
  // Logits this close keep all three in sparsemax's support, so the centre is 1/3 in every entry
  // (SN_SPEC). At r = 0.6 or 0.7 the point u + r (w - u)/|w - u| has a negative third entry; the
  // spec's closed form on the edge of the two largest logits at distance r from the centre is
  // p_top = 1/2 + sqrt(r^2 - 1/6) / sqrt(2) (1/6 = |(1/2, 1/2, 0) - u|^2), p_second = 1 - p_top.
  for (const r of [0.6, 0.7]) {
    const top = 0.5 + Math.sqrt(r * r - 1 / 6) / Math.SQRT2;
    assertClose(
      sparsestmax([0.2, 0.1, 0], r).weights,
      [top, 1 - top, 0],
      { atol: 1e-12, rtol: 0, why: "float64 rounding of a few square roots" },
      `sparsestmax([0.2, 0.1, 0], ${r})`,
    );
  }
});
