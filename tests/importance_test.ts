/**
 * softmax, sparsemax and sparsestmax (Sparse SN), and their backward passes; the logit
 * gradients of a layer where two terms are one statistic, on every backend.
 */
import assert from "node:assert/strict";
import { softmax, sparsemax, sparsestmax } from "../_importance.ts";
import { assertClose } from "./_close.ts";
import { testEachBackend } from "./_backends.ts";
import { SwitchNorm2d } from "../mod.ts";
import { seededRandom } from "../examples/_data.ts";

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

Deno.test("softmax's backward gives exactly 0 for equal entries of g, however large", () => {
  // g - <w, g> left the rounding of <w, g>: ~1e40 at |g| ~ 1e56, +Infinity once in float32.
  for (const v of [[0.3, -0.6], [1, 0.25, -2], [30, 0, -30]]) {
    for (const big of [1.2345e56, -7.7e200, 3]) {
      const g = v.map(() => big);
      assert.deepEqual([...softmax(v).vjp(g)].map((x) => x + 0), v.map(() => 0));
    }
  }
  // Two equal entries beside another: the gradient is w_i w_2 (g_i - g_2) for the equal ones.
  const s = softmax([0.4, -1.1, 0.2]);
  const [w0, w1, w2] = s.weights;
  const g = [1e56, 1e56, 1e56 + 2e40];
  const gap = g[0] - g[2]; // exact (Sterbenz): one ulp of 1e56 is ~1.5e40
  const [d0, d1] = s.vjp(g);
  assertClose([d0, d1], [w0 * w2 * gap, w1 * w2 * gap], FD, "softmax, two equal entries");
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

/** The point (t, 1 - t, 0) of the edge of the two largest logits at distance r from (1/3,1/3,1/3). */
const edgePoint = (r: number) => 0.5 + Math.sqrt((r * r - 1 / 6) / 2);

Deno.test("sparsestmax measures from the centre of the whole simplex, as the authors' code", () => {
  const v = [1, 0.5, -1];
  const exact = { atol: 1e-12, rtol: 0, why: "float64, a few operations" };
  // sparsemax(v) = [0.75, 0.25, 0] lies 0.54 from (1/3, 1/3, 1/3): kept up to r = 0.54.
  for (const r of [0, 0.3, 0.5, 0.54]) {
    assertClose(sparsestmax(v, r).weights, [0.75, 0.25, 0], exact, `r = ${r}`);
  }
  // Beyond, the sphere of radius r leaves the simplex: the edge point at distance r.
  for (const r of [0.55, 0.6, 0.71, 0.75, 0.8, 0.81]) {
    const t = edgePoint(r);
    assertClose(sparsestmax(v, r).weights, [t, 1 - t, 0], exact, `r = ${r}`);
    assert.ok(t < 1, `not yet one-hot at r = ${r}`);
  }
  // One-hot from r = sqrt(2/3) = 0.8165 on (the distance of a vertex from the centre).
  assert.deepEqual([...sparsestmax(v, 0.8166).weights], [1, 0, 0]);
  assert.deepEqual([...sparsestmax(v, 1).weights], [1, 0, 0]);
  // Full support: p = u + r (w - u) / (|w - u| + 1e-6), inside the simplex.
  const w = sparsemax([0.2, 0.9, 0.4]), d = Math.hypot(...w.map((x) => x - 1 / 3));
  assertClose(
    sparsestmax([0.2, 0.9, 0.4], 0.55).weights,
    w.map((x) => 1 / 3 + 0.55 * (x - 1 / 3) / (d + 1e-6)),
    exact,
    "sphere",
  );
});

Deno.test("sparsestmax of two logits measures from (1/2, 1/2) and is one-hot from r ~ 0.71", () => {
  const w = sparsemax([0.3, -0.2]); // [0.75, 0.25], 0.354 from the centre
  assertClose(w, [0.75, 0.25], FD, "sparsemax");
  const exact = { atol: 1e-12, rtol: 0, why: "float64, a few operations" };
  assertClose(sparsestmax([0.3, -0.2], 0.3).weights, [0.75, 0.25], exact, "r = 0.3");
  const d = Math.SQRT1_2 / 2;
  const p = 0.5 + 0.5 * 0.25 / (d + 1e-6);
  assertClose(sparsestmax([0.3, -0.2], 0.5).weights, [p, 1 - p], exact, "r = 0.5");
  assert.deepEqual([...sparsestmax([0.3, -0.2], 0.71).weights], [1, 0]);
  assert.throws(() => sparsestmax([1, 2, 3, 4], 0.5), /expected 2 or 3 logits, got 4/);
});

Deno.test("sparsemax and sparsestmax are shift-invariant, for huge logits too", () => {
  // Equal float32 logits of 1e15 once gave [0.375, 0.375, 0.375].
  assert.deepEqual([...sparsemax([1e15, 1e15, 1e15])], [1 / 3, 1 / 3, 1 / 3]);
  const big = Math.fround(1e15), gap = 2 ** 26; // float32 neighbours near 1e15 are 2^26 apart
  assert.deepEqual([...sparsemax([big, big, big - gap])], [0.5, 0.5, 0]);
  assert.deepEqual([...sparsemax([3e38, 3e38, -3e38])], [0.5, 0.5, 0]);
  const r = random(9);
  for (let trial = 0; trial < 50; trial++) {
    const v = Float64Array.from({ length: 3 }, r);
    const shift = 1e6 * r();
    for (const radius of [0, 0.4, 0.6, 0.9]) {
      assertClose(
        sparsestmax(v.map((x) => x + shift), radius).weights,
        sparsestmax(v, radius).weights,
        { atol: 1e-9, rtol: 0, why: "a shift of 1e6 rounds the logits by ~1e-10" },
        `v = ${v}, r = ${radius}`,
      );
    }
  }
});

Deno.test("sparsestmax's gradient is zero on the edge and where it clamps, as autograd gives", () => {
  const g = [0.3, -1, 2];
  assert.deepEqual([...sparsestmax([1, 0.5, -1], 0.6).vjp(g)], [0, 0, 0]);
  assert.deepEqual([...sparsestmax([0.3, -0.2], 0.75).vjp([1, -2])], [0, 0]);
  // Kept sparsemax: its Jacobian (I - 11^T/|S| on the support).
  assertClose(sparsestmax([1, 0.5, -1], 0.5).vjp(g), [0.65, -0.65, 0], FD, "sparsemax");
});

Deno.test("sparsestmax and its gradient equal autograd on the PyTorch port of the authors' map", () => {
  const file = new URL("./vectors/maps/sparsestmax.json", import.meta.url);
  const { points } = JSON.parse(Deno.readTextFileSync(file)) as {
    points: { v: number[]; r: number; g: number[]; expect: { weights: number[]; dv: number[] } }[];
  };
  assert.ok(points.length >= 300, `only ${points.length} points`);
  for (const { v, r, g, expect } of points) {
    const m = sparsestmax(v, r);
    const why = "their centre is float32(1/3) = 1/3 + 1e-8, which moves w by up to ~4e-8 and the " +
      "gradient by ~6e-7 relative in 3000 random points; the library uses 1/3";
    assertClose(m.weights, expect.weights, { atol: 2e-7, rtol: 0, why }, `weights v=${v} r=${r}`);
    assertClose(m.vjp(g), expect.dv, { atol: 1e-5, rtol: 1e-5, why }, `dv v=${v} r=${r}`);
  }
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

await testEachBackend(
  "IN and LN of one channel are one statistic: their logit gradients are exactly 0, even under dy ~1e35",
  async (backend) => {
    // C = 1 without BN: the IN and LN terms are the same, so the output does not depend on how the
    // logits split the weight between them. Before, softmax's backward left the rounding of
    // <w, dL/dw> (dots ~1e56): mean_weight's gradient -Infinity (reference and WASM), 2.7e25 on
    // rows of 1e10 under dy 1e30, 1.6e-16 on ordinary data.
    for (const [value, dyScale, m] of [[-1.6485e16, 8e34, 294], [1e10, 1e30, 49], [3, 1, 16]]) {
      const random = seededRandom(5);
      const x = Float32Array.from({ length: 2 * m }, (_, i) => value + (i % 3 ? 0 : random()));
      const dy = Float32Array.from({ length: 2 * m }, () => (random() * 2 - 1) * dyScale);
      const layer = new SwitchNorm2d(1, { backend, usingBN: false });
      layer.loadStateDict({
        mean_weight: new Float32Array([0.3, -0.6]),
        var_weight: new Float32Array([-0.2, 0.5]),
      }, { strict: false });
      await layer.forward(x, [2, 1, 1, m]);
      await layer.backward(dy);
      const grads = layer.grads!;
      assert.deepEqual([...grads.mean_weight, ...grads.var_weight].map((g) => g + 0), [0, 0, 0, 0]);
    }
  },
);
