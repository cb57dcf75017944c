// sn1d_bwd_zero_std.wgsl: backward of layout "1d" with eps 0 only (zero_std.wgsl), a thread per
// element of this dispatch's window: the class of the reference's dgamma term dy ((x - mu) s)
// where the element's mix of LN and BN has std 0 (s = +Infinity), F_NAN where its reference
// dgamma term is NaN (mix_flagged), ORed into its channel's word of `classes` (zeroed when the
// call starts), for sn_bwd_zero_std_fix. x - mu as sn1d_wide_normalize takes it for y.

//!include common.wgsl
//!include sn1d_mix.wgsl
//!include zero_std.wgsl
//!include zero_std_1d.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
// The forward's statistics: LN groups from sample row_base on, BN groups from N - stat_bn_base.
@group(0) @binding(3) var<storage, read> groups: array<Group>;
@group(0) @binding(4) var<storage, read_write> classes: array<atomic<u32>>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = linear_group(wid, nwg) * 64u + lid;
  let e = P.elem_base + i;
  if (i >= 4u * P.vec_count || e >= P.total) {
    return;
  }
  let n = e / P.c;
  let c = e - n * P.c;
  let ln = fine_group(groups[n - P.row_base]);
  let bn = fine_group(groups[P.n + c - P.stat_bn_base]);
  let none = Term(0.0, 0.0, 0.0, 0u);
  if (!zero_std_mix(group_term(ln), group_term(bn), none)) {
    if (mix_flagged(group_term(ln), group_term(bn), none)) {
      atomicOr(&classes[c], F_NAN);
    }
    return;
  }
  let w = wide_map_1d(ln, bn, 1.0, 0.0);
  let has_unit = some_term_counts(group_term(ln), group_term(bn), none);
  let dw = zero_std_centred(wide_centre_d_1d(ln, bn, w, x[i]), x[i], has_unit, flushed_tail_1d(ln, bn, w.e));
  // Where sn1d_zero_std_y takes x - mu from fine_centred_d (fine_mean_takes, zero_std.wgsl).
  let fc = fine_centred(group_term(ln), group_term(bn), none, w);
  let d = select(dw, fine_centred_d(fc, x[i]), has_unit & fine_mean_takes(fc, x[i]));
  atomicOr(&classes[c], zero_std_term(d, dy[i]));
}
