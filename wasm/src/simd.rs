//! f32x4 loops over contiguous runs of floats: the only code that touches tensor data element by
//! element. Every loop uses unaligned `v128` loads and stores (wasm allows them; rows start at
//! `r * M` floats, which is not 16-byte aligned when M % 4 != 0) and finishes the tail (n % 4)
//! with scalar code in the same order of operations.

use core::arch::wasm32::*;

/// IEEE square root of an f64 (one `f64.sqrt` after optimisation); core has no `f64::sqrt`.
#[inline(always)]
pub fn sqrt_f64(v: f64) -> f64 {
    f64x2_extract_lane::<0>(f64x2_sqrt(f64x2_splat(v)))
}

/// Horizontal sum of the four lanes.
#[inline(always)]
fn hsum(v: v128) -> f32 {
    (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
        + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
}

#[inline(always)]
unsafe fn load(p: *const f32) -> v128 {
    v128_load(p as *const v128)
}

#[inline(always)]
unsafe fn store(p: *mut f32, v: v128) {
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
static TAIL_MASKS: [[u32; 4]; 4] = [[0, 0, 0, 0], [0, 0, 0, !0], [0, 0, !0, !0], [0, !0, !0, !0]];

/// `(sum_i (x[i] - shift), sum_i (x[i] - shift)^2)` for i < n, in f32. With `shift` near the
/// mean the deviations are small, so neither sum cancels. Four accumulator pairs (16 partial sums
/// each) keep the adds independent; the n % 4 tail is the masked top of the vector ending at n.
///
/// # Safety
/// `x` must be valid for reading `n` floats.
#[inline(always)]
pub unsafe fn deviation_sums(x: *const f32, n: usize, shift: f32) -> (f32, f32) {
    if n < 4 {
        let (mut d, mut q) = (0.0, 0.0);
        for i in 0..n {
            let e = *x.add(i) - shift;
            d += e;
            q += e * e;
        }
        return (d, q);
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
    let d = hsum(f32x4_add(f32x4_add(d0, d1), f32x4_add(d2, d3)));
    let q = hsum(f32x4_add(f32x4_add(q0, q1), f32x4_add(q2, q3)));
    (d, q)
}

/// `deviation_sums` with both sums returned as one f64x2 (d, q), their horizontal sums sharing
/// shuffles: rows can be as short as 49 floats, where the per-row fixed cost matters.
///
/// # Safety
/// `x` must be valid for reading `n` floats.
#[inline(always)]
pub unsafe fn deviation_sums_f64x2(x: *const f32, n: usize, shift: f32) -> v128 {
    if n < 4 {
        let (d, q) = deviation_sums(x, n, shift);
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
    f64x2_promote_low_f32x4(i32x4_shuffle::<0, 2, 0, 2>(h, h))
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
    (transpose_sum(d0, d1, d2, d3), transpose_sum(q0, q1, q2, q3))
}

/// [hsum a, hsum b, hsum c, hsum d], each as (l0 + l2) + (l1 + l3).
#[inline(always)]
fn transpose_sum(a: v128, b: v128, c: v128, d: v128) -> v128 {
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
    ends: [usize; 4],
    split: [bool; 3],
    lo: [v128; 3],
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

/// `e = x[j] - shift[j]; d[j] += e; q[j] += e * e` for j < n (one row of a block added into
/// per-column deviation sums).
///
/// # Safety
/// `x`, `shift` must be valid for reading and `d`, `q` for reading and writing `n` floats; no
/// overlap between the written arrays and the others.
#[inline(always)]
pub unsafe fn add_deviations_into(
    d: *mut f32,
    q: *mut f32,
    x: *const f32,
    shift: *const f32,
    n: usize,
) {
    let mut j = 0;
    while j + 4 <= n {
        let e = f32x4_sub(load(x.add(j)), load(shift.add(j)));
        store(d.add(j), f32x4_add(load(d.add(j)), e));
        store(q.add(j), f32x4_add(load(q.add(j)), f32x4_mul(e, e)));
        j += 4;
    }
    while j < n {
        let e = *x.add(j) - *shift.add(j);
        *d.add(j) += e;
        *q.add(j) += e * e;
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

/// `(sum_i dy[i], sum_i dy[i] * (x[i] - shift))` for i < n, summed in f32 and returned as an
/// f64x2 (the per-row sums of a backward pass). With `shift` the f32 part of the row's IN mean,
/// `x - shift` is exact for x near the mean, so a large offset costs no accuracy; callers keep
/// n short and add longer rows chunk by chunk in f64, so the f32 partial sums stay short. Four
/// accumulator pairs keep the adds independent; the n % 4 tail is the masked top of the vectors
/// ending at n. Both horizontal sums share their shuffles: rows can be as short as 49 floats,
/// where the per-row fixed cost matters.
///
/// # Safety
/// `x` and `dy` must be valid for reading `n` floats.
#[inline(always)]
pub unsafe fn grad_sums(x: *const f32, dy: *const f32, n: usize, shift: f32) -> v128 {
    if n < 4 {
        let (mut g, mut p) = (0.0f32, 0.0f32);
        for i in 0..n {
            let d = *dy.add(i);
            g += d;
            p += d * (*x.add(i) - shift);
        }
        return f64x2(g as f64, p as f64);
    }
    let s = f32x4_splat(shift);
    let z = f32x4_splat(0.0);
    let (mut g0, mut g1, mut g2, mut g3) = (z, z, z, z);
    let (mut p0, mut p1, mut p2, mut p3) = (z, z, z, z);
    let mut i = 0;
    while i + 16 <= n {
        let d0 = load(dy.add(i));
        let d1 = load(dy.add(i + 4));
        let d2 = load(dy.add(i + 8));
        let d3 = load(dy.add(i + 12));
        g0 = f32x4_add(g0, d0);
        g1 = f32x4_add(g1, d1);
        g2 = f32x4_add(g2, d2);
        g3 = f32x4_add(g3, d3);
        p0 = f32x4_add(p0, f32x4_mul(d0, f32x4_sub(load(x.add(i)), s)));
        p1 = f32x4_add(p1, f32x4_mul(d1, f32x4_sub(load(x.add(i + 4)), s)));
        p2 = f32x4_add(p2, f32x4_mul(d2, f32x4_sub(load(x.add(i + 8)), s)));
        p3 = f32x4_add(p3, f32x4_mul(d3, f32x4_sub(load(x.add(i + 12)), s)));
        i += 16;
    }
    while i + 4 <= n {
        let d = load(dy.add(i));
        g0 = f32x4_add(g0, d);
        p0 = f32x4_add(p0, f32x4_mul(d, f32x4_sub(load(x.add(i)), s)));
        i += 4;
    }
    let r = n - i;
    if r > 0 {
        // Masking dy masks the product too; x's lanes below the tail are then multiplied by 0,
        // which is 0 unless they hold Inf or NaN, so those lanes are masked after the multiply.
        let mask = v128_load(TAIL_MASKS[r].as_ptr() as *const v128);
        let d = load(dy.add(n - 4));
        let p = f32x4_mul(d, f32x4_sub(load(x.add(n - 4)), s));
        g1 = f32x4_add(g1, v128_and(d, mask));
        p1 = f32x4_add(p1, v128_and(p, mask));
    }
    let g = f32x4_add(f32x4_add(g0, g1), f32x4_add(g2, g3));
    let p = f32x4_add(f32x4_add(p0, p1), f32x4_add(p2, p3));
    // [g0 + g2, g1 + g3, p0 + p2, p1 + p3], then lanes 0 and 2 hold the sums, as `hsum` pairs.
    let h = f32x4_add(i32x4_shuffle::<0, 1, 4, 5>(g, p), i32x4_shuffle::<2, 3, 6, 7>(g, p));
    let h = f32x4_add(h, i32x4_shuffle::<1, 0, 3, 2>(h, h));
    f64x2_promote_low_f32x4(i32x4_shuffle::<0, 2, 0, 2>(h, h))
}

/// `grad_sums` of four rows of n floats at once (4 <= n), row k at `x[k]`, `dy[k]` around lane k
/// of `shift` (f32x4): one accumulator pair per row (callers keep n <= 64, so at most 16 terms
/// per lane, as `grad_sums` over a chunk), the four rows' adds interleaved and their horizontal
/// sums done by one transpose. Returns (g, p) as f32x4 with row k's sums in lane k; each row's
/// sums depend on that row alone.
///
/// # Safety
/// Each `x[k]`, `dy[k]` must be valid for reading `n` floats, 4 <= n.
#[inline(always)]
pub unsafe fn grad_sums_x4(
    x: [*const f32; 4],
    dy: [*const f32; 4],
    n: usize,
    shift: v128,
) -> (v128, v128) {
    let s0 = i32x4_shuffle::<0, 0, 0, 0>(shift, shift);
    let s1 = i32x4_shuffle::<1, 1, 1, 1>(shift, shift);
    let s2 = i32x4_shuffle::<2, 2, 2, 2>(shift, shift);
    let s3 = i32x4_shuffle::<3, 3, 3, 3>(shift, shift);
    let z = f32x4_splat(0.0);
    let (mut g0, mut g1, mut g2, mut g3) = (z, z, z, z);
    let (mut p0, mut p1, mut p2, mut p3) = (z, z, z, z);
    let mut i = 0;
    while i + 4 <= n {
        let d0 = load(dy[0].add(i));
        let d1 = load(dy[1].add(i));
        let d2 = load(dy[2].add(i));
        let d3 = load(dy[3].add(i));
        g0 = f32x4_add(g0, d0);
        g1 = f32x4_add(g1, d1);
        g2 = f32x4_add(g2, d2);
        g3 = f32x4_add(g3, d3);
        p0 = f32x4_add(p0, f32x4_mul(d0, f32x4_sub(load(x[0].add(i)), s0)));
        p1 = f32x4_add(p1, f32x4_mul(d1, f32x4_sub(load(x[1].add(i)), s1)));
        p2 = f32x4_add(p2, f32x4_mul(d2, f32x4_sub(load(x[2].add(i)), s2)));
        p3 = f32x4_add(p3, f32x4_mul(d3, f32x4_sub(load(x[3].add(i)), s3)));
        i += 4;
    }
    let r = n - i;
    if r > 0 {
        // As in `grad_sums`: the products are masked after the multiply, so that Inf or NaN in
        // x's lanes below the tail does not leak in.
        let mask = v128_load(TAIL_MASKS[r & 3].as_ptr() as *const v128);
        let t = n - 4;
        let (d0, d1) = (load(dy[0].add(t)), load(dy[1].add(t)));
        let (d2, d3) = (load(dy[2].add(t)), load(dy[3].add(t)));
        g0 = f32x4_add(g0, v128_and(d0, mask));
        g1 = f32x4_add(g1, v128_and(d1, mask));
        g2 = f32x4_add(g2, v128_and(d2, mask));
        g3 = f32x4_add(g3, v128_and(d3, mask));
        let e0 = f32x4_mul(d0, f32x4_sub(load(x[0].add(t)), s0));
        let e1 = f32x4_mul(d1, f32x4_sub(load(x[1].add(t)), s1));
        let e2 = f32x4_mul(d2, f32x4_sub(load(x[2].add(t)), s2));
        let e3 = f32x4_mul(d3, f32x4_sub(load(x[3].add(t)), s3));
        p0 = f32x4_add(p0, v128_and(e0, mask));
        p1 = f32x4_add(p1, v128_and(e1, mask));
        p2 = f32x4_add(p2, v128_and(e2, mask));
        p3 = f32x4_add(p3, v128_and(e3, mask));
    }
    (transpose_sum(g0, g1, g2, g3), transpose_sum(p0, p1, p2, p3))
}

/// `dx[i] = dy[i] * a + (x[i] - shift) * b + k` for i < n with `abk` = f32 [shift, a, b, k]:
/// the dx sweep of a backward pass over one row, with its per-row constants (see
/// `nd_grad::dx`). `dx` may be the same pointer as `dy` or `x` (in place); it must not overlap
/// them otherwise. As in `normalize`, the n % 4 tail is the vector ending at n, loaded before any
/// store and stored last.
///
/// # Safety
/// `x` and `dy` must be valid for reading and `dx` for writing `n` floats.
#[inline(always)]
pub unsafe fn grad_dx(x: *const f32, dy: *const f32, dx: *mut f32, n: usize, abk: v128) {
    let sv = i32x4_shuffle::<0, 0, 0, 0>(abk, abk);
    let av = i32x4_shuffle::<1, 1, 1, 1>(abk, abk);
    let bv = i32x4_shuffle::<2, 2, 2, 2>(abk, abk);
    let kv = i32x4_shuffle::<3, 3, 3, 3>(abk, abk);
    let f = |x: v128, d: v128| {
        f32x4_add(f32x4_add(f32x4_mul(d, av), f32x4_mul(f32x4_sub(x, sv), bv)), kv)
    };
    if n < 4 {
        for i in 0..n {
            let v = f(f32x4_splat(*x.add(i)), f32x4_splat(*dy.add(i)));
            *dx.add(i) = f32x4_extract_lane::<0>(v);
        }
        return;
    }
    let (tx, td) = (load(x.add(n - 4)), load(dy.add(n - 4)));
    let mut i = 0;
    while i + 8 <= n {
        let (x0, d0) = (load(x.add(i)), load(dy.add(i)));
        let (x1, d1) = (load(x.add(i + 4)), load(dy.add(i + 4)));
        store(dx.add(i), f(x0, d0));
        store(dx.add(i + 4), f(x1, d1));
        i += 8;
    }
    if i + 4 <= n {
        store(dx.add(i), f(load(x.add(i)), load(dy.add(i))));
    }
    store(dx.add(n - 4), f(tx, td));
}

/// `grad_dx` of four consecutive rows of m floats at once (m >= 4), row k with the constants
/// `abk[k]`, walking their run of 4m floats one vector at a time as `normalize_x4` does: a
/// vector across rows k and k + 1 uses each row's constants in that row's lanes. Every float
/// gets the same operations as in `grad_dx`, so the results are the same bit for bit. `dx` may
/// be the same pointer as `dy` or `x`.
///
/// # Safety
/// `x`, `dy` must be valid for reading and `dx` for writing 4m floats (`g` from
/// `Group4::new(m)`), `dx` the same as an input or overlapping neither; `abk` valid for four
/// v128.
#[inline(always)]
pub unsafe fn grad_dx_x4(
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    g: &Group4,
    abk: *const v128,
) {
    let splat4 = |c: v128| {
        (
            i32x4_shuffle::<0, 0, 0, 0>(c, c),
            i32x4_shuffle::<1, 1, 1, 1>(c, c),
            i32x4_shuffle::<2, 2, 2, 2>(c, c),
            i32x4_shuffle::<3, 3, 3, 3>(c, c),
        )
    };
    let f = |x: v128, d: v128, (sv, av, bv, kv): (v128, v128, v128, v128)| {
        f32x4_add(f32x4_add(f32x4_mul(d, av), f32x4_mul(f32x4_sub(x, sv), bv)), kv)
    };
    let mut cur = splat4(*abk);
    let mut i = 0;
    for k in 0..4 {
        let end = g.ends[k];
        while i + 8 <= end {
            let (x0, d0) = (load(x.add(i)), load(dy.add(i)));
            let (x1, d1) = (load(x.add(i + 4)), load(dy.add(i + 4)));
            store(dx.add(i), f(x0, d0, cur));
            store(dx.add(i + 4), f(x1, d1, cur));
            i += 8;
        }
        if i < end {
            store(dx.add(i), f(load(x.add(i)), load(dy.add(i)), cur));
            i += 4;
        }
        if k < 3 {
            let next = splat4(*abk.add(k + 1));
            if g.split[k] {
                let lo = g.lo[k];
                let sel = |a: v128, b: v128| v128_bitselect(a, b, lo);
                let c = (
                    sel(cur.0, next.0),
                    sel(cur.1, next.1),
                    sel(cur.2, next.2),
                    sel(cur.3, next.3),
                );
                store(dx.add(i), f(load(x.add(i)), load(dy.add(i)), c));
                i += 4;
            }
            cur = next;
        }
    }
}

/// `sum_i (x[i] + y[i])` for i < n, reading both arrays once in one loop (the roofline of the
/// backward reduction).
///
/// # Safety
/// `x` and `y` must be valid for reading `n` floats.
#[inline(always)]
pub unsafe fn sum_pair(x: *const f32, y: *const f32, n: usize) -> f32 {
    let z = f32x4_splat(0.0);
    let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
    let mut i = 0;
    while i + 8 <= n {
        a0 = f32x4_add(a0, load(x.add(i)));
        a1 = f32x4_add(a1, load(x.add(i + 4)));
        a2 = f32x4_add(a2, load(y.add(i)));
        a3 = f32x4_add(a3, load(y.add(i + 4)));
        i += 8;
    }
    let mut s = hsum(f32x4_add(f32x4_add(a0, a1), f32x4_add(a2, a3)));
    while i < n {
        s += *x.add(i) + *y.add(i);
        i += 1;
    }
    s
}

/// `out[i] = x[i] + y[i]` for i < n: the data movement of the dx sweep with one add.
///
/// # Safety
/// `x`, `y` must be valid for reading and `out` for writing `n` floats; `out` may equal either
/// input but must not partially overlap them.
#[inline(always)]
pub unsafe fn add(x: *const f32, y: *const f32, out: *mut f32, n: usize) {
    let mut i = 0;
    while i + 8 <= n {
        let v0 = f32x4_add(load(x.add(i)), load(y.add(i)));
        let v1 = f32x4_add(load(x.add(i + 4)), load(y.add(i + 4)));
        store(out.add(i), v0);
        store(out.add(i + 4), v1);
        i += 8;
    }
    while i < n {
        *out.add(i) = *x.add(i) + *y.add(i);
        i += 1;
    }
}
