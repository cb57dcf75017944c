// sn_row_merge.wgsl: step 2 of layout "nd", run only when rows were cut into several segments
// (M > seg_len). One thread per row r merges the row's segment summaries into its IN summary,
// relative to the first segment's shift K0 (the row's first element):
//   mean_k' = (K_k - K0) + mean_k        (the segment's mean moved to the row's shift)
//   (count, mean, M2) = Chan-merge over k of (count_k, mean_k', M2_k)
//   flags = OR of flags_k
// so that mu_in = K0 + mean and var_in = M2 / (count - 1) (unbiased, as torch .var()).

//!include common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> parts: array<Partial>;
@group(0) @binding(2) var<storage, read_write> rows: array<Partial>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = linear_group(wid, nwg) * 64u + lid;
  if (row >= P.n * P.c) {
    return;
  }
  let base = row * P.chunks;
  let first = parts[base];
  var acc = Acc(f32(first.count), first.mean, first.m2);
  var count = first.count;
  var flags = first.flags;
  for (var k = 1u; k < P.chunks; k++) {
    let p = parts[base + k];
    acc = merge(acc, Acc(f32(p.count), (p.shift - first.shift) + p.mean, p.m2));
    count += p.count;
    flags = flags | p.flags;
  }
  rows[row] = Partial(first.shift, acc.mean, acc.m2, count, flags);
}
