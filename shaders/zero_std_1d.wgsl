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
