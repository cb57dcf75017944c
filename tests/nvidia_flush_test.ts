/**
 * tests/_nvidia_flush.ts, the emulation of NVIDIA's subnormal flushing: its rewrite flushes the
 * operands and results of float arithmetic (scalar and vector, x op= y, through div_f32-like
 * functions too) and the operands of comparisons, keeps loads, stores and integer arithmetic as
 * they are, and every pass of the backend compiles under it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { compileError } from "./_wgsl_parse.ts";
import { flush, FLUSHED } from "./_nvidia_flush.ts";
import { runShader, withDevice } from "./_run_shader.ts";

const SUB = 2 ** -130;

/** The float32 results of `code` (its `buf` 2^-130, 1, then zeros) on the adapter. */
function run(device: GPUDevice, code: string): Promise<Float32Array> {
  const data = new Float32Array([SUB, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
  return runShader(device, code, [{ binding: 0, data }], 1, 0);
}

const PROBE = `
@group(0) @binding(0) var<storage, read_write> buf: array<f32>;
fn div(a: f32, b: f32) -> f32 {
  return a / b;
}
@compute @workgroup_size(1) fn main() {
  let a = buf[0];
  let one = buf[1];
  let i = 2u * 1u + 1u; // integer: left alone
  buf[i - 1u] = a * one; // 2: 0 flushed
  buf[i] = select(0.0, 1.0, a > 0.0); // 3: the comparison sees 0
  buf[i + 1u] = a; // 4: a load and a store keep the bits
  var acc = one;
  acc -= one - a; // 5: (1 - 2^-130) rounds to 1: 0 either way; the point is it compiles
  buf[5] = acc;
  let v = vec2<f32>(a, one) * vec2<f32>(one, one);
  buf[6] = v.x; // 6: vec2 flushed
  buf[7] = div(a, one); // 7: through a function
  buf[8] = sqrt(a); // 8: sqrt of a flushed operand: 0
  buf[9] = bitcast<f32>(bitcast<u32>(a)); // 9: a bitcast keeps the bits
}`;

Deno.test("lavapipe keeps subnormals; under the emulation 2^-130 * 1, a comparison and sqrt see 0, loads keep the bits", async () => {
  await withDevice(async (device) => {
    const plain = await run(device, PROBE);
    assert.deepEqual([...plain.slice(2, 10)], [SUB, 1, SUB, 0, SUB, SUB, 2 ** -65, SUB]);
    const flushed = await flush(device, PROBE);
    assert.ok(!/nv_ftz\(2u|nv_ftz\(i\b/.test(flushed.code), "integer arithmetic left alone");
    const out = await run(device, flushed.code);
    assert.deepEqual([...out.slice(2, 10)], [0, 0, SUB, 0, 0, 0, 0, SUB]);
  });
});

Deno.test("every pass of the WebGPU backend has flushed sites and compiles under the emulation", async () => {
  await withDevice(async (device) => {
    assert.ok(Object.keys(FLUSHED).length >= 28);
    for (const [kind, f] of Object.entries(FLUSHED)) {
      assert.ok(f.sites > 100, kind);
      assert.equal(await compileError(device, f.code), undefined, kind);
    }
    // div_f32 is flushed (operands and result).
    assert.ok(FLUSHED.stats.code.includes("return nv_ftz(nv_ftz(a) / nv_ftz(b));"));
  });
});

const SIGN_MINMAX_PROBE = `
@group(0) @binding(0) var<storage, read_write> buf: array<f32>;
@compute @workgroup_size(1) fn main() {
  let a = buf[0];
  let one = buf[1];
  let k = 3i;
  buf[2] = -a; // 2
  buf[3] = abs(a); // 3
  buf[4] = min(a, one); // 4
  buf[5] = max(a, -one); // 5
  buf[6] = clamp(a, -one, one); // 6
  buf[7] = f32(max(k, -k) + min(2i, k) - 5i); // 7: integer min and max left alone: 0
  buf[8] = -0.5; // 8: a literal stays
  buf[9] = select(0.0, a, one > 0.0); // 9: select keeps the bits
}`;

Deno.test("with signMinMax, abs, min, max, clamp and unary minus flush a subnormal, integer ones and literals are left alone", async () => {
  await withDevice(async (device) => {
    const plain = await run(device, SIGN_MINMAX_PROBE);
    assert.deepEqual([...plain.slice(2, 10)], [-SUB, SUB, SUB, SUB, SUB, 0, -0.5, SUB]);
    const off = await flush(device, SIGN_MINMAX_PROBE, false);
    assert.deepEqual([...(await run(device, off.code)).slice(2, 10)], [...plain.slice(2, 10)]);
    const on = await flush(device, SIGN_MINMAX_PROBE, true);
    assert.ok(!/nv_ftz\(max\(k|nv_ftz\(min\(2i/.test(on.code), "integer min and max left alone");
    assert.deepEqual([...(await run(device, on.code)).slice(2, 10)], [
      -0,
      0,
      0,
      0,
      0,
      0,
      -0.5,
      SUB,
    ]);
  });
});
