// sn_bwd_dx.wgsl: the last backward step of layout "nd", the second and final pass over
// (x, dy). For element i of row r = i / M, with (gs, B, A, K) = coef[r] from sn_bwd_coef:
//   dx[i] = dy[i] * gs + (x[i] - K) * B + A
// and NaN where sn_bwd_coef marked the row (A's bits are NaN). A wide row (fourth word
// WIDE_MARK | (D + 512) | (U + 512) << 10; K and the unit u of the row's own summary rows[r])
// has its map in scaled units:
//   dx[i] = 2^U (dy[i] 2^-D gs' + (x[i] 2^-u - K) B' + A')   (scale2: exact, by bits). x - K is exact for x near K (the
// row's first element), so a large offset costs nothing. One vec4 per thread; a vec4 that
// straddles two rows (M % 4 != 0) takes each lane's row in turn.

//!include common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> coef: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> rows: array<Partial>;

fn is_wide(k: vec4<u32>) -> bool {
  return (k.w & WIDE_MARK) == WIDE_MARK;
}

fn apply_wide(r: u32, k: vec4<u32>, xv: f32, d: f32) -> f32 {
  let f = bitcast<vec4<f32>>(k);
  let d_unit = i32(k.w & 0x3ffu) - 512;
  let u = i32((k.w >> 10u) & 0x3ffu) - 512;
  let p = rows[r];
  let v = scale2(d, -d_unit) * f.x + (scale2(xv, -unit_of(p.flags)) - p.shift) * f.y + f.z;
  return select(scale2(v, u), qnan(), is_nan_marker(f.z));
}

fn apply1(r: u32, xv: f32, d: f32) -> f32 {
  let w = coef[r];
  if (is_wide(w)) {
    return apply_wide(r, w, xv, d);
  }
  let k = bitcast<vec4<f32>>(w);
  return select(d * k.x + (xv - k.w) * k.y + k.z, qnan(), is_nan_marker(k.z));
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
  let e0 = P.elem_base + 4u * q; // global index of lane 0
  let last = min(e0 + 3u, P.total - 1u);
  let xv = x[q];
  let d = dy[q];
  let r0 = e0 / P.m;
  if (r0 == last / P.m) {
    let w = coef[r0];
    if (is_wide(w)) {
      dx[q] = vec4<f32>(apply_wide(r0, w, xv.x, d.x), apply_wide(r0, w, xv.y, d.y), apply_wide(r0, w, xv.z, d.z), apply_wide(r0, w, xv.w, d.w));
      return;
    }
    let k = bitcast<vec4<f32>>(w);
    let out = d * k.x + (xv - vec4<f32>(k.w)) * k.y + vec4<f32>(k.z);
    dx[q] = select(out, vec4<f32>(qnan()), vec4<bool>(is_nan_marker(k.z)));
    return;
  }
  var out = vec4<f32>(0.0);
  for (var j = 0u; j < 4u; j++) {
    let e = e0 + j;
    if (e <= last) {
      out[j] = apply1(e / P.m, xv[j], d[j]);
    }
  }
  dx[q] = out;
}
