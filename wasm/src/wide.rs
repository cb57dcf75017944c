//! Rows whose spread is far from 1: the float32 sweeps of the normalize and dx passes compute
//! `x - hi` and products of it with per-row constants in f32, which overflow (x ~ 1e19 and up:
//! squares and constants like s^3 leave float32's range) or lose every digit to subnormals
//! (std ~ 1e-20 with eps = 0). A row is "wide" when var + eps lies outside
//! [2^-120, 2^120] (its std outside [2^-60, 2^60]); such a row is swept with x scaled by an exact
//! power of two `sc` near 1/std, so that every f32 intermediate is O(1) times the result:
//!   normalize: y  = (x sc - h) t + bias            (h = f32(mu sc), t = gamma s / sc)
//!   dx:        dx = dy a + (x sc - h) b' + k'       (b' = b / sc)
//! Wide rows are rare (they need eps near 0 or |x| beyond 1e18), so their sweeps are plain scalar
//! loops; other rows keep the SIMD sweeps, bit for bit.

/// var + eps below this (std < 2^-60) makes a row wide.
pub const LOW: f64 = 1.0 / (1u128 << 120) as f64;
/// var + eps above this (std > 2^60) makes a row wide.
pub const HIGH: f64 = (1u128 << 120) as f64;

/// The power of two `sc` a wide row is scaled by (about 1/sqrt(ve)), or 0 when the row with
/// ve = var + eps is not wide (ve in range, 0, Inf or NaN: those keep the plain sweep, whose
/// results for them are the reference's). `sc` is kept within float32's normal range.
#[inline(always)]
pub fn scale(ve: f64) -> f64 {
    if !((ve > 0.0 && ve < LOW) || (ve > HIGH && ve < f64::INFINITY)) {
        return 0.0;
    }
    let e2 = ((ve.to_bits() >> 52) & 0x7ff) as i64 - 1023;
    let e = e2.div_euclid(2).clamp(-126, 126);
    f64::from_bits(((1023 - e) as u64) << 52)
}

/// The normalize constants of a wide row, f32 [h, t, bias, sc] (`sc` != 0 marks the row wide):
/// mu = the mixed mean, s = 1/sqrt(var + eps), all in f64.
#[inline(never)]
pub fn normalize_constants(mu: f64, s: f64, gamma: f64, beta: f64, sc: f64) -> [f32; 4] {
    let scaled = mu * sc;
    let h = scaled as f32;
    let lo = scaled - h as f64;
    let t = gamma * s / sc;
    let bias = if lo == 0.0 { beta } else { beta - lo * t };
    [h, t as f32, bias as f32, sc as f32]
}

/// `y[i] = (x[i] sc - h) t + bias` for a wide row, [h, t, bias, sc] = `k`. `y` may equal `x`.
///
/// # Safety
/// `x` valid for reading and `y` for writing n floats, the same pointer or not overlapping.
#[inline(never)]
pub unsafe fn normalize(x: *const f32, y: *mut f32, n: usize, k: [f32; 4]) {
    let [h, t, b, sc] = k;
    for i in 0..n {
        *y.add(i) = (*x.add(i) * sc - h) * t + b;
    }
}

/// `dx[i] = dy[i] a + (x[i] sc - h) b + k` for a wide row, [h, a, b, k] = `abk`. `dx` may equal
/// `dy` or `x`.
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
    abk: [f32; 4],
    sc: f32,
) {
    let [h, a, b, k] = abk;
    for i in 0..n {
        *dx.add(i) = (*dy.add(i) * a + (*x.add(i) * sc - h) * b) + k;
    }
}

/// (sum dy, sum dy (x - hi)) of one row in f64: the backward row sums of a wide row, or of one
/// whose f32 sums overflowed.
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
