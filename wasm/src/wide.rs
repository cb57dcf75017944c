//! Rows whose float32 sweeps could leave float32's range ("wide" rows). The normalize and dx
//! sweeps of an ordinary row work in f32 with per-row f32 constants:
//!   normalize: y  = (x - hi) scale + bias
//!   dx:        dx = (dy a + (x - hi) b) + k
//! Any of those constants, products or sums can overflow float32 (or, for var + eps outside
//! [2^-120, 2^120], lose their digits to subnormals) although the float64 result fits: gamma 1e33
//! over a std of 3e-7 makes `scale` 3e39 while y is 1e33; |dy| near 3e38 times a = gamma s ~ 1
//! overflows `dy a` while dx is 1e38. Such a row is swept in f64 instead, with the reference's
//! formula and f64 per-row constants, and its results are rounded to float32 once, as PyTorch's
//! float32 cast does: a float64 value beyond float32's largest becomes the infinity of its sign.
//!
//! A row is wide when var + eps is outside [2^-120, 2^120], or when a bound on its f32 sweep's
//! terms from cheap per-row quantities fails: |x - hi| <= D with
//! D^2 = 2 ((M - 1) var_in + (mu_in - hi)^2) + 1 (no deviation exceeds the root of the sum of
//! squared deviations; the 1 makes the bound cover the constants themselves). Normalize: D |scale| and |bias| at most `LIMIT`, so every f32
//! step stays below 2^127 and y is the exact result rounded step by step. dx: |a| <= `LIMIT`,
//! D |b| and |k| at most `REST`; |dy| is not bounded (that would cost a max in the reduce
//! sweep), but with the other terms that small, `dy a` is the only term that can pass float32's
//! largest value, f32 multiplication rounds it correctly (to the infinity of its sign where the
//! exact product is beyond float32), and the sum differs from the float64 value rounded once by
//! float32 rounding only: the one difference left is a dx within a few float32 ulps of the
//! largest value (2^-24 relative), which either side may round to the infinity of its sign.
//! Wide rows are rare (huge gamma, eps near 0, |x| or gradients beyond ~1e18); their sweeps are
//! plain f64 loops, and every other row keeps the SIMD sweeps, bit for bit.

/// var + eps below this (std < 2^-60) makes a row wide.
pub const LOW: f64 = 1.0 / (1u128 << 120) as f64;
/// var + eps above this (std > 2^60) makes a row wide.
pub const HIGH: f64 = (1u128 << 120) as f64;
/// Bound of one f32 sweep term: the sum of two (normalize) or three (dx) terms below this, with
/// the rounding of each f32 step, stays below 2^127.
pub const LIMIT: f64 = (1u128 << 125) as f64;
/// Bound of the dx sweep's terms besides `dy a`, 2^100: where `dy a` passes float32's largest
/// value, they change the result by 2^-27 of it at most.
pub const REST: f64 = (1u128 << 100) as f64;

/// Whether var + eps = `ve` is outside [LOW, HIGH] (0, Inf and NaN are not: the plain sweeps'
/// results for them are the reference's).
#[inline(always)]
pub fn out_of_range(ve: f64) -> bool {
    (ve > 0.0 && ve < LOW) || (ve > HIGH && ve < f64::INFINITY)
}

/// Whether the normalize sweep of a row must be done in f64: `ve` = var + eps, `m1` = M - 1,
/// `var_in` the row's IN variance, `d` = mu_in - hi, `scale` and `bias` its f64 constants. The
/// bound: (D^2 / 2) scale^2 + bias^2 <= LIMIT^2 / 2 with D^2 / 2 = (M - 1) var_in + d^2 + 1/2
/// (see above), so that D |scale| and |bias| are at most LIMIT. NaN fails it.
#[inline(always)]
pub fn normalize_is_wide(ve: f64, m1: f64, var_in: f64, d: f64, scale: f64, bias: f64) -> bool {
    let half_spread2 = (m1 * var_in + d * d) + 0.5;
    let terms = half_spread2 * (scale * scale) + bias * bias;
    out_of_range(ve) || !(terms <= LIMIT * LIMIT / 2.0)
}

/// `y[i] = (x[i] - mu) scale + beta` in f64 for a wide row, rounded to f32 once. `y` may equal `x`.
///
/// # Safety
/// `x` valid for reading and `y` for writing n floats, the same pointer or not overlapping.
#[inline(never)]
pub unsafe fn normalize(x: *const f32, y: *mut f32, n: usize, [mu, scale, beta]: [f64; 3]) {
    for i in 0..n {
        *y.add(i) = ((*x.add(i) as f64 - mu) * scale + beta) as f32;
    }
}

/// `dx[i] = dy[i] a + k + (x[i] - mu_in) b` in f64 for a wide row (the reference's order),
/// rounded to f32 once. `dx` may equal `dy` or `x`.
///
/// # Safety
/// `x`, `dy` valid for reading and `dx` for writing n floats (dx the same as one or overlapping
/// neither).
#[inline(never)]
pub unsafe fn grad_dx(
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    n: usize,
    mu_in: f64,
    [a, b, k]: [f64; 3],
) {
    for i in 0..n {
        *dx.add(i) = ((*dy.add(i) as f64 * a + k) + (*x.add(i) as f64 - mu_in) * b) as f32;
    }
}

/// (sum dy, sum dy (x - hi)) of one row in f64: the backward row sums of a row whose var + eps
/// is out of range (`out_of_range`: its f32 products may be subnormal), or of one whose f32 sums
/// overflowed.
///
/// # Safety
/// `x`, `dy` valid for reading n floats.
#[inline(never)]
pub unsafe fn grad_sums_f64(x: *const f32, dy: *const f32, n: usize, hi: f32) -> (f64, f64) {
    let (mut g, mut p) = (0.0f64, 0.0f64);
    let hi = hi as f64;
    for i in 0..n {
        let d = *dy.add(i) as f64;
        g += d;
        p += d * (*x.add(i) as f64 - hi);
    }
    (g, p)
}
