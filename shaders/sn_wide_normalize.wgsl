// sn_wide_normalize.wgsl: layout "nd", after sn_normalize: y of the rows whose mix has a scaled
// term (F_SCALED: a wide row, or a row in a wide LN or BN group) written again, in scaled units.
// With the row's terms brought to the unit 2^e of the mix (wide_map, common.wgsl):
//   y[i] = ((x[i] * 2^-e - hi') - lo') * scale' + beta        (NaN where the map is bad)
// x scaled by its bits (scale2), so x spread over +-3e38 or x ~ 1e-40 lose nothing. One thread
// per row segment (sn_stats' segments, dispatched per binding window of x and y): every other
// row costs it a few loads. A separate pass, not a branch in sn_normalize: lavapipe runs both
// sides of a branch whose condition differs between invocations (masked), so there every
// in-range element would pay for this code.

//!include common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<Partial>;
@group(0) @binding(4) var<storage, read> groups: array<Group>;
@group(0) @binding(5) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = P.seg_first + linear_group(wid, nwg) * 64u + lid;
  if (i < P.seg_end) {
    normalize_wide(i);
  }
}

fn normalize_wide(seg: u32) {
  let row = seg / P.chunks;
  let n = row / P.c;
  let c = row - n * P.c;
  let p = rows[row];
  let ln = groups[n];
  // Loaded either way and zeroed without usingBN (see sn_mix.wgsl).
  let use_bn = (P.flags & P_USING_BN) != 0u;
  let bn = select_group(groups[select(n, P.n + c, use_bn)], use_bn);
  if (!is_scaled(p.flags | ln.flags | bn.flags)) {
    return;
  }
  let w = wide_map(nd_terms_in(p), group_term(ln), group_term(bn), affine[c], affine[P.c + c]);
  let row_start = row * P.m;
  let s = row_start + (seg % P.chunks) * P.seg_len - P.elem_base;
  let e = min(s + P.seg_len, row_start + P.m - P.elem_base);
  for (var i = s; i < e; i++) {
    y[i] = select(((scale2(x[i], -w.e) - w.hi) - w.lo) * w.scale + w.beta, qnan(), w.bad);
  }
}
