/**
 * The layer API: options, state dicts, modes, the batch-average workflow, and bad input, which
 * must throw an error naming the problem and leave the layer unchanged.
 */
import assert from "node:assert/strict";
import { assertSameRecords, assertSameValues } from "./_close.ts";
import { type SwitchNorm, SwitchNorm1d, SwitchNorm2d, SwitchNorm3d } from "../mod.ts";
import { chooseBackend, currentEnvironment } from "../backends/select.ts";
import { testEachBackend } from "./_backends.ts";
import { seededRandom as rng } from "../examples/_data.ts";

function randomState(c: number, k: number, seed = 1) {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;
  const arr = (n: number, f: () => number) => Float32Array.from({ length: n }, f);
  return {
    weight: arr(c, () => 1 + rand()),
    bias: arr(c, rand),
    mean_weight: arr(k, rand),
    var_weight: arr(k, rand),
    running_mean: arr(c, rand),
    running_var: arr(c, () => 1 + rand()),
  };
}

function snapshot(layer: SwitchNorm) {
  return { state: layer.stateDict(), training: layer.training, k: layer.batchesAccumulated };
}

/** Asserts that `fn` throws/rejects with a message matching `pattern` and leaves `layer` as it was. */
async function assertRejectsUnchanged(
  layer: SwitchNorm,
  fn: () => unknown,
  pattern: RegExp,
): Promise<void> {
  const before = snapshot(layer);
  await assert.rejects(async () => await fn(), pattern);
  const after = snapshot(layer);
  assertSameRecords(after.state, before.state, "state dict after the refused call");
  assert.deepEqual([after.training, after.k], [before.training, before.k]);
}

Deno.test("layers start in the reference's initial state", () => {
  const sn = new SwitchNorm2d(3);
  assert.deepEqual([...sn.weight], [1, 1, 1]);
  assert.deepEqual([...sn.bias], [0, 0, 0]);
  assert.deepEqual([...sn.mean_weight], [1, 1, 1]);
  assert.deepEqual([...sn.running_var], [0, 0, 0]);
  assert.equal(sn.momentum, 0.9);
  assert.equal(sn.eps, 1e-5);
  assert.equal(sn.training, true);
  assert.deepEqual([...new SwitchNorm2d(2, { lastGamma: true }).weight], [0, 0]);
  assert.deepEqual([...new SwitchNorm2d(2, { usingBN: false }).mean_weight], [1, 1]);
  assert.equal("running_mean" in new SwitchNorm2d(2, { usingBN: false }).stateDict(), false);
  assert.equal(new SwitchNorm1d(2).momentum, 0.997);
  assert.equal(new SwitchNorm3d(2).momentum, 0.997);
  assert.equal(new SwitchNorm1d(2).mean_weight.length, 2);
});

Deno.test("train() and eval() switch modes and return the layer", () => {
  const sn = new SwitchNorm2d(1);
  assert.equal(sn.eval(), sn);
  assert.equal(sn.training, false);
  assert.equal(sn.train(), sn);
  assert.equal(sn.training, true);
  sn.train(false);
  assert.equal(sn.training, false);
});

Deno.test("constructor options that are out of range or unknown throw errors naming them", () => {
  assert.throws(() => new SwitchNorm2d(0), /numFeatures must be a positive integer, got 0/);
  assert.throws(() => new SwitchNorm2d(2.5), /numFeatures/);
  assert.throws(() => new SwitchNorm2d(2, { eps: NaN }), /eps must be a finite number/);
  assert.throws(() => new SwitchNorm2d(2, { eps: Infinity }), /eps must be a finite number/);
  assert.throws(() => new SwitchNorm2d(2, { eps: -1e-5 }), /eps must be in \[0, Infinity\]/);
  assert.throws(() => new SwitchNorm2d(2, { momentum: 1.5 }), /momentum must be in \[0, 1\]/);
  assert.throws(() => new SwitchNorm1d(2, { momentum: -Infinity }), /momentum must be a finite/);
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => new SwitchNorm2d(2, { usingBN: "yes" as any }),
    /usingBN must be a boolean/,
  );
  // deno-lint-ignore no-explicit-any
  assert.throws(() => new SwitchNorm2d(2, { epsilon: 1 } as any), /unknown option "epsilon"/);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => new SwitchNorm1d(2, { usingBN: false } as any), /unknown option "usingBN"/);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => new SwitchNorm2d(2, { backend: "cuda" as any }), /unknown backend "cuda"/);
});

Deno.test("loadStateDict accepts flat arrays, the reference's shapes and {data, shape}", () => {
  const s = randomState(2, 3);
  const nested = {
    weight: [[[[s.weight[0]]], [[s.weight[1]]]]], // [1, 2, 1, 1]
    bias: { data: s.bias, shape: [1, 2, 1, 1] },
    mean_weight: Array.from(s.mean_weight),
    var_weight: s.var_weight,
    running_mean: [[[s.running_mean[0]], [s.running_mean[1]]]], // [1, 2, 1]
    running_var: { data: Array.from(s.running_var), shape: [2] },
  };
  const sn = new SwitchNorm2d(2);
  sn.loadStateDict(nested);
  assertSameRecords(sn.stateDict(), s, "state dict");
  const sn1 = new SwitchNorm1d(2);
  sn1.loadStateDict({
    weight: [Array.from(s.weight)], // [1, 2]
    bias: s.bias,
    mean_weight: s.mean_weight.subarray(0, 2),
    var_weight: s.var_weight.subarray(0, 2),
    running_mean: [Array.from(s.running_mean)],
    running_var: s.running_var,
  });
  assertSameValues(sn1.weight, s.weight, "SwitchNorm1d weight");
  const sn3 = new SwitchNorm3d(2);
  sn3.loadStateDict({ ...s, weight: { data: s.weight, shape: [1, 2, 1, 1, 1] } });
  assertSameValues(sn3.weight, s.weight, "SwitchNorm3d weight");
});

Deno.test("loadStateDict rejects missing, extra, misshapen and non-finite keys by name and changes nothing", async () => {
  const sn = new SwitchNorm2d(2);
  sn.loadStateDict(randomState(2, 3));
  const good = randomState(2, 3, 7);
  const { running_var: _, ...missing } = good;
  await assertRejectsUnchanged(sn, () => sn.loadStateDict(missing), /missing key "running_var"/);
  await assertRejectsUnchanged(
    sn,
    () => sn.loadStateDict({ ...good, num_batches_tracked: [0] }),
    /unexpected key "num_batches_tracked"/,
  );
  await assertRejectsUnchanged(
    sn,
    () => sn.loadStateDict({ ...good, weight: new Float32Array(3) }),
    /"weight" has shape \[3\], expected \[2\] or \[1, 2, 1, 1\]/,
  );
  await assertRejectsUnchanged(
    sn,
    () => sn.loadStateDict({ ...good, mean_weight: [1, 1] }),
    /"mean_weight" has shape \[2\], expected \[3\]/,
  );
  await assertRejectsUnchanged(
    sn,
    () => sn.loadStateDict({ ...good, running_mean: [[1, 2]] }),
    /"running_mean" has shape \[1, 2\]/,
  );
  await assertRejectsUnchanged(
    sn,
    () => sn.loadStateDict({ ...good, bias: [0, NaN] }),
    /"bias"\[1\] is NaN; values must be finite/,
  );
  await assertRejectsUnchanged(
    sn,
    () => sn.loadStateDict({ ...good, running_var: new Float32Array([1, -Infinity]) }),
    /"running_var"\[1\] is -Infinity; a variance must not be negative/,
  );
  await assertRejectsUnchanged(
    sn,
    () => sn.loadStateDict({ ...good, var_weight: [0, -Infinity, 0] }),
    /"var_weight"\[1\] is -Infinity; values must be finite/,
  );
  await assertRejectsUnchanged(
    sn,
    () => sn.loadStateDict({ ...good, weight: [[1], [2, 3]] }),
    /"weight" is a ragged nested array/,
  );
  await assertRejectsUnchanged(
    sn,
    () => sn.loadStateDict({ ...good, weight: "1,2" }),
    /"weight" must be an array/,
  );
  const noBN = new SwitchNorm2d(2, { usingBN: false });
  await assertRejectsUnchanged(
    noBN,
    () => noBN.loadStateDict(good),
    /unexpected key "mean_weight"|unexpected key "running_mean"|"mean_weight" has shape \[3\]/,
  );
});

await testEachBackend(
  "bad forward input throws an error naming the problem and changes nothing",
  async (backend) => {
    const sn = new SwitchNorm2d(3, { backend });
    sn.loadStateDict(randomState(3, 3));
    const x = new Float32Array(2 * 3 * 4);
    await assertRejectsUnchanged(
      sn,
      () => sn.forward(x, [2, 3, 4]),
      /expected a rank-4 input \[N, C, H, W\], got rank 3/,
    );
    await assertRejectsUnchanged(
      sn,
      () => sn.forward(x, [2, 3, 2, 3]),
      /data length 24 does not match shape \[2, 3, 2, 3\] \(36 elements\)/,
    );
    await assertRejectsUnchanged(
      sn,
      () => sn.forward(x, [2, 4, 1, 3]),
      /channel count mismatch: shape\[1\] is 4 but the layer has 3 features/,
    );
    await assertRejectsUnchanged(
      sn,
      () => sn.forward(new Float32Array(0), [0, 3, 2, 2]),
      /zero-size dimension 0/,
    );
    await assertRejectsUnchanged(
      sn,
      () => sn.forward(x, [2, 3, 2, -2]),
      /shape\[3\] must be a positive integer, got -2/,
    );
    await assertRejectsUnchanged(
      sn,
      // deno-lint-ignore no-explicit-any
      () => sn.forward(new Float64Array(24) as any, [2, 3, 2, 2]),
      /x must be a Float32Array \(dtype float32\), got Float64Array/,
    );
    await assertRejectsUnchanged(
      sn,
      // deno-lint-ignore no-explicit-any
      () => sn.forward(x, undefined as any),
      /shape must be an array/,
    );
    await assertRejectsUnchanged(
      sn,
      () => sn.forward(x, [2, 3, 2, 2], { out: new Float32Array(5) }),
      /out must be the same kind as x with 24 elements, got a Float32Array of 5 elements/,
    );
    // The wrong length is a RangeError, as dy's is; the wrong kind a TypeError.
    await assert.rejects(
      () => sn.forward(x, [2, 3, 2, 2], { out: new Float32Array(5) }),
      RangeError,
    );
    await assert.rejects(
      // deno-lint-ignore no-explicit-any
      () => sn.forward(x, [2, 3, 2, 2], { out: new Float64Array(24) as any }),
      TypeError,
    );
    const s1 = new SwitchNorm1d(3, { backend });
    await assertRejectsUnchanged(
      s1,
      () => s1.forward(new Float32Array(6), [2, 3, 1]),
      /rank-2 input \[N, C\]/,
    );
  },
);

await testEachBackend("NaN and Inf in the input propagate without throwing", async (backend) => {
  const sn = new SwitchNorm2d(2, { backend }).eval();
  sn.loadStateDict(randomState(2, 3));
  const x = Float32Array.from({ length: 3 * 2 * 4 }, (_, i) => Math.cos(i));
  x[1] = NaN; // sample 0, channel 0
  x[2 * 4 * 2 - 1] = Infinity; // sample 1, channel 1
  const y = await sn.forward(x, [3, 2, 2, 2]);
  // In evaluation mode BN uses the buffers, so only samples 0 and 1 (via IN and LN) are spoiled.
  assert.ok(y.subarray(0, 16).every(Number.isNaN));
  assert.ok(y.subarray(16).every(Number.isFinite));
});

await testEachBackend(
  "a single element per (n, c) gives NaN, as the reference's unbiased variance does",
  async (backend) => {
    const sn = new SwitchNorm2d(2, { backend });
    const y = await sn.forward(new Float32Array([1, 2, 3, 4]), [2, 2, 1, 1]);
    assert.ok(y.every(Number.isNaN));
    assert.ok(sn.running_var.every(Number.isNaN));
    assert.ok(sn.running_mean.every(Number.isFinite));
    const s1 = new SwitchNorm1d(2, { backend });
    const y1 = await s1.forward(new Float32Array([1, 2]), [1, 2]); // N = 1 in training
    assert.ok(y1.every(Number.isNaN));
  },
);

await testEachBackend("evaluation mode leaves the running buffers unchanged", async (backend) => {
  const sn = new SwitchNorm2d(2, { backend }).eval();
  const s = randomState(2, 3);
  sn.loadStateDict(s);
  await sn.forward(Float32Array.from({ length: 16 }, Math.sqrt), [2, 2, 2, 2]);
  assertSameRecords(sn.stateDict(), s, "state dict");
});

await testEachBackend(
  "the batch-average workflow gives the mean of the batch statistics",
  async (backend) => {
    const sn = new SwitchNorm2d(2, { backend, usingMovingAverage: false });
    sn.loadStateDict(randomState(2, 3));
    sn.resetRunningStats();
    assert.throws(() => sn.finalizeBatchAverage(), /no training batches accumulated/);
    // Two batches whose channels are constant within a sample: the BN mean of a batch is the mean
    // of its values per channel and, with var_in = 0, the BN variance is their spread.
    const b1 = new Float32Array([1, 1, 10, 10, 3, 3, 30, 30]); // [2, 2, 1, 2]
    const b2 = new Float32Array([5, 5, 20, 20, 5, 5, 40, 40]);
    await sn.forward(b1, [2, 2, 1, 2]);
    await sn.forward(b2, [2, 2, 1, 2]);
    assert.equal(sn.batchesAccumulated, 2);
    sn.finalizeBatchAverage();
    assert.equal(sn.batchesAccumulated, 0);
    // Channel 0: batch means 2 and 5, batch variances 1 and 0: mean 3.5, E[mu^2 + var] - 3.5^2.
    const m0 = (2 + 5) / 2, v0 = (2 * 2 + 1 + 5 * 5 + 0) / 2 - m0 * m0;
    const m1 = (20 + 30) / 2, v1 = (20 * 20 + 100 + 30 * 30 + 100) / 2 - m1 * m1;
    assert.deepEqual([...sn.running_mean], [m0, m1]);
    assert.deepEqual([...sn.running_var], [v0, v1]);
  },
);

await testEachBackend(
  "a batch average whose variance rounds below 0 (a constant channel at 5e5) finalizes to 0, and evaluation and a reload work",
  async (backend) => {
    // sum_sq / K - mean^2 from float32 sums: float32 holds 2.5e11 in steps of 16384, so a
    // constant channel's variance comes out as that rounding, of either sign. Before: -1024,
    // then y NaN in evaluation and loadStateDict refusing the layer's own state.
    const sn = new SwitchNorm2d(2, { backend, usingMovingAverage: false });
    sn.resetRunningStats();
    const shape = [2, 2, 1, 3];
    // One batch: channel 0 constant at 5e5, whose square float32 rounds down by 1024.
    const a = 500000, b = 3;
    await sn.forward(new Float32Array([a, a, a, b, b + 1, b + 2, a, a, a, b + 2, b, b + 1]), shape);
    sn.finalizeBatchAverage();
    assert.equal(sn.running_var[0], 0, `running_var[0] = ${sn.running_var[0]}`);
    assert.ok(sn.running_var[1] > 0);
    const y = await sn.eval().forward(new Float32Array(12).fill(500000), shape);
    assert.ok(y.every(Number.isFinite), "evaluation is finite");
    const copy = new SwitchNorm2d(2, { backend, usingMovingAverage: false });
    copy.loadStateDict(sn.stateDict());
    assert.deepEqual([...copy.running_var], [...sn.running_var]);
  },
);

Deno.test("finalizeBatchAverage refuses layers that do not accumulate", () => {
  assert.throws(
    () => new SwitchNorm2d(2).finalizeBatchAverage(),
    /needs usingMovingAverage: false/,
  );
  assert.throws(
    () => new SwitchNorm2d(2, { usingBN: false, usingMovingAverage: false }).finalizeBatchAverage(),
    /no running buffers/,
  );
});

await testEachBackend("forward writes into out when given one", async (backend) => {
  const sn = new SwitchNorm1d(3, { backend });
  const x = new Float32Array([1, 2, 4, 8, 16, 32]);
  const out = new Float32Array(6).fill(NaN);
  const y = await sn.eval().forward(x, [2, 3], { out });
  assert.equal(y, out);
  assertSameValues(y, await sn.forward(x, [2, 3]), "y");
});

await testEachBackend(
  "a forward after step() equals a fresh layer loaded with the stepped parameters",
  async (backend) => {
    // step() changes the parameters in place: the layer must drop whatever it derived from the
    // old values (the importance weights, the backend's copy of gamma and beta) before the next
    // forward. Steps this large move the logits by ~1, far beyond any rounding.
    const shape = [4, 3, 2, 5];
    const r = rng(21);
    const x = Float32Array.from({ length: 120 }, () => 4 * r() - 1);
    const dy = Float32Array.from({ length: 120 }, () => 2 * r() - 1);
    const sn = new SwitchNorm2d(3, { backend });
    sn.loadStateDict(randomState(3, 3, 5));
    await sn.forward(x, shape);
    await sn.backward(dy);
    sn.step((param, grad) => param.forEach((_, i) => param[i] -= 40 * grad[i]));
    const stepped = sn.stateDict();
    const fresh = new SwitchNorm2d(3, { backend });
    fresh.loadStateDict({ ...stepped });
    const start = randomState(3, 3, 5).mean_weight;
    const moved = Math.max(...stepped.mean_weight.map((v, i) => Math.abs(v - start[i])));
    assert.ok(moved > 0.1, `the step moved the mean logits by only ${moved}`);
    assertSameValues(await sn.forward(x, shape), await fresh.forward(x, shape), "training y");
    sn.eval(), fresh.eval();
    assertSameValues(await sn.forward(x, shape), await fresh.forward(x, shape), "evaluation y");
    sn.dispose(), fresh.dispose();
  },
);

await testEachBackend(
  "backward adds into grads: two backward calls give twice one call's gradients",
  async (backend) => {
    const shape = [2, 3, 2, 2];
    const r = rng(23);
    const x = Float32Array.from({ length: 24 }, () => 2 * r() - 1);
    const dy = Float32Array.from({ length: 24 }, () => 2 * r() - 1);
    const sn = new SwitchNorm2d(3, { backend });
    sn.loadStateDict(randomState(3, 3, 7));
    await sn.forward(x, shape);
    await sn.backward(dy);
    const once = structuredClone(sn.grads);
    assert.ok(once.weight.some((g) => g !== 0) && once.mean_weight.some((g) => g !== 0));
    await sn.forward(x, shape); // the same x again: in training mode y ignores the running buffers
    await sn.backward(dy);
    // f32(g) + g rounds to exactly 2 f32(g): the error of f32(g) is below a quarter ulp of 2g.
    for (const name of Object.keys(once) as (keyof typeof once)[]) {
      assertSameValues(sn.grads[name], once[name].map((v) => 2 * v), name);
    }
    sn.zeroGrad();
    for (const [name, g] of Object.entries(sn.grads)) {
      assert.ok(g.every((v: number) => v === 0), `${name} after zeroGrad`);
    }
    sn.dispose();
  },
);

await testEachBackend("layers record which backend ran them and why", async (backend) => {
  const sn = new SwitchNorm1d(2, { backend });
  const info = () => sn.backendInfo; // a call, so that TypeScript does not narrow it to undefined
  assert.equal(info(), undefined);
  await sn.forward(new Float32Array([1, 2, 3, 5]), [2, 2]);
  assert.equal(info()?.backend, backend);
  assert.match(info()!.reason, new RegExp(`requested: ${backend}`));
});

/** This process as it would be without WebAssembly SIMD. */
const NO_SIMD = { ...(await currentEnvironment()), wasmSimd: false };

Deno.test("auto falls back to the reference backend where WebAssembly SIMD is missing, and says why", async () => {
  const warn = console.warn;
  const said: string[] = [];
  console.warn = (m: string) => said.push(m);
  try {
    const choice = await chooseBackend("auto", NO_SIMD);
    assert.equal(choice.backend.name, "reference");
    assert.match(choice.reason, /WebAssembly SIMD is not available/);
  } finally {
    console.warn = warn;
  }
  // The warning is said once per process, so an earlier test may have said it already.
  assert.ok(said.every((m) => /fell back to reference/.test(m)));
  await assert.rejects(() => chooseBackend("wasm", NO_SIMD), /needs WebAssembly SIMD/);
});
