/**
 * Layers dropped without dispose() are reclaimed once garbage-collected: what they held in the
 * WASM backend's memory (their own regions) and on the WebGPU device (their buffers) is freed.
 * Runs tests/_dropped_layers_child.ts in a subprocess with --v8-flags=--expose-gc.
 */
import assert from "node:assert/strict";
import { STRICT } from "./_backends.ts";
import { wasmSimdSupported } from "../backends/wasm.ts";
import { WEBGPU_MISSING } from "./_webgpu.ts";

interface Held {
  layers: number;
  bytes?: number;
}

async function runChild(backend: string, count: number, kind: string) {
  const child = new URL("./_dropped_layers_child.ts", import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--v8-flags=--expose-gc",
      "--allow-read",
      "--allow-env",
      child.href,
      backend,
      String(count),
      kind,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, `child failed: ${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(text.trim().split("\n").at(-1)!) as { before: Held; live: Held; after: Held };
}

const wasmIgnore = !wasmSimdSupported();
if (wasmIgnore && STRICT) {
  throw new Error("WebAssembly SIMD is missing, and CI must run the WASM tests");
}

for (const kind of ["1d", "2d"]) {
  Deno.test({
    name:
      `WASM: 200 dropped ${kind} layers, each after a training step, give back all their memory once collected`,
    ignore: wasmIgnore,
    async fn() {
      const { before, live, after } = await runChild("wasm", 200, kind);
      assert.ok(
        live.layers >= before.layers + 150,
        `layers held while live: ${JSON.stringify(live)}`,
      );
      assert.equal(after.layers, before.layers, "layers still held after collection");
      assert.equal(after.bytes, before.bytes, "bytes still held after collection");
    },
  });
}

Deno.test({
  name:
    "WebGPU: 50 dropped layers, each after a training step, give back their buffers once collected",
  ignore: WEBGPU_MISSING !== undefined && !STRICT,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { before, live, after } = await runChild("webgpu", 200, "2d");
    assert.ok(
      live.layers >= before.layers + 150,
      `layers held while live: ${JSON.stringify(live)}`,
    );
    assert.equal(after.layers, before.layers, "layers still held after collection");
  },
});
