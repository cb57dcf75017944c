// zero_std_1d.wgsl: what the eps-0 passes of layout "1d" share (sn1d_bwd_zero_std,
// sn1d_zero_std_y; included after common.wgsl, sn1d_mix.wgsl and zero_std.wgsl, not a shader on
// its own).

// flushed_tail (zero_std.wgsl) of wide_map_1d's mean, anchored at BN where BN is the heavier.
fn flushed_tail_1d(ln: Group, bn: Group, e: i32) -> f32 {
  let b = bn_anchors();
  let t_ln = group_term(ln);
  let t_bn = group_term(bn);
  return flushed_tail(pick_term(t_ln, t_bn, b), select(0u, 1u, b), pick_term(t_bn, t_ln, b), select(1u, 0u, b), Term(0.0, 0.0, 0.0, 0u), 2u, e);
}

// x 2^-e - mu of xv in wide_map_1d's unit as sn1d_wide_normalize takes it for y (its d1; keep the
// two in step): from exact pairs (d_pairs_1d) where the words' difference lies within 2^-5 of
// |lo| and the pairs' at or above 2^-48 of it. The eps-0 passes took the words' difference alone,
// 0 for +1e20 in a sample [-1e30, -3.3e29] under equal LN and BN mean weights on a running_mean
// of -2e20 (dgamma NaN for +Infinity; layout "nd": attack fuzzer seed 79106).
fn wide_centre_d_1d(ln: Group, bn: Group, w: WideMap, xv: f32) -> f32 {
  let xs = scale2(xv, -w.e);
  let d0 = (xs - w.hi) - w.lo;
  let dp = d_pairs_1d(ln, bn, units_1d(ln, bn, w.e), w.hi, xs);
  return select(d0, dp, (abs(d0) < abs(w.lo) * 0x1p-5f) & (abs(dp) >= abs(w.lo) * 0x1p-48f));
}
