// sn1d_wide_stats.wgsl: step 1b of layout "1d", after sn1d_stats: the tile lines (a row or a
// column of a 32 x 32 tile) whose largest finite |x| lies outside (2^-21, 2^40]
// (is_wide_field, common.wgsl) summarized again in scaled units, as sn_wide_stats does for the
// rows of layout "nd": with u = the line's field - 127, x' = x * 2^-u (exact, by bits), and
//   K' = f32(mean of x'), count, mean' = mean of (x' - K') (an exact pair, written re-centred),
//   M2' = sum (x' - K' - mean')^2
// written in place with F_SCALED and the field. Lines with non-finite values are left as they
// are. The lines come from a list sn1d_stats fills (a thread each): lane < 32 is column
// c0 + lane of its tile, lane 32 + r row n0 + r.

//!include common.wgsl
//!include pair.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// Laid out and bound as sn1d_stats writes them (in blocks of row tiles: sn1d_stats.wgsl).
@group(0) @binding(2) var<storage, read_write> parts: array<Partial>;
// The lines of wide values: a count, then tile * 64 + the line's thread (sn1d_stats).
@group(0) @binding(3) var<storage, read> wide_lines: array<u32>;

fn summarize_scaled(t: Tile1d, r0: u32, c0: u32, dr: u32, dc: u32, len: u32, field: u32) -> Partial {
  let k = 127 - i32(field);
  // K = the plain mean (not the first value, see sn1d_stats.wgsl; |x'| <= 1, so the sum cannot
  // overflow) cut toward 0 to a multiple of 2^-21, 2^-20 of the line's largest |x'| (in (1/2, 1]):
  // x' - K is then exact for every x' within 2^-3 of that largest, and K is 0 where the values
  // cancel (pairs +-v and a small pair: below).
  var total = 0.0;
  for (var i = 0u; i < len; i++) {
    total += scale2(x[tile_1d_elem(t, r0 + i * dr, c0 + i * dc)], k);
  }
  let shift = trunc(fdiv_n(total, f32(len)) * 2097152.0) * 4.76837158203125e-7;
  // sum of x' - K as a float32 pair, each x' - K exact (two_sum), both words added with pair_add
  // (renormalized at every step, hi = f32(the sum so far)), as the float64 reference's sums, exact
  // wherever the values and their partial sums fit its 48 bits: a float32 sum left the line's mean
  // ~2^-25 of its std off, all of a BN mean that pairs +-v cancel to 2^-28 of the std (a column of
  // +-1e30 and a pair of 2.7e22: y of its element at 0, gamma (0 - mu) / std, 1.03e12 for 5.3e11,
  // and mean_weight's gradient 124x its tolerance; tests/bn_mean_below_std_test.ts), and about the
  // float32 mean (bits far finer than the values' where they cancel) with its low word
  // unrenormalized (sn1d_stats' sum_add) ~2^-46 of the std: the low word grew to the partial sums'
  // roundings, 2^12 above a small pair after them, and rounded it (a column of shuffled +-2^66
  // pairs of 24-bit values and a pair 2^-40 of them: y at that pair 4e-4 relative off;
  // tests/cancelled_wide_mean_test.ts).
  var sum = vec2<f32>(0.0);
  for (var i = 0u; i < len; i++) {
    let d = two_sum(scale2(x[tile_1d_elem(t, r0 + i * dr, c0 + i * dc)], k), -shift);
    sum = pair_add(pair_add(sum, d.x), d.y);
  }
  let q = pair_mean(sum, len);
  let mean = q.x;
  var m2 = 0.0;
  for (var i = 0u; i < len; i++) {
    let d = scale2(x[tile_1d_elem(t, r0 + i * dr, c0 + i * dc)], k) - shift - mean;
    m2 += d * d;
  }
  // Written re-centred (shift = f32(K + mean), mean = the rest), as sn1d_stats writes its lines.
  let c = recentred(shift, q);
  // A mean below 2^-FINE_MEAN_BELOW of the unit (0 or subnormal words: +-v pairs and a small
  // pair) carries its fine word (FINE_MEAN_UNIT, common.wgsl; FineSums, pair.wgsl), as
  // sn_wide_stats' rows do (fine_mean_word). Without it the groups' fine words (sn_group_stats,
  // group_fine) left such a line out, and the forward's x - mu took the mean as 0: an evaluation
  // on the LN mean 1.5 s / 8 of a sample [B, -B, s, s / 2, 0, 0, 0, 0] over a tiny running_var,
  // y 0 for -0.017 (B 1e20, s 1e-20, running_var 1.2e-38; tests/wide_row_fine_mean_eval_test.ts).
  // A loop of bound 0 for every other line.
  let below = words_below_fine(c.x, c.y);
  var split = FineSums(vec2<f32>(0.0), vec2<f32>(0.0));
  for (var i = 0u; i < select(0u, len, below); i++) {
    fine_sums_add(&split, x[tile_1d_elem(t, r0 + i * dr, c0 + i * dc)], k);
  }
  let fine = fine_sums_word(split, k, len, below);
  // M2's low word where a backward may follow, as sn1d_stats forms a plain line's (M2Pairs,
  // pair.wgsl), in the line's unit. Without it a wide line's M2 was a float32 sum of float32
  // squares, which the variance dots gv (var_LN - var_BN) carried: under fused multiply-adds
  // (NVIDIA's contraction of m2 += d * d, tests/_nvidia_fma.ts) `var_weight`'s gradient was 5.7x
  // its tolerance on LN and BN means 2.5e-5 apart (tests/wasm_precision_test.ts, seed 18558; an
  // H100 gave the same). A loop of bound 0 otherwise.
  let pairs = (P.flags & P_REFINE_MEANS) != 0u;
  var m2p = M2Pairs(vec2<f32>(0.0), vec2<f32>(0.0), 0.0);
  for (var i = 0u; i < select(0u, len, pairs); i++) {
    m2p = m2_pairs_add(m2p, scale2(x[tile_1d_elem(t, r0 + i * dr, c0 + i * dc)], k), shift, q);
  }
  let m2_lo = m2_pairs_lo(m2p, m2);
  let m2_kept = select(0.0, m2_lo, pairs && is_finite_bits(m2_lo));
  return Partial(c.x, c.y, m2, len, (field << 8u) | F_SCALED, m2_kept, fine, 0.0);
}

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  // Blocks of 64 listed lines, a thread each, taken by the workgroups in turn: the loop's bound
  // is one load from one address, so without wide lines lavapipe skips its code.
  let count = wide_lines[0];
  for (var base = linear_group(wid, nwg) * 64u; base < count; base += nwg.x * nwg.y * 64u) {
    if (base + lid < count) {
      let entry = wide_lines[LIST_FIRST + base + lid];
      let tile = entry / 64u;
      let rt = tile / P.chunks;
      if (rt >= P.seg_first && rt < P.seg_end) {
        line_wide(tile_1d((rt - P.seg_first) * P.chunks + tile % P.chunks), entry % 64u);
      }
    }
  }
}

fn line_wide(t: Tile1d, lid: u32) {
  if (!t.valid) {
    return;
  }
  var at: u32;
  if (lid < TILE_1D) {
    if (lid >= t.cols) {
      return;
    }
    at = P.bn_base + (t.rt - P.rec_base / TILE_1D) * P.c + t.c0 + lid;
  } else {
    if (lid - TILE_1D >= t.rows) {
      return;
    }
    at = t.ct * P.ln_stride + t.n0 + lid - TILE_1D - P.rec_base;
  }
  let flags = parts[at].flags;
  let field = max_field(flags);
  if (!is_wide_field(field) || (flags & F_CLASS) != 0u) {
    return;
  }
  if (lid < TILE_1D) {
    parts[at] = summarize_scaled(t, 0u, lid, 1u, 0u, t.rows, field);
  } else {
    parts[at] = summarize_scaled(t, lid - TILE_1D, 0u, 0u, 1u, t.cols, field);
  }
}
