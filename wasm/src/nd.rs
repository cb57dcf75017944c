//! SwitchNorm2d/3d forward on x viewed as [N, C, M], in two calls: `statistics` reads the tensor
//! once, `normalize` reads it again and writes y. Between them the caller may replace the BN
//! statistics (SyncSN); everything besides the two passes is O(N*C) work on per-row statistics.

use crate::layout::{Layer, Stats, MODE_TRAINING, MODE_USING_BN};
use crate::moments;
use crate::simd;

/// Statistics pass of y = SN(x) for layout "nd", per row r = (n, c) of M floats:
///   mu_in[r] = (1/M) sum_i x[r,i],  var_in[r] = (1/(M-1)) sum_i (x[r,i] - mu_in[r])^2
/// then, derived in f64 without cancellation (`moments::group`):
///   mu_ln[n] = mean_c mu_in,  var_ln[n] = mean_c var_in + mean_c (mu_in - mu_ln)^2
///   mu_bn[c], var_bn[c] likewise over n (training), or the running buffers (evaluation).
///
/// # Safety
/// `x` must be valid for n*c*m floats; `layer` and `stats` as in `layout`, not overlapping x.
pub unsafe fn statistics(
    x: *const f32,
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
) {
    let training = mode & MODE_TRAINING != 0;
    let using_bn = mode & MODE_USING_BN != 0;
    for r in 0..n * c {
        let mo = moments::row(x.add(r * m), m);
        st.mu_in[r] = mo.mean;
        st.var_in[r] = mo.unbiased_var();
    }

    for i in 0..n {
        let (mean, var) = moments::group(st.mu_in, st.var_in, i * c, c, 1);
        st.mu_ln[i] = mean;
        st.var_ln[i] = var;
    }
    if using_bn {
        for j in 0..c {
            let (mean, var) = if training {
                moments::group(st.mu_in, st.var_in, j, n, c)
            } else {
                (layer.running_mean[j] as f64, layer.running_var[j] as f64)
            };
            st.mu_bn[j] = mean;
            st.var_bn[j] = var;
        }
    }
}

/// Normalize pass of y = SN(x) for layout "nd", from the statistics `statistics` left (whose BN
/// part the caller may have replaced, e.g. by cross-replica statistics). Mix (w = mean_mix,
/// v = var_mix), kept per row for a backward pass:
///   mu[r] = w0 mu_in + w1 mu_ln + w2 mu_bn,  var[r] = v0 var_in + v1 var_ln + v2 var_bn
/// then y = (x - mu) * gamma / sqrt(var + eps) + beta, with mu split into f32 hi + lo and the
/// scale rounded to f32 once per row.
///
/// # Safety
/// `x` and `y` must be valid for n*c*m floats and be the same pointer or not overlap; `layer` and
/// `stats` as in `layout`, overlapping neither tensor.
pub unsafe fn normalize(
    x: *const f32,
    y: *mut f32,
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
) {
    let using_bn = mode & MODE_USING_BN != 0;
    let [w0, w1, w2] = layer.mean_mix;
    let [v0, v1, v2] = layer.var_mix;
    for i in 0..n {
        for j in 0..c {
            let r = i * c + j;
            // Same order of f64 operations as the reference: w0 a + w1 b (+ w2 c).
            let mut mu = w0 * st.mu_in[r] + w1 * st.mu_ln[i];
            let mut var = v0 * st.var_in[r] + v1 * st.var_ln[i];
            if using_bn {
                mu += w2 * st.mu_bn[j];
                var += v2 * st.var_bn[j];
            }
            st.mu[r] = mu;
            st.var[r] = var;
            let scale = layer.gamma[j] as f64 / simd::sqrt_f64(var + layer.eps);
            let hi = mu as f32;
            let lo = (mu - hi as f64) as f32;
            simd::normalize(x.add(r * m), y.add(r * m), m, hi, lo, scale as f32, layer.beta[j]);
        }
    }
}
