// sn_bwd_zero_std.wgsl: backward of layout "nd" with eps 0 only (zero_std.wgsl), a thread per
// segment: the class of the reference's sum dy ((x - mu) s) over the segment where its row's mix
// has std 0 (s = +Infinity: +-Infinity where every term is an infinity of that sign, NaN where
// one is 0 * Inf or infinities of both signs meet), F_NAN for a segment of a row whose
// reference dgamma is NaN (mix_flagged), ORed into the row's channel word of `classes` (zeroed
// when the call starts). sn_bwd_zero_std_fix puts them into the channel records: sn_bwd_rows
// flags a row of std 0 (G_BAD) and leaves its dgamma out. Segments as sn_bwd_reduce cuts them;
// x - mu as sn_wide_normalize takes it for y, so that dgamma's signs are y's.

//!include common.wgsl
//!include zero_std.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<Partial>;
@group(0) @binding(4) var<storage, read> groups: array<Group>;
@group(0) @binding(5) var<storage, read_write> classes: array<atomic<u32>>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let seg = P.seg_first + linear_group(wid, nwg) * 64u + lid;
  if (seg >= P.seg_end) {
    return;
  }
  let row = seg / P.chunks;
  let n = row / P.c;
  let c = row - n * P.c;
  let use_bn = (P.flags & P_USING_BN) != 0u;
  let bn = fine_group(select_group(groups[select(n - P.row_base / P.c, P.n + c - P.stat_bn_base, use_bn)], use_bn));
  let t0 = nd_mean_term_in(rows[row - P.row_base]);
  let t1 = group_term(fine_group(groups[n - P.row_base / P.c]));
  let t2 = group_term(bn);
  if (!zero_std_mix(t0, t1, t2)) {
    if (mix_flagged(t0, t1, t2)) {
      atomicOr(&classes[c], F_NAN);
    }
    return;
  }
  let w = wide_map(t0, t1, t2, 1.0, 0.0);
  let has_unit = some_term_counts(t0, t1, t2);
  let tail = flushed_tail(t0, 0u, t1, 1u, t2, 2u, w.e);
  let row_start = row * P.m;
  let s = row_start + (seg % P.chunks) * P.seg_len - P.elem_base;
  let end = min(s + P.seg_len, row_start + P.m - P.elem_base);
  // x - mu about the heaviest term where sn_zero_std_y takes it so (zero_std_fine).
  let fc = fine_centred(t0, t1, t2, w);
  // x - mu in the mix's unit as sn_wide_normalize takes it (wide_centre_d).
  let wc = wide_centre(t0, t1, t2, w);
  var cls = 0u;
  for (var i = s; i < end; i++) {
    let dw = wide_centre_d(wc, w, x[i]);
    let fine = has_unit & zero_std_fine(fc, dw, x[i]);
    let d = select(zero_std_centred(dw, x[i], has_unit, tail), fine_centred_d(fc, x[i]), fine);
    cls |= zero_std_term(d, dy[i]);
  }
  atomicOr(&classes[c], cls);
}
