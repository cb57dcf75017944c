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

// Summary of `len` values of the tile starting at `start`, `step` apart: the exact mean first,
// relative to K (below), then M2 = sum (x - K - mean)^2, over the values held in workgroup
// memory. K is the first finite value, as x - K is then exact wherever x lies within a factor 2
// of it (|mean| >> std), unless that value dominates the line (|K| beyond 4x the mean |x|): then
// every other x - K is ~-K and the float32 sum of len of them (~len ulps of len K) lands on a
// line mean ~K / len, 1e-4 relative off for a line of 1e8 beside -2.5e6 values. Such a line
// takes K = f32(its plain mean) instead, in a loop whose bound is 0 for every other line
// (lavapipe skips a loop that no lane enters), so that other lines keep their bits and cost.
fn summarize(start: u32, step: u32, len: u32) -> Partial {
  let first = tile[start];
  var shift = select(0.0, first, class_bits(first) == 0u);
  var flags = 0u;
  var count = 0u;
  // sum of x - K as a float32 pair (pair.wgsl: sum_add), re-centred below.
  var sum = vec2<f32>(0.0);
  var total = 0.0;
  var size = 0.0;
  var mx = 0u;
  for (var i = 0u; i < len; i++) {
    let v = tile[start + i * step];
    let cls = class_bits(v);
    flags = flags | cls;
    if (cls == 0u) {
      sum_add(&sum, v - shift);
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
    shift = total / f32(count);
  }
  sum = select(sum, vec2<f32>(0.0), dominated);
  for (var i = 0u; i < select(0u, len, dominated); i++) {
    let v = tile[start + i * step];
    if (class_bits(v) == 0u) {
      sum_add(&sum, v - shift);
    }
  }
  let mean = select(0.0, (sum.x + sum.y) / f32(count), count > 0u);
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
    c = recentred_mean(shift, sum, count);
  }
  return Partial(c.x, c.y, m2, count, flags | (abs_field(mx) << 8u), 0.0);
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
