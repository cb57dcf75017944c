// sn_wide_stats.wgsl: step 1b of layout "nd", after sn_stats (and sn_row_merge): the segments of
// "wide" rows summarized again in scaled units. A row is wide when its largest finite |x| (the
// magnitude field sn_stats recorded, merged over the row's segments) lies outside (2^-21, 2^40]
// (is_wide_field, common.wgsl): there float32 squares and sums of x overflow or go subnormal.
// For such a row, with u = field - 127 (so |x| <= 2^u), every x of each segment s is taken as
// x' = x * 2^-u (exact: scale2 works on the bits), and
//   K' = x'[first of s] (0 if not finite; its mean where that is far: see below),  count,
//   mean' = mean of (x' - K'),
//   M2' = sum (x' - K' - mean')^2   (Welford in blocks of 64, the blocks Chan-merged)
// are written to parts[s] with F_SCALED and the row's field: every later pass reads the unit
// from the flags. Rows that are not wide (almost always all of them) cost one load and return.
// The rows come from a list (sn_stats, sn_row_merge); rows with non-finite values are not in it
// (their statistics are NaN or infinite by their flags, whatever the finite ones are). When rows span one segment
// (chunks = 1) parts are the rows and the field is read from parts; else from the merged rows
// (sn_row_merge), which sn_row_merge with P_WIDE_ONLY then merges again.

//!include common.wgsl

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
  // Workgroups take the listed rows in turn, their threads the row's segments in this
  // dispatch's window. The bound is one load from one address, so without wide rows lavapipe
  // skips the loop's code (it runs both sides of a divergent branch, masked).
  let count = wide_rows[0];
  for (var k = linear_group(wid, nwg); k < count; k += nwg.x * nwg.y) {
    let row = wide_rows[1u + k];
    let s1 = min((row + 1u) * P.chunks, P.seg_end);
    for (var seg = max(row * P.chunks, P.seg_first) + lid; seg < s1; seg += 64u) {
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
  if (!is_wide_field(field) || (row_flags & F_CLASS) != 0u) {
    return;
  }
  let k = 127 - i32(field);
  let row_start = row * P.m;
  let s = row_start + (seg % P.chunks) * P.seg_len - P.elem_base;
  let e = min(s + P.seg_len, row_start + P.m - P.elem_base);
  var shift = scale2(x[s], k);
  var total = scaled_moments(s, e, k, shift);
  // A shift more than 4 standard deviations from the mean (sn_stats.wgsl, poor_shift): the
  // segment again about its mean (x of 1e19 then 1023 zeros: 2e-4 off in running_mean).
  if (total.mean * total.mean * total.n > 16.0 * total.m2) {
    let better = shift + total.mean;
    shift = select(better, coarse12(better), P.chunks > 1u);
    total = scaled_moments(s, e, k, shift);
  }
  parts[seg - P.rec_base * P.chunks] = Partial(shift, total.mean, total.m2, u32(total.n), (field << 8u) | F_SCALED, 0.0);
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
      acc.mean += delta / acc.n;
      acc.m2 += delta * (d - acc.mean);
    }
    total = merge(total, acc);
  }
  return total;
}
