// sn_wide_stats.wgsl: step 1b of layout "nd", after sn_stats (and sn_row_merge): the segments of
// "wide" rows summarized again in scaled units. A row is wide when its largest finite |x| (the
// magnitude field sn_stats recorded, merged over the row's segments) lies outside (2^-21, 2^40]
// (is_wide_field, common.wgsl): there float32 squares and sums of x overflow or go subnormal.
// For such a row, with u = field - 127 (so |x| <= 2^u), every x of each segment s is taken as
// x' = x * 2^-u (exact: scale2 works on the bits), and
//   K' = x'[first of s] (0 if not finite; its mean where that is far: see below),  count,
//   mean' = mean of (x' - K'),
//   M2' = sum (x' - K' - mean')^2   (Welford in blocks of 64, the blocks Chan-merged; summed
//         again as an exact pair m2 + m2_lo where the backward reads it so: below)
// are written to parts[s] with F_SCALED and the row's field: every later pass reads the unit
// from the flags. Rows that are not wide (almost always all of them) cost one load and return.
// Listed rows that are not wide have segments whose shift was poor (F_REMEASURE, sn_stats):
// those segments are summarized again, unscaled, about K + mean (poor_shift, common.wgsl).
// The rows come from a list (sn_stats, sn_row_merge); rows with non-finite values are not in it
// (their statistics are NaN or infinite by their flags, whatever the finite ones are). When rows span one segment
// (chunks = 1) parts are the rows and the field is read from parts; else from the merged rows
// (sn_row_merge), which sn_row_merge with P_WIDE_ONLY then merges again.

//!include common.wgsl
//!include pair.wgsl
//!include deviation_sum.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// parts and rows bound from row rec_base on (common.wgsl).
@group(0) @binding(2) var<storage, read_write> parts: array<Partial>;
// The merged rows when chunks > 1 (else any buffer: not read).
@group(0) @binding(3) var<storage, read> rows: array<Partial>;
// The wide rows: a count, then the rows (sn_stats or sn_row_merge).
@group(0) @binding(4) var<storage, read> wide_rows: array<u32>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  // Every thread of the dispatch takes the listed rows' segments (item k * chunks + j: segment j
  // of listed row k) in turn, those in this dispatch's window. Spread over all threads, no
  // thread sweeps more than ~2 window / threads elements: llvmpipe (lavapipe) stops a loop after
  // 65535 iterations per invocation, and with a workgroup per row, only its first threads
  // working (a row spans few segments), a thread of [128,4,4097] with every row led by 1e19
  // swept 8 rows x 4096 x 2: running_mean 14% off, running_var too. The bound is one load from
  // one address, so without wide rows lavapipe skips the loop's code (it runs both sides of a
  // divergent branch, masked).
  let items = wide_rows[0] * P.chunks;
  let threads = nwg.x * nwg.y * 64u;
  for (var item = linear_group(wid, nwg) * 64u + lid; item < items; item += threads) {
    let seg = wide_rows[LIST_FIRST + item / P.chunks] * P.chunks + item % P.chunks;
    if (seg >= P.seg_first && seg < P.seg_end) {
      summarize_wide(seg);
    }
  }
}

fn summarize_wide(seg: u32) {
  let row = seg / P.chunks;
  var row_flags: u32;
  if (P.chunks > 1u) {
    row_flags = rows[row - P.rec_base].flags;
  } else {
    row_flags = parts[seg - P.rec_base].flags;
  }
  let field = max_field(row_flags);
  let at = seg - P.rec_base * P.chunks;
  let p = parts[at];
  // Listed rows that are not wide have segments whose shift was poor (F_REMEASURE): those are
  // measured again, unscaled, about K + mean; the row's other segments keep their summaries.
  let wide = is_wide_field(field);
  // Rows of several segments whose mean is too coarse as a whole (refine_mean, sn_row_merge):
  // every segment of theirs (F_REMEASURE in the row's record).
  let row_refine = P.chunks > 1u && (row_flags & F_REMEASURE) != 0u;
  if ((row_flags & F_CLASS) != 0u || (!wide && (p.flags & F_REMEASURE) == 0u && !row_refine)) {
    return;
  }
  let row_start = row * P.m;
  let s = row_start + (seg % P.chunks) * P.seg_len - P.elem_base;
  let e = min(s + P.seg_len, row_start + P.m - P.elem_base);
  // An unscaled segment, whose mean or variance is too coarse (refine_mean, refine_variance:
  // sn_stats, sn_row_merge) or whose shift K was poor (poor_shift): its count stays, and its
  // mean and M2 are summed again about hi = f32(K + mean) as exact pairs (summed_about: mean
  // hi + lo, M2 = sum (x - hi)^2 - count lo^2). The pairs are exact about any hi near the mean,
  // which K + mean is even where K was poor (Welford's mean of x - K is off by ulps of that
  // mean, its M2 by ~2^-24 |mean| / std of itself: a row of 0.3 with a spike of 1e7 at its first
  // element, evaluated on the running buffers its own training step left, had var_weight's
  // gradient 5.5e-8 for 2.1e-7 with a Welford M2, tests/spike_shift_test.ts).
  if (!wide) {
    if (p.count > 0u) {
      var q = summed_about(s, e, 0, p.shift + p.mean, p.count, p.flags & ~F_REMEASURE);
      // A mean that cancels to 2^-40 of the std or less (pairs +-v of 24-bit values of different
      // exponents, whose x - K rounds in sn_stats and whose pair sums' low word rounds a small
      // pair after them; x ~2^30: mean_weight's gradient 0.1095 for 0.1093): its pair about 0 as
      // for wide segments (below). Not at summed_about's 2^-20: means of float32 roundings (rows
      // of a sinusoid, ~2^-30 of their std) would take a third sweep.
      let mu = q.shift + q.mean;
      if (mu * mu * f32(q.count) < CANCELLED_MEAN2 * CANCELLED_MEAN2 * q.m2) {
        let sums = cancelled_sums(s, e, 0);
        let c = pair_mean(sums.all, q.count);
        q.shift = c.x;
        q.mean = c.y;
        q.fine = fine_mean_word(sums, 0, q.count, c);
      }
      parts[at] = q;
    } else {
      parts[at].flags = p.flags & ~F_REMEASURE;
    }
    return;
  }
  // Wide segments, in units of 2^-k (|x| <= 2^(field - 127)) about their first value.
  let k = 127 - i32(field);
  var shift = scale2(x[s], k);
  var total = Acc(0.0, 0.0, 0.0);
  // A second sweep where the first value of a wide segment was a poor shift (poor_shift,
  // common.wgsl: x of 1e19, then 1023 zeros was 2e-4 off in running_mean), about its mean.
  for (var sweep = 0u; sweep < 2u; sweep++) {
    total = scaled_moments(s, e, k, shift);
    if (sweep == 1u || !poor_shift(total.n, shift, total.mean, total.m2, 0u)) {
      break;
    }
    shift = centre(shift + total.mean);
  }
  let flags = (field << 8u) | F_SCALED;
  // The mean to ~1e-12 of the std, not float32's ~6e-8 (Welford rounds x - shift and every
  // update): a third sweep sums x - hi exactly (two_sum, in a pair) about hi = f32(shift + mean),
  // and the summary is written re-centred, shift = hi, mean = that sum / count. A row whose mean
  // is ~1e-4 of its std, dominating a BN mean, gave dgamma 3e-4 relative off (the backward's
  // x - mu of the other rows is ~1e-4 of their std there); evaluation IN means within 1e-18 of a
  // running_mean of 1.5e-14 (std 6e-13) put mean_weight's gradient up to 88x its tolerance off.
  let hi = shift + total.mean;
  // A mean that cancels to 2^-20 of the std or less (pairs +-v and a small pair) lies below
  // that: hi is Welford's, ~2^-24 of the std off, and lo's float32 rounding of the exact sum
  // about it kept ~2^-48 of the std (a row of +-1e30 pairs whose mean is 7.2e12, 2^-57 of its
  // std: mean_weight's gradient -1.7e10 for 1.0e10). Such a segment is summed about 0, where x'
  // is exact and pairs cancel exactly, and its mean is written from that pair, re-centred
  // (shift = f32(mean), mean = the rest), as the float64 reference forms it.
  // Where the backward reads the IN variances as pairs (rows of several segments, or P_PAIRS:
  // an evaluation with BN), M2 too is summed again as an exact pair about the accurate mean
  // (m2 + m2_lo, deviation_moments), in loops whose bound is 0 elsewhere (a branch on the
  // uniform would keep memory per dispatch on lavapipe, see sn_mix.wgsl): Welford's float32 M2
  // is a few ulps off, and the variance differences of a scaled row's IN and LN terms (~2^-12 of
  // the variances apart: rows of ~3e38 in 5 segments under a variance weight of ~1e-60 on LN)
  // took that whole rounding: `var_weight`'s gradient 1.8x its tolerance (attack fuzzer seed
  // 27683, tests/scaled_variance_pairs_test.ts).
  let pairs = P.chunks > 1u || (P.flags & P_PAIRS) != 0u;
  let count = u32(total.n);
  if (total.n > 0.0 && hi * hi * total.n < CANCELLED_MEAN2 * total.m2) {
    let sums = cancelled_sums(s, e, k);
    let q = pair_mean(sums.all, count);
    let m2 = m2_about(s, select(s, e, pairs), k, q, count, total.m2);
    parts[at] = Partial(q.x, q.y, m2.x, count, flags, m2.y, fine_mean_word(sums, k, count, q), 0.0);
    return;
  }
  let sums = deviation_moments(s, select(s, e, pairs && total.n > 0.0), k, hi);
  let dev = select(deviation_sum_pair(s, select(e, s, pairs), k, hi), vec2<f32>(sums.x, 0.0), pairs);
  // The quotient's rest as the mean's third word (Partial.mean_rest): sn_group_refine's triples
  // take it where such a row is a member far wider than another mixed on its group's mean.
  let q = pair_mean(dev, max(count, 1u));
  let lo = select(q.x, 0.0, total.n == 0.0);
  let m2 = select(vec2<f32>(total.m2, 0.0), pair_add(sums.yz, -(total.n * lo) * lo), pairs && total.n > 0.0);
  parts[at] = Partial(hi, lo, m2.x, count, flags, m2.y, 0.0, select(q.y, 0.0, total.n == 0.0 || !is_finite_bits(q.y)));
}

// M2 of x * 2^k over elements s .. e - 1 about its mean q (a pair: q.x + q.y) as an exact pair,
// sum (x 2^k - q.x)^2 - count q.y^2 (deviation_moments); (welford, 0) where the range is empty.
fn m2_about(s: u32, e: u32, k: i32, q: vec2<f32>, count: u32, welford: f32) -> vec2<f32> {
  let sums = deviation_moments(s, e, k, q.x);
  return select(vec2<f32>(welford, 0.0), pair_add(sums.yz, -(f32(count) * q.y) * q.y), e > s);
}

// sum of x * 2^k over elements s .. e - 1 as a float32 pair renormalized at every step (pair_add:
// hi = f32(the sum so far)): values that cancel (+-v, in any order) leave hi 0 and lo 0, and the
// small rest after them is exact wherever the sums fit the pair's 48 bits. deviation_sum's low
// word gathers the errors of its high one unrenormalized: after v1 + v2 - v1 - v2 its hi and lo
// can be h and -h, h the rounding of v1 + v2, and a small pair added then rounds at h's ulps
// (shuffled pairs of ~2^100 and a pair 2^-60 of them: mean_weight's gradient 2.8e-23 for 3.2e-10).
// Beside it (cancelled_sums), the sums of the record's fine word (FineSums, pair.wgsl), from
// which a mean below 2^-FINE_MEAN_BELOW of its unit is written as that word (fine_mean_word).
struct CancelledSums {
  all: vec2<f32>,
  split: FineSums,
}

fn cancelled_sums(s: u32, e: u32, k: i32) -> CancelledSums {
  var all = vec2<f32>(0.0);
  var split = FineSums(vec2<f32>(0.0), vec2<f32>(0.0));
  for (var i = s; i < e; i++) {
    all = pair_add(all, scale2(x[i], k));
    fine_sums_add(&split, x[i], k);
  }
  return CancelledSums(all, split);
}

// The fine word of a record whose mean q (in its unit 2^-k, from sums.all) lies below
// 2^-FINE_MEAN_BELOW there (fine_sums_word); 0 for other records.
fn fine_mean_word(sums: CancelledSums, k: i32, count: u32, q: vec2<f32>) -> f32 {
  return fine_sums_word(sums.split, k, count, words_below_fine(q.x, q.y) && count > 0u);
}

// A shift near a segment's mean: the mean itself, cut to 12 significant bits where rows span
// several segments (coarse12, as sn_stats cuts its shifts there).
fn centre(mean: f32) -> f32 {
  return select(mean, coarse12(mean), P.chunks > 1u);
}

// (count, mean, M2) of x * 2^k - shift over elements s .. e - 1 (Welford in blocks of 64, the
// blocks Chan-merged).
fn scaled_moments(s: u32, e: u32, k: i32, shift: f32) -> Acc {
  var total = Acc(0.0, 0.0, 0.0);
  for (var b = s; b < e; b += 64u) {
    var acc = Acc(0.0, 0.0, 0.0);
    for (var i = b; i < min(b + 64u, e); i++) {
      let d = scale2(x[i], k) - shift;
      acc.n += 1.0;
      let delta = d - acc.mean;
      acc.mean += fdiv_n(delta, acc.n);
      acc.m2 += delta * (d - acc.mean);
    }
    total = merge(total, acc);
  }
  return total;
}
