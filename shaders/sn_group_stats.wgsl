// sn_group_stats.wgsl: the derived statistics, from summaries only (never another pass over x).
// Workgroup g < N makes LN group n = g, the next C workgroups BN group c, each writing
// groups[g] = (hi, lo, variance, flags) with mean = hi + lo, hi = the first member's shift.
// Members are summaries P_k at ln_base + g*ln_step + k*ln_stride (k < ln_count), likewise bn_*.
// Layout "nd" (members are the IN rows (mu_k = K_k + mean_k, v_k = M2_k / (count_k - 1))):
//   mu   = (1/K) sum_k mu_k
//   var  = (1/K) sum_k v_k + (1/K) sum_k (mu_k - mu)^2
//        ( = mean_k (v_k + mu_k^2) - mu^2 of the reference, without its cancellation)
//   LN: k runs over c for one n;  BN: over n for one c.
// Layout "1d" (flag P_CHAN_GROUPS; members are tile summaries of disjoint parts of a row/column):
//   (count, mean, M2) = Chan-merge of the members,  mu = mean,  var = M2 / (count - 1)
// Each of the 64 threads folds a strided share of the members with Welford/Chan, then the
// threads merge pairwise in workgroup memory.
// Evaluation mode: BN group c is the running buffers, mu = running_mean[c],
// var = running_var[c]. Training mode: thread 0 of BN group c also updates the running buffers
// (running = [mean(C), var(C)]) with the batch's mu, var:
//   moving average:  r_mean = m * r_mean + (1 - m) * mu;  r_var = m * r_var + (1 - m) * var
//   batch average:   r_mean = r_mean + mu;                r_var = r_var + (mu^2 + var)
// with IEEE results for non-finite statistics (ieee_add / ieee_mul), as the reference has.
// Under SyncSN (P_NO_RUNNING_UPDATE) the CPU does the update, with the global batch's statistics.
// Units: members may be scaled (F_SCALED: wide rows, sn_wide_stats). The group's unit u is the
// largest member unit (0 for unscaled members), found first (a workgroup atomicMax); each member
// enters multiplied by f = 2^(u_k - u) (exact; 1 for an unscaled member of an unscaled group, so
// in-range data give the same bits as without units), its M2 by f^2, and the group is written in
// unit u (unit_flags). The running update of a scaled group adds its terms in that unit and
// scales once (add_scaled): a batch variance beyond float32 makes running_var +Infinity, and
// results below float32's normal range are the subnormals or 0 PyTorch's float32 buffers hold.

//!include common.wgsl

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

fn list_if_scaled(g: u32, flags: u32) {
  list_if(g, is_scaled(flags));
}

// `variance` in real units (an unscaled group's).
fn list_if_wide(g: u32, flags: u32, variance: f32) {
  let c = g - P.groups_ln;
  let factor = g >= P.groups_ln && factor_wide(affine[c], P.wvar.y * variance + P.eps);
  list_if(g, is_scaled(flags) || factor);
}

fn list_if(g: u32, yes: bool) {
  if ((P.flags & P_CHAN_GROUPS) != 0u && yes) {
    atomicStore(&wide_groups[1u + atomicAdd(&wide_groups[0], 1u)], g);
  }
}

var<workgroup> w_n: array<f32, 64>;
var<workgroup> w_mean: array<f32, 64>;
var<workgroup> w_m2: array<f32, 64>;
var<workgroup> w_sumv: array<f32, 64>;
var<workgroup> w_flags: array<u32, 64>;
var<workgroup> w_count: array<u32, 64>;
var<workgroup> w_unit: atomic<u32>; // largest member unit + 127 (zero-initialized)

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let g = linear_group(wid, nwg);
  if (g >= P.groups_ln + P.groups_bn) {
    return;
  }
  let is_bn = g >= P.groups_ln;
  let c = g - P.groups_ln; // the channel, for BN groups
  let training = (P.flags & P_TRAINING) != 0u;
  if (is_bn && !training) {
    if (lid == 0u) {
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
        groups[g] = Group(scale2(rm, -128), 0.0, 1.7014118346046923e38, unit_flags(0u, 128) | F_VAR_INF);
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
        let wide = is_wide_field(field) || (field_v != 0u && field_v < 28u);
        let u = select(0, select(u_min, 1, u_min == 0), wide && bad == 0u);
        groups[g] = Group(
          select(scale2(rm, -u), 0.0, bad != 0u),
          0.0,
          select(scale2(rv, -2 * u), 0.0, bad != 0u),
          unit_flags(bad, u),
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
  let chan = (P.flags & P_CHAN_GROUPS) != 0u;
  var unit_max = 0u;
  for (var k = lid; k < count; k += 64u) {
    unit_max = max(unit_max, u32(unit_of(members[base + k * stride].flags) + 127));
  }
  atomicMax(&w_unit, unit_max);
  workgroupBarrier();
  let unit = i32(atomicLoad(&w_unit)) - 127;
  let first = members[base];
  let hi = first.shift * pow2(unit_of(first.flags) - unit);
  var acc = Acc(0.0, 0.0, 0.0);
  var sumv = 0.0;
  var flags = 0u;
  var total = 0u;
  for (var k = lid; k < count; k += 64u) {
    let p = members[base + k * stride];
    let f = pow2(unit_of(p.flags) - unit);
    let mean = (p.shift * f - hi) + p.mean * f;
    let m2 = p.m2 * f * f;
    flags = flags | (p.flags & F_CLASS);
    total += p.count;
    if (chan) {
      acc = merge(acc, Acc(f32(p.count), mean, m2));
    } else {
      acc = merge(acc, Acc(1.0, mean, 0.0));
      if (p.count >= 2u) {
        sumv += m2 / f32(p.count - 1u);
      } else {
        flags = flags | F_NO_VAR;
      }
    }
  }
  w_n[lid] = acc.n;
  w_mean[lid] = acc.mean;
  w_m2[lid] = acc.m2;
  w_sumv[lid] = sumv;
  w_flags[lid] = flags;
  w_count[lid] = total;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      let o = lid + s;
      let m = merge(Acc(w_n[lid], w_mean[lid], w_m2[lid]), Acc(w_n[o], w_mean[o], w_m2[o]));
      w_n[lid] = m.n;
      w_mean[lid] = m.mean;
      w_m2[lid] = m.m2;
      w_sumv[lid] += w_sumv[o];
      w_flags[lid] = w_flags[lid] | w_flags[o];
      w_count[lid] += w_count[o];
    }
    workgroupBarrier();
  }
  if (lid != 0u) {
    return;
  }
  var gflags = w_flags[0];
  var variance: f32;
  if (chan) {
    if (w_count[0] < 2u) {
      gflags = gflags | F_NO_VAR;
    }
    variance = w_m2[0] / max(w_n[0] - 1.0, 1.0);
  } else {
    // Any member whose variance is NaN makes the mean of the variances NaN.
    if (gflags != 0u) {
      gflags = gflags | F_NO_VAR;
    }
    variance = (w_sumv[0] + w_m2[0]) / w_n[0];
  }
  let lo = w_mean[0];
  groups[g] = Group(hi, lo, variance, unit_flags(gflags, unit));
  list_if_wide(g, unit_flags(gflags, unit), variance);
  if (is_bn && training && (P.flags & P_NO_RUNNING_UPDATE) == 0u) {
    let mu = mean_value(gflags, hi + lo);
    let v = var_value(gflags, variance);
    let rm = running[c];
    let rv = running[P.c + c];
    if (unit != 0 && gflags == 0u) {
      let u2 = 2 * unit;
      if ((P.flags & P_BATCH_AVERAGE) != 0u) {
        running[c] = add_scaled(rm, 1.0, mu, unit);
        running[P.c + c] = add_scaled(rv, 1.0, mu * mu + v, u2);
      } else {
        running[c] = add_scaled(rm, P.momentum, P.one_minus_momentum * mu, unit);
        running[P.c + c] = add_scaled(rv, P.momentum, P.one_minus_momentum * v, u2);
      }
    } else if ((P.flags & P_BATCH_AVERAGE) != 0u) {
      running[c] = ieee_add(rm, mu);
      running[P.c + c] = ieee_add(rv, ieee_add(ieee_mul(mu, mu), v));
    } else {
      running[c] = ieee_add(ieee_mul(P.momentum, rm), ieee_mul(P.one_minus_momentum, mu));
      running[P.c + c] = ieee_add(ieee_mul(P.momentum, rv), ieee_mul(P.one_minus_momentum, v));
    }
  }
}
