/**
 * The shaders' float32 division under NVIDIA's (tests/_nvidia_division.ts): the emulation does
 * what tests/fuzz/adapter_float_probe.ts measured on an H200 (3e38 / 3e38 = 0, 2^-130 / 2^-129 =
 * NaN), and fdiv (shaders/common.wgsl) divides by a b beyond 2^126 or below 2^-126 as IEEE 754
 * does all the same, against the float64 quotient rounded to float32.
 *
 * @module
 */
import assert from "node:assert/strict";
import { PARAMS_BYTES } from "../backends/_webgpu_plan.ts";
import { emulateNvidiaDivision, nvidiaDivF32 } from "./_nvidia_division.ts";
import { runShader, withDevice } from "./_run_shader.ts";
import { webgpuTest } from "./_webgpu.ts";

const common = await Deno.readTextFile(new URL("../shaders/common.wgsl", import.meta.url));

/** A shader applying `fn` (div_f32, fdiv or fdiv_n) to the pairs of `io`, in place. */
function divider(fn: string, nvidia: boolean): string {
  const text = common + `
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> io: array<f32>;
@compute @workgroup_size(1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  _ = P.inf_bits; // bound whatever fn uses
  io[2u * id.x] = ${fn}(io[2u * id.x], io[2u * id.x + 1u]);
}`;
  return nvidia ? emulateNvidiaDivision(text, nvidiaDivF32(false)) : text; // the ranges alone
}

/** fn(a, b) for each pair of `pairs`, on the adapter. */
async function divide(fn: string, nvidia: boolean, pairs: number[][]): Promise<Float32Array> {
  return await withDevice(async (device) => {
    const params = new DataView(new ArrayBuffer(PARAMS_BYTES));
    params.setUint32(144, 0x7f800000, true); // inf_bits, as _webgpu_plan.ts writes it
    const out = await runShader(
      device,
      divider(fn, nvidia),
      [
        { binding: 0, data: params, uniform: true },
        { binding: 1, data: Float32Array.from(pairs.flat()) },
      ],
      pairs.length,
      1,
    );
    return Float32Array.from(pairs, (_, i) => out[2 * i]);
  });
}

/** Divisors beyond 2^126 and below 2^-126 (subnormal), and ordinary ones, with their dividends. */
const PAIRS = [
  [3e38, 3e38],
  [2 ** -130, 2 ** -129],
  [1.5, 2 ** 126.5],
  [-(2 ** 100), 3.3e38],
  [2 ** -125, 2 ** 127],
  [1e-30, 1e-40],
  [-3e-39, 7e-42],
  [1e-20, 2 ** -149],
  [1, 3],
  [1e38, 2 ** 126],
  [7e-38, 2 ** -126],
  [0, 1e-39],
];

/** The float64 quotient rounded to float32 (the IEEE float32 division). */
const REFERENCE = Float32Array.from(PAIRS, ([a, b]) => Math.fround(a) / Math.fround(b));

webgpuTest(
  "the emulation divides as the H200 does: 0 beyond 2^126, a subnormal divisor flushed",
  async () => {
    const got = await divide("div_f32", true, PAIRS);
    assert.equal(got[0], 0); // 3e38 / 3e38
    assert(Number.isNaN(got[1])); // 2^-130 / 2^-129: 0 * Inf
    assert.equal(got[2], 0);
    assert.equal(got[5], Infinity); // 1e-30 / (1e-40 flushed)
    assert.equal(got[8], REFERENCE[8]);
    assert.equal(got[9], REFERENCE[9]); // 2^126 itself divides
    assert.equal(got[10], REFERENCE[10]);
  },
);

webgpuTest(
  "fdiv divides by |b| beyond 2^126 and by a subnormal b under NVIDIA's division",
  async () => {
    assert.deepEqual(await divide("fdiv", true, PAIRS), REFERENCE);
    // And with the adapter's own division: on SwiftShader, which flushes subnormal operands as
    // NVIDIA's does, a plain a / b gives NaN, Infinity and NaN for pairs 1, 5 and 6.
    assert.deepEqual(await divide("fdiv", false, PAIRS), REFERENCE);
  },
);
