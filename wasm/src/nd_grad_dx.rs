//! SwitchNorm2d/3d backward, its second call: after `nd_grad::reduce` (and SyncSN's sum of the
//! gradient sums across replicas), each row's dx map from the sums, then one sweep over (x, dy)
//! writing dx. The work area, loads and shifts it shares with the reduction are in `nd_grad`.

use crate::layout::{Layer, Stats, Sums, MODE_TRAINING, MODE_USING_BN};
use crate::nd_grad::{ld, ld32, Work};
use crate::simd_grad;
use crate::wide;
use core::arch::wasm32::*;

/// dx call of the backward pass for layout "nd", after `nd_grad::reduce` (and, under SyncSN, after
/// the caller replaced the sums by their totals over replicas; `count` is the global batch size N,
/// the local n otherwise). Per row, in f64, two rows per f64x2:
///   Gvar_in = v0 gv + v1 gvL / C + v2 gvB / N
///   Gmu_in  = w0 gm + w1 gmL / C + v1 (2/C) (mu_in - mu_ln) gvL + w2 gmB / N
///             + v2 (2/N) (mu_in - mu_bn) gvB
/// (the BN terms only in training with usingBN: otherwise the BN statistics are constants), kept
/// as f32 [hi, a, b, k] in place of (gm, gv) with a = gamma s, b = 2 Gvar_in / (M - 1),
/// k = Gmu_in / M - lo b (mu_in = hi + lo, hi = f32(mu_in)); then one sweep per row
/// dx = dy a + (x - hi) b + k. A wide row (`wide`) keeps f64 constants instead and is swept in
/// f64.
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
    let mu_in = st.mu_in.as_ptr();
    if dx_constants(n, c, m, mode, layer, st, work, sums, count) {
        let w = Work::split(work, n, c);
        let wide = WideRows { mu_in, inv_std: w.inv_std.as_ptr(), k: w.aux.as_ptr() };
        sweep_checked(x, dy, dx, n * c, m, work as *const v128, wide);
    } else {
        sweep(x, dy, dx, n * c, m, work as *const v128);
    }
}

/// Where the dx sweep of a call with wide rows finds, from the range's first row on, each row's
/// IN mean, its mark (`inv_std` < 0: a wide row, whose pair holds f64 (a, b)) and a wide row's k.
pub struct WideRows {
    pub mu_in: *const f64,
    pub inv_std: *const f64,
    pub k: *const f64,
}

impl WideRows {
    /// The same for the rows from `row0` on.
    pub unsafe fn from(&self, row0: usize) -> WideRows {
        WideRows {
            mu_in: self.mu_in.add(row0),
            inv_std: self.inv_std.add(row0),
            k: self.k.add(row0),
        }
    }
}

/// The per-row constants of `dx` (into the work area, in place of (gm, gv)), before its sweep;
/// returns whether some row is wide (then the sweep must be `sweep_checked`). A row is wide by the
/// dx bound of `wide`; a wide row's pair gets f64 (a, b), its aux value k = Gmu_in / M and its s
/// -1 (the mark).
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
    let (var_in, var, aux) = (st.var_in.as_ptr(), st.var.as_ptr(), w.aux.as_mut_ptr());
    let inv_std_mut = w.inv_std.as_mut_ptr();
    let (eps, m1) = (f64x2_splat(layer.eps), f64x2_splat(m as f64 - 1.0));
    // Whether var + eps of some row is out of range: only if the forward found a wide row.
    let any_out_of_range = st.wide[0] != 0.0;
    // Per call first (O(N + C)): if no row can be wide, the rows skip their bound tests.
    let ordinary = !any_out_of_range && {
        let using_bn = mode & MODE_USING_BN != 0;
        let (mut fw, mut fv) = (layer.mean_mix, layer.var_mix);
        if !using_bn {
            fw[2] = 0.0;
            fv[2] = 0.0;
        }
        let bn_stats = if using_bn { Some((&st.mu_bn[..], &st.var_bn[..])) } else { None };
        let ln = (&st.mu_ln[..], &st.var_ln[..]);
        let call = wide::CallBounds::new(c, m, layer.eps, fw, fv, ln, bn_stats, layer.gamma, &[]);
        let max_abs = |v: &[f64]| {
            v.iter().fold(0.0f64, |acc, &x| {
                let a = if x < 0.0 { -x } else { x };
                if a > acc || a != a {
                    a
                } else {
                    acc
                }
            })
        };
        let (gmb_max, gvb_max) =
            if bn { (max_abs(sums.gm_bn), max_abs(sums.gv_bn)) } else { (0.0, 0.0) };
        call.dx_ordinary(
            *w.g_abs,
            gmb_max,
            gvb_max,
            [w0, w1, w2],
            [v0, v1, v2],
            c as f64,
            m as f64,
            count,
        )
    };
    let cx = RowConstants {
        n,
        c,
        gm_ln: w.gm_ln.as_ptr(),
        gv_ln: w.gv_ln.as_ptr(),
        mu_ln: st.mu_ln.as_ptr(),
        w1,
        v1,
        inv_c,
        w0v,
        v0v,
        kb_mu,
        kb_var,
        kb_spread,
        inv_m,
        two_m1,
        mu_in,
        inv_std,
        gamma,
        gmb: bn_at(gmb, 0),
        gvb: bn_at(gvb, 0),
        mu_bn: bn_at(mu_bn, 0),
        bn_step: if bn { 1 } else { 0 },
        pairs,
        var_in,
        var,
        aux,
        inv_std_mut,
        eps,
        m1,
    };
    // One loop per kind of call, each with its tests folded in (`all_rows`'s const parameters).
    if ordinary {
        cx.all_rows::<false, false>()
    } else if any_out_of_range {
        cx.all_rows::<true, true>()
    } else {
        cx.all_rows::<true, false>()
    }
}

/// What `dx_constants` needs per row: the call's mixing terms and the arrays it reads and writes.
/// Its loops are `#[inline(always)]` functions with const parameters (not closures called from
/// several loops, which the compiler left as calls: the constants were ~20% slower at M = 49).
struct RowConstants {
    n: usize,
    c: usize,
    gm_ln: *const f64,
    gv_ln: *const f64,
    mu_ln: *const f64,
    w1: f64,
    v1: f64,
    /// 1 / C.
    inv_c: f64,
    w0v: v128,
    v0v: v128,
    kb_mu: v128,
    kb_var: v128,
    kb_spread: v128,
    inv_m: v128,
    two_m1: v128,
    mu_in: *const f64,
    inv_std: *const f64,
    gamma: *const f32,
    /// The BN sums and means, channel j at j * bn_step (without the BN path: a zero pair, step 0).
    gmb: *const f64,
    gvb: *const f64,
    mu_bn: *const f64,
    bn_step: usize,
    pairs: *mut v128,
    var_in: *const f64,
    var: *const f64,
    aux: *mut f64,
    inv_std_mut: *mut f64,
    eps: v128,
    m1: v128,
}

impl RowConstants {
    /// Every row's constants; returns whether some row is wide. CHECK: whether rows test the
    /// bound of `wide` at all (else only a tiny b); RANGE: whether also var + eps.
    #[inline(always)]
    unsafe fn all_rows<const CHECK: bool, const RANGE: bool>(&self) -> bool {
        let (n, c) = (self.n, self.c);
        let even = c / 2 * 2;
        let mut any_wide = false;
        for i in 0..n {
            let mut j = 0;
            while j < even {
                any_wide |= self.pair::<CHECK, RANGE>(i, i * c + j, j, false);
                j += 2;
            }
            if j < c {
                any_wide |= self.pair::<CHECK, RANGE>(i, i * c + j, j, true);
            }
        }
        any_wide
    }

    /// Constants of two rows r, r + 1 of sample i (channels j, j + 1; with `one`, the odd tail:
    /// a duplicate of its channel, one row stored). Returns whether one of them is wide.
    #[inline(always)]
    unsafe fn pair<const CHECK: bool, const RANGE: bool>(
        &self,
        i: usize,
        r: usize,
        j: usize,
        one: bool,
    ) -> bool {
        let zero = f64x2_splat(0.0);
        let (gml, gvl, mu_ln) = (*self.gm_ln.add(i), *self.gv_ln.add(i), *self.mu_ln.add(i));
        let (v1, inv_c) = (self.v1, self.inv_c);
        let g_var_ln = f64x2_splat(v1 * gvl * inv_c);
        let g_mu_ln = f64x2_splat(self.w1 * gml * inv_c);
        let ln_spread = f64x2_splat(v1 * 2.0 * inv_c * gvl);
        let lnv = f64x2_splat(mu_ln);
        let ld_or = |p: *const f64| if one { f64x2_splat(*p) } else { ld(p) };
        let ld32_or = |p: *const f32| if one { f64x2_splat(*p as f64) } else { ld32(p) };
        let pairs = self.pairs;
        let (a0, a1) = (*pairs.add(r), if one { *pairs.add(r) } else { *pairs.add(r + 1) });
        let gm = i64x2_shuffle::<0, 2>(a0, a1);
        let gv = i64x2_shuffle::<1, 3>(a0, a1);
        let mean = ld_or(self.mu_in.add(r));
        let mut g_var = f64x2_add(f64x2_mul(self.v0v, gv), g_var_ln);
        let mut g_mu = f64x2_add(
            f64x2_add(f64x2_mul(self.w0v, gm), g_mu_ln),
            f64x2_mul(ln_spread, f64x2_sub(mean, lnv)),
        );
        let jb = j * self.bn_step;
        let (gmbv, gvbv) = (ld_or(self.gmb.add(jb)), ld_or(self.gvb.add(jb)));
        let spread =
            f64x2_mul(f64x2_mul(self.kb_spread, f64x2_sub(mean, ld_or(self.mu_bn.add(jb)))), gvbv);
        g_var = f64x2_add(g_var, f64x2_mul(self.kb_var, gvbv));
        g_mu = f64x2_add(g_mu, f64x2_add(f64x2_mul(self.kb_mu, gmbv), spread));
        let a = f64x2_mul(ld32_or(self.gamma.add(j)), ld_or(self.inv_std.add(r)));
        let b = f64x2_mul(g_var, self.two_m1);
        let k_mu = f64x2_mul(g_mu, self.inv_m);
        let hi = f32x4_demote_f64x2_zero(mean);
        let lo = f64x2_sub(mean, f64x2_promote_low_f32x4(hi));
        // lo = 0 skips lo * b, which is NaN when b is infinite (M = 1).
        let lo_b = v128_and(f64x2_mul(lo, b), f64x2_ne(lo, zero));
        let k = f64x2_sub(k_mu, lo_b);
        let (af, bf, kf) =
            (f32x4_demote_f64x2_zero(a), f32x4_demote_f64x2_zero(b), f32x4_demote_f64x2_zero(k));
        // [hi0, a0, hi1, a1] and [b0, k0, b1, k1], then [hi, a, b, k] per row.
        let t = i32x4_shuffle::<0, 4, 1, 5>(hi, af);
        let u = i32x4_shuffle::<0, 4, 1, 5>(bf, kf);
        *pairs.add(r) = i64x2_shuffle::<0, 2>(t, u);
        if !one {
            *pairs.add(r + 1) = i64x2_shuffle::<1, 3>(t, u);
        }
        // A nonzero |a| or |b| below `wide::TINY` would be a float32 subnormal (or 0) although
        // the terms dy a and (x - hi) b fit float32 (a std of 1e15 with dy 1e-20 makes b ~1e-50
        // and (x - hi) b ~1e-35): such a row is wide, whatever the call's bounds. Only b needs the
        // test in an ordinary call (`dx_ordinary` bounds |a| from below); it costs a few lane
        // operations per two rows.
        let tiny = f64x2_splat(wide::TINY);
        let tiny_b = v128_and(f64x2_lt(f64x2_abs(b), tiny), f64x2_ne(b, zero));
        let wide = if !CHECK {
            tiny_b
        } else {
            // The bound of `wide` for dx, two rows at a time: |a| <= LIMIT, and
            // (D^2 / 2) b^2 + k^2 <= REST^2 / 2 with D^2 / 2 = (M - 1) var_in + lo^2 + 1/2
            // (see `wide`), so that D |b| and |k| are at most REST. NaN fails it.
            let half_spread2 = f64x2_add(
                f64x2_add(f64x2_mul(self.m1, ld_or(self.var_in.add(r))), f64x2_mul(lo, lo)),
                f64x2_splat(0.5),
            );
            let terms = f64x2_add(f64x2_mul(half_spread2, f64x2_mul(b, b)), f64x2_mul(k, k));
            let tiny_a = v128_and(f64x2_lt(f64x2_abs(a), tiny), f64x2_ne(a, zero));
            let limit = f64x2_splat(wide::LIMIT);
            let half_rest2 = f64x2_splat(wide::REST * wide::REST / 2.0);
            // D itself at most LIMIT too: x - hi is a float32 term whatever b is (a row of
            // -3.4e38 and 3.4e38 makes it overflow, and a small b times Inf is not dx).
            let half_limit2 = f64x2_splat(wide::LIMIT * wide::LIMIT / 2.0);
            let mut bounded = v128_andnot(
                v128_and(
                    v128_and(f64x2_le(f64x2_abs(a), limit), f64x2_le(terms, half_rest2)),
                    f64x2_le(half_spread2, half_limit2),
                ),
                v128_or(tiny_a, tiny_b),
            );
            if RANGE {
                // var + eps out of [LOW, HIGH] (`wide::out_of_range`), known to occur only when
                // the forward found a wide row.
                let ve = f64x2_add(ld_or(self.var.add(r)), self.eps);
                let (low, high) = (f64x2_splat(wide::LOW), f64x2_splat(wide::HIGH));
                let out_of_range = v128_or(
                    v128_and(f64x2_gt(ve, zero), f64x2_lt(ve, low)),
                    v128_and(f64x2_gt(ve, high), f64x2_lt(ve, f64x2_splat(f64::INFINITY))),
                );
                bounded = v128_andnot(bounded, out_of_range);
            }
            v128_not(bounded)
        };
        let wide = if one { i64x2_shuffle::<0, 2>(wide, zero) } else { wide };
        if v128_any_true(wide) {
            mark_wide(wide, [a, b, k_mu], pairs.add(r), self.aux.add(r), self.inv_std_mut.add(r));
            return true;
        }
        false
    }
}

/// Gives the wide lanes of `wide` (rows r, r + 1 at `pairs`, `aux`, `inv_std`) their f64
/// constants `abk` = [a, b, k] (f64x2 each) and their mark (see `dx_constants`).
///
/// # Safety
/// The pointers valid for the lanes set in `wide`.
#[inline(never)]
#[cold]
unsafe fn mark_wide(
    wide: v128,
    abk: [v128; 3],
    pairs: *mut v128,
    aux: *mut f64,
    inv_std: *mut f64,
) {
    let [a, b, k] = abk;
    if i64x2_extract_lane::<0>(wide) != 0 {
        *pairs = i64x2_shuffle::<0, 2>(a, b);
        *aux = f64x2_extract_lane::<0>(k);
        *inv_std = -1.0;
    }
    if i64x2_extract_lane::<1>(wide) != 0 {
        *pairs.add(1) = i64x2_shuffle::<1, 3>(a, b);
        *aux.add(1) = f64x2_extract_lane::<1>(k);
        *inv_std.add(1) = -1.0;
    }
}

/// The dx sweep over `rows` rows of m floats with the constants `abk` per row, one row or four
/// at a time as `nd_normalize::for_rows` decides (the results are the same either way). No row is
/// wide.
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
    crate::nd_normalize::for_rows(
        x,
        rows,
        m,
        |r| {
            let at = r * m;
            simd_grad::grad_dx(x.add(at), dy.add(at), dx.add(at), m, *abk.add(r));
        },
        |r, g| {
            let at = r * m;
            simd_grad::grad_dx_x4(x.add(at), dy.add(at), dx.add(at), g, abk.add(r));
        },
    );
}

/// `sweep` for a call with wide rows (`wide`): each row checks its mark and a wide one is swept
/// in f64; the other rows give the same results as in `sweep`.
///
/// # Safety
/// As `sweep`, with `wide` valid for `rows` rows.
#[inline(never)]
pub unsafe fn sweep_checked(
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    rows: usize,
    m: usize,
    abk: *const v128,
    wide: WideRows,
) {
    let is_wide = |r: usize| *wide.inv_std.add(r) < 0.0;
    let one = |r: usize| {
        let at = r * m;
        let k = *abk.add(r);
        if !is_wide(r) {
            simd_grad::grad_dx(x.add(at), dy.add(at), dx.add(at), m, k);
        } else {
            let abk = [f64x2_extract_lane::<0>(k), f64x2_extract_lane::<1>(k), *wide.k.add(r)];
            wide::grad_dx(x.add(at), dy.add(at), dx.add(at), m, *wide.mu_in.add(r), abk);
        }
    };
    crate::nd_normalize::for_rows(x, rows, m, &one, |r, g| {
        if (0..4).any(|k| is_wide(r + k)) {
            for k in 0..4 {
                one(r + k);
            }
        } else {
            let at = r * m;
            simd_grad::grad_dx_x4(x.add(at), dy.add(at), dx.add(at), g, abk.add(r));
        }
    });
}
