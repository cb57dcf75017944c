//! Mergeable statistics of a set of floats, (count, mean, M2) with M2 = sum (x - mean)^2, kept in
//! f64. Chunks of a row are measured in f32 SIMD while they sit in L1 and merged here with Chan's
//! formula, which never forms E[x^2] - E[x]^2 and so survives |mean| >> std.

use crate::simd;

/// Floats per chunk: 4 KiB, so the second sweep over a chunk reads L1, not memory.
pub const CHUNK: usize = 1024;

/// (count, mean, M2) of a set of values.
#[derive(Clone, Copy)]
pub struct Moments {
    pub count: f64,
    pub mean: f64,
    pub m2: f64,
}

impl Moments {
    /// The statistics of no values.
    pub const EMPTY: Moments = Moments { count: 0.0, mean: 0.0, m2: 0.0 };

    /// Chan et al.'s parallel merge: with d = mean_b - mean_a and n = n_a + n_b,
    /// mean = mean_a + d n_b / n and M2 = M2_a + M2_b + d^2 n_a n_b / n.
    ///
    /// A non-finite mean means the values held Inf or NaN. Then the merged mean is the sum of the
    /// means, which is what a plain sum gives (Inf + finite = Inf, Inf + -Inf = NaN), and M2 is
    /// NaN, as the reference's (x - Inf)^2 terms make it.
    #[inline(always)]
    pub fn merge(self, b: Moments) -> Moments {
        if self.count == 0.0 {
            return b;
        }
        if !(self.mean.is_finite() && b.mean.is_finite()) {
            return Moments { count: self.count + b.count, mean: self.mean + b.mean, m2: f64::NAN };
        }
        let n = self.count + b.count;
        let d = b.mean - self.mean;
        Moments {
            count: n,
            mean: self.mean + d * (b.count / n),
            m2: self.m2 + b.m2 + d * d * (self.count * (b.count / n)),
        }
    }

    /// The corrected two-pass result from f32 sums around `shift`:
    /// d = sum (x - shift), q = sum (x - shift)^2, mean = shift + d / n, M2 = q - d^2 / n.
    /// Rounding can leave M2 a hair below 0 for constant data; it is clamped (NaN stays NaN).
    #[inline(always)]
    pub fn from_deviations(count: usize, shift: f32, d: f32, q: f32) -> Moments {
        let n = count as f64;
        let d = d as f64;
        let m2 = q as f64 - d * d / n;
        Moments { count: n, mean: shift as f64 + d / n, m2: if m2 < 0.0 { 0.0 } else { m2 } }
    }

    /// Unbiased variance M2 / (count - 1); count = 1 gives 0/0 = NaN, as torch's `.var()`.
    #[inline(always)]
    pub fn unbiased_var(&self) -> f64 {
        self.m2 / (self.count - 1.0)
    }
}

/// Statistics of `n` consecutive floats in f64, two-pass. The slow path for chunks whose f32 sums
/// overflowed or met Inf/NaN: it gives the reference's numbers there (a mean of Inf or NaN, and
/// exact results for huge finite values).
///
/// # Safety
/// `x` must be valid for reading `(n - 1) * stride + 1` floats.
#[inline(never)]
pub unsafe fn strided_f64(x: *const f32, n: usize, stride: usize) -> Moments {
    let mut s = 0.0f64;
    for i in 0..n {
        s += *x.add(i * stride) as f64;
    }
    let mean = s / n as f64;
    let mut m2 = 0.0f64;
    for i in 0..n {
        let e = *x.add(i * stride) as f64 - mean;
        m2 += e * e;
    }
    Moments { count: n as f64, mean, m2 }
}

/// Statistics of one chunk (n <= CHUNK floats, L1-resident after the first sweep):
/// shift = f32(sum x / n), then one more sweep for sum (x - shift) and sum (x - shift)^2.
///
/// # Safety
/// `x` must be valid for reading `n` floats, n > 0.
#[inline(always)]
unsafe fn chunk(x: *const f32, n: usize) -> Moments {
    let total = simd::sum(x, n);
    let shift = total / n as f32;
    let (d, q) = simd::deviation_sums(x, n, shift);
    if total.is_finite() && q.is_finite() {
        Moments::from_deviations(n, shift, d, q)
    } else {
        strided_f64(x, n, 1)
    }
}

/// Statistics of a contiguous row of `m` floats, chunk by chunk, merged in f64. Each float is read
/// from memory once; the second sweep of each chunk hits L1.
///
/// # Safety
/// `x` must be valid for reading `m` floats, m > 0.
#[inline(always)]
pub unsafe fn row(x: *const f32, m: usize) -> Moments {
    let mut acc = Moments::EMPTY;
    let mut i = 0;
    while i < m {
        let n = if m - i < CHUNK { m - i } else { CHUNK };
        acc = acc.merge(chunk(x.add(i), n));
        i += n;
    }
    acc
}

/// Mean and variance of a group from its members' (mean, unbiased variance), as the reference
/// derives LN and BN statistics from IN ones, in the same order of f64 operations:
/// mean = (sum_k mu_k) / K, var = (sum_k (var_k + (mu_k - mean)^2)) / K.
/// Member k is at `mu[k * stride]`, `var[k * stride]`.
#[inline(always)]
pub fn group(mu: &[f64], var: &[f64], start: usize, count: usize, stride: usize) -> (f64, f64) {
    let mut mean = 0.0;
    for k in 0..count {
        mean += mu[start + k * stride];
    }
    mean /= count as f64;
    let mut v = 0.0;
    for k in 0..count {
        let i = start + k * stride;
        let e = mu[i] - mean;
        v += var[i] + e * e;
    }
    (mean, v / count as f64)
}
