//! SwitchNorm2d/3d backward on x, dy viewed as [N, C, M], in two calls around the cross-replica
//! sum of SyncSN: `reduce` (here) reads (x, dy) once and forms every gradient sum,
//! `nd_grad_dx::dx` reads them again and writes dx. Both use the statistics area that this
//! layer's forward left (layout.rs), so nothing of the forward's output is kept. The chain rule
//! is SN_SPEC's (and the reference backend's), written per row r = (n, c) with
//! s = 1/sqrt(var + eps):
//!   sum_i dy xhat = s * sum_i dy (x - mu),  Gm = -s gamma sum_i dy,
//!   Gv = -0.5 s^3 gamma sum_i dy (x - mu)
//! and dx = dy gamma s + Gmu_in / M + Gvar_in * 2 (x - mu_in) / (M - 1).
//!
//! Each call is a tight sweep over the rows that does only the per-row SIMD work, plus O(N*C)
//! per-row arithmetic done two rows per f64x2 in a loop of its own: at M = 49 a row is 400 bytes,
//! so scalar per-row code with its dependency chains would cost as much as moving the data.

use crate::layout::{bn_pair, dots_centre, Layer, Stats, Sums, MODE_BN_PARTIALS, MODE_USING_BN};
use crate::simd;
use crate::simd_grad;
use crate::wide;
use core::arch::wasm32::*;

/// Floats per chunk of the f32 gradient sums: 16 terms per partial sum, so that their rounding
/// stays near that of the products themselves; the chunks are added in f64.
pub(crate) const CHUNK: usize = 256;

/// The backward work area of layout "nd" split into its per-row and per-sample arrays.
pub(crate) struct Work<'a> {
    /// (gm, gv) per row; after the reduce sweep, (sum dy, sum dy (x - hi)) per row.
    pub(crate) pairs: &'a mut [v128],
    pub(crate) inv_std: &'a mut [f64],
    pub(crate) gm_ln: &'a mut [f64],
    pub(crate) gv_ln: &'a mut [f64],
    /// Per row: k of a wide row (`wide`), written by `nd_grad_dx::dx_constants`.
    pub(crate) aux: &'a mut [f64],
    /// Sum over the rows of |gm| + |gv|, written by `combine` (for `wide::CallBounds`).
    pub(crate) g_abs: &'a mut f64,
    /// Sum over the rows of gm^2, of gv^2, and the largest IN variance, written by `combine`
    /// (for `nd_grad_means::refine_dots`' first test).
    pub(crate) g_sq: &'a mut [f64],
}

impl<'a> Work<'a> {
    pub(crate) unsafe fn split(p: *mut f64, n: usize, c: usize) -> Work<'a> {
        let rows = n * c;
        let pairs = core::slice::from_raw_parts_mut(p as *mut v128, rows);
        let rest = core::slice::from_raw_parts_mut(p.add(2 * rows), rows + 2 * n);
        let (inv_std, rest) = rest.split_at_mut(rows);
        let (gm_ln, gv_ln) = rest.split_at_mut(n);
        let aux = core::slice::from_raw_parts_mut(p.add(crate::layout::aux_at(n, c)), rows);
        let g_abs = &mut *p.add(crate::layout::aux_at(n, c) + rows);
        let g_sq =
            core::slice::from_raw_parts_mut(p.add(crate::layout::aux_at(n, c) + rows + 1), 3);
        Work { pairs, inv_std, gm_ln, gv_ln, aux, g_abs, g_sq }
    }
}

#[inline(always)]
pub(crate) unsafe fn ld(p: *const f64) -> v128 {
    v128_load(p as *const v128)
}

#[inline(always)]
unsafe fn st2(p: *mut f64, v: v128) {
    v128_store(p as *mut v128, v)
}

#[inline(always)]
pub(crate) unsafe fn ld32(p: *const f32) -> v128 {
    f64x2_promote_low_f32x4(v128_load64_zero(p as *const u64))
}

#[inline(always)]
fn hsum(v: v128) -> f64 {
    f64x2_extract_lane::<0>(v) + f64x2_extract_lane::<1>(v)
}

/// The means the row sums of `reduce` are centred on (`centre` of each): in training the IN
/// means, in an evaluation the mixed means (stats.wide[1], from the forward). About mu_in the
/// f32 products carry rounding of |x - mu_in|, which the combine's (centre - mu) sum dy cancels
/// down to sum dy (x - mu), whose terms may be far smaller: an evaluation on a running_mean of 0
/// over a row [1e7, 0.5, -0.3, 0.2] with dy 0 at 1e7 gave dgamma 0.25 for 0.40
/// (tests/far_centre_test.ts). In training the terms' scale is |x - mu| plus the mix's std, and
/// rows whose IN mean lies beyond 2^10 of those stds from mu are summed again about mu in f64
/// (`far_centre`); about mu itself, a row 25 stds from it rounded each x - mu as its 25 stds
/// (`var_weight`'s gradient 1.07x its tolerance, tests/one_sign_dy_test.ts).
#[inline(always)]
pub(crate) fn centres(st: &Stats) -> *const f64 {
    if st.wide[1] != 0.0 {
        st.mu.as_ptr()
    } else {
        st.mu_in.as_ptr()
    }
}

/// The centre of a row's f32 sums of dy (x - centre), from its mean mu (`centres`): hi = f32(mu)
/// for rows of at most `CHUNK` floats; longer rows cut it to 12 significant bits, so that x - centre rounds only x's
/// own low bits. A centre with bits finer than x's rounds every x of a binade the same way (its
/// discarded bits are constant), ~2^-25 per element: over 4e6 floats with dy of one sign that
/// was 8e-5 relative on dgamma (tests/long_rows_test.ts; WebGPU's `coarse12`, shaders/common.wgsl).
/// The sums are taken about the cut only where it moves the centre by at most the row's std
/// (`narrow_centre`); the pairs hold them about `centre` all the same.
#[inline(always)]
fn centre(mu: f64, m: usize) -> f32 {
    let hi = mu as f32;
    if m > CHUNK {
        f32::from_bits(hi.to_bits() & 0xffff_f000)
    } else {
        hi
    }
}

/// `centre` of two rows in f64.
#[inline(always)]
fn centre2(mu: v128, m: usize) -> v128 {
    let hi = f32x4_demote_f64x2_zero(mu);
    let hi = if m > CHUNK { v128_and(hi, u32x4_splat(0xffff_f000)) } else { hi };
    f64x2_promote_low_f32x4(hi)
}

/// For a row longer than `CHUNK` whose 12-bit cut of f32(mu) lies farther from it than the
/// row's std (squared: `var`), f32(mu), else None. Each f32 product dy (x - c) then carries
/// float32 rounding of |x - mu| + std, as dy (x - mu) itself does. About the cut, a row narrower
/// than that (a constant row of -11.38 with dy ~4e29: every x 3e-3 from the cut) has products
/// whose float32 rounding, cancelled against (cut - mu) sum dy, is the result (dgamma -4.8e23
/// where it is 0); about f32(mu) its x - c are exact (within a factor 2 of it: Sterbenz) and
/// no binade is rounded alike.
#[inline(always)]
fn narrow_centre(mu: f64, var: f64) -> Option<f32> {
    let hi = mu as f32;
    let cut = f32::from_bits(hi.to_bits() & 0xffff_f000);
    let moved = hi as f64 - cut as f64;
    if moved * moved <= var {
        None
    } else {
        Some(hi)
    }
}

/// Per row, f64x2 (sum dy, sum dy (x - hi)) with hi = `centre(mu, m)`: f32 SIMD within
/// chunks of `CHUNK` floats, chunks added in f64.
#[inline(always)]
unsafe fn row_sums(x: *const f32, dy: *const f32, m: usize, hi: f32) -> v128 {
    if m <= CHUNK {
        return simd_grad::grad_sums(x, dy, m, hi);
    }
    let mut acc = f64x2_splat(0.0);
    let mut i = 0;
    while i < m {
        let len = if m - i < CHUNK { m - i } else { CHUNK };
        acc = f64x2_add(acc, simd_grad::grad_sums(x.add(i), dy.add(i), len, hi));
        i += len;
    }
    acc
}

/// A row whose f32 sum dy (x - hi) comes out below this in magnitude (0 included) is summed
/// again in f64 (`redo_sums`): its products may have been float32 subnormals, or 0, that lost
/// their digits (a std of 1e-17 with dy ~1e-28 makes every product ~1e-45) although the dx
/// terms they make fit float32 well. Above it, the products' underflow (at most 2^-150 each, M
/// of them) is below 2^-24 of the sum for any M under 2^30. A row whose dy is all 0 keeps (0, 0)
/// after one scan for a nonzero value.
const TINY_SUM: f64 = 1.0 / (1u128 << 96) as f64;

/// Rows up to this long go through `short_row_sums` (one accumulator pair per row: at most 8
/// terms per lane, fewer than a chunk of `CHUNK` floats has with four). Longer rows take
/// `row_sums` one row at a time: four rows at a time, the sweep measured slower from m = 36 on
/// (one thread, `SHAPE=[64,512,H,W]`: 0.75x the time at 6x6, 0.68x at 7x7, 0.64x at 8x8 as
/// one row at a time; equal at 5x5, 1.17x at 4x4), so the four-row sweep stops below that.
const SHORT: usize = 32;

/// `row_sums` of `rows` rows of 4..=SHORT floats into `pairs`, four rows at a time through
/// `simd_grad::grad_sums_x4`; the rows % 4 left over go through the same arithmetic one at a time.
/// Returns whether every sum is finite.
///
/// # Safety
/// `x`, `dy` valid for rows * m floats, `mu` for `rows` f64, `pairs` for `rows` v128.
#[inline(always)]
unsafe fn short_row_sums(
    x: *const f32,
    dy: *const f32,
    m: usize,
    mu: *const f64,
    pairs: *mut v128,
    rows: usize,
) -> bool {
    let groups = rows / 4 * 4;
    // x - x is 0 for finite x, NaN for Inf and NaN.
    let zero = f32x4_splat(0.0);
    let tiny = f32x4_splat(TINY_SUM as f32);
    let mut finite = i32x4_splat(-1);
    let mut r = 0;
    while r < groups {
        let shift = f32x4_demote_f64x2_zero(ld(mu.add(r)));
        let shift = i64x2_shuffle::<0, 2>(shift, f32x4_demote_f64x2_zero(ld(mu.add(r + 2))));
        let at = |k: usize| (r + k) * m;
        let xs = [x.add(at(0)), x.add(at(1)), x.add(at(2)), x.add(at(3))];
        let dys = [dy.add(at(0)), dy.add(at(1)), dy.add(at(2)), dy.add(at(3))];
        let (g, p) = simd_grad::grad_sums_x4(xs, dys, m, shift);
        let gp = f32x4_add(g, p);
        finite = v128_and(finite, f32x4_eq(f32x4_sub(gp, gp), zero));
        finite = v128_and(finite, f32x4_ge(f32x4_abs(p), tiny));
        let lo = i32x4_shuffle::<0, 4, 1, 5>(g, p);
        let hi = i32x4_shuffle::<2, 6, 3, 7>(g, p);
        *pairs.add(r) = f64x2_promote_low_f32x4(lo);
        *pairs.add(r + 1) = f64x2_promote_low_f32x4(i64x2_shuffle::<1, 1>(lo, lo));
        *pairs.add(r + 2) = f64x2_promote_low_f32x4(hi);
        *pairs.add(r + 3) = f64x2_promote_low_f32x4(i64x2_shuffle::<1, 1>(hi, hi));
        r += 4;
    }
    while r < rows {
        let (xr, dyr) = (x.add(r * m), dy.add(r * m));
        let shift = f32x4_splat(*mu.add(r) as f32);
        let (g, p) = simd_grad::grad_sums_x4([xr; 4], [dyr; 4], m, shift);
        let gp = f32x4_add(g, p);
        finite = v128_and(finite, f32x4_eq(f32x4_sub(gp, gp), zero));
        finite = v128_and(finite, f32x4_ge(f32x4_abs(p), tiny));
        *pairs.add(r) = f64x2_promote_low_f32x4(i32x4_shuffle::<0, 4, 1, 5>(g, p));
        r += 1;
    }
    i32x4_all_true(finite)
}

/// Reduction call of the backward pass for layout "nd": one sweep over (x, dy) per row, then the
/// O(N*C) combine, in f64:
///   P[r] = sum_i dy (x - mu) = sum_i dy (x - hi) + (hi - mu) sum_i dy   (hi = centre(mu), so
///   x - hi is exact near the mean: offsets of 1e4 cost nothing)
///   dWeight[c] += s P,  dBias[c] += sum dy,  gm = -s gamma sum dy,  gv = -0.5 s^3 gamma P
///   gmL[n] = sum_c gm, gvL[n] = sum_c gv, gmB[c] = sum_n gm, gvB[c] = sum_n gv
///   meanDots = (sum gm mu_in, sum gmL mu_ln, sum gmB mu_bn), varDots likewise with the variances
/// into the work area. `stats` must hold this layer's forward (mu, var written by normalize).
///
/// # Safety
/// `x`, `dy` valid for n*c*m floats; `layer`, `stats` and `work` (`layout::work_len` f64,
/// 16-byte aligned) as in `layout`, overlapping nothing else; `LONG` exactly when m > `CHUNK`.
/// (Rows longer than `CHUNK` take `long_row_sums`; the choice is a const parameter, made by the
/// caller, because a branch between the sweeps here made the training backward at [64, 512, 7, 7]
/// ~10% slower: `reduce::<false>` compiles as before that rule; lib.rs keeps `reduce::<true>`
/// out of line for the same reason.)
#[allow(clippy::too_many_arguments)]
pub unsafe fn reduce<const LONG: bool>(
    x: *const f32,
    dy: *const f32,
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
    work: *mut f64,
    sums: Sums,
) {
    let w = Work::split(work, n, c);
    let (mu, pairs) = (centres(&st), w.pairs.as_mut_ptr());
    let finite = if LONG {
        long_row_sums(x, dy, m, (mu, st.var_in.as_ptr()), pairs, n * c)
    } else {
        reduce_rows(x, dy, m, mu, pairs, n * c)
    };
    combine(x, dy, n, c, m, mode, layer, st, work, sums, finite);
}

/// The sweep of `reduce` over `rows` consecutive rows of m floats at `x`, `dy`, m <= `CHUNK`
/// (longer rows: `long_row_sums`): (sum dy, sum dy (x - hi)) per row into `pairs`, nothing else;
/// returns whether every row's sums are finite. A row's result depends on that row alone, so a
/// caller may split the rows into ranges (threads) with `mu` and `pairs` offset alike.
///
/// # Safety
/// `x`, `dy` valid for rows * m floats, `mu` for `rows` f64, `pairs` for `rows` v128.
// `#[inline(always)]` here, on `combine` and on `short_row_sums`: with two callers each (the
// one-thread `reduce` and the threads' exports) the compiler left them as calls, and the one-thread
// reduction at M = 49 was ~25% slower than the same code inlined.
#[inline(always)]
pub unsafe fn reduce_rows(
    x: *const f32,
    dy: *const f32,
    m: usize,
    mu: *const f64,
    pairs: *mut v128,
    rows: usize,
) -> bool {
    if (4..=SHORT).contains(&m) {
        short_row_sums(x, dy, m, mu, pairs, rows)
    } else {
        let mut finite = i64x2_splat(-1);
        // |sum dy| is never too small (a sum of inputs, no products): its lane is compared with 0.
        let tiny = f64x2(0.0, TINY_SUM);
        for r in 0..rows {
            let pair = row_sums(x.add(r * m), dy.add(r * m), m, centre(*mu.add(r), m));
            finite = v128_and(finite, f64x2_eq(f64x2_sub(pair, pair), f64x2_splat(0.0)));
            finite = v128_and(finite, f64x2_ge(f64x2_abs(pair), tiny));
            *pairs.add(r) = pair;
        }
        i64x2_all_true(finite)
    }
}

/// `reduce_rows` for rows of more than `CHUNK` floats, whose centre takes `narrow_centre`'s rule
/// (a function of its own, called instead of `reduce_rows`: with the rule inside that, the
/// training backward at [64, 512, 7, 7] measured ~5% slower).
///
/// # Safety
/// As `reduce_rows`, and `var_in` valid for `rows` f64.
#[inline(never)]
pub unsafe fn long_row_sums(
    x: *const f32,
    dy: *const f32,
    m: usize,
    (mu, var_in): (*const f64, *const f64),
    pairs: *mut v128,
    rows: usize,
) -> bool {
    let mut finite = i64x2_splat(-1);
    // |sum dy| is never too small (a sum of inputs, no products): its lane is compared with 0.
    let tiny = f64x2(0.0, TINY_SUM);
    for r in 0..rows {
        let cut = centre(*mu.add(r), m);
        let mut pair;
        match narrow_centre(*mu.add(r), *var_in.add(r)) {
            // Summed about f32(mu), moved to the cut in f64: (hi - cut) sum dy is ~2^-12 |mu|
            // of sum dy, and its f64 rounding 2^-53 of that.
            Some(hi) => {
                pair = row_sums(x.add(r * m), dy.add(r * m), m, hi);
                let g = f64x2_extract_lane::<0>(pair);
                let p = f64x2_extract_lane::<1>(pair) + (hi as f64 - cut as f64) * g;
                pair = f64x2_replace_lane::<1>(pair, p);
            }
            None => pair = row_sums(x.add(r * m), dy.add(r * m), m, cut),
        }
        finite = v128_and(finite, f64x2_eq(f64x2_sub(pair, pair), f64x2_splat(0.0)));
        finite = v128_and(finite, f64x2_ge(f64x2_abs(pair), tiny));
        *pairs.add(r) = pair;
    }
    i64x2_all_true(finite)
}

/// The O(N*C) combine of `reduce`, after `reduce_rows` covered every row. `finite`: whether
/// every row's sums came out finite (false when unknown, e.g. rows summed by several threads:
/// then each row is checked, an O(N*C) scan).
///
/// # Safety
/// As `reduce`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub unsafe fn combine(
    x: *const f32,
    dy: *const f32,
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
    work: *mut f64,
    mut sums: Sums,
    finite: bool,
) {
    let using_bn = mode & MODE_USING_BN != 0;
    let rows = n * c;
    let w = Work::split(work, n, c);
    let mu_in = st.mu_in.as_ptr();
    let pairs = w.pairs.as_mut_ptr();

    // The combine, per sample n over its C rows, two channels per f64x2.
    sums.d_weight.fill(0.0);
    sums.d_bias.fill(0.0);
    sums.gm_bn.fill(0.0);
    sums.gv_bn.fill(0.0);
    // Per channel, the sum of |sum dy| over its rows whose own term s sum dy (x - mu) lies below
    // 1 / `ROW_CANCELLED` of it, for `nd_grad_refine::refine_cancelled`'s test (in its flags'
    // room, which it reads before writing them).
    let cancelling = work.add(crate::layout::refine_at(n, c) + n);
    core::slice::from_raw_parts_mut(cancelling, c).fill(0.0);
    let row_cut = f64x2_splat(ROW_CANCELLED);
    // The mean dots about K (`dots_centre`), K sum gm apart (`Sums::mean_offset`).
    let k_dots = dots_centre(&st, mode & MODE_BN_PARTIALS == 0, bn_pair(layer, using_bn));
    let kc = f64x2_splat(k_dots);
    // s = 1/sqrt(var + eps) is formed here, two rows per f64x2 so that the square roots and
    // divisions of successive rows overlap, and kept for the dx call.
    let (var_in, mu, var) = (st.var_in.as_ptr(), st.mu.as_ptr(), st.var.as_ptr());
    // The mixed means' rounding (`Stats::err`): x - mu is (x - mu) - err, as in the forward.
    let err = st.err.as_ptr();
    let cmu = centres(&st); // the means the row sums were centred on
    let inv_std = w.inv_std.as_mut_ptr();
    let (eps, one) = (f64x2_splat(layer.eps), f64x2_splat(1.0));
    let gamma = layer.gamma.as_ptr();
    let (dw, db) = (sums.d_weight.as_mut_ptr(), sums.d_bias.as_mut_ptr());
    let (gmb, gvb) = (sums.gm_bn.as_mut_ptr(), sums.gv_bn.as_mut_ptr());
    let z = f64x2_splat(0.0);
    let neg_half = f64x2_splat(-0.5);
    // The forward's normalize constants recorded whether some row is wide (`wide`: its f32
    // products may overflow or be subnormal); those rows, and any whose f32 sums are not finite
    // (dy near float32's limit overflows them; Inf/NaN data gives the reference's results in f64
    // too) or whose sum dy (x - hi) is tiny (`TINY_SUM`), are summed again in f64.
    if st.wide[0] != 0.0 || !finite {
        redo_sums(x, dy, m, rows, (centres(&st), &st), var, layer.eps, pairs);
    }
    // A std of 0 (only with eps 0) makes s infinite: there the reference's
    // dgamma = sum dy ((x - mu) s) is NaN where s sum dy (x - mu) would be an infinity.
    if layer.eps == 0.0 {
        zero_std_sums(x, dy, m, rows, &st, var, pairs);
    }
    let (mut dm_in, mut dv_in) = (z, z);
    let (mut dm_ln, mut dv_ln, mut g_sum) = (0.0, 0.0, 0.0);
    // Sum of |gm| + |gv| over the rows: with it the dx call may find, per call, that no row can
    // be wide (`wide::CallBounds::dx_ordinary`).
    let mut g_abs = z;
    // Sums of gm^2 and gv^2 and the largest IN variance (`Work::g_sq`).
    let (mut gm_sq, mut gv_sq, mut v_max) = (z, z, z);
    let even = c / 2 * 2;
    for i in 0..n {
        let (mut gml, mut gvl) = (z, z);
        let mut j = 0;
        while j < even {
            let r = i * c + j;
            let (a, b) = (*pairs.add(r), *pairs.add(r + 1));
            let g = i64x2_shuffle::<0, 2>(a, b);
            let p_raw = i64x2_shuffle::<1, 3>(a, b);
            let mean = f64x2_sub(ld(mu_in.add(r)), kc);
            // A row of NaN or infinite sum dy has its p about mu already (redo_sums): adding
            // (hi - mu) * sum dy would make Inf - Inf where the reference has an infinity.
            let g_finite = f64x2_eq(f64x2_sub(g, g), z);
            let (c2, mu2, ve) =
                (centre2(ld(cmu.add(r)), m), ld(mu.add(r)), f64x2_add(ld(var.add(r)), eps));
            // (centre - mu) - err: the mixed mean is mu + err. Where the elements carrying dy
            // equal mu, -err sum dy is the whole sum, which a tiny std takes past float32's range
            // (dgamma 0.005 and `var_weight`'s gradient ~1e-5 for infinities:
            // `tests/backward_mean_err_test.ts`).
            let shift = f64x2_sub(f64x2_sub(c2, mu2), ld(err.add(r)));
            let p_hi = f64x2_add(p_raw, f64x2_mul(shift, g));
            let mut p = v128_bitselect(p_hi, p_raw, g_finite);
            // A row whose centre lies far from mu: its sum about mu in f64 (far_centre; rare).
            if v128_any_true(far_centre2(c2, mu2, ve)) {
                for lane in 0..2 {
                    let row = r + lane;
                    let (cl, ml) = (centre(*cmu.add(row), m) as f64, *mu.add(row));
                    if far_centre(cl, ml, *var.add(row) + layer.eps) {
                        let (xr, dyr) = (x.add(row * m), dy.add(row * m));
                        let q = wide::grad_sums_f64_about(xr, dyr, m, (ml, *err.add(row)));
                        p = if lane == 0 {
                            f64x2_replace_lane::<0>(p, q)
                        } else {
                            f64x2_replace_lane::<1>(p, q)
                        };
                    }
                }
            }
            let s = f64x2_div(one, f64x2_sqrt(ve));
            st2(inv_std.add(r), s);
            let sg = f64x2_mul(s, ld32(gamma.add(j)));
            let sp = f64x2_mul(s, p);
            st2(dw.add(j), f64x2_add(ld(dw.add(j)), sp));
            st2(db.add(j), f64x2_add(ld(db.add(j)), g));
            let g_abs_row = f64x2_abs(g);
            let cancels = f64x2_le(f64x2_mul(f64x2_abs(sp), row_cut), g_abs_row);
            let held = f64x2_add(ld(cancelling.add(j)), v128_and(g_abs_row, cancels));
            st2(cancelling.add(j), held);
            let gm = f64x2_neg(f64x2_mul(sg, g));
            let gv = f64x2_mul(f64x2_mul(neg_half, f64x2_mul(s, s)), f64x2_mul(sg, p));
            *pairs.add(r) = i64x2_shuffle::<0, 2>(gm, gv);
            *pairs.add(r + 1) = i64x2_shuffle::<1, 3>(gm, gv);
            st2(gmb.add(j), f64x2_add(ld(gmb.add(j)), gm));
            st2(gvb.add(j), f64x2_add(ld(gvb.add(j)), gv));
            gml = f64x2_add(gml, gm);
            gvl = f64x2_add(gvl, gv);
            g_abs = f64x2_add(g_abs, f64x2_add(f64x2_abs(gm), f64x2_abs(gv)));
            gm_sq = f64x2_add(gm_sq, f64x2_mul(gm, gm));
            gv_sq = f64x2_add(gv_sq, f64x2_mul(gv, gv));
            let v_in = ld(var_in.add(r));
            v_max = f64x2_pmax(v_max, v_in);
            dm_in = f64x2_add(dm_in, f64x2_mul(gm, mean));
            dv_in = f64x2_add(dv_in, f64x2_mul(gv, v_in));
            j += 2;
        }
        let (mut gml, mut gvl) = (hsum(gml), hsum(gvl));
        if j < c {
            let r = i * c + j;
            let (g, p_raw) =
                (f64x2_extract_lane::<0>(*pairs.add(r)), f64x2_extract_lane::<1>(*pairs.add(r)));
            let mean = *mu_in.add(r) - k_dots;
            let (cr, mur, ve) =
                (centre(*cmu.add(r), m) as f64, *mu.add(r), *var.add(r) + layer.eps);
            let p = if far_centre(cr, mur, ve) {
                wide::grad_sums_f64_about(x.add(r * m), dy.add(r * m), m, (mur, *err.add(r)))
            } else if g.is_finite() {
                p_raw + ((cr - mur) - *err.add(r)) * g
            } else {
                p_raw
            };
            let s = 1.0 / simd::sqrt_f64(*var.add(r) + layer.eps);
            *inv_std.add(r) = s;
            let sg = s * *gamma.add(j) as f64;
            *dw.add(j) += s * p;
            *db.add(j) += g;
            if simd::abs_f64(s * p) * ROW_CANCELLED <= simd::abs_f64(g) {
                *cancelling.add(j) += simd::abs_f64(g);
            }
            let (gm, gv) = (-(sg * g), -0.5 * (s * s) * (sg * p));
            *pairs.add(r) = f64x2(gm, gv);
            *gmb.add(j) += gm;
            *gvb.add(j) += gv;
            gml += gm;
            gvl += gv;
            g_abs = f64x2_add(g_abs, f64x2_abs(f64x2(gm, gv)));
            gm_sq = f64x2_add(gm_sq, f64x2(gm * gm, 0.0));
            gv_sq = f64x2_add(gv_sq, f64x2(gv * gv, 0.0));
            v_max = f64x2_pmax(v_max, f64x2_splat(*var_in.add(r)));
            dm_in = f64x2_add(dm_in, f64x2(gm * mean, 0.0));
            dv_in = f64x2_add(dv_in, f64x2(gv * *var_in.add(r), 0.0));
        }
        w.gm_ln[i] = gml;
        w.gv_ln[i] = gvl;
        dm_ln += gml * (st.mu_ln[i] - k_dots);
        dv_ln += gvl * st.var_ln[i];
        g_sum += gml;
    }
    *sums.mean_offset = k_dots * g_sum;
    *w.g_abs = hsum(g_abs);
    w.g_sq[0] = hsum(gm_sq);
    w.g_sq[1] = hsum(gv_sq);
    w.g_sq[2] = f64x2_extract_lane::<0>(v_max).max(f64x2_extract_lane::<1>(v_max));
    sums.mean_dots[0] = hsum(dm_in);
    sums.mean_dots[1] = dm_ln;
    sums.var_dots[0] = hsum(dv_in);
    sums.var_dots[1] = dv_ln;
    if using_bn {
        sums.set_bn_dots(2, st.mu_bn, st.var_bn, k_dots);
    }
}

/// A row whose term of dWeight, s sum dy (x - mu), lies below 1 / ROW_CANCELLED of |sum dy| counts
/// as cancelling by itself (`nd_grad_refine::refine_cancelled`): its term is then mostly the
/// error of its IN mean, (mu_in's error) s sum dy, up to ~2^-25 of |sum dy| (the statistics
/// pass's f32 chunk sums), which the channel's other rows need not cancel.
pub(crate) const ROW_CANCELLED: f64 = (1u32 << 10) as f64;

/// Stds of the mix beyond which a row's centre counts as far from its mixed mean mu (training,
/// where the centre is the IN mean, `centres`): its error, 2^-24 |centre - mu| per |dy|, then
/// passes 1e-4 of the terms' scale |x - mu| + std.
const FAR_CENTRE: f64 = 1024.0;

/// Whether centre c lies beyond FAR_CENTRE stds sqrt(ve) of mu, by squares: false for ve 0,
/// where zero_std_sums has the row, and for NaN.
#[inline(always)]
fn far_centre(c: f64, mu: f64, ve: f64) -> bool {
    let d = c - mu;
    ve > 0.0 && d * d > FAR_CENTRE * FAR_CENTRE * ve
}

/// `far_centre` of two rows, all bits per lane.
#[inline(always)]
fn far_centre2(c: v128, mu: v128, ve: v128) -> v128 {
    let d = f64x2_sub(c, mu);
    let bound = f64x2_mul(f64x2_splat(FAR_CENTRE * FAR_CENTRE), ve);
    v128_and(f64x2_gt(ve, f64x2_splat(0.0)), f64x2_gt(f64x2_mul(d, d), bound))
}

/// For every row whose variance is 0 (with eps 0: s = +Inf), sum dy (x - mu) in `pairs` replaced by
/// the reference's sum dy ((x - mu) s), an infinity or NaN: the combine's s p, s^2 (s gamma p) then
/// give its dgamma and dL/dvar (Inf times an infinity keeps its sign, NaN stays NaN) where
/// s sum dy (x - mu) would turn 0 Inf terms (x = mu, dy = 0) or infinities of both signs into an
/// infinity. Rows of nonzero variance are left as they are. x - mu is (x - mu) - err, err the
/// rounding of the forward's mixed mean (`Stats::err`): a rest below half an ulp of
/// its anchor's mean is the whole of x - mu where x equals that mean, whose 0 times Infinity
/// made dgamma NaN for -Infinity (rows of 1e20 on a running_mean of -3e38 under a BN mean weight
/// of 1.6e-38, attack fuzzer seed 1264, attack helper-90).
///
/// # Safety
/// As `redo_sums`; `st` the statistics of the forward of these `rows` (all of them).
#[inline(never)]
unsafe fn zero_std_sums(
    x: *const f32,
    dy: *const f32,
    m: usize,
    rows: usize,
    st: &Stats,
    var: *const f64,
    pairs: *mut v128,
) {
    for r in 0..rows {
        if *var.add(r) != 0.0 {
            continue;
        }
        let (mean, err, mut p) = (st.mu[r], st.err[r], 0.0);
        for i in r * m..(r + 1) * m {
            p += *dy.add(i) as f64 * (((*x.add(i) as f64 - mean) - err) * f64::INFINITY);
        }
        *pairs.add(r) = f64x2_replace_lane::<1>(*pairs.add(r), p);
    }
}

/// Whether any of the n floats at `p` is nonzero (-0 counts as 0).
///
/// # Safety
/// `p` valid for reading n floats.
unsafe fn any_nonzero(p: *const f32, n: usize) -> bool {
    let bits = p as *const u32;
    (0..n).any(|i| *bits.add(i) << 1 != 0)
}

/// The row sums (sum dy, sum dy (x - hi)) again in f64 for every row whose var + eps is out of
/// range (`wide::out_of_range`: its f32 products may be subnormal), whose f32 sums are not
/// finite, or whose sum dy (x - hi) is below `TINY_SUM` while its dy is not all 0. A row whose sum dy is NaN or infinite (NaN or Inf in dy) gets sum dy (x - mu) about
/// its mixed mean mu instead, as the reference forms it (the combine then adds nothing).
///
/// # Safety
/// As `reduce`; `st` the statistics of the forward of these `rows` (all of them), `var` valid
/// for `rows` f64, `pairs` for `rows` v128.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
unsafe fn redo_sums(
    x: *const f32,
    dy: *const f32,
    m: usize,
    rows: usize,
    (centre_of, st): (*const f64, &Stats),
    var: *const f64,
    eps: f64,
    pairs: *mut v128,
) {
    for r in 0..rows {
        let pair = *pairs.add(r);
        let finite = i64x2_all_true(f64x2_eq(f64x2_sub(pair, pair), f64x2_splat(0.0)));
        let p = f64x2_extract_lane::<1>(pair);
        let tiny = finite && p < TINY_SUM && p > -TINY_SUM && any_nonzero(dy.add(r * m), m);
        if wide::out_of_range(*var.add(r) + eps) || !finite || tiny {
            let hi = centre(*centre_of.add(r), m);
            // The combine adds ((centre - mu) - err) sum dy where sum dy is finite (err: the
            // forward's mixed-mean rounding, `Stats::err`; without it dgamma was 0 for -Infinity,
            // attack fuzzer seeds 697, 1207, helper-90); else p is taken about mu + err here.
            let (g, mut p) = wide::grad_sums_f64(x.add(r * m), dy.add(r * m), m, hi);
            if !g.is_finite() {
                let about = (st.mu[r], st.err[r]);
                p = wide::grad_sums_f64_about(x.add(r * m), dy.add(r * m), m, about);
            }
            *pairs.add(r) = f64x2(g, p);
        }
    }
}
