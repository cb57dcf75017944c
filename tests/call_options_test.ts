/**
 * Per-call and constructor options: unknown or mistyped ones throw naming the option and change
 * nothing; null is a mistake, not the default; a layer too wide to hold is refused.
 */
import assert from "node:assert/strict";
import { SwitchNorm1d, SwitchNorm2d } from "../mod.ts";
import { testEachBackend } from "./_backends.ts";
import { assertSameState, data, LENGTH, makeLayer, SHAPE } from "./_call_order.ts";

// ---- 12. Per-call and constructor options ----

await testEachBackend(
  "unknown or mistyped per-call options throw naming the option, and change nothing",
  async (backend) => {
    const layer = makeLayer(backend, false);
    const x = data(80), out = new Float32Array(LENGTH);
    const call = (options: unknown) => layer.forward(x, SHAPE, options as never);
    await assert.rejects(() => call({ outt: out }), /forward: unknown option "outt"/);
    assert.equal(out.every((v) => v === 0), true, "out untouched");
    await assert.rejects(
      () => call("abc"),
      /forward: options must be an object \{ out, keepForBackward \}, got "abc" \(string\)/,
    );
    await assert.rejects(() => call([]), /options must be an object .* got an array/);
    await assert.rejects(() => call(null), /options must be an object .* got null/);
    await assert.rejects(
      () => call({ keepForBackward: "no" }),
      /keepForBackward must be a boolean, got "no" \(string\)/,
    );
    await assert.rejects(() => call({ out: [1, 2] }), /out must be the same kind as x/);
    assertSameState(layer, makeLayer(backend, false), "the refused forwards changed nothing");
    await layer.forward(x, SHAPE);
    await assert.rejects(
      () => layer.backward(x, { retain: true } as never),
      /unknown option "retain"/,
    );
    await assert.rejects(
      () => layer.backward(x, { retainGraph: 1 } as never),
      /retainGraph must be a boolean, got 1/,
    );
    await assert.rejects(() => layer.backward(x, "x" as never), /got "x" \(string\)/);
    if (backend !== "reference") {
      const t = await layer.upload(x, SHAPE);
      await assert.rejects(() => layer.forward(t, { outt: t } as never), /unknown option "outt"/);
      await assert.rejects(
        () => (layer.forward as (...a: unknown[]) => Promise<unknown>)(t, {}, {}),
        /third argument/,
      );
      t.dispose();
    }
    // The forward kept above is still the one to differentiate: the refused calls left it.
    await layer.backward(x);
  },
);

Deno.test("constructor options treat null as a mistake, like undefined is the default", () => {
  assert.throws(
    () => new SwitchNorm2d(2, { eps: null as never }),
    /eps must be a finite number, got null/,
  );
  assert.throws(
    () => new SwitchNorm2d(2, { momentum: null as never }),
    /momentum must be a finite number, got null/,
  );
  assert.throws(() => new SwitchNorm2d(2, { backend: null as never }), /unknown backend null/);
  assert.throws(
    () => new SwitchNorm2d(2, { usingBN: null as never }),
    /usingBN must be a boolean, got null/,
  );
  assert.throws(
    () => new SwitchNorm2d(2, { eps: "1e-5" as never }),
    /eps must be a finite number, got "1e-5" \(string\)/,
  );
  assert.throws(
    () => new SwitchNorm2d(2, "abc" as never),
    /options must be an object, got "abc" \(string\)/,
  );
  assert.throws(
    () => new SwitchNorm2d("64" as never),
    /numFeatures must be a positive integer, got "64" \(string\)/,
  );
});

Deno.test("a layer too wide to hold is refused with a RangeError naming numFeatures", () => {
  assert.throws(() => new SwitchNorm2d(2 ** 40), RangeError);
  assert.throws(() => new SwitchNorm2d(2 ** 40), /numFeatures must be at most 2\^28/);
  assert.throws(() => new SwitchNorm1d(2 ** 28 + 1), /numFeatures must be at most 2\^28/);
});
