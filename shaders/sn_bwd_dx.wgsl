// sn_bwd_dx.wgsl: the last backward step of layout "nd", the second and final pass over
// (x, dy). For element i of row r = i / M, with (gs, B, A, K) = coef[r] from sn_bwd_coef:
//   dx[i] = dy[i] * gs + (x[i] - K) * B + A
// and NaN where sn_bwd_coef marked the row (A's bits are NaN: dx takes them, as sn_normalize
// takes beta's). Wide rows' dx is written again by
// sn_bwd_wide_dx, after this pass. x - K is exact for x near K (the
// row's first element), so a large offset costs nothing. One vec4 per thread; a vec4 that
// straddles two rows (M % 4 != 0) takes each lane's row in turn.

//!include common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> coef: array<vec4<f32>>;

fn apply1(k: vec4<f32>, xv: f32, d: f32) -> f32 {
  return select(d * k.x + (xv - k.w) * k.y + k.z, k.z, is_nan_bits(k.z));
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
  // Element indices from the first element of row row_base (the bound window of coef), not
  // global ones less row_base after the division: ~7% of this pass on lavapipe.
  let first = P.row_base * P.m;
  let e0 = P.elem_base - first + 4u * q; // lane 0
  let last = min(e0 + 3u, P.total - 1u - first);
  let xv = x[q];
  let d = dy[q];
  let r0 = e0 / P.m;
  if (r0 == last / P.m) {
    let k = coef[r0];
    let out = d * k.x + (xv - vec4<f32>(k.w)) * k.y + vec4<f32>(k.z);
    dx[q] = select(out, vec4<f32>(k.z), vec4<bool>(is_nan_bits(k.z)));
    return;
  }
  var out = vec4<f32>(0.0);
  for (var j = 0u; j < 4u; j++) {
    let e = e0 + j;
    if (e <= last) {
      out[j] = apply1(coef[e / P.m], xv[j], d[j]);
    }
  }
  dx[q] = out;
}
