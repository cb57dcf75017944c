/**
 * Shared vectors outside WebGPU's range (shaders/common.wgsl `in_gpu_range`: var + eps of a
 * row in [2^-120, 2^120]). There WebGPU must give NaN or the truth, never a wrong finite number;
 * the suites check exactly that for these vectors on WebGPU (issue 10: full-range support on
 * WebGPU is still open; the reference and WASM backends match these vectors).
 *
 * @module
 */
import type { BackendName } from "../backends/_backend.ts";
import { assertClose, type Tolerance } from "./_close.ts";

const OUTSIDE_WEBGPU_RANGE = new Set([
  "sn1d_range_huge_1e19",
  "sn1d_range_tiny_eps0",
  "sn2d_range_huge_1e19",
  "sn2d_range_spread_3e38",
  "sn2d_range_subnormal_squares_eps0",
  "sn2d_range_tiny_eps0",
  "sn2d_range_tiny_eps0_unit_dy",
]);

/** Whether vector `name` lies outside `backend`'s range. */
export function outsideRange(backend: BackendName, name: string): boolean {
  return backend === "webgpu" && OUTSIDE_WEBGPU_RANGE.has(name);
}

/**
 * assertClose, except that where `nanAllowed` is set an actual NaN is accepted in place of any
 * expected value: every finite result must still be right.
 */
export function assertCloseOrNaN(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance,
  what: string,
  nanAllowed: boolean,
): void {
  if (!nanAllowed) return assertClose(actual, expected, tol, what);
  const want = Float64Array.from(expected, (e, i) => Number.isNaN(actual[i]) ? NaN : e);
  assertClose(actual, want, tol, `${what} (NaN accepted: outside the backend's range)`);
}
