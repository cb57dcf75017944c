// sn_stats.wgsl: step 1 of layout "nd" (SwitchNorm2d/3d), the only pass besides normalize that
// reads x. x is [N, C, M] row-major; row r = n*C + c holds M elements. Each row is cut into
// segments of at most Params.seg_len elements; for segment s of row r it computes
//   K      = x[first element of s]                          (0 if that is not finite; cut to
//            12 significant bits when rows have several segments, see main)
//   count  = number of finite x[i] in s
//   mean   = (1/count) * sum_{i in s, x[i] finite} (x[i] - K)   (written re-centred: below)
//   M2     = sum_{i in s, x[i] finite} (x[i] - K - mean)^2
//   flags  = F_NAN / F_POS_INF / F_NEG_INF for the non-finite x[i] in s, and the magnitude
//            field of max |x[i]| over the finite x[i] (F_FIELD, common.wgsl; integer max of bits);
//            F_REMEASURE where K lies far from the mean (poor_shift: sn_wide_stats measures the
//            segment again about its mean)
// Each thread keeps a Welford summary of its share of d = x - K, folding in a vec4 at a time
// (the vec4's own mean and M2, then Chan's merge); the threads of a segment then merge their
// summaries pairwise in workgroup memory. Never E[x^2] - E[x]^2: the variance survives
// |mean| >> std in float32. Rows need not be vec4-aligned (M % 4 != 0): the up to 3 elements
// before the first and after the last whole vec4 of a segment are read one at a time.
// Seg_threads threads share a segment, 256 / seg_threads segments share a workgroup, so short
// rows (M = 49) do not leave most of a workgroup idle.
// The mean comes from a second accumulator, the sum of x - K as a float32 pair (pair.wgsl:
// sum4_add, once per vec4, exact but for the pair's own rounding; sum_merge between threads),
// and is written re-centred (shift = f32(K + sum / count), mean = the rest): below 1e-9 of the
// std off for ~1000 floats, where Welford's mean drifts ~1e-6 (see main). Where even that is not
// small beside the mean's distance to a value it is compared with (refine_mean), or the float32
// M2 beside the variance's distance to running_var (refine_variance), the segment is marked
// F_REMEASURE too, and sn_wide_stats sums its x - mean, and the squares, again exactly.
// Rows of several segments are tested as a whole, by sn_row_merge.

//!include common.wgsl
//!include pair.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
// Bound from segment rec_base * chunks on (the first row of its block, see common.wgsl).
@group(0) @binding(2) var<storage, read_write> parts: array<Partial>;
// Wide rows for sn_wide_stats: a count (0 when the call starts), then the rows. Filled here when
// rows are one segment each, else by sn_row_merge.
@group(0) @binding(3) var<storage, read_write> wide_rows: array<atomic<u32>>;
// The running buffers (running_mean of channel c at c, running_var at C + c): an evaluation
// compares its means and variances with them (refine_mean, refine_variance).
@group(0) @binding(4) var<storage, read> running: array<f32>;

var<workgroup> w_n: array<f32, 256>;
var<workgroup> w_mean: array<f32, 256>;
var<workgroup> w_m2: array<f32, 256>;
var<workgroup> w_flags: array<u32, 256>;
var<workgroup> w_sum: array<vec2<f32>, 256>;

fn load1(i: u32) -> f32 {
  return x[i >> 2u][i & 3u];
}

fn add1(acc: ptr<function, Acc>, flags: ptr<function, u32>, mx: ptr<function, u32>, sum: ptr<function, vec2<f32>>, v: f32, shift: f32) {
  let cls = class_bits(v);
  if (cls != 0u) {
    *flags = *flags | cls;
    return;
  }
  *mx = max(*mx, bitcast<u32>(v) & 0x7fffffffu);
  let d = v - shift;
  sum_add(sum, d);
  let n = (*acc).n + 1.0;
  let delta = d - (*acc).mean;
  let mean = (*acc).mean + fdiv_n(delta, n);
  *acc = Acc(n, mean, (*acc).m2 + delta * (d - mean));
}

fn add4(acc: ptr<function, Acc>, flags: ptr<function, u32>, mx: ptr<function, u32>, sum: ptr<function, vec2<f32>>, v: vec4<f32>, shift: f32) {
  let abs_bits = bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu);
  if (any(abs_bits >= vec4<u32>(0x7f800000u))) {
    add1(acc, flags, mx, sum, v.x, shift);
    add1(acc, flags, mx, sum, v.y, shift);
    add1(acc, flags, mx, sum, v.z, shift);
    add1(acc, flags, mx, sum, v.w, shift);
    return;
  }
  *mx = max(*mx, max(max(abs_bits.x, abs_bits.y), max(abs_bits.z, abs_bits.w)));
  let d = v - vec4<f32>(shift);
  let s4 = d.x + d.y + d.z + d.w;
  sum4_add(sum, d);
  let m4 = s4 * 0.25;
  let dev = d - vec4<f32>(m4);
  *acc = merge(*acc, Acc(4.0, m4, dot(dev, dev)));
}

// Whether some x - K of the segment may have rounded K's bits: K has none below q = 2^(e - 20)
// (quantized_shift, e the exponent of `top`), so x - K is exact while |x| stays below ~2^(e + 3);
// a larger x (its largest |x| is in the flags' field) rounds K's bits away (a spike of 1e7 among
// values of 0.3: 0.3 per spike, the mean 3e-4 off, and y of a row whose LN and BN means carried
// two such spikes, cancelling in its mix, 1.35x to 5.4x its tolerance). Such a segment is marked
// F_REMEASURE, and sn_wide_stats sums its x - mean again exactly. Not with K = 0 (x - 0 is exact).
// Gaussian data pass it where the first four values all lie below ~1/4 of the std (~2e-3 of
// segments).
fn drops_shift_bits(shift: f32, flags: u32, top: f32) -> bool {
  return shift != 0.0 && (flags & F_CLASS) == 0u && i32(max_field(flags)) - 127 > exponent_of(top) + 3;
}

// K rounded toward 0 to a multiple of q = 2^(e + 3 - 23), e the exponent of the largest |x| of
// the first four values of [s, e) (K itself where one of them is not finite, or all are 0): K
// moves by less than 8 ulps of that |x| (x - K then stays exact or rounds x's own bits, and
// the pair sum of x - K carries the move), and loses every bit finer than x's.
fn quantized_shift(k: f32, s: u32, e: u32) -> f32 {
  var a = 0.0;
  var finite = true;
  for (var i = s; i < min(s + 4u, e); i++) {
    let v = load1(i);
    finite = finite && class_bits(v) == 0u;
    a = max(a, abs(v));
  }
  let q = pow2(exponent_of(a) + 3 - 23);
  let use_q = finite && q > 0.0;
  return select(k, trunc(fdiv(k, select(1.0, q, use_q))) * q, use_q);
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
  var acc = Acc(0.0, 0.0, 0.0);
  var flags = 0u;
  var mx = 0u; // max |x| of the finite values, as bits
  var sum = vec2<f32>(0.0); // sum of x - shift, a float32 pair (see the top)
  var shift = 0.0;
  var top = 0.0; // the largest |x| of the segment's first four values (quantized_shift's)
  let live = seg < P.seg_end;
  if (live) {
    let row = seg / P.chunks;
    let k = seg % P.chunks;
    let row_start = row * P.m;
    // Element indices relative to this dispatch's binding window of x.
    let s = row_start + k * P.seg_len - P.elem_base;
    let e = min(row_start + (k + 1u) * P.seg_len, row_start + P.m) - P.elem_base;
    let first = load1(s);
    // Rows longer than one segment: the shift cut to 12 significant bits (coarse12), so that
    // x - K rounds only x's own low bits, never K's alike for a whole binade (a bias of ~2^-25
    // per element in the segment means, which the row mean would keep).
    let cut = select(0.0, select(first, coarse12(first), P.chunks > 1u), class_bits(first) == 0u);
    // And no bits below the ulp of 8 a, a the largest |x| of the segment's first four values:
    // a first value far below the others (a mean near 0) had bits finer than theirs, which x - K
    // dropped alike for every x of a binade (segments of N(0, 1) with a first value of ~1e-5:
    // the IN means' bias reached dgamma, ~0 under dy = 1 where a mixing settled on BN).
    shift = quantized_shift(cut, s, e);
    for (var i = s; i < min(s + 4u, e); i++) {
      top = max(top, abs(load1(i)));
    }
    let body_s = min((s + 3u) & ~3u, e);
    let body_e = max(body_s, e & ~3u);
    for (var i = s + t; i < body_s; i += g) {
      add1(&acc, &flags, &mx, &sum, load1(i), shift);
    }
    for (var q = (body_s >> 2u) + t; q < (body_e >> 2u); q += g) {
      add4(&acc, &flags, &mx, &sum, x[q], shift);
    }
    for (var i = body_e + t; i < e; i += g) {
      add1(&acc, &flags, &mx, &sum, load1(i), shift);
    }
  }
  w_n[lid] = acc.n;
  w_mean[lid] = acc.mean;
  w_m2[lid] = acc.m2;
  w_flags[lid] = flags | (abs_field(mx) << 8u);
  w_sum[lid] = sum;
  workgroupBarrier();
  for (var stride = g >> 1u; stride > 0u; stride = stride >> 1u) {
    if (t < stride) {
      let o = lid + stride;
      let merged = merge(Acc(w_n[lid], w_mean[lid], w_m2[lid]), Acc(w_n[o], w_mean[o], w_m2[o]));
      w_n[lid] = merged.n;
      w_mean[lid] = merged.mean;
      w_m2[lid] = merged.m2;
      w_flags[lid] = merge_flags(w_flags[lid], w_flags[o]);
      w_sum[lid] = sum_merge(w_sum[lid], w_sum[o]);
    }
    workgroupBarrier();
  }
  if (live && t == 0u) {
    let n = w_n[lid];
    let mean = w_mean[lid];
    let m2 = w_m2[lid];
    var f = w_flags[lid];
    let wide = is_wide_field(max_field(f)) && (f & F_CLASS) == 0u;
    // A poor shift (poor_shift, common.wgsl): marked, and measured again by sn_wide_stats (the
    // row listed here, or by sn_row_merge when rows span several segments).
    let poor = !wide && poor_shift(n, shift, mean, m2, f);
    let chan = (seg / P.chunks) % P.c;
    let refine = P.chunks == 1u && !wide && !poor &&
      (refine_mean(n, shift + mean, m2, f, running[chan]) || refine_variance(n, m2, f, running[P.c + chan]) ||
        drops_shift_bits(shift, f, top));
    f = f | select(0u, F_REMEASURE, poor || refine);
    // The mean from the pair sum S of x - K, written re-centred: shift = f32(K + S / n), mean =
    // the rest (as sn_row_merge and sn_wide_stats write theirs). Welford's mean rounds at every
    // update, ~1e-6 of the std off over rows of 784 (its running mean is ~K - mu, of the std's
    // size): with dy of one sign the backward's sums of gm (mu_k - mu) and dy (x - mu) carry
    // that times M: y.sum()'s mean_weight gradient at [8,256,28,28] 7% off (91x its tolerance),
    // dgamma 2.5x (attack helper-61). The pair's rounding (one per vec4) is below 1e-9 there.
    // Not for wide or poor segments (sn_wide_stats measures them again from shift and mean).
    var out = Partial(shift, mean, m2, u32(n), f, 0.0, 0.0, 0.0);
    if (!wide && !poor && (f & F_CLASS) == 0u && n > 0.0) {
      let c = recentred_mean(shift, w_sum[lid], u32(n));
      out = Partial(c.x, c.y, m2, u32(n), f, 0.0, 0.0, 0.0);
    }
    parts[seg - P.rec_base * P.chunks] = out;
    if (P.chunks == 1u && (wide || poor || refine)) {
      let listed = atomicAdd(&wide_rows[0], 1u);
      atomicStore(&wide_rows[LIST_FIRST + listed], seg);
      // Its reader's dispatch (common.wgsl: list_grid).
      let grid = list_grid(thread_items((listed + 1u) * P.chunks));
      atomicMax(&wide_rows[1], grid.x);
      atomicMax(&wide_rows[2], grid.y);
    }
  }
}

