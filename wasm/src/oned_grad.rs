//! SwitchNorm1d backward on x, dy of [N, C], in two calls around the cross-replica sum of SyncSN,
//! as for nd (`nd_grad`). The mixed statistics differ for every element,
//!   mu = w0 mu_ln[n] + w1 mu_bn[c],  var = v0 var_ln[n] + v1 var_bn[c],  s = 1/sqrt(var + eps),
//! so both sweeps work per element in f64 (two columns per f64x2), like the 1d normalize pass:
//!   gm = -s gamma dy,  gv = -0.5 s^2 gamma dy xhat   (dL/dmu, dL/dvar of that element)
//!   dx = dy gamma s + w0 gmL / C + v0 gvL 2 (x - mu_ln) / (C - 1)
//!        + w1 gmB / N + v1 gvB 2 (x - mu_bn) / (N - 1)   (BN terms in training only)

use crate::layout::{Layer, Stats, Sums, MODE_TRAINING, MODE_USING_BN};
use crate::simd;
use core::arch::wasm32::*;

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

/// The BN statistics as the mix sees them: zeros without usingBN (w1 = v1 = 0 then, so the sums
/// are unchanged), read through a pointer so that the f64x2 loop needs no branch.
struct Bn {
    mu: *const f64,
    var: *const f64,
    stride: usize,
}

impl Bn {
    fn new(st: &Stats, using_bn: bool, zeros: &[f64; 2]) -> Bn {
        if using_bn {
            Bn { mu: st.mu_bn.as_ptr(), var: st.var_bn.as_ptr(), stride: 1 }
        } else {
            Bn { mu: zeros.as_ptr(), var: zeros.as_ptr(), stride: 0 }
        }
    }
}

/// The backward reduction split into tiles for threads, fixed by N and C alone (not by the thread
/// count), so that every sum is formed in the same order however many threads run the tiles:
/// - N >= C, by rows: tile t is `size` rows (at least 64, ~64Ki floats). Its rows' gmL, gvL go
///   straight to the work area; its column sums (dWeight, dBias, gmB, gvB over its rows) to a
///   partial of 4C values, added up over tiles in tile order by `combine`.
/// - N < C, by columns: tile t is `size` columns (a multiple of 4, at least 64, ~64Ki floats).
///   Its columns' sums go straight to the sums; each row's gm, gv over its columns to a partial
///   of 2N values, added up over tiles in tile order by `combine`.
pub struct Tiles {
    pub by_rows: bool,
    pub size: usize,
    pub count: usize,
}

impl Tiles {
    pub fn new(n: usize, c: usize) -> Tiles {
        if n >= c {
            let size = (65536 / c.max(1)).max(64);
            Tiles { by_rows: true, size, count: (n + size - 1) / size }
        } else {
            let size = ((65536 / n.max(1) + 3) / 4 * 4).max(64);
            Tiles { by_rows: false, size, count: (c + size - 1) / size }
        }
    }

    /// f64 values of the partials (after the sums in the work area).
    pub fn partials_len(&self, n: usize, c: usize) -> usize {
        self.count * if self.by_rows { 4 * c } else { 2 * n }
    }
}

/// Reduction call of the backward pass for layout "1d": one sweep over (x, dy), in f64,
///   dWeight[c] += dy xhat, dBias[c] += dy, gmL[n] / gmB[c] += gm, gvL[n] / gvB[c] += gv
/// then meanDots = (sum gmL mu_ln, sum gmB mu_bn), varDots likewise with the variances. The sums
/// are formed tile by tile (`Tiles`), as threads form them.
///
/// # Safety
/// `x`, `dy` valid for n*c floats; `layer`, `stats` and `work` (`layout::work_len` f64) as in
/// `layout`, overlapping nothing else.
#[allow(clippy::too_many_arguments)]
pub unsafe fn reduce(
    x: *const f32,
    dy: *const f32,
    n: usize,
    c: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
    work: *mut f64,
    mut sums: Sums,
) {
    let count = Tiles::new(n, c).count;
    reduce_tiles(x, dy, 0, count, n, c, mode, layer, &st, work, &mut sums);
    combine(n, c, mode, &st, work, sums);
}

/// Where tile partials start in the work area: after the sums of either mode.
fn partials_at(n: usize, c: usize) -> usize {
    crate::layout::sums_at(crate::layout::LAYOUT_1D, n, c)
        + crate::layout::sums_len(crate::layout::LAYOUT_1D, true, c)
}

/// Tiles tile0..tile0 + tiles of the reduction (`Tiles`); tiles may run at once on different
/// threads (they write disjoint parts of the work area).
///
/// # Safety
/// As `reduce`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn reduce_tiles(
    x: *const f32,
    dy: *const f32,
    tile0: usize,
    tiles: usize,
    n: usize,
    c: usize,
    mode: u32,
    layer: &Layer,
    st: &Stats,
    work: *mut f64,
    sums: &mut Sums,
) {
    let g = Tiles::new(n, c);
    let part = work.add(partials_at(n, c));
    for t in tile0..tile0 + tiles {
        let lo = t * g.size;
        if g.by_rows {
            let hi = if n - lo < g.size { n } else { lo + g.size };
            let p = part.add(t * 4 * c);
            let cols = [p, p.add(c), p.add(2 * c), p.add(3 * c)];
            reduce_tile(x, dy, lo, hi, 0, c, c, mode, layer, st, cols, [work, work.add(n)]);
        } else {
            let hi = if c - lo < g.size { c } else { lo + g.size };
            let p = part.add(t * 2 * n);
            let cols = [
                sums.d_weight.as_mut_ptr(),
                sums.d_bias.as_mut_ptr(),
                sums.gm_bn.as_mut_ptr(),
                sums.gv_bn.as_mut_ptr(),
            ];
            reduce_tile(x, dy, 0, n, lo, hi, c, mode, layer, st, cols, [p, p.add(n)]);
        }
    }
}

/// One tile of the reduction: rows i0..i1, columns j0..j1 (j0 a multiple of 2). Column sums over
/// its rows into `cols` = (dWeight, dBias, gmB, gvB) at [j0, j1), each row's gm, gv over its
/// columns into `rows_out` = (gm, gv) at [i0, i1).
#[allow(clippy::too_many_arguments)]
unsafe fn reduce_tile(
    x: *const f32,
    dy: *const f32,
    i0: usize,
    i1: usize,
    j0: usize,
    j1: usize,
    c: usize,
    mode: u32,
    layer: &Layer,
    st: &Stats,
    cols: [*mut f64; 4],
    rows_out: [*mut f64; 2],
) {
    let using_bn = mode & MODE_USING_BN != 0;
    let k = tile_centre(st, using_bn, i0, i1, j0, j1);
    let at = (i0, i1, j0, j1);
    // Rows that take x - mu as the forward does (`ExactRows`), found first so that a tile
    // without any keeps its loop free of the test (a per-row test in it cost the backward of
    // [65536, 64] ~3.5%).
    let exact = ExactRows::new(st, using_bn, layer, j0, j1);
    let any_exact = (i0..i1).any(|i| exact.takes(st, i, layer));
    let e = (&exact, rows_out);
    match (k == 0.0, any_exact) {
        (true, false) => {
            reduce_tile_about::<false, false>(x, dy, at, c, mode, layer, st, 0.0, cols, e)
        }
        (true, true) => {
            reduce_tile_about::<false, true>(x, dy, at, c, mode, layer, st, 0.0, cols, e)
        }
        (false, false) => {
            reduce_tile_about::<true, false>(x, dy, at, c, mode, layer, st, k, cols, e)
        }
        (false, true) => reduce_tile_about::<true, true>(x, dy, at, c, mode, layer, st, k, cols, e),
    }
}

/// `reduce_tile` about the centre `k` (`tile_centre`; the loop leaves it out where it is 0);
/// with `EXACT`, the rows `exact` takes go through `exact_row`.
#[allow(clippy::too_many_arguments)]
unsafe fn reduce_tile_about<const CENTRED: bool, const EXACT: bool>(
    x: *const f32,
    dy: *const f32,
    (i0, i1, j0, j1): (usize, usize, usize, usize),
    c: usize,
    mode: u32,
    layer: &Layer,
    st: &Stats,
    k: f64,
    cols: [*mut f64; 4],
    (exact, rows_out): (&ExactRows, [*mut f64; 2]),
) {
    let using_bn = mode & MODE_USING_BN != 0;
    let [w0, w1, _] = layer.mean_mix;
    let [v0, v1, _] = layer.var_mix;
    let (w1, v1) = if using_bn { (w1, v1) } else { (0.0, 0.0) };
    let zeros = [0.0f64; 2];
    let bn = Bn::new(st, using_bn, &zeros);
    let [dw, db, gmb, gvb] = cols;
    for j in j0..j1 {
        *dw.add(j) = 0.0;
        *db.add(j) = 0.0;
        *gmb.add(j) = 0.0;
        *gvb.add(j) = 0.0;
    }
    let (w1v, v1v, eps) = (f64x2_splat(w1), f64x2_splat(v1), f64x2_splat(layer.eps));
    let (one, neg_half) = (f64x2_splat(1.0), f64x2_splat(-0.5));
    let pairs = j0 + (j1 - j0) / 2 * 2;
    // x - mu as (x - k) - (w0 (mu_ln - k) + w1 (mu_bn - k)): the same floats where k is 0.
    let kv = f64x2_splat(k);
    for i in i0..i1 {
        if EXACT && exact.takes(st, i, layer) {
            exact_row(x, dy, i, (j0, j1), c, using_bn, layer, st, cols, rows_out);
            continue;
        }
        let (lm, lv) = (w0 * (st.mu_ln[i] - k), v0 * st.var_ln[i]);
        let (lmv, lvv) = (f64x2_splat(lm), f64x2_splat(lv));
        let (xr, dyr) = (x.add(i * c), dy.add(i * c));
        let (mut gml, mut gvl) = (f64x2_splat(0.0), f64x2_splat(0.0));
        let mut j = j0;
        while j < pairs {
            let bn_mu = ld(bn.mu.add(j * bn.stride));
            let bn_mu = if CENTRED { f64x2_sub(bn_mu, kv) } else { bn_mu };
            let mu = f64x2_add(lmv, f64x2_mul(w1v, bn_mu));
            let var = f64x2_add(lvv, f64x2_mul(v1v, ld(bn.var.add(j * bn.stride))));
            let s = f64x2_div(one, f64x2_sqrt(f64x2_add(var, eps)));
            let xk = if CENTRED { f64x2_sub(ld32(xr.add(j)), kv) } else { ld32(xr.add(j)) };
            let xhat = f64x2_mul(f64x2_sub(xk, mu), s);
            let g = ld32(dyr.add(j));
            let gdx = f64x2_mul(g, xhat);
            st2(dw.add(j), f64x2_add(ld(dw.add(j)), gdx));
            st2(db.add(j), f64x2_add(ld(db.add(j)), g));
            // gm = -s gamma g, gv = -0.5 s^2 gamma g xhat = -0.5 s (s gamma g xhat).
            let sg = f64x2_mul(s, ld32(layer.gamma.as_ptr().add(j)));
            let gm = f64x2_neg(f64x2_mul(sg, g));
            let gv = f64x2_mul(f64x2_mul(neg_half, s), f64x2_mul(sg, gdx));
            st2(gmb.add(j), f64x2_add(ld(gmb.add(j)), gm));
            st2(gvb.add(j), f64x2_add(ld(gvb.add(j)), gv));
            gml = f64x2_add(gml, gm);
            gvl = f64x2_add(gvl, gv);
            j += 2;
        }
        let (mut gml, mut gvl) = (hsum(gml), hsum(gvl));
        if j < j1 {
            let (mu, var) = if using_bn {
                (lm + w1 * (st.mu_bn[j] - k), lv + v1 * st.var_bn[j])
            } else {
                (lm, lv)
            };
            let s = 1.0 / simd::sqrt_f64(var + layer.eps);
            let xhat = ((*xr.add(j) as f64 - k) - mu) * s;
            let (gm, gv) = add_element(j, xhat, s, *dyr.add(j), layer, cols);
            gml += gm;
            gvl += gv;
        }
        *rows_out[0].add(i) = gml;
        *rows_out[1].add(i) = gvl;
    }
}

/// One element's terms of column j (xhat, s, dy): dWeight += dy xhat and dBias += dy into `cols`
/// with gmB, gvB, and gm = -s gamma dy, gv = -0.5 s^2 gamma dy xhat returned for the row's sums.
#[inline(always)]
unsafe fn add_element(
    j: usize,
    xhat: f64,
    s: f64,
    dy: f32,
    layer: &Layer,
    [dw, db, gmb, gvb]: [*mut f64; 4],
) -> (f64, f64) {
    let g = dy as f64;
    let sg = s * layer.gamma[j] as f64;
    *dw.add(j) += g * xhat;
    *db.add(j) += g;
    let (gm, gv) = (-(sg * g), -0.5 * s * (sg * g * xhat));
    *gmb.add(j) += gm;
    *gvb.add(j) += gv;
    (gm, gv)
}

/// (2^32)^2: a row whose mixed mean passes 2^32 of its smallest mixed std (`ExactRows`).
const EXACT_RATIO2: f64 = 18446744073709551616.0;

/// Which rows of a tile take x - mu as the forward takes it, (x - mu) - err about the heavier
/// mean (`oned::normalize_row`'s `CARRY`; `exact_row`), not about the tile's centre: those whose
/// mixed mean passes 2^32 of their smallest mixed std, a std of 0 included, where the mean's
/// rounding (2^-53 of it) reaches the results beyond float32's rounding or is all of x - mu.
/// Under a std of 0 (eps 0) dWeight's terms dy (x - mu) s are infinities by the sign of x - mu
/// alone, which a BN mean weight of 2^-200 beside samples equal to their LN mean of -1e30 sets
/// (dWeight NaN for -Infinity; `tests/std_zero_test.ts`). Rows whose means are not all finite
/// keep the sum, as the forward does. O(columns) per tile, O(1) per row.
struct ExactRows {
    bn_max: f64,
    bn_var_part: f64,
    bn_finite: bool,
}

impl ExactRows {
    fn new(st: &Stats, using_bn: bool, layer: &Layer, j0: usize, j1: usize) -> ExactRows {
        let (mut bn_max, mut bn_var_min, mut bn_finite) = (0.0f64, f64::INFINITY, true);
        if !using_bn {
            return ExactRows { bn_max, bn_var_part: 0.0, bn_finite };
        }
        for j in j0..j1 {
            let m = simd::abs_f64(st.mu_bn[j]);
            bn_finite &= m < f64::INFINITY;
            bn_max = bn_max.max(m);
            bn_var_min = bn_var_min.min(st.var_bn[j]);
        }
        ExactRows { bn_max, bn_var_part: layer.var_mix[1] * bn_var_min, bn_finite }
    }

    fn takes(&self, st: &Stats, i: usize, layer: &Layer) -> bool {
        let ln = simd::abs_f64(st.mu_ln[i]);
        if !(self.bn_finite && ln < f64::INFINITY) {
            return false;
        }
        let mean = self.bn_max.max(ln);
        let var = layer.var_mix[0] * st.var_ln[i] + self.bn_var_part + layer.eps;
        !(mean * mean <= EXACT_RATIO2 * var)
    }
}

/// Row i of `reduce_tile_about` over columns j0..j1 with x - mu as the forward takes it (`ExactRows`),
/// one element at a time (such rows are rare).
#[allow(clippy::too_many_arguments)]
unsafe fn exact_row(
    x: *const f32,
    dy: *const f32,
    i: usize,
    (j0, j1): (usize, usize),
    c: usize,
    using_bn: bool,
    layer: &Layer,
    st: &Stats,
    cols: [*mut f64; 4],
    rows_out: [*mut f64; 2],
) {
    let [w0, w1, _] = layer.mean_mix;
    let [v0, v1, _] = layer.var_mix;
    let (w1, v1) = if using_bn { (w1, v1) } else { (0.0, 0.0) };
    let about_bn = using_bn && w1 > w0;
    let (ln, lv) = (st.mu_ln[i], v0 * st.var_ln[i]);
    let (mut gml, mut gvl) = (0.0, 0.0);
    for j in j0..j1 {
        let (bn_mu, bn_var) = if using_bn { (st.mu_bn[j], st.var_bn[j]) } else { (0.0, 0.0) };
        let (base, rest) =
            if about_bn { (bn_mu, -w0 * (bn_mu - ln)) } else { (ln, w1 * (bn_mu - ln)) };
        let mu = base + rest;
        let err = crate::nd_normalize::two_sum_err(base, rest, mu);
        let s = 1.0 / simd::sqrt_f64(lv + v1 * bn_var + layer.eps);
        let xhat = ((*x.add(i * c + j) as f64 - mu) - err) * s;
        let (gm, gv) = add_element(j, xhat, s, *dy.add(i * c + j), layer, cols);
        gml += gm;
        gvl += gv;
    }
    *rows_out[0].add(i) = gml;
    *rows_out[1].add(i) = gvl;
}

/// The centre k of a tile's xhat = ((x - k) - (w0 (mu_ln - k) + w1 (mu_bn - k))) s: its first
/// row's LN mean where every LN mean of its rows and BN mean of its columns lies within 2^-10 of
/// |k| from it, else 0. On data at an offset over 1024 times their spread, x - w0 mu_ln - w1 mu_bn
/// carries the offset times the rounding of w0 + w1 (not 1 in float64) and of the products, the
/// same for every element of a column: under a mixing settled on BN at 1.6e7, where dWeight, a sum
/// of dy xhat, is ~0 under dy = 1, 1.03x its tolerance (`tests/one_sign_dy_test.ts`; 5.9x before
/// the BN means were merged about a centre too, `oned::centre_parts`). About k, x - k and
/// mu_ln - k are exact (Sterbenz) and the weights' rounding multiplies the spread alone.
fn tile_centre(st: &Stats, using_bn: bool, i0: usize, i1: usize, j0: usize, j1: usize) -> f64 {
    let k = if i1 > i0 { st.mu_ln[i0] } else { 0.0 };
    let reach = simd::abs_f64(k) / 1024.0;
    let near = |v: &f64| simd::abs_f64(*v - k) <= reach;
    let bn_near = !using_bn || st.mu_bn[j0..j1].iter().all(near);
    if k.is_finite() && st.mu_ln[i0..i1].iter().all(near) && bn_near {
        k
    } else {
        0.0
    }
}

/// The rest of the reduction, on one thread after every tile ran: the tiles' partials added up in
/// tile order, then the dots.
///
/// # Safety
/// As `reduce`, after `reduce_tiles` covered every tile.
pub unsafe fn combine(n: usize, c: usize, mode: u32, st: &Stats, work: *mut f64, mut sums: Sums) {
    let using_bn = mode & MODE_USING_BN != 0;
    let g = Tiles::new(n, c);
    let part = work.add(partials_at(n, c)) as *const f64;
    let (gm_ln, gv_ln) = core::slice::from_raw_parts_mut(work, 2 * n).split_at_mut(n);
    if g.by_rows {
        let outs = [&mut *sums.d_weight, &mut *sums.d_bias, &mut *sums.gm_bn, &mut *sums.gv_bn];
        for (k, out) in outs.into_iter().enumerate() {
            for j in 0..c {
                out[j] = *part.add(k * c + j);
            }
            for t in 1..g.count {
                let p = part.add(t * 4 * c + k * c);
                for j in 0..c {
                    out[j] += *p.add(j);
                }
            }
        }
    } else {
        for i in 0..n {
            gm_ln[i] = *part.add(i);
            gv_ln[i] = *part.add(n + i);
        }
        for t in 1..g.count {
            let p = part.add(t * 2 * n);
            for i in 0..n {
                gm_ln[i] += *p.add(i);
                gv_ln[i] += *p.add(n + i);
            }
        }
    }
    // The mean dots about K (`layout::dots_centre`), K sum gm apart.
    let centre = crate::layout::dots_centre(st, mode & crate::layout::MODE_BN_PARTIALS == 0, false);
    let (mut dm, mut dv, mut g_sum) = (0.0, 0.0, 0.0);
    for i in 0..n {
        dm += gm_ln[i] * (st.mu_ln[i] - centre);
        dv += gv_ln[i] * st.var_ln[i];
        g_sum += gm_ln[i];
    }
    *sums.mean_offset = centre * g_sum;
    sums.mean_dots[0] = dm;
    sums.var_dots[0] = dv;
    if using_bn {
        sums.set_bn_dots(1, st.mu_bn, st.var_bn, centre);
    }
}

/// dx call of the backward pass for layout "1d", after `reduce` (and the SyncSN sum; `count` is
/// the global batch size N, the local n otherwise). The per-column BN constants w1 gmB / N and
/// 2 v1 gvB / (N - 1) replace gmB, gvB in the sums (they are not read again); the per-row LN
/// constants are formed per row.
///
/// # Safety
/// `x`, `dy` valid for reading and `dx` for writing n*c floats (`dx` may equal `dy` or `x`, or
/// overlap neither); `layer`, `stats`, `work` as for `reduce`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn dx(
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    n: usize,
    c: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
    work: *mut f64,
    mut sums: Sums,
    count: f64,
) {
    dx_constants(c, mode, layer, &mut sums, count);
    dx_rows(x, dy, dx, 0, n, n, c, mode, layer, &st, work, &sums);
}

/// The first part of `dx`, once per call: the per-column BN constants w1 gmB / N and
/// 2 v1 gvB / (N - 1) in place of gmB, gvB.
///
/// # Safety
/// As `dx`.
pub unsafe fn dx_constants(c: usize, mode: u32, layer: &Layer, sums: &mut Sums, count: f64) {
    let using_bn = mode & MODE_USING_BN != 0;
    let bn_path = using_bn && mode & MODE_TRAINING != 0;
    let [_, w1, _] = layer.mean_mix;
    let [_, v1, _] = layer.var_mix;
    let (w1, v1) = if using_bn { (w1, v1) } else { (0.0, 0.0) };
    // Without the BN path (evaluation: the BN statistics are constants) dx_rows adds no column
    // terms at all: a column sum that is NaN or infinite because one sample is, times 0, would be
    // NaN in every sample's dx.
    if !bn_path {
        return;
    }
    let (col_k, col_b) = (sums.gm_bn.as_mut_ptr(), sums.gv_bn.as_mut_ptr());
    let (kb, bb) = (w1 / count, 2.0 * v1 / (count - 1.0));
    for j in 0..c {
        *col_k.add(j) *= kb;
        *col_b.add(j) *= bb;
    }
}

/// The sweep of `dx` over the `rows` rows row0.. (x, dy, dx: the whole tensor's), after
/// `dx_constants`: every element from its row's and its column's constants alone.
///
/// # Safety
/// As `dx`, with row0 + rows <= n.
#[allow(clippy::too_many_arguments)]
pub unsafe fn dx_rows(
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    row0: usize,
    rows: usize,
    n: usize,
    c: usize,
    mode: u32,
    layer: &Layer,
    st: &Stats,
    work: *mut f64,
    sums: &Sums,
) {
    let using_bn = mode & MODE_USING_BN != 0;
    let bn_path = using_bn && mode & MODE_TRAINING != 0;
    let (gm_ln, gv_ln) = core::slice::from_raw_parts(work, 2 * n).split_at(n);
    let [w0, _, _] = layer.mean_mix;
    let [v0, v1, _] = layer.var_mix;
    let v1 = if using_bn { v1 } else { 0.0 };
    let zeros = [0.0f64; 2];
    let bn = Bn::new(st, using_bn, &zeros);
    let (col_k, col_b) = (&*sums.gm_bn, &*sums.gv_bn);
    let (v1v, eps) = (f64x2_splat(v1), f64x2_splat(layer.eps));
    let (inv_c, two_c1) = (1.0 / c as f64, 2.0 / (c as f64 - 1.0));
    let pairs = c / 2 * 2;
    for i in row0..row0 + rows {
        let lv = v0 * st.var_ln[i];
        let lvv = f64x2_splat(lv);
        let (row_k, row_b, ln_mu) = (w0 * gm_ln[i] * inv_c, v0 * gv_ln[i] * two_c1, st.mu_ln[i]);
        let (rkv, rbv, lmu) = (f64x2_splat(row_k), f64x2_splat(row_b), f64x2_splat(ln_mu));
        let (xr, dyr, dxr) = (x.add(i * c), dy.add(i * c), dx.add(i * c));
        let mut j = 0;
        while j < pairs {
            let var = f64x2_add(lvv, f64x2_mul(v1v, ld(bn.var.add(j * bn.stride))));
            let s = f64x2_sqrt(f64x2_add(var, eps));
            let xv = ld32(xr.add(j));
            let a = f64x2_div(ld32(layer.gamma.as_ptr().add(j)), s);
            let mut v = f64x2_add(f64x2_mul(ld32(dyr.add(j)), a), rkv);
            v = f64x2_add(v, f64x2_mul(f64x2_sub(xv, lmu), rbv));
            if bn_path {
                let bm = ld(bn.mu.add(j));
                v = f64x2_add(v, ld(col_k.as_ptr().add(j)));
                v = f64x2_add(v, f64x2_mul(f64x2_sub(xv, bm), ld(col_b.as_ptr().add(j))));
            }
            v128_store64_lane::<0>(f32x4_demote_f64x2_zero(v), dxr.add(j) as *mut u64);
            j += 2;
        }
        if j < c {
            let var = if using_bn { lv + v1 * st.var_bn[j] } else { lv };
            let xv = *xr.add(j) as f64;
            let a = layer.gamma[j] as f64 / simd::sqrt_f64(var + layer.eps);
            let mut v = *dyr.add(j) as f64 * a + row_k + (xv - ln_mu) * row_b;
            if bn_path {
                v += col_k[j] + (xv - st.mu_bn[j]) * col_b[j];
            }
            *dxr.add(j) = v as f32;
        }
    }
}
