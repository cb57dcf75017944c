/**
 * The term-scaled comparison (tests/_close.ts `assertCloseToScale`, tests/_term_scales.ts): it
 * reduces to the plain tolerance for O(1) data, still rejects a wrong result on scaled data, and
 * reports failures as assertClose does.
 */
import assert from "node:assert/strict";
import { SwitchNorm2d } from "../mod.ts";
import { seededRandom } from "../examples/_data.ts";
import { assertCloseToScale } from "./_close.ts";
import { GRAD_SCALED } from "./_tolerances.ts";
import { runningMeanScale, type TermScaleCall, termScales } from "./_term_scales.ts";

Deno.test("assertCloseToScale holds each entry to atol x its scale + rtol |expected| and names the first misses", () => {
  const tol = { atol: 1e-4, rtol: 0, why: "test" };
  assertCloseToScale([1 + 0.9e-4 * 1e6], [1], [1e6], tol, "within");
  assert.throws(
    () => assertCloseToScale([1, 1 + 1.1e-4 * 1e6, 5], [1, 1, 5], [1, 1e6, 1], tol, "beyond"),
    (e: unknown) =>
      e instanceof Error && /beyond: 1 of 3 entries differ/.test(e.message) &&
      e.message.includes("[1]: got 111, expected 1, term scale 1.00e+6"),
  );
  // NaN must match NaN; an infinity stands for the values float32 rounds to it
  // (tests/close_judge_test.ts), so it passes for another value only under a scale that spans
  // float32's range.
  assertCloseToScale(
    [NaN, Infinity, -Infinity],
    [NaN, Infinity, -Infinity],
    [1, 1, 1],
    tol,
    "kinds",
  );
  assert.throws(() => assertCloseToScale([Infinity], [-Infinity], [1e30], tol, "sign"));
  assert.throws(() => assertCloseToScale([Infinity], [1], [1e30], tol, "finite"));
  assert.throws(() => assertCloseToScale([NaN], [1], [1e300], tol, "NaN"));
  assertCloseToScale([Infinity, 1], [-Infinity, Infinity], [1e300, 1e300], tol, "past the range");
  assertCloseToScale([2 ** -124], [0], [0], { ...tol, floor: 2 ** -123 }, "floor");
});

/** A SwitchNorm2d training call on [4, 3, 5, 7]: x of `std` (mean 0.3 std), dy of `dyScale`. */
function call(std: number, dyScale: number, meanLogits = [0.3, -0.4, 0.2]): TermScaleCall {
  const random = seededRandom(7);
  const x = Float32Array.from({ length: 420 }, () => (random() * 2 - 1 + 0.3) * std);
  const dy = Float32Array.from({ length: 420 }, () => (random() * 2 - 1 + 0.3) * dyScale);
  return {
    layout: "nd",
    n: 4,
    c: 3,
    m: 35,
    eps: 0,
    usingBN: true,
    training: true,
    x,
    dy,
    weight: new Float32Array([1.5, 1.6, 1.7]),
    bias: new Float32Array([0.1, 0, -0.1]),
    meanLogits: new Float32Array(meanLogits),
    varLogits: new Float32Array([-0.2, 0.5, 0.1]),
  };
}

/** The reference backend's y, dx and gradients on `c`. */
async function reference(c: TermScaleCall) {
  const layer = new SwitchNorm2d(3, { backend: "reference", eps: 0 });
  layer.loadStateDict({
    weight: c.weight as Float32Array,
    bias: c.bias as Float32Array,
    mean_weight: c.meanLogits as Float32Array,
    var_weight: c.varLogits as Float32Array,
  }, { strict: false });
  layer.train(true);
  const y = await layer.forward(c.x as Float32Array, [4, 3, 5, 7], { keepForBackward: true });
  const dx = await layer.backward(c.dy as Float32Array);
  return { y, dx, ...layer.grads };
}

Deno.test("term scales bound the values they scale, and dx's is O(1) for O(1) data (the plain tolerance there)", async () => {
  for (const [std, dyScale] of [[1, 1], [1e-20, 1e12], [1e15, 1e-3]]) {
    const c = call(std, dyScale), want = await reference(c), t = termScales(c);
    for (const k of ["y", "dx", "weight", "bias", "mean_weight", "var_weight"] as const) {
      // An absolute-value evaluation is at least the value's size (up to float32 rounding).
      want[k].forEach((v, i) =>
        assert.ok(Math.abs(v) <= t[k][i] * (1 + 1e-6), `${k}[${i}]: |${v}| > ${t[k][i]}`)
      );
    }
    if (std === 1) {
      const sorted = Array.from(t.dx).sort((a, b) => a - b);
      const median = sorted[sorted.length >> 1];
      assert.ok(median > 0.1 && median < 10, `dx: median term scale ${median}`);
    }
  }
});

Deno.test("on data of std 1e-20 the term-scaled tolerance still rejects the dx of a mixing weight 1% off", async () => {
  const right = call(1e-20, 1e12), wrong = call(1e-20, 1e12, [0.31, -0.4, 0.2]);
  const want = (await reference(right)).dx, scales = termScales(right);
  assertCloseToScale(want, want, scales.dx, GRAD_SCALED, "the reference against itself");
  const got = (await reference(wrong)).dx;
  assert.throws(
    () => assertCloseToScale(got, want, scales.dx, GRAD_SCALED, "dx"),
    /dx: \d+ of 420/,
  );
});

Deno.test("runningMeanScale is the size of the running update's terms, step by step", () => {
  // Channel 0 of two, two elements per row, two samples: mean |x| = (1 + 3 + 2 + 2) / 4 = 2.
  const x = [1, -3, 10, 10, -2, 2, 10, 10];
  const moving = runningMeanScale({ c: 2, m: 2, batches: [x], start: [-4, 0], momentum: 0.5 });
  assert.deepEqual([...moving], [0.5 * 4 + 0.5 * 2, 0.5 * 10]);
  // Two steps: the second starts from the first's scale, not from a running_mean that cancelled.
  const twice = runningMeanScale({ c: 2, m: 2, batches: [x, x], start: [-4, 0], momentum: 0.5 });
  assert.deepEqual([...twice], [0.5 * 3 + 0.5 * 2, 0.5 * 5 + 0.5 * 10]);
  // A batch average starts from 0 and takes the steps' mean.
  const average = runningMeanScale({
    c: 2,
    m: 2,
    batches: [x, x.map((v) => 3 * v)],
    start: [-4, 0],
    momentum: 0.5,
    average: true,
  });
  assert.deepEqual([...average], [(2 + 6) / 2, (10 + 30) / 2]);
});

Deno.test("means equal in exact arithmetic and 0 still give the logit gradients a scale of float32 rounding of their stds", () => {
  // An evaluation of a row of +-v pairs (mean exactly 0) beside a row of zeros, on running
  // means 0: every mean difference is exactly 0, and so is the reference's mean_weight gradient,
  // where a backend's means a few 1e-14 of the std off gave -7e-15 (attack helper-77).
  const m = 64, random = seededRandom(11);
  const x = new Float32Array(2 * m);
  for (let i = 0; i < m; i += 2) x[i] = -(x[i + 1] = random() * 2 - 1);
  let q = 0;
  for (let i = 0; i < m; i++) q += x[i] * x[i];
  const scales = termScales({
    layout: "nd",
    n: 1,
    c: 2,
    m,
    eps: 1e-5,
    usingBN: true,
    training: false,
    x,
    dy: Float32Array.from({ length: 2 * m }, () => random() * 2 - 1),
    weight: new Float32Array([1, 1]),
    bias: new Float32Array(2),
    meanLogits: new Float32Array([0.3, -0.2, 0.1]),
    varLogits: new Float32Array([0.5, 0.1, -0.4]),
    runningMean: new Float32Array(2),
    runningVar: new Float32Array([q / (m - 1), 0]),
  });
  for (const s of scales.mean_weight) assert.ok(s > 0 && s < 1e-5, `mean_weight scale ${s}`);
});

Deno.test("means that differ by ~2^-24 of their std keep the scale of their difference", async () => {
  // Rows of +-V whose means differ by a few ulps of V over m (attack helper-78): the backends
  // tell such means apart, so mean_weight's tolerance must stay far below its gradient (a floor
  // of the stds' rounding for every pair of means let it pass 100% off and of the wrong sign).
  const V = 2 ** 20, m = 4096, ks = [1, 3, -2, 5];
  const x = new Float32Array(4 * m);
  for (let r = 0; r < 4; r++) {
    for (let i = 0; i < m; i++) x[r * m + i] = i % 2 ? V : -V;
    for (let j = 0; j < Math.abs(ks[r]); j++) {
      x[r * m + 2 * j] = Math.fround(-V + Math.sign(ks[r]) * V * 2 ** -23);
    }
  }
  const dy = new Float32Array(x.length).fill(1);
  const meanLogits = new Float32Array([0.3, -0.2, 0.1]),
    varLogits = new Float32Array([0.1, 0.2, 0.3]);
  const layer = new SwitchNorm2d(2, { backend: "reference", eps: 1e-5 });
  layer.loadStateDict({
    running_mean: new Float32Array(2),
    running_var: new Float32Array(2).fill(V * V),
    mean_weight: meanLogits,
    var_weight: varLogits,
  }, { strict: false });
  layer.train(false);
  await layer.forward(x, [2, 2, 1, m], { keepForBackward: true });
  await layer.backward(dy);
  const grad = layer.grads.mean_weight;
  const scales = termScales({
    layout: "nd",
    n: 2,
    c: 2,
    m,
    eps: 1e-5,
    usingBN: true,
    training: false,
    x,
    dy,
    weight: new Float32Array([1, 1]),
    bias: new Float32Array(2),
    meanLogits,
    varLogits,
    runningMean: new Float32Array(2),
    runningVar: new Float32Array(2).fill(V * V),
  });
  for (let k = 0; k < 3; k++) {
    const tolerance = GRAD_SCALED.atol * scales.mean_weight[k];
    assert.ok(tolerance < 1e-2 * Math.abs(grad[k]), `[${k}]: ${tolerance} for ${grad[k]}`);
  }
});
