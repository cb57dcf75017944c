//! The backward's mean and variance dot products, taken again from IN statistics summed in f64
//! where the statistics pass's are not accurate enough for them.
//!
//! The gradient of mean_weight is w_k sum_r gm_r (mu_k - mu_r), a sum of differences of the IN,
//! LN and BN means (`_params.ts` forms it from the dots a_k = sum gm mu_k). The statistics pass
//! sums a row's deviations in float32 (`nd::row_moments`), so mu_in carries a few float32
//! roundings of the row's std. In evaluation the BN mean is the running mean, a constant that can
//! lie arbitrarily close to a row's mean: an IN mean within 1e-18 of a running_mean of 1.5e-14,
//! over a std of 6e-14, had mu_in - running_mean 3e-4 relative off, and mean_weight's gradient 3x
//! its tolerance (float32 rounding of the size of its terms, tests/_term_scales.ts). In training
//! the LN and BN means are averages of the same IN means, ~std / sqrt(M) apart for data of any
//! randomness, but rows alike (shuffles of one row: the reference's gradients are ~0) leave them
//! a float32 rounding apart, and under dy ~1e3 mean_weight's gradient was 4.8e-4 where it is 0
//! (tests/close_stats_training_test.ts). Rows whose means lie near 0 beside their std are summed
//! again by the statistics pass already (`nd::row_moments`). dx's LN and BN variance paths,
//! (mu_in - mu_ln) gvL and (mu_in - mu_bn) gvB, keep the forward's statistics (README, Numerics:
//! a known exception).
//!
//! So after the combine one pass over the per-row statistics sums |gm| times each pair's
//! |mu_k - mu_j| (a lower bound of each gradient's tolerance scale, with the gradient itself) and
//! the error sizes below, and finds the largest IN variance (a pass of its own, ~4% of an
//! evaluation backward at [64, 512, 7, 7]; the same sums inside the combine's loop cost the
//! training backward ~5% there, although compiled out of its loop). One test then bounds the
//! dots' error from the IN means' (`MEAN_ERR` of the largest IN std per row, summed, in
//! evaluation with BN; in training and in evaluations without BN, where every statistic mixed is
//! the batch's and every backward would pay the pass, `MEAN_TYP` per row added as a random walk
//! adds, the root of the sum of squares (rows whose errors line up with gm's sign, two kinds of
//! shuffled rows in a checkerboard, pass it: README, Numerics), and a first test from sums the
//! combine keeps,
//! sum gm^2, sum gv^2 and the largest IN variance, skips the pass where even that estimate lies
//! within `SHARE` of the plain tolerance, 1e-4: the benchmark's data, rows of one sinusoid, pass
//! there; a training gate on the term-scaled bound alone, |gm| and |gv| standing for the tests'
//! per-row sum |dy| terms, which the row sums do not keep, took rows already standardized right,
//! 30 of 30 training calls of [2, 1, 5, 10] to [32, 3, 28, 28] that fail the tests' term-scaled
//! bound here, but sent the benchmark's rows, alike row to row, through the f64 sweep too: the
//! backward 1.3x to 1.44x at [8, 64, 56, 56] and [2, 32, 128, 128], where the plain gate's
//! results pass that bound at 1e-4 of it), and only where it passes `SHARE` of that scale are
//! the IN means summed again in f64
//! about themselves and the IN and LN dots formed from them (the BN dot holds running means,
//! exact; a batch's BN dot is formed from the f64 IN statistics too). The bound is loose (|gm| is
//! |s gamma sum dy|, the scale's own terms use sum |dy|), so evaluations whose rows' means lie
//! within ~2^-8 of their std of the running mean, typical of long rows (M of several thousand)
//! evaluated on the data that made the running mean, take that pass too: one f64 sweep over x.
//! Nothing else changes: y, dx and the statistics keep the forward's means, whose error is within
//! float32 rounding of the std they are compared with there. Under SyncSN (training with the BN
//! partials) the BN statistics are the replicas' together, and nothing is taken again.
//!
//! The variance dots likewise: var_weight's gradient is v_k sum_r gv_r (var_k - var_r), and the
//! IN variances carry a few float32 roundings of themselves (`VAR_ERR`, `VAR_TYP`), which an IN
//! variance ~1e-5 from the running_var it is compared with (rows of a square wave of amplitude
//! ~sqrt(running_var)) made 27x the gradient's tolerance. The same pass bounds their error, and
//! where either test fails the one f64 sweep takes each row's mean and variance again (sums of
//! x - mu_in and its square about the forward's mean) for both dots.

use crate::layout::{bn_pair, Layer, Stats, Sums, MODE_BN_PARTIALS, MODE_TRAINING, MODE_USING_BN};
use crate::nd::cancelled;
use core::arch::wasm32::*;

/// Bound on the error of the statistics pass's IN mean, relative to the row's std: 4 float32
/// roundings (a row's sums carry at most 64 terms per partial sum and are taken about a shift
/// near the mean; measured errors are ~2^-26 of the std).
pub(crate) const MEAN_ERR: f64 = 1.0 / (1u64 << 22) as f64;

/// Bound on the error of the statistics pass's IN variance, relative to itself: 16 float32
/// roundings (its float32 lane sums of squares, 64 terms per partial sum).
pub(crate) const VAR_ERR: f64 = 1.0 / (1u64 << 20) as f64;

/// A typical error of a row's IN mean, relative to its std, in training (`refine_dots`): 2^-24,
/// ~4x the sweeps' measured ~2^-26.
const MEAN_TYP: f64 = 1.0 / (1u64 << 24) as f64;

/// A typical error of a row's IN variance, relative to itself, in training: 2^-22, ~4x one
/// float32 rounding of its lane sums.
const VAR_TYP: f64 = 1.0 / (1u64 << 22) as f64;

/// The share of a gradient's tolerance scale that the dots' error may take: 2^-14 ~ 6e-5, below
/// the tests' 1e-4 (GRAD_SCALED).
const SHARE: f64 = 1.0 / (1u64 << 14) as f64;

/// Whether a mixing's dots (order in, ln, bn) may be off by more than `SHARE` of their logit
/// gradients' scales: per logit k, the error bound `err[k]` of sum_r g_r sum_j w_j (s_k - s_j)
/// against its scale `scale[k]` plus the gradient itself, and, with `plain` set, the gradient's
/// error w_k err[k] against `SHARE` of 1 too (the tests' plain tolerance, 1e-4 + 1e-4 |g|, which
/// a result meets as well as the term-scaled one). A NaN compares false.
fn dots_fail(w: [f64; 3], err: [f64; 3], scale: [f64; 3], dots: &[f64; 3], plain: bool) -> bool {
    let mix = w[0] * dots[0] + w[1] * dots[1] + w[2] * dots[2];
    (0..3).any(|k| {
        let grad = f64::max(dots[k] - mix, mix - dots[k]);
        w[k] > 0.0 && err[k] > SHARE * (scale[k] + grad) && (!plain || w[k] * err[k] > SHARE)
    })
}

/// The test's sums over the rows, two rows per f64x2: of |gm| |mu_in - mu_ln|, |gm| |mu_in -
/// mu_bn|, |gm| |mu_ln - mu_bn|, |gm| and the largest IN variance; of |gv| |var_in - var_ln|,
/// |gv| |var_in - var_bn|, |gv| |var_ln - var_bn|, |gv| var_in, |gv| var_ln and |gv| var_bn.
struct TestSums {
    a_il: v128,
    a_ib: v128,
    a_lb: v128,
    g: v128,
    vmax: v128,
    b_il: v128,
    b_ib: v128,
    b_lb: v128,
    e_in: v128,
    e_ln: v128,
    e_bn: v128,
    g2: v128,
    q_in: v128,
    q_ln: v128,
    q_bn: v128,
}

impl TestSums {
    /// Adds two rows: (gm, gv), means (IN, BN, LN) and variances (IN, BN, LN).
    #[inline(always)]
    fn add(&mut self, [gm, gv]: [v128; 2], [mi, bn, ln]: [v128; 3], [vi, vb, vl]: [v128; 3]) {
        let (gm, gv) = (f64x2_abs(gm), f64x2_abs(gv));
        let acc = |s: v128, w: v128, a: v128, b: v128| {
            f64x2_add(s, f64x2_mul(w, f64x2_abs(f64x2_sub(a, b))))
        };
        self.a_il = acc(self.a_il, gm, mi, ln);
        self.a_ib = acc(self.a_ib, gm, mi, bn);
        self.a_lb = acc(self.a_lb, gm, ln, bn);
        self.g = f64x2_add(self.g, gm);
        self.vmax = f64x2_pmax(self.vmax, vi);
        self.b_il = acc(self.b_il, gv, vi, vl);
        self.b_ib = acc(self.b_ib, gv, vi, vb);
        self.b_lb = acc(self.b_lb, gv, vl, vb);
        self.e_in = f64x2_add(self.e_in, f64x2_mul(gv, vi));
        self.e_ln = f64x2_add(self.e_ln, f64x2_mul(gv, vl));
        self.e_bn = f64x2_add(self.e_bn, f64x2_mul(gv, vb));
        let sq = |s: v128, a: v128| f64x2_add(s, f64x2_mul(a, a));
        self.g2 = sq(self.g2, gm);
        self.q_in = sq(self.q_in, f64x2_mul(gv, vi));
        self.q_ln = sq(self.q_ln, f64x2_mul(gv, vl));
        self.q_bn = sq(self.q_bn, f64x2_mul(gv, vb));
    }
}

/// The training test's first step, from O(N + C) values: whether the errors `refine_dots`
/// estimates (at most 2 e sqrt(sum gm^2) for a mean dot's difference, e the typical error of the
/// largest IN std; at most 2 VAR_TYP sqrt(sum gv^2) times the largest variance for a variance
/// dot's) lie within `SHARE` of the plain tolerance for every weight (w (1 - w) <= 1/4 of them
/// reaches a logit's gradient through softmax; Sparse SN's sparsestmax Jacobian, of entries up to
/// 1 - 1 / |support|, up to ~2.7x that, which the typical errors' ~4x margin over the sweeps'
/// measured ones covers), so that no row's test is needed. `g_sq`: sum gm^2, sum gv^2 and
/// the largest IN variance (`nd_grad::Work::g_sq`).
fn within_plain(n: usize, c: usize, using_bn: bool, st: &Stats, g_sq: &[f64]) -> bool {
    let mut v_max = g_sq[2];
    for &v in st.var_ln[..n].iter().chain(st.var_bn[..if using_bn { c } else { 0 }].iter()) {
        v_max = v_max.max(v);
    }
    let root = crate::simd::sqrt_f64;
    let means = 0.5 * MEAN_TYP * root(g_sq[2]) * root(g_sq[0]);
    let vars = 0.5 * VAR_TYP * v_max * root(g_sq[1]);
    means <= SHARE && vars <= SHARE
}

/// After `nd_grad::combine` (and `nd_grad_refine::refine_cancelled`), outside SyncSN and calls
/// with wide rows: tests the mean and variance dots (`sums.mean_dots`, `sums.var_dots`, order in,
/// ln, bn) and takes them again from f64 IN statistics where either test fails. `gm` holds (gm,
/// gv) per row (the combine's pairs), `gm_ln`, `gv_ln` gm and gv summed per sample, `sums.gm_bn`,
/// `sums.gv_bn` per channel. In training the LN and BN statistics are formed again from the f64
/// IN ones about the forward's (so that the logit gradients difference statistics of one
/// accuracy); `room` (C f64) and `aux` (a value per row) are scratch there.
///
/// # Safety
/// `x` valid for n*c*m floats, `gm` for n*c v128, `room` for c and `aux` for n*c f64 that
/// nothing else uses during the call; the statistics those of this call's forward.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn refine_dots(
    x: *const f32,
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    st: &Stats,
    gm: *const v128,
    gm_ln: &[f64],
    gv_ln: &[f64],
    sums: &mut Sums,
    room: *mut f64,
    aux: *mut f64,
    g_sq: &[f64],
) {
    let training = mode & MODE_TRAINING != 0;
    let using_bn = mode & MODE_USING_BN != 0;
    // Every statistic mixed is the batch's (training, or an evaluation without BN): its errors
    // are the rows' own, estimated as a random walk's and gated by the plain tolerance; beside a
    // running mean or variance (exact, and possibly as close as any) each row's at its bound.
    let batch = training || !using_bn;
    if batch && within_plain(n, c, training && using_bn, st, g_sq) {
        return;
    }
    let z = f64x2_splat(0.0);
    let mut t = TestSums {
        a_il: z,
        a_ib: z,
        a_lb: z,
        g: z,
        vmax: z,
        b_il: z,
        b_ib: z,
        b_lb: z,
        e_in: z,
        e_ln: z,
        e_bn: z,
        g2: z,
        q_in: z,
        q_ln: z,
        q_bn: z,
    };
    let even = c / 2 * 2;
    let (mu_in, var_in) = (st.mu_in.as_ptr(), st.var_in.as_ptr());
    // Without usingBN the BN terms compare the LN statistics with themselves: 0.
    let (mu_bn, var_bn) = (st.mu_bn.as_ptr(), st.var_bn.as_ptr());
    for i in 0..n {
        let (ln, vl) = (f64x2_splat(st.mu_ln[i]), f64x2_splat(st.var_ln[i]));
        let mut j = 0;
        while j < even {
            let r = i * c + j;
            let (p, q) = (*gm.add(r), *gm.add(r + 1));
            let row = |v: *const f64| v128_load(v as *const v128);
            let (bn, vb) =
                if using_bn { (row(mu_bn.add(j)), row(var_bn.add(j))) } else { (ln, vl) };
            t.add(
                [i64x2_shuffle::<0, 2>(p, q), i64x2_shuffle::<1, 3>(p, q)],
                [row(mu_in.add(r)), bn, ln],
                [row(var_in.add(r)), vb, vl],
            );
            j += 2;
        }
        if j < c {
            // One row: lane 1 of gm and gv 0.
            let r = i * c + j;
            let p = *gm.add(r);
            let (bn, vb) = if using_bn {
                (*mu_bn.add(j), *var_bn.add(j))
            } else {
                (st.mu_ln[i], st.var_ln[i])
            };
            t.add(
                [f64x2_replace_lane::<1>(p, 0.0), f64x2(f64x2_extract_lane::<1>(p), 0.0)],
                [f64x2_splat(*mu_in.add(r)), f64x2_splat(bn), ln],
                [f64x2_splat(*var_in.add(r)), f64x2_splat(vb), vl],
            );
        }
    }
    let TestSums {
        a_il,
        a_ib,
        a_lb,
        g,
        vmax,
        b_il,
        b_ib,
        b_lb,
        e_in,
        e_ln,
        e_bn,
        g2,
        q_in,
        q_ln,
        q_bn,
    } = t;
    let h = |v: v128| f64x2_extract_lane::<0>(v) + f64x2_extract_lane::<1>(v);
    let (a_il, a_ib, a_lb) = (h(a_il), h(a_ib), h(a_lb));
    let vmax = f64x2_extract_lane::<0>(vmax).max(f64x2_extract_lane::<1>(vmax));
    // Of the batch's statistics the rows' errors, of either sign, add up as a random walk's
    // (sqrt of the sum of squares) from a per-row error typical of the sweeps; beside running
    // statistics each at its bound.
    let root = crate::simd::sqrt_f64;
    let (g, mean_err, var_err) =
        if batch { (root(h(g2)), MEAN_TYP, VAR_TYP) } else { (h(g), MEAN_ERR, VAR_ERR) };
    // Error bounds of the differences: an IN mean is off by at most e, an LN or a batch's BN
    // mean (their mean) too, or exactly as its one IN mean with C = 1 (LN) or N = 1 (BN); the
    // running mean not at all.
    let e = mean_err * root(vmax);
    let mut mean_dots = [0.0; 3];
    let mut var_dots = [0.0; 3];
    let k = sums.mean_dots.len();
    mean_dots[..k].copy_from_slice(sums.mean_dots);
    var_dots[..k].copy_from_slice(sums.var_dots);
    let w = if using_bn { layer.mean_mix } else { [layer.mean_mix[0], layer.mean_mix[1], 0.0] };
    let [w_in, w_ln, w_bn] = w;
    // The mean dots' test for IN means off by at most e each.
    let mean_scales =
        [w_ln * a_il + w_bn * a_ib, w_in * a_il + w_bn * a_lb, w_in * a_ib + w_ln * a_lb];
    let means_off = |e: f64, dots: &[f64; 3]| {
        let e_il = if c == 1 { 0.0 } else { 2.0 * e };
        let (e_ib, e_lb) = if !training {
            (e, e)
        } else if n == 1 {
            (0.0, e_il)
        } else {
            (2.0 * e, 2.0 * e)
        };
        dots_fail(
            w,
            [
                g * (w_ln * e_il + w_bn * e_ib),
                g * (w_in * e_il + w_bn * e_lb),
                g * (w_in * e_ib + w_ln * e_lb),
            ],
            mean_scales,
            dots,
            batch,
        )
    };
    let means_fail = means_off(e, &mean_dots);
    // The variances' likewise, relative to each: |gv| var VAR_ERR per row for its IN, LN and
    // (batch) BN variances; an LN variance is exactly its one IN variance with C = 1, a batch's
    // BN variance with N = 1, and a running one is exact.
    let (b_il, b_ib, b_lb) = (h(b_il), h(b_ib), h(b_lb));
    let (f_in, f_ln, f_bn) = if batch {
        (var_err * root(h(q_in)), var_err * root(h(q_ln)), var_err * root(h(q_bn)))
    } else {
        (var_err * h(e_in), var_err * h(e_ln), var_err * h(e_bn))
    };
    let f_il = if c == 1 { 0.0 } else { f_in + f_ln };
    let (f_ib, f_lb) = if !training {
        (f_in, f_ln)
    } else if n == 1 {
        (0.0, f_il)
    } else {
        (f_in + f_bn, f_ln + f_bn)
    };
    let v = if using_bn { layer.var_mix } else { [layer.var_mix[0], layer.var_mix[1], 0.0] };
    let [v_in, v_ln, v_bn] = v;
    let vars_fail = dots_fail(
        v,
        [v_ln * f_il + v_bn * f_ib, v_in * f_il + v_bn * f_lb, v_in * f_ib + v_ln * f_lb],
        [v_ln * b_il + v_bn * b_ib, v_in * b_il + v_bn * b_lb, v_in * b_ib + v_ln * b_lb],
        &var_dots,
        batch,
    );
    if !means_fail && !vars_fail {
        return;
    }
    // The IN statistics again, in f64 about the forward's mean (x and mu_in exact in f64: one
    // rounding per term, 2^-53 of |x - mu_in|), then the IN and LN dots from them. Each sample's
    // LN statistics about the forward's LN mean L: mu_ln = L + mean_c (mu_in - L), var_ln =
    // mean_c (var_in + (mu_in - L)^2) - (mu_ln - L)^2, where mu_ln - L is a rounding of L. A
    // batch's BN statistics likewise per channel about the forward's BN mean, from each row's
    // mean (kept in `aux`) and sum (in `room`).
    let batch_bn = training && using_bn;
    if batch_bn {
        for j in 0..c {
            *room.add(j) = 0.0;
        }
    }
    // Every mean as its f64 correction beside a difference of two forward means (exact: they
    // lie within a factor 2 of each other, Sterbenz), never as a float64 sum, which at an offset
    // of 1e6 rounds at 1.2e-10; the dots about the combine's K (`layout::dots_centre`).
    let k_dots =
        crate::layout::dots_centre(st, mode & MODE_BN_PARTIALS == 0, bn_pair(layer, using_bn));
    let (mut dm_in, mut dm_ln, mut dv_in, mut dv_ln) = (0.0, 0.0, 0.0, 0.0);
    // The largest |x - mean| bound (root of a row's squared deviations) or |mean - centre|: the
    // f64 terms' size, for `exact_mean_dots`' test below.
    let mut reach: f64 = 0.0;
    for i in 0..n {
        let centre = st.mu_ln[i];
        let (mut ln_dev, mut ln_sq) = (0.0, 0.0);
        for j in 0..c {
            let r = i * c + j;
            let (row, mean) = (x.add(r * m), *mu_in.add(r));
            let (d, q) = crate::simd::deviation_sums_f64(row, m, mean);
            reach = reach.max(root(q)).max(f64::max(mean - centre, centre - mean));
            let var = (q - d * (d / m as f64)) / (m as f64 - 1.0);
            // A mean that cancelled is the forward's exact one (`nd::cancelled`); d's rounding,
            // 2^-53 of the row's std, would be all of its correction.
            let moved = if cancelled(mean, *var_in.add(r)) { 0.0 } else { d / m as f64 };
            let (gm_r, gv_r) =
                (f64x2_extract_lane::<0>(*gm.add(r)), f64x2_extract_lane::<1>(*gm.add(r)));
            dm_in += gm_r * ((mean - k_dots) + moved);
            dv_in += gv_r * var;
            let a = (mean - centre) + moved;
            ln_dev += a;
            ln_sq += var + a * a;
            if batch_bn {
                let b = (mean - *mu_bn.add(j)) + moved;
                *aux.add(r) = b;
                *room.add(j) += var + b * b;
            }
        }
        let dev = ln_dev / c as f64;
        dm_ln += gm_ln[i] * ((centre - k_dots) + dev);
        dv_ln += gv_ln[i] * (ln_sq / c as f64 - dev * dev);
    }
    let (mut dm_bn, mut dv_bn) = (0.0, 0.0);
    if batch_bn {
        for j in 0..c {
            let dev = (0..n).map(|i| *aux.add(i * c + j)).sum::<f64>() / n as f64;
            dm_bn += sums.gm_bn[j] * ((*mu_bn.add(j) - k_dots) + dev);
            dv_bn += sums.gv_bn[j] * (*room.add(j) / n as f64 - dev * dev);
        }
    }
    // Rows of NaN or infinite x (or sums beyond f64) keep the combine's dots, which the
    // reference's non-finite statistics meet.
    if ![dm_in, dm_ln, dv_in, dv_ln, dm_bn, dv_bn].iter().all(|v| v.is_finite()) {
        return;
    }
    // Each f64 term x - mean rounds at 2^-53 of itself, and where every x is one of a few
    // values (+-3.4e38) those roundings add up alike: IN means 2^-53 of |x| off, ~1e22 beside
    // a running_mean of -2e20 and an LN mean of exactly 0 (rows of +-3.4e38 whose counts
    // cancel over the sample): `mean_weight`'s gradient -1082 for -20.5 (attack fuzzer seed
    // 90582). Where even that error (2^-50 of the terms, `reach`) could pass `SHARE` of the
    // gradients' scale (an evaluation, the BN means running ones), the mean dots are formed
    // again from exact sums rounded once (`exact_mean_dots`), as the reference's float64 sums
    // of such data are exact, about an LN mean so formed.
    let (mut dm_in, mut dm_ln) = (dm_in, dm_ln);
    if !batch_bn && means_fail && means_off(F64_ERR * reach, &[dm_in, dm_ln, mean_dots[2]]) {
        let bn = if using_bn { Some((&*sums.gm_bn, &st.mu_bn[..c])) } else { None };
        if let Some(e) = exact_mean_dots(x, n, c, m, gm, gm_ln, bn, k_dots != 0.0) {
            [dm_in, dm_ln] = [e[0], e[1]];
            if using_bn {
                sums.mean_dots[2] = e[2];
            }
            *sums.mean_offset = e[3];
        }
    }
    sums.mean_dots[0] = dm_in;
    sums.mean_dots[1] = dm_ln;
    sums.var_dots[0] = dv_in;
    sums.var_dots[1] = dv_ln;
    if batch_bn {
        sums.mean_dots[2] = dm_bn;
        sums.var_dots[2] = dv_bn;
    }
}

/// Bound on the float64 sweep's IN and LN mean errors relative to its terms' size (`refine_dots`'
/// `reach`): a rounding of 2^-53 per term and per partial sum, alike in sign at worst; 2^-50.
const F64_ERR: f64 = 1.0 / (1u64 << 50) as f64;

/// The mean dots (IN, LN, and BN from `bn`'s sums of gm and running means) from each row's and
/// each sample's exact sum rounded once (`exact::sum_f32`), and their offset: about the first
/// LN mean so formed where `centred` (the combine's K is a forward LN mean, whose rounding, ~1e22
/// at data of +-3.4e38, a running_mean of 7 about it would round away), else about 0. For data
/// whose float64 sums about the mean round alike (`refine_dots`; evaluations: a batch's BN means
/// are not formed here). Scalar, a dozen integer operations per float, twice over x. None where a
/// result is not finite.
///
/// # Safety
/// As `refine_dots`.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
unsafe fn exact_mean_dots(
    x: *const f32,
    n: usize,
    c: usize,
    m: usize,
    gm: *const v128,
    gm_ln: &[f64],
    bn: Option<(&[f64], &[f64])>,
    centred: bool,
) -> Option<[f64; 4]> {
    let ln_mean = |i: usize| crate::exact::sum_f32(x.add(i * c * m), c * m, 1) / (c * m) as f64;
    let k = if centred { ln_mean(0) } else { 0.0 };
    let (mut dm_in, mut dm_ln, mut dm_bn, mut g_sum) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..n {
        for j in 0..c {
            let r = i * c + j;
            let mean = crate::exact::sum_f32(x.add(r * m), m, 1) / m as f64;
            let g = f64x2_extract_lane::<0>(*gm.add(r));
            dm_in += g * (mean - k);
            g_sum += g;
        }
        dm_ln += gm_ln[i] * (ln_mean(i) - k);
    }
    if let Some((gm_bn, mu_bn)) = bn {
        for j in 0..c {
            dm_bn += gm_bn[j] * (mu_bn[j] - k);
        }
    }
    let out = [dm_in, dm_ln, dm_bn, k * g_sum];
    if out.iter().all(|v| v.is_finite()) {
        Some(out)
    } else {
        None
    }
}
