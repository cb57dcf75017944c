// sn_bwd_rows.wgsl: backward step 2 of layout "nd", one thread per row r = n*C + c. It adds the
// row's segment sums (S1, S2) from sn_bwd_reduce and forms the row's gradient sums (a Grad,
// backward_common.wgsl), with s = 1 / sqrt(var + eps) of the row's mixed statistics:
//   gm = -s * gamma[c] * S1              (dL/dmu:  -s * sum dxh)
//   gv = -0.5 * gamma[c] * s^3 * S2      (dL/dvar: -0.5 s^2 sum dxh * xhat, xhat = (x - mu) s)
//   dgamma = s * S2,  dbeta = S1
//   a = gm * (mu_in - mu, mu_ln - mu, mu_bn - mu, mu),  b = gv * (var_k - var ..., var)
// A flagged row (its reference s or xhat is NaN) keeps only dbeta and carries G_BAD.
// Rows seg_first .. seg_end - 1 per dispatch; grads is bound from row elem_base on (the per-row
// records of many rows exceed one storage binding, so they are bound in windows).

//!include common.wgsl
//!include backward_common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> bparts: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> rows: array<Partial>;
@group(0) @binding(3) var<storage, read> groups: array<Group>;
@group(0) @binding(4) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
@group(0) @binding(5) var<storage, read_write> grads: array<Grad>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let r = P.seg_first + linear_group(wid, nwg) * 64u + lid;
  if (r >= P.seg_end) {
    return;
  }
  let n = r / P.c;
  let c = r - n * P.c;
  var sums = vec2<f32>(0.0);
  for (var k = 0u; k < P.chunks; k++) {
    sums += bparts[r * P.chunks + k];
  }
  let p = rows[r];
  let ln = groups[n];
  // A load under a branch on a uniform leaks per dispatch on lavapipe (see sn_mix.wgsl): load
  // an in-bounds entry either way, and zero it without usingBN.
  let use_bn = (P.flags & P_USING_BN) != 0u;
  let bn = select_group(groups[select(n, P.n + c, use_bn)], use_bn);
  let m = nd_mix(p, ln, bn);
  if (mixed_bad(m)) {
    grads[r - P.elem_base] = Grad(vec4<f32>(0.0, 0.0, 0.0, sums.x), vec4<f32>(0.0), vec4<f32>(0.0), G_BAD);
    return;
  }
  let s = inv_std(m);
  let gamma = affine[c];
  let gm = -s * gamma * sums.x;
  let gv = -0.5 * gamma * (s * s) * (s * sums.y);
  let var_in = p.m2 / max(f32(p.count) - 1.0, 1.0);
  var a = vec4<f32>(gm * centred(m, p.shift, p.mean), gm * centred(m, ln.hi, ln.lo), 0.0, 0.0);
  var b = vec4<f32>(gv * (var_in - m.variance), gv * (ln.variance - m.variance), 0.0, 0.0);
  if ((P.flags & P_USING_BN) != 0u) {
    a.z = gm * centred(m, bn.hi, bn.lo);
    b.z = gv * (bn.variance - m.variance);
  }
  a.w = gm * (m.hi + m.lo);
  b.w = gv * m.variance;
  grads[r - P.elem_base] = Grad(vec4<f32>(gm, gv, s * sums.y, sums.x), a, b, 0u);
}
