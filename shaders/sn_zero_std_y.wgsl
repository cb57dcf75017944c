// sn_zero_std_y.wgsl: forward of layout "nd" with eps 0 only (zero_std.wgsl), after
// sn_wide_normalize: y of the listed rows whose mix has std 0 written again where that pass's
// x - mu is not the reference's: where every term of nonzero weight is a term of zeros (an
// evaluation on a running_mean and running_var of 0 under BN alone) mu is exactly 0, y = x gamma
// / 0 (std_zero_y of x), exactly, whatever wide_map's unit (its unit once stayed at eps_exp, where
// x overflowed: y was the infinity of the wrong sign); and where x - mu is only what wide_map's
// mean lost below float32 (zero_std.wgsl flushed_tail). The bindings and the walk over the list
// of sn_wide_normalize (sn_mix lists rows of std 0), a workgroup per segment of a listed row.

//!include common.wgsl
//!include zero_std.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<Partial>;
@group(0) @binding(4) var<storage, read> groups: array<Group>;
@group(0) @binding(5) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
@group(0) @binding(6) var<storage, read> wide_list: array<u32>;
@group(0) @binding(7) var<storage, read> cgroups: array<Group>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  // The listed rows' segments as items, as sn_wide_normalize takes them (list_grid).
  let items = wide_list[0] * P.chunks;
  for (var item = linear_group(wid, nwg); item < items; item += nwg.x * nwg.y) {
    let row = wide_list[LIST_FIRST + item / P.chunks];
    let span = listed_segment(row, item);
    let n = row / P.c;
    let c = row - n * P.c;
    let use_bn = (P.flags & P_USING_BN) != 0u;
    let t0 = nd_mean_term_in(rows[row - P.rec_base]);
    let t1 = group_term(fine_group(groups[n - P.rec_base / P.c]));
    let t2 = group_term(fine_group(select_group(cgroups[select(0u, P.n + c - P.chan_base, use_bn)], use_bn)));
    if (span.x < span.y && zero_std_mix(t0, t1, t2)) {
      // Where some term counts, y of the elements whose x - mu sn_wide_normalize found 0 in the
      // mix's unit (not fine_mean's) though the parts of mu lost below float32 are not 0
      // (flushed_tail), by that rest's sign.
      let has_unit = some_term_counts(t0, t1, t2);
      let w = wide_map(t0, t1, t2, affine[c], affine[P.c + c]);
      let tail = flushed_tail(t0, 0u, t1, 1u, t2, 2u, w.e);
      // Where x - mu is taken about the heaviest term (zero_std_fine, zero_std.wgsl; every element
      // an ok fine_mean holds, fine_mean_takes), from that: flushed_tail, about term 0, misses
      // what the heaviest weight's rounding to 1 lost.
      let fc = fine_centred(t0, t1, t2, w);
      let wc = wide_centre(t0, t1, t2, w);
      for (var i = span.x + lid; i < span.y; i += 64u) {
        let d = wide_centre_d(wc, w, x[i]);
        let fine = has_unit & zero_std_fine(fc, d, x[i]);
        if (fine) {
          y[i] = std_zero_y(fine_centred_d(fc, x[i]), affine[c]);
        } else if (zero_std_y_again(d, has_unit, tail, fc.fm.ok)) {
          y[i] = std_zero_y(zero_std_centred(d, x[i], has_unit, tail), affine[c]);
        }
      }
    }
  }
}
