// sn1d_stats.wgsl: step 1 of layout "1d" (SwitchNorm1d), the only pass besides normalize that
// reads x. x is [N, C]; LN needs statistics along each row n, BN along each column c, and both
// come from this one read: each workgroup copies a 32 x 32 tile (rows n0.., columns c0..) into
// workgroup memory, then 32 threads summarize the tile's columns and 32 its rows:
//   for a column c of the tile (rows n0 .. n0+31), with K = its first finite value, or
//   f32(mean of its finite values) where that first value dominates (summarize, below):
//     count = #finite, mean = (1/count) sum (x - K), M2 = sum (x - K - mean)^2, flags (with
//     the magnitude field of the largest finite |x|: F_FIELD, common.wgsl)
//   and the same for a row n of the tile (columns c0 .. c0+31),
// over the 32 values held in workgroup memory (the exact mean first, then M2).
// Row summaries go to parts[ct * N + n] (ct = column tile), column summaries to
// parts[Params.bn_base + rt * C + c] (rt = row tile); sn_group_stats merges them. With more
// summaries than one binding holds they are laid out, and bound, in blocks of whole row tiles
// (samples rec_base .., backends/_webgpu_row_blocks.ts): within its block, a row summary is at
// ct * ln_stride + n - rec_base (ln_stride: the block's samples) and a column summary at
// bn_base + (rt - rec_base / 32) * C + c. One block: ln_stride = N, rec_base = 0, as above.

//!include common.wgsl
//!include pair.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> parts: array<Partial>;
// Lines of wide values for sn1d_wide_stats: a count (0 when the call starts), then
// tile * 64 + the line's thread.
@group(0) @binding(3) var<storage, read_write> wide_lines: array<atomic<u32>>;

fn store(at: u32, p: Partial, t: Tile1d, lid: u32) {
  parts[at] = p;
  if (is_wide_field(max_field(p.flags)) && (p.flags & F_CLASS) == 0u) {
    let listed = atomicAdd(&wide_lines[0], 1u);
    atomicStore(&wide_lines[LIST_FIRST + listed], (t.rt * P.chunks + t.ct) * 64u + lid);
    // Its reader's dispatch (common.wgsl: list_grid).
    let grid = list_grid(thread_items(listed + 1u));
    atomicMax(&wide_lines[1], grid.x);
    atomicMax(&wide_lines[2], grid.y);
  }
}

const T: u32 = TILE_1D;
var<workgroup> tile: array<f32, 1056>; // 32 rows of 33: the pad keeps column reads apart

// sum + (v - k), v - k taken exactly (two_sum: its rounding error into the low word): x - K
// rounds x's own bits where x is far below K's size (x ~ 1e-3 beside K ~ 1), each by up to half
// an ulp of x - K, and the line's mean carried those errors (~3e-9 of the std on a line of 32
// standard-normal values: dgamma under dy = 1 on a mixing settled on BN, ~0, was 1e-7 off per
// line, 0.17x its tolerance over 65536 rows).
// (An overflowed v - k is its high word alone, as sum_add keeps a non-finite sum: such lines are
// summarized again, sn1d_wide_stats.)
fn add_exact(sum: ptr<function, vec2<f32>>, v: f32, k: f32) {
  let d = two_sum(v, -k);
  sum_add(sum, d.x);
  (*sum).y += select(0.0, d.y, is_finite_bits(d.x));
}

// Summary of `len` values of the tile starting at `start`, `step` apart: the exact mean first,
// relative to K (below), then M2 = sum (x - K - mean)^2, over the values held in workgroup
// memory. K is the first finite value (x - K summed exactly, add_exact), unless that value
// dominates the line (|K| beyond 4x the mean |x|): then every other x - K is ~-K and the
// float32 sum of len of them (~len ulps of len K) landed on a line mean ~K / len, 1e-4 relative
// off for a line of 1e8 beside -2.5e6 values, and M2's float32 x - K - mean cancel likewise.
// Such a line takes K = f32(its plain mean) instead, in a loop whose bound is 0 for every other
// line (lavapipe skips a loop that no lane enters), so that other lines keep their bits and cost.
fn summarize(start: u32, step: u32, len: u32) -> Partial {
  let first = tile[start];
  var shift = select(0.0, first, class_bits(first) == 0u);
  var flags = 0u;
  var count = 0u;
  // sum of x - K as a float32 pair (add_exact), re-centred below.
  var sum = vec2<f32>(0.0);
  var total = 0.0;
  var size = 0.0;
  var mx = 0u;
  for (var i = 0u; i < len; i++) {
    let v = tile[start + i * step];
    let cls = class_bits(v);
    flags = flags | cls;
    if (cls == 0u) {
      add_exact(&sum, v, shift);
      total += v;
      size += abs(v);
      count += 1u;
      mx = max(mx, bitcast<u32>(v) & 0x7fffffffu);
    }
  }
  // Lines of wide values are summarized again (sn1d_wide_stats), and their sums here may have
  // overflowed: only in-range lines (and in-range sums) take the second shift.
  let dominated = f32(count) * abs(shift) > 4.0 * size && !is_wide_field(abs_field(mx));
  if (dominated) {
    shift = fdiv_n(total, f32(count));
  }
  sum = select(sum, vec2<f32>(0.0), dominated);
  for (var i = 0u; i < select(0u, len, dominated); i++) {
    let v = tile[start + i * step];
    if (class_bits(v) == 0u) {
      add_exact(&sum, v, shift);
    }
  }
  // The mean of x - K as a pair (its high word the float32 mean M2 takes).
  let q = pair_mean(sum, max(count, 1u));
  let mean = select(0.0, q.x, count > 0u);
  var m2 = 0.0;
  for (var i = 0u; i < len; i++) {
    let v = tile[start + i * step];
    if (class_bits(v) == 0u) {
      let d = v - shift - mean;
      m2 += d * d;
    }
  }
  // Written re-centred, as sn_stats writes its segments: shift = f32(K + mean), mean = the rest
  // (pair.wgsl: recentred_mean). A float32 mean beside K (~1 std away) is ~3e-8 of the std off,
  // which y.sum()'s backward multiplies by the line count: SwitchNorm1d [4096, 256] had
  // mean_weight's gradient 2.9x its tolerance off.
  var c = vec2<f32>(shift, mean);
  if (count > 0u && (flags & F_CLASS) == 0u) {
    c = recentred(shift, q);
  }
  // A mean that cancels to 2^-20 of the std or less (pairs +-v and a small pair): the pair sum of
  // x - K keeps ~2^-48 of count K, all of such a mean (a column of +-0.5 pairs and a pair of
  // -1.3e-29: its BN mean half the reference's, y of its element at 0 2.3e7 for 4.6e7,
  // bn_mean_below_std_sweep seed 1798, training or a forward alone). Summed again about 0 as a
  // pair renormalized at every step (as sn1d_wide_stats' wide lines), where values that cancel
  // leave (0, 0) and the small rest is exact; a loop of bound 0 for every other line. M2, about a
  // point within 2^-20 of the std of the mean, stays.
  let cancels = count > 0u && (flags & F_CLASS) == 0u && !is_wide_field(abs_field(mx)) &&
    (c.x + c.y) * (c.x + c.y) * f32(count) < CANCELLED_MEAN2 * m2;
  // (fine_sum: the same values in the unit 2^FINE_MEAN_UNIT, for the fine word below.)
  var about0 = vec2<f32>(0.0);
  var fine_sum = vec2<f32>(0.0);
  for (var i = 0u; i < select(0u, len, cancels); i++) {
    let v = tile[start + i * step];
    if (class_bits(v) == 0u) {
      about0 = pair_add(about0, v);
      fine_sum = pair_add(fine_sum, scale2(v, -FINE_MEAN_UNIT));
    }
  }
  if (cancels) {
    c = pair_mean(about0, count);
  }
  // Such a mean below 2^-FINE_MEAN_BELOW (0 included: a quotient below float32's normal range,
  // which a GPU that flushes subnormals makes 0) is carried in the unit 2^FINE_MEAN_UNIT
  // (common.wgsl) too, the record's fine word: rows [1, -1, 1.5e-38] have an LN mean of 5e-39,
  // flushed, and the backward's mean dots took it as 0 (tests/sn1d_subnormal_mean_test.ts).
  let fine = select(0.0, fine_word(fine_sum, count, true), cancels && words_below_fine(c.x, c.y));
  // Where a backward may follow (P_REFINE_MEANS), M2 again in pairs, about the pair mean, for its
  // low word (M2Pairs, pair.wgsl): with float32 M2 alone, rows that are permutations of one
  // another had `var_weight`'s gradient 488x GRAD_SCALED off; with loose pairs, ~2^-33 relative,
  // still 1.1x. A loop of bound 0 otherwise (lavapipe skips it), so that a forward alone keeps
  // its cost.
  let pairs = (P.flags & P_REFINE_MEANS) != 0u && count > 0u && (flags & F_CLASS) == 0u;
  var m2p = M2Pairs(vec2<f32>(0.0), vec2<f32>(0.0), 0.0);
  for (var i = 0u; i < select(0u, len, pairs); i++) {
    m2p = m2_pairs_add(m2p, tile[start + i * step], shift, q);
  }
  let m2_lo = m2_pairs_lo(m2p, m2);
  return Partial(c.x, c.y, m2, count, flags | (abs_field(mx) << 8u), select(0.0, m2_lo, pairs && is_finite_bits(m2_lo)), fine, 0.0);
}

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let t = tile_1d(linear_group(wid, nwg));
  if (!t.valid) {
    return;
  }
  for (var i = lid; i < T * T; i += 64u) {
    let r = i / T;
    let cc = i % T;
    if (r < t.rows && cc < t.cols) {
      tile[r * 33u + cc] = x[tile_1d_elem(t, r, cc)];
    }
  }
  workgroupBarrier();
  if (lid < T) {
    if (lid < t.cols) {
      store(P.bn_base + (t.rt - P.rec_base / T) * P.c + t.c0 + lid, summarize(lid, 33u, t.rows), t, lid);
    }
  } else if (lid - T < t.rows) {
    let r = lid - T;
    store(t.ct * P.ln_stride + t.n0 + r - P.rec_base, summarize(r * 33u, 1u, t.cols), t, lid);
  }
}
