/**
 * tests/_gpu_opaque.ts, the rewrite that hides float32 operations from the shader compiler's
 * algebra: on lavapipe, which cancels (a + b) - a to b and regroups a product with constants,
 * the wrapped forms give IEEE's answers, and every pass of the backend compiles under each of
 * its choices.
 *
 * @module
 */
import assert from "node:assert/strict";
import { compileError } from "./_wgsl_parse.ts";
import { CHOICES, HIDDEN, hide } from "./_gpu_opaque.ts";
import * as WGSL from "../shaders/_wgsl.ts";
import { runShader, withDevice } from "./_run_shader.ts";

const PROBE = `
struct Params { inf_bits: u32 }
@group(0) @binding(1) var<uniform> P: Params;
@group(0) @binding(0) var<storage, read_write> buf: array<f32>;
fn opaque(v: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(v) ^ (P.inf_bits ^ 0x7f800000u));
}
@compute @workgroup_size(1) fn main() {
  let a = buf[0];
  let b = buf[1];
  let c = buf[2];
  buf[3] = (a + b) - a; // IEEE: 0 (2^24 + 1 rounds to 2^24)
  buf[4] = (c * c) * 0x1p-100f; // IEEE: Infinity (2^200 overflows)
  buf[5] = (a * b) + c; // no rewrite either way: 2^100
  buf[6] = opaque(c); // (binds P without the rewrite too)
  // The same through let and x op= (a wrapped value wrapped again must stay hidden: an XOR mask
  // applied twice cancels to the bare value, an OR mask does not).
  let s = a + b;
  buf[7] = s - a; // IEEE: 0
  let p = c * c;
  buf[8] = p * 0x1p-100f; // IEEE: Infinity
  var q = a + b;
  q -= a;
  buf[9] = q; // IEEE: 0
}`;

function run(device: GPUDevice, code: string): Promise<Float32Array> {
  return runShader(
    device,
    code,
    [
      { binding: 0, data: new Float32Array([2 ** 24, 1, 2 ** 100, 0, 0, 0, 0, 0, 0, 0, 0, 0]) },
      { binding: 1, data: new Uint32Array([0x7f800000, 0, 0, 0]), uniform: true },
    ],
    1,
    0,
  );
}

Deno.test("lavapipe cancels (a + b) - a and regroups (c c) 2^-100; with every site hidden they give IEEE's 0 and Infinity", async () => {
  await withDevice(async (device) => {
    const plain = await run(device, PROBE);
    assert.deepEqual([...plain.slice(3, 6)], [1, 2 ** 100, 2 ** 100]);
    assert.deepEqual([...plain.slice(7, 10)], [1, 2 ** 100, 1]);
    const hidden = await hide(device, PROBE, "all");
    const h = await run(device, hidden.code);
    assert.deepEqual([...h.slice(3, 6)], [0, Infinity, 2 ** 100]);
    assert.deepEqual([...h.slice(7, 10)], [0, Infinity, 0]);
    // add alone stops the cancellation, mul alone the regrouping.
    const add = await hide(device, PROBE, "add");
    assert.deepEqual([...(await run(device, add.code)).slice(3, 5)], [0, 2 ** 100]);
    const mul = await hide(device, PROBE, "mul");
    assert.deepEqual([...(await run(device, mul.code)).slice(3, 5)], [1, Infinity]);
  });
});

Deno.test("an unknown GPU_OPAQUE choice is refused by name, and a source without opaque() is left as it is", async () => {
  await withDevice(async (device) => {
    assert.throws(() => hide(device, PROBE, "mull"), /GPU_OPAQUE must be one of .*got "mull"/);
    const bare = PROBE.replace(/fn opaque[^}]*\}/, "");
    assert.equal((await hide(device, bare, "all")).code, bare);
  });
});

Deno.test("every pass of the WebGPU backend has hidden sites and compiles under each choice", async () => {
  await withDevice(async (device) => {
    assert.ok(Object.keys(HIDDEN).length >= 28);
    for (const [kind, h] of Object.entries(HIDDEN)) {
      assert.ok(h.sites > 100, kind);
      assert.equal(await compileError(device, h.code), undefined, kind);
    }
    // HIDDEN holds the installed sources (choice "all"); every choice on every pass's original
    // source (shaders/_wgsl.ts, which the install does not touch).
    const passes = Object.entries(WGSL).filter(([, code]) => code.includes("@compute"));
    assert.ok(passes.length >= 28);
    for (const choice of Object.keys(CHOICES)) {
      for (const [name, code] of passes) {
        const h = await hide(device, code, choice);
        assert.ok(h.sites > 0 || !code.includes("fn opaque("), `${name} ${choice}`);
        assert.equal(await compileError(device, h.code), undefined, `${name} ${choice}`);
      }
    }
  });
});
