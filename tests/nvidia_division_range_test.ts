/**
 * Range-test files run with the shaders dividing as NVIDIA's Vulkan driver does
 * (tests/_nvidia_division.ts: 0 for divisors above 2^126, a subnormal divisor flushed, and a
 * times f32(1 / b) elsewhere), on whatever adapter runs them: lavapipe in CI. The files are those
 * of `tests/device/files.txt` that failed on an H200 (session 42) where SwiftShader passes them,
 * and `wide_row_far_terms_test.ts`, whose seed 90582 on a running_mean of 7 failed here (as on the
 * H200: `mean_weight`'s gradient -1.85e-3 for 6.9e-19) before pair_mean (shaders/pair.wgsl)
 * corrected its first quotient, and `sn1d_wide_var_pairs_test.ts` (attack fuzzer seed 339936 on
 * SwiftShader under the emulation). Their own runs (IEEE division) stay in their files; this one
 * registers every test of them again (their WASM tests as well) under the emulation.
 *
 * Any other WebGPU test file runs so with
 * `deno test -A --preload tests/_nvidia_division.ts tests/X_test.ts` (NVIDIA_DIVISION=range: the
 * ranges alone, IEEE division elsewhere).
 *
 * @module
 */
import { installNvidiaDivision } from "./_nvidia_division.ts";
import "./wide_row_far_terms_test.ts";
import "./partial_zero_rows_test.ts";
import "./sn1d_small_xc_test.ts";
import "./zero_member_unit_test.ts";
import "./far_mean_test.ts";
import "./logit_dot_range_test.ts";
import "./mean_below_unit_test.ts";
import "./near_unit_data_test.ts";
import "./sn1d_wide_var_pairs_test.ts";
import "./nd_count_quotients_test.ts";

// The reciprocal's rounding as well, whatever NVIDIA_DIVISION says (before any test compiles).
installNvidiaDivision(true);
