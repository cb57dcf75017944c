/**
 * Misuse a newcomer hits: an evaluation forward, or a stateDict(), on a batch average that was
 * never finalized (the running buffers still hold sums), and messages that print a string as if it were a number
 * (`got 64` for "64"). Each must fail loudly, say what to do, and change nothing.
 */
import assert from "node:assert/strict";
import {
  readSafetensors,
  SwitchNorm,
  SwitchNorm1d,
  SwitchNorm2d,
  SwitchNorm3d,
  writeSafetensors,
} from "../mod.ts";
import { describeShape, describeValue } from "../_validate.ts";
import { testEachBackend } from "./_backends.ts";
import { assertClose } from "./_close.ts";

const SHAPE = [2, 2, 1, 2];
const B1 = new Float32Array([1, 1, 10, 10, 3, 3, 30, 30]);
const B2 = new Float32Array([5, 5, 20, 20, 5, 5, 40, 40]);

await testEachBackend(
  "an evaluation forward on a batch average that was not finalized throws, says what to do and changes nothing",
  async (backend) => {
    const sn = new SwitchNorm2d(2, { backend, usingMovingAverage: false });
    sn.resetRunningStats();
    await sn.forward(B1, SHAPE);
    await sn.forward(B2, SHAPE);
    // (stateDict() refuses the sums: below.)
    const state =
      () => [sn.weight, sn.bias, sn.mean_weight, sn.var_weight, sn.running_mean, sn.running_var];
    const before = state();
    sn.eval();
    await assert.rejects(
      () => sn.forward(B1, SHAPE),
      /evaluation mode, but 2 training batches were accumulated for the batch average and not finalized .*call finalizeBatchAverage\(\) first, or resetRunningStats\(\) to discard them/,
    );
    assert.deepEqual(state(), before);
    assert.equal(sn.batchesAccumulated, 2);
    // eval() before finalizeBatchAverage() is a valid order: only the forward is refused.
    sn.finalizeBatchAverage();
    const y = await sn.forward(B1, SHAPE);
    assert.ok(y.every(Number.isFinite));
    // Channel 0: the batch means 2 and 5 average to 3.5.
    assert.equal(sn.running_mean[0], 3.5);
  },
);

await testEachBackend(
  "stateDict() of a batch average that was not finalized throws, says what to do and changes nothing",
  async (backend) => {
    // Its running buffers hold sums, which loadStateDict takes as statistics: a checkpoint of 3
    // batches evaluated without an error on values 3x too large (realistic-use helper-89).
    const sn = new SwitchNorm2d(2, { backend, usingMovingAverage: false });
    sn.resetRunningStats();
    await sn.forward(B1, SHAPE);
    await sn.forward(B2, SHAPE);
    const sums = [sn.running_mean, sn.running_var];
    for (const save of [() => sn.stateDict(), () => sn.stateDict({ shapes: "pytorch" })]) {
      assert.throws(
        save,
        /stateDict: 2 training batches were accumulated for the batch average and not finalized .*call finalizeBatchAverage\(\) first, or resetRunningStats\(\) to discard them/,
      );
    }
    assert.deepEqual([sn.running_mean, sn.running_var], sums);
    assert.equal(sn.batchesAccumulated, 2);
    // Finalized, the checkpoint holds statistics and evaluates as the layer does.
    sn.finalizeBatchAverage();
    const copy = new SwitchNorm2d(2, { backend, usingMovingAverage: false });
    copy.loadStateDict(sn.stateDict());
    assert.equal(copy.running_mean[0], 3.5);
    assert.deepEqual(await copy.eval().forward(B1, SHAPE), await sn.eval().forward(B1, SHAPE));
  },
);

// B1's batch statistics, per channel: mean 2 and 20, (biased) variance 1 and 100.
const B1_MEAN = [2, 20], B1_VAR = [1, 100];
// Small integers: every backend's float32 statistics are exact but for rounding of 1 / count.
const EXACT = { atol: 1e-6, rtol: 1e-6, why: "float32 statistics of small integers" };

/** A one-replica SyncSN group whose allGather answers malformed while `broken.now`. */
function breakableGroup(broken: { now: boolean }) {
  return {
    size: 1,
    allGather: (v: Float64Array) => Promise.resolve([broken.now ? new Float64Array(1) : v]),
  };
}

await testEachBackend(
  "a batch-average training forward after finalizeBatchAverage() begins a new average instead of adding sums onto the statistics",
  async (backend) => {
    const sn = new SwitchNorm2d(2, { backend, usingMovingAverage: false });
    sn.resetRunningStats();
    await sn.forward(B1, SHAPE);
    await sn.forward(B2, SHAPE);
    sn.finalizeBatchAverage();
    assert.throws(() => sn.finalizeBatchAverage(), /already hold statistics/);
    // Adding B1's sums onto the statistics would make the next finalize divide a mix by K = 1
    // (running_mean 3.5 + 2 = 5.5): the new average is B1's alone.
    await sn.forward(B1, SHAPE);
    assert.equal(sn.batchesAccumulated, 1);
    sn.finalizeBatchAverage();
    assertClose(sn.running_mean, B1_MEAN, EXACT, `${backend} running_mean`);
    assertClose(sn.running_var, B1_VAR, EXACT, `${backend} running_var`);
    if (backend === "reference") return; // keeps no resident tensors
    // On a resident tensor the buffers are updated in the backend's memory: the zeros the new
    // average begins with must reach it.
    using x = await sn.upload(B1, SHAPE);
    (await sn.forward(x)).dispose();
    await sn.sync();
    sn.finalizeBatchAverage();
    assertClose(sn.running_mean, B1_MEAN, EXACT, `${backend} resident running_mean`);
    assertClose(sn.running_var, B1_VAR, EXACT, `${backend} resident running_var`);
  },
);

await testEachBackend(
  "a batch-average training forward after loadStateDict begins a new average; one that fails puts the statistics back",
  async (backend) => {
    const broken = { now: false };
    const sync = backend === "webgpu" ? undefined : breakableGroup(broken);
    const sn = new SwitchNorm2d(2, { backend, usingMovingAverage: false, sync });
    sn.loadStateDict({ ...sn.stateDict(), running_mean: [1, 2], running_var: [3, 4] });
    const loaded = sn.stateDict();
    if (sync) {
      // A forward that fails after the new average began changes nothing.
      broken.now = true;
      await assert.rejects(() => sn.forward(B1, SHAPE), /wrong length/);
      broken.now = false;
      assert.deepEqual(sn.stateDict(), loaded);
      assert.equal(sn.batchesAccumulated, 0);
      await sn.eval().forward(B1, SHAPE); // still statistics
      sn.train();
    }
    await sn.forward(B1, SHAPE);
    assert.equal(sn.batchesAccumulated, 1);
    sn.finalizeBatchAverage();
    assertClose(sn.running_mean, B1_MEAN, EXACT, `${backend} running_mean`);
    assertClose(sn.running_var, B1_VAR, EXACT, `${backend} running_var`);
    // A subset without running buffers leaves a batch average in progress as it is.
    sn.resetRunningStats();
    await sn.forward(B1, SHAPE);
    sn.loadStateDict({ weight: [2, 2] }, { strict: false });
    await sn.forward(B1, SHAPE);
    assert.equal(sn.batchesAccumulated, 2);
  },
);

await testEachBackend(
  "a backward whose dy is not of its forward's x's kind names both kinds, and one of another length both lengths",
  async (backend) => {
    // The message said "dy must be the same kind as the forward's x, with 8 elements, got 8"
    // for a Float32Array dy after a resident forward (realistic-use helper-83).
    const sn = new SwitchNorm2d(2, { backend });
    await sn.forward(B1, SHAPE);
    await assert.rejects(
      () => sn.backward(new Float32Array(6)),
      /dy must have the forward's x's 8 elements, got 6/,
    );
    // The reference backend keeps no resident tensors.
    if (backend === "reference") return sn.dispose();
    const xt = await sn.upload(B1, SHAPE);
    const yt = await sn.forward(xt);
    await assert.rejects(
      () => sn.backward(B2),
      (e: Error) =>
        e instanceof RangeError &&
        /dy must be of the forward's x's kind, a resident tensor \(layer.upload\), got a Float32Array/
          .test(e.message),
    );
    await sn.forward(B1, SHAPE);
    const dyt = await sn.upload(B2, SHAPE);
    await assert.rejects(
      () => sn.backward(dyt),
      /dy must be of the forward's x's kind, a Float32Array, got a resident tensor/,
    );
    for (const t of [xt, yt, dyt]) t.dispose();
    sn.dispose();
  },
);

Deno.test("an evaluation forward after resetRunningStats() with nothing accumulated is allowed", async () => {
  const sn = new SwitchNorm2d(2, { backend: "reference", usingMovingAverage: false });
  await sn.forward(B1, SHAPE);
  sn.resetRunningStats();
  await sn.eval().forward(B1, SHAPE);
});

Deno.test("loadStateDict ends a batch average in progress (loaded buffers are statistics)", async () => {
  const sn = new SwitchNorm2d(2, { backend: "reference", usingMovingAverage: false });
  const state = sn.stateDict();
  await sn.forward(B1, SHAPE);
  assert.equal(sn.batchesAccumulated, 1);
  sn.loadStateDict({ ...state, running_mean: [1, 2], running_var: [3, 4] });
  assert.equal(sn.batchesAccumulated, 0);
  await sn.eval().forward(B1, SHAPE);
  assert.deepEqual([...sn.running_mean], [1, 2]);
});

Deno.test("loadStateDict of one running buffer during a batch average throws, changing nothing", async () => {
  // The other buffer would stay a sum beside a loaded statistic, and the average would end: a
  // running_var of three batches' sums saved and evaluated as a variance (attack helper-90).
  const sn = new SwitchNorm2d(2, { backend: "reference", usingMovingAverage: false });
  await sn.forward(B1, SHAPE);
  await sn.forward(B2, SHAPE);
  const before = [sn.weight, sn.running_mean, sn.running_var];
  for (const key of ["running_mean", "running_var"]) {
    assert.throws(
      () => sn.loadStateDict({ weight: [2, 2], [key]: [1, 2] }, { strict: false }),
      new RegExp(
        `loadStateDict: loads ${key} alone, but 2 training batches were accumulated .*load both running buffers, or call finalizeBatchAverage\\(\\) or resetRunningStats\\(\\) first`,
      ),
    );
  }
  assert.deepEqual([sn.weight, sn.running_mean, sn.running_var], before);
  assert.equal(sn.batchesAccumulated, 2);
  // Both buffers are statistics: the average ends.
  sn.loadStateDict({ running_mean: [1, 2], running_var: [3, 4] }, { strict: false });
  assert.equal(sn.batchesAccumulated, 0);
});

Deno.test("a moving-average layer never counts batches, so eval after training is not refused", async () => {
  const sn = new SwitchNorm2d(2, { backend: "reference" });
  await sn.forward(B1, SHAPE);
  assert.equal(sn.batchesAccumulated, 0);
  await sn.eval().forward(B1, SHAPE);
});

Deno.test("values in messages show strings quoted with their type", () => {
  assert.equal(describeValue("64"), '"64" (string)');
  assert.equal(describeValue(64), "64");
  assert.equal(describeValue(NaN), "NaN");
  assert.equal(describeValue(-0), "-0");
  assert.equal(describeValue(true), "true (boolean)");
  assert.equal(describeValue(null), "null");
  assert.equal(describeValue(undefined), "undefined");
  assert.equal(describeValue(2n), "2n (bigint)");
  assert.equal(describeValue({}), "an object (Object)");
  assert.equal(describeValue([1, "2"]), 'an array [1, "2" (string)]');
  assert.equal(describeValue("x".repeat(50)), `"${"x".repeat(40)}..." (string)`);
  assert.equal(describeShape([2, "3", 4]), '2, "3" (string), 4');
});

Deno.test("every validator quotes a string where a number, boolean or name was expected", async () => {
  const cases: [string, () => unknown, RegExp][] = [
    [
      "numFeatures",
      () => new SwitchNorm2d("64" as never),
      /numFeatures must be a positive integer, got "64" \(string\)/,
    ],
    [
      "eps",
      () => new SwitchNorm2d(2, { eps: "1e-5" as never }),
      /eps must be a finite number, got "1e-5" \(string\)/,
    ],
    [
      "momentum",
      () => new SwitchNorm1d(2, { momentum: "0.9" as never }),
      /momentum must be a finite number, got "0\.9" \(string\)/,
    ],
    [
      "usingBN",
      () => new SwitchNorm3d(2, { usingBN: "true" as never }),
      /usingBN must be a boolean, got "true" \(string\)/,
    ],
    [
      "usingMovingAverage",
      () => new SwitchNorm2d(2, { usingMovingAverage: 1 as never }),
      /usingMovingAverage must be a boolean, got 1\b/,
    ],
    [
      "backend (number)",
      () => new SwitchNorm2d(2, { backend: 5 as never }),
      /unknown backend 5 \(expected/,
    ],
    [
      "backend (string)",
      () => new SwitchNorm2d(2, { backend: "gpu" as never }),
      /unknown backend "gpu" \(string\) \(expected/,
    ],
    [
      "train(mode)",
      () => new SwitchNorm2d(2).train("yes" as never),
      /mode must be a boolean, got "yes" \(string\)/,
    ],
    ["radius", () => {
      new SwitchNorm2d(2, { sparse: true }).radius = "0.5" as never;
    }, /radius must be a finite number, got "0\.5" \(string\)/],
    [
      "sync.size",
      () =>
        new SwitchNorm2d(2, { sync: { size: "2", allGather: () => Promise.resolve([]) } as never }),
      /sync\.size must be a positive integer, got "2" \(string\)/,
    ],
    [
      "loadStateDict(dict)",
      () => new SwitchNorm2d(2).loadStateDict("x" as never),
      /expected an object, got "x" \(string\)/,
    ],
    ["a state entry", () => {
      const sn = new SwitchNorm2d(2);
      sn.loadStateDict({ ...sn.stateDict(), weight: ["1", "1"] });
    }, /"weight" holds "1" \(string\), expected numbers/],
    ["a state entry's kind", () => {
      const sn = new SwitchNorm2d(2);
      sn.loadStateDict({ ...sn.stateDict(), bias: "0,0" });
    }, /"bias" must be an array, a typed array or \{ data, shape \}, got "0,0" \(string\)/],
  ];
  for (const [what, make, message] of cases) assert.throws(make, message, what);
  const sn = new SwitchNorm2d(2, { backend: "reference" });
  const x = new Float32Array(8);
  await assert.rejects(
    () => sn.forward(x, ["2", 2, 1, 2] as never),
    /shape\[0\] must be a positive integer, got "2" \(string\)/,
  );
  await assert.rejects(
    () => sn.forward(x, "[2,2,1,2]" as never),
    /shape must be an array \[N, C, H, W\], got "\[2,2,1,2\]" \(string\)/,
  );
  await assert.rejects(
    () => sn.forward(x, [2, 2, "2"] as never),
    /got rank 3 \[2, 2, "2" \(string\)\]/,
  );
});

Deno.test("an integer dimension beyond 2^53 is refused as too large, shown exactly, not as a non-integer", async () => {
  const sn = new SwitchNorm2d(1, { backend: "reference" });
  const error = await sn.forward(new Float32Array(0), [2 ** 60, 1, 0, 2]).then(
    () => assert.fail("resolved"),
    (e: Error) => e,
  );
  assert.ok(error instanceof RangeError);
  assert.match(
    error.message,
    /shape\[0\] must be at most 2\^53 - 1 \(Number.MAX_SAFE_INTEGER\), got 1152921504606846976 \(2\^60\)/,
  );
  assert.doesNotMatch(error.message, /positive integer/);
  // Dimensions each fine but whose product is beyond 2^53: say that, not "does not match".
  await assert.rejects(
    () => sn.forward(new Float32Array(8), [2 ** 20, 1, 2 ** 20, 2 ** 20]),
    /has about 1\.15e\+18 elements, beyond 2\^53 - 1/,
  );
  assert.throws(
    () => new SwitchNorm2d(2 ** 60),
    /numFeatures must be at most 2\^28 \(268435456\), got 1152921504606846976/,
  );
  assert.throws(
    () => new SwitchNorm2d(2, { sync: { size: 2 ** 60, allGather: (v) => Promise.resolve([v]) } }),
    /sync\.size must be at most 2\^53 - 1 .*got 1152921504606846976/,
  );
  // A fraction is still "not a positive integer".
  await assert.rejects(
    () => sn.forward(new Float32Array(8), [2.5, 1, 2, 2]),
    /shape\[0\] must be a positive integer, got 2\.5/,
  );
});

Deno.test("a backward after an evaluation forward names that forward, not a missing one", async () => {
  const x = new Float32Array(B1);
  const sn = new SwitchNorm2d(2, { backend: "reference" });
  await sn.forward(x, SHAPE); // training: kept
  await sn.eval().forward(x, SHAPE); // replaces it, keeping nothing
  await assert.rejects(
    () => sn.backward(new Float32Array(8)),
    /backward: the latest forward ran in evaluation mode without \{ keepForBackward: true \}, which keeps nothing for backward and replaced what any earlier forward kept/,
  );
  await sn.train().forward(x, SHAPE, { keepForBackward: false });
  await assert.rejects(
    () => sn.backward(new Float32Array(8)),
    /the latest forward ran with \{ keepForBackward: false \}/,
  );
  // A forward that failed on its backend (here: its SyncSN exchange got a malformed answer).
  let malformed = false;
  const sync = {
    size: 1,
    allGather: (v: Float64Array) => Promise.resolve([malformed ? new Float64Array(1) : v]),
  };
  const failed = new SwitchNorm2d(2, { backend: "reference", sync });
  await failed.forward(x, SHAPE);
  malformed = true;
  await assert.rejects(() => failed.forward(x, SHAPE), /wrong length/);
  await assert.rejects(
    () => failed.backward(new Float32Array(8)),
    /the latest forward failed, which ended the differentiability of the forward before it/,
  );
  await assert.rejects(
    () => new SwitchNorm2d(2).backward(new Float32Array(8)),
    /backward: no forward to differentiate/,
  );
});

Deno.test("a -0 setting reads back as 0: radius (set or loaded), eps, momentum", () => {
  const sn = new SwitchNorm2d(3, { sparse: true, eps: -0, momentum: -0 });
  assert.ok(Object.is(sn.eps, 0) && Object.is(sn.momentum, 0), `${sn.eps} ${sn.momentum}`);
  sn.radius = 0.5;
  sn.radius = -0;
  assert.ok(Object.is(sn.radius, 0), "radius = -0 reads back as -0");
  sn.radius = 0.5;
  sn.loadStateDict({ radius: [-0] }, { strict: false });
  assert.ok(Object.is(sn.radius, 0), "a loaded radius -0 reads back as -0");
  assert.ok(Object.is(sn.stateDict().radius?.[0], 0));
});

Deno.test("assigning a layer's option after construction throws and changes nothing; training takes booleans only", async () => {
  // readonly to TypeScript only until misuse helper-93: plain JavaScript took eps -1, momentum 7
  // or usingBN false on a layer of three logits, unchecked, on every backend.
  const x = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i * 1.7) * 2 + 1);
  const sn = new SwitchNorm2d(3, { backend: "reference" });
  const want = await new SwitchNorm2d(3, { backend: "reference" }).forward(x, [2, 3, 2, 2]);
  const loose = sn as unknown as Record<string, unknown>;
  for (
    const [name, value] of [
      ["eps", -1],
      ["eps", NaN],
      ["momentum", 7],
      ["numFeatures", 5],
      ["usingBN", false],
      ["sparse", true],
      ["usingMovingAverage", false],
      ["lastGamma", true],
      ["backendRequest", "wasm"],
      ["syncGroup", {}],
    ] as const
  ) {
    const before = loose[name];
    assert.throws(
      () => {
        loose[name] = value;
      },
      TypeError,
      name,
    );
    assert.equal(loose[name], before, name);
  }
  assert.throws(() => {
    loose.training = "no";
  }, /SwitchNorm2d\.training must be a boolean, got "no" \(string\)/);
  assert.equal(sn.training, true);
  assert.deepEqual(await sn.forward(x, [2, 3, 2, 2]), want);
  sn.training = false;
  assert.equal(sn.training, false);
});

await testEachBackend(
  "a layer's own checkpoint after a batch with NaN loads again, running buffers NaN included",
  async (backend) => {
    // The NaN reaches the running buffers without an error, as in PyTorch; loadStateDict refused
    // them, so the layer's own stateDict and safetensors file did not load (misuse helper-93).
    const x = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i));
    x[5] = NaN;
    const sn = new SwitchNorm2d(3, { backend });
    await sn.forward(x, [2, 3, 2, 2]);
    await sn.forward(Float32Array.from({ length: 24 }, (_, i) => 1e30 * (i % 3) * (i % 2)), [
      2,
      3,
      2,
      2,
    ]);
    const saved = sn.stateDict();
    assert.ok(saved.running_mean.some(Number.isNaN), "a NaN running_mean");
    const again = new SwitchNorm2d(3, { backend });
    again.loadStateDict(saved);
    const file = readSafetensors(writeSafetensors(sn.stateDict({ shapes: "pytorch" })));
    const third = new SwitchNorm2d(3, { backend });
    third.loadStateDict(file);
    for (const key of ["running_mean", "running_var", "weight", "bias"] as const) {
      assert.deepEqual(again[key], sn[key], key);
      assert.deepEqual(third[key], sn[key], `${key} through safetensors`);
    }
  },
);

Deno.test("the abstract base class made from plain JavaScript says it is abstract", () => {
  const Base = SwitchNorm as unknown as new (c: number) => unknown;
  assert.throws(
    () => new Base(3),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === "SwitchNorm is abstract: make a SwitchNorm1d, SwitchNorm2d or SwitchNorm3d",
  );
});

Deno.test("loadStateDict of a Map says to pass a plain object, changing nothing", () => {
  const sn = new SwitchNorm2d(2, { backend: "reference" });
  const entries = Object.entries(sn.stateDict()).map(([k, v]) => [k, v.map(() => 2)] as const);
  assert.throws(
    () => sn.loadStateDict(new Map(entries) as unknown as Record<string, Float32Array>),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === "SwitchNorm2d.loadStateDict: expected a plain object of key -> values, got " +
          "a Map (pass Object.fromEntries(map))",
  );
  assert.deepEqual(sn.weight, new Float32Array([1, 1]));
});
