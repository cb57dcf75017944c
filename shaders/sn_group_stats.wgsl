// sn_group_stats.wgsl: the derived statistics, from summaries only (never another pass over x).
// Workgroup g < N makes LN group n = g, the next C workgroups BN group c (layout "1d": the LN
// groups in a dispatch of their own, several per workgroup: GROUP_SPAN below), each writing
// groups[g] = (hi, lo, variance, flags) with mean = hi + lo, hi = the first member's shift.
// Members are summaries P_k at ln_base + g*ln_step + k*ln_stride (k < ln_count), likewise bn_*.
// Layout "nd" (members are the IN rows (mu_k = K_k + mean_k, v_k = M2_k / (count_k - 1))):
//   mu   = (1/K) sum_k mu_k
//   var  = (1/K) sum_k v_k + (1/K) sum_k (mu_k - mu)^2
//        ( = mean_k (v_k + mu_k^2) - mu^2 of the reference, without its cancellation)
//   LN: k runs over c for one n;  BN: over n for one c.
//   The variance is also written as a pair (variance + var_lo): the sum of the v_k in pairs
//   (each v_k = (M2_k + M2lo_k) / (count_k - 1) to ~1e-14), so that the backward's differences
//   of variances ~std^2 sqrt(2 / M) apart keep their precision on long rows (pair.wgsl);
//   `variance` itself is the float32 value as before. Only with P_PAIRS (rows of several
//   segments, and evaluations with BN whose IN M2 may be pairs: refine_variance, common.wgsl;
//   the backward reads var_lo there); else var_lo = 0.
// Layout "1d" (flag P_CHAN_GROUPS; members are tile summaries of disjoint parts of a row/column):
//   (count, mean, M2) = Chan-merge of the members,  var = M2 / (count - 1),
//   mu = (1/count) sum_k count_k ((K_k - K_0) + mean_k) + K_0, the sum and the division in
//   float32 hi/lo pairs (pair.wgsl), written re-centred (hi = f32(mu)): one dominating
//   member (a row of 1e7 in a column of ~1) no longer rounds the others' shares to its ulp,
//   which made the mean ~1e-3 relative off. The Chan merge's M2 keeps float32 relative
//   accuracy there (the error it makes is far below the dominating member's share); var_lo
//   is the rest of M2 summed again as a pair about that mean (below), divided by count - 1.
// Each of the GROUP_THREADS threads (GROUP_SPAN of a group's own) folds a strided share of the
// members with Welford/Chan, then the threads merge pairwise in workgroup memory.
// Evaluation mode: BN group c is the running buffers, mu = running_mean[c],
// var = running_var[c]. Training mode: thread 0 of BN group c also updates the running buffers
// (running = [mean(C), var(C)]) with the batch's mu, var:
//   moving average:  r_mean = m * r_mean + (1 - m) * mu;  r_var = m * r_var + (1 - m) * var
//   batch average:   r_mean = r_mean + mu;                r_var = r_var + (mu^2 + var)
// with IEEE results for non-finite statistics (ieee_add / ieee_mul), as the reference has.
// Under SyncSN (P_NO_RUNNING_UPDATE) the CPU does the update, with the global batch's statistics.
// Units: members may be scaled (F_SCALED: wide rows, sn_wide_stats). The group's unit u is the
// largest member unit (0 for unscaled members; none for unscaled members of zeros, below), found first (a workgroup atomicMax); each member
// enters multiplied by f = 2^(u_k - u) (exact; 1 for an unscaled member of an unscaled group, so
// in-range data give the same bits as without units), its M2 by f^2, and the group is written in
// unit u (unit_flags). The running update of a scaled group adds its terms in that unit and
// scales once (add_scaled): a batch variance beyond float32 makes running_var +Infinity, and
// results below float32's normal range are the subnormals or 0 PyTorch's float32 buffers hold.
// Group g is written to groups[chan_base + g] of the bound window of groups. Layout "nd" with per-row records bound in blocks
// of whole samples (backends/_webgpu_plan.ts): a dispatch per block makes the block's LN groups,
// another (P_BN_PARTS) each channel's part over the block, written as bn_parts[chan_base + c] =
// (shift hi, mean lo, M2 = sum_k v_k + sum_k (mu_k - mu)^2, count K, unit flags); one more
// (P_BN_MERGE) merges the parts of each channel (the members) with Chan's merge into
// var = M2 / K, which is the formula above over all of the channel's rows.

//!include common.wgsl
//!include pair.wgsl

// Threads per workgroup: a power of two up to 64, set per device when the pipeline is made
// (GpuContext.groupWorkgroupSize: 64 on a GPU, 8 on a CPU adapter such as lavapipe, which runs
// the invocations as loops and pays for each one's share of the tree). Arrays hold the most.
override GROUP_THREADS: u32 = 64u;
// Threads per group, a power of two: where it is below GROUP_THREADS, a workgroup makes
// GROUP_THREADS / GROUP_SPAN groups, each on GROUP_SPAN threads of its own (the workgroup arrays'
// slots b .. b + GROUP_SPAN - 1). Only for layout "1d"'s LN groups, in dispatches of their own
// (groups_bn 0: is_bn and the early return below are then the workgroup's, uniform), whose rows
// have few members each (backends/_webgpu_plan.ts lnGroupSpan: two at C = 64, which took a
// workgroup of 8 or 64 threads each). At most GROUP_THREADS (the default: one group).
override GROUP_SPAN: u32 = 64u;

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> members: array<Partial>;
@group(0) @binding(2) var<storage, read_write> groups: array<Group>;
@group(0) @binding(3) var<storage, read_write> running: array<f32>;
// Layout "1d": the groups whose elements sn1d_wide_normalize writes again (a count, 0 when the
// call starts, then group indices): scaled groups, and BN groups (channels) where an element's
// gamma / std may be factor-wide (common.wgsl). An element's mixed variance is at least
// wvar_bn var_bn (the weights are >= 0), so a channel whose gamma over sqrt(wvar_bn var_bn + eps)
// is not factor-wide has no such element: its check is one per channel here, not one per element
// in sn1d_normalize (lavapipe would run that branch's code for every element).
@group(0) @binding(4) var<storage, read_write> wide_groups: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
@group(0) @binding(6) var<storage, read_write> bn_parts: array<Partial>; // P_BN_PARTS only

fn list_if_scaled(g: u32, flags: u32) {
  list_if(g, is_scaled(flags));
}

// `variance` in real units (an unscaled group's).
fn list_if_wide(g: u32, flags: u32, variance: f32) {
  let c = g - P.groups_ln;
  let factor = g >= P.groups_ln && factor_wide(affine[c], weighted_var(1u, P.wvar.y * variance) + P.eps);
  // A group of variance 0 with eps 0: its elements whose other term has variance 0 too, or a
  // variance weight of 0, have std 0, y = (x - mu) gamma / 0 (std_zero_y, sn1d_wide_normalize).
  // LN groups too: a sample of one value under LN's variance alone had y NaN for +-Infinity
  // (attack helper-88; tests/std_zero_test.ts).
  let std0 = (bitcast<u32>(variance) << 1u) == 0u && P.eps == 0.0;
  // Every sample where a mixing weight is below float32's normal range: sn1d_normalize mixes
  // with the weights' float32 values alone (mix_1d), sn1d_wide_normalize with their exponents.
  let tiny = g < P.groups_ln && (P.flags & P_TINY_WEIGHTS) != 0u;
  // Every channel whose weighted variance plus eps, a lower bound of its elements' var + eps,
  // lies below 2^-102 (term_var_near_subnormal): sn1d_normalize's hot mix may drop a weighted
  // term below float32's normal range there (a GPU that flushes subnormals: eps 2^-126 beside
  // an LN term of ~2^-127 under BN's variance 0, y 3.30e12 for 2.62e12 on SwiftShader), which
  // wide_map_1d keeps (its lift). Layout "1d" only (list_if).
  let near = g >= P.groups_ln && term_var_near_subnormal(1u, variance);
  list_if(g, is_scaled(flags) || factor || std0 || tiny || near || synced_bn(g));
}

// SyncSN in training: a BN group here has this replica's statistics, and the CPU puts the global
// batch's in their place after this pass, which may be wide where these are not (a channel of ~1
// here and ~1e25 on another replica gave y 0.75 for -0.105): every channel is listed, and its
// elements written again from the global statistics by sn1d_wide_normalize (as sn1d_bwd_wide_dx
// writes their dx from the global sums, sn_bwd_groups).
fn synced_bn(g: u32) -> bool {
  return g >= P.groups_ln && synced_training();
}

fn list_if(g: u32, yes: bool) {
  if ((P.flags & P_CHAN_GROUPS) != 0u && yes) {
    // The group's index in the whole groups buffer (rec_base: where its bound window starts).
    let listed = atomicAdd(&wide_groups[0], 1u);
    atomicStore(&wide_groups[LIST_FIRST + listed], P.rec_base + P.chan_base + g);
    // Its reader's dispatch (common.wgsl: list_grid).
    let grid = list_grid(listed + 1u);
    atomicMax(&wide_groups[1], grid.x);
    atomicMax(&wide_groups[2], grid.y);
  }
}

// The grid of sn_group_refine's two steps (the list's dispatch arguments) once `listed` groups
// are listed: a workgroup per listed group (P_REFINE_GROUPS), and at least a thread per segment
// of the rows (P_REFINE_ROWS: no thread sums more than one segment, far below llvmpipe's loop
// limit). x at most 65535, rows of y beyond.
fn refine_grid(listed: u32) -> vec2<u32> {
  let segs = P.n * P.c * P.chunks;
  let w = max(listed, segs / 64u + select(0u, 1u, segs % 64u != 0u));
  let y = w / 65535u + select(0u, 1u, w % 65535u != 0u);
  return vec2<u32>(w / y + select(0u, 1u, w % y != 0u), y);
}

// The cuts of the group refine, WASM's NEAR_ZERO_GROUP2 and NARROW_MEMBER (wasm/src/nd.rs):
// mean^2 below 2^-18 of the group's variance, a member's variance below 2^-20 of it.
const NEAR_ZERO_GROUP2: f32 = 3.814697265625e-6;
const NARROW_MEMBER: f32 = 9.5367431640625e-7;
// WASM's WIDE_GROUP (wasm/src/nd.rs): a group term w_k std_k beyond this times a member's mixed
// std lists the group for the refine (the group mean's rounding, 2^-27 to 2^-25 of it measured,
// reached y's tolerance from ~2000 on; at 8 ordinary data with channel stds 100x apart under
// variance logits [2, -5, -6] were listed on every call, the forward 1.22x).
const WIDE_GROUP: f32 = 64.0;
// The most member records one group's test of its members' mixed means reads (its members times
// their other groups' members), beyond which a group that may be wide is listed untested.
const WIDE_READS: u32 = 4096u;
// The spread of member variances within which a group's members count as alike: 2^-20 of the
// group's variance, 16 float32 ulps (see the listing below): rows that are shuffles of one row
// come out within it (Welford's M2 rounds alike there). At 2^-10 the benchmark's rows (one
// sinusoid) were listed at [8, 64, 56, 56] and [2, 32, 128, 128], and random rows of 16384 in BN
// groups of two at the latter (their variances ~1% apart): the forward 1.3x; at 2^-18 one or two
// of the latter's BN groups still (the benchmark's rows lie 2^-18.2 apart there), 1.04x.
const ALIKE: f32 = 9.5367431640625e-7;

var<workgroup> w_n: array<f32, 64>;
var<workgroup> w_mean: array<f32, 64>;
var<workgroup> w_m2: array<f32, 64>;
var<workgroup> w_sumv: array<f32, 64>;
var<workgroup> w_sumv_pair: array<vec2<f32>, 64>;
var<workgroup> w_flags: array<u32, 64>;
var<workgroup> w_count: array<u32, 64>;
var<workgroup> w_sum: array<vec2<f32>, 64>; // layout "1d": sum_k count_k (mean_k - K_0), a pair
var<workgroup> w_unit: array<atomic<u32>, 64>; // largest member unit + 127 (zero-initialized)
var<workgroup> w_far: u32; // whether the mean is summed again (below)
var<workgroup> w_minv: array<f32, 64>; // the least member variance (layout "nd")
var<workgroup> w_maxv: array<f32, 64>; // the largest member variance (layout "nd")
var<workgroup> w_far_sum: array<vec2<f32>, 64>;
// Layout "nd", BN groups in training: the running update's sums (run_pairs, below).
var<workgroup> w_run_m2: array<vec2<f32>, 64>;
var<workgroup> w_run_sq: array<vec2<f32>, 64>;
var<workgroup> w_run_sum: array<vec2<f32>, 64>;
// The members' largest |x| field and largest |gamma| bits (layout "nd", P_GROUP_REFINE): the
// bounds of `may_overflow` below.
var<workgroup> w_xfield: array<atomic<u32>, 64>;
var<workgroup> w_gamma: array<atomic<u32>, 64>;
// Layout "1d": whether each group's mean is summed again (again_1d, below), at its slot b.
var<workgroup> w_again: array<u32, 64>;
// The invocation's group's first slot in the workgroup arrays (b in main).
var<private> w0: u32;

// WASM's OVERFLOW2 (wasm/src/nd.rs: refine_overflowing_rows) as an exponent: a member row whose
// |gamma (x - mu) / std| may pass 2^124 (within 2^4 of float32's largest value).
const OVERFLOW_EXP: i32 = 124;

@compute @workgroup_size(GROUP_THREADS)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let span = min(GROUP_SPAN, GROUP_THREADS);
  let l = lid % span; // the thread within its group
  let b = lid - l; // its group's first slot in the workgroup arrays
  w0 = b;
  // The workgroup's first group: the only one where span is GROUP_THREADS.
  let g_first = linear_group(wid, nwg) * (GROUP_THREADS / span);
  let g = g_first + lid / span;
  if (g_first >= P.groups_ln + P.groups_bn) {
    return;
  }
  // (A group past the last one in a workgroup of several: no members, nothing written.)
  let live = g < P.groups_ln + P.groups_bn;
  // (Every group of a workgroup of several is an LN group: see GROUP_SPAN.)
  let is_bn = g_first >= P.groups_ln;
  let c = g - P.groups_ln; // the channel, for BN groups
  let training = (P.flags & P_TRAINING) != 0u;
  if (is_bn && !training) {
    if (l == 0u && live) {
      let rm = running[c];
      let rv = running[P.c + c];
      // A NaN or infinite buffer (left by a non-finite batch) must give NaN, as in the reference.
      // running_var +Infinity (a batch variance beyond float32) with a finite mean: the
      // reference's s is 0 and y = beta. Marked F_VAR_INF (wide_map's s is then 0), with a
      // variance of 2^127 in units of 2^256 in its place.
      let var_inf = bitcast<u32>(rv) == P.inf_bits && class_bits(rm) == 0u;
      // (No return in this branch: Tint takes control flow after a return under a condition
      // read from storage as non-uniform, and refuses the barriers below.)
      if (var_inf) {
        groups[P.chan_base + g] = Group(scale2(rm, -128), 0.0, 1.7014118346046923e38, unit_flags(0u, 128) | F_VAR_INF, 0.0, 0.0, 0.0, 0.0);
        list_if_scaled(g, F_SCALED);
      } else {
        let bad = class_bits(rm) | select(0u, F_NAN, class_bits(rv) != 0u);
        // Buffers of a size that wide rows have (beyond (2^-21, 2^40]) are written scaled, like
        // the batch statistics of such rows: unit 2^u, u the larger exponent of |mean|, std,
        // but not above the exponent of the std the mix can have (that of the std, at least
        // sqrt(eps): P.eps_exp) where |mean| 2^-u stays finite without it (with running_var 0,
        // whose mix takes its std from the other terms, the mean's unit, as before). A loaded running_mean
        // far from its std (1e21 over 1) in the mean's unit made s' = s 2^u pass float32 in the
        // backward's s'^3 and var 2^-2u fall below float32's normal range. Such a mean can be
        // large in its unit (wide_map brings it to the mix's by unit_shift). A wide group stays
        // scaled (u = 0 becomes 1).
        let field_v = abs_field(bitcast<u32>(rv) & 0x7fffffffu);
        let field_m = abs_field(bitcast<u32>(rm) & 0x7fffffffu);
        let field_s = select(0u, (field_v + 128u) / 2u, field_v != 0u);
        let field = max(field_m, field_s);
        let u_std = select(
          i32(field_m) - 127,
          max(max(i32(field_s) - 127, P.eps_exp), i32(field_m) - 253),
          field_v != 0u,
        );
        let u_min = min(i32(field) - 127, u_std);
        // A running_var at most 2^-100 makes the buffers wide too, whatever their mean: a
        // subnormal one (7.9e-41 beside a mean of 2e8) would be flushed to 0 in float32
        // arithmetic, and a mixing weight times one of 2^-100 may be (y NaN with eps 0 where the
        // reference has 8e36); scaled, it lies near 1. (Not at 2^-42 as for data: a tiny
        // running_var of a dead channel, 1e-14, stays on the hot path.)
        // So does a nonzero running_mean at most 2^-100 (a subnormal one, 1e-38 beside a
        // running_var of 1, was flushed: dgamma -1.7e-4 for 0.068 under dy ~7e36; mean_own
        // below then holds it in its own unit).
        let wide = is_wide_field(field) || (field_v != 0u && field_v < 28u) || (field_m != 0u && field_m < 28u);
        let u = select(0, select(u_min, 1, u_min == 0), wide && bad == 0u);
        // A running_var that its mean's unit would hold below 2^-100 (a running_mean of 3e38
        // over a running_var of 1.4e-45: |mean| / std ~2^202, where it is 0, as is y's std with
        // eps 0: y 3e28 for 1e22) is held in a unit of its own, 2^(2 (u + o)) near its root
        // (F_VAR_OFFSET: -o; common.wgsl var_unit), from its exponent by its bits (subnormals
        // included): in sqrt(eps)'s unit a running_var of 2.8e-45, negligible in the mix beside
        // eps, is the whole of var_k - var in the backward's variance dots beside constant rows
        // (var_diffs, backward_common.wgsl); with eps 0 its mix would have std 0 (std_zero).
        let rv_exp = bits_exponent(rv);
        let own = wide && bad == 0u && rv_exp > -1000 && rv_exp - 2 * u < -100;
        let o = select(0, min(0, (rv_exp >> 1u) - u), own);
        let rv_scaled = scale2(rv, -2 * (u + o));
        // A nonzero running_mean more than 2^100 below that unit (1e-33 beside a running_var of
        // 3e37, 2^-172 below its std's unit 2^62) was 0 there, and the mix's mean with it (dgamma
        // 1e-26 for 1e-21 under BN's mean weight): the mean is then held in its own unit 2^um
        // (its exponent), the variance still in 2^(2 (u + o)), now above it (F_VAR_OFFSET holds
        // -o' = um - (u + o) < 0, two's complement in its 9 bits; var_unit). fine_mean takes it
        // from there.
        let um = i32(field_m) - 127;
        let mean_own = wide && bad == 0u && field_m != 0u && um < u + o - 100;
        let u_rec = select(u, select(um, 1, um == 0), mean_own);
        let o_rec = (u + o) - u_rec;
        groups[P.chan_base + g] = Group(
          select(scale2(rm, -u_rec), 0.0, bad != 0u),
          0.0,
          select(rv_scaled, 0.0, bad != 0u),
          unit_flags(bad, u_rec) | ((u32(-o_rec) & 0x1ffu) << 21u) | F_RUNNING,
          0.0,
          0.0,
          0.0,
          0.0,
        );
        list_if_wide(g, unit_flags(bad, u), select(rv, 0.0, bad != 0u));
      }
    }
    return;
  }
  var base: u32;
  var stride: u32;
  var count: u32;
  if (is_bn) {
    base = P.bn_base + c * P.bn_step;
    stride = P.bn_stride;
    count = P.bn_count;
  } else {
    base = P.ln_base + g * P.ln_step;
    stride = P.ln_stride;
    count = P.ln_count;
  }
  count = select(0u, count, live);
  base = select(0u, base, live);
  // Members merged as (count, mean, M2) summaries: tile summaries ("1d") and BN parts.
  let chan = (P.flags & (P_CHAN_GROUPS | P_BN_MERGE)) != 0u;
  // Tile summaries ("1d"), whose means are summed as pairs too (below).
  let tiles = (P.flags & P_CHAN_GROUPS) != 0u;
  // An unscaled member of zeros (a row of zeros: its largest |x|, 0, is not wide) holds no
  // value that needs a unit: its unit 0 made a group of it and rows of 1e-25 (scaled, unit
  // 2^-83) take unit 0, where their squares are 0: the group's variance 0 (y -Infinity for -1.68
  // with eps 0, and the other rows' y 2.2x off). A group of such members alone keeps unit 0.
  var unit_max = 0u;
  for (var k = l; k < count; k += span) {
    let p = members[base + k * stride];
    let zero = !is_scaled(p.flags) && p.shift == 0.0 && p.mean == 0.0 && p.m2 == 0.0;
    unit_max = max(unit_max, select(u32(unit_of(p.flags) + 127), 0u, zero));
  }
  atomicMax(&w_unit[b], unit_max);
  workgroupBarrier();
  let unit_word = atomicLoad(&w_unit[b]);
  let unit = select(i32(unit_word) - 127, 0, unit_word == 0u);
  let first = members[base];
  let hi = first.shift * pow2(unit_of(first.flags) - unit);
  var acc = Acc(0.0, 0.0, 0.0);
  var sumv = 0.0;
  var minv = 3.4028234663852886e38;
  var maxv = 0.0;
  var sumv_pair = vec2<f32>(0.0);
  // Only rows longer than one segment need var_lo (sn_bwd_rows); short rows skip its cost.
  let pairs = (P.flags & P_PAIRS) != 0u;
  var flags = 0u;
  var total = 0u;
  var sum = vec2<f32>(0.0);
  var xfield = 0u;
  var gamma_bits = 0u;
  for (var k = l; k < count; k += span) {
    let p = members[base + k * stride];
    let f = pow2(unit_of(p.flags) - unit);
    let mean = (p.shift * f - hi) + p.mean * f;
    let m2 = p.m2 * f * f;
    flags = flags | (p.flags & F_CLASS);
    total += p.count;
    // (Layout "nd": an LN group's member k is channel k's row, a BN group's gamma its channel's;
    // merged summaries, chan, read none of their own.)
    xfield = max(xfield, max_field(p.flags));
    gamma_bits = max(gamma_bits, bitcast<u32>(affine[select(select(k, c, is_bn), 0u, chan)]) & 0x7fffffffu);
    if (chan) {
      acc = merge(acc, Acc(f32(p.count), mean, m2));
    } else {
      acc = merge(acc, Acc(1.0, mean, 0.0));
      if (p.count >= 2u) {
        let v = row_variance(m2, p.count);
        sumv += v;
        minv = min(minv, v);
        maxv = max(maxv, v);
      } else {
        flags = flags | F_NO_VAR;
      }
    }
  }
  // The pair sums below, each in a loop of its own whose bound is 0 where it is not needed
  // (lavapipe runs both sides of a branch, masked, but skips a loop that no lane enters: inside
  // the loops above they made every group pass ~50% slower there).
  // Layout "nd", rows of several segments: the variances as pairs (P_PAIRS).
  for (var k = l; k < select(0u, count, pairs && !chan); k += span) {
    let p = members[base + k * stride];
    let f = pow2(unit_of(p.flags) - unit);
    if (p.count >= 2u) {
      sumv_pair = pair_sum(sumv_pair, variance_pair(p.m2 * f * f, p.m2_lo * f * f, p.count));
    }
  }
  // Layout "1d": the means' pair sum, count_k times each word of the member's mean in exact
  // products: count_k in parts of 12 bits (pair_sub_times), as the BN parts of blocks of samples
  // have counts of up to a block's rows (a product with a count of more than 12 significant
  // bits, a last block of N = 30007, rounded, ~2^-25 of a part's share, which dgamma under
  // dy = 1 multiplies by N: tests/webgpu_row_blocks_test.ts).
  for (var k = l; k < select(0u, count, tiles); k += span) {
    let p = members[base + k * stride];
    let f = pow2(unit_of(p.flags) - unit);
    let dk = two_sum(p.shift * f, -hi);
    sum = pair_sub_times(pair_sub_times(pair_sub_times(sum, p.count, -dk.x), p.count, -dk.y), p.count, -(p.mean * f));
  }
  atomicMax(&w_xfield[b], xfield);
  atomicMax(&w_gamma[b], gamma_bits);
  w_n[lid] = acc.n;
  w_mean[lid] = acc.mean;
  w_m2[lid] = acc.m2;
  w_sumv[lid] = sumv;
  w_minv[lid] = minv;
  w_maxv[lid] = maxv;
  w_sumv_pair[lid] = sumv_pair;
  w_flags[lid] = flags;
  w_count[lid] = total;
  w_sum[lid] = sum;
  workgroupBarrier();
  for (var s = span / 2u; s > 0u; s = s >> 1u) {
    if (l < s) {
      let o = lid + s;
      let m = merge(Acc(w_n[lid], w_mean[lid], w_m2[lid]), Acc(w_n[o], w_mean[o], w_m2[o]));
      w_n[lid] = m.n;
      w_mean[lid] = m.mean;
      w_m2[lid] = m.m2;
      w_sumv[lid] += w_sumv[o];
      w_minv[lid] = min(w_minv[lid], w_minv[o]);
      w_maxv[lid] = max(w_maxv[lid], w_maxv[o]);
      w_flags[lid] = w_flags[lid] | w_flags[o];
      w_count[lid] += w_count[o];
    }
    workgroupBarrier();
  }
  // The pair sums' tree, only where one of them is formed (see above).
  for (var s = select(0u, span / 2u, pairs || tiles); s > 0u; s = s >> 1u) {
    if (l < s) {
      let o = lid + s;
      w_sumv_pair[lid] = pair_sum(w_sumv_pair[lid], w_sumv_pair[o]);
      w_sum[lid] = pair_sum(w_sum[lid], w_sum[o]);
    }
    workgroupBarrier();
  }
  // Layout "1d": M2 again as a pair, about the pair mean mu (above), for var_lo:
  //   M2 = sum_k (M2_k + count_k (mu_k - mu)^2)
  // the Chan merge's float32 M2 is ~1e-7 relative off, which the backward's variance dot
  // products gv (var_LN - var_BN) carry times ~N gv: `var_weight`'s gradient of y.sum() on
  // SwitchNorm1d [262144, 4] with feature means 0 to 20 was 0.3x its tolerance off by it alone
  // (sn1d_bwd_element.wgsl: pair elements). count_k as three parts of 12 bits (pair_sub_times:
  // exact products, for BN parts of any count too). Only where a backward may follow
  // (P_REFINE_MEANS): var_lo serves the backward alone (loops of bound 0 otherwise).
  let pairs_1d = tiles && (P.flags & P_REFINE_MEANS) != 0u;
  // (w_sum is 0 without finite values: then mu_1d = hi. Also the 1d group's mean, below.)
  var mu_1d = recentred_mean(hi, w_sum[w0], max(w_count[w0], 1u));
  // A mean that cancels to 2^-20 of hi (the first member's shift) or less: the pair sum about hi
  // is exact where the members' sums are (pairs +-v), but its quotient mu - hi ~ -hi as a pair
  // keeps ~2^-48 of hi, all of such a mean (a column of shuffled +-2^100 pairs over tiles of 32
  // rows and a pair 2^-40 of them: the BN mean 2^55 for 3.96e16, y at that pair 3e-3 relative
  // off). The pair sum is formed again about 0 (a loop and a tree that other groups skip), where
  // its quotient is the small mean itself. (w_far and w_far_sum serve layout "nd" below.)
  // (In a workgroup of several groups: the loops' bounds the group's own, the trees' whether
  // any of them sums again, as barriers need a uniform bound; the others' trees sum zeros.)
  var again_1d = false;
  var again_any = false;
  if (tiles) {
    if (l == 0u) {
      let again = w_count[w0] > 0u && (w_flags[w0] & F_CLASS) == 0u &&
        abs(mu_1d.x) < abs(hi) * 9.5367431640625e-7;
      w_again[b] = select(0u, 1u, again && live);
    }
    if (span < GROUP_THREADS) {
      workgroupBarrier();
    }
    if (lid == 0u) {
      var any = 0u;
      for (var i = 0u; i < GROUP_THREADS; i += span) {
        any = any | w_again[i];
      }
      w_far = any;
    }
    again_any = workgroupUniformLoad(&w_far) != 0u;
    // (After that load's barrier: with one group, thread 0 wrote it just now.)
    again_1d = w_again[b] != 0u;
  }
  var sum_again = vec2<f32>(0.0);
  for (var k = l; k < select(0u, count, again_1d); k += span) {
    let p = members[base + k * stride];
    let f = pow2(unit_of(p.flags) - unit);
    sum_again = pair_sub_times(pair_sub_times(sum_again, p.count, -(p.shift * f)), p.count, -(p.mean * f));
  }
  w_far_sum[lid] = sum_again;
  for (var s = select(0u, span / 2u, again_any); s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (l < s) {
      w_far_sum[lid] = pair_sum(w_far_sum[lid], w_far_sum[lid + s]);
    }
  }
  if (again_any) {
    workgroupBarrier();
  }
  if (again_1d) {
    mu_1d = pair_mean(w_far_sum[w0], w_count[w0]);
  }
  var m2_pair = vec2<f32>(0.0);
  for (var k = l; k < select(0u, count, pairs_1d); k += span) {
    let p = members[base + k * stride];
    let f = pow2(unit_of(p.flags) - unit);
    let d = pair_add(pair_add(two_sum(p.shift * f, -mu_1d.x), p.mean * f), -mu_1d.y);
    let sq = pair_mul(d, d);
    let n_k = select(0u, p.count, p.count > 0u && (p.flags & F_CLASS) == 0u);
    m2_pair = pair_add(pair_add(m2_pair, p.m2 * f * f), p.m2_lo * f * f);
    m2_pair = pair_add(pair_sub_times(m2_pair, n_k, -sq.x), f32(n_k) * sq.y);
  }
  // (w_sumv_pair is layout "nd"'s; free here. Written before the tree, which a group pass of
  // one thread has none of: it read a stale w_sumv_pair[w0], a var_lo that SwitchNorm1d's running
  // update now takes, running_var 0.13% off in tests/webgpu_agreement_test.ts.)
  if (pairs_1d) {
    w_sumv_pair[lid] = m2_pair;
  }
  for (var s = select(0u, span / 2u, pairs_1d); s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (l < s) {
      w_sumv_pair[lid] = pair_sum(w_sumv_pair[lid], w_sumv_pair[lid + s]);
    }
  }
  // Layout "nd": where hi (the first member's shift) lies more than 4 standard deviations of
  // the group from its mean, mean = hi + lo cancels and keeps lo's float32 rounding, ulps of
  // hi - mu (a channel whose first sample's row is 1e6 among 4095 rows of ~0.5: 4e-5 off in
  // running_mean). The mean is then summed again, about hi + lo, in exact pairs: each thread a
  // strided share, then a tree (a loop and a tree that other groups skip). Not one thread over
  // every member: llvmpipe (lavapipe) stops an invocation's loops after 65535 iterations in all,
  // and one thread gave a far channel of 60000 samples a running_mean 0.8% off.
  // Layout "nd" (not BN parts merged): every group's mean is summed so, whatever its first
  // member: the importance-logit gradients take differences mu_k - mu of IN, LN and BN means
  // times dL/dmu, which dy with a mean makes ~M per row, and lo's float32 rounding (~6e-8 of
  // lo: 1.5e-6 for an LN mean of 25, channel means 0, 0, 0, 100) made `mean_weight`'s gradient
  // of y.sum() 5x its tolerance (sn_bwd_rows' pair rows need means to ~1e-9 of their spread).
  // (Layout "nd" alone, one group per workgroup: thread 0 is its first.)
  if (lid == 0u) {
    let spread = select(w_sumv[w0] + w_m2[w0], w_m2[w0], chan);
    let lo0 = w_mean[w0];
    let far0 = !tiles && (w_flags[w0] & F_CLASS) == 0u && w_n[w0] > 0.0 && (!chan || lo0 * lo0 * w_n[w0] > 16.0 * spread);
    w_far = select(0u, 1u, far0);
  }
  // (A uniform value: the loop below holds barriers.)
  let far = workgroupUniformLoad(&w_far) != 0u;
  let centre = hi + w_mean[w0];
  var t = vec2<f32>(0.0);
  // + w ((K_k f - centre) + mean_k f), w = the member's weight: 1 for a row, a BN part's rows
  // (chan). (Two loops, each of bound 0 where it is not needed: lavapipe runs both sides of a
  // branch, and the parts' products made every nd group's loop ~3x longer there.)
  for (var k = l; k < select(0u, count, far && !chan); k += span) {
    let p = members[base + k * stride];
    let f = pow2(unit_of(p.flags) - unit);
    let dk = two_sum(p.shift * f, -centre);
    sum_add(&t, dk.x);
    sum_add(&t, dk.y);
    sum_add(&t, p.mean * f);
  }
  for (var k = l; k < select(0u, count, far && chan); k += span) {
    let p = members[base + k * stride];
    let f = pow2(unit_of(p.flags) - unit);
    // w < 2^24 in two parts of at most 12 significant bits: exact products (pair.wgsl).
    let dk = two_sum(p.shift * f, -centre);
    let m = p.mean * f;
    let w = p.count;
    let w_hi = f32(w & 0xfff000u);
    let w_lo = f32(w & 0xfffu);
    t = pair_add_times(pair_add_times(pair_add_times(t, w_lo, dk.x), w_lo, dk.y), w_lo, m);
    t = pair_add_times(pair_add_times(pair_add_times(t, w_hi, dk.x), w_hi, dk.y), w_hi, m);
  }
  // Layout "nd", a BN group in training: the batch variance again as a pair, for the running
  // update alone (running_update rounds m r + (1 - m) var once, as the reference rounds its
  // float64 value; under SyncSN the CPU makes it, from these pairs: below). With members of
  // weight w_k (1 for a row, a block's rows for a BN part, P_BN_MERGE) and mean mu_k,
  //   var K = sum_k V_k + sum_k w_k (mu_k - c)^2 - S^2 / K,  S = sum_k w_k (mu_k - c)
  // about the centre c (K = sum_k w_k), in pairs: a row's V_k = M2_k / (M - 1) (its M2 with its
  // low word where it has one; every row of a finite group has M values, so the quotient is
  // taken once, of the sum), a part's its M2 pair. `variance` (float32 sums of the rows' float32
  // quotients and Welford's M2 of their means, a part's M2 with no low word) lay up to ~1e-7 of
  // itself off, and running_var an ulp from the reference's where the float64 value lies near a
  // rounding midpoint, which an evaluation on it amplified 1.4e4x (attack fuzzer seed 72749:
  // `var_weight`'s gradient 2.4x its tolerance; tests/running_var_rounding_test.ts). The group's
  // own variance words, which the backward reads, stay as they were (but under SyncSN: below); a
  // BN part (P_BN_PARTS) keeps its pair's low word (m2_lo) for the merge. O(N) per channel, in
  // loops and a tree that other groups, inference and layout "1d" (whose var_lo is the pair
  // already) skip; S of rows is w_far_sum. What stays: a row's own M2, Welford's float32 sums in
  // sn_stats (~1e-8 to 1e-7 of it), where rows are not summed again (running_in_doubt, below).
  let run_pairs = is_bn && training && !tiles;
  var run_m2 = vec2<f32>(0.0);
  var run_sq = vec2<f32>(0.0);
  var run_sum = vec2<f32>(0.0);
  for (var k = l; k < select(0u, count, run_pairs && !chan); k += span) {
    let p = members[base + k * stride];
    let f = pow2(unit_of(p.flags) - unit);
    let d = pair_add(two_sum(p.shift * f, -centre), p.mean * f);
    // (Each sum as sum_add keeps it, the low words added plainly: ~2^-48 of the sums.)
    sum_add(&run_m2, p.m2 * f * f);
    run_m2.y += p.m2_lo * f * f;
    let sq = pair_mul(d, d);
    sum_add(&run_sq, sq.x);
    run_sq.y += sq.y;
  }
  // (BN parts: w_k = a part's rows, in products exact for any count, pair_sub_times.)
  for (var k = l; k < select(0u, count, run_pairs && chan); k += span) {
    let p = members[base + k * stride];
    let f = pow2(unit_of(p.flags) - unit);
    let d = pair_add(two_sum(p.shift * f, -centre), p.mean * f);
    let sq = pair_mul(d, d);
    run_m2 = pair_add(pair_add(run_m2, p.m2 * f * f), p.m2_lo * f * f);
    run_sq = pair_add(pair_sub_times(run_sq, p.count, -sq.x), f32(p.count) * sq.y);
    run_sum = pair_sub_times(pair_sub_times(run_sum, p.count, -d.x), p.count, -d.y);
  }
  // The far mean's sum and these in one tree (its barriers shared; zeros where not formed).
  w_far_sum[lid] = t;
  w_run_m2[lid] = run_m2;
  w_run_sq[lid] = run_sq;
  w_run_sum[lid] = run_sum;
  for (var s = select(0u, span / 2u, far || run_pairs); s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (l < s) {
      w_far_sum[lid] = pair_sum(w_far_sum[lid], w_far_sum[lid + s]);
      w_run_m2[lid] = pair_sum(w_run_m2[lid], w_run_m2[lid + s]);
      w_run_sq[lid] = pair_sum(w_run_sq[lid], w_run_sq[lid + s]);
      w_run_sum[lid] = pair_sum(w_run_sum[lid], w_run_sum[lid + s]);
    }
  }
  if (l != 0u || !live) {
    return;
  }
  var gflags = w_flags[w0];
  // Layout "1d": the mean from the pair sum, re-centred (hi = f32(mu)).
  var mean_hi = hi;
  var lo = w_mean[w0];
  if (tiles && w_count[w0] > 0u && (gflags & F_CLASS) == 0u) {
    mean_hi = mu_1d.x;
    lo = mu_1d.y;
  }
  if (far) {
    let h = recentred_mean(centre, w_far_sum[w0], select(u32(w_n[w0]), w_count[w0], chan));
    mean_hi = h.x;
    lo = h.y;
  }
  if ((P.flags & P_BN_PARTS) != 0u) {
    // Its count: the values merged ("1d"), or the rows ("nd": each counts once).
    let count = select(u32(w_n[w0]), w_count[w0], chan);
    // Layout "nd": no M2 low word: blocks of samples (more rows than one binding holds) and rows
    // of several segments (P_PAIRS) never meet at the real binding limits (that would take more
    // than 2^32 elements), so a block's BN part is a plain float32 sum (the groups' var_lo stays
    // 0). Layout "1d": with the low word of its M2 (the pair above, about the part's own mean).
    let m2 = w_sumv[w0] + w_m2[w0];
    // Layout "1d": the pair about the part's mean above; "nd" in training: run_m2_pair's.
    let m2_pair = select(w_sumv_pair[w0], run_m2_pair(false), run_pairs);
    let m2_lo = pair_add(m2_pair, -m2);
    bn_parts[P.chan_base + c] = Partial(mean_hi, lo, m2, count, unit_flags(gflags, unit),
      select(0.0, m2_lo.x + m2_lo.y, (pairs_1d || run_pairs) && gflags == 0u && is_finite_bits(m2_lo.x + m2_lo.y)), 0.0, 0.0);
    return;
  }
  var variance: f32;
  var var_lo = 0.0;
  if ((P.flags & P_BN_MERGE) != 0u) {
    // As the members' own groups: var = M2 / K over the channel's K rows (fdiv_count: f32(M2 / K)
    // under NVIDIA's division too, where rows all of the channel's variance, which blocks do not
    // list for sn_group_refine, had it an ulp off theirs: tests/nd_count_quotients_test.ts).
    if (gflags != 0u) {
      gflags = gflags | F_NO_VAR;
    }
    variance = fdiv_count(w_m2[w0], u32(w_n[w0]));
  } else if (chan) {
    if (w_count[w0] < 2u) {
      gflags = gflags | F_NO_VAR;
    }
    variance = fdiv_count(w_m2[w0], max(u32(w_n[w0]), 2u) - 1u);
    if (pairs_1d && gflags == 0u) {
      let lo_1d = quotient_lo(w_sumv_pair[w0], w_count[w0] - 1u, variance);
      var_lo = select(0.0, lo_1d, is_finite_bits(lo_1d));
    }
  } else {
    // Any member whose variance is NaN makes the mean of the variances NaN.
    if (gflags != 0u) {
      gflags = gflags | F_NO_VAR;
    }
    variance = fdiv_count(w_sumv[w0] + w_m2[w0], u32(w_n[w0]));
    if (pairs) {
      var_lo = quotient_lo(pair_add(w_sumv_pair[w0], w_m2[w0]), u32(w_n[w0]), variance);
    }
  }
  // P_GROUP_REFINE: an LN or BN mean within 2^-9 of its std of 0 (mean^2 < 2^-18 var) with a
  // member of variance below 2^-20 of the group's (std 2^-10 of it), in unit 0. That member's
  // x - mu is about the group mean, whose error is its members' float32 rounding (~2^-25 of
  // their std): sn_group_refine sums the members again (the WASM backend's
  // refine_near_zero_groups, same cuts). Such a group is listed (g: the dispatch's index, in
  // blocks of samples relative to the block, whose list it is), marked until sn_group_refine
  // writes it again, and its running update left to it.
  // Groups of any size: sn_group_refine sums the members' segments a thread each (it summed a
  // group per workgroup, 1/64 of its floats per thread, which llvmpipe's end of an invocation's
  // loops after 65535 iterations limited to 2^21 floats; larger groups kept their float32 means,
  // dgamma ~3% off).
  let group_var = fdiv_n(w_sumv[w0] + w_m2[w0], w_n[w0]);
  let mu_near = mean_hi + lo;
  // Or, of a group of the batch (not an evaluation's running BN statistics) of two members or
  // more, every member's variance within 2^-20 of the group's (ALIKE): the logit gradients
  // difference those variances (var_k - var_j times dL/dvar), and the members' float32 M2
  // (Welford's, ~1e-6 of itself) leave them that rounding where the reference's are far closer
  // (rows that are shuffles of one row: `var_weight`'s gradient 2.4e-4 where it is ~0 under dy
  // ~1e3, tests/close_stats_training_test.ts). sn_group_refine then sums the members' M2 again
  // as exact pairs and the group's variance as a pair.
  // Not under SyncSN (P_NO_RUNNING_UPDATE): there a BN group is the replica's part of the
  // global one, whose statistics the CPU merges from the groups as sn_group_stats left them.
  let batch_group = (!is_bn || training) && (P.flags & P_NO_RUNNING_UPDATE) == 0u;
  let alike = batch_group && w_n[w0] >= 2.0 && w_maxv[w0] <= group_var * (1.0 + ALIKE) &&
    w_minv[w0] >= group_var * (1.0 - ALIKE) && group_var > 0.0;
  // Or a group far wider than a member where the mix takes the group's mean with far more weight
  // than its variance: y = (x - mu) / std of that member then carries the group mean's float32
  // rounding over the member's mixed std (a row of std 1 beside rows of std 1e6 whose LN and BN
  // means cancel in its mix: y 7x its tolerance; WASM's refine_wide_groups, the same cut). The
  // case needs w_k > WIDE_GROUP sqrt(v_k) (with equal weights, or a variance weight above ~3e-5,
  // nothing is listed), and a member whose mixed std, at least sqrt(w_in var_min + w_k var + eps),
  // lies below the group's term w_k std / WIDE_GROUP (`may_wide`). Then each member that narrow
  // is tested as WASM tests it, t = term - |mu_k - mu_mix| > 0 and t^2 > its mixed variance (the
  // other group's term left out, so that this lists more rather than less), where mu_mix takes
  // the member's other group's mean from that group's members (or an evaluation's running_mean):
  // a dead channel (rows of 0) beside live ones, whose mixed mean lies far from 0, is no such
  // member (listing every group it is in cost the forward 1.11x to 1.14x on lavapipe). Where the
  // other groups' members are too many to read (count times theirs above WIDE_READS), the group
  // is listed as it may be.
  let w_mean = select(P.wmean.y, P.wmean.z, is_bn);
  let w_var = select(P.wvar.y, P.wvar.z, is_bn);
  let term = fdiv_n(w_mean * sqrt(group_var), WIDE_GROUP);
  // Under SyncSN a BN group is the replica's rows (as for the groups near 0).
  // (In an inference forward, P_OVERFLOW_ONLY, only may_overflow below lists groups.)
  let all_kinds = (P.flags & (P_GROUP_REFINE | P_OVERFLOW_ONLY)) == P_GROUP_REFINE;
  // In the group's unit (members of |x| beyond 2^40 or below 2^-21 scaled to it, eps too: 0 or
  // +Infinity beyond float32, which lists nothing): groups in a scaled unit too, whose means
  // sn_group_refine forms again in triples as unit 0's (before, a row of std 10 mixed on the
  // cancelling LN and BN means of rows of std 1e13 had y 1.2x to 13x its tolerance).
  let eps_u = P.eps * pow2(clamp(-unit, -126, 127)) * pow2(clamp(-unit, -126, 127));
  let may_wide = all_kinds && !chan && gflags == 0u &&
    (!is_bn || training) && w_mean > WIDE_GROUP * sqrt(w_var) &&
    term * term > P.wvar.x * w_minv[w0] + w_var * group_var + eps_u;
  // The member's other group: a BN group's members are samples (their LN groups), an LN group's
  // channels (their BN groups in training; running_mean in an evaluation; none without BN).
  let using_bn = P.groups_bn > 0u;
  let w_other = select(select(0.0, P.wmean.z, using_bn), P.wmean.y, is_bn);
  let others = select(select(0u, P.bn_count, using_bn && training), P.ln_count, is_bn);
  let checks = select(0u, count, may_wide && count <= WIDE_READS / max(others, 1u));
  let group_mu = mean_hi + lo;
  // One thread (the others have returned above), until a member passes.
  var wide_member = false;
  for (var k = 0u; k < checks && !wide_member; k++) {
    let p = members[base + k * stride];
    let f_k = pow2(unit_of(p.flags) - unit);
    let mu_k = (p.shift + p.mean) * f_k;
    let var_k = select(0.0, fdiv_n(p.m2, f32(max(p.count, 2u) - 1u)), p.count >= 2u) * f_k * f_k;
    let spread = P.wvar.x * var_k + w_var * group_var + eps_u;
    if (term * term > spread) {
      let other_base = select(P.bn_base + k * P.bn_step, P.ln_base + k * P.ln_step, is_bn);
      let other_stride = select(P.bn_stride, P.ln_stride, is_bn);
      // An evaluation's running_mean, read only there: in training BN group k's workgroup writes
      // it in this dispatch (below), and an unused read of it would still race with that write.
      var other = 0.0;
      if (!is_bn && using_bn && !training) {
        other = running[k] * pow2(clamp(-unit, -126, 127));
      }
      var scaled = is_scaled(p.flags);
      for (var o = 0u; o < others; o++) {
        let q = members[other_base + o * other_stride];
        other += (q.shift + q.mean) * pow2(unit_of(q.flags) - unit);
        scaled = scaled || is_scaled(q.flags);
      }
      other = fdiv_n(other, f32(max(others, 1u)));
      let slack = term - abs(mu_k - (P.wmean.x * mu_k + w_mean * group_mu + w_other * other));
      wide_member = scaled || (slack > 0.0 && slack * slack > spread);
    }
  }
  let wide_mix = may_wide && (checks == 0u || wide_member);
  // Or a group with a member row whose y may pass float32's range (WASM's
  // refine_overflowing_rows): such a row holds its finite y, those near its mixed mean, to their
  // own size, and x - mu there may lie far below the float32 rounding of the means mu is formed
  // from: sn_stats' float32 x - K (K cut to 12 bits) rounds ~2^-25 of the row's values (rows of 3
  // values ~1e10 in training whose batch mean took a row so rounded: y 8.6e29 for -1.47e30 under
  // gamma 3e38 over an IN std of 1.6e10, tests/far_anchor_mean_test.ts). A bound from this
  // group's own statistics, so that each of a row's groups lists itself where the row may
  // overflow: |x - mu| below 2^(max(e, 41) + 1), e the members' largest |x| exponent (mu is
  // a mix of means of rows of at most 2^41 or of this group's), var + eps at least the least
  // member variance's and this group's weighted terms plus eps, |gamma| the members' largest.
  // sn_group_refine then sums the members again in exact pairs (as for a mean near 0) and forms
  // the mean again; sn_mix lists the rows that may overflow for sn_wide_normalize, whose map
  // takes those means as pairs. Ordinary data (|gamma| / std ~1, values ~1) lie ~2^160 below it.
  let k_group = select(1u, 2u, is_bn);
  let var_floor = weighted_var(0u, P.wvar.x * min(w_minv[w0], group_var)) +
    weighted_var(k_group, P.wvar[k_group] * group_var);
  let var_exp = max(exponent_of(var_floor) + 2 * unit, exponent_of(P.eps));
  let x_exp = max(i32(atomicLoad(&w_xfield[b])) - 127, 41) + 1;
  let gamma_exp_max = exponent_of(bitcast<f32>(atomicLoad(&w_gamma[b]))) + 1;
  let may_overflow = (P.flags & P_GROUP_REFINE) != 0u && !chan && gflags == 0u &&
    2 * (gamma_exp_max + x_exp) - var_exp > 2 * OVERFLOW_EXP;
  // A BN group's batch statistics as pairs for the running update (run_pairs, above), where
  // finite, else the group's words. Its mean centre + S / K too: the BN parts' merge
  // (P_BN_MERGE) formed the group's mean from Welford's float32 merge of theirs but where it lies
  // far from the centre (running_mean an ulp off in blocks of samples); layout "nd"'s rows sum
  // it so already (w_far_sum).
  var vp = vec2<f32>(variance, var_lo);
  var mp = vec2<f32>(mean_hi, lo);
  if (run_pairs && gflags == 0u) {
    let q = pair_mean(run_m2_pair(chan), run_weight(chan));
    let qv = two_sum(q.x, q.y);
    vp = select(vp, qv, is_finite_bits(qv.x) && is_finite_bits(qv.y));
    let qm = recentred_mean(centre, run_s(chan), run_weight(chan));
    mp = select(mp, qm, is_finite_bits(qm.x) && is_finite_bits(qm.y));
  }
  // Or a BN group whose running update's rounding the members' float32 M2 leave in doubt, where
  // their error is small beside the result's ulp (running_in_doubt): listed as alike, so that
  // sn_group_refine sums its rows' M2 again as exact pairs and makes the update from them.
  // (The update itself, made here once: written below where the group is not listed.)
  let updates = is_bn && training && (P.flags & P_NO_RUNNING_UPDATE) == 0u;
  var updated = vec2<f32>(0.0);
  var doubt = false;
  if (updates) {
    updated = running_update(running[c], running[P.c + c], mp, vp, unit, gflags);
    // (A loop of bound 0 or 1, not a branch: lavapipe runs a branch's body masked, the two
    // updates of running_in_doubt for every BN group; as a branch, and with moving averages
    // tested too, the forward was ~1.04x at [64, 512, 7, 7].)
    let e = doubt_window(vp, updated.y);
    for (var i = 0u; i < select(0u, 1u, run_pairs && !chan && gflags == 0u && unit == 0 && e > 0.0); i++) {
      doubt = running_in_doubt(c, mp, vp, e);
    }
  }
  // Alike groups in any unit: those of scaled rows (|x| beyond 2^40 or below 2^-21) too, whose
  // members sn_group_refine sums again in their unit (rows of +-3.4e38 that are shuffles of one
  // another, under a variance weight of ~1e-31 on LN: var_weight's gradient 559x its tolerance,
  // attack fuzzer seed 645; tests/close_stats_training_test.ts). The groups near 0 and the wide
  // mixes are unit 0's alone.
  let refine = (P.flags & P_GROUP_REFINE) != 0u && !chan && gflags == 0u && w_n[w0] > 0.0 &&
    ((all_kinds && ((unit == 0 && mu_near * mu_near < NEAR_ZERO_GROUP2 * group_var &&
      w_minv[w0] < NARROW_MEMBER * group_var) || alike)) || wide_mix || may_overflow || doubt);
  let listed_flags = select(0u, F_GROUP_REFINE, refine) | select(0u, F_GROUP_ALIKE, refine && (alike || doubt));
  // A mean below 2^-FINE_MEAN_BELOW of the group's unit carries its fine word (FINE_MEAN_UNIT,
  // common.wgsl) from its members' (group_fine), one thread over the members of such groups alone
  // (at most FINE_READS of them: beyond, none): layout "nd"'s row groups, and layout "1d"'s
  // groups, whose members (tiles) weigh by their counts. (One call for both layouts: two cost
  // the 1d forward's group pass ~3% on lavapipe.)
  let low_mean = (tiles || !chan) && gflags == 0u && select(w_n[w0] > 0.0, w_count[w0] > 0u, tiles) &&
    count <= FINE_READS && words_below_fine(mean_hi, lo);
  var fine = vec2<f32>(0.0);
  if (low_mean) {
    fine = group_fine(base, stride, count, select(count, w_count[w0], tiles), tiles);
  }
  // Under SyncSN the CPU reads a training BN group back (mean, variance and their low words),
  // merges the replicas' in float64, makes the running update, and writes the global statistics
  // over it before anything else reads it (backends/_webgpu_sync.ts): written as those pairs.
  let synced = run_pairs && (P.flags & P_NO_RUNNING_UPDATE) != 0u;
  let gm = select(vec2<f32>(mean_hi, lo), mp, synced);
  let gv = select(vec2<f32>(variance, var_lo), vp, synced);
  groups[P.chan_base + g] = Group(gm.x, gm.y, gv.x, unit_flags(gflags, unit) | listed_flags, gv.y, fine.x, 0.0, fine.y);
  list_if_wide(g, unit_flags(gflags, unit), variance);
  if (refine) {
    let listed = atomicAdd(&wide_groups[0], 1u);
    atomicStore(&wide_groups[LIST_FIRST + listed], g);
    let grid = refine_grid(listed + 1u);
    atomicMax(&wide_groups[1], grid.x);
    atomicMax(&wide_groups[2], grid.y);
  }
  if (updates && !refine) {
    running[c] = updated.x;
    running[P.c + c] = updated.y;
  }
}

// The most members group_fine reads (one thread: llvmpipe ends an invocation's loops after 65535
// iterations).
const FINE_READS: u32 = 4096u;

// A group's fine word, (1/n) sum_k n_k mu_k in the unit 2^FINE_MEAN_UNIT over its members (rows,
// n_k = 1, n = count; layout "1d", by_count: tile summaries of n_k values each, at most TILE_1D,
// whose products are exact, pair_add_times, n their total), as an exact pair sum: each member's
// own fine word where it has one, else its words shift and mean brought to that unit by their
// bits. 0 where a member cannot go in (fine_member_ok): the mean then keeps the group's words
// alone. With the word's rest (Group.fine_rest; 0 where the word is, or where the rest is not
// finite).
fn group_fine(base: u32, stride: u32, count: u32, n: u32, by_count: bool) -> vec2<f32> {
  var t = vec2<f32>(0.0);
  var ok = true;
  for (var k = 0u; k < count; k++) {
    let p = members[base + k * stride];
    let u = unit_of(p.flags);
    let skip = by_count && p.count == 0u;
    let w = select(1u, p.count, by_count);
    ok = ok && (fine_member_ok(p, u) || skip);
    let words = add_times(add_times(t, w, scale2(p.shift, u - FINE_MEAN_UNIT)), w, scale2(p.mean, u - FINE_MEAN_UNIT));
    t = select(select(words, add_times(t, w, p.fine), p.fine != 0.0), t, skip);
  }
  let fine = fine_word(t, n, ok);
  let m = pair_mean(t, n);
  let rest = (m.x - fine) + m.y;
  return vec2<f32>(fine, select(0.0, rest, fine != 0.0 && class_bits(rest) == 0u));
}

// t + w v as group_fine sums it: v alone where w is 1.
fn add_times(t: vec2<f32>, w: u32, v: f32) -> vec2<f32> {
  return select(pair_add_times(t, f32(w), v), pair_add(t, v), w == 1u);
}

// run_pairs' total weight K: the rows ("nd" rows), or the parts' rows (P_BN_MERGE).
fn run_weight(chan: bool) -> u32 {
  return select(u32(w_n[w0]), w_count[w0], chan);
}

// run_pairs' S: the rows' w_far_sum, or the parts' own sum.
fn run_s(chan: bool) -> vec2<f32> {
  return select(w_far_sum[w0], w_run_sum[w0], chan);
}

// run_pairs' M2 pair about the group's mean: sum_k V_k + sum_k w_k (mu_k - c)^2 - S^2 / K.
fn run_m2_pair(chan: bool) -> vec2<f32> {
  let v = select(pair_mean(w_run_m2[w0], max(P.m, 2u) - 1u), w_run_m2[w0], chan);
  let s = run_s(chan);
  return pair_sum(pair_sum(v, w_run_sq[w0]), -pair_mul(s, pair_mean(s, run_weight(chan))));
}

// The window about the batch variance pair vp (0: none) within which running_var's update r0 of a
// BN channel, in unit 0, may round to another float32 than the reference's, in a batch average
// (P_BATCH_AVERAGE: r + mu^2 + var, sums that finalizeBatchAverage's sum_sq / K - mean^2
// amplifies where |mean| >> std, README's batch average; WASM's refine_batch_average): vp is
// exact but for its members' M2, Welford's float32 sums in sn_stats, taken here as off by at
// most (8 + log2 M) 2^-24 of the variance (measured: ~1e-7 on rows of 196). Only where that
// window lies within 1/32 of the result's ulp, so that at most ~1/16 of such channels are listed
// (an ulp off in 1 of tests/batch_average_test.ts' 320 sums with the pairs alone; ~1% of them in
// doubt). Not in a moving average, where the variance's share (1 - m) can make such a window
// for every channel (momentum 0.997), so that some channel of most calls with many channels
// would be listed, and listing any group runs sn_group_refine's pass over every row segment
// (with moving averages too, and the test as a branch, the training forward of bench/ab.ts at
// [64, 512, 7, 7] was 1.03x to 1.04x on lavapipe): a moving average's running_var stays
// accurate to its rows' M2 (NUMERICS.md).
fn doubt_window(vp: vec2<f32>, r0: f32) -> f32 {
  let e = vp.x * 5.9604644775390625e-8 * (8.0 + log2(f32(max(P.m, 2u))));
  let narrow = (P.flags & P_BATCH_AVERAGE) != 0u && class_bits(r0) == 0u && r0 > 0.0 &&
    e <= 0.03125 * pow2(exponent_of(r0) - 23);
  return select(0.0, e, narrow);
}

// Whether the update from vp - e and from vp + e differ (e: doubt_window's).
fn running_in_doubt(c: u32, mp: vec2<f32>, vp: vec2<f32>, e: f32) -> bool {
  let lo = running_update(running[c], running[P.c + c], mp, pair_add(vp, -e), 0, 0u).y;
  let hi = running_update(running[c], running[P.c + c], mp, pair_add(vp, e), 0, 0u).y;
  return lo != hi;
}
