//! SwitchNorm2d/3d forward on x viewed as [N, C, M], in two calls: `statistics` reads the tensor
//! once, `normalize` reads it again and writes y. Between them the caller may replace the BN
//! statistics (SyncSN); everything besides the two passes is O(N*C) work on per-row statistics.

use crate::layout::{Layer, Stats, MODE_BN_PARTIALS, MODE_TRAINING, MODE_USING_BN};
use crate::moments::{RowPlan, TINY_Q};
use crate::simd;
use crate::wide;
use core::arch::wasm32::*;

/// Statistics pass of y = SN(x) for layout "nd", per row r = (n, c) of M floats:
///   mu_in[r] = (1/M) sum_i x[r,i],  var_in[r] = (1/(M-1)) sum_i (x[r,i] - mu_in[r])^2
/// then, derived in f64 without cancellation:
///   mu_ln[n] = mean_c mu_in,  var_ln[n] = mean_c (var_in + (mu_in - mu_ln)^2)
///   mu_bn[c], var_bn[c] likewise over n (training), or the running buffers (evaluation).
/// With `MODE_BN_PARTIALS` var_bn is left as n times that, M2 (see `layout`). This is
/// `row_moments` over all rows, then `derive`.
///
/// # Safety
/// `x` must be valid for n*c*m floats; `layer` and `stats` as in `layout`, not overlapping x.
pub unsafe fn statistics(
    x: *const f32,
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
) {
    row_moments(x, m, st.mu_in, st.var_in, st.mu);
    derive(n, c, mode, layer, st);
}

/// SHIFT_SLACK of `moments`: a shift is re-done when d^2 (1 + S) > S n q.
const SLACK: f64 = 3.0;

/// mu_in, var_in of the rows.len() consecutive rows of m floats at `x` (a row range of the
/// tensor: rows are contiguous, so a caller may measure the tensor chunk by chunk). `tmp`
/// (as long as `mu_in`) is overwritten: it holds each row's shift between the sweep and the
/// per-row arithmetic.
///
/// Rows of 4..=`SHORT` floats go four at a time through `short_rows`. Other rows of at most one
/// chunk (m <= `moments::CHUNK`, where the per-row fixed cost matters) go through a sweep that does only the SIMD sums (d, q) around a shift per row, then a loop of
/// their own that forms mean and variance two rows per f64x2. A row whose sums met Inf/NaN or
/// whose shift was poor is measured again by `RowPlan::row` (the general path, which handles
/// both). Each row's result depends on that row alone, not on how rows are paired or chunked.
///
/// # Safety
/// `x` must be valid for mu_in.len() * m floats; the three slices have the same length.
pub unsafe fn row_moments(
    x: *const f32,
    m: usize,
    mu_in: &mut [f64],
    var_in: &mut [f64],
    tmp: &mut [f64],
) {
    let plan = RowPlan::new(m);
    let rows = mu_in.len();
    if rows == 0 {
        return;
    }
    if m > crate::moments::CHUNK {
        let mut shift = plan.first_shift(x);
        for (r, (mu, var)) in mu_in.iter_mut().zip(var_in.iter_mut()).enumerate() {
            let next = if r + 1 < rows { plan.first_shift(x.add((r + 1) * m)) } else { 0.0 };
            let mo = plan.row(x.add(r * m), shift);
            shift = next;
            *mu = mo.mean;
            *var = mo.m2 * plan.inv_m1;
        }
        return;
    }
    if (4..=SHORT).contains(&m) {
        short_rows(x, m, &plan, mu_in, var_in);
        return;
    }
    // The sweep: (d, q) into (mu_in, var_in), the shift into tmp.
    let (pd, pq, ps) = (mu_in.as_mut_ptr(), var_in.as_mut_ptr(), tmp.as_mut_ptr());
    let mut shift = plan.first_shift(x);
    for r in 0..rows {
        let next = if r + 1 < rows { plan.first_shift(x.add((r + 1) * m)) } else { 0.0 };
        let v = simd::deviation_sums_f64x2(x.add(r * m), m, shift);
        *pd.add(r) = f64x2_extract_lane::<0>(v);
        *pq.add(r) = f64x2_extract_lane::<1>(v);
        *ps.add(r) = shift as f64;
        shift = next;
    }
    // Mean and variance, two rows per f64x2 (`Moments::from_deviations`, `moments::chunk`).
    let inv_n = 1.0 / m as f64;
    let (vinv, vinv_m1) = (f64x2_splat(inv_n), f64x2_splat(plan.inv_m1));
    let (slack1, slack_n) = (f64x2_splat(1.0 + SLACK), f64x2_splat(SLACK * m as f64));
    let zero = f64x2_splat(0.0);
    let tiny = f64x2_splat(TINY_Q as f64);
    // One row by itself, with the same arithmetic as a lane below, so that a row's result does
    // not depend on which row it is paired with (a caller's chunks may pair rows differently).
    let one = |r: usize| {
        let (d, q, s) = (*pd.add(r), *pq.add(r), *ps.add(r));
        let dd = d * d;
        if q - q != 0.0 || q < TINY_Q as f64 || dd * (1.0 + SLACK) > SLACK * m as f64 * q {
            let mo = plan.row(x.add(r * m), s as f32);
            *pd.add(r) = mo.mean;
            *pq.add(r) = mo.m2 * plan.inv_m1;
        } else {
            let m2 = q - dd * inv_n;
            *pd.add(r) = s + d * inv_n;
            *pq.add(r) = (if m2 < 0.0 { 0.0 } else { m2 }) * plan.inv_m1;
        }
    };
    let even = rows / 2 * 2;
    let mut j = 0;
    while j < even {
        let d = v128_load(pd.add(j) as *const v128);
        let q = v128_load(pq.add(j) as *const v128);
        let dd = f64x2_mul(d, d);
        // Not finite (q - q is NaN for Inf, NaN), tiny (`moments::TINY_Q`), or the shift was
        // poor.
        let bad = v128_or(
            v128_or(f64x2_ne(f64x2_sub(q, q), zero), f64x2_lt(q, tiny)),
            f64x2_gt(f64x2_mul(dd, slack1), f64x2_mul(slack_n, q)),
        );
        if v128_any_true(bad) {
            one(j);
            one(j + 1);
        } else {
            let s = v128_load(ps.add(j) as *const v128);
            let mean = f64x2_add(s, f64x2_mul(d, vinv));
            let m2 = f64x2_sub(q, f64x2_mul(dd, vinv));
            // Clamped at 0 (a hair below for constant data).
            let m2 = v128_bitselect(zero, m2, f64x2_lt(m2, zero));
            v128_store(pd.add(j) as *mut v128, mean);
            v128_store(pq.add(j) as *mut v128, f64x2_mul(m2, vinv_m1));
        }
        j += 2;
    }
    if j < rows {
        one(j);
    }
}

/// Rows up to this long go through `short_rows`.
const SHORT: usize = 256;

/// `row_moments` for rows of 4..=SHORT floats: four rows at a time through
/// `simd::deviation_sums_x4` (one shift per row, from `first_shift`, taken a group ahead), then
/// mean and variance of the four in two f64x2, stored as vectors. A row whose sums met Inf/NaN
/// or whose shift was poor is measured again by `RowPlan::row`. Rows left over (rows % 4) go
/// through the same arithmetic one at a time, so a row's result depends on that row alone.
///
/// # Safety
/// As `row_moments`.
unsafe fn short_rows(
    x: *const f32,
    m: usize,
    plan: &RowPlan,
    mu_in: &mut [f64],
    var_in: &mut [f64],
) {
    let rows = mu_in.len();
    let (pd, pq) = (mu_in.as_mut_ptr(), var_in.as_mut_ptr());
    let inv_n = 1.0 / m as f64;
    let (vinv, vinv_m1) = (f64x2_splat(inv_n), f64x2_splat(plan.inv_m1));
    let (slack1, slack_n) = (f64x2_splat(1.0 + SLACK), f64x2_splat(SLACK * m as f64));
    let zero = f64x2_splat(0.0);
    let tiny = f64x2_splat(TINY_Q as f64);
    // Mean and variance of two rows (lanes), and which of them must be measured again.
    let finish = |d: v128, q: v128, s: v128| -> (v128, v128, v128) {
        let dd = f64x2_mul(d, d);
        // Not finite (q - q is NaN for Inf, NaN), tiny (`moments::TINY_Q`), or the shift was
        // poor.
        let bad = v128_or(
            v128_or(f64x2_ne(f64x2_sub(q, q), zero), f64x2_lt(q, tiny)),
            f64x2_gt(f64x2_mul(dd, slack1), f64x2_mul(slack_n, q)),
        );
        let mean = f64x2_add(s, f64x2_mul(d, vinv));
        let m2 = f64x2_sub(q, f64x2_mul(dd, vinv));
        // Clamped at 0 (a hair below for constant data).
        let m2 = v128_bitselect(zero, m2, f64x2_lt(m2, zero));
        (mean, f64x2_mul(m2, vinv_m1), bad)
    };
    let redo = |r: usize, shift: f32| {
        let mo = plan.row(x.add(r * m), shift);
        *pd.add(r) = mo.mean;
        *pq.add(r) = mo.m2 * plan.inv_m1;
    };
    let shifts = |j: usize| {
        f32x4(
            plan.first_shift(x.add(j * m)),
            plan.first_shift(x.add((j + 1) * m)),
            plan.first_shift(x.add((j + 2) * m)),
            plan.first_shift(x.add((j + 3) * m)),
        )
    };
    let groups = rows / 4 * 4;
    let mut j = 0;
    let mut s = if groups > 0 { shifts(0) } else { f32x4_splat(0.0) };
    while j < groups {
        let next = if j + 4 < groups { shifts(j + 4) } else { s };
        let p = [x.add(j * m), x.add((j + 1) * m), x.add((j + 2) * m), x.add((j + 3) * m)];
        let (d, q) = simd::deviation_sums_x4(p, m, s);
        let hi = |v: v128| f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(v, v));
        let (m01, v01, b01) = finish(
            f64x2_promote_low_f32x4(d),
            f64x2_promote_low_f32x4(q),
            f64x2_promote_low_f32x4(s),
        );
        let (m23, v23, b23) = finish(hi(d), hi(q), hi(s));
        v128_store(pd.add(j) as *mut v128, m01);
        v128_store(pd.add(j + 2) as *mut v128, m23);
        v128_store(pq.add(j) as *mut v128, v01);
        v128_store(pq.add(j + 2) as *mut v128, v23);
        if v128_any_true(v128_or(b01, b23)) {
            let lanes = [
                i64x2_extract_lane::<0>(b01),
                i64x2_extract_lane::<1>(b01),
                i64x2_extract_lane::<0>(b23),
                i64x2_extract_lane::<1>(b23),
            ];
            let sh = [
                f32x4_extract_lane::<0>(s),
                f32x4_extract_lane::<1>(s),
                f32x4_extract_lane::<2>(s),
                f32x4_extract_lane::<3>(s),
            ];
            for k in 0..4 {
                if lanes[k] != 0 {
                    redo(j + k, sh[k]);
                }
            }
        }
        s = next;
        j += 4;
    }
    while j < rows {
        let p = x.add(j * m);
        let sh = plan.first_shift(p);
        let (d, q) = simd::deviation_sums_x4([p, p, p, p], m, f32x4_splat(sh));
        let (mean, var, bad) =
            finish(f64x2_promote_low_f32x4(d), f64x2_promote_low_f32x4(q), f64x2_splat(sh as f64));
        if i64x2_extract_lane::<0>(bad) != 0 {
            redo(j, sh);
        } else {
            *pd.add(j) = f64x2_extract_lane::<0>(mean);
            *pq.add(j) = f64x2_extract_lane::<0>(var);
        }
        j += 1;
    }
}

/// The O(N*C) rest of the statistics pass (see `statistics`), from mu_in and var_in of every row.
pub fn derive(n: usize, c: usize, mode: u32, layer: &Layer, st: Stats) {
    let training = mode & MODE_TRAINING != 0;
    let using_bn = mode & MODE_USING_BN != 0;
    for i in 0..n {
        let (mean, var) =
            group_f64x2(&st.mu_in[i * c..(i + 1) * c], &st.var_in[i * c..(i + 1) * c]);
        st.mu_ln[i] = mean;
        st.var_ln[i] = var;
    }

    if !using_bn {
        return;
    }
    if !training {
        for j in 0..c {
            st.mu_bn[j] = layer.running_mean[j] as f64;
            st.var_bn[j] = layer.running_var[j] as f64;
        }
        return;
    }
    // Over n for every c at once, row by row, so memory is read in order; each channel still
    // sums its members in the order n = 0, 1, ... as the reference does.
    st.mu_bn.fill(0.0);
    for mu in st.mu_in.chunks_exact(c) {
        for (acc, &v) in st.mu_bn.iter_mut().zip(mu) {
            *acc += v;
        }
    }
    for acc in st.mu_bn.iter_mut() {
        *acc /= n as f64;
    }
    st.var_bn.fill(0.0);
    for (mu, var) in st.mu_in.chunks_exact(c).zip(st.var_in.chunks_exact(c)) {
        for (((acc, &mean), &a), &v) in st.var_bn.iter_mut().zip(st.mu_bn.iter()).zip(mu).zip(var) {
            let e = a - mean;
            *acc += v + e * e;
        }
    }
    if mode & MODE_BN_PARTIALS != 0 {
        return;
    }
    for acc in st.var_bn.iter_mut() {
        *acc /= n as f64;
    }
}

/// (mean_k mu_k, mean_k (var_k + (mu_k - mean)^2)) over a group of members in f64, with four
/// partial sums per sum: the adds do not wait on each other, and the sums are, if anything, more
/// accurate than one running sum.
fn group_f64x2(mu: &[f64], var: &[f64]) -> (f64, f64) {
    let k = mu.len();
    let pairs = k / 4 * 4;
    let hsum = |v: v128| f64x2_extract_lane::<0>(v) + f64x2_extract_lane::<1>(v);
    let z = f64x2_splat(0.0);
    let (mut a0, mut a1) = (z, z);
    let mut i = 0;
    // SAFETY: every load reads lanes [i, i + 4) with i + 4 <= pairs <= k.
    unsafe {
        while i < pairs {
            a0 = f64x2_add(a0, v128_load(mu.as_ptr().add(i) as *const v128));
            a1 = f64x2_add(a1, v128_load(mu.as_ptr().add(i + 2) as *const v128));
            i += 4;
        }
    }
    let mut sum = hsum(f64x2_add(a0, a1));
    for &v in &mu[pairs..] {
        sum += v;
    }
    let mean = sum / k as f64;
    let m = f64x2_splat(mean);
    let (mut b0, mut b1) = (z, z);
    i = 0;
    // SAFETY: as above, for mu and var (same length).
    unsafe {
        while i < pairs {
            let e0 = f64x2_sub(v128_load(mu.as_ptr().add(i) as *const v128), m);
            let e1 = f64x2_sub(v128_load(mu.as_ptr().add(i + 2) as *const v128), m);
            let v0 = v128_load(var.as_ptr().add(i) as *const v128);
            let v1 = v128_load(var.as_ptr().add(i + 2) as *const v128);
            b0 = f64x2_add(b0, f64x2_add(v0, f64x2_mul(e0, e0)));
            b1 = f64x2_add(b1, f64x2_add(v1, f64x2_mul(e1, e1)));
            i += 4;
        }
    }
    let mut spread = hsum(f64x2_add(b0, b1));
    for (&a, &v) in mu[pairs..].iter().zip(&var[pairs..]) {
        let e = a - mean;
        spread += v + e * e;
    }
    (mean, spread / k as f64)
}

/// Normalize pass of y = SN(x) for layout "nd", from the statistics `statistics` left (whose BN
/// part the caller may have replaced, e.g. by cross-replica statistics). First, per row, in f64
/// (kept in the statistics area for a backward pass):
///   mu[r] = w0 mu_in + w1 mu_ln + w2 mu_bn,  var[r] = v0 var_in + v1 var_ln + v2 var_bn
///   scale = gamma / sqrt(var + eps),  mu = hi + lo with hi = f32(mu),  bias = beta - lo * scale
/// into `scratch` as f32 [hi, scale, bias, 0] per row (`row_constants`: two rows per f64x2, in
/// a loop of its own so that the square roots and divisions of successive rows overlap); then
/// one sweep per row
///   y = (x - hi) * scale + bias  ==  (x - mu) * gamma / sqrt(var + eps) + beta.
///
/// # Safety
/// `x` and `y` must be valid for n*c*m floats and be the same pointer or not overlap; `layer`,
/// `stats` and `scratch` (16 bytes per row, 16-byte aligned) as in `layout`, overlapping neither
/// tensor.
pub unsafe fn normalize(
    x: *const f32,
    y: *mut f32,
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
    scratch: *mut v128,
) {
    let wide = constants(n, c, mode, layer, st, scratch);
    sweep(x, y, n * c, m, scratch, wide);
}

/// The per-row constants of `normalize` (mu, var into the statistics area, [hi, scale, bias, 0]
/// into `scratch`), before its sweep.
///
/// # Safety
/// `scratch` valid for n*c v128, overlapping nothing else here.
pub unsafe fn constants(
    n: usize,
    c: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
    scratch: *mut v128,
) -> bool {
    let using_bn = mode & MODE_USING_BN != 0;
    let rows = core::slice::from_raw_parts_mut(scratch, n * c);
    let mix = Mix::new(layer, using_bn);
    let mut any_wide = false;
    for i in 0..n {
        let at = i * c..(i + 1) * c;
        let (ln_mu, ln_var) = (st.mu_ln[i], st.var_ln[i]);
        let bn = if using_bn { Some((&st.mu_bn[..], &st.var_bn[..])) } else { None };
        any_wide |= row_constants(
            &mix,
            layer,
            (&st.mu_in[at.clone()], &st.var_in[at.clone()]),
            (ln_mu, ln_var),
            bn,
            (&mut st.mu[at.clone()], &mut st.var[at.clone()]),
            &mut rows[at],
        );
    }
    // For the backward (nd_grad): whether it needs its wide-row paths.
    st.wide[0] = if any_wide { 1.0 } else { 0.0 };
    any_wide
}

/// The normalize sweep over `rows` consecutive rows of m floats at `x` into `y`, with the
/// per-row constants `constants` left at `consts` (those of the range's first row; a caller may
/// normalize the tensor chunk by chunk). `x` and `y` may be the same pointer. Any row count and
/// any 4-byte alignment; rows of m % 4 != 0 floats go four at a time where that is faster, with
/// the same results bit for bit.
///
/// # Safety
/// `x`, `y` valid for rows * m floats, the same or not overlapping; `consts` for `rows` v128.
pub unsafe fn sweep(
    x: *const f32,
    y: *mut f32,
    rows: usize,
    m: usize,
    consts: *const v128,
    wide: bool,
) {
    if !wide {
        for_rows(
            x,
            rows,
            m,
            |r| simd::normalize(x.add(r * m), y.add(r * m), m, *consts.add(r)),
            |r, g| simd::normalize_x4(x.add(r * m), y.add(r * m), g, consts.add(r)),
        );
        return;
    }
    sweep_checked(x, y, rows, m, consts);
}

/// `sweep` for rows some of which are wide (`wide`): lane 3 of a row's constants is 0, or `sc`
/// for a wide row. The other rows give the same results as in `sweep`.
///
/// # Safety
/// As `sweep`.
#[inline(never)]
unsafe fn sweep_checked(x: *const f32, y: *mut f32, rows: usize, m: usize, consts: *const v128) {
    let one = |r: usize| {
        let k = *consts.add(r);
        if f32x4_extract_lane::<3>(k) == 0.0 {
            simd::normalize(x.add(r * m), y.add(r * m), m, k);
        } else {
            let k = [
                f32x4_extract_lane::<0>(k),
                f32x4_extract_lane::<1>(k),
                f32x4_extract_lane::<2>(k),
                f32x4_extract_lane::<3>(k),
            ];
            wide::normalize(x.add(r * m), y.add(r * m), m, k);
        }
    };
    for_rows(x, rows, m, &one, |r, g| {
        let c = consts.add(r);
        let lane3 = |k: usize| i32x4_extract_lane::<3>(*c.add(k));
        if (lane3(0) | lane3(1) | lane3(2) | lane3(3)) != 0 {
            for k in 0..4 {
                one(r + k);
            }
        } else {
            simd::normalize_x4(x.add(r * m), y.add(r * m), g, c);
        }
    });
}

/// Rows of at least this many floats (m % 4 != 0) are swept four at a time. Measured: up to
/// ~10% faster for m = 99..3137 (misaligned rows cost that much), a few percent at m = 49, about
/// even at 25; shorter rows are faster one at a time (the group's per-row loops cost more than
/// they save). Rows of m % 4 == 0 floats are all aligned already.
const GROUP_MIN: usize = 25;

/// Drives a sweep over `rows` rows of m floats, the first at `x`: `one(r)` sweeps row r by itself,
/// `four(r, g)` rows r..r + 4 as one run (`simd::Group4`). Rows of m % 4 != 0 floats
/// (m >= `GROUP_MIN`) go four at a time from the first of the first four rows that starts
/// 16-byte aligned, if any, so that every vector of the groups is aligned; the rows before and
/// after go one at a time. A sweep's results must not depend on which of the two does a row.
///
/// # Safety
/// `one` and `four` must be safe to call for the row indices given.
pub unsafe fn for_rows(
    x: *const f32,
    rows: usize,
    m: usize,
    one: impl Fn(usize),
    four: impl Fn(usize, &simd::Group4),
) {
    if m < GROUP_MIN || m % 4 == 0 || rows < 4 {
        for r in 0..rows {
            one(r);
        }
        return;
    }
    let aligned = |r: usize| x.add(r * m) as usize % 16 == 0;
    let r0 = (0..4).find(|&r| aligned(r)).unwrap_or(0);
    let g = simd::Group4::new(m);
    let end = r0 + (rows - r0) / 4 * 4;
    for r in 0..r0 {
        one(r);
    }
    let mut r = r0;
    while r < end {
        four(r, &g);
        r += 4;
    }
    for r in end..rows {
        one(r);
    }
}

/// The mixing weights and eps, splatted once per call.
struct Mix {
    w: [f64; 3],
    v: [f64; 3],
    eps: f64,
}

impl Mix {
    fn new(layer: &Layer, using_bn: bool) -> Mix {
        let (mut w, mut v) = (layer.mean_mix, layer.var_mix);
        if !using_bn {
            w[2] = 0.0;
            v[2] = 0.0;
        }
        Mix { w, v, eps: layer.eps }
    }
}

/// Per-row constants of one sample n (C rows), see `normalize`. The f64 arithmetic follows the
/// reference's order: (w0 mu_in + w1 mu_ln) + w2 mu_bn. Rows go two at a time through f64x2.
#[inline(always)]
fn row_constants(
    mix: &Mix,
    layer: &Layer,
    (mu_in, var_in): (&[f64], &[f64]),
    (ln_mu, ln_var): (f64, f64),
    bn: Option<(&[f64], &[f64])>,
    (mu_out, var_out): (&mut [f64], &mut [f64]),
    out: &mut [v128],
) -> bool {
    let c = mu_in.len();
    let one = |j: usize| -> ([f64; 2], [f32; 3]) {
        let mut mu = mix.w[0] * mu_in[j] + mix.w[1] * ln_mu;
        let mut var = mix.v[0] * var_in[j] + mix.v[1] * ln_var;
        if let Some((bm, bv)) = bn {
            mu += mix.w[2] * bm[j];
            var += mix.v[2] * bv[j];
        }
        let scale = layer.gamma[j] as f64 / simd::sqrt_f64(var + mix.eps);
        let hi = mu as f32;
        let lo = mu - hi as f64;
        let beta = layer.beta[j] as f64;
        // lo = 0 skips lo * scale, which is NaN when scale is Inf (eps = 0, var = 0).
        let bias = if lo == 0.0 { beta } else { beta - lo * scale };
        ([mu, var], [hi, scale as f32, bias as f32])
    };
    let pairs = c / 2 * 2;
    let (w0, w1, w2) =
        (f64x2_splat(mix.w[0]), f64x2_splat(mix.w[1] * ln_mu), f64x2_splat(mix.w[2]));
    let (v0, v1, v2) =
        (f64x2_splat(mix.v[0]), f64x2_splat(mix.v[1] * ln_var), f64x2_splat(mix.v[2]));
    let eps = f64x2_splat(mix.eps);
    let zero = f64x2_splat(0.0);
    let (low, high) = (f64x2_splat(wide::LOW), f64x2_splat(wide::HIGH));
    let mut in_range = i64x2_splat(-1);
    let mut j = 0;
    // SAFETY: every access is at lanes [j, j + 2) with j + 2 <= pairs <= c, the length of every
    // slice here (out too).
    unsafe {
        let ld = |s: &[f64], j: usize| v128_load(s.as_ptr().add(j) as *const v128);
        let ld32 = |s: &[f32], j: usize| {
            f64x2_promote_low_f32x4(v128_load64_zero(s.as_ptr().add(j) as *const u64))
        };
        while j < pairs {
            let mut mu = f64x2_add(f64x2_mul(w0, ld(mu_in, j)), w1);
            let mut var = f64x2_add(f64x2_mul(v0, ld(var_in, j)), v1);
            if let Some((bm, bv)) = bn {
                mu = f64x2_add(mu, f64x2_mul(w2, ld(bm, j)));
                var = f64x2_add(var, f64x2_mul(v2, ld(bv, j)));
            }
            v128_store(mu_out.as_mut_ptr().add(j) as *mut v128, mu);
            v128_store(var_out.as_mut_ptr().add(j) as *mut v128, var);
            let scale = f64x2_div(ld32(layer.gamma, j), f64x2_sqrt(f64x2_add(var, eps)));
            let hi = f32x4_demote_f64x2_zero(mu);
            let lo = f64x2_sub(mu, f64x2_promote_low_f32x4(hi));
            // lo = 0 keeps bias = beta exactly (lo * scale would be NaN for an Inf scale).
            let lo_scale = v128_and(f64x2_mul(lo, scale), f64x2_ne(lo, zero));
            let bias = f32x4_demote_f64x2_zero(f64x2_sub(ld32(layer.beta, j), lo_scale));
            let scale = f32x4_demote_f64x2_zero(scale);
            // [hi0, s0, hi1, s1], then [hi0, s0, b0, 0] and [hi1, s1, b1, 0] (bias lanes 2, 3 are 0).
            let t = i32x4_shuffle::<0, 4, 1, 5>(hi, scale);
            *out.get_unchecked_mut(j) = i32x4_shuffle::<0, 1, 4, 6>(t, bias);
            *out.get_unchecked_mut(j + 1) = i32x4_shuffle::<2, 3, 5, 6>(t, bias);
            // var + eps outside [LOW, HIGH] (or 0, Inf, NaN): maybe a wide row, see `wide`.
            let ve = f64x2_add(var, eps);
            in_range = v128_and(in_range, v128_and(f64x2_ge(ve, low), f64x2_le(ve, high)));
            j += 2;
        }
    }
    let mut any_wide = !i64x2_all_true(in_range);
    if j < c {
        let ([mu, var], [hi, scale, bias]) = one(j);
        mu_out[j] = mu;
        var_out[j] = var;
        out[j] = f32x4(hi, scale, bias, 0.0);
        any_wide |= wide_fix(mix, layer, mu, var, j, out);
    }
    if any_wide {
        for k in 0..pairs {
            wide_fix(mix, layer, mu_out[k], var_out[k], k, out);
        }
    }
    any_wide
}

/// Replaces row j's normalize constants by those of `wide` when var + eps makes it a wide row;
/// returns whether it did.
#[inline(never)]
fn wide_fix(mix: &Mix, layer: &Layer, mu: f64, var: f64, j: usize, out: &mut [v128]) -> bool {
    let ve = var + mix.eps;
    let sc = wide::scale(ve);
    if sc != 0.0 {
        let s = 1.0 / simd::sqrt_f64(ve);
        let [h, t, b, sc] =
            wide::normalize_constants(mu, s, layer.gamma[j] as f64, layer.beta[j] as f64, sc);
        out[j] = f32x4(h, t, b, sc);
    }
    sc != 0.0
}
