//! dWeight where its rows' terms cancel, taken again in f64 for those channels.
//!
//! dWeight[c] = sum over the channel's rows of s sum_i dy (x - mu). Under a mixing settled on BN
//! and a dy of one sign (y.sum(): dy = 1) each row's term is ~s M (mu_in - mu_bn), and the terms
//! cancel over the channel to ~0 (exactly 0 in exact arithmetic); under a mixing settled on IN
//! each row's term cancels by itself likewise. Every error of the means and of the row sums is
//! then what is left, and dy of one sign adds them up: the statistics pass's f32 chunk sums leave
//! an IN mean ~1e-9 of the row's std off, the reduce sweep's f32 sum dy (x - hi) a few 1e-10 of
//! its terms, and dWeight came out at [64, 8, 64, 64] on standard-normal data 3.5x its tolerance,
//! for a Sparse SN layer fixed on BN over ReLU data at [32, 64, 56, 56] 22x, ~2^-25 of the size
//! of its terms (tests/one_sign_dy_test.ts).
//!
//! A mean's error enters a row's term as s (sum dy) times it, and is of the size of the mixed
//! std, 1 / s: so the channel's dBias, sum dy over its rows, is the size of those errors' terms
//! where dy's sum has a sign (under a dy of mean 0, dy's terms cancel in dBias as the means'
//! errors do in dWeight). A channel whose dWeight lies below 2^-10 of its |dBias| (`CANCELLED`;
//! the f32 sums' error measured up to ~2^-25 of |dBias|, on ReLU data: a margin of 4 for 2^-14
//! of dWeight; at 2^-16, an even mix of IN and BN over ReLU data left dWeight ~2^-15.6 of |dBias|
//! and 3.7x its tolerance, attack helper-68) has its rows summed again here in f64 about their
//! IN means: sum dy, sum dy (x - mu_in) and sum (x - mu_in), whose last gives each row's IN mean
//! correction. The mixed mean of such a row takes the corrections of its IN mean, of its sample's
//! LN mean and, in training, of its channel's BN mean (means of the corrections of the taken rows,
//! the others' counted as 0: a channel not taken moves an LN mean by nothing, and is not
//! sensitive to it), so that means the reference has equal stay equal (C = 1: LN is IN; N = 1: BN
//! is IN). Its rows' gm and gv, its dWeight, dBias and BN sums, then every sample's LN sums, the
//! logit gradients' dot products and the sum of |gm| + |gv| are formed again. The dot products
//! keep the forward's means (the logit gradients are differences of them, which the means'
//! float32 rounding meets within their tolerance), as y and dx do.
//!
//! Ordinary data have no such channel: under a dy of mean 0 a channel's dWeight and dBias are sums
//! of like size (~sqrt(N M) times the terms'), and dWeight falls below 2^-10 of dBias in ~6e-4 of
//! the channels (none of the benchmark's), which pay an f64 sweep of their rows. Their cost is a
//! test per channel; a call where every channel cancels (dy = 1 under a mixing settled on BN) pays
//! one f64 sweep of x and dy, its backward 1.5x to 1.7x as long. A dy whose sum has no sign over
//! the channel although each row's has (dy of sign alternating by sample under IN's mixing, dBias
//! ~0) leaves dBias no measure of the errors: there the rows' terms cancel each by itself, and
//! the combine sums per channel the |sum dy| of the rows whose term lies below 1 / `ROW_CANCELLED`
//! of it (`nd_grad::ROW_CANCELLED`), which a channel's dWeight is compared with as with |dBias|
//! (3.6x and 12.4x its tolerance on standard-normal and ReLU data at [64, 8, 64, 64] before; the
//! sum over every row's |sum dy| caught them too, but also fired on a tenth of the benchmark's
//! channels, whose sinusoids make dWeight small beside it by their structure: +20% on the
//! backward; the rows' own test takes one channel of 256 there, at [32, 256, 14, 14], and costs
//! the backward ~1% at [64, 512, 7, 7], a compare and an add per row). Under SyncSN the test takes the replica's own sums
//! (they are added across replicas after this call) and a BN mean the mean of the replica's rows'
//! corrections (the global one is their mean over the replicas, the same where every replica's
//! rows weigh alike, as under dy of one sign): a channel whose dWeight cancels only across
//! replicas (BN's mixing under dy = 1, where each replica's rows differ from the global BN mean)
//! is not taken, a known exception; IN's mixing is (attack helper-68: 18x before). Not in calls
//! with wide rows (their own paths), nor where dWeight or dBias is not finite (`cancelled`:
//! finite, they are sums of finite f32 row sums, so x and dy are finite in the channel's rows).

use crate::layout::{
    bn_pair, dots_centre, Layer, Stats, Sums, MODE_BN_PARTIALS, MODE_TRAINING, MODE_USING_BN,
};
use crate::nd_grad::{ld32, Work};
use crate::simd;
use core::arch::wasm32::*;

/// A channel's dWeight below 1 / CANCELLED of the size of its terms is taken again.
const CANCELLED: f64 = (1u32 << 10) as f64;

/// Whether dWeight `d` is below 1 / `CANCELLED` of |dBias| `t`, both finite.
#[inline(always)]
fn cancelled(d: f64, t: f64) -> bool {
    d.is_finite() && t.is_finite() && simd::abs_f64(d) * CANCELLED <= simd::abs_f64(t) && t != 0.0
}

/// (sum dy, sum dy (x - about), sum (x - centre)) of one row in f64: x - centre and x - about
/// rounded once to f64, every product exact. Four sets of f64x2 sums (8 floats a step), so that
/// the adds do not wait on each other.
///
/// # Safety
/// `x`, `dy` valid for reading m floats.
unsafe fn row_sums_f64(
    x: *const f32,
    dy: *const f32,
    m: usize,
    centre: f64,
    about: f64,
) -> (f64, f64, f64) {
    let z = f64x2_splat(0.0);
    let (c, a) = (f64x2_splat(centre), f64x2_splat(about));
    let (mut g, mut p, mut d) = ([z; 4], [z; 4], [z; 4]);
    let mut i = 0;
    while i + 8 <= m {
        for k in 0..4 {
            let (dv, xv) = (ld32(dy.add(i + 2 * k)), ld32(x.add(i + 2 * k)));
            let e = f64x2_sub(xv, c);
            g[k] = f64x2_add(g[k], dv);
            p[k] = f64x2_add(p[k], f64x2_mul(dv, f64x2_sub(xv, a)));
            d[k] = f64x2_add(d[k], e);
        }
        i += 8;
    }
    let h = |v: [v128; 4]| {
        let v = f64x2_add(f64x2_add(v[0], v[1]), f64x2_add(v[2], v[3]));
        f64x2_extract_lane::<0>(v) + f64x2_extract_lane::<1>(v)
    };
    let (mut g, mut p, mut d) = (h(g), h(p), h(d));
    while i < m {
        let (dv, xv) = (*dy.add(i) as f64, *x.add(i) as f64);
        g += dv;
        p += dv * (xv - about);
        d += xv - centre;
        i += 1;
    }
    (g, p, d)
}

/// The centre of a taken row's sum dy (x - c) (`refine_cancelled`): its IN mean, or its mixed
/// mean where that lies beyond `FAR_ABOUT` stds of it. About an IN mean far from mu (an
/// evaluation on a running_mean of 0 of weight ~1 beside a row's IN mean of -1.2e28, of weight
/// 0, over a std of 1e5) the sum is ~1e28 sum dy, whose f64 rounding, cancelled against
/// (mu - mu_in) sum dy, is the result: dgamma 0 for -4.4e-25 (dy 4.4e-20 times x - mu of -0.98;
/// tests/near_unit_data_test.ts).
#[inline(always)]
fn sums_about(mu_in: f64, mu: f64, s: f64) -> f64 {
    if simd::abs_f64(mu - mu_in) * s > FAR_ABOUT {
        mu
    } else {
        mu_in
    }
}

/// Stds between a row's IN mean and its mixed mean beyond which `sums_about` takes the latter.
const FAR_ABOUT: f64 = (1u32 << 20) as f64;

/// A taken row whose shift from its sums' centre to mu', ((mu' - about) + err) sum dy, exceeds
/// its result p by more than this is summed again about mu' (the shift's f64 rounding is then
/// beyond 2^-33 of p). About the IN mean, the shift cancels where dy is large only where x
/// equals mu': an evaluation on a `running_mean` of 0 over a row of 0 but one x of 5.3e19 (IN
/// mean 1.06e16) with dy ~1e-20 at some of its zeros had p = 2.9e-24 beside a shift of 2e-4,
/// and took p 2.7e-20 (its sample's LN variance gradient 9400x, dx of its sample's other rows
/// 1e4x, `var_weight`'s gradient 2700x; partial_zero_sweep seed 644,
/// `tests/partial_zero_rows_test.ts`).
const LOST: f64 = (1u32 << 20) as f64;

/// After `nd_grad::combine`: every channel whose dWeight cancels (`cancelled`) taken again as
/// the module says. Between the passes the taken rows' pairs hold their f64 (sum dy, sum dy (x -
/// mu_in)), `Work::aux` their IN mean corrections (free until the dx call), and the work area's
/// room at `layout::refine_at` the LN mean corrections and a flag per channel.
///
/// # Safety
/// As `nd_grad::reduce`, after it (or after the threads' sweeps and `nd_grad::combine`).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub unsafe fn refine_cancelled(
    x: *const f32,
    dy: *const f32,
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    st: &Stats,
    work: *mut f64,
    sums: &mut Sums,
) {
    if st.wide[0] != 0.0 {
        return;
    }
    let room = work.add(crate::layout::refine_at(n, c));
    let taken = core::slice::from_raw_parts_mut(room.add(n), c);
    // `taken` holds, from the combine, the sum of |sum dy| over the channel's rows that cancel by
    // themselves (`nd_grad::ROW_CANCELLED`).
    for (j, t) in taken.iter_mut().enumerate() {
        let (d, b) = (sums.d_weight[j], sums.d_bias[j]);
        let rows_cancel = b.is_finite() && cancelled(d, *t);
        *t = if cancelled(d, b) || rows_cancel { 1.0 } else { 0.0 };
    }
    if taken.iter().all(|&t| t == 0.0) {
        return;
    }
    let w = Work::split(work, n, c);
    let pairs = w.pairs.as_mut_ptr();
    let ln_shift = core::slice::from_raw_parts_mut(room, n);
    // The taken channels' rows in f64 about their IN means, in memory order, into their pairs;
    // the LN mean corrections, the taken rows' IN corrections over C. (A finite dWeight and dBias
    // are sums of finite f32 row sums, so x and dy are finite there, and so are these sums.)
    for i in 0..n {
        let mut ln = 0.0;
        for j in (0..c).filter(|&j| taken[j] != 0.0) {
            let r = i * c + j;
            let about = sums_about(st.mu_in[r], st.mu[r], w.inv_std[r]);
            let (g, p, d) = row_sums_f64(x.add(r * m), dy.add(r * m), m, st.mu_in[r], about);
            *pairs.add(r) = f64x2(g, p);
            w.aux[r] = d / m as f64;
            ln += w.aux[r];
        }
        ln_shift[i] = ln / c as f64;
    }
    let batch_bn = mode & MODE_USING_BN != 0 && mode & MODE_TRAINING != 0;
    let [w_in, w_ln, w_bn] = layer.mean_mix;
    for j in (0..c).filter(|&j| taken[j] != 0.0) {
        let bn_shift =
            if batch_bn { (0..n).map(|i| w.aux[i * c + j]).sum::<f64>() / n as f64 } else { 0.0 };
        let gamma = layer.gamma[j] as f64;
        let (mut dw, mut db, mut gmb, mut gvb) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..n {
            let r = i * c + j;
            let pair = *pairs.add(r);
            let (g, p_about) = (f64x2_extract_lane::<0>(pair), f64x2_extract_lane::<1>(pair));
            // p = sum dy (x - mu') about the mixed mean of the corrected means, mu' = mu + err
            // (`Stats::err`) + the corrections' mix.
            let corr = w_in * w.aux[r] + w_ln * ln_shift[i] + w_bn * bn_shift;
            let mu = st.mu[r] + corr;
            let about = sums_about(st.mu_in[r], st.mu[r], w.inv_std[r]);
            let shift = ((mu - about) + st.err[r]) * g;
            let mut p = p_about - shift;
            // The shift cancelled: p's f64 rounding, 2^-53 of |shift|, may pass p itself (dy
            // large where x equals mu and small elsewhere), so the row is summed again about
            // mu' directly, as the reference sums it (`LOST`).
            if simd::abs_f64(shift) > LOST * simd::abs_f64(p) {
                let (xr, dyr) = (x.add(r * m), dy.add(r * m));
                p = crate::wide::grad_sums_f64_about(xr, dyr, m, (st.mu[r], st.err[r] + corr));
            }
            let s = w.inv_std[r];
            let sg = s * gamma;
            let (gm, gv) = (-(sg * g), -0.5 * (s * s) * (sg * p));
            *pairs.add(r) = f64x2(gm, gv);
            dw += s * p;
            db += g;
            gmb += gm;
            gvb += gv;
        }
        sums.d_weight[j] = dw;
        sums.d_bias[j] = db;
        sums.gm_bn[j] = gmb;
        sums.gv_bn[j] = gvb;
    }
    // The sums over every row again, each in one order (samples, then channels), so that sums
    // of equal terms stay equal (C = 1: the IN and LN dot products).
    let (mut dm_in, mut dv_in, mut dm_ln, mut dv_ln, mut g_abs) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut gm_sq, mut gv_sq, mut g_sum) = (0.0, 0.0, 0.0);
    // About the combine's centre (`dots_centre`).
    let centre =
        dots_centre(st, mode & MODE_BN_PARTIALS == 0, bn_pair(layer, mode & MODE_USING_BN != 0));
    for i in 0..n {
        let (mut gml, mut gvl) = (0.0, 0.0);
        for j in 0..c {
            let r = i * c + j;
            let pair = *pairs.add(r);
            let (gm, gv) = (f64x2_extract_lane::<0>(pair), f64x2_extract_lane::<1>(pair));
            gml += gm;
            gvl += gv;
            dm_in += gm * (st.mu_in[r] - centre);
            dv_in += gv * st.var_in[r];
            g_abs += simd::abs_f64(gm) + simd::abs_f64(gv);
            gm_sq += gm * gm;
            gv_sq += gv * gv;
        }
        w.gm_ln[i] = gml;
        w.gv_ln[i] = gvl;
        dm_ln += gml * (st.mu_ln[i] - centre);
        dv_ln += gvl * st.var_ln[i];
        g_sum += gml;
    }
    *sums.mean_offset = centre * g_sum;
    *w.g_abs = g_abs;
    w.g_sq[0] = gm_sq;
    w.g_sq[1] = gv_sq;
    sums.mean_dots[0] = dm_in;
    sums.mean_dots[1] = dm_ln;
    sums.var_dots[0] = dv_in;
    sums.var_dots[1] = dv_ln;
    if mode & MODE_USING_BN != 0 {
        sums.set_bn_dots(2, st.mu_bn, st.var_bn, centre);
    }
}
