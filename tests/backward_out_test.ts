/**
 * `backward(dy, { out })`: dx written into a given array or resident tensor (no dx allocated per
 * call), dy itself allowed, the differentiated x refused, and another layer's kept x overwritten
 * by it made non-differentiable, on every backend.
 */
import assert from "node:assert/strict";
import { SwitchNorm2d } from "../mod.ts";
import type { BackendName } from "../backends/_backend.ts";
import { backendsHere, STRICT, testEachBackend } from "./_backends.ts";
import { assertSameValues } from "./_close.ts";

const shape = [2, 3, 4, 5], length = 120;
const x = Float32Array.from({ length }, (_, i) => Math.sin(i * 0.37) * 2 + (i % 7) * 0.1);
const dy = Float32Array.from({ length }, (_, i) => Math.cos(i * 0.21));

function layer(backend: BackendName): SwitchNorm2d {
  const l = new SwitchNorm2d(3, { backend });
  l.loadStateDict({
    weight: new Float32Array([0.8, 1.1, 1.3]),
    bias: new Float32Array([0.1, -0.2, 0.3]),
    mean_weight: new Float32Array([0.3, -0.4, 0.2]),
    var_weight: new Float32Array([-0.2, 0.5, 0.1]),
  }, { strict: false });
  return l;
}

/** dx and the gradients of one training step without `out`. */
async function expected(backend: BackendName) {
  const l = layer(backend);
  await l.forward(x, shape);
  const dx = await l.backward(dy);
  return { dx, grads: structuredClone(l.grads) };
}

await testEachBackend(
  "backward writes dx into out, into dy itself, or into an out overlapping dy, with the same bits",
  async (backend) => {
    const want = await expected(backend);
    const l = layer(backend);

    await l.forward(x, shape);
    const out = new Float32Array(length).fill(7);
    const dx = await l.backward(dy, { out });
    assert.equal(dx, out, "resolves to out");
    assertSameValues(out, want.dx, "dx in out");

    await l.forward(x, shape);
    const inPlace = dy.slice();
    assert.equal(await l.backward(inPlace, { out: inPlace }), inPlace);
    assertSameValues(inPlace, want.dx, "dx over dy");

    // out and dy views of one buffer, out 3 floats after dy: every dy read comes before dx.
    await l.forward(x, shape);
    const shared = new Float32Array(length + 3);
    shared.set(dy);
    const shifted = shared.subarray(3);
    await l.backward(shared.subarray(0, length), { out: shifted });
    assertSameValues(shifted, want.dx, "dx overlapping dy");
  },
);

await testEachBackend(
  "a backward whose out overlaps the differentiated x, or is not dy's kind or length, is refused, changing nothing",
  async (backend) => {
    const want = await expected(backend);
    const l = layer(backend);
    const xCopy = x.slice();
    await l.forward(xCopy, shape);
    const before = structuredClone(l.grads);
    await assert.rejects(
      l.backward(dy, { out: xCopy.subarray(10, 10 + length - 10) as Float32Array }),
      (e: Error) =>
        e instanceof RangeError &&
        /out must be the same kind as dy with 120 elements, got a Float32Array of 110/.test(
          e.message,
        ),
    );
    const aliasX = new Float32Array(xCopy.buffer);
    await assert.rejects(
      l.backward(dy, { out: aliasX }),
      /out overlaps the x of the forward this backward differentiates/,
    );
    await assert.rejects(
      // deno-lint-ignore no-explicit-any
      l.backward(dy, { out: Array.from(dy) as any }),
      /out must be the same kind as dy/,
    );
    assert.deepEqual(l.grads, before, "gradients unchanged");
    assertSameValues(xCopy, x, "x unchanged");
    // The forward is still differentiable, and gives the usual dx.
    assertSameValues(await l.backward(dy), want.dx, "dx after the refusals");
  },
);

await testEachBackend(
  "a backward's out written over another layer's kept x makes that layer's backward throw",
  async (backend) => {
    const a = layer(backend), b = layer(backend);
    const shared = x.slice();
    await a.forward(shared, shape); // a keeps `shared` as its x
    await b.forward(x, shape);
    await b.backward(dy, { out: shared });
    await assert.rejects(a.backward(dy), /overwritten|was written/);
  },
);

for (const { backend: { name: backend }, missing } of await backendsHere()) {
  if (backend === "reference") continue; // no resident tensors
  const name = `${backend}: resident dx goes into a resident out or over dy with the same bits; ` +
    "a resident out of another shape, or over x, is refused";
  if (missing !== undefined && !STRICT) {
    Deno.test({ name: `${name} (skipped: ${missing})`, ignore: true, fn() {} });
    continue;
  }
  Deno.test(name, async () => {
    const want = await expected(backend);
    const l = layer(backend);
    using t = await l.upload(x, shape);
    await l.forward(t);
    using d = await l.upload(dy, shape);
    using o = await l.upload(new Float32Array(length), shape);
    const dx = await l.backward(d, { out: o });
    assert.equal(dx, o, "resolves to out");
    assertSameValues(await o.read(), want.dx, "dx in out");

    await l.forward(t);
    assert.equal(await l.backward(d, { out: d }), d);
    assertSameValues(await d.read(), want.dx, "dx over dy");

    await l.forward(t);
    using other = await l.upload(new Float32Array(length), [4, 3, 2, 5]);
    await assert.rejects(
      l.backward(d, { out: other }),
      (e: Error) => e instanceof RangeError && /out must have x's shape/.test(e.message),
    );
    await assert.rejects(l.backward(d, { out: t }), /out overlaps the x/);
    assertSameValues(await t.read(), x, "x unchanged");
  });
}

await testEachBackend(
  "under SyncSN (a group of one, so the gradient sums take the synced path) backward writes dx into out and over dy",
  async (backend) => {
    const sync = { size: 1, allGather: (v: Float64Array) => Promise.resolve([v]) };
    const l = new SwitchNorm2d(3, { backend, sync });
    l.loadStateDict(layer("reference").stateDict());
    // The synced sums are added up in float64 on the CPU: compare with a synced backward.
    await l.forward(x, shape);
    const want = { dx: await l.backward(dy) };
    await l.forward(x, shape);
    const out = new Float32Array(length);
    assert.equal(await l.backward(dy, { out }), out);
    assertSameValues(out, want.dx, "dx in out");
    if (backend === "reference") return;
    using t = await l.upload(x, shape);
    await l.forward(t);
    using d = await l.upload(dy, shape);
    assert.equal(await l.backward(d, { out: d }), d);
    assertSameValues(await d.read(), want.dx, "resident dx over dy");
  },
);

Deno.test("wasm: another layer's out written into a resident x's data view makes that x's backward throw", async () => {
  for (const writer of ["forward", "backward"] as const) {
    const kept = layer("wasm");
    using t = await kept.upload(x, shape);
    await kept.forward(t); // keeps t
    const other = layer("reference");
    await other.forward(x, shape);
    // deno-lint-ignore no-explicit-any
    const view = (t as any).data as Float32Array; // the resident tensor's memory, in place
    if (writer === "forward") await other.forward(dy, shape, { out: view });
    else await other.backward(dy, { out: view });
    using d = await kept.upload(dy, shape);
    await assert.rejects(kept.backward(d), /overwritten since, as the out of a SwitchNorm2d/);
  }
});
