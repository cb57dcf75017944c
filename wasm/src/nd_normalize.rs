//! SwitchNorm2d/3d forward, its second pass: from the statistics `nd::statistics` left (whose BN
//! part the caller may have replaced), each row's mixed mean and variance and its affine
//! constants, then one sweep over x writing y. Also the row driver (`for_rows`) that the
//! backward's dx sweep shares.

use crate::layout::{Layer, Stats, MODE_TRAINING, MODE_USING_BN};
use crate::simd;
use crate::wide;
use core::arch::wasm32::*;

/// Normalize pass of y = SN(x) for layout "nd", from the statistics `nd::statistics` left (whose BN
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
    let wide = constants(n, c, m, mode, layer, st, scratch);
    sweep(x, y, n * c, m, scratch, wide);
}

/// The per-row constants of `normalize` (mu, var, err into the statistics area, [hi, scale, bias, 0]
/// into `scratch`), before its sweep; rows of m floats. A wide row (`wide`) gets f64 constants
/// [mu, scale, beta, err] in the second part of `scratch` (`layout::scratch_bytes`), at byte offset
/// lane 0 from its entry, and lane 3 = 1 (as bits) marks it. Returns whether some row is wide.
///
/// # Safety
/// `scratch` valid for `layout::scratch_bytes` of n, c, overlapping nothing else here.
pub unsafe fn constants(
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
    scratch: *mut v128,
) -> bool {
    let using_bn = mode & MODE_USING_BN != 0;
    let rows = core::slice::from_raw_parts_mut(scratch, n * c);
    let mix = Mix::new(layer, using_bn, m);
    let bn = if using_bn { Some((&st.mu_bn[..], &st.var_bn[..])) } else { None };
    // Per call first (O(N + C)): if no row can be wide, the rows skip their bound tests.
    let ordinary = wide::CallBounds::new(
        c,
        m,
        mix.eps,
        mix.w,
        mix.v,
        (&st.mu_ln[..], &st.var_ln[..]),
        bn,
        layer.gamma,
        layer.beta,
    )
    .normalize_ordinary();
    let mut any_wide = false;
    let mut sample = |i: usize, check: bool| {
        let at = i * c..(i + 1) * c;
        let (ln_mu, ln_var) = (st.mu_ln[i], st.var_ln[i]);
        row_constants(
            &mix,
            layer,
            (&st.mu_in[at.clone()], &st.var_in[at.clone()]),
            (ln_mu, ln_var),
            bn,
            (&mut st.mu[at.clone()], &mut st.var[at.clone()], &mut st.err[at.clone()]),
            &mut rows[at],
            check,
        )
    };
    if ordinary {
        (0..n).for_each(|i| any_wide |= sample(i, false));
    } else {
        (0..n).for_each(|i| any_wide |= sample(i, true));
    }
    if any_wide {
        any_wide = wide_rows(&mix, layer, n, c, &st, scratch);
    }
    // For the backward (nd_grad): whether it needs its wide-row paths, and whether it centres its
    // row sums on the mixed means (an evaluation: `nd_grad::centres`).
    st.wide[0] = if any_wide { 1.0 } else { 0.0 };
    st.wide[1] = if mode & MODE_TRAINING == 0 { 1.0 } else { 0.0 };
    any_wide
}

/// Gives every wide row (`wide`) of the n*c rows its f64 constants and marks its entry; returns
/// whether there was one.
#[inline(never)]
unsafe fn wide_rows(
    mix: &Mix,
    layer: &Layer,
    n: usize,
    c: usize,
    st: &Stats,
    scratch: *mut v128,
) -> bool {
    let total = n * c;
    let mut any = false;
    let blocks = scratch.add(total) as *mut f64;
    for r in 0..total {
        let j = r % c;
        let (mu, ve, err) = (st.mu[r], st.var[r] + mix.eps, st.err[r]);
        let scale = layer.gamma[j] as f64 / simd::sqrt_f64(ve);
        let hi = mu as f32;
        let lo = (mu - hi as f64) + err;
        let beta = layer.beta[j] as f64;
        let bias = if lo == 0.0 { beta } else { beta - lo * scale };
        let d = st.mu_in[r] - hi as f64;
        if wide::normalize_is_wide(ve, mix.m1, st.var_in[r], d, scale, bias) {
            let block = blocks.add(4 * r);
            *block = mu;
            *block.add(1) = scale;
            *block.add(2) = beta;
            *block.add(3) = err;
            let offset = (block as usize - scratch.add(r) as usize) as i32;
            *scratch.add(r) = i32x4(offset, 0, 0, 1);
            any = true;
        }
    }
    any
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

/// `sweep` for rows some of which are wide (`wide`): lane 3 of a row's constants is 0, or 1 (as
/// bits) for a wide row, whose f64 constants lie lane 0 bytes further on. The other rows give the
/// same results as in `sweep`.
///
/// # Safety
/// As `sweep`.
#[inline(never)]
unsafe fn sweep_checked(x: *const f32, y: *mut f32, rows: usize, m: usize, consts: *const v128) {
    let one = |r: usize| {
        let k = *consts.add(r);
        if i32x4_extract_lane::<3>(k) == 0 {
            simd::normalize(x.add(r * m), y.add(r * m), m, k);
        } else {
            let at = i32x4_extract_lane::<0>(k) as usize;
            let block = (consts.add(r) as *const u8).add(at) as *const f64;
            let kf = [*block, *block.add(1), *block.add(2), *block.add(3)];
            wide::normalize(x.add(r * m), y.add(r * m), m, kf);
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
    /// M - 1, for the bound of a row's spread (`wide::spread2`).
    m1: f64,
    /// The heaviest mean weight's normalizer (0 IN, 1 LN, 2 BN), the mixed mean's anchor.
    anchor: usize,
}

impl Mix {
    fn new(layer: &Layer, using_bn: bool, m: usize) -> Mix {
        let (mut w, mut v) = (layer.mean_mix, layer.var_mix);
        if !using_bn {
            w[2] = 0.0;
            v[2] = 0.0;
        }
        let anchor = (1..3).fold(0, |a, k| if w[k] > w[a] { k } else { a });
        Mix { w, v, eps: layer.eps, m1: m as f64 - 1.0, anchor }
    }
}

/// The mixed mean sum_k w_k mu_k as mu_a + sum_{k != a} w_k (mu_k - mu_a), a the heaviest weight
/// (`Mix::anchor`), where that is finite, else `plain` (the sum, whose infinities and NaN are the
/// reference's). Equal where the weights sum to 1, as softmax's do exactly; their float64 sum is
/// 1 +- ~1e-16, which the sum multiplies by the means' size: a constant row at 1e10 equal to every
/// mean of its mix (y = beta exactly) gave y off by gamma 1e10 1e-16 / std, 30x Y under the default
/// eps, and 188x at 1e7 under eps 0 (attack helper-86; `tests/anchored_mean_test.ts`). The reference
/// forms it so (backends/reference.ts `anchoredMean`), WebGPU about its heavier term likewise.
///
/// Returns (mu, err): mu = f64(mu_a + rest) and err its rounding, exactly mu_a + rest - mu
/// (`two_sum_err`; 0 with `plain`). Where rest lies below half an ulp of mu_a, mu is mu_a and
/// only err holds rest: the normalize keeps it in its constants (mu = hi + lo, lo carrying err),
/// so that an element equal to mu_a gives -rest gamma / std, not beta (an evaluation of rows of
/// 1e20 on a running_mean of 1e30 under a BN weight of 1.6e-38, std ~1e-58: y +Infinity, attack
/// fuzzer seed 416, attack helper-87). Taking mu_a an ulp toward rest instead kept that sign but
/// made its size an ulp: constant rows at 3e8 and 3e8 + 2 ulps under an LN weight of 1.4e-11
/// and the default eps gave y -1.9e-4 for -1.4e-6, 9.4x Y (attack helper-88). The constants keep
/// err per row (`Stats::err`), and the backward takes x - mu as (x - mu) - err in every row
/// (`nd_grad::combine`, `redo_sums`, `zero_std_sums`; `nd_grad_refine`): it took it only in the
/// rows it sums again in f64 and in rows of std 0, and where the elements carrying dy equal mu a
/// dgamma or `var_weight` gradient past float32's range only through err came out finite
/// (tests/backward_mean_err_test.ts).
#[inline(always)]
fn anchored_mean(mix: &Mix, means: [f64; 3], plain: f64) -> (f64, f64) {
    let base = means[mix.anchor];
    let rest = mix.w[0] * (means[0] - base) + mix.w[1] * (means[1] - base);
    // Without BN (w[2] = 0, means[2] = 0) this adds a zero: a finite base keeps rest's value.
    let rest = rest + mix.w[2] * (means[2] - base);
    let mu = base + rest;
    if !(simd::abs_f64(mu) < f64::INFINITY) {
        return (plain, 0.0);
    }
    (mu, two_sum_err(base, rest, mu))
}

/// a + b - s exactly, for s = f64(a + b) finite (Knuth's TwoSum, any order of magnitude).
#[inline(always)]
pub(crate) fn two_sum_err(a: f64, b: f64, s: f64) -> f64 {
    let b_part = s - a;
    (a - (s - b_part)) + (b - b_part)
}

/// Per-row constants of one sample n (C rows), see `normalize`. The f64 arithmetic follows the
/// reference's order: (w0 mu_in + w1 mu_ln) + w2 mu_bn. Rows go two at a time through f64x2.
/// `check`: whether rows test the bound of `wide` (false when the call's bounds showed that no
/// row can be wide). Returns whether some row may be wide.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn row_constants(
    mix: &Mix,
    layer: &Layer,
    (mu_in, var_in): (&[f64], &[f64]),
    (ln_mu, ln_var): (f64, f64),
    bn: Option<(&[f64], &[f64])>,
    (mu_out, var_out, err_out): (&mut [f64], &mut [f64], &mut [f64]),
    out: &mut [v128],
    check: bool,
) -> bool {
    let c = mu_in.len();
    let one = |j: usize| -> ([f64; 3], [f32; 3], bool) {
        let mut mu = mix.w[0] * mu_in[j] + mix.w[1] * ln_mu;
        let mut var = mix.v[0] * var_in[j] + mix.v[1] * ln_var;
        let mut bn_mu = 0.0;
        if let Some((bm, bv)) = bn {
            mu += mix.w[2] * bm[j];
            var += mix.v[2] * bv[j];
            bn_mu = bm[j];
        }
        let (mu, err) = anchored_mean(mix, [mu_in[j], ln_mu, bn_mu], mu);
        let ve = var + mix.eps;
        let scale = layer.gamma[j] as f64 / simd::sqrt_f64(ve);
        let hi = mu as f32;
        let lo = (mu - hi as f64) + err;
        let beta = layer.beta[j] as f64;
        // lo = 0 skips lo * scale, which is NaN when scale is Inf (eps = 0, var = 0).
        let bias = if lo == 0.0 { beta } else { beta - lo * scale };
        let wide =
            wide::normalize_is_wide(ve, mix.m1, var_in[j], mu_in[j] - hi as f64, scale, bias);
        ([mu, var, err], [hi, scale as f32, bias as f32], wide)
    };
    let pairs = c / 2 * 2;
    let (w0, w1, w2) =
        (f64x2_splat(mix.w[0]), f64x2_splat(mix.w[1] * ln_mu), f64x2_splat(mix.w[2]));
    let (v0, v1, v2) =
        (f64x2_splat(mix.v[0]), f64x2_splat(mix.v[1] * ln_var), f64x2_splat(mix.v[2]));
    let eps = f64x2_splat(mix.eps);
    let zero = f64x2_splat(0.0);
    // The anchored mean's terms (`anchored_mean`): w_k and, for LN, mu_ln itself.
    let (aw0, aw1, aw2, ln_v) =
        (f64x2_splat(mix.w[0]), f64x2_splat(mix.w[1]), f64x2_splat(mix.w[2]), f64x2_splat(ln_mu));
    let infinity = f64x2_splat(f64::INFINITY);
    let (low, high) = (f64x2_splat(wide::LOW), f64x2_splat(wide::HIGH));
    let half_limit2 = f64x2_splat(wide::LIMIT * wide::LIMIT / 2.0);
    let tiny = f64x2_splat(wide::TINY);
    let (m1, half) = (f64x2_splat(mix.m1), f64x2_splat(0.5));
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
            let mean_in = ld(mu_in, j);
            let mut mu = f64x2_add(f64x2_mul(w0, mean_in), w1);
            let mut var = f64x2_add(f64x2_mul(v0, ld(var_in, j)), v1);
            let mut bn_mu = zero;
            if let Some((bm, bv)) = bn {
                bn_mu = ld(bm, j);
                mu = f64x2_add(mu, f64x2_mul(w2, bn_mu));
                var = f64x2_add(var, f64x2_mul(v2, ld(bv, j)));
            }
            // `anchored_mean`, two rows at a time.
            let base = match mix.anchor {
                0 => mean_in,
                1 => ln_v,
                _ => bn_mu,
            };
            let rest = f64x2_add(
                f64x2_mul(aw0, f64x2_sub(mean_in, base)),
                f64x2_mul(aw1, f64x2_sub(ln_v, base)),
            );
            let rest = f64x2_add(rest, f64x2_mul(aw2, f64x2_sub(bn_mu, base)));
            let anchored = f64x2_add(base, rest);
            // Its rounding (`two_sum_err`), 0 where the plain sum is taken.
            let b_part = f64x2_sub(anchored, base);
            let err =
                f64x2_add(f64x2_sub(base, f64x2_sub(anchored, b_part)), f64x2_sub(rest, b_part));
            let finite = f64x2_lt(f64x2_abs(anchored), infinity);
            let mu = v128_bitselect(anchored, mu, finite);
            let err = v128_and(err, finite);
            v128_store(mu_out.as_mut_ptr().add(j) as *mut v128, mu);
            v128_store(var_out.as_mut_ptr().add(j) as *mut v128, var);
            v128_store(err_out.as_mut_ptr().add(j) as *mut v128, err);
            let ve = f64x2_add(var, eps);
            let scale = f64x2_div(ld32(layer.gamma, j), f64x2_sqrt(ve));
            let hi = f32x4_demote_f64x2_zero(mu);
            let hi64 = f64x2_promote_low_f32x4(hi);
            let lo = f64x2_add(f64x2_sub(mu, hi64), err);
            // lo = 0 keeps bias = beta exactly (lo * scale would be NaN for an Inf scale).
            let lo_scale = v128_and(f64x2_mul(lo, scale), f64x2_ne(lo, zero));
            let bias64 = f64x2_sub(ld32(layer.beta, j), lo_scale);
            if check {
                // The bound of `wide::normalize_is_wide` (a row outside [LOW, HIGH], or 0, Inf,
                // NaN, is looked at again by `wide_rows`).
                let d = f64x2_sub(mean_in, hi64);
                let half_spread2 =
                    f64x2_add(f64x2_add(f64x2_mul(m1, ld(var_in, j)), f64x2_mul(d, d)), half);
                let terms = f64x2_add(
                    f64x2_mul(half_spread2, f64x2_mul(scale, scale)),
                    f64x2_mul(bias64, bias64),
                );
                let ok = v128_and(f64x2_ge(ve, low), f64x2_le(ve, high));
                // |x - hi| <= D at most LIMIT whatever the scale (`wide::normalize_is_wide`).
                let ok = v128_and(ok, f64x2_le(half_spread2, half_limit2));
                // A nonzero |scale| below `wide::TINY` (a float32 subnormal) is wide too.
                let normal = v128_or(f64x2_ge(f64x2_abs(scale), tiny), f64x2_eq(scale, zero));
                let ok = v128_and(ok, normal);
                in_range = v128_and(in_range, v128_and(f64x2_le(terms, half_limit2), ok));
            }
            let bias = f32x4_demote_f64x2_zero(bias64);
            let scale = f32x4_demote_f64x2_zero(scale);
            // [hi0, s0, hi1, s1], then [hi0, s0, b0, 0] and [hi1, s1, b1, 0] (bias lanes 2, 3 are 0).
            let t = i32x4_shuffle::<0, 4, 1, 5>(hi, scale);
            *out.get_unchecked_mut(j) = i32x4_shuffle::<0, 1, 4, 6>(t, bias);
            *out.get_unchecked_mut(j + 1) = i32x4_shuffle::<2, 3, 5, 6>(t, bias);
            j += 2;
        }
    }
    let mut any_wide = !i64x2_all_true(in_range);
    if j < c {
        let ([mu, var, err], [hi, scale, bias], wide) = one(j);
        mu_out[j] = mu;
        var_out[j] = var;
        err_out[j] = err;
        out[j] = f32x4(hi, scale, bias, 0.0);
        any_wide |= wide;
    }
    any_wide
}
