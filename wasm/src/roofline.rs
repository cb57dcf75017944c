//! The memory floor of a forward: the same bytes moved, with no math. It reads the tensor once
//! (as the statistics pass does) and then reads it again and writes the output (as the normalize
//! pass does). Benchmarks divide the kernel's time by this one's.

use crate::simd;
use crate::simd_grad;

/// Returns sum_i x[i] (so that the first read cannot be optimised away), then y[i] = x[i].
///
/// # Safety
/// `x` must be valid for reading and `y` for writing `len` floats; no partial overlap.
pub unsafe fn roofline(x: *const f32, y: *mut f32, len: usize) -> f32 {
    let s = simd::sum(x, len);
    simd::copy(x, y, len);
    s
}

/// The memory floor of a backward: reads x and dy once (as the reduction does), then reads them
/// again and writes dx (as the dx sweep does), with one add per element in each sweep. Returns
/// sum_i (x[i] + dy[i]) so that the first sweep is not dead; `dx[i] = x[i] + dy[i]`.
///
/// # Safety
/// `x`, `dy` must be valid for reading and `dx` for writing `len` floats; `dx` overlaps neither
/// input, or equals one of them.
pub unsafe fn roofline_backward(x: *const f32, dy: *const f32, dx: *mut f32, len: usize) -> f32 {
    let s = simd_grad::sum_pair(x, dy, len);
    simd_grad::add(x, dy, dx, len);
    s
}
