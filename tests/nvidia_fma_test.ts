/**
 * tests/_nvidia_fma.ts, the emulation of NVIDIA's fused multiply-adds: its rewrite fuses the
 * forms NVIDIA's compiler contracts (in place and through a `let`), leaves integer arithmetic and
 * products behind a call alone, computes a fused result where lavapipe's own fma() does not, and
 * every pass of the backend compiles under it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { compileError } from "./_wgsl_parse.ts";
import { fuse, FUSED } from "./_nvidia_fma.ts";
import { runShader, withDevice } from "./_run_shader.ts";

const A = 1 + 2 ** -23;
const B = 1 + 2 ** -22;

/** The float32 results of `code` (its `buf` a, b then six zeros) on the adapter. */
function run(device: GPUDevice, code: string): Promise<Float32Array> {
  const data = new Float32Array([A, B, 0, 0, 0, 0, 0, 0]);
  return runShader(device, code, [{ binding: 0, data }], 1, 0);
}

const PROBE = `
@group(0) @binding(0) var<storage, read_write> buf: array<f32>;
fn g(x: f32, y: f32) -> f32 {
  return x + y;
}
fn f(a: f32, b: f32) -> vec4<f32> {
  let p = a * a;
  var acc = -b;
  acc += a * a;
  let v = vec2<f32>(a, a) * vec2<f32>(a, a) - vec2<f32>(b, b);
  return vec4<f32>(a * a - b, p - b, acc, v.y);
}
@compute @workgroup_size(1) fn main() {
  let i = 2u * 1u + 1u; // integer: left alone
  let r = f(buf[0], buf[1]);
  buf[i + 1u] = r.x;
  buf[i + 2u] = r.y;
  buf[i + 3u] = r.z;
  buf[i + 4u] = r.w;
  buf[3] = g(buf[0] * buf[0], -buf[1]); // inlined: fused
  buf[2] = bitcast<f32>(bitcast<u32>(buf[0] * buf[0])) - buf[1]; // behind a bitcast: not fused
}`;

Deno.test("lavapipe's fma() rounds the product; the emulation fuses a*b-c, through a let and a call too", async () => {
  await withDevice(async (device) => {
    const plain = await run(device, PROBE);
    // Unfused: a*a rounds to 1 + 2^-22 = b.
    assert.deepEqual([...plain.slice(2, 8)], [0, 0, 0, 0, 0, 0]);
    const fused = await fuse(device, PROBE);
    assert.deepEqual(fused.sites, 5);
    const out = await run(device, fused.code);
    // a*a - b exactly: 2^-46, through a call (inlined), in place, through the let, as x += a*b
    // and for vec2.
    assert.deepEqual([...out.slice(2, 8)], [0, 2 ** -46, 2 ** -46, 2 ** -46, 2 ** -46, 2 ** -46]);
    const builtin = await run(
      device,
      PROBE.replace("return vec4<f32>(a * a - b", "return vec4<f32>(fma(a, a, -b)"),
    );
    assert.deepEqual(builtin[4], 0, "lavapipe's fma() is not fused: the emulation's reason");
  });
});

Deno.test("every pass of the WebGPU backend has fused sites and compiles under the emulation", async () => {
  await withDevice(async (device) => {
    for (const [kind, f] of Object.entries(FUSED)) {
      assert.ok(f.sites > 0, kind);
      assert.equal(await compileError(device, f.code), undefined, kind);
    }
  });
});

Deno.test("pair_times' fourth product is fused into the low word (common.wgsl: exact parts)", () => {
  // pair_times adds products of 12-bit parts, exact whether fused or not: the rewrite reaches them.
  assert.ok(FUSED.stats.code.includes("nv_fma((x.y), (y.y)"));
});
