//! f32x4 loops over contiguous runs of floats: the only code that touches tensor data element by
//! element. Every loop uses unaligned `v128` loads and stores (wasm allows them; rows start at
//! `r * M` floats, which is not 16-byte aligned when M % 4 != 0) and finishes the tail (n % 4)
//! with scalar code in the same order of operations. The backward's loops are in `simd_grad`.

use core::arch::wasm32::*;

/// IEEE square root of an f64 (one `f64.sqrt` after optimisation); core has no `f64::sqrt`.
#[inline(always)]
pub fn sqrt_f64(v: f64) -> f64 {
    f64x2_extract_lane::<0>(f64x2_sqrt(f64x2_splat(v)))
}

/// |v| (core's f64 has no `abs` in the Rust this builds with).
#[inline(always)]
pub fn abs_f64(v: f64) -> f64 {
    if v < 0.0 {
        -v
    } else {
        v
    }
}

/// Horizontal sum of the four lanes.
#[inline(always)]
pub(crate) fn hsum(v: v128) -> f32 {
    (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
        + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
}

#[inline(always)]
pub(crate) unsafe fn load(p: *const f32) -> v128 {
    v128_load(p as *const v128)
}

#[inline(always)]
pub(crate) unsafe fn store(p: *mut f32, v: v128) {
    v128_store(p as *mut v128, v)
}

/// `sum_i x[i]` for i < n, in f32 with four f32x4 accumulators (16 partial sums), so that the
/// additions do not wait on each other and each partial sum stays short (n / 16 terms).
///
/// # Safety
/// `x` must be valid for reading `n` floats.
#[inline(always)]
pub unsafe fn sum(x: *const f32, n: usize) -> f32 {
    let (mut a0, mut a1, mut a2, mut a3) =
        (f32x4_splat(0.0), f32x4_splat(0.0), f32x4_splat(0.0), f32x4_splat(0.0));
    let mut i = 0;
    while i + 16 <= n {
        a0 = f32x4_add(a0, load(x.add(i)));
        a1 = f32x4_add(a1, load(x.add(i + 4)));
        a2 = f32x4_add(a2, load(x.add(i + 8)));
        a3 = f32x4_add(a3, load(x.add(i + 12)));
        i += 16;
    }
    while i + 4 <= n {
        a0 = f32x4_add(a0, load(x.add(i)));
        i += 4;
    }
    let mut s = hsum(f32x4_add(f32x4_add(a0, a1), f32x4_add(a2, a3)));
    while i < n {
        s += *x.add(i);
        i += 1;
    }
    s
}

/// Whether every x[i] (i < n) equals `v` (NaN equals nothing), in one SIMD sweep.
///
/// # Safety
/// `x` must be valid for reading `n` floats.
#[inline(never)]
pub unsafe fn all_equal(x: *const f32, n: usize, v: f32) -> bool {
    let s = f32x4_splat(v);
    let mut same = i32x4_splat(-1);
    let mut i = 0;
    while i + 4 <= n {
        same = v128_and(same, f32x4_eq(load(x.add(i)), s));
        i += 4;
    }
    let mut all = i32x4_all_true(same);
    while i < n {
        all &= *x.add(i) == v;
        i += 1;
    }
    all
}

/// Lane masks that keep the last k lanes of a vector (k = 0..3), for tails of n % 4 floats.
pub(crate) static TAIL_MASKS: [[u32; 4]; 4] =
    [[0, 0, 0, 0], [0, 0, 0, !0], [0, 0, !0, !0], [0, !0, !0, !0]];

/// `(sum_i (x[i] - shift), sum_i (x[i] - shift)^2)` for i < n, in f32. With `shift` near the
/// mean the deviations are small, so neither sum cancels. Four accumulator pairs (16 partial sums
/// each) keep the adds independent; the n % 4 tail is the masked top of the vector ending at n.
///
/// # Safety
/// `x` must be valid for reading `n` floats.
#[inline(always)]
pub unsafe fn deviation_sums(x: *const f32, n: usize, shift: f32) -> (f32, f32, bool) {
    if n < 4 {
        let (mut d, mut q) = (0.0, 0.0);
        for i in 0..n {
            let e = *x.add(i) - shift;
            d += e;
            q += e * e;
        }
        return (d, q, false);
    }
    let s = f32x4_splat(shift);
    let z = f32x4_splat(0.0);
    let (mut d0, mut d1, mut d2, mut d3) = (z, z, z, z);
    let (mut q0, mut q1, mut q2, mut q3) = (z, z, z, z);
    let mut i = 0;
    while i + 16 <= n {
        let e0 = f32x4_sub(load(x.add(i)), s);
        let e1 = f32x4_sub(load(x.add(i + 4)), s);
        let e2 = f32x4_sub(load(x.add(i + 8)), s);
        let e3 = f32x4_sub(load(x.add(i + 12)), s);
        d0 = f32x4_add(d0, e0);
        d1 = f32x4_add(d1, e1);
        d2 = f32x4_add(d2, e2);
        d3 = f32x4_add(d3, e3);
        q0 = f32x4_add(q0, f32x4_mul(e0, e0));
        q1 = f32x4_add(q1, f32x4_mul(e1, e1));
        q2 = f32x4_add(q2, f32x4_mul(e2, e2));
        q3 = f32x4_add(q3, f32x4_mul(e3, e3));
        i += 16;
    }
    while i + 4 <= n {
        let e = f32x4_sub(load(x.add(i)), s);
        d0 = f32x4_add(d0, e);
        q0 = f32x4_add(q0, f32x4_mul(e, e));
        i += 4;
    }
    let r = n - i;
    if r > 0 {
        let mask = v128_load(TAIL_MASKS[r].as_ptr() as *const v128);
        let e = v128_and(f32x4_sub(load(x.add(n - 4)), s), mask);
        d1 = f32x4_add(d1, e);
        q1 = f32x4_add(q1, f32x4_mul(e, e));
    }
    let dv = f32x4_add(f32x4_add(d0, d1), f32x4_add(d2, d3));
    let d = hsum(dv);
    let qv = f32x4_add(f32x4_add(q0, q1), f32x4_add(q2, q3));
    let q = hsum(qv);
    (d, q, outlier_lanes(d, q, n, [d0, d1, d2, d3], [q0, q1, q2, q3]))
}

/// Whether an outlier dominates a sweep of n floats (`dominated`, and from `TWO_LANES` floats
/// `two_dominate`), from its sums about the shift: d and q, and per lane `d` and `q` (four f32x4
/// accumulators, 16 partial sums). From `TWO_LANES` floats every lane's squares are taken about
/// the sweep's mean (`about_mean`).
#[inline(always)]
fn outlier_lanes(d: f32, q: f32, n: usize, dl: [v128; 4], ql: [v128; 4]) -> bool {
    let sum = |v: [v128; 4]| f32x4_add(f32x4_add(v[0], v[1]), f32x4_add(v[2], v[3]));
    if n < TWO_LANES {
        return dominated(sum(ql), q, n);
    }
    let delta = d / n as f32;
    let (m2, sixteenth) = (q - d * delta, n as f32 / 16.0);
    let lanes = [0, 1, 2, 3].map(|k| about_mean(ql[k], dl[k], delta, sixteenth));
    dominated(sum(lanes), m2, n) || two_dominate(lanes, m2)
}

/// Squared deviations about the sweep's mean, per partial sum: q - 2 delta d + count delta^2 for
/// sums d and q about the shift, delta = mean - shift and `count` terms per partial sum (f32; the
/// n % 4 tail's few terms are not counted). The tests weigh lanes so: about a poor shift (a spike
/// among `first_shift`'s four samples puts it halfway to it) every deviation grows, and an
/// outlier's lane held 55% to 65% of q where it holds ~99% of the squares about the mean (a row of
/// 2048 with 1.9e5 at element 0 and 1e4 at 768: its mean 154 to 205 float32 ulps off,
/// `running_mean` with it). Weighed against q - d^2 / n alone, a quarter of the sweep about a
/// shift 1.5 stds off passed 3/4 of it (ordinary rows' first chunks taken again in f64, attack
/// helper-84). A shift so poor that this cancels marks the sweep dominated: it is measured again
/// in f64, as the poor-shift test (`moments::chunk`) would take it anyway.
#[inline(always)]
fn about_mean(q: v128, d: v128, delta: f32, count: f32) -> v128 {
    let two_delta = f32x4_splat(2.0 * delta);
    f32x4_add(f32x4_sub(q, f32x4_mul(two_delta, d)), f32x4_splat(count * delta * delta))
}

/// Whether one lane of `qv` (a quarter of a sweep's squared deviations, f32x4) holds more than
/// `dominant_share` of `q`, their sum (from `TWO_LANES` floats on, both about the sweep's mean:
/// `about_mean`): an outlier, whose lane's partial sums of x - K then carry its size and round
/// every later term at its ulp (NaN compares false).
#[inline(always)]
pub(crate) fn dominated(qv: v128, q: f32, n: usize) -> bool {
    v128_any_true(f32x4_gt(qv, f32x4_splat(q * dominant_share(n))))
}

/// From this many floats a sweep's 16 partial sums of squares hold 16 squares each or more,
/// enough for `two_dominate` (two of them hold more than 3/4 of Gaussian data's q ~never; at
/// 256 floats a lognormal row's ~2% of the time, as often as `dominated` takes such rows).
const TWO_LANES: usize = 256;

/// Whether two of a sweep's 16 partial sums of squares (`q`: four f32x4 accumulators) hold more
/// than 3/4 of `q_sum`, all about the sweep's mean (`about_mean`): two outliers in
/// different lanes (`dominated` takes one, or two in one lane of the summed accumulators), whose
/// lanes' sums of x - K round every later term at their ulp. Two outliers of 1.3e7 and -1.9e7
/// in a row of 1026 left its mean 6 float32 ulps off and y of a narrow row mixed on it 2.7x to
/// 5.4x its tolerance. The two largest of the four lane groups' largest sums stand for the two
/// largest of 16 (two in one group `dominated` takes).
#[inline(always)]
fn two_dominate(q: [v128; 4], q_sum: f32) -> bool {
    let top = f32x4_pmax(f32x4_pmax(q[0], q[1]), f32x4_pmax(q[2], q[3]));
    let swapped = i32x4_shuffle::<1, 0, 3, 2>(top, top);
    let (hi, lo) = (f32x4_pmax(top, swapped), f32x4_pmin(top, swapped));
    // Lane 0: the larger of lanes 0 and 1 plus the smaller, or plus the larger of lanes 2 and 3.
    let within = f32x4_add(hi, lo);
    let across = f32x4_add(hi, i32x4_shuffle::<2, 3, 0, 1>(hi, hi));
    v128_any_true(f32x4_gt(f32x4_pmax(within, across), f32x4_splat(0.75 * q_sum)))
}

/// The share of q one lane of a sweep of n floats may hold (`dominated`): 3/4 from 16 floats on
/// (Gaussian data, 4 or more squares a lane, exceed it ~5e-3 of the time at 16 floats, ~1e-6 from
/// 48 on), 0.95 below (~5e-4 of the time at 8 floats; four values about their own mean, as a row
/// of 4 is measured, never pass 3/4).
#[inline(always)]
fn dominant_share(n: usize) -> f32 {
    if n >= 16 {
        0.75
    } else {
        0.95
    }
}

/// `deviation_sums` with both sums returned as one f64x2 (d, q), their horizontal sums sharing
/// shuffles: rows can be as short as 49 floats, where the per-row fixed cost matters.
///
/// # Safety
/// `x` must be valid for reading `n` floats.
#[inline(always)]
pub unsafe fn deviation_sums_f64x2(x: *const f32, n: usize, shift: f32) -> v128 {
    if n < 4 {
        let (d, q, _) = deviation_sums(x, n, shift);
        return f64x2(d as f64, q as f64);
    }
    let s = f32x4_splat(shift);
    let z = f32x4_splat(0.0);
    let (mut d0, mut d1, mut d2, mut d3) = (z, z, z, z);
    let (mut q0, mut q1, mut q2, mut q3) = (z, z, z, z);
    let mut i = 0;
    while i + 16 <= n {
        let e0 = f32x4_sub(load(x.add(i)), s);
        let e1 = f32x4_sub(load(x.add(i + 4)), s);
        let e2 = f32x4_sub(load(x.add(i + 8)), s);
        let e3 = f32x4_sub(load(x.add(i + 12)), s);
        d0 = f32x4_add(d0, e0);
        d1 = f32x4_add(d1, e1);
        d2 = f32x4_add(d2, e2);
        d3 = f32x4_add(d3, e3);
        q0 = f32x4_add(q0, f32x4_mul(e0, e0));
        q1 = f32x4_add(q1, f32x4_mul(e1, e1));
        q2 = f32x4_add(q2, f32x4_mul(e2, e2));
        q3 = f32x4_add(q3, f32x4_mul(e3, e3));
        i += 16;
    }
    while i + 4 <= n {
        let e = f32x4_sub(load(x.add(i)), s);
        d0 = f32x4_add(d0, e);
        q0 = f32x4_add(q0, f32x4_mul(e, e));
        i += 4;
    }
    let r = n - i;
    if r > 0 {
        let mask = v128_load(TAIL_MASKS[r].as_ptr() as *const v128);
        let e = v128_and(f32x4_sub(load(x.add(n - 4)), s), mask);
        d1 = f32x4_add(d1, e);
        q1 = f32x4_add(q1, f32x4_mul(e, e));
    }
    let d = f32x4_add(f32x4_add(d0, d1), f32x4_add(d2, d3));
    let q = f32x4_add(f32x4_add(q0, q1), f32x4_add(q2, q3));
    // [d0 + d2, d1 + d3, q0 + q2, q1 + q3], then lanes 0 and 2 hold the sums.
    let h = f32x4_add(i32x4_shuffle::<0, 1, 4, 5>(d, q), i32x4_shuffle::<2, 3, 6, 7>(d, q));
    let h = f32x4_add(h, i32x4_shuffle::<1, 0, 3, 2>(h, h));
    let sums = f64x2_promote_low_f32x4(i32x4_shuffle::<0, 2, 0, 2>(h, h));
    // A lane that an outlier dominates: q NaN, so that the caller measures the row again
    // (`RowPlan::row`, whose `moments::chunk` takes it in f64).
    let (dt, qt) = (f32x4_extract_lane::<0>(h), f32x4_extract_lane::<2>(h));
    if outlier_lanes(dt, qt, n, [d0, d1, d2, d3], [q0, q1, q2, q3]) {
        return f64x2_replace_lane::<1>(sums, f64::NAN);
    }
    sums
}

/// `deviation_sums` of four rows of n floats at once (4 <= n <= 256), row k at `p[k]` around
/// lane k of `shift` (f32x4): one accumulator pair per row (so at most 64 terms per lane), the
/// four rows' adds interleaved, and their horizontal sums done together by one transpose.
/// Returns (d, q) as f32x4 with row k's sums in lane k; each row's sums depend on that row
/// alone (a row by itself passes its pointer four times).
///
/// # Safety
/// Each `p[k]` must be valid for reading `n` floats, 4 <= n.
#[inline(always)]
pub unsafe fn deviation_sums_x4(p: [*const f32; 4], n: usize, shift: v128) -> (v128, v128) {
    let s0 = i32x4_shuffle::<0, 0, 0, 0>(shift, shift);
    let s1 = i32x4_shuffle::<1, 1, 1, 1>(shift, shift);
    let s2 = i32x4_shuffle::<2, 2, 2, 2>(shift, shift);
    let s3 = i32x4_shuffle::<3, 3, 3, 3>(shift, shift);
    let z = f32x4_splat(0.0);
    let (mut d0, mut d1, mut d2, mut d3) = (z, z, z, z);
    let (mut q0, mut q1, mut q2, mut q3) = (z, z, z, z);
    let mut i = 0;
    while i + 4 <= n {
        let e0 = f32x4_sub(load(p[0].add(i)), s0);
        let e1 = f32x4_sub(load(p[1].add(i)), s1);
        let e2 = f32x4_sub(load(p[2].add(i)), s2);
        let e3 = f32x4_sub(load(p[3].add(i)), s3);
        d0 = f32x4_add(d0, e0);
        d1 = f32x4_add(d1, e1);
        d2 = f32x4_add(d2, e2);
        d3 = f32x4_add(d3, e3);
        q0 = f32x4_add(q0, f32x4_mul(e0, e0));
        q1 = f32x4_add(q1, f32x4_mul(e1, e1));
        q2 = f32x4_add(q2, f32x4_mul(e2, e2));
        q3 = f32x4_add(q3, f32x4_mul(e3, e3));
        i += 4;
    }
    let r = n - i;
    if r > 0 {
        let mask = v128_load(TAIL_MASKS[r & 3].as_ptr() as *const v128);
        let e0 = v128_and(f32x4_sub(load(p[0].add(n - 4)), s0), mask);
        let e1 = v128_and(f32x4_sub(load(p[1].add(n - 4)), s1), mask);
        let e2 = v128_and(f32x4_sub(load(p[2].add(n - 4)), s2), mask);
        let e3 = v128_and(f32x4_sub(load(p[3].add(n - 4)), s3), mask);
        d0 = f32x4_add(d0, e0);
        d1 = f32x4_add(d1, e1);
        d2 = f32x4_add(d2, e2);
        d3 = f32x4_add(d3, e3);
        q0 = f32x4_add(q0, f32x4_mul(e0, e0));
        q1 = f32x4_add(q1, f32x4_mul(e1, e1));
        q2 = f32x4_add(q2, f32x4_mul(e2, e2));
        q3 = f32x4_add(q3, f32x4_mul(e3, e3));
    }
    let q = transpose_sum(q0, q1, q2, q3);
    // Rows one of whose lanes an outlier dominates (`dominated`): q NaN, so that the caller
    // measures them again (`RowPlan::row`, whose `moments::chunk` takes them in f64).
    let top = transpose_max(q0, q1, q2, q3);
    let dominated = f32x4_gt(top, f32x4_mul(q, f32x4_splat(dominant_share(n))));
    (transpose_sum(d0, d1, d2, d3), v128_bitselect(f32x4_splat(f32::NAN), q, dominated))
}

/// [max lane of a, of b, of c, of d] (NaN lanes as `f32x4_pmax` takes them).
#[inline(always)]
fn transpose_max(a: v128, b: v128, c: v128, d: v128) -> v128 {
    let ab = f32x4_pmax(i32x4_shuffle::<0, 1, 4, 5>(a, b), i32x4_shuffle::<2, 3, 6, 7>(a, b));
    let cd = f32x4_pmax(i32x4_shuffle::<0, 1, 4, 5>(c, d), i32x4_shuffle::<2, 3, 6, 7>(c, d));
    f32x4_pmax(i32x4_shuffle::<0, 2, 4, 6>(ab, cd), i32x4_shuffle::<1, 3, 5, 7>(ab, cd))
}

/// [hsum a, hsum b, hsum c, hsum d], each as (l0 + l2) + (l1 + l3).
#[inline(always)]
pub(crate) fn transpose_sum(a: v128, b: v128, c: v128, d: v128) -> v128 {
    let ab = f32x4_add(i32x4_shuffle::<0, 1, 4, 5>(a, b), i32x4_shuffle::<2, 3, 6, 7>(a, b));
    let cd = f32x4_add(i32x4_shuffle::<0, 1, 4, 5>(c, d), i32x4_shuffle::<2, 3, 6, 7>(c, d));
    f32x4_add(i32x4_shuffle::<0, 2, 4, 6>(ab, cd), i32x4_shuffle::<1, 3, 5, 7>(ab, cd))
}

/// `y[i] = (x[i] - mu_hi) * scale + bias` for i < n with `hsb` = f32 [mu_hi, scale, bias, _],
/// where mu_hi is the f32 part of the mean and
/// `bias = beta - (mu - mu_hi) * scale` carries the rest: `x - mu_hi` is exact when x is near the
/// mean, so an offset of 1e4 costs no accuracy. `x` and `y` may be the same pointer (in place);
/// they must not overlap otherwise. The n % 4 tail is the vector ending at n, loaded before any
/// store and stored last, so in place it rewrites a few floats with the same values.
///
/// # Safety
/// `x` must be valid for reading and `y` for writing `n` floats.
#[inline(always)]
pub unsafe fn normalize(x: *const f32, y: *mut f32, n: usize, hsb: v128) {
    let h = i32x4_shuffle::<0, 0, 0, 0>(hsb, hsb);
    let s = i32x4_shuffle::<1, 1, 1, 1>(hsb, hsb);
    let b = i32x4_shuffle::<2, 2, 2, 2>(hsb, hsb);
    let f = |v: v128| f32x4_add(f32x4_mul(f32x4_sub(v, h), s), b);
    if n < 4 {
        for i in 0..n {
            *y.add(i) = f32x4_extract_lane::<0>(f(f32x4_splat(*x.add(i))));
        }
        return;
    }
    let tail = load(x.add(n - 4));
    let mut i = 0;
    while i + 8 <= n {
        let v0 = load(x.add(i));
        let v1 = load(x.add(i + 4));
        store(y.add(i), f(v0));
        store(y.add(i + 4), f(v1));
        i += 8;
    }
    if i + 4 <= n {
        store(y.add(i), f(load(x.add(i))));
    }
    store(y.add(n - 4), f(tail));
}

/// Lane masks that keep the first k lanes of a vector (k = 0..3).
static HEAD_MASKS: [[u32; 4]; 4] = [[0, 0, 0, 0], [!0, 0, 0, 0], [!0, !0, 0, 0], [!0, !0, !0, 0]];

/// How four consecutive rows of m floats (m >= 4), one run of 4m floats, split into the run's m
/// vectors: the vectors at floats [ends[k-1] rounded up to 4, ends[k]) lie in row k; where row k
/// ends inside a vector (k < 3, (k + 1) m % 4 != 0), the vector at ends[k] holds row k in its
/// first (k + 1) m % 4 lanes (`lo[k]`) and row k + 1 in the others. With m >= 4 no vector holds
/// more than two rows. The same for every group of four rows, since m is fixed.
pub struct Group4 {
    pub(crate) ends: [usize; 4],
    pub(crate) split: [bool; 3],
    pub(crate) lo: [v128; 3],
}

impl Group4 {
    pub fn new(m: usize) -> Group4 {
        let at = |k: usize| (k + 1) * m;
        let mask = |k: usize| {
            // SAFETY: reads one 16-byte row of a static table.
            unsafe { v128_load(HEAD_MASKS[at(k) & 3].as_ptr() as *const v128) }
        };
        Group4 {
            ends: [at(0) & !3, at(1) & !3, at(2) & !3, at(3)],
            split: [at(0) & 3 != 0, at(1) & 3 != 0, at(2) & 3 != 0],
            lo: [mask(0), mask(1), mask(2)],
        }
    }
}

/// `normalize` of four consecutive rows of m floats at once (m >= 4), row k with the constants
/// `hsb[k]`, walking their run of 4m floats one vector at a time: a vector inside row k uses row
/// k's constants, a vector across rows k and k + 1 each row's constants in that row's lanes
/// (`v128_bitselect`). Every float gets the same operations as in `normalize`, so the results
/// are the same bit for bit; but no row needs an overlapping tail, and when the run starts
/// 16-byte aligned every load and store is aligned. `x` and `y` may be the same pointer.
///
/// # Safety
/// `x` must be valid for reading and `y` for writing 4m floats (`g` from `Group4::new(m)`),
/// the same or not overlapping; `hsb` valid for four v128.
#[inline(always)]
pub unsafe fn normalize_x4(x: *const f32, y: *mut f32, g: &Group4, hsb: *const v128) {
    let splat3 = |c: v128| {
        (
            i32x4_shuffle::<0, 0, 0, 0>(c, c),
            i32x4_shuffle::<1, 1, 1, 1>(c, c),
            i32x4_shuffle::<2, 2, 2, 2>(c, c),
        )
    };
    let mut cur = splat3(*hsb);
    let mut i = 0;
    for k in 0..4 {
        let (h, s, b) = cur;
        let f = |v: v128| f32x4_add(f32x4_mul(f32x4_sub(v, h), s), b);
        let end = g.ends[k];
        while i + 8 <= end {
            let v0 = load(x.add(i));
            let v1 = load(x.add(i + 4));
            store(y.add(i), f(v0));
            store(y.add(i + 4), f(v1));
            i += 8;
        }
        if i < end {
            store(y.add(i), f(load(x.add(i))));
            i += 4;
        }
        if k < 3 {
            let next = splat3(*hsb.add(k + 1));
            if g.split[k] {
                let lo = g.lo[k];
                let h = v128_bitselect(h, next.0, lo);
                let s = v128_bitselect(s, next.1, lo);
                let b = v128_bitselect(b, next.2, lo);
                store(y.add(i), f32x4_add(f32x4_mul(f32x4_sub(load(x.add(i)), h), s), b));
                i += 4;
            }
            cur = next;
        }
    }
}

/// `acc[j] += x[j]` for j < n (one row of a block added into per-column sums).
///
/// # Safety
/// `x` must be valid for reading and `acc` for reading and writing `n` floats; no overlap.
#[inline(always)]
pub unsafe fn add_into(acc: *mut f32, x: *const f32, n: usize) {
    let mut j = 0;
    while j + 4 <= n {
        store(acc.add(j), f32x4_add(load(acc.add(j)), load(x.add(j))));
        j += 4;
    }
    while j < n {
        *acc.add(j) += *x.add(j);
        j += 1;
    }
}

/// Horizontal sum of the two f64 lanes.
#[inline(always)]
fn hsum64(v: v128) -> f64 {
    f64x2_extract_lane::<0>(v) + f64x2_extract_lane::<1>(v)
}

/// `(sum_i (x[i] - shift), sum_i (x[i] - shift)^2)` for i < n, in f64 (x promoted exactly): the
/// sums of SwitchNorm1d's statistics, whose LN and BN means and variances are differenced in the
/// importance-logit gradients (an f32 sum would leave each a float32 rounding of the row's spread
/// off, orders of magnitude more than their difference where LN and BN nearly coincide). Two
/// accumulator pairs: four, with their temporaries, overflow x86's 16 vector registers in V8's
/// code, and measured ~4% slower on the 1d forward + backward at [4096, 1024].
///
/// # Safety
/// `x` must be valid for reading `n` floats.
#[inline(always)]
pub unsafe fn deviation_sums_f64(x: *const f32, n: usize, shift: f64) -> (f64, f64) {
    let s = f64x2_splat(shift);
    let z = f64x2_splat(0.0);
    let (mut d0, mut d1, mut q0, mut q1) = (z, z, z, z);
    let mut i = 0;
    while i + 4 <= n {
        let a = load(x.add(i));
        let e0 = f64x2_sub(f64x2_promote_low_f32x4(a), s);
        let e1 = f64x2_sub(f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(a, a)), s);
        d0 = f64x2_add(d0, e0);
        d1 = f64x2_add(d1, e1);
        q0 = f64x2_add(q0, f64x2_mul(e0, e0));
        q1 = f64x2_add(q1, f64x2_mul(e1, e1));
        i += 4;
    }
    let mut d = hsum64(f64x2_add(d0, d1));
    let mut q = hsum64(f64x2_add(q0, q1));
    while i < n {
        let e = *x.add(i) as f64 - shift;
        d += e;
        q += e * e;
        i += 1;
    }
    (d, q)
}

/// sum_k (x[k] - centre) over n floats in f64 (x promoted exactly, one rounding per term beside
/// the sums'): a mean summed again about its float32-accurate value (`nd`, `nd_grad_means`).
///
/// # Safety
/// `x` must be valid for reading `n` floats.
pub unsafe fn deviation_sum_f64(x: *const f32, n: usize, centre: f64) -> f64 {
    sum_f64_about::<true>(x, n, centre)
}

/// sum_k x[k] over n floats in f64: `deviation_sum_f64` about 0 without its subtractions, for a
/// mean within 2^-10 of its std of 0 (there 0 is as good a centre; measured ~10% of the training
/// forward at [2, 32, 128, 128] on data whose every row is such).
///
/// # Safety
/// `x` must be valid for reading `n` floats.
pub unsafe fn sum_f64(x: *const f32, n: usize) -> f64 {
    sum_f64_about::<false>(x, n, 0.0)
}

/// The sweep of `deviation_sum_f64` (CENTRED) and `sum_f64`: eight floats per step into four
/// f64x2 sums, so that their adds do not wait on each other.
#[inline(always)]
unsafe fn sum_f64_about<const CENTRED: bool>(x: *const f32, n: usize, centre: f64) -> f64 {
    let c = f64x2_splat(centre);
    let z = f64x2_splat(0.0);
    let (mut a, mut b, mut e, mut f) = (z, z, z, z);
    let about = |v: v128| if CENTRED { f64x2_sub(v, c) } else { v };
    let lo = |v: v128| about(f64x2_promote_low_f32x4(v));
    let hi = |v: v128| about(f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(v, v)));
    let mut i = 0;
    while i + 8 <= n {
        let (v, w) = (load(x.add(i)), load(x.add(i + 4)));
        a = f64x2_add(a, lo(v));
        b = f64x2_add(b, hi(v));
        e = f64x2_add(e, lo(w));
        f = f64x2_add(f, hi(w));
        i += 8;
    }
    let mut d = hsum64(f64x2_add(f64x2_add(a, b), f64x2_add(e, f)));
    while i < n {
        d += *x.add(i) as f64 - centre;
        i += 1;
    }
    d
}

/// Per-column `d[j] = sum_r (x[r][j] - shift[j])`, `q[j] = sum_r (x[r][j] - shift[j])^2` over
/// `rows` rows `stride` floats apart, j < n, in f64 (x and the f32 shift promoted exactly):
/// SwitchNorm1d's per-column block sums (see `deviation_sums_f64` for why f64). The rows are
/// taken four at a time, so that each column's f64 sums are loaded and stored once per four rows
/// (row-major: a sweep down the columns would meet 4 KiB strides, which alias in L1); each
/// column's sums are formed in row order, whatever columns it is swept with.
///
/// # Safety
/// `x` must be valid for reading `rows` rows of n floats at `stride`, `shift` for n floats, and
/// `d`, `q` for writing n f64; no overlap between the written arrays and the others.
#[inline(always)]
pub unsafe fn column_deviation_sums_f64(
    x: *const f32,
    rows: usize,
    n: usize,
    stride: usize,
    shift: *const f32,
    d: *mut f64,
    q: *mut f64,
) {
    for j in 0..n {
        *d.add(j) = 0.0;
        *q.add(j) = 0.0;
    }
    let mut r = 0;
    while r < rows {
        let take = if rows - r >= 4 { 4 } else { 1 };
        let at = x.add(r * stride);
        if take == 4 {
            deviations_rows_f64::<4>(at, n, stride, shift, d, q);
        } else {
            deviations_rows_f64::<1>(at, n, stride, shift, d, q);
        }
        r += take;
    }
}

/// `R` rows of `column_deviation_sums_f64` added into d, q (row by row per column).
#[inline(always)]
unsafe fn deviations_rows_f64<const R: usize>(
    x: *const f32,
    n: usize,
    stride: usize,
    shift: *const f32,
    d: *mut f64,
    q: *mut f64,
) {
    let ld = |p: *const f64| v128_load(p as *const v128);
    let st = |p: *mut f64, v| v128_store(p as *mut v128, v);
    let mut j = 0;
    while j + 4 <= n {
        let h = load(shift.add(j));
        let (s0, s1) = (
            f64x2_promote_low_f32x4(h),
            f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(h, h)),
        );
        let (mut d0, mut d1) = (ld(d.add(j)), ld(d.add(j + 2)));
        let (mut q0, mut q1) = (ld(q.add(j)), ld(q.add(j + 2)));
        for k in 0..R {
            let a = load(x.add(k * stride + j));
            let e0 = f64x2_sub(f64x2_promote_low_f32x4(a), s0);
            let e1 = f64x2_sub(f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(a, a)), s1);
            d0 = f64x2_add(d0, e0);
            d1 = f64x2_add(d1, e1);
            q0 = f64x2_add(q0, f64x2_mul(e0, e0));
            q1 = f64x2_add(q1, f64x2_mul(e1, e1));
        }
        st(d.add(j), d0);
        st(d.add(j + 2), d1);
        st(q.add(j), q0);
        st(q.add(j + 2), q1);
        j += 4;
    }
    while j < n {
        let s = *shift.add(j) as f64;
        for k in 0..R {
            let e = *x.add(k * stride + j) as f64 - s;
            *d.add(j) += e;
            *q.add(j) += e * e;
        }
        j += 1;
    }
}

/// `y[i] = x[i]` for i < n through v128 registers, the data movement of a kernel without its math.
///
/// # Safety
/// `x` must be valid for reading and `y` for writing `n` floats; no partial overlap.
#[inline(always)]
pub unsafe fn copy(x: *const f32, y: *mut f32, n: usize) {
    let mut i = 0;
    while i + 8 <= n {
        let v0 = load(x.add(i));
        let v1 = load(x.add(i + 4));
        store(y.add(i), v0);
        store(y.add(i + 4), v1);
        i += 8;
    }
    if i + 4 <= n {
        store(y.add(i), load(x.add(i)));
        i += 4;
    }
    while i < n {
        *y.add(i) = *x.add(i);
        i += 1;
    }
}
