// backward_common.wgsl: declarations the backward shaders share (included after common.wgsl;
// not a shader on its own). The backward is the chain rule of SN_SPEC, per (n, c) row:
//   s = 1 / sqrt(var + eps),  xhat = (x - mu) * s,  dxh = dy * gamma
//   gm = dL/dmu  = -s * sum_i dxh             gv = dL/dvar = -0.5 * s^2 * sum_i dxh * xhat
//   dgamma += sum_i dy * xhat                  dbeta += sum_i dy
// and the importance-logit dot products a_k = sum gm * mu_k, b_k = sum gv * var_k, which are
// kept centred: a'_k = sum gm * (mu_k - mu) with mu_k - mu formed from hi/lo pairs, so that a
// common offset of 1e4 in the means cancels exactly instead of in float32 sums, plus
// sum gm * mu separately (the backend adds the two in float64; the softmax/sparsestmax
// Jacobians ignore a shift common to every k, so the logit gradients keep the centred precision).

// A set of gradient sums: a row's, a tile line's, or a group's (LN per n, channel per c).
//   s = (gm, gv, dgamma, dbeta)
//   a = (gm * (mu_0 - mu), gm * (mu_1 - mu), gm * (mu_2 - mu), gm * mu)
//   b = (gv * (var_0 - var), gv * (var_1 - var), gv * (var_2 - var), gv * var)
//   flags: G_BAD where the float64 reference has NaN in gm, gv, dgamma and the dots (a statistic
//          of some member is NaN/infinite or var + eps <= 0); dbeta never depends on it.
struct Grad {
  s: vec4<f32>,
  a: vec4<f32>,
  b: vec4<f32>,
  flags: u32,
}

const G_BAD: u32 = 1u;

fn grad_add(p: Grad, q: Grad) -> Grad {
  return Grad(p.s + q.s, p.a + q.a, p.b + q.b, p.flags | q.flags);
}

fn grad_zero() -> Grad {
  return Grad(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), 0u);
}

// Whether the reference's s = 1 / sqrt(var + eps) of these mixed statistics is NaN, or a term
// is scaled (F_SCALED: a wide row or group, whose gradients this backward does not form yet):
// then the row's gradients are NaN.
fn mixed_bad(m: Mixed) -> bool {
  return (m.flags & (F_CLASS | F_SCALED)) != 0u || !(m.variance + P.eps > 0.0);
}

fn inv_std(m: Mixed) -> f32 {
  return 1.0 / sqrt(select(1.0, m.variance + P.eps, m.variance + P.eps > 0.0));
}

// Whether the BN statistics are functions of x (training with BN): only then do the BN
// gradient sums flow back into dx.
fn bn_depends_on_x() -> bool {
  return (P.flags & (P_TRAINING | P_USING_BN)) == (P_TRAINING | P_USING_BN);
}

// mu_k - mu for a term (hi_k, lo_k) of the mix m: exact in hi, so offsets cancel.
fn centred(m: Mixed, hi: f32, lo: f32) -> f32 {
  return ((hi - m.hi) + lo) - m.lo;
}

// The mixed statistics of one row of layout "nd" (as sn_mix forms them): IN from its summary
// p, LN from ln, BN from bn (ignored without usingBN). hi is the row's shift.
fn nd_mix(p: Partial, ln: Group, bn: Group) -> Mixed {
  let var_in = p.m2 / max(f32(p.count) - 1.0, 1.0);
  var m = mix_first(0u, p.shift, p.mean, var_in, p.flags | select(F_NO_VAR, 0u, p.count >= 2u));
  m = mix_add(m, 1u, ln.hi, ln.lo, ln.variance, ln.flags);
  if ((P.flags & P_USING_BN) != 0u) {
    m = mix_add(m, 2u, bn.hi, bn.lo, bn.variance, bn.flags);
  }
  return m;
}

// g where `keep`, else the zero Group: a select, not a branch (see sn_mix.wgsl).
fn select_group(g: Group, keep: bool) -> Group {
  return Group(
    select(0.0, g.hi, keep),
    select(0.0, g.lo, keep),
    select(0.0, g.variance, keep),
    select(0u, g.flags, keep),
  );
}
