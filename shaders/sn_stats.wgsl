// sn_stats.wgsl: step 1 of layout "nd" (SwitchNorm2d/3d), the only pass besides normalize that
// reads x. x is [N, C, M] row-major; row r = n*C + c holds M elements. Each row is cut into
// segments of at most Params.seg_len elements; for segment s of row r it computes
//   K      = x[first element of s]                          (0 if that is not finite; cut to
//            12 significant bits when rows have several segments, see main)
//   count  = number of finite x[i] in s
//   mean   = (1/count) * sum_{i in s, x[i] finite} (x[i] - K)
//   M2     = sum_{i in s, x[i] finite} (x[i] - K - mean)^2
//   flags  = F_NAN / F_POS_INF / F_NEG_INF for the non-finite x[i] in s, and the magnitude
//            field of max |x[i]| over the finite x[i] (F_FIELD, common.wgsl; integer max of bits)
// Each thread keeps a Welford summary of its share of d = x - K, folding in a vec4 at a time
// (the vec4's own mean and M2, then Chan's merge); the threads of a segment then merge their
// summaries pairwise in workgroup memory. Never E[x^2] - E[x]^2: the variance survives
// |mean| >> std in float32. Rows need not be vec4-aligned (M % 4 != 0): the up to 3 elements
// before the first and after the last whole vec4 of a segment are read one at a time.
// Seg_threads threads share a segment, 256 / seg_threads segments share a workgroup, so short
// rows (M = 49) do not leave most of a workgroup idle.

//!include common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
// Bound from segment rec_base * chunks on (the first row of its block, see common.wgsl).
@group(0) @binding(2) var<storage, read_write> parts: array<Partial>;
// Wide rows for sn_wide_stats: a count (0 when the call starts), then the rows. Filled here when
// rows are one segment each, else by sn_row_merge.
@group(0) @binding(3) var<storage, read_write> wide_rows: array<atomic<u32>>;

var<workgroup> w_n: array<f32, 256>;
var<workgroup> w_mean: array<f32, 256>;
var<workgroup> w_m2: array<f32, 256>;
var<workgroup> w_flags: array<u32, 256>;

fn load1(i: u32) -> f32 {
  return x[i >> 2u][i & 3u];
}

fn add1(acc: ptr<function, Acc>, flags: ptr<function, u32>, mx: ptr<function, u32>, v: f32, shift: f32) {
  let cls = class_bits(v);
  if (cls != 0u) {
    *flags = *flags | cls;
    return;
  }
  *mx = max(*mx, bitcast<u32>(v) & 0x7fffffffu);
  let d = v - shift;
  let n = (*acc).n + 1.0;
  let delta = d - (*acc).mean;
  let mean = (*acc).mean + delta / n;
  *acc = Acc(n, mean, (*acc).m2 + delta * (d - mean));
}

fn add4(acc: ptr<function, Acc>, flags: ptr<function, u32>, mx: ptr<function, u32>, v: vec4<f32>, shift: f32) {
  let abs_bits = bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu);
  if (any(abs_bits >= vec4<u32>(0x7f800000u))) {
    add1(acc, flags, mx, v.x, shift);
    add1(acc, flags, mx, v.y, shift);
    add1(acc, flags, mx, v.z, shift);
    add1(acc, flags, mx, v.w, shift);
    return;
  }
  *mx = max(*mx, max(max(abs_bits.x, abs_bits.y), max(abs_bits.z, abs_bits.w)));
  let d = v - vec4<f32>(shift);
  let m4 = (d.x + d.y + d.z + d.w) * 0.25;
  let dev = d - vec4<f32>(m4);
  *acc = merge(*acc, Acc(4.0, m4, dot(dev, dev)));
}

// The moments of this thread's share of segment elements s .. e - 1 (indices within the
// binding window), about `shift`.
struct Share {
  acc: Acc,
  flags: u32,
  mx: u32,
}

fn sweep(s: u32, e: u32, t: u32, g: u32, shift: f32) -> Share {
  var acc = Acc(0.0, 0.0, 0.0);
  var flags = 0u;
  var mx = 0u; // max |x| of the finite values, as bits
  let body_s = min((s + 3u) & ~3u, e);
  let body_e = max(body_s, e & ~3u);
  for (var i = s + t; i < body_s; i += g) {
    add1(&acc, &flags, &mx, load1(i), shift);
  }
  for (var q = (body_s >> 2u) + t; q < (body_e >> 2u); q += g) {
    add4(&acc, &flags, &mx, x[q], shift);
  }
  for (var i = body_e + t; i < e; i += g) {
    add1(&acc, &flags, &mx, load1(i), shift);
  }
  return Share(acc, flags, mx);
}

// The threads' shares into workgroup memory, merged pairwise: the segment's summary at its first
// thread (lid - t). Called in uniform control flow (barriers).
fn merge_shares(share: Share, lid: u32, t: u32, g: u32) {
  w_n[lid] = share.acc.n;
  w_mean[lid] = share.acc.mean;
  w_m2[lid] = share.acc.m2;
  w_flags[lid] = share.flags | (abs_field(share.mx) << 8u);
  workgroupBarrier();
  for (var stride = g >> 1u; stride > 0u; stride = stride >> 1u) {
    if (t < stride) {
      let o = lid + stride;
      let merged = merge(Acc(w_n[lid], w_mean[lid], w_m2[lid]), Acc(w_n[o], w_mean[o], w_m2[o]));
      w_n[lid] = merged.n;
      w_mean[lid] = merged.mean;
      w_m2[lid] = merged.m2;
      w_flags[lid] = merge_flags(w_flags[lid], w_flags[o]);
    }
    workgroupBarrier();
  }
}

// Whether a segment's shift was poor: more than 4 standard deviations from its mean
// (mean^2 > 16 M2 / count). Then mean = K + mean(x - K) cancels: the float32 mean of x - K ~ -K
// is off by ulps of K, which the row mean keeps (a row of 1023 zeros after a 1e6: 97.65 for
// 97.65625 in running_mean). Such a segment is measured again about K + mean. Not for wide
// segments (sn_wide_stats summarizes them again, its sums here may have overflowed) nor ones
// with non-finite values (their statistics follow the flags). Data whose first value lies within
// 4 standard deviations of the segment's mean (the error is then below ~1e-6 of the std, as
// float32 summation leaves anyway) take no second sweep.
fn poor_shift(n: f32, mean: f32, m2: f32, flags: u32) -> bool {
  return (flags & F_CLASS) == 0u && !is_wide_field(max_field(flags)) && mean * mean * n > 16.0 * m2;
}

// Set when a segment of the workgroup is measured again (zero when the workgroup starts).
var<workgroup> w_redo: atomic<u32>;

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let g = P.seg_threads;
  let seg = P.seg_first + linear_group(wid, nwg) * (256u / g) + lid / g;
  let t = lid % g;
  var share = Share(Acc(0.0, 0.0, 0.0), 0u, 0u);
  var shift = 0.0;
  var s = 0u;
  var e = 0u;
  let live = seg < P.seg_end;
  if (live) {
    let row = seg / P.chunks;
    let k = seg % P.chunks;
    let row_start = row * P.m;
    // Element indices relative to this dispatch's binding window of x.
    s = row_start + k * P.seg_len - P.elem_base;
    e = min(row_start + (k + 1u) * P.seg_len, row_start + P.m) - P.elem_base;
    let first = load1(s);
    // Rows longer than one segment: the shift cut to 12 significant bits (coarse12), so that
    // x - K rounds only x's own low bits, never K's alike for a whole binade (a bias of ~2^-25
    // per element in the segment means, which the row mean would keep).
    shift = select(0.0, select(first, coarse12(first), P.chunks > 1u), class_bits(first) == 0u);
    share = sweep(s, e, t, g, shift);
  }
  merge_shares(share, lid, t, g);
  // Every thread reads its segment's summary (the merge ended with a barrier); the second sweep
  // runs only in a workgroup with a poor shift (a uniform branch: other workgroups skip its code).
  let lead = lid - t;
  let poor = live && poor_shift(w_n[lead], w_mean[lead], w_m2[lead], w_flags[lead]);
  if (poor) {
    atomicStore(&w_redo, 1u);
  }
  if (workgroupUniformLoad(&w_redo) != 0u) {
    if (poor) {
      let better = shift + w_mean[lead];
      shift = select(better, coarse12(better), P.chunks > 1u);
      share = sweep(s, e, t, g, shift);
    }
    workgroupBarrier(); // every thread has read its segment's first summary
    // Segments that were not poor merge the same shares again: the same bits.
    merge_shares(share, lid, t, g);
  }
  if (live && t == 0u) {
    parts[seg - P.rec_base * P.chunks] = Partial(shift, w_mean[lid], w_m2[lid], u32(w_n[lid]), w_flags[lid], 0.0);
    let f = w_flags[lid];
    if (P.chunks == 1u && is_wide_field(max_field(f)) && (f & F_CLASS) == 0u) {
      atomicStore(&wide_rows[1u + atomicAdd(&wide_rows[0], 1u)], seg);
    }
  }
}
