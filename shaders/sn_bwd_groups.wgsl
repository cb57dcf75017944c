// sn_bwd_groups.wgsl: the backward's combine step, both layouts. Workgroup g < N sums the Grad
// records of LN group n = g, the next C workgroups those of channel c (layout "1d": the LN
// groups several per workgroup, GROUP_SPAN below), exactly as
// sn_group_stats walks its members (ln_base + g*ln_step + k*ln_stride, k < ln_count; bn_*):
//   out[g] = sum_k member_k  (every field),  flags = OR_k flags_k
// (grad_add: records of wide rows, in units of their own, are brought to the larger unit first)
// Layout "nd": members are the rows of sn_bwd_rows, so out[n] = (GmL[n], GvL[n], ...) and
// out[N + c] = (GmB[c], GvB[c], dgamma[c], dbeta[c]); the dot products of all rows are the sum
// of out[0..N). Layout "1d": members are the tile-line sums of sn1d_bwd_reduce.
// Each of the GROUP_THREADS threads adds a strided share, then the threads add pairwise (a tree).
// Group g's record is out[seg_first + g]. When the members exceed one storage binding, the
// members are bound in windows (the base fields are relative to the window) and each window's
// dispatches add (P_ACCUMULATE) their part of every group they touch to records zeroed first.

//!include common.wgsl
//!include backward_common.wgsl

// Threads per workgroup: a power of two up to 64, set per device when the pipeline is made
// (GpuContext.groupWorkgroupSize: 64 on a GPU, 8 on a CPU adapter such as lavapipe, which runs
// the invocations as loops and pays for each one's share of the tree). Arrays hold the most.
override GROUP_THREADS: u32 = 64u;
// Threads per group, a power of two: where it is below GROUP_THREADS, a workgroup makes
// GROUP_THREADS / GROUP_SPAN groups, each on the workgroup arrays' slots b .. b + GROUP_SPAN - 1.
// Only for layout "1d"'s LN groups (a dispatch of their own, groups_bn 0), whose rows have few
// members each (backends/_webgpu_plan.ts lnGroupSpan: two at C = 64, which took a workgroup of
// 8 or 64 threads each). The tree's first levels (s >= GROUP_SPAN) then merge each slot with an
// empty record, as the slots past the members did at one group per workgroup (grad_add of an
// empty record is not always the identity: a scaled record's zero sums take the empty record's
// unit 0), so the groups come out bit for bit as at GROUP_THREADS. At most GROUP_THREADS.
override GROUP_SPAN: u32 = 64u;

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> members: array<Grad>;
@group(0) @binding(2) var<storage, read_write> out: array<Grad>;
// Layout "1d": groups whose sums carry exponents or G_VNAN (an element on a running_var of
// +Infinity, whose s is 0: sn1d_bwd_dx's float32 s of the group's 2^127 stand-in is not), or
// whose statistics are scaled, for
// sn1d_bwd_wide_dx (a count, 0 when the call starts, then group indices, the window's
// rec_base + seg_first + g; a group summed over several windows may appear more than once).
// sn1d_bwd_dx reads a scaled group's statistics as if unscaled, so every element of a scaled
// LN or BN group must be written again, also where the mix's unit makes the sums' exponents
// all 0 (x ~ 1e-19 in one column of a sample of ordinary values; an evaluation on an infinite
// running_var, whose s is 0).
@group(0) @binding(3) var<storage, read_write> wide_groups: array<atomic<u32>>;
// The forward's statistics (LN groups, then BN groups: the records' global order), or the
// window's copy of them where they exceed one binding (see `stat` below). Layout "1d" only.
@group(0) @binding(4) var<storage, read> stat_groups: array<Group>;
// gamma (C), then beta (C): layout "1d" lists the channels whose gamma / std may be factor-wide.
@group(0) @binding(5) var<storage, read> affine: array<f32>;

var<workgroup> w_s: array<vec4<f32>, 64>;
var<workgroup> w_a: array<vec4<f32>, 64>;
var<workgroup> w_b: array<vec4<f32>, 64>;
var<workgroup> w_flags: array<u32, 64>;
var<workgroup> w_units: array<i32, 64>;
var<workgroup> w_dglo: array<u32, 64>; // Grad.low: dgamma's low word, or the mean dots' lanes

@compute @workgroup_size(GROUP_THREADS)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let span = min(GROUP_SPAN, GROUP_THREADS);
  let l = lid % span; // the thread within its group
  let b = lid - l; // its group's first slot in the workgroup arrays
  // The workgroup's first group: the only one where span is GROUP_THREADS.
  let g_first = linear_group(wid, nwg) * (GROUP_THREADS / span);
  let g = g_first + lid / span;
  if (g_first >= P.groups_ln + P.groups_bn) {
    return;
  }
  // (A group past the last one in a workgroup of several: no members, nothing written.)
  let live = g < P.groups_ln + P.groups_bn;
  var base: u32;
  var stride: u32;
  var count: u32;
  if (g >= P.groups_ln) {
    base = P.bn_base + (g - P.groups_ln) * P.bn_step;
    stride = P.bn_stride;
    count = P.bn_count;
  } else {
    base = P.ln_base + g * P.ln_step;
    stride = P.ln_stride;
    count = P.ln_count;
  }
  count = select(0u, count, live);
  var acc = grad_zero();
  for (var k = l; k < count; k += span) {
    acc = grad_add(acc, members[base + k * stride]);
  }
  w_s[lid] = acc.s;
  w_a[lid] = acc.a;
  w_b[lid] = acc.b;
  w_flags[lid] = acc.flags;
  // (Every group of a workgroup of several is an LN group: see GROUP_SPAN.)
  let chan = g_first >= P.groups_ln;
  w_units[lid] = shared_units(acc, chan);
  w_dglo[lid] = acc.low;
  workgroupBarrier();
  for (var s = GROUP_THREADS / 2u; s > 0u; s = s >> 1u) {
    if (l < s) {
      // Past the group's slots (s >= span): the empty record those slots held at one group per
      // workgroup (its zeros opaque, as workgroup memory kept them from the compiler).
      let sum = grad_add(shared_grad(lid, chan), partner(select(lid, lid + s, s < span), s < span, chan));
      w_s[lid] = sum.s;
      w_a[lid] = sum.a;
      w_b[lid] = sum.b;
      w_flags[lid] = sum.flags;
      w_units[lid] = shared_units(sum, chan);
      w_dglo[lid] = sum.low;
    }
    workgroupBarrier();
  }
  if (l == 0u && live) {
    var sum = shared_grad(b, chan);
    if ((P.flags & P_ACCUMULATE) != 0u) {
      sum = grad_add(out[P.seg_first + g], sum);
    }
    out[P.seg_first + g] = sum;
    let at = P.rec_base + P.seg_first + g;
    // stat_groups: the forward's groups (row_base = stat_bn_base = 0), or a window's copy of its
    // samples' LN groups (sample row_base first) and then the BN groups (from N - stat_bn_base).
    let stat = select(at - P.row_base, at - P.stat_bn_base, at >= P.n);
    // (And every sample where a mixing weight is below float32's normal range: sn1d_bwd_dx
    // mixes with the weights' float32 values alone, P_TINY_WEIGHTS.)
    // (And every channel whose weighted variance plus eps lies below 2^-102,
    // term_var_near_subnormal: sn1d_bwd_dx's hot mix may flush its elements' var + eps or a
    // term of it.)
    // (And every channel whose gamma / std may be factor-wide, chan_factor_wide: its sums
    // carry gamma's exponent only where they are not 0, and sn1d_bwd_dx's dy gamma s cannot
    // hold such an element's term: a subnormal gamma flushed to 0 by a GPU that flushes
    // subnormals made dy gamma 0, lifted by 2^64, and (dy 2^64) 0 NaN for dy 3e38, or 0 for
    // dy gamma s of 6e14 where the column's sums cancel to 0; attack fuzzer seed 214697.)
    // (And under SyncSN in training every channel: its sums here are this replica's, the CPU
    // puts the global batch's in their place, which may carry exponents where these do not.)
    if ((P.flags & P_CHAN_GROUPS) != 0u && ((sum.flags & (G_EXPS | G_VNAN)) != 0u || is_scaled(stat_groups[stat].flags) ||
      ((P.flags & P_TINY_WEIGHTS) != 0u && at < P.n) || (synced_training() && at >= P.n) ||
      (at >= P.n && term_var_near_subnormal(1u, stat_groups[stat].variance)) ||
      (at >= P.n && chan_factor_wide(at - P.n, stat_groups[stat].variance)))) {
      let listed = atomicAdd(&wide_groups[0], 1u);
      atomicStore(&wide_groups[LIST_FIRST + listed], at);
      // Its reader's dispatch (common.wgsl: list_grid).
      let grid = list_grid(listed + 1u);
      atomicMax(&wide_groups[1], grid.x);
      atomicMax(&wide_groups[2], grid.y);
    }
  }
}

// A Grad's units word in workgroup memory: a channel's record (chan) keeps dbeta's unit (Grad's
// spare) in place of eb, the variance dots' unit, and a sample's its eb and no dbeta unit. The
// backend reads a channel record's gm, gv, dgamma and dbeta, and a sample record's dot products
// only (backends/_webgpu_grad_sums.ts; the wide dx passes read gm and gv), so each drops what
// it does not use: a seventh array of workgroup memory for spare made SwitchNorm1d
// [65536, 64]'s backward 3-5% slower on lavapipe.
fn shared_units(g: Grad, chan: bool) -> i32 {
  return select(g.units, (g.units & ~0xffff) | (g.spare & 0xffff), chan);
}

// The Grad in workgroup slot i (see shared_units).
fn shared_grad(i: u32, chan: bool) -> Grad {
  let u = w_units[i];
  let units = select(u, u & ~0xffff, chan);
  let spare = select(0, (u << 16u) >> 16u, chan);
  return Grad(w_s[i], w_a[i], w_b[i], w_flags[i], units, spare, w_dglo[i]);
}

// The tree's partner: slot i, or (not `inside`) an empty record whose zeros the compiler cannot
// see (grad_zero's, through opaque: x + 0 may otherwise be folded to x).
fn partner(i: u32, inside: bool, chan: bool) -> Grad {
  if (inside) {
    return shared_grad(i, chan);
  }
  let z = opaque(0.0);
  let v = vec4<f32>(z);
  return Grad(v, v, v, 0u, 0, 0, bitcast<u32>(z));
}

// Whether channel c's gamma over sqrt(wvar_bn var_bn + eps), a bound of its elements' gamma /
// std (their var + eps is at least that), is factor-wide (common.wgsl), as sn1d_bwd_reduce's
// per-column test.
fn chan_factor_wide(c: u32, variance: f32) -> bool {
  return factor_wide(affine[c], weighted_var(1u, P.wvar[1] * variance) + P.eps);
}
