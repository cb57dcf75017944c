/**
 * tests/_nvidia_nan_compare.ts, the emulation of a compiler that takes NaN comparisons the other
 * way round: under it a scalar float comparison with a NaN operand gives the opposite of IEEE's
 * answer, every other comparison IEEE's, integer comparisons are left alone, and every pass of
 * the backend compiles under it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { compileError } from "./_wgsl_parse.ts";
import { flush } from "./_nvidia_flush.ts";
import { flipNanComparisons, FLIPPED } from "./_nvidia_nan_compare.ts";
import { runShader, withDevice } from "./_run_shader.ts";

/** The float32 results of `code` (its `buf` NaN, 1, then zeros) on the adapter. */
function run(device: GPUDevice, code: string): Promise<Float32Array> {
  const data = new Float32Array([NaN, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
  return runShader(device, code, [{ binding: 0, data }], 1, 0);
}

const PROBE = `
@group(0) @binding(0) var<storage, read_write> buf: array<f32>;
@compute @workgroup_size(1) fn main() {
  let a = buf[0]; // NaN, loaded: no compiler can fold it
  let one = buf[1];
  let i = 2u;
  buf[i] = select(0.0, 1.0, a < one); // 2: IEEE false, flipped true
  buf[3] = select(0.0, 1.0, a != one); // 3: IEEE true, lavapipe and flipped false
  buf[4] = select(0.0, 1.0, !(one >= a)); // 4: IEEE true, flipped false
  buf[5] = select(0.0, 1.0, one < one + one); // 5: no NaN: true either way
  buf[6] = select(0.0, 1.0, i < 3u); // 6: integer: true either way
}`;

Deno.test("under the emulation a float comparison with a NaN operand gives the opposite of IEEE's answer, others IEEE's", async () => {
  await withDevice(async (device) => {
    const plain = await run(device, PROBE);
    // lavapipe's != gives false for NaN already (WGSL lets a compiler assume no NaN).
    assert.deepEqual([...plain.slice(2, 7)], [0, 0, 1, 1, 1]);
    const flipped = flipNanComparisons((await flush(device, PROBE)).code);
    assert.equal(flipped.sites, 4);
    const out = await run(device, flipped.code);
    assert.deepEqual([...out.slice(2, 7)], [1, 0, 0, 1, 1]);
  });
});

Deno.test("every pass of the WebGPU backend has flipped comparisons and compiles under the emulation", async () => {
  await withDevice(async (device) => {
    assert.ok(Object.keys(FLIPPED).length >= 28);
    for (const [kind, f] of Object.entries(FLIPPED)) {
      assert.ok(f.sites > 10, kind);
      assert.equal(await compileError(device, f.code), undefined, kind);
    }
  });
});
