//! SwitchNorm2d/3d backward on x, dy viewed as [N, C, M], in two calls around the cross-replica
//! sum of SyncSN: `reduce` reads (x, dy) once and forms every gradient sum, `dx` reads them again
//! and writes dx. Both use the statistics area that this layer's forward left (layout.rs), so
//! nothing of the forward's output is kept. The chain rule is SN_SPEC's (and the reference
//! backend's), written per row r = (n, c) with s = 1/sqrt(var + eps):
//!   sum_i dy xhat = s * sum_i dy (x - mu),  Gm = -s gamma sum_i dy,
//!   Gv = -0.5 s^3 gamma sum_i dy (x - mu)
//! and dx = dy gamma s + Gmu_in / M + Gvar_in * 2 (x - mu_in) / (M - 1).

use crate::layout::{Layer, Stats, Sums, MODE_TRAINING, MODE_USING_BN};
use crate::simd;
use core::arch::wasm32::*;

/// The backward work area of layout "nd" split into its per-row and per-sample arrays.
struct Work<'a> {
    gm: &'a mut [f64],
    gv: &'a mut [f64],
    inv_std: &'a mut [f64],
    gm_ln: &'a mut [f64],
    gv_ln: &'a mut [f64],
}

impl<'a> Work<'a> {
    unsafe fn split(p: *mut f64, n: usize, c: usize) -> Work<'a> {
        let rows = n * c;
        let all = core::slice::from_raw_parts_mut(p, 3 * rows + 2 * n);
        let (gm, rest) = all.split_at_mut(rows);
        let (gv, rest) = rest.split_at_mut(rows);
        let (inv_std, rest) = rest.split_at_mut(rows);
        let (gm_ln, gv_ln) = rest.split_at_mut(n);
        Work { gm, gv, inv_std, gm_ln, gv_ln }
    }
}

/// Floats per chunk of the f32 gradient sums: 16 terms per partial sum, so that their rounding
/// stays near that of the products themselves; the chunks are added in f64.
const CHUNK: usize = 256;

/// Per row, sum dy and sum dy (x - hi) with hi = f32(mu_in): f32 SIMD within chunks of
/// `CHUNK` floats, chunks added in f64.
#[inline(always)]
unsafe fn row_sums(x: *const f32, dy: *const f32, m: usize, hi: f32) -> (f64, f64) {
    let (mut g, mut p) = (0.0f64, 0.0f64);
    let mut i = 0;
    while i < m {
        let len = if m - i < CHUNK { m - i } else { CHUNK };
        let (a, b) = simd::grad_sums(x.add(i), dy.add(i), len, hi);
        g += a as f64;
        p += b as f64;
        i += len;
    }
    (g, p)
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
/// `x`, `dy` valid for n*c*m floats; `layer`, `stats` and `work` (`layout::work_len` f64) as in
/// `layout`, overlapping nothing else.
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
    let using_bn = mode & MODE_USING_BN != 0;
    let w = Work::split(work, n, c);
    let rows = n * c;
    // 1/sqrt(var + eps) two rows at a time, so that successive square roots and divisions
    // overlap; the sweep below is then free of them.
    let (eps, one) = (f64x2_splat(layer.eps), f64x2_splat(1.0));
    let mut r = 0;
    while r + 2 <= rows {
        let var = v128_load(st.var.as_ptr().add(r) as *const v128);
        let s = f64x2_div(one, f64x2_sqrt(f64x2_add(var, eps)));
        v128_store(w.inv_std.as_mut_ptr().add(r) as *mut v128, s);
        r += 2;
    }
    if r < rows {
        w.inv_std[r] = 1.0 / simd::sqrt_f64(st.var[r] + layer.eps);
    }

    sums.d_weight.fill(0.0);
    sums.d_bias.fill(0.0);
    for (r, (gm, gv)) in w.gm.iter_mut().zip(w.gv.iter_mut()).enumerate() {
        let j = r % c;
        let hi = st.mu_in[r] as f32;
        let (g, p) = row_sums(x.add(r * m), dy.add(r * m), m, hi);
        let p = p + (hi as f64 - st.mu[r]) * g;
        let s = w.inv_std[r];
        let gamma = layer.gamma[j] as f64;
        sums.d_weight[j] += s * p;
        sums.d_bias[j] += g;
        *gm = -s * gamma * g;
        *gv = -0.5 * s * s * s * gamma * p;
    }

    sums.gm_bn.fill(0.0);
    sums.gv_bn.fill(0.0);
    let (mut dm_in, mut dv_in, mut dm_ln, mut dv_ln) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..n {
        let at = i * c;
        let (mut gml, mut gvl) = (0.0, 0.0);
        for j in 0..c {
            let (gm, gv) = (w.gm[at + j], w.gv[at + j]);
            gml += gm;
            gvl += gv;
            sums.gm_bn[j] += gm;
            sums.gv_bn[j] += gv;
            dm_in += gm * st.mu_in[at + j];
            dv_in += gv * st.var_in[at + j];
        }
        w.gm_ln[i] = gml;
        w.gv_ln[i] = gvl;
        dm_ln += gml * st.mu_ln[i];
        dv_ln += gvl * st.var_ln[i];
    }
    sums.mean_dots[0] = dm_in;
    sums.mean_dots[1] = dm_ln;
    sums.var_dots[0] = dv_in;
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

/// dx call of the backward pass for layout "nd", after `reduce` (and, under SyncSN, after the
/// caller replaced the sums by their totals over replicas; `count` is the global batch size N,
/// the local n otherwise). Per row, in f64:
///   Gvar_in = v0 gv + v1 gvL / C + v2 gvB / N
///   Gmu_in  = w0 gm + w1 gmL / C + v1 (2/C) (mu_in - mu_ln) gvL + w2 gmB / N
///             + v2 (2/N) (mu_in - mu_bn) gvB
/// (the BN terms only in training with usingBN: otherwise the BN statistics are constants), then
/// one sweep dx = dy a + (x - hi) b + k with a = gamma s, b = 2 Gvar_in / (M - 1) and
/// k = Gmu_in / M - lo b (mu_in = hi + lo, hi = f32(mu_in)).
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
    let bn = mode & MODE_USING_BN != 0 && mode & MODE_TRAINING != 0;
    let w = Work::split(work, n, c);
    let [w0, w1, w2] = layer.mean_mix;
    let [v0, v1, v2] = layer.var_mix;
    let (inv_c, two_c) = (1.0 / c as f64, 2.0 / c as f64);
    let (inv_nb, two_nb) = (1.0 / count, 2.0 / count);
    let (inv_m, two_m1) = (1.0 / m as f64, 2.0 / (m as f64 - 1.0));
    for i in 0..n {
        let (gml, gvl, mu_ln) = (w.gm_ln[i], w.gv_ln[i], st.mu_ln[i]);
        for j in 0..c {
            let r = i * c + j;
            let mu_in = st.mu_in[r];
            let mut g_var = v0 * w.gv[r] + v1 * gvl * inv_c;
            let mut g_mu = w0 * w.gm[r] + w1 * gml * inv_c + v1 * two_c * (mu_in - mu_ln) * gvl;
            if bn {
                let (gmb, gvb) = (sums.gm_bn[j], sums.gv_bn[j]);
                g_var += v2 * gvb * inv_nb;
                g_mu += w2 * gmb * inv_nb + v2 * two_nb * (mu_in - st.mu_bn[j]) * gvb;
            }
            let a = layer.gamma[j] as f64 * w.inv_std[r];
            let b = g_var * two_m1;
            let hi = mu_in as f32;
            let lo = mu_in - hi as f64;
            // lo = 0 skips lo * b, which is NaN when b is infinite (M = 1).
            let k = if lo == 0.0 { g_mu * inv_m } else { g_mu * inv_m - lo * b };
            let at = r * m;
            simd::grad_dx(x.add(at), dy.add(at), dx.add(at), m, a as f32, hi, b as f32, k as f32);
        }
    }
}
