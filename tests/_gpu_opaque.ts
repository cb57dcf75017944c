/**
 * The float32 operations of the WebGPU backend's passes hidden from the shader compiler's
 * algebra (a test-only hook; the library's API is untouched). A bisection tool for a GPU that
 * gives what lavapipe does not (the H100's y NaN: NUMERICS.md, "WebGPU on NVIDIA's Vulkan
 * driver"): each chosen site's value passes through the shaders' opaque() idea, its bits OR a
 * uniform word that is always 0 (P.inf_bits ^ 0x7f800000; shaders/common.wgsl), which no
 * compiler can see through. OR, not opaque()'s XOR: a value wrapped twice (a `let` of a wrapped
 * result used as a wrapped operand, or opaque() around a wrapped site) would be x ^ z ^ z = x,
 * which compilers fold, leaving the bare value to the algebra again; (x | z) | z is x | z.
 *
 * Hidden so: a product is not contracted into a fused multiply-add, a sum of two values is not
 * reassociated or cancelled ((a + b) - a as b), a product is not regrouped ((a b) 2^-100 as
 * a (b 2^-100)). Not hidden: identities of one value (x - x, x / x, x != x: common
 * subexpression elimination makes opq(x) - opq(x) of them again), literal operands (x * 0,
 * x + 0, x * 1), the builtins that are not wrapped (min, max, abs, clamp, select, dot, trunc,
 * unary minus) and integer code. What the hardware does by itself (flushing subnormals, dividing
 * by an approximate reciprocal) stays. So a failure that `all` removes comes from a compiler
 * rewrite; one that stays may still come from a rewrite of those kinds, or from the hardware.
 * GPU_OPAQUE picks the sites:
 *
 * - `all`: the results and operands of + - * /, the operands of comparisons, and sqrt,
 *   inverseSqrt and fma calls;
 * - `mul`, `add` (+ and -), `div` (/, that is div_f32's body), `cmp` (comparisons' operands),
 *   `calls` (sqrt, inverseSqrt, fma): one kind each, to narrow down a failure that `all` removes.
 *
 *   GPU_OPAQUE=all deno run -A --preload tests/_gpu_opaque.ts tests/fuzz/attack_fuzz.ts --seeds S...
 *
 * On lavapipe (which cancels (a + b) - a and regroups products with constants) it shows that the
 * shaders do not need those rewrites either. A source without opaque() is left as it is (every
 * pass of the backend has it). tests/device/bisect.sh runs the failing seeds under each choice.
 *
 * @module
 */
import { ARITH, COMPARE, type FloatSites, rewriteFloatSites } from "./_float_sites.ts";
import { rewriteBackendSources } from "./_wgsl_parse.ts";

/** The wrappers: v with its bits OR a uniform 0, for f32 and vec2..4<f32>. */
export const GPU_OPAQUE_WGSL = `
fn gpu_opq(v: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(v) | (P.inf_bits ^ 0x7f800000u));
}
fn gpu_opq2(v: vec2<f32>) -> vec2<f32> {
  return bitcast<vec2<f32>>(bitcast<vec2<u32>>(v) | vec2<u32>(P.inf_bits ^ 0x7f800000u));
}
fn gpu_opq3(v: vec3<f32>) -> vec3<f32> {
  return bitcast<vec3<f32>>(bitcast<vec3<u32>>(v) | vec3<u32>(P.inf_bits ^ 0x7f800000u));
}
fn gpu_opq4(v: vec4<f32>) -> vec4<f32> {
  return bitcast<vec4<f32>>(bitcast<vec4<u32>>(v) | vec4<u32>(P.inf_bits ^ 0x7f800000u));
}
`;

/** GPU_OPAQUE's choices: the operators whose sites are wrapped, and whether the calls are. */
export const CHOICES: Record<string, { ops: string[]; calls: boolean }> = {
  all: { ops: [...ARITH, ...COMPARE], calls: true },
  mul: { ops: ["*"], calls: false },
  add: { ops: ["+", "-"], calls: false },
  div: { ops: ["/"], calls: false },
  cmp: { ops: [...COMPARE], calls: false },
  calls: { ops: [], calls: true },
};

/** `src` with the sites of `choice` (a key of CHOICES) wrapped; as it is without opaque(). */
export function hide(device: GPUDevice, src: string, choice: string): Promise<FloatSites> {
  const c = CHOICES[choice];
  if (!c) {
    throw new RangeError(
      `GPU_OPAQUE must be one of ${Object.keys(CHOICES).join(", ")}, got "${choice}"`,
    );
  }
  if (!src.includes("fn opaque(")) {
    return Promise.resolve({ code: src, sites: 0, candidates: 0, compiles: 0 });
  }
  return rewriteFloatSites(device, src, {
    ops: new Set(c.ops),
    calls: c.calls,
    wrapper: { prefix: "gpu_opq", wgsl: GPU_OPAQUE_WGSL },
  });
}

/** Every source of the WebGPU backend with `choice`'s sites wrapped; what was wrapped per kind. */
export function installGpuOpaque(choice: string): Promise<Record<string, FloatSites>> {
  return rewriteBackendSources("fn gpu_opq(", (device, src) => hide(device, src, choice));
}

/** What the install on import wrapped, per pipeline kind (GPU_OPAQUE; default `all`). */
export const HIDDEN: Record<string, FloatSites> = await installGpuOpaque(
  Deno.env.get("GPU_OPAQUE") ?? "all",
);
