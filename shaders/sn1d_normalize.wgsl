// sn1d_normalize.wgsl: the last step of layout "1d", the second and final pass over x [N, C].
// Every element has its own pair of statistics, so the mixing is done here, per element:
//   terms in mixing order: ln (groups[n]), bn (groups[N + c])
//   hi  = the LN group's hi,  lo = wmean_0 * lo_ln + wmean_1 * ((hi_bn - hi) + lo_bn)
//   var = wvar_0 * var_ln + wvar_1 * var_bn
//   y   = ((x - hi) - lo) * (gamma[c] / sqrt(var + eps)) + beta[c]
// and NaN where a term is NaN/infinite in the reference or var + eps <= 0. One vec4 per thread.
// Elements of a scaled group (F_SCALED: wide data) or of a channel where gamma / std may be
// factor-wide (sn_group_stats lists both) are written again by sn1d_wide_normalize.

//!include common.wgsl
//!include sn1d_mix.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
// The LN groups bound from group rec_base on, the BN groups (cgroups) from group chan_base on.
@group(0) @binding(3) var<storage, read> groups: array<Group>;
@group(0) @binding(4) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
@group(0) @binding(5) var<storage, read> cgroups: array<Group>;

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let q = linear_group(wid, nwg) * 256u + lid;
  if (q >= P.vec_count) {
    return;
  }
  let e0 = P.elem_base + 4u * q;
  let v = x[q];
  var out = vec4<f32>(0.0);
  for (var j = 0u; j < 4u; j++) {
    let e = e0 + j;
    if (e < P.total) {
      let n = e / P.c;
      let c = e - n * P.c;
      let ln = groups[n - P.rec_base];
      let bn = cgroups[P.n + c - P.chan_base];
      let gamma = affine[c];
      let beta = affine[P.c + c];
      let m = mix_1d(ln, bn);
      let a = row_affine(m, gamma, beta);
      var d = (v[j] - a.x) - a.y;
      // (x - hi) - lo cancelling by 2^5 or more: lo's float32 rounding may be of x - mu's size,
      // so x - mu from exact pairs (d_pairs_1d in real units, 2^0; rare, so only those elements
      // pay). As sn1d_wide_normalize: not where that gives below 2^-48 of lo (float64's rounding
      // of lo's part, which the reference loses too), nor where it is not finite.
      if (abs(d) < abs(a.y) * 0x1p-5f) {
        let dp = d_pairs_1d(ln, bn, vec2<i32>(0), a.x, v[j]);
        d = select(d, dp, (abs(dp) >= abs(a.y) * 0x1p-48f) & is_finite_bits(dp));
      }
      out[j] = select(d * a.z + a.w, a.w, is_nan_marker(a.w));
    }
  }
  y[q] = out;
}
