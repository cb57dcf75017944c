/**
 * tests/_gpu_lid_orders.ts, the renumberings of every workgroup's invocations, and tests/_pose_gpu.ts,
 * the adapter posing as a GPU: a race on workgroup memory that lavapipe's fixed order hides shows
 * under the renumbering, every pass of the backend compiles under each permutation, and the
 * posed adapter gives the backend a GPU's thread counts.
 *
 * @module
 */
import assert from "node:assert/strict";
import { compileError } from "./_wgsl_parse.ts";
import { installGpuLid, PERMUTATIONS, renumber } from "./_gpu_lid_orders.ts";
import * as WGSL from "../shaders/_wgsl.ts";
import { runShader, withDevice } from "./_run_shader.ts";

// Thread 0 writes a workgroup variable that threads 63 and 1 read with no barrier between: a
// race. llvmpipe runs a workgroup's 64 invocations in SIMD batches, lowest index first, so both
// readers see the write; a GPU may run thread 63's warp first.
const RACE = `
var<workgroup> word: f32;
@group(0) @binding(0) var<storage, read_write> buf: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
  if (lid == 0u) {
    word = 7.0;
  }
  if (lid == 63u) {
    buf[0] = word;
  }
  if (lid == 1u) {
    buf[1] = word;
  }
}`;

// Each thread writes its own word, and thread 0 reads thread 1's with no barrier between: a race
// that lavapipe hides (threads 0 and 1 share a batch, whose writes all come first) and that
// `spread_up` shows (thread 1's batch runs after thread 0's).
const TREE_RACE = `
var<workgroup> words: array<f32, 64>;
@group(0) @binding(0) var<storage, read_write> buf: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
  words[lid] = f32(lid) + 1.0;
  if (lid == 0u) {
    buf[0] = words[1];
  }
}`;

async function race(device: GPUDevice, code: string): Promise<number[]> {
  const out = await runShader(device, code, [{ binding: 0, data: new Float32Array(4) }], 1, 0);
  return [out[0], out[1]];
}

Deno.test("lavapipe hides a race on workgroup memory that the reversed, halved and spread orders show", async () => {
  await withDevice(async (device) => {
    assert.deepEqual(await race(device, RACE), [7, 7]);
    // Reversed: the writer runs in the last batch, thread 63 in the first; thread 1 shares the
    // writer's batch, after it in program order.
    assert.deepEqual(await race(device, renumber(RACE, "reverse").code), [0, 7]);
    assert.deepEqual(await race(device, renumber(RACE, "halves").code), [0, 7]);
    assert.deepEqual(await race(device, renumber(RACE, "swap").code), [7, 7]);
    // Spread: threads 0, 1 and 63 in batches 7, 6 and 0, so both readers run before the writer.
    assert.deepEqual(await race(device, renumber(RACE, "spread").code), [0, 0]);
    // Spread up: the writer first; it cannot show this race.
    assert.deepEqual(await race(device, renumber(RACE, "spread_up").code), [7, 7]);
  });
});

Deno.test("lavapipe hides a reader running before its neighbour's write, which spread_up alone shows", async () => {
  await withDevice(async (device) => {
    const read = async (code: string) =>
      (await runShader(device, code, [{ binding: 0, data: new Float32Array(4) }], 1, 0))[0];
    assert.equal(await read(TREE_RACE), 2);
    for (const mode of ["spread", "reverse", "swap", "halves"]) {
      assert.equal(await read(renumber(TREE_RACE, mode).code), 2, mode);
    }
    assert.equal(await read(renumber(TREE_RACE, "spread_up").code), 0);
  });
});

Deno.test("an unknown GPU_LID is refused by name, before any source is touched", () => {
  assert.throws(() => renumber(RACE, "random"), /GPU_LID must be one of .*got "random"/);
  assert.throws(() => installGpuLid("random"), /GPU_LID must be one of .*got "random"/);
});

Deno.test("every pass of the WebGPU backend has its entry point renumbered and compiles under each permutation", async () => {
  await withDevice(async (device) => {
    const passes = Object.entries(WGSL).filter(([, code]) => code.includes("@compute"));
    assert.ok(passes.length >= 28);
    for (const mode of Object.keys(PERMUTATIONS)) {
      for (const [name, code] of passes) {
        const r = renumber(code, mode);
        assert.equal(r.entries, code.includes("local_invocation_index") ? 1 : 0, `${name} ${mode}`);
        assert.equal(await compileError(device, r.code), undefined, `${name} ${mode}`);
      }
    }
  });
});

Deno.test("a posed adapter gives the WebGPU backend a GPU's thread counts", async () => {
  // In a child: the preload wraps GPUAdapter's getters for the whole process.
  const run = async (preload: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        ...preload.flatMap((p) => ["--preload", p]),
        new URL("./_pose_probe.ts", import.meta.url).pathname,
      ],
      stderr: "inherit",
    }).output();
    assert.equal(out.code, 0);
    return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  };
  const posed = await run([new URL("./_pose_gpu.ts", import.meta.url).pathname]);
  assert.deepEqual(posed, [false, 64, 16]);
  // Plainly a fallback adapter (lavapipe, CI's) takes 8 and 256; a GPU (a device run) 64 and 16.
  const plain = await run([]);
  assert.deepEqual(plain.slice(1), plain[0] ? [8, 256] : [64, 16]);
});
