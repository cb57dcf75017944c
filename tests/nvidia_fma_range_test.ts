/**
 * Range-test files run with the shaders' float32 products fused into their additions as NVIDIA's
 * Vulkan driver contracts them (tests/_nvidia_fma.ts: every a * b + c, a * b - c, c - a * b,
 * x += a * b of floats, the product written in place, bound by a `let` or passed to a function,
 * computed as one exact fused multiply-add), on whatever adapter runs them: lavapipe in CI. The
 * files are two of `tests/device/files.txt` whose logit gradients failed on an H200 (session 42)
 * and that run in seconds: they pass under the emulation (session 45), which keeps the shaders'
 * error-free transformations checked against contraction; and `wasm_precision_test.ts`, whose
 * SwitchNorm1d logit gradients under skewed mixing (seed 18558) failed on an H100 (session 50)
 * and under the emulation on lavapipe (`var_weight`'s gradient 5.7x its tolerance: a wide line's
 * M2 summed with fused multiply-adds; NUMERICS.md). Their own runs (unfused) stay in their
 * files; this one registers every test of them again (their WASM tests as well).
 *
 * Any other WebGPU test file runs so with
 * `deno test -A --preload tests/_nvidia_fma.ts tests/X_test.ts` (after
 * `--preload tests/_nvidia_division.ts` for NVIDIA's division as well).
 *
 * @module
 */
import "./_nvidia_fma.ts";
import "./wide_row_far_terms_test.ts";
import "./logit_dot_range_test.ts";
import "./wasm_precision_test.ts";
