// sn1d_zero_std_y.wgsl: forward of layout "1d" with eps 0 only (zero_std.wgsl), after
// sn1d_wide_normalize: y of the elements of the listed groups whose mix has std 0 and whose x - mu
// is only what the mean lost below float32 (zero_std.wgsl flushed_tail), or whose every
// term of nonzero weight is a term of zeros (an evaluation on a running_mean and running_var of 0
// under BN alone) written again: mu is exactly 0 there, y = x gamma / 0 (std_zero_y of x), exactly,
// whatever wide_map's unit (its unit once stayed at eps_exp, where x overflowed: y was the infinity
// of the wrong sign). The bindings and the walk over the list of sn1d_wide_normalize
// (sn_group_stats lists BN groups of variance 0 with eps 0).

//!include common.wgsl
//!include sn1d_mix.wgsl
//!include zero_std.wgsl
//!include zero_std_1d.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> groups: array<Group>;
@group(0) @binding(4) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
@group(0) @binding(5) var<storage, read> wide_groups: array<u32>;
@group(0) @binding(6) var<storage, read> cgroups: array<Group>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let count = wide_groups[0];
  for (var k = linear_group(wid, nwg); k < count; k += nwg.x * nwg.y) {
    let g = wide_groups[LIST_FIRST + k];
    let first = P.elem_base;
    let end = min(P.elem_base + 4u * P.vec_count, P.total);
    let span = group_span(g, first, end);
    for (var j = span.x + lid; j < span.y; j += 64u) {
      let nc = group_member(g, j);
      let e = nc.x * P.c + nc.y;
      if (e >= first && e < end) {
        let ln = fine_group(groups[nc.x - P.rec_base]);
        let bn = fine_group(cgroups[P.n + nc.y - P.chan_base]);
        let t0 = group_term(ln);
        let t1 = group_term(bn);
        let none = Term(0.0, 0.0, 0.0, 0u);
        if (zero_std_mix(t0, t1, none)) {
          // As sn_zero_std_y (zero_std_y_again).
          let xv = x[e - first];
          let has_unit = some_term_counts(t0, t1, none);
          let w = wide_map_1d(ln, bn, affine[nc.y], affine[P.c + nc.y]);
          let tail = flushed_tail_1d(ln, bn, w.e);
          let d = wide_centre_d_1d(ln, bn, w, xv);
          let fc = fine_centred(t0, t1, none, w);
          if (has_unit & fine_mean_takes(fc, xv)) {
            // x - mu from fine_low's parts where fine_mean holds x (zero_std.wgsl, fine_mean_takes).
            y[e - first] = std_zero_y(fine_centred_d(fc, xv), affine[nc.y]);
          } else if (zero_std_y_again(d, has_unit, tail, fc.fm.ok)) {
            y[e - first] = std_zero_y(zero_std_centred(d, xv, has_unit, tail), affine[nc.y]);
          }
        }
      }
    }
  }
}
