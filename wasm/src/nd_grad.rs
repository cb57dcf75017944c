//! SwitchNorm2d/3d backward on x, dy viewed as [N, C, M], in two calls around the cross-replica
//! sum of SyncSN: `reduce` reads (x, dy) once and forms every gradient sum, `dx` reads them again
//! and writes dx. Both use the statistics area that this layer's forward left (layout.rs), so
//! nothing of the forward's output is kept. The chain rule is SN_SPEC's (and the reference
//! backend's), written per row r = (n, c) with s = 1/sqrt(var + eps):
//!   sum_i dy xhat = s * sum_i dy (x - mu),  Gm = -s gamma sum_i dy,
//!   Gv = -0.5 s^3 gamma sum_i dy (x - mu)
//! and dx = dy gamma s + Gmu_in / M + Gvar_in * 2 (x - mu_in) / (M - 1).
//!
//! Each call is a tight sweep over the rows that does only the per-row SIMD work, plus O(N*C)
//! per-row arithmetic done two rows per f64x2 in a loop of its own: at M = 49 a row is 400 bytes,
//! so scalar per-row code with its dependency chains would cost as much as moving the data.

use crate::layout::{Layer, Stats, Sums, MODE_TRAINING, MODE_USING_BN};
use crate::simd;
use crate::wide;
use core::arch::wasm32::*;

/// Floats per chunk of the f32 gradient sums: 16 terms per partial sum, so that their rounding
/// stays near that of the products themselves; the chunks are added in f64.
const CHUNK: usize = 256;

/// The backward work area of layout "nd" split into its per-row and per-sample arrays.
struct Work<'a> {
    /// (gm, gv) per row; after the reduce sweep, (sum dy, sum dy (x - hi)) per row.
    pairs: &'a mut [v128],
    inv_std: &'a mut [f64],
    gm_ln: &'a mut [f64],
    gv_ln: &'a mut [f64],
}

impl<'a> Work<'a> {
    unsafe fn split(p: *mut f64, n: usize, c: usize) -> Work<'a> {
        let rows = n * c;
        let pairs = core::slice::from_raw_parts_mut(p as *mut v128, rows);
        let rest = core::slice::from_raw_parts_mut(p.add(2 * rows), rows + 2 * n);
        let (inv_std, rest) = rest.split_at_mut(rows);
        let (gm_ln, gv_ln) = rest.split_at_mut(n);
        Work { pairs, inv_std, gm_ln, gv_ln }
    }
}

#[inline(always)]
unsafe fn ld(p: *const f64) -> v128 {
    v128_load(p as *const v128)
}

#[inline(always)]
unsafe fn st2(p: *mut f64, v: v128) {
    v128_store(p as *mut v128, v)
}

#[inline(always)]
unsafe fn ld32(p: *const f32) -> v128 {
    f64x2_promote_low_f32x4(v128_load64_zero(p as *const u64))
}

#[inline(always)]
fn hsum(v: v128) -> f64 {
    f64x2_extract_lane::<0>(v) + f64x2_extract_lane::<1>(v)
}

/// hi = f32(mu) back in f64: the shift of the row sums and of the dx sweep.
#[inline(always)]
fn hi2(mu: v128) -> v128 {
    f64x2_promote_low_f32x4(f32x4_demote_f64x2_zero(mu))
}

/// Per row, f64x2 (sum dy, sum dy (x - hi)) with hi = f32(mu_in): f32 SIMD within chunks of
/// `CHUNK` floats, chunks added in f64.
#[inline(always)]
unsafe fn row_sums(x: *const f32, dy: *const f32, m: usize, hi: f32) -> v128 {
    if m <= CHUNK {
        return simd::grad_sums(x, dy, m, hi);
    }
    let mut acc = f64x2_splat(0.0);
    let mut i = 0;
    while i < m {
        let len = if m - i < CHUNK { m - i } else { CHUNK };
        acc = f64x2_add(acc, simd::grad_sums(x.add(i), dy.add(i), len, hi));
        i += len;
    }
    acc
}

/// Rows up to this long go through `short_row_sums` (one accumulator pair per row: at most 16
/// terms per lane, as a chunk of `CHUNK` floats has with four).
const SHORT: usize = 64;

/// `row_sums` of `rows` rows of 4..=SHORT floats into `pairs`, four rows at a time through
/// `simd::grad_sums_x4`; the rows % 4 left over go through the same arithmetic one at a time.
/// Returns whether every sum is finite.
///
/// # Safety
/// `x`, `dy` valid for rows * m floats, `mu_in` for `rows` f64, `pairs` for `rows` v128.
unsafe fn short_row_sums(
    x: *const f32,
    dy: *const f32,
    m: usize,
    mu_in: *const f64,
    pairs: *mut v128,
    rows: usize,
) -> bool {
    let groups = rows / 4 * 4;
    // x - x is 0 for finite x, NaN for Inf and NaN.
    let zero = f32x4_splat(0.0);
    let mut finite = i32x4_splat(-1);
    let mut r = 0;
    while r < groups {
        let shift = f32x4_demote_f64x2_zero(ld(mu_in.add(r)));
        let shift = i64x2_shuffle::<0, 2>(shift, f32x4_demote_f64x2_zero(ld(mu_in.add(r + 2))));
        let at = |k: usize| (r + k) * m;
        let xs = [x.add(at(0)), x.add(at(1)), x.add(at(2)), x.add(at(3))];
        let dys = [dy.add(at(0)), dy.add(at(1)), dy.add(at(2)), dy.add(at(3))];
        let (g, p) = simd::grad_sums_x4(xs, dys, m, shift);
        let gp = f32x4_add(g, p);
        finite = v128_and(finite, f32x4_eq(f32x4_sub(gp, gp), zero));
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
        let shift = f32x4_splat(*mu_in.add(r) as f32);
        let (g, p) = simd::grad_sums_x4([xr; 4], [dyr; 4], m, shift);
        let gp = f32x4_add(g, p);
        finite = v128_and(finite, f32x4_eq(f32x4_sub(gp, gp), zero));
        *pairs.add(r) = f64x2_promote_low_f32x4(i32x4_shuffle::<0, 4, 1, 5>(g, p));
        r += 1;
    }
    i32x4_all_true(finite)
}

/// Reduction call of the backward pass for layout "nd": one sweep over (x, dy) per row, then the
/// O(N*C) combine, in f64:
///   P[r] = sum_i dy (x - mu) = sum_i dy (x - hi) + (hi - mu) sum_i dy   (hi = f32(mu_in), so
///   x - hi is exact near the mean: offsets of 1e4 cost nothing)
///   dWeight[c] += s P,  dBias[c] += sum dy,  gm = -s gamma sum dy,  gv = -0.5 s^3 gamma P
///   gmL[n] = sum_c gm, gvL[n] = sum_c gv, gmB[c] = sum_n gm, gvB[c] = sum_n gv
///   meanDots = (sum gm mu_in, sum gmL mu_ln, sum gmB mu_bn), varDots likewise with the variances
/// into the work area. `stats` must hold this layer's forward (mu, var written by normalize).
///
/// # Safety
/// `x`, `dy` valid for n*c*m floats; `layer`, `stats` and `work` (`layout::work_len` f64,
/// 16-byte aligned) as in `layout`, overlapping nothing else.
#[allow(clippy::too_many_arguments)]
pub unsafe fn reduce(
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
    let finite = reduce_rows(x, dy, m, st.mu_in.as_ptr(), w.pairs.as_mut_ptr(), n * c);
    combine(x, dy, n, c, m, mode, layer, st, work, sums, finite);
}

/// The sweep of `reduce` over `rows` consecutive rows of m floats at `x`, `dy`: (sum dy,
/// sum dy (x - hi)) per row into `pairs`, nothing else; returns whether every row's sums are
/// finite. A row's result depends on that row alone, so a caller may split the rows into ranges
/// (threads) with `mu_in` and `pairs` offset alike.
///
/// # Safety
/// `x`, `dy` valid for rows * m floats, `mu_in` for `rows` f64, `pairs` for `rows` v128.
pub unsafe fn reduce_rows(
    x: *const f32,
    dy: *const f32,
    m: usize,
    mu_in: *const f64,
    pairs: *mut v128,
    rows: usize,
) -> bool {
    if (4..=SHORT).contains(&m) {
        short_row_sums(x, dy, m, mu_in, pairs, rows)
    } else {
        let mut finite = i64x2_splat(-1);
        for r in 0..rows {
            let pair = row_sums(x.add(r * m), dy.add(r * m), m, *mu_in.add(r) as f32);
            finite = v128_and(finite, f64x2_eq(f64x2_sub(pair, pair), f64x2_splat(0.0)));
            *pairs.add(r) = pair;
        }
        i64x2_all_true(finite)
    }
}

/// The O(N*C) combine of `reduce`, after `reduce_rows` covered every row. `finite`: whether
/// every row's sums came out finite (false when unknown, e.g. rows summed by several threads:
/// then each row is checked, an O(N*C) scan).
///
/// # Safety
/// As `reduce`.
#[allow(clippy::too_many_arguments)]
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
    sums: Sums,
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
    // s = 1/sqrt(var + eps) is formed here, two rows per f64x2 so that the square roots and
    // divisions of successive rows overlap, and kept for the dx call.
    let (var_in, mu, var) = (st.var_in.as_ptr(), st.mu.as_ptr(), st.var.as_ptr());
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
    // too), are summed again in f64.
    if st.wide[0] != 0.0 || !finite {
        redo_sums(x, dy, m, rows, mu_in, var, layer.eps, pairs);
    }
    let (mut dm_in, mut dv_in) = (z, z);
    let (mut dm_ln, mut dv_ln) = (0.0, 0.0);
    let even = c / 2 * 2;
    for i in 0..n {
        let (mut gml, mut gvl) = (z, z);
        let mut j = 0;
        while j < even {
            let r = i * c + j;
            let (a, b) = (*pairs.add(r), *pairs.add(r + 1));
            let g = i64x2_shuffle::<0, 2>(a, b);
            let p_raw = i64x2_shuffle::<1, 3>(a, b);
            let mean = ld(mu_in.add(r));
            let p = f64x2_add(p_raw, f64x2_mul(f64x2_sub(hi2(mean), ld(mu.add(r))), g));
            let s = f64x2_div(one, f64x2_sqrt(f64x2_add(ld(var.add(r)), eps)));
            st2(inv_std.add(r), s);
            let sg = f64x2_mul(s, ld32(gamma.add(j)));
            st2(dw.add(j), f64x2_add(ld(dw.add(j)), f64x2_mul(s, p)));
            st2(db.add(j), f64x2_add(ld(db.add(j)), g));
            let gm = f64x2_neg(f64x2_mul(sg, g));
            let gv = f64x2_mul(f64x2_mul(neg_half, f64x2_mul(s, s)), f64x2_mul(sg, p));
            *pairs.add(r) = i64x2_shuffle::<0, 2>(gm, gv);
            *pairs.add(r + 1) = i64x2_shuffle::<1, 3>(gm, gv);
            st2(gmb.add(j), f64x2_add(ld(gmb.add(j)), gm));
            st2(gvb.add(j), f64x2_add(ld(gvb.add(j)), gv));
            gml = f64x2_add(gml, gm);
            gvl = f64x2_add(gvl, gv);
            dm_in = f64x2_add(dm_in, f64x2_mul(gm, mean));
            dv_in = f64x2_add(dv_in, f64x2_mul(gv, ld(var_in.add(r))));
            j += 2;
        }
        let (mut gml, mut gvl) = (hsum(gml), hsum(gvl));
        if j < c {
            let r = i * c + j;
            let (g, p_raw) =
                (f64x2_extract_lane::<0>(*pairs.add(r)), f64x2_extract_lane::<1>(*pairs.add(r)));
            let mean = *mu_in.add(r);
            let p = p_raw + ((mean as f32) as f64 - *mu.add(r)) * g;
            let s = 1.0 / simd::sqrt_f64(*var.add(r) + layer.eps);
            *inv_std.add(r) = s;
            let sg = s * *gamma.add(j) as f64;
            *dw.add(j) += s * p;
            *db.add(j) += g;
            let (gm, gv) = (-(sg * g), -0.5 * (s * s) * (sg * p));
            *pairs.add(r) = f64x2(gm, gv);
            *gmb.add(j) += gm;
            *gvb.add(j) += gv;
            gml += gm;
            gvl += gv;
            dm_in = f64x2_add(dm_in, f64x2(gm * mean, 0.0));
            dv_in = f64x2_add(dv_in, f64x2(gv * *var_in.add(r), 0.0));
        }
        w.gm_ln[i] = gml;
        w.gv_ln[i] = gvl;
        dm_ln += gml * st.mu_ln[i];
        dv_ln += gvl * st.var_ln[i];
    }
    sums.mean_dots[0] = hsum(dm_in);
    sums.mean_dots[1] = dm_ln;
    sums.var_dots[0] = hsum(dv_in);
    sums.var_dots[1] = dv_ln;
    if using_bn {
        let (mut dm, mut dv) = (0.0, 0.0);
        for j in 0..c {
            dm += sums.gm_bn[j] * st.mu_bn[j];
            dv += sums.gv_bn[j] * st.var_bn[j];
        }
        sums.mean_dots[2] = dm;
        sums.var_dots[2] = dv;
    }
}

/// The row sums (sum dy, sum dy (x - hi)) again in f64 for every row that is wide (`wide`: its
/// f32 products may overflow or be subnormal) or, in such a call, whose f32 sums are not finite.
///
/// # Safety
/// As `reduce`; `mu_in`, `var` valid for `rows` f64, `pairs` for `rows` v128.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
unsafe fn redo_sums(
    x: *const f32,
    dy: *const f32,
    m: usize,
    rows: usize,
    mu_in: *const f64,
    var: *const f64,
    eps: f64,
    pairs: *mut v128,
) {
    for r in 0..rows {
        let pair = *pairs.add(r);
        let finite = i64x2_all_true(f64x2_eq(f64x2_sub(pair, pair), f64x2_splat(0.0)));
        if wide::scale(*var.add(r) + eps) != 0.0 || !finite {
            let hi = *mu_in.add(r) as f32;
            let (g, p) = wide::grad_sums_f64(x.add(r * m), dy.add(r * m), m, hi);
            *pairs.add(r) = f64x2(g, p);
        }
    }
}

/// dx call of the backward pass for layout "nd", after `reduce` (and, under SyncSN, after the
/// caller replaced the sums by their totals over replicas; `count` is the global batch size N,
/// the local n otherwise). Per row, in f64, two rows per f64x2:
///   Gvar_in = v0 gv + v1 gvL / C + v2 gvB / N
///   Gmu_in  = w0 gm + w1 gmL / C + v1 (2/C) (mu_in - mu_ln) gvL + w2 gmB / N
///             + v2 (2/N) (mu_in - mu_bn) gvB
/// (the BN terms only in training with usingBN: otherwise the BN statistics are constants), kept
/// as f32 [hi, a, b, k] in place of (gm, gv) with a = gamma s, b = 2 Gvar_in / (M - 1),
/// k = Gmu_in / M - lo b (mu_in = hi + lo, hi = f32(mu_in)); then one sweep per row
/// dx = dy a + (x - hi) b + k.
///
/// # Safety
/// `x`, `dy` valid for reading and `dx` for writing n*c*m floats (`dx` may equal `dy` or `x`,
/// or overlap neither); `layer`, `stats`, `work` as for `reduce`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn dx(
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
    work: *mut f64,
    sums: Sums,
    count: f64,
) {
    let var = st.var.as_ptr();
    if dx_constants(n, c, m, mode, layer, st, work, sums, count) {
        sweep_checked(x, dy, dx, n * c, m, work as *const v128, var, layer.eps);
    } else {
        sweep(x, dy, dx, n * c, m, work as *const v128);
    }
}

/// The per-row constants of `dx` (into the work area, in place of (gm, gv)), before its sweep;
/// returns whether some row is wide (then the sweep must be `sweep_checked`).
///
/// # Safety
/// As `dx`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn dx_constants(
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
    work: *mut f64,
    sums: Sums,
    count: f64,
) -> bool {
    let bn = mode & MODE_USING_BN != 0 && mode & MODE_TRAINING != 0;
    let w = Work::split(work, n, c);
    let [w0, w1, w2] = layer.mean_mix;
    let [v0, v1, v2] = layer.var_mix;
    let (w2, v2) = if bn { (w2, v2) } else { (0.0, 0.0) };
    let inv_c = 1.0 / c as f64;
    let (inv_m, two_m1) = (f64x2_splat(1.0 / m as f64), f64x2_splat(2.0 / (m as f64 - 1.0)));
    let (w0v, v0v) = (f64x2_splat(w0), f64x2_splat(v0));
    // Without the BN path its constants are 0 and read from a zero pair (no per-channel data).
    let zeros = [0.0f64; 2];
    let bn_at = |p: *const f64, j: usize| if bn { p.add(j) } else { zeros.as_ptr() };
    let (kb_mu, kb_var, kb_spread) =
        (f64x2_splat(w2 / count), f64x2_splat(v2 / count), f64x2_splat(v2 * 2.0 / count));
    let (mu_in, inv_std, gamma) = (st.mu_in.as_ptr(), w.inv_std.as_ptr(), layer.gamma.as_ptr());
    let (gmb, gvb, mu_bn) = (sums.gm_bn.as_ptr(), sums.gv_bn.as_ptr(), st.mu_bn.as_ptr());
    let pairs = w.pairs.as_mut_ptr();
    let zero = f64x2_splat(0.0);
    let var = st.var.as_ptr();
    // The scale of row r if it is wide (`wide`), else 1.
    let row_sc = |r: usize| {
        let sc = wide::scale(*var.add(r) + layer.eps);
        if sc == 0.0 {
            1.0
        } else {
            sc
        }
    };
    // Constants of two rows r, r + 1 of sample i (channels j, j + 1; the odd tail passes a
    // duplicate of its channel and stores one row).
    // Whether the forward's normalize constants found a wide row (`wide`); without one, the
    // constants and the sweep are the plain ones.
    let any_wide = st.wide[0] != 0.0;
    // `wide` (a constant in each of the two loops below, which the compiler folds): whether
    // wide rows get their scaled constants.
    let constants = |i: usize, r: usize, j: usize, one: bool, wide: bool| -> (v128, v128) {
        let (gml, gvl, mu_ln) = (w.gm_ln[i], w.gv_ln[i], st.mu_ln[i]);
        let g_var_ln = f64x2_splat(v1 * gvl * inv_c);
        let g_mu_ln = f64x2_splat(w1 * gml * inv_c);
        let ln_spread = f64x2_splat(v1 * 2.0 * inv_c * gvl);
        let lnv = f64x2_splat(mu_ln);
        let ld_or = |p: *const f64| if one { f64x2_splat(*p) } else { ld(p) };
        let ld32_or = |p: *const f32| if one { f64x2_splat(*p as f64) } else { ld32(p) };
        let (a0, a1) = (*pairs.add(r), if one { *pairs.add(r) } else { *pairs.add(r + 1) });
        let gm = i64x2_shuffle::<0, 2>(a0, a1);
        let gv = i64x2_shuffle::<1, 3>(a0, a1);
        let mean = ld_or(mu_in.add(r));
        let mut g_var = f64x2_add(f64x2_mul(v0v, gv), g_var_ln);
        let mut g_mu = f64x2_add(
            f64x2_add(f64x2_mul(w0v, gm), g_mu_ln),
            f64x2_mul(ln_spread, f64x2_sub(mean, lnv)),
        );
        let (gmbv, gvbv) = (ld_or(bn_at(gmb, j)), ld_or(bn_at(gvb, j)));
        let spread = f64x2_mul(f64x2_mul(kb_spread, f64x2_sub(mean, ld_or(bn_at(mu_bn, j)))), gvbv);
        g_var = f64x2_add(g_var, f64x2_mul(kb_var, gvbv));
        g_mu = f64x2_add(g_mu, f64x2_add(f64x2_mul(kb_mu, gmbv), spread));
        let a = f64x2_mul(ld32_or(gamma.add(j)), ld_or(inv_std.add(r)));
        let mut b = f64x2_mul(g_var, two_m1);
        // A wide row (`wide`) is swept as dx = dy a + (x sc - h) b' + k with b' = b / sc and
        // h = f32(mu_in sc), the lo part scaled alike; other rows have sc = 1 here.
        let mut mean = mean;
        if wide {
            let (sc0, sc1) = (row_sc(r), if one { 1.0 } else { row_sc(r + 1) });
            mean = f64x2_mul(mean, f64x2(sc0, sc1));
            b = f64x2_mul(b, f64x2(1.0 / sc0, 1.0 / sc1));
        }
        let hi = f32x4_demote_f64x2_zero(mean);
        let lo = f64x2_sub(mean, f64x2_promote_low_f32x4(hi));
        // lo = 0 skips lo * b, which is NaN when b is infinite (M = 1).
        let lo_b = v128_and(f64x2_mul(lo, b), f64x2_ne(lo, zero));
        let k = f64x2_sub(f64x2_mul(g_mu, inv_m), lo_b);
        let (a, b, k) =
            (f32x4_demote_f64x2_zero(a), f32x4_demote_f64x2_zero(b), f32x4_demote_f64x2_zero(k));
        // [hi0, a0, hi1, a1] and [b0, k0, b1, k1], then [hi, a, b, k] per row.
        let t = i32x4_shuffle::<0, 4, 1, 5>(hi, a);
        let u = i32x4_shuffle::<0, 4, 1, 5>(b, k);
        (i64x2_shuffle::<0, 2>(t, u), i64x2_shuffle::<1, 3>(t, u))
    };
    let even = c / 2 * 2;
    let all_rows = |wide: bool| {
        for i in 0..n {
            let mut j = 0;
            while j < even {
                let r = i * c + j;
                let (k0, k1) = constants(i, r, j, false, wide);
                *pairs.add(r) = k0;
                *pairs.add(r + 1) = k1;
                j += 2;
            }
            if j < c {
                let r = i * c + j;
                *pairs.add(r) = constants(i, r, j, true, wide).0;
            }
        }
    };
    if any_wide {
        all_rows(true);
    } else {
        all_rows(false);
    }
    any_wide
}

/// The dx sweep over `rows` rows of m floats with the constants `abk` per row, one row or four
/// at a time as `nd::for_rows` decides (the results are the same either way). No row is wide.
///
/// # Safety
/// As `dx`, with `abk` valid for `rows` v128.
pub unsafe fn sweep(
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    rows: usize,
    m: usize,
    abk: *const v128,
) {
    crate::nd::for_rows(
        x,
        rows,
        m,
        |r| {
            let at = r * m;
            simd::grad_dx(x.add(at), dy.add(at), dx.add(at), m, *abk.add(r));
        },
        |r, g| {
            let at = r * m;
            simd::grad_dx_x4(x.add(at), dy.add(at), dx.add(at), g, abk.add(r));
        },
    );
}

/// `sweep` for a call with wide rows (`wide`): each row checks its var + eps and a wide one is
/// swept scaled; the other rows give the same results as in `sweep`.
///
/// # Safety
/// As `sweep`, with `var` valid for `rows` f64.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub unsafe fn sweep_checked(
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    rows: usize,
    m: usize,
    abk: *const v128,
    var: *const f64,
    eps: f64,
) {
    let wide_sc = |r: usize| wide::scale(*var.add(r) + eps);
    let one = |r: usize| {
        let at = r * m;
        let k = *abk.add(r);
        let sc = wide_sc(r);
        if sc == 0.0 {
            simd::grad_dx(x.add(at), dy.add(at), dx.add(at), m, k);
        } else {
            let k = [
                f32x4_extract_lane::<0>(k),
                f32x4_extract_lane::<1>(k),
                f32x4_extract_lane::<2>(k),
                f32x4_extract_lane::<3>(k),
            ];
            wide::grad_dx(x.add(at), dy.add(at), dx.add(at), m, k, sc as f32);
        }
    };
    crate::nd::for_rows(x, rows, m, &one, |r, g| {
        if (0..4).any(|k| wide_sc(r + k) != 0.0) {
            for k in 0..4 {
                one(r + k);
            }
        } else {
            let at = r * m;
            simd::grad_dx_x4(x.add(at), dy.add(at), dx.add(at), g, abk.add(r));
        }
    });
}
