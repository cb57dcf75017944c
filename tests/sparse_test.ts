/**
 * Sparse SN: sparsestmax importance weights with a radius schedule, and layers frozen to one
 * normalizer.
 */
import assert from "node:assert/strict";
import { SwitchNorm2d } from "../mod.ts";
import { assertClose } from "./_close.ts";
import { testEachBackend } from "./_backends.ts";

function random(seed: number) {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
}

await testEachBackend(
  "Sparse SN weights become one-hot as the radius ramps to 1 in training",
  async (backend) => {
    const r = random(11);
    const [n, c, m] = [4, 3, 6];
    const sn = new SwitchNorm2d(c, { backend, sparse: true });
    sn.loadStateDict({
      ...sn.stateDict(),
      mean_weight: [0.3, 0.1, -0.2],
      var_weight: [0.1, 0.2, 0.15],
    });
    const steps = 20;
    const sizes: number[] = [];
    for (let step = 0; step <= steps; step++) {
      sn.radius = step / steps;
      const x = Float32Array.from({ length: n * c * m }, () => 2 * r() + 1);
      await sn.forward(x, [n, c, 2, 3]);
      sn.zeroGrad();
      await sn.backward(Float32Array.from(x, () => r()));
      sn.step((param, grad, name) => {
        if (name === "mean_weight" || name === "var_weight") {
          param.forEach((_, i) => param[i] -= 0.1 * grad[i]);
        }
      });
      sizes.push(sn.meanImportance.filter((w) => w > 0).length);
    }
    for (const w of [sn.meanImportance, sn.varImportance]) {
      assert.deepEqual([...w].sort(), [0, 0, 1], `not one-hot at r = 1: ${w}`);
    }
    assert.ok(sizes[0] > 1, "at r = 0 the weights should not start one-hot");
    const frozen = sn.frozenTo;
    assert.equal(frozen.mean, sn.meanImportance.indexOf(1));
    assert.equal(frozen.var, sn.varImportance.indexOf(1));
  },
);

await testEachBackend(
  "a Sparse SN mixing whose weights are one-hot is fixed at the forward, as SSN2d fixes it",
  async (backend) => {
    const r = random(4);
    const [n, c, m] = [3, 2, 7];
    const sn = new SwitchNorm2d(c, { backend, sparse: true });
    const weight = [1.5, 0.5], bias = [0.25, -1];
    // Logits 3, 0, 0: sparsemax is already one-hot (at any radius).
    sn.loadStateDict({ ...sn.stateDict(), weight, bias, mean_weight: [3, 0, 0] });
    sn.radius = 0.3;
    assert.deepEqual(sn.frozenTo, {}, "nothing is fixed before a forward");
    const x = Float32Array.from({ length: n * c * m }, () => 3 * r());
    const y = await sn.forward(x, [n, c, 1, m]);
    assert.deepEqual(sn.frozenTo, { mean: 0 });
    const dict = sn.stateDict();
    assert.deepEqual([...dict.mean_weight], [1, 0, 0], "the logits become the one-hot vector");
    assert.deepEqual([...dict.mean_fixed!], [1]);
    assert.deepEqual([...dict.var_fixed!], [0]);
    // Mean of IN (weights [1, 0, 0]), variance of the uniform mixing (equal logits 1): written out.
    const want = new Float64Array(x.length);
    const rows = Array.from({ length: n * c }, (_, row) => {
      const v = x.subarray(row * m, (row + 1) * m);
      const mean = v.reduce((a, b) => a + b, 0) / m;
      return { v, mean, variance: v.reduce((a, b) => a + (b - mean) ** 2, 0) / (m - 1) };
    });
    for (let row = 0; row < n * c; row++) {
      const i = Math.floor(row / c), j = row % c;
      const sample = rows.slice(i * c, (i + 1) * c), channel = rows.filter((_, q) => q % c === j);
      const second = (g: typeof rows) =>
        g.reduce((a, s) => a + s.variance + s.mean ** 2, 0) / g.length -
        (g.reduce((a, s) => a + s.mean, 0) / g.length) ** 2;
      const variance = (rows[row].variance + second(sample) + second(channel)) / 3;
      rows[row].v.forEach((xi, q) => {
        want[row * m + q] = (xi - rows[row].mean) / Math.sqrt(variance + 1e-5) * weight[j] +
          bias[j];
      });
    }
    assertClose(y, want, { atol: 1e-5, rtol: 1e-5, why: "float32 output, |xhat| < 4" }, "y");
    // Fixed: the mean logits get no gradient, and step() does not hand them to the optimiser.
    sn.zeroGrad();
    await sn.backward(Float32Array.from(x, () => r()));
    assert.deepEqual([...sn.grads.mean_weight], [0, 0, 0]);
    assert.ok(sn.grads.var_weight.some((g) => g !== 0), "the var mixing still learns");
    const stepped: string[] = [];
    sn.step((_param, _grad, name) => stepped.push(name));
    assert.deepEqual(stepped, ["weight", "bias", "var_weight"]);
  },
);

await testEachBackend(
  "a fixed Sparse SN mixing's weights are its logits, any weights summing to 1 (SSN2d)",
  async (backend) => {
    const r = random(6);
    const x = Float32Array.from({ length: 2 * 3 * 5 }, () => 2 * r());
    const run = async (state: Record<string, unknown>) => {
      const sn = new SwitchNorm2d(3, { backend, sparse: true });
      sn.loadStateDict({ ...sn.stateDict(), ...state });
      return { y: await sn.forward(x, [2, 3, 1, 5]), sn };
    };
    // A fixed mixing with logits [0, 0.25, 0.75] mixes with exactly those weights...
    const fixed = await run({ mean_weight: [0, 0.25, 0.75], mean_fixed: [1], radius: [0.9] });
    assert.deepEqual([...fixed.sn.meanImportance], [0, 0.25, 0.75]);
    // ...the same numbers an SN layer (softmax) gets from logits log(w) gives.
    const softmaxLayer = new SwitchNorm2d(3, { backend });
    const logw = [-1e4, Math.log(0.25), Math.log(0.75)];
    softmaxLayer.loadStateDict({ ...softmaxLayer.stateDict(), mean_weight: logw });
    softmaxLayer.loadStateDict({ ...softmaxLayer.stateDict(), var_weight: [-1e4, -1e4, 0] });
    const varFixed = await run({
      mean_weight: [0, 0.25, 0.75],
      mean_fixed: [1],
      var_weight: [0, 0, 1],
      var_fixed: [1],
    });
    assertClose(
      varFixed.y,
      await softmaxLayer.forward(x, [2, 3, 1, 5]),
      { atol: 1e-5, rtol: 1e-5, why: "float32 outputs of the same mixing (softmax exact to 1e-8)" },
      "y",
    );
    // Not fixed: the same logits go through sparsestmax.
    const mapped = await run({ mean_weight: [0, 0.25, 0.75], radius: [0.9] });
    assert.deepEqual([...mapped.sn.meanImportance], [0, 0, 1]);
  },
);

Deno.test("a sparse layer's state dict has SSN2d's keys, and an SSN2d checkpoint loads as-is", () => {
  const sn = new SwitchNorm2d(2, { sparse: true });
  assert.deepEqual(Object.keys(sn.stateDict()), [
    "weight",
    "bias",
    "mean_weight",
    "var_weight",
    "running_mean",
    "running_var",
    "mean_fixed",
    "var_fixed",
    "radius",
  ]);
  assert.deepEqual(Object.keys(new SwitchNorm2d(2).stateDict()), [
    "weight",
    "bias",
    "mean_weight",
    "var_weight",
    "running_mean",
    "running_var",
  ], "a non-sparse layer keeps SN's keys");
  // SSN2d(2).state_dict() after set_rad(0.5) and a freeze of the var mixing, as tolist() gives it.
  sn.loadStateDict({
    weight: [[[[1.5]], [[0.5]]]],
    bias: [[[[0.1]], [[-0.1]]]],
    mean_weight: [0.3, 0.2, 0.1],
    var_weight: [0, 1, 0],
    running_mean: [[[0.5], [1.5]]],
    running_var: [[[2], [3]]],
    mean_fixed: [0],
    var_fixed: [1],
    radius: [0.5],
  });
  assert.equal(sn.radius, 0.5);
  assert.deepEqual(sn.frozenTo, { var: 1 });
  const dict = sn.stateDict();
  assert.deepEqual([dict.mean_fixed![0], dict.var_fixed![0], dict.radius![0]], [0, 1, 0.5]);
});

Deno.test("a bad Sparse SN state-dict entry throws naming it and changes nothing", () => {
  const sn = new SwitchNorm2d(2, { sparse: true });
  sn.radius = 0.25;
  const before = sn.stateDict();
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ mean_fixed: [2] }, /"mean_fixed" must be 0 or 1, got 2/],
    [{ var_fixed: [0.5] }, /"var_fixed" must be 0 or 1, got 0.5/],
    [{ radius: [1.5] }, /"radius" must be in \[0, 1\], got 1.5/],
    [{ radius: [0.5, 0.5] }, /"radius" has shape \[2\], expected \[1\]/],
    [{ radius: undefined }, /missing key "radius"/],
    // A fixed mixing's logits are its weights: in [0, 1], summing to 1 (attack helper-62:
    // WebGPU's y was -0.97 where the reference's is 0.03 for [0.3, 0.1, -0.2]).
    [{ mean_fixed: [1], mean_weight: [0.3, 0.1, -0.2] }, /"mean_weight" of a fixed mixing/],
    [{ mean_fixed: [1], mean_weight: [1.001, 0, 0] }, /must lie in \[0, 1\] and sum to 1/],
    [{ var_fixed: [1], var_weight: [0.6, 0.6, 0.6] }, /"var_weight" of a fixed mixing/],
  ];
  for (const [change, message] of bad) {
    assert.throws(
      () => sn.loadStateDict({ ...before, mean_weight: [5, 0, 0], ...change }),
      message,
    );
    assert.deepEqual(sn.stateDict(), before);
    assert.equal(sn.radius, 0.25);
  }
  // Logits loaded alone onto a mixing fixed before: checked the same way.
  sn.loadStateDict({ ...before, mean_weight: [0, 1, 0], mean_fixed: [1] });
  const fixedBefore = sn.stateDict();
  assert.throws(
    () => sn.loadStateDict({ mean_weight: [0.5, 0.25, 0.3] }, { strict: false }),
    /"mean_weight" of a fixed mixing \("mean_fixed" 1\)/,
  );
  assert.deepEqual(sn.stateDict(), fixedBefore);
  assert.throws(
    () => new SwitchNorm2d(2).loadStateDict({ ...new SwitchNorm2d(2).stateDict(), radius: [0] }),
    /unexpected key "radius"/,
    "a non-sparse layer has no radius",
  );
});

Deno.test("a sparse SwitchNorm2d defaults to SSN2d's momentum 0.997", () => {
  assert.equal(new SwitchNorm2d(2, { sparse: true }).momentum, 0.997);
  assert.equal(new SwitchNorm2d(2).momentum, 0.9);
  assert.equal(new SwitchNorm2d(2, { sparse: true, momentum: 0.5 }).momentum, 0.5);
});

Deno.test("Sparse SN weights of huge equal logits are uniform (sparsemax on shifted logits)", () => {
  const sn = new SwitchNorm2d(2, { sparse: true });
  sn.loadStateDict({ ...sn.stateDict(), mean_weight: [1e15, 1e15, 1e15], radius: [0.5] });
  assert.deepEqual([...sn.meanImportance], [1 / 3, 1 / 3, 1 / 3]);
});

Deno.test("radius needs the sparse option and a value in [0, 1]", () => {
  assert.throws(() => (new SwitchNorm2d(2).radius = 0.5), /radius needs the sparse option/);
  const sn = new SwitchNorm2d(2, { sparse: true });
  assert.throws(() => (sn.radius = 1.5), /radius must be in \[0, 1\]/);
  assert.throws(() => (sn.radius = NaN), /radius must be a finite number/);
});
