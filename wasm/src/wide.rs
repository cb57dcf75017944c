//! Rows whose float32 sweeps could leave float32's range ("wide" rows). The normalize and dx
//! sweeps of an ordinary row work in f32 with per-row f32 constants:
//!   normalize: y  = (x - hi) scale + bias
//!   dx:        dx = (dy a + (x - hi) b) + k
//! Any of those constants, products or sums can overflow float32 (or, for var + eps outside
//! [2^-120, 2^120], lose their digits to subnormals) although the float64 result fits: gamma 1e33
//! over a std of 3e-7 makes `scale` 3e39 while y is 1e33; |dy| near 3e38 times a = gamma s ~ 1
//! overflows `dy a` while dx is 1e38. Such a row is swept in f64 instead, with the reference's
//! formula and f64 per-row constants, and its results are rounded to float32 once, as PyTorch's
//! float32 cast does: a float64 value beyond float32's largest becomes the infinity of its sign.
//!
//! A row is wide when var + eps is outside [2^-120, 2^120], or when a bound on its f32 sweep's
//! terms from cheap per-row quantities fails: |x - hi| <= D with
//! D^2 = 2 ((M - 1) var_in + (mu_in - hi)^2) + 1 (no deviation exceeds the root of the sum of
//! squared deviations; the 1 makes the bound cover the constants themselves). Normalize: D |scale| and |bias| at most `LIMIT`, so every f32
//! step stays below 2^127 and y is the exact result rounded step by step. dx: |a| <= `LIMIT`,
//! D |b| and |k| at most `REST`; |dy| is not bounded (that would cost a max in the reduce
//! sweep), but with the other terms that small, `dy a` is the only term that can pass float32's
//! largest value, f32 multiplication rounds it correctly (to the infinity of its sign where the
//! exact product is beyond float32), and the sum differs from the float64 value rounded once by
//! float32 rounding only: the one difference left is a dx within a few float32 ulps of the
//! largest value (2^-24 relative), which either side may round to the infinity of its sign.
//! At the low end, a nonzero constant below `TINY` (2^-125: `scale`, `a` or `b`) would keep few
//! or no digits in float32 although its products fit (a std of 1e15 with dy 1e-20 makes b ~1e-50
//! and (x - hi) b ~1e-35): such a row is wide as well (`nd_grad.rs` sums a row's dy (x - hi) again
//! in f64 when its f32 sum comes out below 2^-96, its products having been subnormal).
//! Wide rows are rare (huge gamma, eps near 0, |x| or gradients beyond ~1e18); their sweeps are
//! plain f64 loops, and every other row keeps the SIMD sweeps, bit for bit. A call first bounds
//! all its rows at once from O(N + C) quantities (`CallBounds`); only when that fails do the rows
//! take their own bound tests (two rows per f64x2 among the per-row constants).

/// var + eps below this (std < 2^-60) makes a row wide.
pub const LOW: f64 = 1.0 / (1u128 << 120) as f64;
/// var + eps above this (std > 2^60) makes a row wide.
pub const HIGH: f64 = (1u128 << 120) as f64;
/// Bound of one f32 sweep term: the sum of two (normalize) or three (dx) terms below this, with
/// the rounding of each f32 step, stays below 2^127.
pub const LIMIT: f64 = (1u128 << 125) as f64;
/// Bound of the dx sweep's terms besides `dy a`, 2^100: where `dy a` passes float32's largest
/// value, they change the result by 2^-27 of it at most.
pub const REST: f64 = (1u128 << 100) as f64;
/// Twice float32's smallest normal number (2^-125): a nonzero sweep constant (`scale`, or dx's `a`
/// or `b`) below this would be a float32 subnormal, or 0, with few or no digits left, although the
/// products it makes (a deviation of 1e15 times `b` ~1e-50) fit float32 well: such a row is wide.
pub const TINY: f64 = 2.0 * f32::MIN_POSITIVE as f64;

/// Whether `v` is nonzero and below `TINY` in magnitude (see `TINY`).
#[inline(always)]
pub fn tiny(v: f64) -> bool {
    v != 0.0 && v < TINY && v > -TINY
}

/// Whether var + eps = `ve` is outside [LOW, HIGH] (0, Inf and NaN are not: the plain sweeps'
/// results for them are the reference's).
#[inline(always)]
pub fn out_of_range(ve: f64) -> bool {
    (ve > 0.0 && ve < LOW) || (ve > HIGH && ve < f64::INFINITY)
}

/// Whether the normalize sweep of a row must be done in f64: `ve` = var + eps, `m1` = M - 1,
/// `var_in` the row's IN variance, `d` = mu_in - hi, `scale` and `bias` its f64 constants. The
/// bound: (D^2 / 2) scale^2 + bias^2 <= LIMIT^2 / 2 with D^2 / 2 = (M - 1) var_in + d^2 + 1/2
/// (see above), so that D |scale| and |bias| are at most LIMIT. NaN fails it.
#[inline(always)]
pub fn normalize_is_wide(ve: f64, m1: f64, var_in: f64, d: f64, scale: f64, bias: f64) -> bool {
    let half_spread2 = (m1 * var_in + d * d) + 0.5;
    let terms = half_spread2 * (scale * scale) + bias * bias;
    // D itself at most LIMIT too: x - hi is a float32 term of the sweep whatever the scale (a
    // mixed mean of -3e38 beside x = 3e38 overflows it, and 0 or 1e-30 times Inf is not y).
    out_of_range(ve)
        || !(terms <= LIMIT * LIMIT / 2.0)
        || !(half_spread2 <= LIMIT * LIMIT / 2.0)
        || tiny(scale)
}

/// `y[i] = ((x[i] - mu) - err) scale + beta` in f64 for a wide row, rounded to f32 once: the
/// mixed mean is mu + err (`nd_normalize::anchored_mean`; err 0 leaves x - mu as it is). `y` may
/// equal `x`.
///
/// # Safety
/// `x` valid for reading and `y` for writing n floats, the same pointer or not overlapping.
#[inline(never)]
pub unsafe fn normalize(x: *const f32, y: *mut f32, n: usize, [mu, scale, beta, err]: [f64; 4]) {
    for i in 0..n {
        *y.add(i) = (((*x.add(i) as f64 - mu) - err) * scale + beta) as f32;
    }
}

/// `dx[i] = dy[i] a + k + (x[i] - mu_in) b` in f64 for a wide row (the reference's order),
/// rounded to f32 once. `dx` may equal `dy` or `x`.
///
/// # Safety
/// `x`, `dy` valid for reading and `dx` for writing n floats (dx the same as one or overlapping
/// neither).
#[inline(never)]
pub unsafe fn grad_dx(
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    n: usize,
    mu_in: f64,
    [a, b, k]: [f64; 3],
) {
    for i in 0..n {
        *dx.add(i) = ((*dy.add(i) as f64 * a + k) + (*x.add(i) as f64 - mu_in) * b) as f32;
    }
}

/// (sum dy, sum dy (x - hi)) of one row in f64: the backward row sums of a row whose var + eps
/// is out of range (`out_of_range`: its f32 products may be subnormal), or of one whose f32 sums
/// overflowed.
///
/// # Safety
/// `x`, `dy` valid for reading n floats.
#[inline(never)]
pub unsafe fn grad_sums_f64(x: *const f32, dy: *const f32, n: usize, hi: f32) -> (f64, f64) {
    let (mut g, mut p) = (0.0f64, 0.0f64);
    let hi = hi as f64;
    for i in 0..n {
        let d = *dy.add(i) as f64;
        g += d;
        p += d * (*x.add(i) as f64 - hi);
    }
    (g, p)
}

/// sum dy ((x - c) - err) in f64 about a centre c + err (`nd_grad`: a mixed mean mu and its
/// rounding, `layout::Stats::err`, for a row of non-finite sum dy or one whose centre lies far
/// from mu).
///
/// # Safety
/// `x`, `dy` valid for `n` f32.
pub unsafe fn grad_sums_f64_about(
    x: *const f32,
    dy: *const f32,
    n: usize,
    (c, err): (f64, f64),
) -> f64 {
    let mut p = 0.0f64;
    for i in 0..n {
        p += *dy.add(i) as f64 * ((*x.add(i) as f64 - c) - err);
    }
    p
}

/// Per-call bounds from O(N + C) statistics, by which a call can skip the per-row bound tests:
/// when they hold, no row of the call is wide. Every |x - hi| and |mean| of a row follows from
/// its sample's LN statistics: var_ln = mean_c (var_in + (mu_in - mu_ln)^2), so var_in and
/// (mu_in - mu_ln)^2 are at most C var_ln (taken twice for rounding). NaN or Inf anywhere makes
/// them fail, and then the per-row tests decide.
pub struct CallBounds {
    /// Lower and upper bound of var + eps over the rows.
    pub ve_min: f64,
    pub ve_max: f64,
    /// Bound of (M - 1) var_in over the rows.
    pub m1_var: f64,
    /// Bound of |mu_in| over the rows, and of |mu_bn| (0 without the BN statistics).
    pub mu_in: f64,
    pub mu_bn: f64,
    /// Bound of |mu_in - mu_ln|.
    pub ln_spread: f64,
    /// Bound of |mixed mean|.
    pub mu: f64,
    /// max |gamma|, max |beta|.
    pub gamma: f64,
    pub beta: f64,
    /// min |gamma| over the nonzero ones (Inf if none): with `ve_max`, the least nonzero |scale|.
    pub gamma_min: f64,
}

fn max_abs(v: impl Iterator<Item = f64>) -> f64 {
    // NaN makes the result NaN (f64::max would drop it).
    v.fold(0.0, |m, x| {
        let a = if x < 0.0 { -x } else { x };
        if a > m || a != a {
            a
        } else {
            m
        }
    })
}

impl CallBounds {
    /// `w`, `v`: the mixing weights (BN's 0 without BN), `bn`: (mu_bn, var_bn) if mixed in.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c: usize,
        m: usize,
        eps: f64,
        w: [f64; 3],
        v: [f64; 3],
        ln: (&[f64], &[f64]),
        bn: Option<(&[f64], &[f64])>,
        gamma: &[f32],
        beta: &[f32],
    ) -> CallBounds {
        let (mu_ln, var_ln) = ln;
        let abs = |x: f64| if x < 0.0 { -x } else { x };
        let vl_max = max_abs(var_ln.iter().copied());
        let vl_min = var_ln.iter().fold(f64::INFINITY, |m, &x| if x < m || x != x { x } else { m });
        let (vb_max, vb_min, mb) = match bn {
            Some((mu_bn, var_bn)) => (
                max_abs(var_bn.iter().copied()),
                var_bn.iter().fold(f64::INFINITY, |m, &x| if x < m || x != x { x } else { m }),
                max_abs(mu_bn.iter().copied()),
            ),
            None => (0.0, 0.0, 0.0),
        };
        let cv = 2.0 * c as f64 * vl_max;
        let ln_spread = simd_sqrt(cv);
        let mu_in = max_abs(mu_ln.iter().copied()) + ln_spread;
        let (w, v) = ([abs(w[0]), abs(w[1]), abs(w[2])], [abs(v[0]), abs(v[1]), abs(v[2])]);
        let ve_min = v[1] * vl_min + v[2] * vb_min + eps;
        let ve_max = v[0] * cv + v[1] * vl_max + v[2] * vb_max + eps;
        CallBounds {
            ve_min,
            ve_max,
            m1_var: (m as f64 - 1.0) * cv,
            mu_in,
            mu_bn: mb,
            ln_spread,
            mu: w[0] * mu_in + w[1] * (mu_in - ln_spread) + w[2] * mb,
            gamma: max_abs(gamma.iter().map(|&g| g as f64)),
            beta: max_abs(beta.iter().map(|&b| b as f64)),
            gamma_min: gamma.iter().fold(f64::INFINITY, |m, &g| {
                let a = if g < 0.0 { -(g as f64) } else { g as f64 };
                if a > 0.0 && a < m {
                    a
                } else {
                    m
                }
            }),
        }
    }

    /// Whether var + eps of every row is within [LOW, HIGH] (and positive, finite).
    fn in_range(&self) -> bool {
        self.ve_min >= LOW && self.ve_max <= HIGH
    }

    /// Whether every nonzero gamma / sqrt(var + eps) is at least `TINY` (a float32 normal number).
    fn scale_normal(&self) -> bool {
        self.gamma_min >= TINY * simd_sqrt(self.ve_max) * 1.001
    }

    /// Bound of |lo| = |mean - f32(mean)| for a mean of at most `mu` in magnitude.
    fn lo(mu: f64) -> f64 {
        mu * (1.0 / (1u64 << 24) as f64) + 1e-44
    }

    /// Whether no row's normalize sweep can be wide (`normalize_is_wide` false for every row).
    pub fn normalize_ordinary(&self) -> bool {
        // scale^2 <= gamma^2 / ve_min; |mu_in - hi| <= |mu_in| + |hi| with |hi| <= (1 + 2^-23) mu;
        // bias = beta - lo scale.
        let s2 = self.gamma * self.gamma / self.ve_min;
        let d = self.mu_in + 1.001 * self.mu + 1e-44;
        let lo = Self::lo(self.mu);
        let half_spread2 = self.m1_var + d * d + 0.5;
        let terms = half_spread2 * s2 + 2.0 * (self.beta * self.beta + lo * lo * s2);
        self.in_range()
            && self.mu <= LIMIT
            && half_spread2 <= LIMIT * LIMIT / 2.0
            && terms <= LIMIT * LIMIT / 2.0
            && self.scale_normal()
    }

    /// Whether no row's dx sweep can be wide, given `g` >= max |gm| and max |gv| over the rows
    /// (dL/dmu, dL/dvar), `gmb`, `gvb` >= max |gmB|, |gvB|, the mixing weights of the dx call
    /// (`w2`, `v2` 0 without the BN path), `count` its batch size and C, M.
    #[allow(clippy::too_many_arguments)]
    pub fn dx_ordinary(
        &self,
        g: f64,
        gmb: f64,
        gvb: f64,
        w: [f64; 3],
        v: [f64; 3],
        c: f64,
        m: f64,
        count: f64,
    ) -> bool {
        let abs = |x: f64| if x < 0.0 { -x } else { x };
        let (w, v) = ([abs(w[0]), abs(w[1]), abs(w[2])], [abs(v[0]), abs(v[1]), abs(v[2])]);
        // a = gamma s with s = 1/sqrt(var + eps) <= 1/sqrt(ve_min).
        let a = self.gamma / simd_sqrt(self.ve_min);
        // |Gvar_in| and |Gmu_in| (nd_grad_dx::dx), |mu_in - mu_bn| <= |mu_in| + |mu_bn|.
        let g_var = v[0] * g + v[1] * g / c + v[2] * gvb / count;
        let g_mu = w[0] * g
            + w[1] * g / c
            + v[1] * (2.0 / c) * self.ln_spread * g
            + w[2] * gmb / count
            + v[2] * (2.0 / count) * (self.mu_in + self.mu_bn) * gvb;
        let b = g_var * (2.0 / (m - 1.0));
        let lo = Self::lo(self.mu_in);
        let k = g_mu / m + lo * b;
        let half_spread2 = self.m1_var + lo * lo + 0.5;
        let terms = half_spread2 * (b * b) + k * k;
        self.in_range()
            && a <= LIMIT
            && half_spread2 <= LIMIT * LIMIT / 2.0
            && terms <= REST * REST / 2.0
            && self.scale_normal()
    }
}

fn simd_sqrt(x: f64) -> f64 {
    crate::simd::sqrt_f64(x)
}
