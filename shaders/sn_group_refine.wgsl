// sn_group_refine.wgsl: layout "nd" in one block, in a forward a backward may follow
// (P_REFINE_MEANS): the LN and BN groups whose mean cancels to ~0 beside a far narrower member,
// which sn_group_stats listed (P_GROUP_REFINE, F_GROUP_REFINE). Such a mean (rows of std 1.7e7
// with means 1e6 + 5 and -1e6) consists of its members' float32 rounding (~2^-25 of their std,
// ~0.5 there), and a member of far smaller std mixed on it (0.3) takes that as its x - mu: dgamma
// and mean_weight's gradient a few 1e-2 relative off. As the WASM backend's
// refine_near_zero_groups, the members are summed again about their means and the groups'
// means formed again, in three steps (Params.flags), each dispatched indirectly from a list
// (no workgroup where nothing was listed: data without such groups pay for empty dispatches):
//   P_REFINE_ROWS: the listed groups' member rows (a workgroup per group in turn) are
//     marked F_REMEASURE and listed for sn_wide_stats, which sums every segment of theirs again
//     about its mean in exact pairs. Not listed: rows that are scaled (sn_wide_stats summed
//     those so), constant, non-finite, or near 0 themselves (refine_mean: summed again already),
//     and the members of a flagged BN group whose sample's LN group is flagged too (that one
//     lists them: one writer per row).
//   P_REFINE_MERGE (rows of several segments): the listed rows' segments merged again
//     (row_sums.wgsl, as sn_row_merge's second run).
//   P_REFINE_GROUPS: per listed group (a workgroup each, in turn), its mean again as
//     centre + (1/K) sum_k ((K_k - centre) + mean_k) in exact pairs, centre its old mean, written
//     with its variance kept (the members' variances do not change, and their means move by far
//     less than the group's std), F_GROUP_REFINE cleared; a BN group's running update (that
//     sn_group_stats left to it) from the new mean. Only groups in unit 0 are listed (members
//     of smaller units enter scaled, as in sn_group_stats).
// Under SyncSN a BN group here is the replica's own rows (before the cross-replica merge).

//!include common.wgsl
//!include pair.wgsl
//!include row_sums.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> rows: array<Partial>;
// The segment summaries (P_REFINE_MERGE; else any buffer, not read).
@group(0) @binding(2) var<storage, read> parts: array<Partial>;
@group(0) @binding(3) var<storage, read_write> groups: array<Group>;
// The list this step reads (its indirect dispatch arguments): the flagged groups, or
// (P_REFINE_MERGE) the rows listed.
@group(0) @binding(4) var<storage, read> wide_list: array<u32>;
// P_REFINE_ROWS: the rows listed for sn_wide_stats (a count, 0 when the call starts); else any
// other list, not written.
@group(0) @binding(5) var<storage, read_write> row_list: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> running: array<f32>;

var<workgroup> w_sum: array<vec2<f32>, 64>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  if ((P.flags & P_REFINE_GROUPS) != 0u) {
    refine_groups(linear_group(wid, nwg), nwg.x * nwg.y, lid);
    return;
  }
  let threads = nwg.x * nwg.y * 64u;
  let first = linear_group(wid, nwg) * 64u + lid;
  if ((P.flags & P_REFINE_MERGE) != 0u) {
    for (var i = first; i < wide_list[0]; i += threads) {
      let row = wide_list[LIST_FIRST + i];
      let base = row * P.chunks;
      let sums = row_sums(base);
      rows[row] = merged_row(base, sums, sums.flags & ~F_REMEASURE);
    }
    return;
  }
  // A workgroup per listed group in turn, its threads over the members: a thread loops at most
  // ~256 groups x ceil(members / 64) times within the rows one binding holds (lavapipe's loop
  // limit, common.wgsl: LIST_ITEMS_PER_GROUP).
  let workgroups = nwg.x * nwg.y;
  for (var k = linear_group(wid, nwg); k < wide_list[0]; k += workgroups) {
    let g = wide_list[LIST_FIRST + k];
    for (var j = lid; j < member(g, 0u).y; j += 64u) {
      list_member(g, j);
    }
  }
}

// The member row of group g (LN for g < N, else BN) and its count of members.
fn member(g: u32, j: u32) -> vec2<u32> {
  if (g >= P.groups_ln) {
    return vec2<u32>(P.bn_base + (g - P.groups_ln) * P.bn_step + j * P.bn_stride, P.bn_count);
  }
  return vec2<u32>(P.ln_base + g * P.ln_step + j * P.ln_stride, P.ln_count);
}

fn list_member(g: u32, j: u32) {
  let r = member(g, j).x;
  if (g >= P.groups_ln && (groups[r / P.c].flags & F_GROUP_REFINE) != 0u) {
    return;
  }
  let p = rows[r];
  if ((p.flags & F_CLASS) != 0u || is_scaled(p.flags) || !(p.m2 > 0.0) ||
    refine_mean(f32(p.count), p.shift + p.mean, p.m2, p.flags, running[r % P.c])) {
    return;
  }
  rows[r].flags = p.flags | F_REMEASURE;
  let listed = atomicAdd(&row_list[0], 1u);
  atomicStore(&row_list[LIST_FIRST + listed], r);
  // Its reader's dispatch (sn_wide_stats; common.wgsl: list_grid).
  let grid = list_grid(thread_items((listed + 1u) * P.chunks));
  atomicMax(&row_list[1], grid.x);
  atomicMax(&row_list[2], grid.y);
}

fn refine_groups(wg: u32, workgroups: u32, lid: u32) {
  for (var k = wg; k < wide_list[0]; k += workgroups) {
    let g = wide_list[LIST_FIRST + k];
    let count = member(g, 0u).y;
    let old = groups[g];
    let centre = old.hi + old.lo;
    var t = vec2<f32>(0.0);
    for (var j = lid; j < count; j += 64u) {
      // A scaled member (of a smaller unit: the group's is 0) in the group's unit.
      let p = rows[member(g, j).x];
      let f = pow2(unit_of(p.flags));
      let dk = two_sum(p.shift * f, -centre);
      t = pair_add(pair_add(pair_add(t, dk.x), dk.y), p.mean * f);
    }
    w_sum[lid] = t;
    for (var s = 32u; s > 0u; s = s >> 1u) {
      workgroupBarrier();
      if (lid < s) {
        w_sum[lid] = pair_sum(w_sum[lid], w_sum[lid + s]);
      }
    }
    if (lid == 0u) {
      let q = pair_mean(w_sum[0], count);
      let h = two_sum(centre, q.x);
      let mu = h.x + (h.y + q.y);
      groups[g] = Group(h.x, h.y + q.y, old.variance, old.flags & ~F_GROUP_REFINE, old.var_lo);
      // Listed groups are finite and unscaled (sn_group_stats): the unscaled update.
      let c = g - P.groups_ln;
      if (g >= P.groups_ln && (P.flags & P_TRAINING) != 0u && (P.flags & P_NO_RUNNING_UPDATE) == 0u) {
        let v = old.variance;
        let rm = running[c];
        let rv = running[P.c + c];
        if ((P.flags & P_BATCH_AVERAGE) != 0u) {
          running[c] = ieee_add(rm, mu);
          running[P.c + c] = ieee_add(rv, ieee_add(ieee_mul(mu, mu), v));
        } else {
          running[c] = ieee_add(ieee_mul(P.momentum, rm), ieee_mul(P.one_minus_momentum, mu));
          running[P.c + c] = ieee_add(ieee_mul(P.momentum, rv), ieee_mul(P.one_minus_momentum, v));
        }
      }
    }
    workgroupBarrier();
  }
}
