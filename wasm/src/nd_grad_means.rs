//! The evaluation backward's mean and variance dot products, taken again from IN statistics summed
//! in f64 where the statistics pass's are not accurate enough for them.
//!
//! The gradient of mean_weight is w_k sum_r gm_r (mu_k - mu_r), a sum of differences of the IN,
//! LN and BN means (`_params.ts` forms it from the dots a_k = sum gm mu_k). The statistics pass
//! sums a row's deviations in float32 (`nd::row_moments`), so mu_in carries a few float32
//! roundings of the row's std. In evaluation the BN mean is the running mean, a constant that can
//! lie arbitrarily close to a row's mean: an IN mean within 1e-18 of a running_mean of 1.5e-14,
//! over a std of 6e-14, had mu_in - running_mean 3e-4 relative off, and mean_weight's gradient 3x
//! its tolerance (float32 rounding of the size of its terms, tests/_term_scales.ts). In training
//! the LN and BN means are averages of the same IN means, ~std / sqrt(M) apart for data of any
//! randomness; rows whose mean lies near 0 beside their std are summed again by the statistics
//! pass already (`nd::row_moments`), and other rows whose means lie within ~1e-3 of their std of
//! the LN or BN mean they are compared with are left as they are (README, Numerics: a known
//! exception, for dx's LN and BN variance paths, (mu_in - mu_ln) gvL and (mu_in - mu_bn) gvB,
//! too).
//!
//! So after the evaluation's combine one pass over the per-row statistics sums |gm| times each
//! pair's |mu_k - mu_j| (a lower bound of each gradient's tolerance scale, with the gradient
//! itself) and |gm|, and finds the largest IN variance (a pass of its own, ~4% of an evaluation
//! backward at [64, 512, 7, 7]; the same sums inside the combine's loop cost the training backward
//! ~5% there, although compiled out of its loop). One test then bounds the dots' error from the
//! IN means' (`MEAN_ERR` of the largest IN std, for each pair of means that can differ in error),
//! and only where it passes `SHARE` of that scale are the IN means summed again in f64 about
//! themselves and the IN and LN dots formed from them (the BN dot holds running means, exact).
//! The bound is loose (|gm| is |s gamma sum dy|, the scale's own terms use sum |dy|), so
//! evaluations whose rows' means lie within ~2^-8 of their std of the running mean, typical of
//! long rows (M of several thousand) evaluated on the data that made the running mean, take that
//! pass too: one f64 sweep over x. Nothing else changes: y, dx and the statistics keep the
//! forward's means, whose error is within float32 rounding of the std they are compared with
//! there.
//!
//! The variance dots likewise: var_weight's gradient is v_k sum_r gv_r (var_k - var_r), and the
//! IN variances carry a few float32 roundings of themselves (`VAR_ERR`), which an IN variance
//! ~1e-5 from the running_var it is compared with (rows of a square wave of amplitude
//! ~sqrt(running_var)) made 27x the gradient's tolerance. The same pass bounds their error, and
//! where either test fails the one f64 sweep takes each row's mean and variance again (sums of
//! x - mu_in and its square about the forward's mean) for both dots.

use crate::layout::{Layer, Stats};
use core::arch::wasm32::*;

/// Bound on the error of the statistics pass's IN mean, relative to the row's std: 4 float32
/// roundings (a row's sums carry at most 64 terms per partial sum and are taken about a shift
/// near the mean; measured errors are ~2^-26 of the std).
const MEAN_ERR: f64 = 1.0 / (1u64 << 22) as f64;

/// Bound on the error of the statistics pass's IN variance, relative to itself: 16 float32
/// roundings (its float32 lane sums of squares, 64 terms per partial sum).
const VAR_ERR: f64 = 1.0 / (1u64 << 20) as f64;

/// The share of a gradient's tolerance scale that the dots' error may take: 2^-14 ~ 6e-5, below
/// the tests' 1e-4 (GRAD_SCALED).
const SHARE: f64 = 1.0 / (1u64 << 14) as f64;

/// Whether a mixing's dots (order in, ln, bn) may be off by more than `SHARE` of their logit
/// gradients' scales: per logit k, the error bound `err[k]` of sum_r g_r sum_j w_j (s_k - s_j)
/// against its scale `scale[k]` plus the gradient itself. A NaN compares false.
fn dots_fail(w: [f64; 3], err: [f64; 3], scale: [f64; 3], dots: &[f64]) -> bool {
    let mix = w[0] * dots[0] + w[1] * dots[1] + w[2] * dots[2];
    (0..3)
        .any(|k| w[k] > 0.0 && err[k] > SHARE * (scale[k] + f64::max(dots[k] - mix, mix - dots[k])))
}

/// The test's sums over the rows, two rows per f64x2: of |gm| |mu_in - mu_ln|, |gm| |mu_in -
/// mu_bn|, |gm| |mu_ln - mu_bn|, |gm| and the largest IN variance; of |gv| |var_in - var_ln|,
/// |gv| |var_in - var_bn|, |gv| |var_ln - var_bn|, |gv| var_in and |gv| var_ln.
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
    }
}

/// After `nd_grad::combine` in evaluation with usingBN: tests the mean and variance dots
/// (`mean_dots`, `var_dots`, order in, ln, bn) and takes both again from f64 IN statistics where
/// either test fails. `gm` holds (gm, gv) per row (the combine's pairs), `gm_ln`, `gv_ln` gm and
/// gv summed per sample.
///
/// # Safety
/// `x` valid for n*c*m floats, `gm` for n*c v128; the statistics those of this call's forward.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn refine_eval_dots(
    x: *const f32,
    n: usize,
    c: usize,
    m: usize,
    layer: &Layer,
    st: &Stats,
    gm: *const v128,
    gm_ln: &[f64],
    gv_ln: &[f64],
    mean_dots: &mut [f64],
    var_dots: &mut [f64],
) {
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
    };
    let even = c / 2 * 2;
    let (mu_in, var_in) = (st.mu_in.as_ptr(), st.var_in.as_ptr());
    let (mu_bn, var_bn) = (st.mu_bn.as_ptr(), st.var_bn.as_ptr());
    for i in 0..n {
        let (ln, vl) = (f64x2_splat(st.mu_ln[i]), f64x2_splat(st.var_ln[i]));
        let mut j = 0;
        while j < even {
            let r = i * c + j;
            let (p, q) = (*gm.add(r), *gm.add(r + 1));
            let row = |v: *const f64| v128_load(v as *const v128);
            t.add(
                [i64x2_shuffle::<0, 2>(p, q), i64x2_shuffle::<1, 3>(p, q)],
                [row(mu_in.add(r)), row(mu_bn.add(j)), ln],
                [row(var_in.add(r)), row(var_bn.add(j)), vl],
            );
            j += 2;
        }
        if j < c {
            // One row: lane 1 of gm and gv 0.
            let r = i * c + j;
            let p = *gm.add(r);
            t.add(
                [f64x2_replace_lane::<1>(p, 0.0), f64x2(f64x2_extract_lane::<1>(p), 0.0)],
                [f64x2_splat(*mu_in.add(r)), f64x2_splat(*mu_bn.add(j)), ln],
                [f64x2_splat(*var_in.add(r)), f64x2_splat(*var_bn.add(j)), vl],
            );
        }
    }
    let TestSums { a_il, a_ib, a_lb, g, vmax, b_il, b_ib, b_lb, e_in, e_ln } = t;
    let h = |v: v128| f64x2_extract_lane::<0>(v) + f64x2_extract_lane::<1>(v);
    let (a_il, a_ib, a_lb, g) = (h(a_il), h(a_ib), h(a_lb), h(g));
    let vmax = f64x2_extract_lane::<0>(vmax).max(f64x2_extract_lane::<1>(vmax));
    // Error bounds of the differences: an IN mean is off by at most e, an LN mean (their mean)
    // too, or exactly as its one IN mean with C = 1; the running mean not at all.
    let e = MEAN_ERR * crate::simd::sqrt_f64(vmax);
    let e_il = if c == 1 { 0.0 } else { 2.0 * e };
    let [w_in, w_ln, w_bn] = layer.mean_mix;
    let means_fail = dots_fail(
        layer.mean_mix,
        [g * (w_ln * e_il + w_bn * e), g * (w_in * e_il + w_bn * e), g * (w_in * e + w_ln * e)],
        [w_ln * a_il + w_bn * a_ib, w_in * a_il + w_bn * a_lb, w_in * a_ib + w_ln * a_lb],
        mean_dots,
    );
    // The variances' likewise, relative to each: |gv| var_in VAR_ERR per row, |gv| var_ln
    // VAR_ERR per row for its sample's LN variance (exactly its one IN variance with C = 1).
    let (b_il, b_ib, b_lb) = (h(b_il), h(b_ib), h(b_lb));
    let (f_in, f_ln) = (VAR_ERR * h(e_in), VAR_ERR * h(e_ln));
    let f_il = if c == 1 { 0.0 } else { f_in + f_ln };
    let [v_in, v_ln, v_bn] = layer.var_mix;
    let vars_fail = dots_fail(
        layer.var_mix,
        [v_ln * f_il + v_bn * f_in, v_in * f_il + v_bn * f_ln, v_in * f_in + v_ln * f_ln],
        [v_ln * b_il + v_bn * b_ib, v_in * b_il + v_bn * b_lb, v_in * b_ib + v_ln * b_lb],
        var_dots,
    );
    if !means_fail && !vars_fail {
        return;
    }
    // The IN statistics again, in f64 about the forward's mean (x and mu_in exact in f64: one
    // rounding per term, 2^-53 of |x - mu_in|), then the IN and LN dots from them. Each sample's
    // LN statistics about the forward's LN mean L: mu_ln = L + mean_c (mu_in - L), var_ln =
    // mean_c (var_in + (mu_in - L)^2) - (mu_ln - L)^2, where mu_ln - L is a rounding of L.
    let (mut dm_in, mut dm_ln, mut dv_in, mut dv_ln) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..n {
        let centre = st.mu_ln[i];
        let (mut ln_dev, mut ln_sq) = (0.0, 0.0);
        for j in 0..c {
            let r = i * c + j;
            let (row, mean) = (x.add(r * m), *mu_in.add(r));
            let (d, q) = crate::simd::deviation_sums_f64(row, m, mean);
            let mean = mean + d / m as f64;
            let var = (q - d * (d / m as f64)) / (m as f64 - 1.0);
            let (gm_r, gv_r) =
                (f64x2_extract_lane::<0>(*gm.add(r)), f64x2_extract_lane::<1>(*gm.add(r)));
            dm_in += gm_r * mean;
            dv_in += gv_r * var;
            ln_dev += mean - centre;
            ln_sq += var + (mean - centre) * (mean - centre);
        }
        let dev = ln_dev / c as f64;
        dm_ln += gm_ln[i] * (centre + dev);
        dv_ln += gv_ln[i] * (ln_sq / c as f64 - dev * dev);
    }
    mean_dots[0] = dm_in;
    mean_dots[1] = dm_ln;
    var_dots[0] = dv_in;
    var_dots[1] = dv_ln;
}
