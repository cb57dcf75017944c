//! Mergeable statistics of a set of floats, (count, mean, M2) with M2 = sum (x - mean)^2, kept in
//! f64. A row is measured chunk by chunk in f32 SIMD as sums of deviations from a shift near the
//! mean (never E[x^2] - E[x]^2, so |mean| >> std costs nothing), and the chunks are merged in f64
//! with Chan's formula.

use crate::simd;
use core::arch::wasm32::*;

/// Floats per chunk: 4 KiB. A chunk whose shift turns out poor is swept again, from L1; and the
/// f32 partial sums of a chunk stay short (64 terms per lane), so their rounding stays small.
pub const CHUNK: usize = 1024;

/// (count, mean, M2) of a set of values.
#[derive(Clone, Copy)]
pub struct Moments {
    pub count: f64,
    pub mean: f64,
    pub m2: f64,
}

impl Moments {
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
        let n = self.count + b.count;
        let fb = b.count / n;
        self.merge_weighted(b, fb, self.count * fb)
    }

    /// `merge` with its count factors given, fb = n_b / n and fab = n_a n_b / n, for callers that
    /// merge many pairs of the same counts (the columns of a block) without a division each.
    #[inline(always)]
    pub fn merge_weighted(self, b: Moments, fb: f64, fab: f64) -> Moments {
        let count = self.count + b.count;
        if !(self.mean.is_finite() && b.mean.is_finite()) {
            return Moments { count, mean: self.mean + b.mean, m2: f64::NAN };
        }
        let d = b.mean - self.mean;
        Moments { count, mean: self.mean + d * fb, m2: self.m2 + b.m2 + d * d * fab }
    }

    /// The corrected result from f32 sums around `shift` (`inv_n` = 1/n):
    /// d = sum (x - shift), q = sum (x - shift)^2, mean = shift + d / n, M2 = q - d^2 / n.
    /// Rounding can leave M2 a hair below 0 for constant data; it is clamped (NaN stays NaN).
    #[inline(always)]
    pub fn from_deviations(count: usize, inv_n: f64, shift: f32, d: f32, q: f32) -> Moments {
        let d = d as f64;
        let m2 = q as f64 - d * d * inv_n;
        Moments {
            count: count as f64,
            mean: shift as f64 + d * inv_n,
            m2: if m2 < 0.0 { 0.0 } else { m2 },
        }
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

/// Below this, a chunk's f32 sum of squared deviations q may be made of subnormal (or flushed)
/// squares, so it is recomputed in f64. Above it, the largest square is at least TINY_Q / n
/// >= 2^-110, a normal float32, and squares small enough to be subnormal add at most
/// n * 2^-149 of absolute error, < 2^-29 of q.
pub const TINY_Q: f32 = 1.0 / (1u128 << 100) as f32;

/// The statistics of a chunk whose f32 sums overflowed, met Inf/NaN, or came out tiny: a
/// constant chunk (every x equal to `shift`, such as a row of zeros) is exact as it is, in one
/// SIMD sweep; anything else goes through `strided_f64`.
///
/// # Safety
/// As `chunk`.
#[inline(never)]
unsafe fn tiny_or_f64(x: *const f32, n: usize, shift: f32) -> Moments {
    if simd::all_equal(x, n, shift) {
        return Moments { count: n as f64, mean: shift as f64, m2: 0.0 };
    }
    strided_f64(x, n, 1)
}

/// A shift is good enough when the mean lies within sqrt(SHIFT_SLACK) standard deviations of it:
/// then M2 = q - d^2/n cancels at most a factor 1 + SHIFT_SLACK of q's rounding error. Beyond,
/// the chunk is measured again around its mean (an L1-resident sweep).
const SHIFT_SLACK: f64 = 3.0;

/// Statistics of one chunk (n <= CHUNK floats) in one sweep around `shift`:
/// d = sum (x - shift), q = sum (x - shift)^2 in f32 SIMD (`Moments::from_deviations`). If the
/// shift was far from the mean (d^2/n > SHIFT_SLACK M2, i.e. d^2 (1 + S) > S n q), a second sweep
/// around the mean just found, in f64 (`chunk_f64`), replaces it; if the f32 sums met Inf/NaN or
/// overflowed, the f64 slow path does.
///
/// # Safety
/// `x` must be valid for reading `n` floats, n > 0; `inv_n` = 1/n.
#[inline(always)]
unsafe fn chunk(x: *const f32, n: usize, inv_n: f64, shift: f32) -> Moments {
    let (d, q, dominated) = simd::deviation_sums(x, n, shift);
    if !q.is_finite() || q < TINY_Q {
        return tiny_or_f64(x, n, shift);
    }
    if dominated {
        // An outlier holds most of q (`simd::dominated`): the f32 sums of x - K round at its
        // ulp, which left the mean float32-accurate to the outlier's size only (a batch mean of
        // ~1163 with an outlier of -1.4e5 11 ulps off, `running_mean` 1.9x its tolerance; y of a
        // row whose LN and BN means carried two outliers of 1e7, cancelling in its mix, 1.35x).
        return remeasure_f64(x, n, inv_n, shift);
    }
    let (df, qf) = (d as f64, q as f64);
    if df * df * (1.0 + SHIFT_SLACK) > SHIFT_SLACK * n as f64 * qf {
        // Measured again around the mean just found, in f64: a shift that poor was set by a
        // spike among `first_shift`'s four samples (or values that far apart), and about a mean
        // the spike dominates every other deviation is ~ -spike / n, which f32 lane sums holding
        // the spike round at its ulp (a row of 0.3 with 1e7 at element 0: the mean 35 to 251
        // float32 ulps off, y of a row whose LN and BN means carry it 0.5% off). Rare in other
        // data (a shift of four samples' mean lies that far from the mean ~5e-4 of the time).
        return remeasure_f64(x, n, inv_n, (shift as f64 + df * inv_n) as f32);
    }
    Moments::from_deviations(n, inv_n, shift, d, q)
}

/// Below this ratio of the M2 that `chunk_f64` finds to its shift's part d^2 / n, the chunk is
/// measured again around its mean: M2 = q - d^2 / n then cancels at most 10 of f64's 53 bits.
const SHIFT_SLACK_F64: f64 = 1024.0;

/// `chunk` with f64 sums (`simd::deviation_sums_f64`), for SwitchNorm1d's rows and for a chunk
/// whose f32 shift was poor (`chunk`): no f32 sum can overflow or go subnormal there, so only
/// Inf/NaN take the slow path.
///
/// # Safety
/// As `chunk`.
#[inline(always)]
unsafe fn chunk_f64(x: *const f32, n: usize, inv_n: f64, shift: f32) -> Moments {
    let (mut d, mut q) = simd::deviation_sums_f64(x, n, shift as f64);
    if !q.is_finite() {
        return tiny_or_f64(x, n, shift);
    }
    let mut centre = shift as f64;
    if d * d * inv_n > SHIFT_SLACK_F64 * (q - d * d * inv_n) {
        centre += d * inv_n;
        (d, q) = simd::deviation_sums_f64(x, n, centre);
    }
    let m2 = q - d * d * inv_n;
    Moments { count: n as f64, mean: centre + d * inv_n, m2: if m2 < 0.0 { 0.0 } else { m2 } }
}

/// `chunk_f64` about `better`, out of line: the path of a poor shift or a dominated chunk
/// (`chunk`), rare, kept out of the sweep that every chunk takes.
///
/// # Safety
/// As `chunk`.
#[inline(never)]
unsafe fn remeasure_f64(x: *const f32, n: usize, inv_n: f64, better: f32) -> Moments {
    chunk_f64(x, n, inv_n, better)
}

/// How rows of a fixed length m split into chunks, with the reciprocals every row needs, so
/// that the per-row work has no division.
pub struct RowPlan {
    m: usize,
    inv_chunk: f64,
    inv_last: f64,
    /// 1 / (m - 1): Inf for m = 1, so that M2 (0) times it is NaN, torch's 0/0.
    pub inv_m1: f64,
}

impl RowPlan {
    pub fn new(m: usize) -> RowPlan {
        let last = m - (m - 1) / CHUNK * CHUNK;
        RowPlan {
            m,
            inv_chunk: 1.0 / CHUNK as f64,
            inv_last: 1.0 / last as f64,
            inv_m1: 1.0 / (m as f64 - 1.0),
        }
    }

    /// A shift for the first chunk of the row at `x`: the mean of the middle two of four floats
    /// spread over it (a spike among the four, such as an outlier at a row's first element,
    /// left the mean of all four far from every other value, whose x - K the f32 sums then
    /// rounded at the spike's ulp, where neither the shift test nor `simd::dominated` took the
    /// chunk again: rows of 0.3 with 1e6 at element 3 of 12, y of a row whose LN and BN means
    /// carried two such spikes 7.2x its tolerance). Callers take it one row ahead, so that its
    /// loads (the row's first touch of memory) do not hold up the sweep that needs it.
    ///
    /// # Safety
    /// `x` must be valid for reading m floats, m > 0.
    #[inline(always)]
    pub unsafe fn first_shift(&self, x: *const f32) -> f32 {
        let first = if self.m < CHUNK { self.m } else { CHUNK };
        if first >= 4 {
            let k = first / 4;
            // The middle two by f32x4 pmin / pmax, without branches (scalar compares and
            // selects, or f32::min / max with their NaN rules, cost the forward at rows of 49
            // floats 3% to 30%); a NaN among the four leaves some shift, and the sweep's sums
            // NaN, which take the slow path as before.
            let v = f32x4(*x, *x.add(k), *x.add(2 * k), *x.add(3 * k));
            let pairs = i32x4_shuffle::<1, 0, 3, 2>(v, v);
            let (lo, hi) = (f32x4_pmin(v, pairs), f32x4_pmax(v, pairs));
            let low = f32x4_pmax(lo, i32x4_shuffle::<2, 3, 0, 1>(lo, lo));
            let high = f32x4_pmin(hi, i32x4_shuffle::<2, 3, 0, 1>(hi, hi));
            f32x4_extract_lane::<0>(f32x4_add(low, high)) * 0.5
        } else {
            *x
        }
    }

    /// Statistics of a contiguous row of m floats, chunk by chunk, merged in f64 (Chan). Each
    /// float is read from memory once. The first chunk is measured around `shift` (from
    /// `first_shift`); each later chunk around the mean of the chunks before it.
    ///
    /// # Safety
    /// `x` must be valid for reading m floats, m > 0.
    #[inline(always)]
    pub unsafe fn row(&self, x: *const f32, shift: f32) -> Moments {
        let m = self.m;
        let first = if m < CHUNK { m } else { CHUNK };
        let inv = if first == m { self.inv_last } else { self.inv_chunk };
        let mut acc = chunk(x, first, inv, shift);
        let mut i = first;
        while i < m {
            let n = if m - i < CHUNK { m - i } else { CHUNK };
            let inv = if n == CHUNK { self.inv_chunk } else { self.inv_last };
            acc = acc.merge(chunk(x.add(i), n, inv, acc.mean as f32));
            i += n;
        }
        acc
    }

    /// `row` with f64 sums (`chunk_f64`): statistics accurate to f64 rounding, for SwitchNorm1d,
    /// whose LN and BN statistics are differenced in the logit gradients.
    ///
    /// # Safety
    /// As `row`.
    #[inline(always)]
    pub unsafe fn row_f64(&self, x: *const f32, shift: f32) -> Moments {
        let m = self.m;
        let first = if m < CHUNK { m } else { CHUNK };
        let inv = if first == m { self.inv_last } else { self.inv_chunk };
        let mut acc = chunk_f64(x, first, inv, shift);
        let mut i = first;
        while i < m {
            let n = if m - i < CHUNK { m - i } else { CHUNK };
            let inv = if n == CHUNK { self.inv_chunk } else { self.inv_last };
            acc = acc.merge(chunk_f64(x.add(i), n, inv, acc.mean as f32));
            i += n;
        }
        acc
    }
}
