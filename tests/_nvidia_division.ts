/**
 * NVIDIA's float32 division, for CPU adapters (a test-only hook; the library's API is untouched).
 *
 * NVIDIA's Vulkan driver (an H200, driver 580; tests/fuzz/adapter_float_probe.ts) computes a / b
 * as a times an approximate reciprocal of b: the reciprocal of |b| above 2^126 is a subnormal,
 * flushed to 0 (3e38 / 3e38 = 0), and a subnormal b is flushed to 0 first, its reciprocal
 * infinite (2^-130 / 2^-129 = 0 * Inf = NaN). lavapipe and SwiftShader divide as IEEE 754 does,
 * so no test on them sees a shader divide by such a b. Every float32 division of the shaders
 * goes through `div_f32` (shaders/common.wgsl; tests/wgsl_float_division_guard_test.ts keeps it
 * so); `emulateNvidiaDivision` replaces its body with one that does what NVIDIA's does with
 * those ranges (a subnormal a flushed as well), and elsewhere a times f32(1 / b): two roundings,
 * within ~1.5 ulp of a / b, as a product with an approximate reciprocal may be (NVIDIA's own
 * reciprocal is not known bit for bit, so this is a stand-in for its rounding, not a copy; with
 * NVIDIA_DIVISION=range, IEEE's a / b there instead). Fused multiply-adds and the rewrites of
 * NUMERICS.md's table are not emulated.
 *
 * Importing this module installs it in the WebGPU backend's sources (backends/_webgpu_pipelines.ts)
 * before any backend compiles them, so that any WebGPU test file runs under it:
 * `deno test -A --preload tests/_nvidia_division.ts tests/far_mean_test.ts`
 * (tests/nvidia_division_range_test.ts runs a chosen set so in CI).
 *
 * @module
 */
import { LAZY_SOURCES, SOURCES } from "../backends/_webgpu_pipelines.ts";

/** div_f32 as shaders/common.wgsl defines it (one float `/`: IEEE's division). */
export const DIV_F32 = "fn div_f32(a: f32, b: f32) -> f32 {\n  return a / b;\n}";

/**
 * div_f32 as NVIDIA's driver computes it where the range matters; with `reciprocal`, also as a
 * times the float32 reciprocal of b (two roundings: within ~1.5 ulp of a / b, as an approximate
 * reciprocal may be; NVIDIA's own is not known bit for bit).
 */
export function nvidiaDivF32(reciprocal = false): string {
  return `fn div_f32(a: f32, b: f32) -> f32 {
  let ab = bitcast<u32>(a);
  let bb = bitcast<u32>(b);
  // Subnormal operands are flushed to 0 of their sign.
  let fa = select(a, bitcast<f32>(ab & 0x80000000u), (ab & 0x7f800000u) == 0u);
  let flushed = (bb & 0x7f800000u) == 0u;
  // The reciprocal: 0 of b's sign above 2^126, the infinity of b's sign for a flushed b.
  let big = (bb & 0x7fffffffu) > 0x7e800000u;
  let r = bitcast<f32>((bb & 0x80000000u) | select(0u, P.inf_bits, flushed));
  return select(${reciprocal ? "fa * (1.0 / b)" : "fa / b"}, fa * r, big || flushed);
}`;
}

/** The environment's choice (NVIDIA_DIVISION): "range" for the ranges alone, else both. */
function reciprocalByEnv(): boolean {
  try {
    return Deno.env.get("NVIDIA_DIVISION") !== "range";
  } catch {
    return true; // no --allow-env
  }
}

/** The emulation installed on import (NVIDIA_DIVISION=range: the ranges alone). */
export const NVIDIA_DIV_F32: string = nvidiaDivF32(reciprocalByEnv());

/** `source` with div_f32 replaced by `div` (it must hold div_f32 exactly once). */
export function emulateNvidiaDivision(source: string, div = NVIDIA_DIV_F32): string {
  const parts = source.split(DIV_F32);
  if (parts.length !== 2) {
    throw new Error(`a shader holds div_f32 ${parts.length - 1} times, not once`);
  }
  return parts.join(div);
}

/** `source` with an emulation installed before taken back to IEEE division. */
function withoutEmulation(source: string): string {
  return source.replace(nvidiaDivF32(true), DIV_F32).replace(nvidiaDivF32(false), DIV_F32);
}

/**
 * Every pass of the WebGPU backend compiled from now on divides as NVIDIA's driver does: with
 * the reciprocal's rounding (a times f32(1 / b)) or the ranges alone.
 */
export function installNvidiaDivision(reciprocal = reciprocalByEnv()): void {
  const div = nvidiaDivF32(reciprocal);
  const sources = [SOURCES, LAZY_SOURCES] as Record<string, string>[];
  for (const record of sources) {
    for (const key of Object.keys(record)) {
      record[key] = emulateNvidiaDivision(withoutEmulation(record[key]), div);
    }
  }
}

installNvidiaDivision();
