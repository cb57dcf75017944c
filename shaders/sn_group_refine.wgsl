// sn_group_refine.wgsl: layout "nd", in a forward a backward may follow (P_REFINE_MEANS): the LN
// and BN groups whose mean cancels to ~0 beside a far narrower member, which sn_group_stats listed
// (P_GROUP_REFINE, F_GROUP_REFINE). In blocks of samples (per-row records beyond one binding,
// backends/_webgpu_plan.ts) each step runs per block over the block's LN groups alone, listed in
// the block's list (block-relative indices): rows and segments bound from the block's first row
// (Params.rec_base), its groups from its first sample, P_USING_BN cleared (the BN groups, whose
// members span the blocks, are not listed there: NUMERICS.md). Such a mean (rows of std 1.7e7
// with means 1e6 + 5 and -1e6) consists of its members' float32 rounding (~2^-25 of their std,
// ~0.5 there), and a member of far smaller std mixed on it (0.3) takes that as its x - mu: dgamma
// and mean_weight's gradient a few 1e-2 relative off. And the groups of the batch whose members'
// variances all lie within 2^-20 of the group's (sn_group_stats' ALIKE: rows that are shuffles of
// one row), whose differences of variances the logit gradients take: Welford's M2 is ~1e-6 of
// itself off, `var_weight`'s gradient 2.4e-4 where it is ~0 under dy ~1e3
// (tests/close_stats_training_test.ts). As the WASM backend's refine_near_zero_groups, the
// members are summed again about their means, their M2 too, and the groups' means and variances
// formed again, in two steps (Params.flags; three where rows span several segments), dispatched
// indirectly from the list (no workgroup where nothing was listed: data without such groups pay
// two or three empty dispatches):
//   P_REFINE_ROWS (per binding window of x): a thread per segment of the window; a segment of a
//     member row of a listed group is summed again about its mean in exact pairs, its mean and
//     its M2 (summed_about, deviation_sum.wgsl; marked F_M2_EXACT, so that
//     sn_bwd_rows' pair dots read its variance as the pair), in place, by its own thread
//     (one writer, whichever of its LN and BN groups are listed). Not summed: rows that are
//     constant, non-finite, or near 0 themselves (refine_mean: summed again already), and
//     scaled rows (sn_wide_stats summed their means so) but where a group of theirs is alike:
//     their M2 then, in their unit (summed_about with its k). No pass writes the groups here.
//   P_MERGE_ROWS (rows of several segments only): a thread per row seg_first .. seg_end - 1
//     (the block's), which merges it again from its segments (row_sums.wgsl, as sn_row_merge)
//     where it is a member of a listed group and was summed again (the same test, on the merge),
//     into its row record: one writer per row.
//   P_REFINE_GROUPS: per listed group, its mean again as centre + (1/K) sum_k ((K_k - centre) +
//     mean_k) in exact pairs, centre its old mean, then its variance as the pair
//     (1/K) sum_k (v_k + (mu_k - mu)^2) from the members' variance pairs, F_GROUP_REFINE cleared;
//     a BN group's running update (that sn_group_stats left to it) from the new mean and
//     variance. Groups near 0 are listed in unit 0 only, alike ones in any unit (members enter
//     scaled to the group's unit, as in sn_group_stats).
// Every word a step writes has one writer in its dispatch, and no invocation of another workgroup
// reads it there: P_REFINE_ROWS writes segments (each by its thread; it reads rows, groups and
// running), P_MERGE_ROWS row records (each by its thread; it reads segments, groups and running),
// P_REFINE_GROUPS a listed group's record and its channel's running buffers (each by its
// workgroup, a group being listed once; it reads rows, which it no longer writes). Until
// P_MERGE_ROWS, the LN and BN groups of a row of several segments, both listed, each merged it in
// P_REFINE_GROUPS and wrote its record (the same bits) while the other read it, and an LN group's
// test read running_mean while the BN group wrote it (the value unused in training): a data race
// in WGSL's terms that changed no result on lavapipe (tests/close_stats_training_test.ts).
// The groups of members refined but not listed keep their statistics (their members' means move
// by ~2^-25 of their std and their variances by ~1e-6 of themselves, the float32 rounding those
// statistics have anyway; a group of one row is that row in sn_bwd_rows' dots).
// Under SyncSN a BN group here is the replica's own rows (before the cross-replica merge).

//!include common.wgsl
//!include pair.wgsl
//!include row_sums.wgsl
//!include deviation_sum.wgsl

@group(0) @binding(0) var<uniform> P: Params;
// The row summaries (P_MERGE_ROWS writes them, P_REFINE_GROUPS reads them; P_REFINE_ROWS reads
// them where rows span several segments), and the segments (P_REFINE_ROWS writes them,
// P_MERGE_ROWS reads them). The one not used: a stand-in.
@group(0) @binding(1) var<storage, read_write> rows: array<Partial>;
@group(0) @binding(2) var<storage, read_write> parts: array<Partial>;
@group(0) @binding(3) var<storage, read_write> groups: array<Group>;
// The flagged groups: a count, then the groups (sn_group_stats); its indirect dispatch arguments.
@group(0) @binding(4) var<storage, read> wide_list: array<u32>;
@group(0) @binding(5) var<storage, read_write> running: array<f32>;
// x in this dispatch's window (P_REFINE_ROWS).
@group(0) @binding(6) var<storage, read> x: array<f32>;

var<workgroup> w_sum: array<vec2<f32>, 64>;
var<workgroup> w_tri: array<vec3<f32>, 64>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  // P_REFINE_ROWS: a thread per segment of the rows (sn_group_stats' grid has at least one), which
  // sums it again where its row is a member of a listed group: no thread sums more than one
  // segment, below llvmpipe's limit of 65535 loop iterations per invocation (a workgroup per
  // group, 1/64 of its floats per thread, limited groups to 2^21 floats). Nothing is listed:
  // no workgroup.
  // The window's segments seg_first .. seg_end - 1 (the grid has a thread per segment of the
  // rows, more than a window or block has).
  if ((P.flags & P_REFINE_ROWS) != 0u) {
    let threads = nwg.x * nwg.y * 64u;
    for (var seg = P.seg_first + linear_group(wid, nwg) * 64u + lid; seg < P.seg_end; seg += threads) {
      sum_segment(seg / P.chunks, seg % P.chunks);
    }
    return;
  }
  // P_MERGE_ROWS: a thread per row seg_first .. seg_end - 1 (the same grid), fewer than the
  // segments.
  if ((P.flags & P_MERGE_ROWS) != 0u && P.chunks > 1u) {
    let threads = nwg.x * nwg.y * 64u;
    for (var r = P.seg_first + linear_group(wid, nwg) * 64u + lid; r < P.seg_end; r += threads) {
      merge_row(r);
    }
    return;
  }
  // P_REFINE_GROUPS: a workgroup per listed group, its threads over the members.
  let workgroups = nwg.x * nwg.y;
  for (var k = linear_group(wid, nwg); k < wide_list[0]; k += workgroups) {
    refine_group(wide_list[LIST_FIRST + k], lid);
  }
}

// The member row of group g (LN for g < N, else BN) and its count of members.
fn member(g: u32, j: u32) -> vec2<u32> {
  if (g >= P.groups_ln) {
    return vec2<u32>(P.bn_base + (g - P.groups_ln) * P.bn_step + j * P.bn_stride, P.bn_count);
  }
  return vec2<u32>(P.ln_base + g * P.ln_step + j * P.ln_stride, P.ln_count);
}

// Whether a row (its summary p) is summed again: finite, unscaled, not constant, not near 0.
fn summed_again(p: Partial, r: u32) -> bool {
  return (p.flags & F_CLASS) == 0u && !is_scaled(p.flags) && p.m2 > 0.0 && p.count > 0u &&
    !refine_mean(f32(p.count), p.shift + p.mean, p.m2, p.flags, running[r % P.c]);
}

// Whether a scaled row (its summary p) is summed again where its group is alike: finite, not
// constant.
fn scaled_again(p: Partial) -> bool {
  return (p.flags & F_CLASS) == 0u && is_scaled(p.flags) && p.m2 > 0.0 && p.count > 0u;
}

// Segment `seg_k` of row r, where the row is a member of a listed LN or BN group (its sample's
// or its channel's: F_GROUP_REFINE until P_REFINE_GROUPS) and the segment lies in the window.
fn sum_segment(r: u32, seg_k: u32) {
  let ln_flags = groups[(r - P.rec_base) / P.c].flags;
  let bn_flags = select(0u, groups[P.groups_ln + r % P.c].flags, (P.flags & P_USING_BN) != 0u);
  // Listed for a mean near 0: the segment's mean again. Listed as alike (either of its groups):
  // its mean and M2. A group of the row that was not listed keeps its statistics of the first
  // sums; over rows whose groups of one kind lie 2^-19 apart beside groups of the other alike,
  // var_weight's gradient came out 0.15x to 4x its tolerance where without the M2 sums it was 1x
  // to 35x (attack helper-80's sweeps; a few seeds worse, 1.35x for 0.28x: rounding either way).
  let near = ((ln_flags & (F_GROUP_REFINE | F_GROUP_ALIKE)) == F_GROUP_REFINE) ||
    ((bn_flags & (F_GROUP_REFINE | F_GROUP_ALIKE)) == F_GROUP_REFINE);
  let exact = ((ln_flags | bn_flags) & F_GROUP_ALIKE) != 0u;
  if (!near && !exact) {
    return;
  }
  // Its index in the bound windows of rows and segments.
  let seg = (r - P.rec_base) * P.chunks + seg_k;
  var row: Partial;
  if (P.chunks > 1u) {
    row = rows[r - P.rec_base];
  } else {
    row = parts[r - P.rec_base];
  }
  let p = parts[seg];
  let s = r * P.m + seg_k * P.seg_len - P.elem_base;
  let e = min(s + P.seg_len, r * P.m + P.m - P.elem_base);
  let hi = p.shift + p.mean;
  // A scaled row of an alike group (sn_group_stats lists those in any unit): its M2 again as an
  // exact pair in its unit (sn_wide_stats summed its mean so, its M2 by Welford), marked
  // F_M2_EXACT as below.
  if (exact && scaled_again(row) && p.count > 0u) {
    parts[seg] = summed_about(s, e, -unit_of(p.flags), hi, p.count, p.flags | F_M2_EXACT);
    return;
  }
  if (!summed_again(row, r) || p.count == 0u || poor_shift(f32(p.count), p.shift, p.mean, p.m2, 0u)) {
    return;
  }
  if (!exact) {
    // The quotient's rest as the mean's third word (refine_group sums the means in triples).
    let q = pair_mean(deviation_sum_pair(s, e, 0, hi), p.count);
    parts[seg] = Partial(hi, q.x, p.m2, p.count, p.flags, p.m2_lo, p.fine, select(q.y, 0.0, !is_finite_bits(q.y)));
    return;
  }
  // The mean and M2 about hi as exact pairs (summed_about), the segment marked F_M2_EXACT for
  // the backward's pair dots.
  parts[seg] = summed_about(s, e, 0, hi, p.count, p.flags | F_M2_EXACT);
}

// Row r of several segments, where it is a member of a listed group (its LN or BN group), merged
// again from its segments where they were summed again (the same test, on the merge).
fn merge_row(r: u32) {
  let ln_flags = groups[(r - P.rec_base) / P.c].flags;
  let bn_flags = select(0u, groups[P.groups_ln + r % P.c].flags, (P.flags & P_USING_BN) != 0u);
  if (((ln_flags | bn_flags) & F_GROUP_REFINE) == 0u) {
    return;
  }
  // Its index in the bound windows of rows and segments.
  let at = r - P.rec_base;
  let base = at * P.chunks;
  let sums = row_sums(base);
  let merged = Partial(parts[base].shift, sums.q1 + sums.q2, sums.acc.m2, sums.count, sums.flags, 0.0, 0.0, 0.0);
  // (A scaled row where sum_segment summed its segments again: F_M2_EXACT, or'ed by row_sums.)
  if (summed_again(merged, r) || (scaled_again(merged) && (sums.flags & F_M2_EXACT) != 0u)) {
    // Its mean again in triples from the segments' (with their quotients' rest), keeping the
    // third word (refine_group's triples take it): merged_row's pair T / count kept ~2^-48 of
    // the mean, rows of 5000 floats of std 1e6 beside a row of std 5e-8 mixed on their cancelling
    // LN and BN means had y 3.4x its tolerance.
    rows[at] = with_mean_triple(merged_row(base, sums, sums.flags & ~F_REMEASURE), base);
  } else if (scaled_again(merged)) {
    // A scaled row (sn_wide_stats summed its segments about their shift, with their quotients'
    // rest; sn_row_merge merged them as pairs): its mean again in triples likewise (rows of 5000
    // floats of std 1e13 beside a row of std 5 mixed on their cancelling means: y 1.4x).
    rows[at] = with_mean_triple(rows[at], base);
  }
}

// `row` with its mean as the triple of its segments (row_mean_triple), where that triple is
// finite and normal; not where the row keeps a fine word (its mean then lies below its unit).
fn with_mean_triple(row: Partial, base: u32) -> Partial {
  var out = row;
  let tm = row_mean_triple(base);
  if (row.fine == 0.0 && (class_bits(tm.x) | class_bits(tm.y) | class_bits(tm.z)) == 0u) {
    out.shift = tm.x;
    out.mean = tm.y;
    out.mean_rest = tm.z;
  }
  return out;
}

// The mean of the row of segments parts[base] .. parts[base + chunks - 1] as a float32 triple
// (shift, mean, rest): K0 + (1/count) sum_k count_k ((K_k - K0) + mean_k + rest_k) in triples,
// each count_k (below 2^12) times a word exact (pair_times), re-centred as merged_row's.
fn row_mean_triple(base: u32) -> vec3<f32> {
  let first = parts[base];
  var t = vec3<f32>(0.0);
  var count = 0u;
  for (var k = 0u; k < P.chunks; k++) {
    let p = parts[base + k];
    let w = f32(p.count);
    let dk = two_sum(p.shift, -first.shift);
    t = triple_add_pair(triple_add_pair(t, pair_times(w, dk.x)), pair_times(w, dk.y));
    t = triple_add(triple_add_pair(t, pair_times(w, p.mean)), w * p.mean_rest);
    count += p.count;
  }
  let q = triple_mean(t, max(count, 1u));
  let c = two_sum(first.shift, q.x);
  let l = two_sum(c.y, q.y);
  return vec3<f32>(c.x, l.x, l.y + q.z);
}

// The sum of the workgroup's pairs t (a thread's each), as a tree in w_sum, for every thread.
fn workgroup_pair_sum(t: vec2<f32>, lid: u32) -> vec2<f32> {
  w_sum[lid] = t;
  for (var s = 32u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (lid < s) {
      w_sum[lid] = pair_sum(w_sum[lid], w_sum[lid + s]);
    }
  }
  workgroupBarrier();
  let total = w_sum[0];
  // Every thread has read it before w_sum is written again.
  workgroupBarrier();
  return total;
}

// The sum of the workgroup's triples t (a thread's each), as workgroup_pair_sum.
fn workgroup_triple_sum(t: vec3<f32>, lid: u32) -> vec3<f32> {
  w_tri[lid] = t;
  for (var s = 32u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (lid < s) {
      let o = w_tri[lid + s];
      w_tri[lid] = triple_add(triple_add(triple_add(w_tri[lid], o.x), o.y), o.z);
    }
  }
  workgroupBarrier();
  let total = w_tri[0];
  workgroupBarrier();
  return total;
}

fn refine_group(g: u32, lid: u32) {
  let count = member(g, 0u).y;
  let old = groups[g];
  let centre = old.hi + old.lo;
  // The group's unit (0 but for alike groups of scaled rows): members enter scaled to it, as in
  // sn_group_stats.
  let unit = unit_of(old.flags);
  // In float32 triples, the mean's third word kept (Group.mean_rest): a member far narrower than
  // the group takes mu in its mix, where an LN and a BN mean may cancel to far below the pair's
  // ~2^-48 of them (common.wgsl triple_add).
  var t = vec3<f32>(0.0);
  for (var j = lid; j < count; j += 64u) {
    let r = member(g, j).x;
    let p = rows[r];
    // A member in the group's unit (a scaled one of a smaller unit, or an unscaled one in a
    // scaled group).
    let f = pow2(unit_of(p.flags) - unit);
    let dk = two_sum(p.shift * f, -centre);
    t = triple_add(triple_add(triple_add_pair(t, dk), p.mean * f), p.mean_rest * f);
  }
  let q = triple_mean(workgroup_triple_sum(t, lid), count);
  let h = two_sum(centre, q.x);
  let l = two_sum(h.y, q.y);
  let mu = vec2<f32>(h.x, l.x);
  let mu_rest = l.y + q.z;
  // The variance again as a pair from the members' (M2 pairs where P_REFINE_ROWS summed them):
  // var = (1/K) sum_k v_k + (1/K) sum_k (mu_k - mu)^2, each term a pair.
  var v = vec2<f32>(0.0);
  // And for a BN group's running update, each v_k as its pair quotient (variance_pair), so that
  // running_var rounds once from the pair (sn_group_stats: run_pairs).
  var v_run = vec2<f32>(0.0);
  for (var j = lid; j < count; j += 64u) {
    let p = rows[member(g, j).x];
    let f = pow2(unit_of(p.flags) - unit);
    let d = pair_add(pair_add(two_sum(p.shift * f, -mu.x), p.mean * f), -mu.y);
    // Each member's variance as sn_bwd_rows' dots read it (reads_var_pairs): a pair where its
    // M2 is one, else the float32 quotient, so that its rounding cancels in var_k - var_j as in
    // the first sums (a BN group listed beside LN groups not listed, its members not summed
    // again: var_weight's gradient 1.5x its tolerance with the exact quotients, 0.28x before).
    var v_k = vec2<f32>(row_variance(p.m2 * f * f, p.count), 0.0);
    if (reads_var_pairs(p)) {
      v_k = variance_pair(p.m2 * f * f, p.m2_lo * f * f, p.count);
    }
    let dd = pair_mul(d, d);
    v = pair_sum(pair_sum(v, v_k), dd);
    v_run = pair_sum(pair_sum(v_run, variance_pair(p.m2 * f * f, p.m2_lo * f * f, p.count)), dd);
  }
  let total = workgroup_pair_sum(v, lid);
  let total_run = workgroup_pair_sum(v_run, lid);
  if (lid == 0u) {
    let qv = pair_mean(total, count);
    let vh = two_sum(qv.x, qv.y);
    // A variance pair that is not finite (members' sums beyond float32) keeps the old one, and
    // so does every group under SyncSN (P_NO_RUNNING_UPDATE: only groups whose mean is near 0 are
    // listed there, as before).
    let keep = !is_finite_bits(vh.x + vh.y) || (P.flags & P_NO_RUNNING_UPDATE) != 0u;
    let variance = select(vh.x, old.variance, keep);
    let var_lo = select(vh.y, old.var_lo, keep);
    groups[g] = Group(mu.x, mu.y, variance, old.flags & ~(F_GROUP_REFINE | F_GROUP_ALIKE), var_lo, old.fine, select(mu_rest, 0.0, !is_finite_bits(mu_rest)), old.fine_rest);
    // Listed groups are finite (sn_group_stats): the update in the group's unit.
    let c = g - P.groups_ln;
    if (g >= P.groups_ln && (P.flags & P_TRAINING) != 0u && (P.flags & P_NO_RUNNING_UPDATE) == 0u) {
      let qr = pair_mean(total_run, count);
      let vr = two_sum(qr.x, qr.y);
      let vp = select(vec2<f32>(variance, var_lo), vr, !keep && is_finite_bits(vr.x + vr.y));
      let r = running_update(running[c], running[P.c + c], mu, vp, unit, 0u);
      running[c] = r.x;
      running[P.c + c] = r.y;
    }
  }
  workgroupBarrier();
}
