/**
 * A resident tensor carries its shape to the next layer, so a resident `out` or `dy` with x's
 * length but another shape is refused (it used to be accepted, and y or dx went on with the wrong
 * shape), on every backend that has resident tensors.
 */
import assert from "node:assert/strict";
import { SwitchNorm2d } from "../mod.ts";
import { backendsHere, STRICT } from "./_backends.ts";
import { assertSameValues } from "./_close.ts";

const x = Float32Array.from({ length: 48 }, (_, i) => Math.sin(i * 0.7) * 3 + (i % 4));
const dy = Float32Array.from({ length: 48 }, (_, i) => Math.cos(i * 0.3));

for (const { backend, missing } of await backendsHere()) {
  if (backend.name === "reference") continue; // no resident tensors
  const name =
    `${backend.name}: a resident out or dy of x's length but another shape is refused, ` +
    "changing nothing";
  if (missing !== undefined && !STRICT) {
    Deno.test({ name: `${name} (skipped: ${missing})`, ignore: true, fn() {} });
    continue;
  }
  Deno.test(name, async () => {
    const layer = new SwitchNorm2d(3, { backend: backend.name });
    using t = await layer.upload(x, [2, 3, 2, 4]);
    using other = await layer.upload(new Float32Array(48), [4, 3, 1, 4]);
    await assert.rejects(
      async () => await layer.forward(t, { out: other }),
      (e: Error) =>
        e instanceof RangeError && /out must have x's shape \[2, 3, 2, 4\]/.test(e.message) &&
        /\[4, 3, 1, 4\]/.test(e.message),
    );
    assertSameValues(layer.running_mean, new Float32Array(3), "running_mean after the refusal");
    assertSameValues(await other.read(), new Float32Array(48), "out after the refusal");

    // The kept forward, then a dy of another shape: refused, and the forward stays kept.
    using y = await layer.forward(t);
    assert.deepEqual(y.shape, [2, 3, 2, 4]);
    using dyOther = await layer.upload(dy, [4, 3, 1, 4]);
    await assert.rejects(
      async () => await layer.backward(dyOther),
      (e: Error) => e instanceof RangeError && /dy must have x's shape/.test(e.message),
    );
    using dyRight = await layer.upload(dy, [2, 3, 2, 4]);
    using dx = await layer.backward(dyRight);
    assert.deepEqual(dx.shape, [2, 3, 2, 4]);
  });
}
