/**
 * Sparse SN: sparsestmax importance weights with a radius schedule, and layers frozen to one
 * normalizer.
 */
import assert from "node:assert/strict";
import { SwitchNorm2d } from "../mod.ts";
import { assertClose, assertSameValues } from "./_close.ts";
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
  "a Sparse SN layer frozen to IN computes exactly instance normalization",
  async (backend) => {
    const r = random(4);
    const [n, c, m] = [3, 2, 7];
    const sn = new SwitchNorm2d(c, { backend, sparse: true });
    const weight = [1.5, 0.5], bias = [0.25, -1];
    sn.loadStateDict({
      ...sn.stateDict(),
      weight,
      bias,
      mean_weight: [3, 0, 0],
      var_weight: [2, 1, 0],
    });
    sn.radius = 1;
    assert.deepEqual(sn.frozenTo, { mean: 0, var: 0 });
    const x = Float32Array.from({ length: n * c * m }, () => 3 * r());
    const y = await sn.forward(x, [n, c, 1, m]);
    // Instance norm, written out: per (n, c) mean and unbiased variance.
    const want = new Float64Array(x.length);
    for (let row = 0; row < n * c; row++) {
      const v = x.subarray(row * m, (row + 1) * m);
      const mean = v.reduce((a, b) => a + b, 0) / m;
      const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / (m - 1);
      const j = row % c;
      v.forEach((xi, i) => {
        want[row * m + i] = (xi - mean) / Math.sqrt(variance + 1e-5) * weight[j] + bias[j];
      });
    }
    assertClose(y, want, { atol: 1e-6, rtol: 1e-6, why: "float32 output" }, "y");
    // Frozen: the logits no longer matter and get no gradient.
    sn.zeroGrad();
    await sn.backward(Float32Array.from(x, () => r()));
    assert.deepEqual([...sn.grads.mean_weight], [0, 0, 0]);
    sn.loadStateDict({ ...sn.stateDict(), mean_weight: [0, 0, 9], var_weight: [0, 9, 0] });
    assertSameValues(await sn.forward(x, [n, c, 1, m]), y, "y once frozen");
  },
);

Deno.test("radius needs the sparse option and a value in [0, 1]", () => {
  assert.throws(() => (new SwitchNorm2d(2).radius = 0.5), /radius needs the sparse option/);
  const sn = new SwitchNorm2d(2, { sparse: true });
  assert.throws(() => (sn.radius = 1.5), /radius must be in \[0, 1\]/);
  assert.throws(() => (sn.radius = NaN), /radius must be a finite number/);
});
