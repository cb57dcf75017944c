/**
 * NVIDIA's flushing of float32 subnormals, for CPU adapters (a test-only hook; the library's API
 * is untouched).
 *
 * NVIDIA's Vulkan driver (an H100 and an H200; tests/fuzz/adapter_float_probe.ts) flushes a
 * subnormal operand of a float32 + - * / (and of sqrt, comparisons) to 0 of its sign, and a
 * subnormal result as well: 2^-130 * 1 = 0, 2^-126 - 2^-127 = 2^-126 (its "sub result"),
 * 2^-130 > 0 is false. Loads, stores, bitcasts and select() keep the bits. lavapipe keeps
 * subnormals; SwiftShader flushes them but cannot run tests/_nvidia_fma.ts's rewrite. This
 * module rewrites the WGSL of the WebGPU backend (backends/_webgpu_pipelines.ts SOURCES /
 * LAZY_SOURCES) so that every float32 (scalar or vecN<f32>) binary + - * / (and x op= y), every
 * call of sqrt, inverseSqrt, fma and nv_fma* has its operands and its result passed through
 * `nv_ftz*` (0 of the same sign where the exponent bits are 0), and the operands of float
 * comparisons too. Unary minus, abs, min, max and clamp are left alone unless
 * NVIDIA_FLUSH_SIGN_MINMAX=1 (below); exp2, log2, dot and the other builtins always are; so
 * are the bodies of the emulations' own helpers (nv_fma*, nv_probe*): their arguments and results
 * are flushed at the call instead. div_f32's body is flushed as any other.
 *
 * The sites and their types are found by tests/_float_sites.ts, which this module drives with the
 * flush as its wrapper.
 *
 *   deno test -A --preload tests/_nvidia_flush.ts tests/X_test.ts
 *   deno test -A --preload tests/_nvidia_division.ts --preload tests/_nvidia_fma.ts \
 *     --preload tests/_nvidia_flush.ts tests/X_test.ts
 *
 * (this one last: it flushes the fused multiply-adds' and div_f32's arguments and results).
 *
 * @module
 */
import { type FloatSites, rewriteFloatSites } from "./_float_sites.ts";
import { rewriteBackendSources } from "./_wgsl_parse.ts";

/** The flushes: 0 of the same sign where the exponent bits are 0 (subnormals and zeros). */
export const NV_FTZ_WGSL = `
fn nv_ftz(v: f32) -> f32 {
  let b = bitcast<u32>(v);
  return select(v, bitcast<f32>(b & 0x80000000u), (b & 0x7f800000u) == 0u);
}
fn nv_ftz2(v: vec2<f32>) -> vec2<f32> {
  let b = bitcast<vec2<u32>>(v);
  return select(v, bitcast<vec2<f32>>(b & vec2<u32>(0x80000000u)), (b & vec2<u32>(0x7f800000u)) == vec2<u32>(0u));
}
fn nv_ftz3(v: vec3<f32>) -> vec3<f32> {
  let b = bitcast<vec3<u32>>(v);
  return select(v, bitcast<vec3<f32>>(b & vec3<u32>(0x80000000u)), (b & vec3<u32>(0x7f800000u)) == vec3<u32>(0u));
}
fn nv_ftz4(v: vec4<f32>) -> vec4<f32> {
  let b = bitcast<vec4<u32>>(v);
  return select(v, bitcast<vec4<f32>>(b & vec4<u32>(0x80000000u)), (b & vec4<u32>(0x7f800000u)) == vec4<u32>(0u));
}
`;

/**
 * NVIDIA_FLUSH_SIGN_MINMAX=1: abs, min, max, clamp and unary minus flushed as well (operands and
 * result). PTX's abs.ftz, neg.ftz, min.ftz and max.ftz flush subnormals, and SASS forms a float
 * negation or absolute value as an FADD with operand modifiers, which flushes under FTZ; whether
 * NVIDIA's Vulkan compiler emits them so is not measured (tests/fuzz/adapter_float_probe.ts now
 * asks). Off by default: the default emulates only what the H200's and H100's probes measured.
 */
const SIGN_MINMAX = Deno.env.get("NVIDIA_FLUSH_SIGN_MINMAX") === "1";

/**
 * `src` with every float32 operation's operands and result flushed (see the module's comment);
 * with `signMinMax` (default: NVIDIA_FLUSH_SIGN_MINMAX=1), abs, min, max, clamp and unary minus
 * too.
 */
export function flush(
  device: GPUDevice,
  src: string,
  signMinMax = SIGN_MINMAX,
): Promise<FloatSites> {
  return rewriteFloatSites(device, src, {
    signMinMax,
    wrapper: { prefix: "nv_ftz", wgsl: NV_FTZ_WGSL },
  });
}

/** Every source of the WebGPU backend flushed; what was flushed per pipeline kind. */
export function installNvidiaFlush(): Promise<Record<string, FloatSites>> {
  return rewriteBackendSources("fn nv_ftz(", flush);
}

/** What the install on import flushed, per pipeline kind. */
export const FLUSHED: Record<string, FloatSites> = await installNvidiaFlush();
