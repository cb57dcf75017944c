// sn_normalize.wgsl: the last step of layout "nd", the second and final pass over x. For
// element i of row r = i / M, with (hi, lo, scale, beta) = mixed[r] from sn_mix:
//   y[i] = ((x[i] - hi) - lo) * scale + beta      (= (x - mu) / sqrt(var + eps) * gamma + beta)
// x - hi is exact for x near hi, so |mu| ~ 1e4 with std ~ 1 loses nothing to the subtraction;
// y is NaN where sn_mix marked the row (beta's bits are NaN: y takes them, ~5% faster on
// lavapipe than a NaN made from the uniforms, qnan()). One vec4 per thread; a vec4 that
// straddles two rows (M % 4 != 0) takes each lane's row in turn. Wide rows' y (sn_mix) is
// written again by sn_wide_normalize, dispatched after this pass.

//!include common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
// Bound from row rec_base on (common.wgsl).
@group(0) @binding(3) var<storage, read> mixed: array<vec4<f32>>;

fn apply1(a: vec4<f32>, v: f32) -> f32 {
  return select(((v - a.x) - a.y) * a.z + a.w, a.w, is_nan_marker(a.w));
}

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
  // Element indices from the first element of row rec_base (the bound window of mixed), not
  // global ones less rec_base after the division: ~7% of this pass on lavapipe.
  let first = P.rec_base * P.m;
  let e0 = P.elem_base - first + 4u * q; // lane 0
  let last = min(e0 + 3u, P.total - 1u - first);
  let v = x[q];
  let r0 = e0 / P.m;
  if (r0 == last / P.m) {
    let a = mixed[r0];
    let out = ((v - vec4<f32>(a.x)) - vec4<f32>(a.y)) * a.z + vec4<f32>(a.w);
    y[q] = select(out, vec4<f32>(a.w), vec4<bool>(is_nan_marker(a.w)));
    return;
  }
  var out = vec4<f32>(0.0);
  for (var j = 0u; j < 4u; j++) {
    let e = e0 + j;
    if (e <= last) {
      out[j] = apply1(mixed[e / P.m], v[j]);
    }
  }
  y[q] = out;
}
