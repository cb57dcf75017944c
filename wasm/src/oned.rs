//! SwitchNorm1d forward on x of [N, C]: LN over the C features of each row, BN over the N rows
//! of each column. Both come from one pass over memory: the rows are taken a block at a time, and
//! while a block sits in cache its row statistics and its per-column statistics are measured,
//! then the column statistics are merged across blocks in f64 (Chan). As for nd, `statistics`
//! and `normalize` are separate calls.

use crate::layout::{Layer, Stats, MODE_BN_PARTIALS, MODE_TRAINING, MODE_USING_BN};
use crate::moments::{self, Moments, RowPlan};
use crate::nd::cancelled;
use crate::{exact, simd};
use core::arch::wasm32::*;

/// A block holds about this many floats (256 KiB): the column sweeps after the row sweep read it
/// from L2, and the per-column merges (one per column per block) stay few.
const BLOCK_FLOATS: usize = 65536;
/// At most this many rows per block: the per-column f32 block sums stay short enough that the
/// block mean is a good shift (its error is a few ulps of |x|, far below typical spreads), and
/// that their rounding stays far inside the 1e-5 tolerance of the statistics: a serial f32 sum of
/// k terms is off by at most ~k 2^-24 relative, reached when one term dominates (one huge row of
/// a column: every later small term rounds the same way), 3.8e-6 at k = 64 (it was 1.5e-5 at 256,
/// seen as 5.5e-6 on such a column; tests/range_test.ts). Smaller blocks cost more f64 merges:
/// ~2-3% of the 1d forward at 64 rows, ~5% at 32.
const MAX_BLOCK_ROWS: usize = 64;

/// Statistics pass of y = SN(x) for layout "1d", rows taken a block at a time:
///   mu_ln[n] = mean_c x[n,c],  var_ln[n] = (1/(C-1)) sum_c (x[n,c] - mu_ln[n])^2
///   mu_bn[c] = mean_n x[n,c],  var_bn[c] = (1/(N-1)) sum_n (x[n,c] - mu_bn[c])^2   (training;
///   the running buffers in evaluation). With `MODE_BN_PARTIALS` var_bn is left as M2 =
///   sum_n (x[n,c] - mu_bn[c])^2 (see `layout`).
///
/// # Safety
/// `x` must be valid for n*c floats; `layer`, `stats` and `scratch` (`layout::scratch_bytes`) as
/// in `layout`, overlapping nothing else.
pub unsafe fn statistics(
    x: *const f32,
    n: usize,
    c: usize,
    mode: u32,
    layer: &Layer,
    mut st: Stats,
    scratch: *mut f32,
) {
    let training = mode & MODE_TRAINING != 0;
    let using_bn = mode & MODE_USING_BN != 0;
    let batch_bn = training && using_bn;

    let plan = RowPlan::new(c);
    let block = block_rows(c);
    let (mean, m2) = (st.mu_bn.as_mut_ptr(), st.var_bn.as_mut_ptr());
    let centre = centre_parts(scratch, n, c);
    // Column statistics accumulate in place: mu_bn holds the running mean about the centre,
    // var_bn the M2.
    let mut seen = 0.0;
    let mut i0 = 0;
    while i0 < n {
        let rows = if n - i0 < block { n - i0 } else { block };
        row_stats(x, c, &plan, i0, rows, &mut st);
        if batch_bn {
            let (shift, dsum, qsum) = slot_parts(scratch, c);
            let at = x.add(i0 * c);
            block_sums(at, rows, c, c, shift, dsum, qsum);
            merge_block(at, rows, c, c, shift, dsum, qsum, centre, mean, m2, seen);
            seen += rows as f64;
        }
        i0 += rows;
    }
    if batch_bn {
        uncentre(mean, centre, c);
    }
    finish(x, n, c, mode, layer, st);
}

/// The end of the statistics pass once every block was merged: LN and BN means that cancelled
/// taken from exact sums (`exact_cancelled_rows`, `exact_cancelled_columns`), the BN variance from
/// M2 (or M2 kept, with `MODE_BN_PARTIALS`), or the running buffers in evaluation.
unsafe fn finish(x: *const f32, n: usize, c: usize, mode: u32, layer: &Layer, mut st: Stats) {
    let training = mode & MODE_TRAINING != 0;
    let using_bn = mode & MODE_USING_BN != 0;
    let batch_bn = training && using_bn;
    exact_cancelled_rows(x, n, c, &mut st);
    if batch_bn {
        exact_cancelled_columns(x, n, c, &mut st);
        // With MODE_BN_PARTIALS var_bn keeps M2 for the caller's merge.
        if mode & MODE_BN_PARTIALS == 0 {
            for j in 0..c {
                let mo = Moments { count: n as f64, mean: st.mu_bn[j], m2: st.var_bn[j] };
                st.var_bn[j] = mo.unbiased_var();
            }
        }
    } else if using_bn {
        for j in 0..c {
            st.mu_bn[j] = layer.running_mean[j] as f64;
            st.var_bn[j] = layer.running_var[j] as f64;
        }
    }
}

/// A column's BN mean within 2^-30 of its std of 0 (`nd::cancelled`; var_bn holds M2 here) is
/// formed again from the exact sum of its elements (`exact::sum_f32`), the float64 reference's
/// wherever its own in-order sum does not round: the f64 sums (the blocks' about a shift, merged)
/// leave ~2^-53 of the data, which is all of a mean that cancels further (pairs +-v down a column
/// and a pair of small elements: y at the mean 318x its tolerance, logit gradients 1.3x the
/// reference's, `tests/bn_mean_below_std_test.ts`). O(C) tests; no ordinary column's mean lies this
/// near 0. (The LN means: `exact_cancelled_rows`.)
unsafe fn exact_cancelled_columns(x: *const f32, n: usize, c: usize, st: &mut Stats) {
    if n < 2 {
        return;
    }
    for j in 0..c {
        if cancelled(st.mu_bn[j], st.var_bn[j] / n as f64) {
            let mean = exact::sum_f32(x.add(j), n, c) / n as f64;
            if mean.is_finite() {
                st.mu_bn[j] = mean;
            }
        }
    }
}

/// A row's LN mean within 2^-30 of its std of 0 (`nd::cancelled`) formed again from the exact sum
/// of its elements (`exact::sum_f32`), as `exact_cancelled_columns` forms the BN means: a row's f64
/// sums (`RowPlan::row_f64`) take x - K in float32 about a shift K from the row, which drops
/// elements below half an ulp of K: rows of +-1 (summing to 0) and two elements of 1e-37 had their
/// LN mean 0 for 2.5e-38, beside BN means of 3e-38 that cancelled likewise and were exact, and
/// mean_weight's gradient, which differences the two, 6x the reference's (-1.8e-19 for -3e-20,
/// `tests/sn1d_flushed_pair_mean_test.ts`). O(N) tests; no ordinary row's mean lies this near 0.
unsafe fn exact_cancelled_rows(x: *const f32, n: usize, c: usize, st: &mut Stats) {
    if c < 2 {
        return;
    }
    for i in 0..n {
        if cancelled(st.mu_ln[i], st.var_ln[i]) {
            let mean = exact::sum_f32(x.add(i * c), c, 1) / c as f64;
            if mean.is_finite() {
                st.mu_ln[i] = mean;
            }
        }
    }
}

/// Rows per block of the statistics pass: about `BLOCK_FLOATS` floats, at most `MAX_BLOCK_ROWS`.
pub fn block_rows(c: usize) -> usize {
    (BLOCK_FLOATS / c).clamp(1, MAX_BLOCK_ROWS)
}

/// The LN statistics of the `rows` rows row0.. (each from its row alone).
unsafe fn row_stats(
    x: *const f32,
    c: usize,
    plan: &RowPlan,
    row0: usize,
    rows: usize,
    st: &mut Stats,
) {
    for i in row0..row0 + rows {
        let mo = plan.row_f64(x.add(i * c), plan.first_shift(x.add(i * c)));
        st.mu_ln[i] = mo.mean;
        st.var_ln[i] = mo.m2 * plan.inv_m1;
    }
}

/// Above this many columns the split statistics pass reads x twice (`Tiles`) rather than keep
/// per-block sums: those take 12 bytes per column per block of 65536 / C rows, 3C / 65536 of x's
/// bytes (19% at 4096).
const MAX_BLOCKS_C: usize = 4096;

/// The statistics pass split into tiles for threads, each tile computed by one thread from a
/// fixed part of x (the tiles depend on N, C and the mode only), with the same bits as
/// `statistics`:
/// - C <= 4096: tile t is block t, its row statistics and (batch BN) its per-column block sums
///   (`block_sums`), left in slot t of the scratch; `tiles_finish` merges the slots in block
///   order, as `statistics` does.
/// - C > 4096 (blocks of 16 rows or fewer): tiles [0, row_tiles) are blocks of rows (LN), then
///   (batch BN) tiles of `col_tile` columns (at least 256: 1 KiB of each row), each sweeping every
///   block over its columns and merging them in order into its columns' statistics (a column's
///   sums depend on it alone). x is read twice then.
pub struct Tiles {
    pub blocks: bool,
    pub block: usize,
    pub row_tiles: usize,
    pub col_tile: usize,
    pub count: usize,
}

impl Tiles {
    pub fn new(n: usize, c: usize, mode: u32) -> Tiles {
        let batch_bn = mode & MODE_TRAINING != 0 && mode & MODE_USING_BN != 0;
        let block = block_rows(c);
        let row_tiles = (n + block - 1) / block;
        if c <= MAX_BLOCKS_C {
            return Tiles { blocks: true, block, row_tiles, col_tile: 0, count: row_tiles };
        }
        // ~64Ki floats per column tile, at least 256 columns: narrower tiles of many rows would
        // take a page (and a TLB miss) per row for a few cache lines.
        let col_tile = ((BLOCK_FLOATS / n.max(1) + 3) / 4 * 4).max(256);
        let col_tiles = if batch_bn { (c + col_tile - 1) / col_tile } else { 0 };
        Tiles { blocks: false, block, row_tiles, col_tile, count: row_tiles + col_tiles }
    }
}

/// f32 floats of a block's slot of sums in the scratch (`slot_parts`, 16-byte aligned).
pub fn slot_floats(c: usize) -> usize {
    (c + 3) / 4 * 4 + 4 * ((c + 1) / 2 * 2)
}

/// A block's slot of sums at `slot` (16-byte aligned): the f32 shifts, then the f64 sums of
/// deviations and of squared deviations, C of each, every array 16-byte aligned.
fn slot_parts(slot: *mut f32, c: usize) -> (*mut f32, *mut f64, *mut f64) {
    let d = unsafe { slot.add((c + 3) / 4 * 4) } as *mut f64;
    (slot, d, unsafe { d.add((c + 1) / 2 * 2) })
}

/// The columns' centres (f32[C], 16-byte aligned) after the slots of sums in the scratch: each
/// column's first block mean (0 where it is not finite), about which `merge_block` accumulates
/// the column's mean. A mean accumulated as itself rounds at its own ulp in every merge, one per
/// block of 64 rows: 1e5 rows on an offset of 1.6e7 left it ~3 float64 ulps (1e-8) off, the same
/// for every element of the column, and dWeight, a sum of dy xhat over them, 1.6x its tolerance
/// (`tests/long_rows_test.ts`); about the centre it rounds at the spread's ulp, and once at the end.
fn centre_parts(scratch: *mut f32, n: usize, c: usize) -> *mut f32 {
    unsafe { scratch.add(slots(n, c) * slot_floats(c)) }
}

/// Slots of sums in the scratch: one for the single-threaded pass, one per block when threads
/// split by blocks.
pub fn slots(n: usize, c: usize) -> usize {
    let blocks = Tiles::new(n, c, 0);
    if blocks.blocks {
        blocks.row_tiles.max(1)
    } else {
        1
    }
}

/// mean[j] += centre[j] for the `w` columns: the column means `merge_block` left about their
/// centres, as themselves.
///
/// # Safety
/// `mean` valid for `w` f64, `centre` for `w` f32.
unsafe fn uncentre(mean: *mut f64, centre: *const f32, w: usize) {
    for j in 0..w {
        *mean.add(j) += *centre.add(j) as f64;
    }
}

/// Tiles tile0..tile0 + tiles of the split statistics pass (`Tiles`).
///
/// # Safety
/// As `statistics`; tiles of one pass may run at once on different threads (they write disjoint
/// parts of the statistics and the scratch).
#[allow(clippy::too_many_arguments)]
pub unsafe fn stats_tiles(
    x: *const f32,
    tile0: usize,
    tiles: usize,
    n: usize,
    c: usize,
    mode: u32,
    mut st: Stats,
    scratch: *mut f32,
) {
    let batch_bn = mode & MODE_TRAINING != 0 && mode & MODE_USING_BN != 0;
    let g = Tiles::new(n, c, mode);
    let plan = RowPlan::new(c);
    for t in tile0..tile0 + tiles {
        if t < g.row_tiles {
            let i0 = t * g.block;
            let rows = if n - i0 < g.block { n - i0 } else { g.block };
            row_stats(x, c, &plan, i0, rows, &mut st);
            if g.blocks && batch_bn {
                let (shift, dsum, qsum) = slot_parts(scratch.add(t * slot_floats(c)), c);
                block_sums(x.add(i0 * c), rows, c, c, shift, dsum, qsum);
            }
            continue;
        }
        let j0 = (t - g.row_tiles) * g.col_tile;
        let w = if c - j0 < g.col_tile { c - j0 } else { g.col_tile };
        let (shift, dsum, qsum) = slot_parts(scratch, c);
        let (shift, dsum, qsum) = (shift.add(j0), dsum.add(j0), qsum.add(j0));
        let centre = centre_parts(scratch, n, c).add(j0);
        let (mean, m2) = (st.mu_bn.as_mut_ptr().add(j0), st.var_bn.as_mut_ptr().add(j0));
        let mut seen = 0.0;
        let mut i0 = 0;
        while i0 < n {
            let rows = if n - i0 < g.block { n - i0 } else { g.block };
            let at = x.add(i0 * c + j0);
            block_sums(at, rows, w, c, shift, dsum, qsum);
            merge_block(at, rows, w, c, shift, dsum, qsum, centre, mean, m2, seen);
            seen += rows as f64;
            i0 += rows;
        }
        uncentre(mean, centre, w);
    }
}

/// The end of a split statistics pass, on one thread after every tile ran: the blocks' column
/// sums merged in block order (C <= 256), then as `statistics` ends.
///
/// # Safety
/// As `statistics`, after `stats_tiles` covered every tile.
pub unsafe fn tiles_finish(
    x: *const f32,
    n: usize,
    c: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
    scratch: *const f32,
) {
    let batch_bn = mode & MODE_TRAINING != 0 && mode & MODE_USING_BN != 0;
    let g = Tiles::new(n, c, mode);
    if g.blocks && batch_bn {
        let (mean, m2) = (st.mu_bn.as_mut_ptr(), st.var_bn.as_mut_ptr());
        let centre = centre_parts(scratch as *mut f32, n, c);
        let mut seen = 0.0;
        for t in 0..g.row_tiles {
            let i0 = t * g.block;
            let rows = if n - i0 < g.block { n - i0 } else { g.block };
            let (shift, dsum, qsum) = slot_parts(scratch.add(t * slot_floats(c)) as *mut f32, c);
            merge_block(x.add(i0 * c), rows, c, c, shift, dsum, qsum, centre, mean, m2, seen);
            seen += rows as f64;
        }
        uncentre(mean, centre, c);
    }
    finish(x, n, c, mode, layer, st);
}

/// Normalize pass of y = SN(x) for layout "1d", from the statistics `statistics` left:
///   mu = w0 mu_ln + w1 mu_bn,  var = v0 var_ln + v1 var_bn
/// (mu formed about its heavier term, mu_ln + w1 (mu_bn - mu_ln) or mu_bn + w0 (mu_ln - mu_bn),
/// where that is finite: the weights' float64 sum, 1 +- ~1e-16, times a mean of 1e10 put y of a
/// constant column equal to both means 30x Y off; `nd_normalize::anchored_mean`)
///   y = (x - mu) * gamma / sqrt(var + eps) + beta
/// evaluated per element in f64: mu and var differ for every element, so there is no per-row
/// constant to hoist into f32, and f64 gives the reference's numbers for free.
///
/// # Safety
/// `x` and `y` must be valid for n*c floats and be the same pointer or not overlap; `layer` and
/// `stats` as in `layout`, overlapping neither tensor.
pub unsafe fn normalize(
    x: *const f32,
    y: *mut f32,
    n: usize,
    c: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
) {
    normalize_rows(x, y, 0, n, c, mode, layer, st);
}

/// `normalize` for the `rows` rows row0.. only (x and y: the whole tensor's), a thread's share:
/// every row is computed from its own statistics alone, so a split changes no bit.
///
/// # Safety
/// As `normalize`, with row0 + rows <= n (the statistics area is of [n, c]).
#[allow(clippy::too_many_arguments)]
pub unsafe fn normalize_rows(
    x: *const f32,
    y: *mut f32,
    row0: usize,
    rows: usize,
    c: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
) {
    let using_bn = mode & MODE_USING_BN != 0;
    let [w0, w1, _] = layer.mean_mix;
    // The mixed mean about its heavier term where every mean of the row is finite (then so is
    // that form: a per-call test of the BN means, a per-row one of the LN mean), else as the sum.
    let bn_finite = !using_bn || st.mu_bn.iter().all(|v| simd::abs_f64(*v) < f64::INFINITY);
    let about = if using_bn && w1 > w0 { ABOUT_BN } else { ABOUT_LN };
    // Whether a row keeps its mean's rounding (`CARRY`): only where it may reach y, a mean times
    // max(1, |gamma|) beyond 2^16 of the row's smallest std (the rounding is 2^-53 of the mean,
    // and y moves by it times gamma / std: below that, by under 4e-7 of Y's 2e-5 absolute floor;
    // carrying it everywhere cost the 1d forward ~1.5%). gamma counts: where gamma mu / std passes
    // float32's range the sample's other y are infinities, and a y near beta has only its own size
    // for a tolerance (gamma 3e38 over a std of 0.3, means of 1 and ~0.25 under an LN mean weight
    // of ~1e-38: y beta, 0, for 6.35, found by helper-101; tests/range_1d_test.ts).
    let (mut bn_max, mut bn_var_min) = (0.0f64, f64::INFINITY);
    if using_bn {
        for j in 0..st.mu_bn.len() {
            bn_max = bn_max.max(simd::abs_f64(st.mu_bn[j]));
            bn_var_min = bn_var_min.min(st.var_bn[j]);
        }
    }
    let [v0, v1, _] = layer.var_mix;
    let bn_var_part = if using_bn { v1 * bn_var_min } else { 0.0 };
    let gain = layer.gamma.iter().fold(1.0f64, |g, v| g.max(simd::abs_f64(*v as f64)));
    for i in row0..row0 + rows {
        if bn_finite && simd::abs_f64(st.mu_ln[i]) < f64::INFINITY {
            let mean = gain * bn_max.max(simd::abs_f64(st.mu_ln[i]));
            let var = v0 * st.var_ln[i] + bn_var_part + layer.eps;
            let carry = !(mean * mean <= CARRY_RATIO2 * var);
            match (about == ABOUT_BN, carry) {
                (true, false) => normalize_row::<ABOUT_BN>(x, y, i, c, using_bn, layer, &st),
                (true, true) => {
                    normalize_row::<{ ABOUT_BN | CARRY }>(x, y, i, c, using_bn, layer, &st)
                }
                (false, false) => normalize_row::<ABOUT_LN>(x, y, i, c, using_bn, layer, &st),
                (false, true) => {
                    normalize_row::<{ ABOUT_LN | CARRY }>(x, y, i, c, using_bn, layer, &st)
                }
            }
        } else {
            normalize_row::<SUM>(x, y, i, c, using_bn, layer, &st);
        }
    }
}

/// (2^16)^2: a row whose mean passes 2^16 of its smallest std keeps its mean's rounding (`CARRY`).
const CARRY_RATIO2: f64 = (1u64 << 32) as f64;

/// `normalize_row`'s forms of the mixed mean: w0 mu_ln + w1 mu_bn (the reference's sum, for rows
/// with a mean not finite), mu_ln + w1 (mu_bn - mu_ln), mu_bn + w0 (mu_ln - mu_bn) (about the
/// heavier term: equal where w0 + w1 = 1, as softmax's are exactly, but their float64 sum is
/// 1 +- ~1e-16, which the sum multiplies by the means' size: a constant column at 1e10 equal to
/// both means, y = beta exactly, was 30x Y off; `nd_normalize::anchored_mean`).
const SUM: u8 = 0;
const ABOUT_LN: u8 = 1;
const ABOUT_BN: u8 = 2;
/// With `ABOUT_LN` or `ABOUT_BN`: x - mu taken as (x - mu) - err, err the rounding of the mean's
/// base + rest (`nd_normalize::two_sum_err`), so that a rest below half an ulp of the base still
/// counts (all x 3e38 under LN's variance of 0, a BN mean weight of 1.6e-38 on a running_mean of
/// -2e20, eps 2^-126: y was beta, 1, for 4.55e9; attack fuzzer seed 627).
const CARRY: u8 = 4;

/// Row i of `normalize_rows`, its mixed mean in the form `MEAN` (`SUM`, `ABOUT_LN`, `ABOUT_BN`).
///
/// # Safety
/// As `normalize_rows`, with i < n.
#[inline(always)]
unsafe fn normalize_row<const MEAN: u8>(
    x: *const f32,
    y: *mut f32,
    i: usize,
    c: usize,
    using_bn: bool,
    layer: &Layer,
    st: &Stats,
) {
    let [w0, w1, _] = layer.mean_mix;
    let [v0, v1, _] = layer.var_mix;
    // Without BN the BN terms are added as exact zeros (w1 = v1 = 0 on zero statistics), which
    // leaves every sum unchanged.
    let (w1, v1) = if using_bn { (w1, v1) } else { (0.0, 0.0) };
    let zeros = [0.0f64; 2];
    let bn = |s: &[f64], j: usize| if using_bn { s.as_ptr().add(j) } else { zeros.as_ptr() };
    let (w1v, v1v, eps) = (f64x2_splat(w1), f64x2_splat(v1), f64x2_splat(layer.eps));
    let neg_w0v = f64x2_splat(-w0);
    let load32 = |p: *const f32| f64x2_promote_low_f32x4(v128_load64_zero(p as *const u64));
    let pairs = c / 2 * 2;
    let ln = st.mu_ln[i];
    let (lm, lv) = (w0 * ln, v0 * st.var_ln[i]);
    let (lmv, lvv, lnv) = (f64x2_splat(lm), f64x2_splat(lv), f64x2_splat(ln));
    // The mean of column j: mu_bn - mu_ln is d, and -w0 d is w0 (mu_ln - mu_bn) exactly; with
    // `CARRY`, also the rounding of base + rest.
    let mean = |bn_mu: f64| -> (f64, f64) {
        let (base, rest) = match MEAN & !CARRY {
            SUM => return (lm + w1 * bn_mu, 0.0),
            ABOUT_LN => (ln, w1 * (bn_mu - ln)),
            _ => (bn_mu, -w0 * (bn_mu - ln)),
        };
        let mu = base + rest;
        let err =
            if MEAN & CARRY != 0 { crate::nd_normalize::two_sum_err(base, rest, mu) } else { 0.0 };
        (mu, err)
    };
    let (xr, yr) = (x.add(i * c), y.add(i * c));
    let mut j = 0;
    while j < pairs {
        // Two columns at a time, the scalar tail's formula in f64x2.
        let bn_mu = v128_load(bn(st.mu_bn, j) as *const v128);
        let (base, rest) = match MEAN & !CARRY {
            SUM => (lmv, f64x2_mul(w1v, bn_mu)),
            ABOUT_LN => (lnv, f64x2_mul(w1v, f64x2_sub(bn_mu, lnv))),
            _ => (bn_mu, f64x2_mul(neg_w0v, f64x2_sub(bn_mu, lnv))),
        };
        let mu = f64x2_add(base, rest);
        let mut d = f64x2_sub(load32(xr.add(j)), mu);
        if MEAN & CARRY != 0 {
            // base + rest's rounding (`nd_normalize::two_sum_err`).
            let b_part = f64x2_sub(mu, base);
            let err = f64x2_add(f64x2_sub(base, f64x2_sub(mu, b_part)), f64x2_sub(rest, b_part));
            d = f64x2_sub(d, err);
        }
        let var = f64x2_add(lvv, f64x2_mul(v1v, v128_load(bn(st.var_bn, j) as *const v128)));
        let gamma = load32(layer.gamma.as_ptr().add(j));
        let scale = f64x2_div(gamma, f64x2_sqrt(f64x2_add(var, eps)));
        let beta = load32(layer.beta.as_ptr().add(j));
        let v = f64x2_add(f64x2_mul(d, scale), beta);
        v128_store64_lane::<0>(f32x4_demote_f64x2_zero(v), yr.add(j) as *mut u64);
        j += 2;
    }
    if j < c {
        let (bn_mu, bn_var) = if using_bn { (st.mu_bn[j], st.var_bn[j]) } else { (0.0, 0.0) };
        let ((mu, err), var) = (mean(bn_mu), lv + v1 * bn_var);
        let scale = layer.gamma[j] as f64 / simd::sqrt_f64(var + layer.eps);
        *yr.add(j) = (((*xr.add(j) as f64 - mu) - err) * scale + layer.beta[j] as f64) as f32;
    }
}

/// Per-column sums of a cached block of `rows` rows of `w` columns (rows `stride` floats apart):
/// shift = the f32 block mean, then dsum = sum (x - shift) and qsum = sum (x - shift)^2 in f64
/// (`simd::column_deviation_sums_f64`: the logit gradients difference the BN statistics with LN's).
/// Each column's sums depend on that column alone (lanes are columns), so a block split by
/// columns gives the same bits.
///
/// # Safety
/// `x` valid for `rows` rows of `w` floats at `stride`; `shift` for `w` floats, `dsum`, `qsum` for
/// `w` f64, overlapping nothing else.
unsafe fn block_sums(
    x: *const f32,
    rows: usize,
    w: usize,
    stride: usize,
    shift: *mut f32,
    dsum: *mut f64,
    qsum: *mut f64,
) {
    simd::copy(x, shift, w);
    for r in 1..rows {
        simd::add_into(shift, x.add(r * stride), w);
    }
    let inv = 1.0 / rows as f32;
    for j in 0..w {
        *shift.add(j) *= inv;
    }
    simd::column_deviation_sums_f64(x, rows, w, stride, shift, dsum, qsum);
}

/// Merges a block's per-column sums (`block_sums`) into the running column statistics (`mean[j]`
/// about `centre[j]`, `m2[j]`, `seen` rows so far) of its `w` columns: mean = shift + d / rows
/// and M2 = q - d^2 / rows, or for Inf/NaN (or an f32 shift that overflowed) the f64 slow path
/// over the block's column (hence x). The first block (`seen` 0) sets the centres (`centre_parts`).
///
/// # Safety
/// As `block_sums`; `mean`, `m2` valid for `w` f64, `centre` for `w` f32.
#[allow(clippy::too_many_arguments)]
unsafe fn merge_block(
    x: *const f32,
    rows: usize,
    w: usize,
    stride: usize,
    shift: *const f32,
    dsum: *const f64,
    qsum: *const f64,
    centre: *mut f32,
    mean: *mut f64,
    m2: *mut f64,
    seen: f64,
) {
    let inv_rows = 1.0 / rows as f64;
    // Every column merges counts (seen, rows): the Chan factors are the same for all of them.
    let fb = rows as f64 / (seen + rows as f64);
    let fab = seen * fb;
    for j in 0..w {
        let (s, d, q) = (*shift.add(j), *dsum.add(j), *qsum.add(j));
        if seen == 0.0 {
            *centre.add(j) = if s.is_finite() { s } else { 0.0 };
        }
        let k = *centre.add(j) as f64;
        // f64 sums of f32 deviations neither overflow nor go subnormal: only Inf/NaN in the
        // column (or a shift that overflowed f32) is not finite here. s - k is exact in f64.
        let blk = if s.is_finite() && q.is_finite() {
            let m2 = q - d * d * inv_rows;
            Moments {
                count: rows as f64,
                mean: (s as f64 - k) + d * inv_rows,
                m2: if m2 < 0.0 { 0.0 } else { m2 },
            }
        } else {
            let mo = moments::strided_f64(x.add(j), rows, stride);
            Moments { mean: mo.mean - k, ..mo }
        };
        let after = if seen == 0.0 {
            blk
        } else {
            Moments { count: seen, mean: *mean.add(j), m2: *m2.add(j) }.merge_weighted(blk, fb, fab)
        };
        *mean.add(j) = after.mean;
        *m2.add(j) = after.m2;
    }
}
