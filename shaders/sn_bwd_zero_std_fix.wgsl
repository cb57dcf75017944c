// sn_bwd_zero_std_fix.wgsl: backward with eps 0 only (zero_std.wgsl), both layouts, after
// sn_bwd_groups and sn_bwd_zero_std / sn1d_bwd_zero_std: a thread per channel. A flagged channel
// record (G_BAD) gets in its dgamma field the reference's dgamma where its rows (elements) of
// std 0 make it an infinity: their class plus the field (the sum of the channel's other rows,
// as IEEE adds it: beside finite rows the infinity stays, an infinity of the other sign makes
// NaN); NaN where no row of std 0 made it one, or a flagged row of other cause makes it NaN.
// The CPU reads a flagged channel's dgamma from that field where it is infinite
// (_webgpu_grad_sums.ts), and only for calls that ran this pass. Only that field changes: the
// later passes read gm and gv alone.

//!include common.wgsl
//!include backward_common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
// Per channel: F_NAN, F_POS_INF, F_NEG_INF of its rows' terms.
@group(0) @binding(1) var<storage, read> classes: array<u32>;
// The channel records, bound from record chan_base on.
@group(0) @binding(2) var<storage, read_write> cgroups: array<Grad>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let c = linear_group(wid, nwg) * 64u + lid;
  if (c >= P.c) {
    return;
  }
  let at = P.n + c - P.chan_base;
  let g = cgroups[at];
  if ((g.flags & G_BAD) == 0u) {
    return;
  }
  let cls = classes[c];
  let inf = (cls & (F_POS_INF | F_NEG_INF)) != 0u;
  cgroups[at].s.z = select(qnan(), mean_value(cls, 0.0) + g.s.z, inf);
}
