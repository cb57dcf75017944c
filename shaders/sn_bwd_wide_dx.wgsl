// sn_bwd_wide_dx.wgsl: the last backward step of layout "nd", after sn_bwd_dx: dx of the wide
// rows (their map's fourth word WIDE_MARK | (D + 512) | (U + 512) << 10, sn_bwd_wide_coef),
// written again in scaled units, with u and K the unit and shift of the row's own summary:
//   dx[i] = 2^U (dy[i] 2^-D gs' + (x[i] 2^-u - K) B' + A')   (scale2: exact, by bits)
// and NaN where the map's A is NaN. The rows come from a list sn_bwd_coef fills; a workgroup
// per row, over its segments in this dispatch's window of x, dy and dx.

//!include common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<storage, read> coef: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> rows: array<Partial>;
// The wide rows: a count, then the rows (sn_bwd_coef).
@group(0) @binding(6) var<storage, read> wide_rows: array<u32>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  // Workgroups take the listed rows in turn, their threads the row's elements in this
  // dispatch's window: the loop's bound is one load from one address, so without wide rows
  // lavapipe skips its code.
  let count = wide_rows[0];
  for (var k = linear_group(wid, nwg); k < count; k += nwg.x * nwg.y) {
    dx_row(wide_rows[LIST_FIRST + k], lid);
  }
}

fn dx_row(row: u32, lid: u32) {
  let k = coef[row - P.row_base];
  let p = rows[row - P.row_base];
  let f = bitcast<vec4<f32>>(k);
  let d_unit = i32(k.w & 0x3ffu) - 512;
  let u = i32((k.w >> 10u) & 0x3ffu) - 512;
  let x_unit = unit_of(p.flags);
  let bad = is_nan_marker(f.z);
  let s1 = min((row + 1u) * P.chunks, P.seg_end);
  for (var seg = max(row * P.chunks, P.seg_first); seg < s1; seg++) {
    let s = row * P.m + (seg % P.chunks) * P.seg_len - P.elem_base;
    let e = min(s + P.seg_len, row * P.m + P.m - P.elem_base);
    for (var i = s + lid; i < e; i += 64u) {
      let v = scale2(dy[i], -d_unit) * f.x + (scale2(x[i], -x_unit) - p.shift) * f.y + f.z;
      dx[i] = select(scale2(v, u), qnan(), bad);
    }
  }
}
