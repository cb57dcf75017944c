// sn_bwd_reduce.wgsl: backward step 1 of layout "nd", the one pass over (x, dy) that gathers
// per-row sums. Rows are cut into the segments of the forward's sn_stats (the same plan
// arithmetic); for segment s of row r = n*C + c, with (hi, lo) = mu[r] of the saved forward
// statistics (the IN summary rows[r] mixed with groups[n] (LN) and groups[N + c] (BN)):
//   S1[s] = sum_{i in s} dy[i]
//   S2[s] = sum_{i in s} dy[i] * (x[i] - c) - ((hi - c) + lo) * S1[s]
//                                              (= sum dy * (x - mu), not yet * s)
//   MX[s] = max_{i in s} |dy[i]|
// written as bparts[s] = (S1, S2, S2_lo, D) (words; D = 0: units of 1, see sn_bwd_wide_reduce;
// PART_MX with MX's exponent field there, read as 0 by part_word),
// S2 a float32 pair (S2 + S2_lo), or (S1, S2, MX, D) for the segments listed for
// sn_bwd_wide_reduce, which reads MX; and seg_lo[s] = S1_lo, S1 + S1_lo the sum as a float32
// pair (0 where it is not finite or listed), for sn_bwd_rows' per-row work in pairs.
// with c = long_centre(m, p) (backward_common.wgsl: the 12-bit cut coarse12(hi + lo), or f32(hi +
// lo) for a row narrower than the cut's move), so that x - c is exact (|mu| ~ 1e4 with std ~ 1
// loses nothing), and mu - c (an exact pair, centre_offset) taken off once, by exact products of the pair sums: lo subtracted
// from every x - hi, or a centre finer than x, rounds all x of a binade alike, an error ~2^-25
// sum(dy) per element that dy of one sign makes systematic (3e-5 relative on dgamma at M = 4e6).
// Rows longer than one segment keep S2 = sum dy (x - c) per segment: sn_bwd_rows takes (mu - c)
// S1 off their total. A row whose
// statistics are flagged (it holds a non-finite x, M = 1, ...) gets S2 = 0: the reference's
// results there are NaN and sn_bwd_rows marks them so; S1 still counts, as dbeta needs it.
// A row with scaled statistics (F_SCALED) or a mixed mean far from its data (far_exp) gets
// S2 = 0 too: sn_bwd_wide_reduce sums it again, as it does every segment whose MX passes DY_MAX,
// and a row of one segment whose S2 may have lost its terms below float32's normal range (`lifted`).
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
@group(0) @binding(7) var<storage, read_write> seg_lo: array<f32>;

var<workgroup> w_s: array<vec3<f32>, 256>;
var<workgroup> w_s1_lo: array<f32, 256>;
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
  // S1 and S2 as running float32 pairs (pair.wgsl: sum_add): S2's terms dy (x - c) share the
  // sign of dy (x - mu) offset by mu - c, so float32 partial sums grow with the segment; with dy
  // of one sign, rows of 262144 floats of mean 1000 (std 1) gave dgamma 1.2x its tolerance off.
  // S1's pair serves the lo S1 that S2 takes off below.
  var s1 = vec2<f32>(0.0);
  var s2 = vec2<f32>(0.0);
  // MX by the bits of |dy| (an integer max, as cheap as the float one): a subnormal dy, which a
  // GPU may flush in float arithmetic (lavapipe does), keeps its size, and NaN its class.
  var mx = 0u;
  var scaled = false;
  var keep = false;
  var lo = 0.0;
  var lo_hi = 0.0;
  var mix = Mixed();
  var summary = Partial();
  var centre = 0.0;
  var lost_e = -1000;
  let live = seg < P.seg_end;
  if (live) {
    let row = seg / P.chunks;
    let k = seg % P.chunks;
    let n = row / P.c;
    let c = row - n * P.c;
    // Selects rather than a branch on the uniform flag around the load: lavapipe (Mesa 22.3)
    // compiles a shader again at a dispatch, with the values of the uniforms its if conditions
    // read made constants, for as long as those values shrink it by half, and never frees those
    // variants. With the branch, every training backward of a batch of 3 samples or more (not
    // of 2) kept ~750 KB for good (tests/webgpu_memory_test.ts). The index stays in bounds.
    let use_bn = (P.flags & P_USING_BN) != 0u;
    let bn_at = groups[select(0u, P.n + c - P.stat_bn_base, use_bn)];
    let bn = Group(
      select(0.0, bn_at.hi, use_bn),
      select(0.0, bn_at.lo, use_bn),
      select(0.0, bn_at.variance, use_bn),
      select(0u, bn_at.flags, use_bn),
      select(0.0, bn_at.var_lo, use_bn),
      select(0.0, bn_at.fine, use_bn),
      select(0.0, bn_at.mean_rest, use_bn),
      select(0.0, bn_at.fine_rest, use_bn),
    );
    let p = rows[row - P.row_base];
    let m = nd_mix(p, groups[n - P.row_base / P.c], bn);
    mix = m;
    summary = p;
    // A mixed mean far from the row's data (an evaluation on a running_mean ~1e38 over a std
    // of 1): dy (x - mu) could overflow float32, so sn_bwd_wide_reduce sums it in units.
    scaled = is_scaled(m.flags) || far_exp(m.lo) > 0;
    // (A mix whose var + eps is 0 keeps its sums too: a tiny variance weight can take it there,
    // mix_var_below_normal, and sn_bwd_rows' wide_row then takes its std from wide_map.)
    keep = (m.flags & F_CLASS) == 0u && !scaled;
    // Rows longer than one segment: about c = long_centre alone (the cut coarse12(hi + lo), or
    // f32(hi + lo) for a row narrower than the cut's move); sn_bwd_rows subtracts (mu - c) S1
    // (see the top).
    let long = P.chunks > 1u;
    let hi = long_centre(m, p);
    centre = hi;
    let offset = centre_offset(m, hi);
    lo_hi = select(offset.x, 0.0, long);
    lo = select(offset.y, 0.0, long);
    let row_start = row * P.m;
    let s = row_start + k * P.seg_len - P.elem_base;
    let e = min(row_start + (k + 1u) * P.seg_len, row_start + P.m) - P.elem_base;
    // The exponent of what S2 in units of 1 may lose below float32's normal range: a flushed
    // product (below 2^-126) or a subnormal dy read as 0 times x - c, |x - c| < 2^xe (x's
    // largest field, c's exponent), per element. None for a row of 0 about c = 0 (its terms are
    // 0) or a long row (its S2 is about c, and long_lift takes its tiny segments).
    let xe = max(i32(max_field(p.flags)) - 127, exponent_of(hi) + 1) + 1;
    let spread = (max_field(p.flags) != 0u) | (hi != 0.0);
    lost_e = select(-1000, max(xe, 0) - 126 + 33 - i32(countLeadingZeros(e - s)), spread & !long & keep);
    let body_s = min((s + 3u) & ~3u, e);
    let body_e = max(body_s, e & ~3u);
    // Terms about c alone; ((hi - c) + lo) S1 is taken off the sums below, once: subtracting lo
    // from every x - hi rounded every element of a binade of the results alike, an error ~2^-25
    // |x - hi| per element that dy of one sign makes systematic (dgamma of a BN-converged mixing
    // at [64, 16, 32, 32], data of mean 100, dy = 1: 21x its tolerance).
    for (var i = s + t; i < body_s; i += g) {
      let d = load_dy(i);
      sum_add(&s1, d);
      sum_add(&s2, select(0.0, d * (load_x(i) - hi), keep));
      mx = max(mx, bitcast<u32>(d) & 0x7fffffffu);
    }
    for (var q = (body_s >> 2u) + t; q < (body_e >> 2u); q += g) {
      let d = dy[q];
      let xc = x[q] - vec4<f32>(hi);
      sum4_add(&s1, d);
      sum4_add(&s2, select(vec4<f32>(0.0), d * xc, keep));
      let ad = bitcast<vec4<u32>>(d) & vec4<u32>(0x7fffffffu);
      mx = max(mx, max(max(ad.x, ad.y), max(ad.z, ad.w)));
    }
    for (var i = body_e + t; i < e; i += g) {
      let d = load_dy(i);
      sum_add(&s1, d);
      sum_add(&s2, select(0.0, d * (load_x(i) - hi), keep));
      mx = max(mx, bitcast<u32>(d) & 0x7fffffffu);
    }
  }
  w_s[lid] = vec3<f32>(s1.x, s2.x, bitcast<f32>(mx));
  w_s1_lo[lid] = s1.y;
  w_s2_lo[lid] = s2.y;
  workgroupBarrier();
  for (var stride = g >> 1u; stride > 0u; stride = stride >> 1u) {
    if (t < stride) {
      let o = w_s[lid + stride];
      let s1_sum = sum_merge(vec2<f32>(w_s[lid].x, w_s1_lo[lid]), vec2<f32>(o.x, w_s1_lo[lid + stride]));
      let s2_sum = sum_merge(vec2<f32>(w_s[lid].y, w_s2_lo[lid]), vec2<f32>(o.y, w_s2_lo[lid + stride]));
      w_s[lid] = vec3<f32>(s1_sum.x, s2_sum.x, bitcast<f32>(max(bitcast<u32>(w_s[lid].z), bitcast<u32>(o.z))));
      w_s1_lo[lid] = s1_sum.y;
      w_s2_lo[lid] = s2_sum.y;
    }
    workgroupBarrier();
  }
  if (live && t == 0u) {
    let mxs = w_s[lid].z;
    // (A NaN or infinite MX too: sn_bwd_wide_reduce takes the unit of the finite dy; and a
    // subnormal MX, every dy of the segment subnormal, which takes the unit 2^-126 there: in
    // units of 1 a GPU that flushes subnormals read them as 0, dgamma 0 for 3.6e29 under dy 1e-40
    // where xhat is ~2^230.)
    // (And a segment whose products dy (x - c) all lie below 2^-90, low_products: float32 may
    // flush them here.)
    let other = (scaled || class_bits(mxs) != 0u || mxs > DY_MAX) | is_subnormal_bits(mxs);
    let low = !other & low_products(mix, summary, centre, mxs);
    let listed0 = other | low;
    // S2 as its pair (hi, lo) in the record's second and third words: long rows' S2 about c is
    // ~(mu - c) S1, far above the row's own sum dy (x - mu), and one float32 per segment left that
    // rounding (IN-converged mixing, rows of 2^20 floats of mean 1000 under dy = 1: dgamma 5e-3
    // where it is ~0, 52x its tolerance; attack helper-62). A listed segment keeps MX there
    // instead, for sn_bwd_wide_reduce, which writes the segment again (its rows never take the
    // plain long sums that read the low word: sn_bwd_rows).
    let s1_pair = vec2<f32>(w_s[lid].x, w_s1_lo[lid]);
    var s2_pair = vec2<f32>(w_s[lid].y, w_s2_lo[lid]);
    // S2 = sum dy (x - c) - ((hi - c) + lo) S1, the products exact (pair_times); where the sums
    // are finite (a listed segment, whose dy may not be, is summed again by sn_bwd_wide_reduce)
    // and kept.
    let finite = (class_bits(s1_pair.x) | class_bits(s2_pair.x)) == 0u;
    if (keep && finite && !listed0) {
      s2_pair = pair_sub_product(s2_pair, vec2<f32>(lo_hi, lo), s1_pair);
    }
    // A segment whose S2 may have lost more than 2^-24 of itself below float32's normal range
    // (lost_e, above; S2 0 included) where dy are not all 0: listed too, sn_bwd_wide_reduce sums
    // it again in the unit of its largest |dy| (issue 10: a row of 0 but one x of 1e3 to 1e5 at
    // a subnormal dy beside dy of 1e-20 at its zeros, S2 ~1e-40 read as 0 in units of 1, gv 0
    // and its sample's LN term with it; tests/partial_zero_rows_test.ts, outlierBesideTiny). Per
    // segment, from exponents: the hot loop is unchanged.
    // For its S2 (lost_e), not a row whose mixed var + eps lies below float32's normal range or
    // near it (its s past 2^51, mix_var_near_subnormal; sn_bwd_rows sends those rows to wide_row): the
    // plain rows keep that s's exponent apart, and sn_bwd_rows' wide_row, which a listed row
    // takes, gave dgamma 0 for -2.0e5 there (constant rows of 1e10 under a variance weight of
    // e^-139 on a running_var of 1e-30, eps 0, dy ~1e-31 beside subnormal ones: attack fuzzer
    // seed 24681, a regression of this gate). That 0 was sn_bwd_wide_reduce's: it took such a
    // row's float32 var + eps of 0 for a std of 0 and dropped S2 (mixed_bad); it keeps them now
    // (attack fuzzer seed 34110, a low_products row of that kind), and 24681 passes without this
    // gate too, which is kept: such a row takes wide_row in any case.
    // And a segment whose largest |dy| lies below 2^-102 (s1_low): S1 = sum dy in units of 1 lost
    // its subnormal dy on a GPU that flushes them (SwiftShader, NVIDIA; lavapipe keeps them), up
    // to 2^-126 each beside dy of a few 2^-126, and gamma s S1 / m takes that into every dx of the
    // row (subnormal dy sweep seed 5099: dx 9.2359e-8 for 9.2399e-8 under gamma 1e30, dy ~1e-37
    // beside subnormal ones). sn_bwd_wide_reduce sums it in that dy's unit. Per segment.
    // The bound grows with the segment: its dy, fewer than 2^b (seg_len's bit length b), lose up
    // to 2^-126 each, so MX below 2^(b - 102) is listed and MX above keeps their loss within
    // 2^-24 of itself. A bound of 2^-102 for all kept MX = 2^-102 in units of 1 beside 1023
    // subnormal dy (a row of 0, or a long row of x spread past 2^11, which neither lost_e nor
    // low_products lists): dbeta lost them, 0.30x its tolerance at segments of 1024 on
    // SwiftShader, ~1.2x at 4096 (tests/subnormal_dy_segment_test.ts).
    // s1_low lists the rows of such a mix too (mix_var_near_subnormal, which the lost_e test leaves
    // out): wide_row read their S1 in units of 1 from here, its subnormal dy flushed (a row of 4
    // zeros under eps 1e-35, dy ~1e-38 beside a subnormal one: dx -4.47e-31 for -4.80e-31 on
    // SwiftShader; tests/near_subnormal_var_s1_test.ts).
    let s1_low = exponent_of(mxs) > -1000 &&
      exponent_of(mxs) < -102 + 32 - i32(countLeadingZeros(P.seg_len));
    // s1_low lists a flagged row's segment too (not kept: a non-finite x; S2 0, its S1 still
    // dbeta's): a row of 1024 beside an x of Infinity lost its subnormal dy the same way.
    let lifted = finite && !listed0 && mxs != 0.0 &&
      ((keep && lost_e > -1000 && exponent_of(s2_pair.x) < lost_e + 24 && !mix_var_near_subnormal(mix)) || s1_low);
    let listed = listed0 | lifted;
    let third = select(s2_pair.y, mxs, listed);
    let s1_sum = two_sum(s1_pair.x, s1_pair.y);
    let at = seg - P.row_base * P.chunks;
    // (An unlisted segment's fourth word: PART_MX and MX's exponent field, for sn_bwd_rows.)
    // (A segment listed for low_products alone: PART_LOW; for its S2 alone: PART_LIFT; both for
    // sn_bwd_wide_reduce.)
    let units = select(
      PART_MX | (bitcast<u32>(mxs) >> 23u),
      select(select(0u, PART_LIFT, lifted), PART_LOW, low),
      listed,
    );
    bparts[at] = vec4<u32>(bitcast<u32>(s1_sum.x), bitcast<u32>(s2_pair.x), bitcast<u32>(third), units);
    seg_lo[at] = select(0.0, s1_sum.y, finite && !listed);
    if (listed) {
      let listed = atomicAdd(&wide_segs[0], 1u);
      atomicStore(&wide_segs[LIST_FIRST + listed], seg);
      // Its reader's dispatch (common.wgsl: list_grid).
      let grid = list_grid(thread_items(listed + 1u));
      atomicMax(&wide_segs[1], grid.x);
      atomicMax(&wide_segs[2], grid.y);
    }
  }
}
