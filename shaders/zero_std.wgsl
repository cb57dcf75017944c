// zero_std.wgsl: what the passes of eps 0 share (included after common.wgsl; not a shader on its
// own): rows or elements whose mix has std 0 (every term of nonzero variance weight has variance
// 0, eps 0), where the float64 reference's s = 1 / sqrt(var + eps) is +Infinity. Those passes
// (sn_bwd_zero_std, sn1d_bwd_zero_std, sn_bwd_zero_std_fix, sn_zero_std_y, sn1d_zero_std_y) are
// compiled on the first call with eps 0 and dispatched only for such calls: SwiftShader's
// compile time grows with a shader's size, and every eagerly compiled pass pays for what it
// holds (a fix inside the hot passes made headless Chromium's suite ~3x slower).

// Whether a mix of terms t0, t1, t2 (weights 0, 1, 2) has std 0 in the reference: std_zero, with
// no flagged term (NaN or infinite statistics; an infinite variance, even of weight 0).
fn zero_std_mix(t0: Term, t1: Term, t2: Term) -> bool {
  return std_zero(t0, t1, t2) && ((t0.flags | t1.flags | t2.flags) & (F_CLASS | F_VAR_INF)) == 0u;
}

// Whether the reference's s or mu of the mix is NaN: a flagged term of any weight (0 times NaN
// or an infinity is NaN), or an infinite variance of weight 0 (null_var_inf).
fn mix_flagged(t0: Term, t1: Term, t2: Term) -> bool {
  return (((t0.flags | t1.flags | t2.flags) & F_CLASS) != 0u) | null_var_inf(t0, t1, t2);
}

// Whether some term counts in the mix (common.wgsl counts). Where none does (every term of
// nonzero weight a term of zeros: an evaluation on a running_mean and running_var of 0 under BN
// alone) the mixed mean is exactly 0 and x - mu is x. (Not sets_unit, which running buffers
// never meet: a running_mean of 2 was then taken for 0, y +Infinity for -Infinity.)
fn some_term_counts(t0: Term, t1: Term, t2: Term) -> bool {
  return counts(t0, P.wmean.x, P.wvar.x) || counts(t1, P.wmean.y, P.wvar.y) || counts(t2, P.wmean.z, P.wvar.z);
}

// x - mu of a mix of std 0 as the forward takes it for y (wide_map's units), or x where no term
// sets the unit (mu = 0).
fn zero_std_centred(xv: f32, w: WideMap, has_unit: bool) -> f32 {
  return select(xv, (scale2(xv, -w.e) - w.hi) - w.lo, has_unit);
}

// The class (F_NAN, F_POS_INF, F_NEG_INF) of the reference's dgamma term dy ((x - mu) s) with
// s = +Infinity, from d = x - mu: the infinity of the signs of dy and d, NaN where either is 0
// (0 * Inf) or dy is NaN.
fn zero_std_term(d: f32, g: f32) -> u32 {
  let nan = (bitcast<u32>(d) << 1u) == 0u || (bitcast<u32>(g) << 1u) == 0u || (class_bits(g) & F_NAN) != 0u;
  return select(select(F_POS_INF, F_NEG_INF, (sign_bit(d) ^ sign_bit(g)) != 0u), F_NAN, nan);
}
