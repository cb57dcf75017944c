// sn1d_bwd_element.wgsl: one element's gradient terms for layout "1d" (sn1d_bwd_reduce,
// sn1d_bwd_wide_reduce; included after common.wgsl and backward_common.wgsl, with their
// `groups` and `affine` bindings). Not a shader on its own.

// Whether an element needs wide_element: its LN or BN statistics are scaled (F_SCALED), its
// |dy| passes DY_MAX, or its gamma / std is factor-wide (common.wgsl). sn1d_bwd_reduce tests
// the first two per element (element_is_wide_hot) and the last per tile column.
fn element_is_wide(ln: Group, bn: Group, c: u32, d: f32) -> bool {
  let m = mix_add(mix_first(0u, ln.hi, ln.lo, ln.variance, ln.flags), 1u, bn.hi, bn.lo, bn.variance, bn.flags);
  return is_scaled(ln.flags | bn.flags) || dy_is_big(d) || factor_wide(affine[c], m.variance + P.eps);
}

fn element_hot(ln: Group, bn: Group, c: u32, xv: f32, d: f32) -> Grad {
  let m = mix_add(mix_first(0u, ln.hi, ln.lo, ln.variance, ln.flags), 1u, bn.hi, bn.lo, bn.variance, bn.flags);
  if (mixed_bad(m)) {
    return Grad(vec4<f32>(0.0, 0.0, 0.0, d), vec4<f32>(0.0), vec4<f32>(0.0), G_BAD);
  }
  let s = inv_std(m);
  let gamma = affine[c];
  let xh = ((xv - m.hi) - m.lo) * s;
  let gm = -s * gamma * d;
  let gv = -0.5 * (s * s) * gamma * d * xh;
  let a = vec4<f32>(gm * centred(m, ln.hi, ln.lo), gm * centred(m, bn.hi, bn.lo), 0.0, gm * (m.hi + m.lo));
  let b = vec4<f32>(gv * (ln.variance - m.variance), gv * (bn.variance - m.variance), 0.0, gv * m.variance);
  return Grad(vec4<f32>(gm, gv, d * xh, d), a, b, 0u);
}

// Any element, wide or not (sn1d_bwd_wide_reduce).
fn element(n: u32, c: u32, xv: f32, d: f32) -> Grad {
  let ln = groups[n - P.row_base];
  let bn = groups[P.n + c - P.stat_bn_base];
  if (element_is_wide(ln, bn, c, d)) {
    return wide_element(ln, bn, c, xv, d);
  }
  return element_hot(ln, bn, c, xv, d);
}

fn wide_element(ln: Group, bn: Group, c: u32, xv: f32, dv: f32) -> Grad {
  let t_ln = group_term(ln);
  let t_bn = group_term(bn);
  var w: WideMap;
  if (is_scaled(ln.flags | bn.flags)) {
    w = wide_map(t_ln, t_bn, Term(0.0, 0.0, 0.0, 0u), 1.0, 0.0);
  } else {
    let m = mix_add(mix_first(0u, ln.hi, ln.lo, ln.variance, ln.flags), 1u, bn.hi, bn.lo, bn.variance, bn.flags);
    w = WideMap(m.hi, m.lo, m.variance, inv_std(m), 0.0, 0, mixed_bad(m), false, 0);
  }
  let d_unit = dy_unit(select(0.0, abs(dv), class_bits(dv) == 0u));
  let d = scale2(dv, -d_unit);
  if (w.bad) {
    return Grad(vec4<f32>(0.0, 0.0, 0.0, d), vec4<f32>(0.0), vec4<f32>(0.0), g_flags(G_BAD, 0, 0, d_unit));
  }
  if (w.var_inf) {
    // s = 0: gm, gv, dgamma and the mean dots are 0, the variance dots 0 * Inf = NaN.
    return Grad(vec4<f32>(0.0, 0.0, 0.0, d), vec4<f32>(0.0), vec4<f32>(0.0), g_flags(G_VNAN, 0, 0, d_unit));
  }
  let s = w.scale;
  // gamma = gamma' 2^g apart (gamma s may pass float32's range): grad_gamma_apart.
  let g = gamma_exp(affine[c]);
  let gamma = gamma_mantissa(affine[c]);
  let xh = ((scale2(xv, -w.e) - w.hi) - w.lo) * s;
  let gm = -s * gamma * d;
  let gv = -0.5 * (s * s) * gamma * d * xh;
  let a = vec4<f32>(gm * wide_centred(t_ln, w), gm * wide_centred(t_bn, w), 0.0, gm * (w.hi + w.lo));
  let b = vec4<f32>(gv * (wide_var(t_ln, w) - w.variance), gv * (wide_var(t_bn, w) - w.variance), 0.0, gv * w.variance);
  return grad_gamma_apart(vec4<f32>(gm, gv, d * xh, d), a, b, d_unit - w.e, d_unit - 2 * w.e, d_unit, g);
}

fn element_is_wide_hot(ln: Group, bn: Group, d: f32) -> bool {
  return is_scaled(ln.flags | bn.flags) || dy_is_big(d);
}

// Whether |d| passes DY_MAX and is finite (by bits): NaN and infinite dy are no reason to go
// wide (their results are IEEE's, as element_hot forms them).
fn dy_is_big(d: f32) -> bool {
  // DY_MAX < |d| < Inf as one unsigned comparison (the subtraction wraps below DY_MAX).
  let lo = bitcast<u32>(DY_MAX) + 1u;
  return (bitcast<u32>(d) & 0x7fffffffu) - lo < 0x7f800000u - lo;
}
