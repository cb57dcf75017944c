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
  let ln = groups[n];
  let bn = groups[P.n + c];
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
  let ca = vec4<f32>(wide_centred(t_ln, w), wide_centred(t_bn, w), 0.0, w.hi + w.lo);
  let vb = vec4<f32>(wide_var(t_ln, w) - w.variance, wide_var(t_bn, w) - w.variance, 0.0, w.variance);
  // grad_gamma_apart (backward_common.wgsl), with the dots' factor 2^(g - k) applied while they
  // are formed rather than after: in a mix whose unit eps sets (x ~ 1e-19, eps 1e-5), the
  // variance differences are ~1e-34 in that unit and gv * (var_k - var) fell below float32's
  // normal range (0) before gamma's 2^g (1e33) could bring it back, so the var_weight
  // gradient came out 0 where the reference has ~4e20.
  let a0 = gm * ca;
  let b0 = gv * vb;
  let mx = max(finite_abs(a0), finite_abs(b0));
  let k = max(0, exponent_of(max(max(mx.x, mx.y), max(mx.z, mx.w))) + g - 100);
  let s4 = vec4<f32>(gm, gv, scale2(d * xh, -k), scale2(d, -k));
  let a = vec4<f32>(dot_scaled(gm, ca.x, g - k), dot_scaled(gm, ca.y, g - k), 0.0, dot_scaled(gm, ca.w, g - k));
  let b = vec4<f32>(dot_scaled(gv, vb.x, g - k), dot_scaled(gv, vb.y, g - k), 0.0, dot_scaled(gv, vb.w, g - k));
  let e0 = d_unit - w.e + g;
  let e1 = d_unit - 2 * w.e + g;
  return Grad(s4, a, b, g_flags(0u, e0, e1, d_unit + k));
}

// p q 2^k for a dot term (k <= 127; |p q 2^k| stays below ~2^101, see wide_element): the
// product first where it is a normal float32 well above the subnormal range, else the factors
// scaled by halves of 2^k first, so that a product below 2^-100 keeps its value where 2^k
// brings it back into range. Exact powers of two; NaN and the infinities as the product makes.
fn dot_scaled(p: f32, q: f32, k: i32) -> f32 {
  let t = p * q;
  if (exponent_of(t) > -100) {
    return scale2(t, k);
  }
  return (p * pow2(k / 2)) * (q * pow2(k - k / 2));
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
