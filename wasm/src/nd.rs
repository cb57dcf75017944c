//! SwitchNorm2d/3d forward on x viewed as [N, C, M], in two calls: `statistics` (here) reads the
//! tensor once, `nd_normalize::normalize` reads it again and writes y. Between them the caller may
//! replace the BN statistics (SyncSN); everything besides the two passes is O(N*C) work on per-row
//! statistics.

use crate::layout::{
    Layer, Stats, MODE_BATCH_AVERAGE, MODE_BN_PARTIALS, MODE_REFINE_MEANS, MODE_TRAINING,
    MODE_USING_BN,
};
use crate::moments::{RowPlan, TINY_Q};
use crate::nd_grad_means::{MEAN_ERR, VAR_ERR};
use crate::{exact, simd};
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
    row_moments(x, m, st.mu_in, st.var_in, st.mu, mode & MODE_REFINE_MEANS != 0);
    derive(x, n, c, m, mode, layer, st);
}

/// SHIFT_SLACK of `moments`: a shift is re-done when d^2 (1 + S) > S n q.
const SLACK: f64 = 3.0;

/// Whether a row's sums (d, q about its shift, in f64 from f32) give its moments as they are:
/// t = S m q - (1 + S) d^2 at least `kept_floor(m)` and finite. That one test is false for q not
/// finite (NaN or Inf: t is NaN or Inf), for q below `moments::TINY_Q` (then t < S m TINY_Q,
/// below the floor: squares may have been subnormal) and for a poor shift (d^2 (1 + S) > S m q:
/// t < 0); rows within a hair of those limits are measured again too, which is only slower. Two
/// compares per two rows (three tests cost ~5% of the statistics pass at M = 49).
#[inline(always)]
fn kept(t: f64, floor: f64) -> bool {
    t >= floor && t <= f64::MAX
}

/// The floor of `kept` for rows of m floats: twice S m TINY_Q.
#[inline(always)]
fn kept_floor(m: usize) -> f64 {
    2.0 * SLACK * m as f64 * TINY_Q as f64
}

/// `kept` of two rows (lanes): all ones where a row's moments are kept.
#[inline(always)]
fn kept2(q: v128, dd: v128, slack1: v128, slack_n: v128, floor: v128) -> v128 {
    let t = f64x2_sub(f64x2_mul(slack_n, q), f64x2_mul(dd, slack1));
    v128_and(f64x2_ge(t, floor), f64x2_le(t, f64x2_splat(f64::MAX)))
}

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
    refine: bool,
) {
    let cut = if refine { NEAR_ZERO2 } else { SWEPT_CANCELLED2 };
    // The sweeps test each row against the cut where its mean and variance are in registers:
    // a call where no row lies that near 0 (ordinary data) pays no pass over the statistics.
    if row_sweeps(x, m, mu_in, var_in, tmp, cut) {
        refine_near_zero(x, m, mu_in, var_in, cut);
    }
}

/// Whether mu lies within sqrt(cut) of the std (squared: `var`) of 0. NaN compares false.
#[inline(always)]
fn near_zero(mu: f64, var: f64, cut: f64) -> bool {
    mu * mu < cut * var
}

/// |mu_in| below this times the row's std (squared here: 2^-20) marks a row whose mean
/// `refine_near_zero` sums again; the same cut as WebGPU's (`refine_mean` in shaders/common.wgsl).
const NEAR_ZERO2: f64 = 1.0 / (1u64 << 20) as f64;

/// |mean| below this times the std (squared here: 2^-60) marks a mean that cancels past what an f64
/// sum resolves (~2^-53 of the data, more over long rows): it is formed from the exact sum
/// (`exact::sum_f32`), as the float64 reference forms it where its in-order sum does not round.
/// Rows of +-v pairs and a pair of small elements, whose IN mean (and so their channel's BN mean)
/// lies 2^-56 to 2^-200 of the std from 0, left that mean as the f64 sums' rounding: the logit
/// gradients, which difference the means, 2.3x off or 0, and an LN mean that took such a row's 1e14
/// of rounding beside its 7.5 put y of a narrow row in its sample at -6.6e-30 for -18.9
/// (`tests/bn_mean_below_std_test.ts`). Taken where a row's mean is summed again already
/// (`refine_near_zero`, `sum_member_again`), and kept by the backward's `refine_dots`;
/// SwitchNorm1d's columns in `oned`. Ordinary data's means lie this near 0 with a chance of ~2^-30
/// per row: the gate is a compare on those paths, and the exact sums (scalar) fall on no ordinary
/// row.
const CANCELLED2: f64 = 1.0 / (1u64 << 60) as f64;

/// Whether mu lies within 2^-30 of the std (squared: `var`) of 0 (`CANCELLED2`).
#[inline(always)]
pub(crate) fn cancelled(mu: f64, var: f64) -> bool {
    near_zero(mu, var, CANCELLED2)
}

/// In a forward alone (no `MODE_REFINE_MEANS`), |mu_in| as the sweeps leave it below this times the
/// row's std (squared: 2^-40) has the row summed again by `refine_near_zero` (f64, then the exact
/// sum where the mean still `cancelled`). The sweeps' float32 sums leave a mean up to `MEAN_ERR`
/// (2^-22) of the std off (2^-24 to 2^-27 measured on rows of +-v pairs), so a mean that cancels to
/// 2^-56 of the std shows as that rounding (not below `CANCELLED2`'s 2^-30) or as 0: 2^-20 holds it
/// with room. A row so left at 0 (true mean -4.3e-34, std 7.5e-11) was its sample's LN mean, and
/// `refine_near_zero_groups`' sum about 0 moved it by nothing: a narrow row mixed on it had y 597
/// for 1.75e7 (`tests/bn_mean_below_std_test.ts`). Ordinary data's means lie this near 0 with a
/// chance of ~2^-20 sqrt(M) per row (data of mean 0; less else), each such row one f64 sweep: the
/// cost is a compare per two rows, in the sweeps (`row_sweeps`), where mean and variance are in
/// registers; as a pass of its own over the statistics it cost a forward alone 1.5% to 3% at
/// [64, 512, 7, 7] (`bench/ab.ts`, MODE=infer). Rows that cancel exactly (odd functions sampled
/// evenly) pay the f64 sweep and the exact sum, as in a training forward.
const SWEPT_CANCELLED2: f64 = 1.0 / (1u64 << 40) as f64;

/// In a forward that a backward may follow (`MODE_REFINE_MEANS`: training, or keepForBackward),
/// rows whose mean lies within 2^-10 of their std of 0 (`cut` `NEAR_ZERO2`; a forward alone passes
/// `SWEPT_CANCELLED2`, for means that cancel) have it summed again in f64 (`simd::sum_f64`, then
/// `exact::sum_f32` where it `cancelled`): the sweeps' float32 sums leave a mean ~2^-25 of the std
/// off, and where the mean is ~0 beside its std that error is all of what it adds to the LN and BN
/// means and the mixed mean: rows of std 1.7e7 and means ~5 beside rows of std 0.3 made
/// mean_weight's gradient 2.7e-2 relative off and, LN-mixed, the small rows' dgamma 3e-2; zero rows
/// beside rows of std 1.6e7 and mean -232 (attack seed 41698) made dx 2.3e-3 off through its LN
/// variance path, (mu_in - mu_ln) gvL (WebGPU, which did this already, was right). A row's result
/// depends on it alone. Data of ~0 mean (rows of M floats: a share ~2^-10 sqrt(M) of them) pay one
/// f64 sweep of those rows, and this pass over the statistics; others not even that (`row_sweeps`
/// found no row within `cut`).
///
/// # Safety
/// As `row_moments`.
#[inline(never)]
unsafe fn refine_near_zero(x: *const f32, m: usize, mu_in: &mut [f64], var_in: &[f64], cut: f64) {
    let rows = mu_in.len();
    // About 0 rather than about the mean: within 2^-10 of the std of 0, the mean is no better a
    // centre, and the sum saves a subtraction per float.
    let fix = |r: usize, mu: &mut f64| {
        let mut mean = simd::sum_f64(x.add(r * m), m) / m as f64;
        if cancelled(mean, var_in[r]) {
            mean = exact::sum_f32(x.add(r * m), m, 1) / m as f64;
        }
        if mean.is_finite() {
            *mu = mean;
        }
    };
    let near = |mu: f64, var: f64| near_zero(mu, var, cut);
    let k = f64x2_splat(cut);
    let even = rows / 2 * 2;
    let mut r = 0;
    while r < even {
        let mu = v128_load(mu_in.as_ptr().add(r) as *const v128);
        let var = v128_load(var_in.as_ptr().add(r) as *const v128);
        // NaN compares false: such rows are left.
        if v128_any_true(f64x2_lt(f64x2_mul(mu, mu), f64x2_mul(k, var))) {
            for q in r..r + 2 {
                if near(mu_in[q], var_in[q]) {
                    fix(q, &mut mu_in[q]);
                }
            }
        }
        r += 2;
    }
    if r < rows && near(mu_in[r], var_in[r]) {
        fix(r, &mut mu_in[r]);
    }
}

/// The sweeps of `row_moments`. Returns whether some row's mean as stored lies within `cut`
/// (`near_zero`) of its std of 0: the rows `refine_near_zero` sums again, tested as it tests them
/// (false: it would find none).
///
/// # Safety
/// As `row_moments`.
unsafe fn row_sweeps(
    x: *const f32,
    m: usize,
    mu_in: &mut [f64],
    var_in: &mut [f64],
    tmp: &mut [f64],
    cut: f64,
) -> bool {
    let plan = RowPlan::new(m);
    let rows = mu_in.len();
    if rows == 0 {
        return false;
    }
    if m > crate::moments::CHUNK {
        let mut near = false;
        let mut shift = plan.first_shift(x);
        for (r, (mu, var)) in mu_in.iter_mut().zip(var_in.iter_mut()).enumerate() {
            let next = if r + 1 < rows { plan.first_shift(x.add((r + 1) * m)) } else { 0.0 };
            let mo = plan.row(x.add(r * m), shift);
            shift = next;
            *mu = mo.mean;
            *var = mo.m2 * plan.inv_m1;
            near |= near_zero(*mu, *var, cut);
        }
        return near;
    }
    if (4..=SHORT).contains(&m) {
        return short_rows(x, m, &plan, mu_in, var_in, cut);
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
    let (floor, floor2) = (kept_floor(m), f64x2_splat(kept_floor(m)));
    // One row by itself, with the same arithmetic as a lane below, so that a row's result does
    // not depend on which row it is paired with (a caller's chunks may pair rows differently).
    // Returns whether it lies within `cut` of 0.
    let one = |r: usize| {
        let (d, q, s) = (*pd.add(r), *pq.add(r), *ps.add(r));
        let dd = d * d;
        if !kept(SLACK * m as f64 * q - dd * (1.0 + SLACK), floor) {
            let mo = plan.row(x.add(r * m), s as f32);
            *pd.add(r) = mo.mean;
            *pq.add(r) = mo.m2 * plan.inv_m1;
        } else {
            let m2 = q - dd * inv_n;
            *pd.add(r) = s + d * inv_n;
            *pq.add(r) = (if m2 < 0.0 { 0.0 } else { m2 }) * plan.inv_m1;
        }
        near_zero(*pd.add(r), *pq.add(r), cut)
    };
    // `near_zero` of the rows of the pairs below, lane by lane (NaN compares false).
    let cut2 = f64x2_splat(cut);
    let mut near = f64x2_splat(0.0);
    let mut near_one = false;
    let even = rows / 2 * 2;
    let mut j = 0;
    while j < even {
        let d = v128_load(pd.add(j) as *const v128);
        let q = v128_load(pq.add(j) as *const v128);
        let dd = f64x2_mul(d, d);
        if !i64x2_all_true(kept2(q, dd, slack1, slack_n, floor2)) {
            near_one |= one(j);
            near_one |= one(j + 1);
        } else {
            let s = v128_load(ps.add(j) as *const v128);
            let mean = f64x2_add(s, f64x2_mul(d, vinv));
            let m2 = f64x2_sub(q, f64x2_mul(dd, vinv));
            // Clamped at 0 (a hair below for constant data).
            let m2 = v128_bitselect(zero, m2, f64x2_lt(m2, zero));
            let var = f64x2_mul(m2, vinv_m1);
            v128_store(pd.add(j) as *mut v128, mean);
            v128_store(pq.add(j) as *mut v128, var);
            near = v128_or(near, f64x2_lt(f64x2_mul(mean, mean), f64x2_mul(cut2, var)));
        }
        j += 2;
    }
    if j < rows {
        near_one |= one(j);
    }
    near_one || v128_any_true(near)
}

/// Rows up to this long go through `short_rows`. Longer ones (up to `moments::CHUNK`) are
/// measured one at a time: four rows at a time, the statistics sweep measured slower from
/// m = 64 on (one thread: 0.79x the time as one row at a time at 8x8, 0.67x at 10x10, 0.32x at
/// 14x14; equal at 7x7, 1.08x at 6x6, 1.5x at 5x5), so the four-row sweep stops below that.
const SHORT: usize = 48;

/// `row_moments` for rows of 4..=SHORT floats: four rows at a time through
/// `simd::deviation_sums_x4` (one shift per row, from `first_shift`, taken a group ahead), then
/// mean and variance of the four in two f64x2, stored as vectors. A row whose sums met Inf/NaN
/// or whose shift was poor is measured again by `RowPlan::row`. Rows left over (rows % 4) go
/// through the same arithmetic one at a time, so a row's result depends on that row alone.
/// Returns what `row_sweeps` returns.
///
/// # Safety
/// As `row_moments`.
unsafe fn short_rows(
    x: *const f32,
    m: usize,
    plan: &RowPlan,
    mu_in: &mut [f64],
    var_in: &mut [f64],
    cut: f64,
) -> bool {
    let rows = mu_in.len();
    let (pd, pq) = (mu_in.as_mut_ptr(), var_in.as_mut_ptr());
    let inv_n = 1.0 / m as f64;
    let (vinv, vinv_m1) = (f64x2_splat(inv_n), f64x2_splat(plan.inv_m1));
    let (slack1, slack_n) = (f64x2_splat(1.0 + SLACK), f64x2_splat(SLACK * m as f64));
    let zero = f64x2_splat(0.0);
    let floor = f64x2_splat(kept_floor(m));
    // Mean and variance of two rows (lanes), and which of them are kept (`kept`; the others
    // are measured again).
    let finish = |d: v128, q: v128, s: v128| -> (v128, v128, v128) {
        let dd = f64x2_mul(d, d);
        let good = kept2(q, dd, slack1, slack_n, floor);
        let mean = f64x2_add(s, f64x2_mul(d, vinv));
        let m2 = f64x2_sub(q, f64x2_mul(dd, vinv));
        // Clamped at 0 (a hair below for constant data).
        let m2 = v128_bitselect(zero, m2, f64x2_lt(m2, zero));
        (mean, f64x2_mul(m2, vinv_m1), good)
    };
    // Returns whether the row lies within `cut` of 0.
    let redo = |r: usize, shift: f32| {
        let mo = plan.row(x.add(r * m), shift);
        *pd.add(r) = mo.mean;
        *pq.add(r) = mo.m2 * plan.inv_m1;
        near_zero(*pd.add(r), *pq.add(r), cut)
    };
    // `near_zero` of the kept lanes below (NaN compares false); the rows measured again by
    // `redo` in `near_one`.
    let cut2 = f64x2_splat(cut);
    let near2 = |mean: v128, var: v128, good: v128| {
        v128_and(good, f64x2_lt(f64x2_mul(mean, mean), f64x2_mul(cut2, var)))
    };
    let mut near = f64x2_splat(0.0);
    let mut near_one = false;
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
        let (m01, v01, k01) = finish(
            f64x2_promote_low_f32x4(d),
            f64x2_promote_low_f32x4(q),
            f64x2_promote_low_f32x4(s),
        );
        let (m23, v23, k23) = finish(hi(d), hi(q), hi(s));
        v128_store(pd.add(j) as *mut v128, m01);
        v128_store(pd.add(j + 2) as *mut v128, m23);
        v128_store(pq.add(j) as *mut v128, v01);
        v128_store(pq.add(j + 2) as *mut v128, v23);
        near = v128_or(near, v128_or(near2(m01, v01, k01), near2(m23, v23, k23)));
        if !i64x2_all_true(v128_and(k01, k23)) {
            let kept = [
                i64x2_extract_lane::<0>(k01),
                i64x2_extract_lane::<1>(k01),
                i64x2_extract_lane::<0>(k23),
                i64x2_extract_lane::<1>(k23),
            ];
            let sh = [
                f32x4_extract_lane::<0>(s),
                f32x4_extract_lane::<1>(s),
                f32x4_extract_lane::<2>(s),
                f32x4_extract_lane::<3>(s),
            ];
            for k in 0..4 {
                if kept[k] == 0 {
                    near_one |= redo(j + k, sh[k]);
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
        let (mean, var, good) =
            finish(f64x2_promote_low_f32x4(d), f64x2_promote_low_f32x4(q), f64x2_splat(sh as f64));
        if i64x2_extract_lane::<0>(good) == 0 {
            near_one |= redo(j, sh);
        } else {
            *pd.add(j) = f64x2_extract_lane::<0>(mean);
            *pq.add(j) = f64x2_extract_lane::<0>(var);
            near_one |= near_zero(*pd.add(j), *pq.add(j), cut);
        }
        j += 1;
    }
    near_one || v128_any_true(near)
}

/// The O(N*C) rest of the statistics pass (see `statistics`), from mu_in and var_in of every row
/// (`derive_groups`). The members of an LN or BN group whose mean lies within 2^-9 of its std of 0
/// and that has a far narrower member (`refine_near_zero_groups`) are summed again and the groups
/// derived again. Under SyncSN this sees the replica's own BN groups,
/// before the merge: a BN mean that cancels only across replicas is not taken again.
///
/// # Safety
/// `x` valid for n*c*m floats, the data of the rows measured.
pub unsafe fn derive(
    x: *const f32,
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    mut st: Stats,
) {
    derive_groups(n, c, mode, layer, &mut st);
    if refine_near_zero_groups(x, n, c, m, mode, &mut st) {
        derive_groups(n, c, mode, layer, &mut st);
    }
    if refine_wide_groups(x, n, c, m, mode, layer, &mut st) {
        derive_groups(n, c, mode, layer, &mut st);
    }
    if refine_overflowing_rows(x, n, c, m, mode, layer, &mut st) {
        derive_groups(n, c, mode, layer, &mut st);
    }
    if mode & MODE_BATCH_AVERAGE != 0 && refine_batch_average(x, n, c, m, layer, &mut st) {
        derive_groups(n, c, mode, layer, &mut st);
    }
}

/// Where a channel's mean^2 exceeds this times its variance, `refine_batch_average` rounds its
/// sums as the reference does.
const AMPLIFIED: f64 = 8.0;

/// The batch average (`MODE_BATCH_AVERAGE`) adds each batch's mu_bn and mu_bn^2 + var_bn onto
/// float32 sums, rounding once (`applyRunningUpdate`, as the reference), and finalizing forms
/// running_var = sum_sq / K - (sum / K)^2, which cancels by mean^2 / var. The BN statistics carry
/// their members' float32-accurate means (an error e_m of up to MEAN_ERR of their std), and
/// mu_bn^2 carries 2 |mu_bn| e_m: at a mean 33 times the std a channel's sum came out an ulp
/// from the reference's in 5 of 20 runs of 4 batches of [8, 16, 14, 14] of N(100 + c, 3), and
/// running_var after finalizing 11x to 19x its tolerance (realistic-use helper-83). So each
/// channel's two sums are rounded at both ends of their error bounds, and where the float32
/// results differ its members are summed again in f64 about their means (x - mu_in and its
/// square), whose BN statistics then round as the reference's. O(N*C) tests, then one f64 sweep
/// of the channels in doubt, only those of a mean beyond sqrt(`AMPLIFIED`) stds. Returns whether
/// some row moved.
///
/// # Safety
/// As `derive`.
#[inline(never)]
unsafe fn refine_batch_average(
    x: *const f32,
    n: usize,
    c: usize,
    m: usize,
    layer: &Layer,
    st: &mut Stats,
) -> bool {
    let root = simd::sqrt_f64;
    let abs = simd::abs_f64;
    // Whether s + (t +- e), rounded to f32 as the caller's sum is, may differ from s + t's.
    let doubt = |s: f32, t: f64, e: f64| {
        let e = e + (abs(s as f64) + abs(t)) * f64::EPSILON * 4.0;
        (s as f64 + (t - e)) as f32 != (s as f64 + (t + e)) as f32
    };
    let inv_m1 = 1.0 / (m as f64 - 1.0);
    let mut any = false;
    for j in 0..c {
        let (mean, var) = (st.mu_bn[j], st.var_bn[j]);
        // An ulp of either sum moves the finalized variance by ~2^-24 (mean^2 + var) / var or
        // 2^-23 mean^2 / var of itself: below a mean of sqrt(AMPLIFIED) stds, under 1/100 of
        // running_var's tolerance (1e-5 of itself), and data of mean ~0 pay nothing.
        if !(mean.is_finite() && var.is_finite()) || mean * mean <= AMPLIFIED * var {
            continue;
        }
        let mut v_max = 0.0f64;
        for i in 0..n {
            v_max = v_max.max(st.var_in[i * c + j]);
        }
        let e_m = MEAN_ERR * root(v_max);
        // var_bn = mean_i (var_i + (mu_i - mu_bn)^2): each var_i to VAR_ERR, and each
        // difference to 2 e_m, whose square's error averages at most 4 e_m sqrt(var_bn) + 4 e_m^2.
        let e_v = VAR_ERR * var + 4.0 * e_m * root(var) + 4.0 * e_m * e_m;
        let (s_mean, s_var) = (layer.running_mean[j], layer.running_var[j]);
        if !doubt(s_mean, mean, e_m)
            && !doubt(s_var, mean * mean + var, 2.0 * abs(mean) * e_m + e_m * e_m + e_v)
        {
            continue;
        }
        for i in 0..n {
            let r = i * c + j;
            let mu = st.mu_in[r];
            let (d, q) = simd::deviation_sums_f64(x.add(r * m), m, mu);
            let dm = d / m as f64;
            if !(dm.is_finite() && q.is_finite()) {
                continue;
            }
            let m2 = q - d * dm;
            st.mu_in[r] = mu + dm;
            st.var_in[r] = (if m2 < 0.0 { 0.0 } else { m2 }) * inv_m1;
            any = true;
        }
    }
    any
}

/// A mixed mean's LN or BN term whose group is wider than the row by this much, times the row's
/// mixed std plus its distance |mu_in - mu| from the mixed mean, marks that group for
/// `refine_wide_groups`. The group mean carries its members' float32 rounding: measured, 2^-27
/// to 2^-25 of w_k std_k (the first failures, y 1.06x its tolerance, came at a group 2357 times
/// the row's std; ~2^-22 bounds it), so from 64 on the margin is ~20x. At 8 it took ordinary
/// data whose channels' stds span 100x under learned-looking variance logits [2, -5, -6] on
/// every call (the training forward 1.18x to 1.33x, attack helper-81), where y needs no more.
const WIDE_GROUP: f64 = 64.0;

/// The mixed mean mu = w0 mu_in + w1 mu_ln + w2 mu_bn takes the LN and BN means, which carry
/// their members' float32 rounding (`WIDE_GROUP`). Where a row is far narrower than such a group
/// and its mixed mean stays near its data (the group's means cancel in the mix, or sit at the
/// row's own offset), y = (x - mu) / std is off by that rounding over the row's std: a row of
/// std 1 beside a row of std 1e6 in its sample and the negated, shuffled wide row in its channel
/// (the LN and BN means cancel in the mix) had y 86x its tolerance (WebGPU, which sums in
/// float32 pairs, 7x). Such groups (a term w_k std_k beyond `WIDE_GROUP` times the row's mixed
/// std plus |mu_in - mu|) have their members summed again in f64 about their means, as
/// `refine_near_zero_groups` does; in every forward, since y needs it. The BN groups of an
/// evaluation are the running buffers (exact); under SyncSN (`MODE_BN_PARTIALS`) a BN group is
/// the replica's rows (a BN mean that cancels only across replicas is not taken). Cost: O(1)
/// where the variance weights make the case impossible (std_mix >= sqrt(v_k) std_k, so
/// w_k <= WIDE_GROUP sqrt(v_k) rules it out: equal weights, or any variance weight above ~3e-5
/// beside a mean weight of 1/3), else one f64x2 pass over the rows' statistics and one f64 sweep
/// of the flagged groups' members. Returns whether some mean moved.
///
/// # Safety
/// As `derive`.
#[inline(never)]
unsafe fn refine_wide_groups(
    x: *const f32,
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    st: &mut Stats,
) -> bool {
    let using_bn = mode & MODE_USING_BN != 0;
    let batch_bn = using_bn && mode & MODE_TRAINING != 0;
    let [w0, w1, w2] = layer.mean_mix;
    let [v0, v1, v2] = layer.var_mix;
    let ln_on = w1 > WIDE_GROUP * simd::sqrt_f64(v1);
    let bn_on = batch_bn && w2 > WIDE_GROUP * simd::sqrt_f64(v2);
    if !ln_on && !bn_on {
        return false;
    }
    // Under MODE_BN_PARTIALS var_bn holds M2, n times the variance (`derive_groups`).
    let per = if mode & MODE_BN_PARTIALS != 0 { n as f64 } else { 1.0 };
    // One pass over the rows in memory order (`wide_flags`). `mu` and `var` (the mixed
    // statistics, which `nd_normalize` writes later) hold each channel's term and flag meanwhile.
    for j in 0..c {
        let term = if bn_on { w2 * simd::sqrt_f64(st.var_bn[j] / per) / WIDE_GROUP } else { 0.0 };
        st.mu[j] = term;
        st.var[j] = 0.0;
    }
    let w2 = if using_bn { w2 } else { 0.0 };
    let w = WideMix { w0, w1, w2, v0, v1, v2: v2 / per, eps: layer.eps };
    // Members near 0 were summed again by `row_moments` where a backward may follow, not else.
    let done = mode & MODE_REFINE_MEANS != 0;
    let mut moved = false;
    for i in 0..n {
        let ln_term = if ln_on { w1 * simd::sqrt_f64(st.var_ln[i]) / WIDE_GROUP } else { 0.0 };
        if wide_flags(st, &w, c, i, ln_term, using_bn) {
            // Its members change no other row's flag by more than their rounding.
            (0..c).for_each(|j| moved |= sum_member_again(x, m, st, i * c + j, done));
        }
    }
    for j in 0..c {
        if st.var[j].to_bits() != 0 {
            (0..n).for_each(|i| moved |= sum_member_again(x, m, st, i * c + j, done));
        }
    }
    moved
}

/// `refine_overflowing_rows` flags a row where the bound of its normalize term,
/// scale^2 ((M - 1) var_in + (mu_in - mu)^2), passes this (2^248: |scale (x - mu)| may pass
/// 2^124, within 2^4 of float32's largest value).
const OVERFLOW2: f64 = (1u128 << 124) as f64 * (1u128 << 124) as f64;

/// A row some of whose y may pass float32's range (gamma / std times its spread beyond ~2^124)
/// holds its finite y, those near its mixed mean, to their own size (the others are infinite):
/// x - mu there may be far below the float32 rounding of the means mu is formed from, which the
/// sweeps' float32 sums of x - K leave ~2^-25 of their rows' std off. SwitchNorm2d rows of 3
/// values 2^33 [-4, -1, -1] under gamma 3e38 / std, mixed at -2^33 + 28 in training from a batch
/// mean whose other member's sums rounded (or at 1e10 scale, the row's own): y -6.0e29 for
/// 6.9e29, 2e4x to 4.8e4x Y (`tests/far_anchor_mean_test.ts`). Such a row has the rows its mixed
/// mean takes summed again in f64 about their means (`sum_member_again`): itself where IN has
/// weight, its sample's where LN has, its channel's where a batch BN has (an evaluation's BN is
/// the running buffers, exact; under SyncSN the replica's rows). O(N + C) where the call's bounds
/// (`wide::CallBounds::normalize_ordinary`) show that no row is wide, as in ordinary data; else
/// one O(N*C) pass over the rows' statistics and one f64 sweep of the flagged rows' members.
/// `st.mu` and `st.var` (written later by `nd_normalize`) hold the per-row flags meanwhile.
/// Returns whether some mean moved.
///
/// # Safety
/// As `derive`.
#[inline(never)]
unsafe fn refine_overflowing_rows(
    x: *const f32,
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    st: &mut Stats,
) -> bool {
    let using_bn = mode & MODE_USING_BN != 0;
    let batch_bn = using_bn && mode & MODE_TRAINING != 0;
    let partials = mode & MODE_BN_PARTIALS != 0;
    let [w0, w1, mut w2] = layer.mean_mix;
    let [v0, v1, mut v2] = layer.var_mix;
    if !using_bn {
        w2 = 0.0;
        v2 = 0.0;
    }
    // Under MODE_BN_PARTIALS var_bn holds M2, n times the variance (`derive_groups`): the call's
    // bounds leave it out (a lower bound of the std), the rows divide it.
    let per = if partials { n as f64 } else { 1.0 };
    let bn = if using_bn { Some((&st.mu_bn[..], &st.var_bn[..])) } else { None };
    let ordinary = crate::wide::CallBounds::new(
        c,
        m,
        layer.eps,
        [w0, w1, w2],
        [v0, v1, if partials { 0.0 } else { v2 }],
        (&st.mu_ln[..], &st.var_ln[..]),
        bn,
        layer.gamma,
        layer.beta,
    )
    .normalize_ordinary();
    if ordinary {
        return false;
    }
    let m1 = m as f64 - 1.0;
    let mut any = false;
    for i in 0..n {
        for j in 0..c {
            let r = i * c + j;
            let mut mu = w0 * st.mu_in[r] + w1 * st.mu_ln[i];
            let mut var = v0 * st.var_in[r] + v1 * st.var_ln[i] + layer.eps;
            if using_bn {
                mu += w2 * st.mu_bn[j];
                var += v2 * st.var_bn[j] / per;
            }
            let d = st.mu_in[r] - mu;
            let g = layer.gamma[j] as f64;
            let bound = (g * g / var) * (m1 * st.var_in[r] + d * d);
            // NaN (0 / 0 scales, non-finite data) is flagged too: summing again is harmless.
            let flag = g != 0.0 && !(bound <= OVERFLOW2);
            st.mu[r] = if flag { 1.0 } else { 0.0 };
            st.var[r] = 0.0;
            any |= flag;
        }
    }
    if !any {
        return false;
    }
    // Members near 0 were summed again by `row_moments` where a backward may follow, not else.
    let done = mode & MODE_REFINE_MEANS != 0;
    let mut moved = false;
    let mut again = |st: &mut Stats, r: usize| {
        if st.var[r] == 0.0 {
            st.var[r] = 1.0;
            moved |= sum_member_again(x, m, st, r, done);
        }
    };
    for i in 0..n {
        let rows = i * c..(i + 1) * c;
        if w1 != 0.0 && rows.clone().any(|r| st.mu[r] != 0.0) {
            rows.for_each(|r| again(st, r));
        }
    }
    if batch_bn && w2 != 0.0 {
        for j in 0..c {
            if (0..n).any(|i| st.mu[i * c + j] != 0.0) {
                (0..n).for_each(|i| again(st, i * c + j));
            }
        }
    }
    if w0 != 0.0 {
        for r in 0..n * c {
            if st.mu[r] != 0.0 {
                again(st, r);
            }
        }
    }
    moved
}

/// The mixing weights `refine_wide_groups` reads: w2 0 without usingBN, v2 over N under
/// `MODE_BN_PARTIALS` (var_bn then holds M2).
struct WideMix {
    w0: f64,
    w1: f64,
    w2: f64,
    v0: f64,
    v1: f64,
    v2: f64,
    eps: f64,
}

/// Sample i's rows for `refine_wide_groups`, two at a time in f64x2: row (i, j) passes LN's
/// term (w1 std_ln / WIDE_GROUP) where t = term - |mu_in - mu| passes its mixed std (t > 0 and
/// t^2 > var: no square root per row), and likewise channel j's term, `st.mu[j]`, whose flag it
/// then sets in `st.var[j]` (all bits). Returns whether some row passes LN's.
#[inline(always)]
fn wide_flags(st: &mut Stats, w: &WideMix, c: usize, i: usize, ln_term: f64, bn: bool) -> bool {
    let r0 = i * c;
    let (mu_base, var_base) = (w.w1 * st.mu_ln[i], w.v1 * st.var_ln[i] + w.eps);
    let row = |j: usize| {
        let (mut mu, mut var) = (w.w0 * st.mu_in[r0 + j] + mu_base, w.v0 * st.var_in[r0 + j]);
        var += var_base;
        if bn {
            mu += w.w2 * st.mu_bn[j];
            var += w.v2 * st.var_bn[j];
        }
        (simd::abs_f64(st.mu_in[r0 + j] - mu), var)
    };
    let passes = |t: f64, var: f64| t > 0.0 && t * t > var;
    let z = f64x2_splat(0.0);
    let (w0, w2, v0, v2) =
        (f64x2_splat(w.w0), f64x2_splat(w.w2), f64x2_splat(w.v0), f64x2_splat(w.v2));
    let (mb, vb, lt) = (f64x2_splat(mu_base), f64x2_splat(var_base), f64x2_splat(ln_term));
    let pass2 = |t: v128, var: v128| v128_and(f64x2_gt(t, z), f64x2_gt(f64x2_mul(t, t), var));
    let mut ln = z;
    let mut j = 0;
    // SAFETY: every load and store reads lanes [j, j + 2) with j + 2 <= c, of slices of c
    // (mu_bn, var_bn, and the first c of mu and var, R >= c) or of sample i's c rows.
    unsafe {
        let ld = |p: &[f64], k: usize| v128_load(p.as_ptr().add(k) as *const v128);
        while j + 2 <= c {
            let mi = ld(st.mu_in, r0 + j);
            let mut mu = f64x2_add(f64x2_mul(w0, mi), mb);
            let mut var = f64x2_add(f64x2_mul(v0, ld(st.var_in, r0 + j)), vb);
            if bn {
                mu = f64x2_add(mu, f64x2_mul(w2, ld(st.mu_bn, j)));
                var = f64x2_add(var, f64x2_mul(v2, ld(st.var_bn, j)));
            }
            let d = f64x2_abs(f64x2_sub(mi, mu));
            ln = v128_or(ln, pass2(f64x2_sub(lt, d), var));
            let flag = v128_or(ld(st.var, j), pass2(f64x2_sub(ld(st.mu, j), d), var));
            v128_store(st.var.as_mut_ptr().add(j) as *mut v128, flag);
            j += 2;
        }
    }
    let mut any = v128_any_true(ln);
    for j in j..c {
        let (d, var) = row(j);
        any |= passes(ln_term - d, var);
        if passes(st.mu[j] - d, var) {
            st.var[j] = f64::from_bits(!0);
        }
    }
    any
}

/// Row r's mean summed again in f64 about its mean (`simd::deviation_sum_f64`), unless it lies
/// near 0 and `row_moments` summed it again already (`near_zero_done`: `MODE_REFINE_MEANS`).
/// The centre is that mean's float32 rounding, so that each x - centre is exact in f64: about the
/// f64 mean of a row whose length is not a power of two (53 significant bits) each rounded to
/// 2^-53 of x, ~2^-50 of the mean over 100 floats, which where the LN and BN means of such rows
/// (~1e5) cancel in the mix of a row of std ~1e-7 was y 1.1x to 2x its tolerance
/// (tests/narrow_scaled_row_cancel_test.ts). Returns whether it moved.
///
/// # Safety
/// `x` valid for the rows of m floats that `st` measures.
unsafe fn sum_member_again(
    x: *const f32,
    m: usize,
    st: &mut Stats,
    r: usize,
    near_zero_done: bool,
) -> bool {
    let mu = st.mu_in[r];
    if near_zero_done && near_zero(mu, st.var_in[r], NEAR_ZERO2) {
        return false;
    }
    // (A finite f64 mean of float32 data rounds to a finite float32.)
    let centre = if mu.is_finite() { mu as f32 as f64 } else { mu };
    let d = simd::deviation_sum_f64(x.add(r * m), m, centre) / m as f64 + (centre - mu);
    if !(d.is_finite() && d != 0.0) {
        return false;
    }
    st.mu_in[r] = if cancelled(mu + d, st.var_in[r]) {
        let exact = exact::sum_f32(x.add(r * m), m, 1) / m as f64;
        if exact.is_finite() {
            exact
        } else {
            mu + d
        }
    } else {
        mu + d
    };
    true
}

/// |mean| of an LN or BN group below this times its std (squared: 2^-18) marks it for
/// `refine_near_zero_groups`, if it has a member of variance below `NARROW_MEMBER` times its own.
/// A narrow member's x - mu is then about the group mean, whose error is its members' float32
/// rounding: a few 2^-25 of their std, more where a poor shift rounds a row's sums one way (an
/// attack found 2.6x the tolerance at 2^-11.5 with the cut at 2^-12, none at 2^-10.5).
const NEAR_ZERO_GROUP2: f64 = 1.0 / (1u64 << 18) as f64;

/// A member's variance below this times its group's (std 2^-10 of it, where the group mean's
/// float32 rounding, ~2^-25 of the group's std, reaches 3e-5 of the member's std) makes a group
/// near 0 worth summing again.
const NARROW_MEMBER: f64 = 1.0 / (1u64 << 20) as f64;

/// An LN or BN mean can lie near 0 by cancellation of members that are not (rows of std 1.7e7
/// with means 1e6 + 5 and -1e6): it then consists of their means' float32 rounding (~2^-25 of
/// their std, 0.5 here), and a row of far smaller std mixed on it (std 0.3) took that as its
/// x - mu (dgamma 2.8e-2, mean_weight's gradient 4e-2, dx 2.7e-3 relative off). Such a group,
/// where it has a member ~1000 times narrower than itself, has its members summed again in f64
/// about their means (rows near 0 themselves were already, by `row_moments`, where a backward may
/// follow); groups of members of like std (data of mean ~0, whose group means lie near 0 often) do
/// not need it: their x - mu are of the group's std. A group near 0 because its wide member is
/// (its mean ~2^-17 to 2^-56 of its std, or 0 beside a std of 1e5) is the same case: in a forward
/// alone (an evaluation without `keepForBackward`), where `row_moments` leaves such rows, that
/// member's float32 rounding was its sample's LN mean, and a narrow row mixed on it had y 824 for
/// -1.3e-14, 1.8e22 for -1.0e18, 1.49263e14 for 1.49466e14 (`tests/bn_mean_below_std_test.ts`),
/// so this runs in every forward (a forward alone sums the members near 0 too). Tests: O(N + C),
/// and O(C) or O(N) per group near 0; then one f64 sweep of the flagged groups' members (in an
/// evaluation, what its training forward pays). Returns whether some mean moved.
///
/// # Safety
/// As `derive`.
#[inline(never)]
unsafe fn refine_near_zero_groups(
    x: *const f32,
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    st: &mut Stats,
) -> bool {
    let near = |mu: f64, var: f64| near_zero(mu, var, NEAR_ZERO_GROUP2);
    // A group near 0 with a member of far smaller variance than its own: that member's x - mu
    // (and its mean's difference from the group's) is what the group's rounding reaches.
    fn narrow(var: f64, mut members: impl Iterator<Item = f64>) -> bool {
        members.any(|v| v < NARROW_MEMBER * var)
    }
    let bn = mode & MODE_TRAINING != 0 && mode & MODE_USING_BN != 0;
    // Flags first, from the statistics as derived (a member summed again changes none of them).
    let ln_at = |st: &Stats, i: usize| {
        near(st.mu_ln[i], st.var_ln[i])
            && narrow(st.var_ln[i], st.var_in[i * c..(i + 1) * c].iter().copied())
    };
    // Under MODE_BN_PARTIALS var_bn holds M2, n times the variance (`derive_groups`).
    let per = if mode & MODE_BN_PARTIALS != 0 { n as f64 } else { 1.0 };
    let bn_at = |st: &Stats, j: usize| {
        let var = st.var_bn[j] / per;
        bn && near(st.mu_bn[j], var) && narrow(var, (0..n).map(|i| st.var_in[i * c + j]))
    };
    let ln_rows = (0..n).filter(|&i| ln_at(st, i)).count();
    let bn_rows = (0..c).filter(|&j| bn_at(st, j)).count();
    if ln_rows + bn_rows == 0 {
        return false;
    }
    // A member about its mean (not one near 0 where `row_moments` took those: MODE_REFINE_MEANS).
    // A row in a flagged sample and a flagged channel is summed twice; the second finds its mean
    // again.
    let mut moved = false;
    let done = mode & MODE_REFINE_MEANS != 0;
    let mut again = |st: &mut Stats, r: usize| moved |= sum_member_again(x, m, st, r, done);
    for j in 0..c {
        if bn_rows > 0 && bn_at(st, j) {
            (0..n).for_each(|i| again(st, i * c + j));
        }
    }
    for i in 0..n {
        if ln_rows > 0 && ln_at(st, i) {
            (0..c).for_each(|j| again(st, i * c + j));
        }
    }
    moved
}

/// LN statistics per sample and, with usingBN, BN statistics per channel (training) or the
/// running buffers (evaluation), from mu_in and var_in.
fn derive_groups(n: usize, c: usize, mode: u32, layer: &Layer, st: &mut Stats) {
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
