// sn_row_merge.wgsl: step 2 of layout "nd", run only when rows were cut into several segments
// (M > seg_len). One thread per row r merges the row's segment summaries (K_k, mean_k, M2_k,
// count_k, flags_k) into its IN summary:
//   M2:    Chan-merge over k of (count_k, (K_k - K0) + mean_k, M2_k)   (K0: the first shift)
//   mean:  T = sum_k count_k * ((K_k - K0) + mean_k), mu_in = K0 + T / count, with T and the
//          division in float32 hi/lo pairs (below), so the row mean is accurate to ~1e-12
//          relative for any row length, not to float32's 6e-8: the importance-logit gradients
//          are differences of IN, LN and BN means that may lie ~std / sqrt(M) apart.
//   flags = OR of flags_k, with the largest magnitude field (merge_flags)
// Run a second time (P_WIDE_ONLY) after sn_wide_stats, for the rows it summarized again in
// scaled units (F_SCALED): the segments of such a row share its unit, so the same sums apply;
// and for rows with segments whose shift was poor (F_REMEASURE, sn_stats), measured again.
// The summary is written re-centred, shift = f32(mu_in) and mean = mu_in - shift (tiny, exact
// to float32 precision of itself), so every later pass reads the accurate mean through the
// usual shift + mean.
// M2 is written as a pair too (m2 + m2_lo, the sums below exact), so that the backward can form
// differences of variances ~std^2 sqrt(2 / M) apart from them (sn_bwd_rows.wgsl).

//!include common.wgsl
//!include pair.wgsl
//!include row_sums.wgsl

@group(0) @binding(0) var<uniform> P: Params;
// Rows seg_first .. seg_end - 1, their records bound from row rec_base on (common.wgsl).
@group(0) @binding(1) var<storage, read> parts: array<Partial>;
@group(0) @binding(2) var<storage, read_write> rows: array<Partial>;
// Wide rows for sn_wide_stats: a count (0 when the call starts), then the rows (first run only).
@group(0) @binding(3) var<storage, read_write> wide_rows: array<atomic<u32>>;
// The running buffers: the row's running_mean and running_var for refine_mean and
// refine_variance (common.wgsl).
@group(0) @binding(4) var<storage, read> running: array<f32>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = P.seg_first + linear_group(wid, nwg) * 64u + lid;
  if (row >= P.seg_end) {
    return;
  }
  let local = row - P.rec_base;
  let base = local * P.chunks;
  let first = parts[base];
  // The second run: rows sn_wide_stats summarized again (scaled, or segments with a poor shift,
  // which the first run marked F_REMEASURE in the row's record).
  if ((P.flags & P_WIDE_ONLY) != 0u && !is_scaled(first.flags) && (rows[local].flags & F_REMEASURE) == 0u) {
    return;
  }
  let sums = row_sums(base);
  let acc = sums.acc;
  let count = sums.count;
  var flags = sums.flags;
  let q1 = sums.q1;
  let q2 = sums.q2;
  // A row whose mean is too coarse as a whole (refine_mean; its segments' means ~6e-8 of the
  // std off each), or its variance (refine_variance): sn_wide_stats sums every segment of it
  // again about its mean.
  let wide = is_wide_field(max_field(flags));
  let refine = (P.flags & P_WIDE_ONLY) == 0u && !wide && count > 0u &&
    (refine_mean(f32(count), first.shift + (q1 + q2), acc.m2, flags, running[row % P.c]) ||
      refine_variance(f32(count), acc.m2, flags, running[P.c + row % P.c]));
  flags = flags | select(0u, F_REMEASURE, refine);
  // Rows with non-finite values are not summarized again (their statistics follow the flags).
  let listed = (P.flags & P_WIDE_ONLY) == 0u && (wide || (flags & F_REMEASURE) != 0u) &&
    (flags & F_CLASS) == 0u;
  if (listed) {
    let listed = atomicAdd(&wide_rows[0], 1u);
    atomicStore(&wide_rows[LIST_FIRST + listed], row);
    // Its reader's dispatch (common.wgsl: list_grid).
    let grid = list_grid(thread_items((listed + 1u) * P.chunks));
    atomicMax(&wide_rows[1], grid.x);
    atomicMax(&wide_rows[2], grid.y);
  }
  // F_REMEASURE stays in the record only where sn_wide_stats measures the row again (for the
  // second run, whose merge of the rewritten segments clears it).
  flags = select(flags & ~F_REMEASURE, flags, listed);
  if (count == 0u || (flags & F_CLASS) != 0u) {
    rows[local] = Partial(first.shift, acc.mean, acc.m2, count, flags, 0.0, 0.0, 0.0);
    return;
  }
  rows[local] = merged_row(base, sums, flags);
}
