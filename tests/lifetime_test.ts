/**
 * Layers dropped without dispose() are reclaimed once garbage-collected: what they held in the
 * WASM backend's memory (their own regions) and on the WebGPU device (their buffers) is freed.
 * Runs tests/_dropped_layers_child.ts in a subprocess with --v8-flags=--expose-gc. Likewise,
 * WASM backends dropped without dispose() end their worker threads (tests/_dropped_pools_child.ts).
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

Deno.test({
  name:
    "WASM: dropped backends on 3 threads end their worker threads once collected, and the process exits by itself",
  // The OS threads are counted in /proc/self/task.
  ignore: wasmIgnore || Deno.build.os !== "linux",
  async fn() {
    const child = new URL("./_dropped_pools_child.ts", import.meta.url);
    const proc = new Deno.Command(Deno.execPath(), {
      // -A: reading /proc/self/task needs every permission (the library itself needs none).
      args: ["run", "--v8-flags=--expose-gc", "-A", child.href, "4"],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // A pool that kept the process alive would never end it: 60 s, for a busy machine.
    const timer = setTimeout(() => proc.kill(), 60_000);
    const out = await proc.output();
    clearTimeout(timer);
    assert.equal(out.code, 0, `child failed or hung: ${new TextDecoder().decode(out.stderr)}`);
    const text = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!;
    const { before, live, after, splits } = JSON.parse(text);
    assert.ok(splits >= 4, `calls were not split (${splits}): no worker ran`);
    // 4 backends x 2 workers, one OS thread each.
    assert.ok(live >= before + 8, `OS threads while the backends live: ${text}`);
    assert.ok(after <= before, `OS threads left after collection: ${text}`);
  },
});
