// sn_bwd_reduce.wgsl: backward step 1 of layout "nd", the one pass over (x, dy) that gathers
// per-row sums. Rows are cut into the segments of the forward's sn_stats (the same plan
// arithmetic); for segment s of row r = n*C + c, with (hi, lo) = mu[r] of the saved forward
// statistics (the IN summary rows[r] mixed with groups[n] (LN) and groups[N + c] (BN)):
//   S1[s] = sum_{i in s} dy[i]
//   S2[s] = sum_{i in s} dy[i] * ((x[i] - hi) - lo)        (= sum dy * (x - mu), not yet * s)
//   MX[s] = max_{i in s} |dy[i]|
// written as bparts[s] = (S1, S2, MX, D) (words; D = 0: units of 1, see sn_bwd_wide_reduce).
// x - hi is exact for x near hi, so |mu| ~ 1e4 with std ~ 1 loses nothing. Rows longer than one
// segment take S2 about c = long_centre(m, p) instead (S2 = sum dy (x - c), backward_common.wgsl:
// the 12-bit cut coarse12(hi + lo), or hi for a row narrower than the cut's move), and
// sn_bwd_rows subtracts (mu - c) S1 from their sum: lo subtracted from every x - hi, or a centre
// finer than x, rounds all x of a binade alike, an error ~2^-25 sum(dy) per element that dy of
// one sign makes systematic (3e-5 relative on dgamma at M = 4e6). A row whose
// statistics are flagged (it holds a non-finite x, M = 1, ...) gets S2 = 0: the reference's
// results there are NaN and sn_bwd_rows marks them so; S1 still counts, as dbeta needs it.
// A row with scaled statistics (F_SCALED) or a mixed mean far from its data (far_exp) gets
// S2 = 0 too: sn_bwd_wide_reduce sums it again, as it does every segment whose MX passes DY_MAX.
// Seg_threads threads share a segment, each summing a strided share one vec4 at a time; they
// then add their sums pairwise in workgroup memory (a tree, so the error grows with log of the
// thread count, not with the segment length).

//!include common.wgsl
//!include backward_common.wgsl
//!include pair.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> rows: array<Partial>;
@group(0) @binding(4) var<storage, read> groups: array<Group>;
@group(0) @binding(5) var<storage, read_write> bparts: array<vec4<u32>>;
// Segments for sn_bwd_wide_reduce: a count (0 when the call starts), then the segments.
@group(0) @binding(6) var<storage, read_write> wide_segs: array<atomic<u32>>;

var<workgroup> w_s: array<vec3<f32>, 256>;
var<workgroup> w_s2_lo: array<f32, 256>;

fn load_x(i: u32) -> f32 {
  return x[i >> 2u][i & 3u];
}

fn load_dy(i: u32) -> f32 {
  return dy[i >> 2u][i & 3u];
}

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let g = P.seg_threads;
  let seg = P.seg_first + linear_group(wid, nwg) * (256u / g) + lid / g;
  let t = lid % g;
  var s1 = 0.0;
  // S2 as a running float32 pair (pair.wgsl: sum_add): its terms dy (x - c) share the sign of
  // dy (x - mu) offset by mu - c, so float32 partial sums grow with the segment; with dy of one
  // sign, rows of 262144 floats of mean 1000 (std 1) gave dgamma 1.2x its tolerance off.
  var s2 = vec2<f32>(0.0);
  var mx = 0.0;
  var scaled = false;
  let live = seg < P.seg_end;
  if (live) {
    let row = seg / P.chunks;
    let k = seg % P.chunks;
    let n = row / P.c;
    let c = row - n * P.c;
    var bn = Group(0.0, 0.0, 0.0, 0u, 0.0);
    if ((P.flags & P_USING_BN) != 0u) {
      bn = groups[P.n + c - P.stat_bn_base];
    }
    let p = rows[row - P.row_base];
    let m = nd_mix(p, groups[n - P.row_base / P.c], bn);
    // A mixed mean far from the row's data (an evaluation on a running_mean ~1e38 over a std
    // of 1): dy (x - mu) could overflow float32, so sn_bwd_wide_reduce sums it in units.
    scaled = is_scaled(m.flags) || far_exp(m.lo) > 0;
    let keep = !mixed_bad(m) && !scaled;
    // Rows longer than one segment: about c = long_centre alone (the cut coarse12(hi + lo), or
    // hi for a row narrower than the cut's move); sn_bwd_rows subtracts (mu - c) S1 (see the top).
    let long = P.chunks > 1u;
    let hi = select(m.hi, long_centre(m, p), long);
    let lo = select(m.lo, 0.0, long);
    let row_start = row * P.m;
    let s = row_start + k * P.seg_len - P.elem_base;
    let e = min(row_start + (k + 1u) * P.seg_len, row_start + P.m) - P.elem_base;
    let body_s = min((s + 3u) & ~3u, e);
    let body_e = max(body_s, e & ~3u);
    for (var i = s + t; i < body_s; i += g) {
      let d = load_dy(i);
      s1 += d;
      sum_add(&s2, select(0.0, d * ((load_x(i) - hi) - lo), keep));
      mx = max(mx, abs(d));
    }
    for (var q = (body_s >> 2u) + t; q < (body_e >> 2u); q += g) {
      let d = dy[q];
      let xc = (x[q] - vec4<f32>(hi)) - vec4<f32>(lo);
      s1 += d.x + d.y + d.z + d.w;
      sum_add(&s2, select(0.0, dot(d, xc), keep));
      let ad = abs(d);
      mx = max(mx, max(max(ad.x, ad.y), max(ad.z, ad.w)));
    }
    for (var i = body_e + t; i < e; i += g) {
      let d = load_dy(i);
      s1 += d;
      sum_add(&s2, select(0.0, d * ((load_x(i) - hi) - lo), keep));
      mx = max(mx, abs(d));
    }
  }
  w_s[lid] = vec3<f32>(s1, s2.x, mx);
  w_s2_lo[lid] = s2.y;
  workgroupBarrier();
  for (var stride = g >> 1u; stride > 0u; stride = stride >> 1u) {
    if (t < stride) {
      let o = w_s[lid + stride];
      let s2_sum = sum_merge(vec2<f32>(w_s[lid].y, w_s2_lo[lid]), vec2<f32>(o.y, w_s2_lo[lid + stride]));
      w_s[lid] = vec3<f32>(w_s[lid].x + o.x, s2_sum.x, max(w_s[lid].z, o.z));
      w_s2_lo[lid] = s2_sum.y;
    }
    workgroupBarrier();
  }
  if (live && t == 0u) {
    let sums = vec3<f32>(w_s[lid].x, w_s[lid].y + w_s2_lo[lid], w_s[lid].z);
    bparts[seg - P.row_base * P.chunks] = vec4<u32>(bitcast<vec3<u32>>(sums), 0u);
    let mxs = w_s[lid].z;
    // (A NaN or infinite MX too: sn_bwd_wide_reduce takes the unit of the finite dy.)
    if (scaled || class_bits(mxs) != 0u || mxs > DY_MAX) {
      let listed = atomicAdd(&wide_segs[0], 1u);
      atomicStore(&wide_segs[LIST_FIRST + listed], seg);
      // Its reader's dispatch (common.wgsl: list_grid).
      let grid = list_grid(thread_items(listed + 1u));
      atomicMax(&wide_segs[1], grid.x);
      atomicMax(&wide_segs[2], grid.y);
    }
  }
}
