// sn_bwd_rows.wgsl: backward step 2 of layout "nd", one thread per row r = n*C + c. It adds the
// row's segment sums (S1, S2) from sn_bwd_reduce and forms the row's gradient sums (a Grad,
// backward_common.wgsl), with s = 1 / sqrt(var + eps) of the row's mixed statistics:
//   gm = -s * gamma[c] * S1              (dL/dmu:  -s * sum dxh)
//   gv = -0.5 * gamma[c] * s^3 * S2      (dL/dvar: -0.5 s^2 sum dxh * xhat, xhat = (x - mu) s)
//   dgamma = s * S2,  dbeta = S1
//   a = gm * (mu_in - mu, mu_ln - mu, mu_bn - mu, mu),  b = gv * (var_k - var ..., var)
// A flagged row (its reference s or xhat is NaN) keeps only dbeta and carries G_BAD.
// Wide rows (scaled statistics, unit 2^E of the mix, segments summed with dy in units 2^D_k
// by sn_bwd_wide_reduce, or a factor-wide gamma / std, common.wgsl): the segment sums are
// brought to D = max_k D_k, and with s' = s 2^E, every statistic in unit 2^E (wide_map) and
// gamma = gamma' 2^G the same formulas give the mantissas of gm = 2^(D - E + G) gm',
// gv = 2^(D - 2E + G) gv', and the rest in units of 2^D, or 2^(D + k) where the dots need it
// (Grad's exponents, grad_units).
// Rows longer than one segment (P.chunks > 1; in-range rows keep the plain arithmetic above,
// bit for bit, when they are one segment): the segment sums are added as float32 pairs; S2's
// segments are sums of dy (x - c), c = coarse12(hi + lo) (sn_bwd_reduce: subtracting hi and
// then the constant lo, or a centre finer than x, rounds every element of a binade the same way,
// an error ~2^-25 sum(dy) that a dy of one sign makes systematic; x - c is exact or rounds x's
// own bits), and
// ((hi - c) + lo) S1 is subtracted here; and
// var_k - var = sum_j wvar_j (var_k - var_j) from the float32 hi/lo variance pairs (IN from the
// row's M2 pair, LN/BN from their Groups, pair.wgsl), whose hi words cancel exactly: float32
// variances (6e-8) would leave var_weight's gradient, a difference of variances
// ~std^2 sqrt(2 / M) apart, an error of ~1e-7 sqrt(M) relative.
// Pair rows (every row of the plain path whose sums are finite): the dots a and b are formed in
// float32 pairs (pair_dots: the reference's mix from the weights as pairs, s, gm, gv, S2 about
// the reference's mean) and summed as pairs over the workgroup's 64 rows into dot_sums (one
// record per workgroup, from P.dot_base on), which the CPU adds in float64; the row's Grad keeps
// gm c and gv c_v in a.w and b.w and zeros in the dot lanes. dy with a mean (y.sum(): dL/dmu
// ~M per row) makes the logit gradients small differences of terms ~M times the means' spread,
// which float32 per-row work missed by ~6e-8 of the terms (`mean_weight`'s gradient 10x to 40x
// its tolerance on channels of means apart).
// Rows seg_first .. seg_end - 1 per dispatch; grads is bound from row elem_base on (the per-row
// records of many rows exceed one storage binding, so they are bound in windows).

//!include common.wgsl
//!include backward_common.wgsl
//!include pair.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> bparts: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> rows: array<Partial>;
@group(0) @binding(3) var<storage, read> groups: array<Group>;
@group(0) @binding(4) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
// Grads with the row's dy unit apart (RowGrad; sn_bwd_coef reads it).
@group(0) @binding(5) var<storage, read_write> grads: array<RowGrad>;

// The workgroup's sums of its pair rows' dot products (pair_dots), one record per workgroup
// from dot_base on; the CPU adds them in float64 (backends/_webgpu_grad_sums.ts).
@group(0) @binding(6) var<storage, read_write> dot_sums: array<DotSum>;
// sn_bwd_reduce's S1 low words, per segment.
@group(0) @binding(7) var<storage, read> seg_lo: array<f32>;

// The importance-logit dot products of rows, a' = gm (mu_k - c) and b' = gv (var_k - c_v) for
// k = IN, LN, BN in lanes x, y, z, as float32 pairs (hi + lo).
struct DotSum {
  a: Pair4,
  b: Pair4,
}

var<workgroup> w_dots: array<DotSum, 64>;

fn dot_zero() -> DotSum {
  return DotSum(Pair4(vec4<f32>(0.0), vec4<f32>(0.0)), Pair4(vec4<f32>(0.0), vec4<f32>(0.0)));
}

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let g = linear_group(wid, nwg);
  let r = P.seg_first + g * 64u + lid;
  var dots = dot_zero();
  if (r < P.seg_end) {
    dots = row_grad(r);
  }
  // The pair sums of the workgroup's rows: eight threads sum eight rows each, then thread 0
  // the eight (two barriers: a tree's six cost lavapipe, which runs a workgroup's invocations as
  // loops split at every barrier, ~2% of the backward at [64, 512, 7, 7]).
  w_dots[lid] = dots;
  workgroupBarrier();
  if (lid < 8u) {
    w_dots[8u * lid] = dot_sum8(8u * lid, 1u);
  }
  workgroupBarrier();
  if (lid == 0u && P.seg_first + g * 64u < P.seg_end) {
    dot_sums[P.dot_base + g] = dot_sum8(0u, 8u);
  }
}

// The pair sum of w_dots[first + k * step], k < 8.
fn dot_sum8(first: u32, step: u32) -> DotSum {
  var sum = w_dots[first];
  for (var k = 1u; k < 8u; k++) {
    let o = w_dots[first + k * step];
    sum = DotSum(pair4_merge(sum.a, o.a), pair4_merge(sum.b, o.b));
  }
  return sum;
}

// Writes row r's Grad; returns its dot products where it is a pair row (pair_dots), else 0.
fn row_grad(r: u32) -> DotSum {
  let n = r / P.c;
  let c = r - n * P.c;
  var sums = vec2<f32>(0.0);
  var d_unit = 0;
  var dy_unit = -1000; // D alone (bits 0..15, part_units)
  for (var k = 0u; k < P.chunks; k++) {
    let rec = bparts[(r - P.row_base) * P.chunks + k];
    sums += bitcast<vec2<f32>>(rec.xy);
    d_unit = max(d_unit, i32(part_word(rec.w)));
    dy_unit = max(dy_unit, part_d(part_word(rec.w)));
  }
  let p = rows[r - P.row_base];
  let ln = groups[n - P.row_base / P.c];
  // A load under a branch on a uniform leaks per dispatch on lavapipe (see sn_mix.wgsl): load
  // an in-bounds entry either way, and zero it without usingBN.
  let use_bn = (P.flags & P_USING_BN) != 0u;
  let bn = select_group(groups[select(n - P.row_base / P.c, P.n + c - P.stat_bn_base, use_bn)], use_bn);
  let m = nd_mix(p, ln, bn);
  // Long rows: S2 about the mixed mean (see the top), where the sums are finite (else the plain
  // sums carry IEEE's infinities and NaN; a pair would turn an infinity into NaN).
  // (A branch on a uniform: rows of one segment skip its code.)
  // The sums as float32 pairs for pair rows (see the top): S1 with its low words, S2 (about the
  // mixed mean) with its.
  let long = P.chunks > 1u;
  var s1p = vec2<f32>(sums.x, 0.0);
  var s2p = vec2<f32>(sums.y, 0.0);
  if (long) {
    if (class_bits(sums.x) == 0u && class_bits(sums.y) == 0u) {
      let pairs = long_sum_pairs(r, long_residual_pair(m, p));
      s1p = pairs.xy;
      s2p = pairs.zw;
      sums = vec2<f32>(pairs.x, pairs.z + pairs.w);
    }
  } else {
    let at = r - P.row_base;
    s1p.y = seg_lo[at];
    s2p.y = bitcast<f32>(bparts[at].z);
  }
  // Rows whose gm = -gamma s S1 or gv ~ gamma s^3 S2 could pass float32 (a long row of dy of
  // one sign under a gamma / std just below factor_wide's bound), or their float32 sums over a
  // sample's or a channel's rows in sn_bwd_groups (GmL, GvL, GmB, GvB: see sums_lg), estimated
  // from exponent fields, take wide_row too, which keeps gamma's exponent apart. Non-finite
  // sums (NaN or infinite dy) are no reason: their results are IEEE's, as the plain path forms
  // them. So do rows whose dgamma = s S2 could pass float32's range summed over a channel's N
  // rows (wide_row gives it a unit of its own). On this path |x - mu| < 2^42 and |dy| <= 2^40
  // hold |S2| below M 2^82 and steps_wide holds s^2 S2 below 2^121, so a row's s S2 lies below
  // ~2^(102.5 + log2(M) / 2): only a channel of ~2^26 elements or more reaches float32's range,
  // where SwitchNorm1d's elements, bounded by neither, did at ten
  // (tests/channel_sum_range_test.ts).
  let eg = exponent_of(affine[c]);
  let es = exponent_of(inv_std(m));
  let sums_bound = 123 - sums_lg();
  let e2 = finite_exponent_of(sums.y);
  let sums_wide = eg + es + finite_exponent_of(sums.x) > sums_bound || eg + 3 * es + e2 > sums_bound ||
    es + e2 > sums_bound || steps_wide(es, sums.y);
  // ... or whose dot products gm (mu_k - mu), gm mu, gv (var_k - var), gv var could, or their
  // float32 sums over rows (|mu_k - mu| <= 2 max |mu_k|; each dot below 2^(its factors'
  // exponents + 5), summed over up to 2^dots_lg rows: see dots_lg): an infinite dot or sum made
  // the logit gradients NaN where the reference has a finite value or an infinity.
  let mk = max(max(abs(p.shift) + abs(p.mean), abs(ln.hi) + abs(ln.lo)), abs(bn.hi) + abs(bn.lo));
  let vk = max(max(fdiv_n(p.m2, max(f32(p.count) - 1.0, 1.0)), ln.variance), max(bn.variance, m.variance));
  let dots_bound = 122 - dots_lg();
  let dots_wide = eg + es + finite_exponent_of(sums.x) + finite_exponent_of(mk) > dots_bound ||
    eg + 3 * es + finite_exponent_of(sums.y) + finite_exponent_of(vk) > dots_bound;
  // ... or whose gm or gv could fall below float32's normal range (flushed: a std of 1e12 under
  // gamma 1e-6 with dy 1e-15, gv ~1e-44, whose dots with variances ~1e24 are not small).
  let sums_tiny = tiny_product(eg + es, sums.x) || tiny_product(eg + 3 * es, sums.y);
  // ... or a row of 0 whose S2 = -mu S1 may lie below 2^-100 (zero_s2_tiny: a mixed mean below
  // 2^-100, or mu S1): its products dy (x - mu) lie below float32's normal range, which a GPU
  // that flushes subnormals takes as 0, where dgamma = s S2 and gv need not (an evaluation on a
  // running_mean of 1 under a mean weight of 8.2e-39, s 1e15, gamma 1: dgamma 0 for -2.0e-24 on
  // SwiftShader; factor_wide's gamma -3e20 took wide_row and kept it). wide_row takes S2 from the
  // mean in a unit of its own (fine_mean). By exponents, per row.
  // So does any row whose mixed mean lies below 2^-100 (mean_tiny; wide_row corrects its S2):
  // below 2^-126 the float32 mix itself may lose it (a row [1, 0, ..., 0] whose IN mean of weight
  // e^-87 makes a mean of 2e-39 beside a running_mean of 0: dgamma 0 for -4.9e-25, lavapipe too).
  let zero_tiny = zero_s2_tiny(p, ln, bn, use_bn, m, sums.x) &&
    (zero_row(p) || mean_tiny(nd_terms_in(p), group_term(ln), select_term(group_term(bn), use_bn)));
  if (is_scaled(m.flags) || d_unit != 0 || factor_wide(affine[c], m.variance + P.eps) || sums_wide || dots_wide ||
    sums_tiny || mix_var_near_subnormal(m) || zero_tiny) {
    let g = wide_row(r, c, p, ln, bn, use_bn, m);
    let d_row = wide_dy_unit(r, dy_unit);
    // (dbeta, s.w, is in units of 2^dy_unit, or of long_lift's 2^-lift, the Grad's spare, where
    // dy_unit is 0.)
    let d_sums = select(dy_unit, g.spare, dy_unit == 0);
    let sums_d = vec4<f32>(g.s.xyz, select(g.s.w, scale2(g.s.w, d_sums - d_row), d_row != d_sums));
    grads[r - P.elem_base] = RowGrad(sums_d, g.a, g.b, g.flags, g.units, d_row, g.low);
    return dot_zero();
  }
  if (mixed_bad(m)) {
    grads[r - P.elem_base] = RowGrad(vec4<f32>(0.0, 0.0, 0.0, sums.x), vec4<f32>(0.0), vec4<f32>(0.0), G_BAD, 0, 0, 0u);
    return dot_zero();
  }
  let s = inv_std(m);
  let gamma = affine[c];
  let gm = -s * gamma * sums.x;
  let gv = -0.5 * gamma * (s * s) * (s * sums.y);
  // Pair rows: finite sums (else IEEE's infinities and NaN, as the float32 dots below form
  // them). Their dots go to the workgroup's pair sums; the Grad keeps gm c and gv c_v, which the
  // CPU adds to every term's dot alike (they cancel in the logit gradients, w_k (a_k - sum_j w_j
  // a_j)).
  if ((class_bits(sums.x) | class_bits(sums.y)) == 0u) {
    let a_c = vec4<f32>(0.0, 0.0, 0.0, gm * m.hi);
    let b_c = vec4<f32>(0.0, 0.0, 0.0, gv * m.variance);
    let pr = pair_dots(p, ln, bn, use_bn, m, s1p, s2p, gamma);
    // gv from S2 about the reference's mean too (pair_dots), as dgamma: about the float32 mix's,
    // whose lo = sum_k w_k ((hi_k - shift) + lo_k) rounds as |mu_k - shift|, dx carried that
    // rounding where the mix takes its mean far from the row's (an evaluation on a running_mean
    // of -2999.84 over a row [-1103612.375, -3000.1638]: dx 8.5% off, tests/far_centre_test.ts).
    // Where s S2' lies below 2^-100 (subnormal: a float32 product of few bits), pair_dots' gv,
    // which keeps the factors' exponents apart: a row of 0 but one x of 1e8 at a subnormal dy
    // (S2' ~2e-36, s ~1.5e-7) beside normal dy had gv 8e-4 off, and its sample's LN term with it
    // the dx of the sample's other rows (tests/partial_zero_rows_test.ts, outlierBesideTiny).
    let s2_ref = pr.s2.x + pr.s2.y;
    let gv_ref = select(-0.5 * gamma * (s * s) * (s * s2_ref), pr.gv.x + pr.gv.y, tiny_product(es, s2_ref));
    grads[r - P.elem_base] = RowGrad(vec4<f32>(gm, gv_ref, pr.dgamma.x, sums.x), a_c, b_c, 0u, 0, 0, bitcast<u32>(pr.dgamma.y));
    return pr.dots;
  }
  let var_in = row_variance(p.m2, p.count);
  var a = vec4<f32>(gm * centred(m, p.shift, p.mean), gm * centred(m, ln.hi, ln.lo), 0.0, 0.0);
  var b = vec4<f32>(gv * (var_in - m.variance), gv * (ln.variance - m.variance), 0.0, 0.0);
  if ((P.flags & P_USING_BN) != 0u) {
    a.z = gm * centred(m, bn.hi, bn.lo);
    b.z = gv * (bn.variance - m.variance);
  }
  if (long) {
    let v_in = variance_pair(p.m2, p.m2_lo, p.count);
    let vp = group_var_pairs(v_in, ln, bn); // BN: zeros, of weight 0, without usingBN
    let v_ln = vp[0];
    let v_bn = vp[1];
    b.x = gv * var_centred(v_in, v_in, v_ln, v_bn);
    b.y = gv * var_centred(v_ln, v_in, v_ln, v_bn);
    b.z = select(0.0, gv * var_centred(v_bn, v_in, v_ln, v_bn), use_bn);
  }
  a.w = gm * (m.hi + m.lo);
  b.w = gv * m.variance;
  grads[r - P.elem_base] = RowGrad(vec4<f32>(gm, gv, s * sums.y, sums.x), a, b, 0u, 0, 0, 0u);
  return dot_zero();
}

// The dot products of a pair row (see the top) as float32 pairs, about c = m.hi (means) and
// c_v = m.variance (variances): the reference's float64 mix (the weights' mantissas as pairs,
// P.wmean_lo, times their exponent factors), s = 1 / sqrt(var + eps), gm = -gamma s S1 and
// gv = -0.5 gamma s^3 S2' with S2' = sum dy (x - mu) about the reference's mean (s2 is about the
// float32 mix's, c + m.lo + mix_rest(m)), all in pairs, then
// a'_k = gm (mu_k - c), b'_k = gv (var_k - c_v). float32 gm, gv and products were ~6e-8 of the
// terms off, which dy with a mean makes ~M times the means' spread while the logit gradient is
// their small difference (y.sum() at [2, 4, 256, 256] with channel means 0, 0, 0, 100:
// `mean_weight`'s gradient 10x its tolerance, `var_weight`'s 16x).
fn pair_dots(p: Partial, ln: Group, bn: Group, use_bn: bool, m: Mixed, s1: vec2<f32>, s2: vec2<f32>, gamma: f32) -> PairRow {
  let c = m.hi;
  let d_in = pair_add(two_sum(p.shift, -c), p.mean);
  let d_ln = pair_add(two_sum(ln.hi, -c), ln.lo);
  let d_bn = pair_add(two_sum(bn.hi, -c), bn.lo); // of weight 0 without usingBN
  // IN's variance as the groups took it (sn_group_stats): a pair for rows of several segments
  // and in evaluations with BN (P_PAIRS: refine_variance), else the float32 M2 / (count - 1), so
  // that the variance differences of one statistic (IN and LN of one channel) are exactly 0, as
  // in the reference.
  var v_in = vec2<f32>(row_variance(p.m2, p.count), 0.0);
  if (reads_var_pairs(p)) {
    v_in = variance_pair(p.m2, p.m2_lo, p.count);
  }
  let vp = group_var_pairs(v_in, ln, bn);
  let v_ln = vp[0];
  let v_bn = vp[1];
  var d_ln_row = d_ln;
  var d_bn_row = d_bn;
  if (P.c == 1u) {
    d_ln_row = d_in;
  }
  if (bn_is_row()) {
    d_bn_row = d_in;
  }
  let mu_c = pair_sum(pair_sum(pair_weighted_mean(0u, d_in), pair_weighted_mean(1u, d_ln_row)), pair_weighted_mean(2u, d_bn_row));
  let v = pair_sum(pair_sum(pair_sum(pair_weighted_var(0u, v_in), pair_weighted_var(1u, v_ln)), pair_weighted_var(2u, v_bn)),
    vec2<f32>(P.eps, P.eps_lo));
  let s = pair_rsqrt(v);
  let gs = pair_mul(s, vec2<f32>(gamma, 0.0));
  let gm = -pair_mul(gs, s1);
  let s2_ref = pair_sub_product(s2, pair_add(pair_add(mu_c, -m.lo), -mix_rest(m)), s1);
  // gamma s^3 S2' from S2' outward, as the plain rows order it: gamma s^3 alone passed float32's
  // range beside an S2' that brings the product back (s ~1e13 under eps 1e-30, S2' ~1e-30:
  // var_weight's gradient NaN for 0, attack helper-88; tests/anchored_mean_test.ts).
  var gv = pair_mul(gs, pair_mul(s, pair_mul(s, s2_ref))) * -0.5;
  // s^2 S2' below float32's normal range where gamma s^3 S2' is not (s < 1: s ~2e-10 over a std
  // of 4e9 times S2' ~9e-27 of dy ~1e-37 was 0 before gamma s ~2e20 came in: `var_weight`'s
  // gradient without its gv dots, -4.5e-18 for -8.6e-7, subnormal_dy_sweep seed 287): the
  // factors brought to [1, 2) by their bits, their exponents added apart (rare: a branch).
  let ks = exponent_of(s.x);
  if (ks < 0 && tiny_product(2 * ks, s2_ref.x)) {
    let k2 = norm_exp(s2_ref.x);
    let kg = norm_exp(gs.x);
    let s1n = scale2_pair(s, -ks);
    let mg = pair_mul(scale2_pair(gs, -kg), pair_mul(s1n, pair_mul(s1n, scale2_pair(s2_ref, -k2))));
    gv = scale2_pair(mg, kg + 2 * ks + k2) * -0.5;
  }
  let cv = m.variance;
  let a_in = pair_mul(gm, d_in);
  let a_ln = pair_mul(gm, d_ln_row);
  let a_bn = select(vec2<f32>(0.0), pair_mul(gm, d_bn_row), use_bn);
  let b_in = pair_mul(gv, pair_add(two_sum(v_in.x, -cv), v_in.y));
  let b_ln = pair_mul(gv, pair_add(two_sum(v_ln.x, -cv), v_ln.y));
  let b_bn = select(vec2<f32>(0.0), pair_mul(gv, pair_add(two_sum(v_bn.x, -cv), v_bn.y)), use_bn);
  let dots = DotSum(
    Pair4(vec4<f32>(a_in.x, a_ln.x, a_bn.x, 0.0), vec4<f32>(a_in.y, a_ln.y, a_bn.y, 0.0)),
    Pair4(vec4<f32>(b_in.x, b_ln.x, b_bn.x, 0.0), vec4<f32>(b_in.y, b_ln.y, b_bn.y, 0.0)),
  );
  return PairRow(dots, pair_mul(s, s2_ref), s2_ref, gv);
}

// mu_k - mu (k = IN, LN, BN in lanes x, y, z) of a wide row's terms in its mix's unit 2^w.e,
// mu the reference's mix (the weights as pairs): the terms' means as float32 pairs about w.hi
// (hi_k by unit_shift and lo_k times 2^(u_k - e), exact powers of two, as wide_centred takes
// them; a group of one row is that row, as in pair_dots), each difference rounded to float32
// once, so that means that coincide to a fraction of their rounding keep their difference.
fn pair_centred_means(t0: Term, t1: Term, t2: Term, w: WideMap, use_bn: bool) -> vec3<f32> {
  let u0 = unit_of(t0.flags) - w.e;
  let u1 = unit_of(t1.flags) - w.e;
  let u2 = unit_of(t2.flags) - w.e;
  let d_in = pair_add(two_sum(unit_shift(t0.hi, u0), -w.hi), t0.lo * pow2(u0));
  let d_ln = select(pair_add(two_sum(unit_shift(t1.hi, u1), -w.hi), t1.lo * pow2(u1)), d_in, P.c == 1u);
  let d_bn = select(select(vec2<f32>(0.0), pair_add(two_sum(unit_shift(t2.hi, u2), -w.hi), t2.lo * pow2(u2)), use_bn), d_in,
    bn_is_row());
  let mu_c = pair_sum(pair_sum(pair_weighted_mean(0u, d_in), pair_weighted_mean(1u, d_ln)), pair_weighted_mean(2u, d_bn));
  let a = pair_sum(d_in, -mu_c);
  let b = pair_sum(d_ln, -mu_c);
  let z = pair_sum(d_bn, -mu_c);
  return vec3<f32>(a.x + a.y, b.x + b.y, select(0.0, z.x + z.y, use_bn));
}

// Whether a row's BN group is that row alone: N = 1 in training with BN, outside SyncSN (there
// the BN statistics are the replicas' together).
fn bn_is_row() -> bool {
  return P.n == 1u && (P.flags & (P_TRAINING | P_USING_BN | P_NO_RUNNING_UPDATE)) == (P_TRAINING | P_USING_BN);
}

// The LN and BN variances of a row as pairs, beside its IN variance pair v_in. A group of one row
// is that row (C = 1: LN; bn_is_row: BN), so its variance is the row's, exactly as the
// reference has it, even where sn_group_refine summed the row again through its other group
// (leaving this one's from the first sums).
fn group_var_pairs(v_in: vec2<f32>, ln: Group, bn: Group) -> array<vec2<f32>, 2> {
  let v_ln = select(vec2<f32>(ln.variance, ln.var_lo), v_in, P.c == 1u);
  let v_bn = select(vec2<f32>(bn.variance, bn.var_lo), v_in, bn_is_row());
  return array<vec2<f32>, 2>(v_ln, v_bn);
}

// A pair row's dot products, and its dgamma = s S2' as a pair (the Grad's s.z and low):
// dgamma is a small difference of rows' terms where the mixing settled on one normalizer
// (under dy = 1 each row's S2' is M (mu_in - mu), which cancels over a channel's rows).
struct PairRow {
  dots: DotSum,
  dgamma: vec2<f32>,
  s2: vec2<f32>, // S2' = sum dy (x - mu), mu the reference's mean
  gv: vec2<f32>, // -0.5 gamma s^3 S2'
}

// Whether s^2 S2 (es the exponent of s, v = S2) could pass float32's range: the products the
// plain and pair rows form gv and dgamma by, s S2 and s (s S2) before gamma comes in, while
// gamma s^3 S2 itself fits where gamma is small. An infinite s^2 S2' in pair_dots made gv's pair
// Inf and NaN, and every variance dot NaN where they are 0 (an evaluation of constant rows of
// -1e10 under eps 1e-30, s 1e15, S2' ~1e10, gamma 1e-20: `var_weight`'s gradient NaN for 0,
// attack fuzzer seed 19475; tests/gv_steps_range_test.ts). wide_row keeps s's exponent,
// and S2's, apart.
fn steps_wide(es: i32, v: f32) -> bool {
  return 2 * es + finite_exponent_of(v) > 120;
}

// log2 of the most rows whose plain dots are summed in float32 (rounded up): a workgroup's 64
// pair rows in dot_sum8, a sample's C rows (a.w = gm mu, b.w = gv var, and the dots of rows
// outside the pair path) in sn_bwd_groups; the CPU adds those sums in float64. Each row's dot
// fitting float32 was not enough: evaluations on a running_mean of 5.2e11 beside rows of std
// 1e5 under gamma 2.3e18 (64 mean dots of ~8e36), or on a running_var of 1e-10 beside rows of
// variance ~1e8 under gamma 4.1e6 (variance dots of ~1e37), summed to infinities: the logit
// gradients Infinity and NaN where the reference has ~8e35 and ~7e21
// (tests/logit_dot_sum_range_test.ts; training steps alike). 2^dots_lg dots below
// 2^(dots_bound + 5) each stay below 2^127, whose sums round to at most float32's largest value.
fn dots_lg() -> i32 {
  return i32(32u - countLeadingZeros(max(P.c, 64u) - 1u));
}

// log2 of the most rows whose gm and gv sn_bwd_groups sums in float32 (a sample's C, a
// channel's N; at least 8, the bound 120 of calls that small), rounded up: gm, gv below
// 2^(their factors' exponents + 4) each, 2^sums_lg of them stay below 2^127. GvL was an
// infinity where every one of a sample's 512 rows had gv ~2e36 (gamma 6e23, dy = 4.3e11 x
// over x of std 1): dx -Infinity and NaN where the reference has ~1e35
// (tests/logit_dot_sum_range_test.ts).
fn sums_lg() -> i32 {
  return i32(32u - countLeadingZeros(max(max(P.c, P.n), 8u) - 1u));
}

// Whether a product of factors of exponent sum k with a finite nonzero sum v may lie below 2^-100.
fn tiny_product(k: i32, v: f32) -> bool {
  let ev = finite_exponent_of(v);
  return ev > -1000 && k + ev < -100;
}

// The segment sums of long row r added as pairs (S2's with their low words, sn_bwd_reduce), S2
// brought from the centre c to the mean by (mu - c) S1 with mu - c = residual.x + residual.y,
// the first product exact: (S1, S2). Both S2 and (mu - c) S1 are ~(mu - c) S1, far above the
// result, so each float32 rounding of theirs at that size was an error of the result: mu - c
// rounded to one float32 (~0.1, 4e-9 off) times S1 = 2^20 gave dgamma 5e-3 where it is ~0.
// (wide_row's: segments of subnormal dy, D = -126, that sn_bwd_wide_reduce summed again in
// units of 2^-126 beside segments in units of 1 are brought to units of 1, their low words 0:
// read as units of 1 they added 2^126 times their sums, dbeta -2.3945 for -2.3778 and dx of the
// row far off, partial_zero_sweep seed 140.)
// (In units of 2^-lift, long_lift: the segments in units of 1 and their low words times 2^lift,
// exact.)
fn long_sums(r: u32, residual: vec2<f32>, lift: i32) -> vec2<f32> {
  var s1 = vec2<f32>(0.0);
  var s2 = vec2<f32>(0.0);
  let up = pow2(lift);
  for (var k = 0u; k < P.chunks; k++) {
    let at = (r - P.row_base) * P.chunks + k;
    let rec = bparts[at];
    let dk = part_d(part_word(rec.w));
    let u = pow2(dk + lift);
    s1 = pair_add(pair_add(s1, bitcast<f32>(rec.x) * u), select(seg_lo[at] * up, 0.0, dk != 0));
    s2 = pair_add(pair_add(s2, bitcast<f32>(rec.y) * u), select(bitcast<f32>(rec.z) * up, 0.0, dk != 0));
  }
  let pairs = vec4<f32>(s1, pair_sub_product(s2, residual, s1));
  return vec2<f32>(pairs.x, pairs.z + pairs.w);
}

// The exponent lift for long_sums' unit 2^-lift in a wide row whose segments are in units of 1
// but for some that sn_bwd_wide_reduce summed again in units 2^D (subnormal dy, D = -126): 0,
// but where such a segment's S1 or S2 would lie below 2^-100 in units of 1, the most (up to
// -D) that keeps every segment's sums, their total and (mu - c) S1 below 2^100. Brought to units
// of 1 such a sum was subnormal and flushed: a row of 5000 of 0 but one x of 1e6 at a subnormal
// dy (S2 ~7e-39) beside normal dy ~1e-20 had gv and dgamma 0, and its sample's LN term with
// them (tests/partial_zero_rows_test.ts, outlierBesideTiny).
fn long_lift(r: u32, residual: vec2<f32>) -> i32 {
  var low = 0; // the lowest D of a segment with a sum below 2^-100 in units of 1
  var top = -1000; // the largest exponent of a segment's sum in units of 1
  var top1 = -1000; // ... of its S1
  for (var k = 0u; k < P.chunks; k++) {
    let rec = bparts[(r - P.row_base) * P.chunks + k];
    let dk = part_d(part_word(rec.w));
    let e1 = finite_exponent_of(bitcast<f32>(rec.x)) + dk;
    let e2 = finite_exponent_of(bitcast<f32>(rec.y)) + dk;
    let tiny = dk < 0 && ((e1 > -900 && e1 < -100) || (e2 > -900 && e2 < -100));
    low = select(low, min(low, dk), tiny);
    top = max(top, max(e1, e2));
    top1 = max(top1, e1);
  }
  // (A sum of P.chunks segments: 2^(log2 chunks + 1) above the largest.)
  let grow = 33 - i32(countLeadingZeros(P.chunks));
  let bound = max(top, top1 + max(finite_exponent_of(residual.x), 0) + 1) + grow;
  return clamp(100 - bound, 0, -low);
}

// long_sums' S1 and S2 as pairs (S1 with its segments' low words): (S1 hi, lo, S2 hi, lo).
fn long_sum_pairs(r: u32, residual: vec2<f32>) -> vec4<f32> {
  var s1 = vec2<f32>(0.0);
  var s2 = vec2<f32>(0.0);
  for (var k = 0u; k < P.chunks; k++) {
    let at = (r - P.row_base) * P.chunks + k;
    let rec = bparts[at];
    s1 = pair_add(pair_add(s1, bitcast<f32>(rec.x)), seg_lo[at]);
    s2 = pair_add(pair_add(s2, bitcast<f32>(rec.y)), bitcast<f32>(rec.z));
  }
  return vec4<f32>(s1, pair_sub_product(s2, residual, s1));
}

// mu - c for c = long_centre(m, p), the centre the long rows' S2 segments are taken about
// (sn_bwd_reduce.wgsl): hi - c is exact (c is hi itself, hi's own top bits, or hi's neighbour
// in binade).
fn long_residual(m: Mixed, p: Partial) -> f32 {
  let d = long_residual_pair(m, p);
  return d.x + d.y;
}

// mu - c as an exact pair (centre_offset).
fn long_residual_pair(m: Mixed, p: Partial) -> vec2<f32> {
  return centre_offset(m, long_centre(m, p));
}

// var_k - var of the mix as sum_j wvar_j (var_k - var_j), from pairs (hi_k - hi_j exact where
// they are close): the mixing weights' float32 rounding then scales the differences instead of
// leaving var_k (sum_j wvar_j - 1) behind.
fn var_centred(v: vec2<f32>, v0: vec2<f32>, v1: vec2<f32>, v2: vec2<f32>) -> f32 {
  return weighted_var(0u, P.wvar.x * ((v.x - v0.x) + (v.y - v0.y))) + weighted_var(1u, P.wvar.y * ((v.x - v1.x) + (v.y - v1.y))) +
    weighted_var(2u, P.wvar.z * ((v.x - v2.x) + (v.y - v2.y)));
}

// Whether a row of 0's S2 = -mu S1 (its float32 product, S1 in the row's units) may lie below
// 2^-100: the mix's mean below 2^-100 (mean_tiny), or mu S1 by their exponents (an evaluation on
// a running_mean of 1e-30 under dy ~1e-20 and a factor-wide gamma 1e30: S2 ~1e-49 was 0 where
// dgamma = s S2 ~1e-34 under s 1e15 is not, partial_zero_sweep seed 953; the pair rows' S2 is
// right there). Not for a mean of 0 (S2 is 0).
fn zero_s2_tiny(p: Partial, ln: Group, bn: Group, use_bn: bool, m: Mixed, s1: f32) -> bool {
  let em = bits_exponent(m.hi + m.lo);
  let tiny = (em > -1000) && tiny_product(em, s1);
  return class_bits(s1) == 0u && (tiny || mean_tiny(nd_terms_in(p), group_term(ln), select_term(group_term(bn), use_bn)));
}

// A wide row's dy unit D for RowGrad (sn_bwd_coef's dx map; dbeta, s.w, is brought to it):
// where every |dy| lies below 1 (D 0: units of 1), 2^D is that of the largest |dy| (at least
// 2^-126; 2^-126 for a row of dy 0), else dy_unit. In units of 1, sn_bwd_coef bounds |dy| by
// 2^40, and a unit set by that bound on dy gs flushed the map's A: an evaluation's row of dy 0
// under gamma s ~2^160 (gamma 3e38, running_var 0, eps 1e-20) beside LN's mean term A of -0.083
// had dx 0 (tests/zero_dy_row_test.ts).
fn wide_dy_unit(r: u32, dy_unit: i32) -> i32 {
  var e = -127;
  for (var k = 0u; k < P.chunks; k++) {
    e = max(e, part_mx_exp(bparts[(r - P.row_base) * P.chunks + k]));
  }
  return select(dy_unit, max(e, -126), dy_unit == 0 && e < 0);
}

// The Grad of a wide row r (see the top): sums in units of 2^D (and S2 of 2^(D + f), a far mean).
fn wide_row(r: u32, c: u32, p: Partial, ln: Group, bn: Group, use_bn: bool, m: Mixed) -> Grad {
  // The segments' units: D_k (dy) and the far exponent f_k of S2 (sn_bwd_wide_reduce), each
  // brought to the largest.
  // (f < 0: a near exponent, sn_bwd_wide_reduce; the largest f of the row's segments.)
  var d_unit = -1000;
  var fe = -1000;
  for (var k = 0u; k < P.chunks; k++) {
    let w = part_word(bparts[(r - P.row_base) * P.chunks + k].w);
    d_unit = max(d_unit, part_d(w));
    fe = max(fe, part_f(w));
  }
  var s1 = 0.0;
  var s2 = 0.0;
  for (var k = 0u; k < P.chunks; k++) {
    let rec = bparts[(r - P.row_base) * P.chunks + k];
    let rw = part_word(rec.w);
    let dk = part_d(rw);
    s1 += bitcast<f32>(rec.x) * pow2(dk - d_unit);
    s2 += bitcast<f32>(rec.y) * pow2(dk + part_f(rw) - d_unit - fe);
  }
  let t_in = nd_terms_in(p);
  let t_ln = group_term(ln);
  let t_bn = select_term(group_term(bn), use_bn);
  var w: WideMap;
  if (is_scaled(m.flags)) {
    w = wide_map(t_in, t_ln, t_bn, 1.0, 0.0);
  } else {
    // Only dy is scaled: the statistics are as the unscaled passes have them (unit 1), the std
    // from wide_map's where a tiny variance weight takes var + eps below float32's range.
    w = unit_map(m, t_in, t_ln, t_bn);
    // Long rows: S2's segments were taken about c (see the top), in every reduce pass, unless
    // the mixed mean is far from the data (fe > 0: sn_bwd_wide_reduce took x - mu in units).
    // With every segment in units of 1 (d_unit 0: none was summed again by sn_bwd_wide_reduce)
    // as the plain rows take them (long_sums: pairs, S2's low words, an exact (mu - c) S1).
    // (In units of 2^-lift where the segments sn_bwd_wide_reduce summed again are tiny in units
    // of 1: long_lift.)
    if (P.chunks > 1u && fe == 0 && class_bits(s1) == 0u && class_bits(s2) == 0u) {
      if (d_unit == 0) {
        let residual = long_residual_pair(m, p);
        let lift = select(0, long_lift(r, residual), !w.bad && !w.var_inf);
        let sums = long_sums(r, residual, lift);
        s1 = sums.x;
        s2 = sums.y;
        d_unit = -lift;
      } else {
        s2 -= long_residual(m, p) * s1;
      }
    }
    // A row of 0 whose mixed mean lies below 2^-100 (mean_tiny): S2 = -mu S1 exactly, from the
    // mean in a unit of its own (fine_mean, 2^fm.e, carried as a near exponent fe): in units of 1
    // mu S1 lay below float32's normal range (an evaluation on a running_mean of 1 under a mean
    // weight of 8.2e-39: dgamma 0 for 8.7e-24 under s 1e15, subnormal_dy_sweep seed 47).
    // (And where mu S1 itself lies below 2^-100, zero_s2_tiny, with a fine mean of at most 1 in
    // any unit of its own: S2 ~1e-49 under s 1e15, seed 953.)
    if (zero_row(p) && !w.bad && zero_s2_tiny(p, ln, bn, use_bn, m, s1)) {
      let fm = fine_mean(t_in, t_ln, t_bn, 0, -1000);
      if (fm.ok | (fm.finite & (fm.e > -900) & (fm.e <= 0))) {
        s2 = -(fm.hi + fm.lo) * s1;
        fe = fm.e;
      }
    } else if (!w.bad && fe <= 0 && class_bits(s1) == 0u && class_bits(s2) == 0u && mean_tiny(t_in, t_ln, t_bn)) {
      // Any other row whose mixed mean lies below 2^-100 (mean_tiny): S2 was taken about the
      // float32 mix's mean mu_f = hi + lo + mix_rest (centre_offset), whose words hold the
      // weighted means below float32's normal range as a few subnormal bits or not at all (a
      // row [1, 0, ..., 0] of dy 0 at its 1 whose IN mean of weight e^-87 makes a mean of 2e-39
      // beside a running_mean of 0, s 1e15: hi 1 and lo -1 cancel, S2 = -mu S1 was 0 and dgamma
      // 0 for -4.9e-25 on lavapipe and SwiftShader alike, under gamma 1 and -3e20), and which a
      // GPU that flushes reads as 0 (mu_f in arithmetic is the mean the reduce passes'
      // arithmetic took). S2 = S2_f - (mu - mu_f) S1 in the unit of the fine
      // mean (2^fm.e, a near exponent) where S2_f fits there; above, (mu - mu_f) S1 lies below
      // S2_f's rounding.
      let fm = fine_mean(t_in, t_ln, t_bn, 0, -1000);
      let co = centre_offset(m, 0.0);
      let mf = co.x + co.y;
      if ((fm.finite & (fm.e > -900) & (fm.e <= 0)) && finite_exponent_of(s2) + fe - fm.e < 100) {
        let dmu = (fm.hi + fm.lo) - scale2(mf, -fm.e);
        s2 = scale2(s2, fe - fm.e) - dmu * s1;
        fe = fm.e;
      }
    }
  }
  if (w.bad) {
    return grad(vec4<f32>(0.0, 0.0, 0.0, s1), vec4<f32>(0.0), vec4<f32>(0.0), g_flags(G_BAD, 0, 0, d_unit), 0);
  }
  if (w.var_inf) {
    // s = 0: gm, gv, dgamma and the mean dots are 0, the variance dots 0 * Inf = NaN; with a
    // NaN or infinite dy in the row (S1 not finite) gm = -gamma s S1 and the rest are 0 * Inf,
    // NaN as in the reference (they were 0: dx 0 and dgamma 0 for NaN, nd fuzzer FUZZ_INJECT=1
    // seed 53).
    let flag = select(G_VNAN, G_BAD, class_bits(s1) != 0u);
    return grad(vec4<f32>(0.0, 0.0, 0.0, s1), vec4<f32>(0.0), vec4<f32>(0.0), g_flags(flag, 0, 0, d_unit), 0);
  }
  // s = s' 2^es and gamma = gamma' 2^g kept apart (exact): gamma s can pass float32's range
  // where gm, gv and the dots do not, and s^3 of a mix whose variance is tiny beside its terms'
  // (a tiny std of mixed terms whose own variances got weight ~0) can pass it where dx does not.
  // Only for s beyond 2^20 (s^3 beyond 2^60): a smaller s stays in the dots' products, which
  // a variance far above the mix's (var_k ~ 1 / s'^2 much larger) would otherwise overflow.
  // And apart below 1 where gm = -s gamma' S1 or gv ~ s^3 S2 would fall below float32's
  // normal range (a std of 1e12 under dy 1e-15; below 2^-20 alone until helper-133, which left
  // s S2 subnormal for s ~1.5e-5 over S2 ~2e-38: a row of 100 of 0 but one x of 1e6 at a
  // subnormal dy beside normal dy, gv 0 and its sample's LN term with it,
  // tests/partial_zero_rows_test.ts).
  // (s = scale 2^g: g is 0 but for a std far below the mix's unit, wide_map's sv.)
  // The sums as gm and gv take them below (es1, es2: S1 lowered to 2^40 at most, S2 to 2^60,
  // their exponents by their bits, lane_exp, a subnormal sum's included): gv ~ s^3 S2 was tested
  // with S2's own exponent, then formed from S2 lowered to 2^60, so that s ~2^-63 beside S2 ~2^89
  // gave a subnormal gv, which a GPU that flushes (NVIDIA, SwiftShader) made 0, and the row's
  // variance dots with it (lavapipe kept a few bits): an evaluation of SwitchNorm2d on rows of
  // ~1e-17 (scaled) beside a BN std of ~1.3e4 from the running buffers, dy ~1e10, `var_weight`'s
  // gradient -1.374e9 for -1.379e9 (tests/range_property_test.ts, call 16). s is taken apart
  // there too (es = xs: s in [1, 2), S2 lowered to 2^60, gv near 2^60); exact powers of two, the
  // same bits wherever gv was normal.
  let xs = exponent_of(w.scale) + w.g;
  let x1 = lane_exp(s1);
  let x2 = lane_exp(s2);
  let s1_tiny = (x1 > -1000) & (xs + min(x1, 40) < -100);
  let s2_tiny = (x2 > -1000) & (3 * xs + min(x2, 60) < -100);
  let es = select(max(0, xs - 20), xs, (xs < 0) & (s1_tiny | s2_tiny));
  let s = scale2(w.scale, w.g - es);
  let g = gamma_exp(affine[c]);
  let gamma = gamma_mantissa(affine[c]);
  // The row sums' exponents beyond 2^40 (S1) and 2^60 (S2) kept apart too (exact): with s up
  // to 2^21 here, gm, gv and their dots then stay within float32.
  // And every exponent of a sum whose gm' = s gamma' S1 or gv' ~ s^3 S2 would fall below 2^-100
  // (the sum brought to [1, 2) by its bits): with gamma's exponent apart, a gamma of 3e38 that
  // brings gv back no longer counts, and s ~1e-5 (eps 1e10, above es's 2^-20) times S2 ~1e-30
  // of dy ~1e-31 made gv' ~8e-46, a few bits: dx's dL/dvar term 2.2x the reference's (attack
  // fuzzer seed 16624). Rare: exponents alone.
  let xs_s = exponent_of(s);
  let es1 = select(max(0, finite_exponent_of(s1) - 40), x1, (x1 > -1000) & (xs_s + x1 < -100));
  let es2 = select(max(0, finite_exponent_of(s2) - 60), x2, (x2 > -1000) & (3 * xs_s + x2 < -100));
  let gm = -s * gamma * scale2(s1, -es1);
  // gamma times s^2 first: -0.5 times a subnormal gamma of 2^-149 (its mantissa, gamma_mantissa)
  // was 0, and gv with it (dx ~1e-16 where the reference has +-Infinity: gamma 2e-45 over a row
  // of std 1e-29 whose LN mean lies 2^212 stds away, tests/far_mean_test.ts).
  let gv = gamma * (s * s) * (-0.5 * (s * scale2(s2, -es2)));
  // With a far mean (fe > 0) gv and dgamma are mantissas of 2^fe more, and so are the mean
  // dots, with the centred means in units of 2^fe (they are of the mean's size).
  // The centred means and the variance differences (terms far from the mix: an LN variance 1e50
  // beside a mixed one of 1e25; or tiny in their unit: data of std 1e-20 under eps 1e-5,
  // ~2^-116 in the unit eps sets) each with its exponent apart (below), so that their products
  // with gm and gv neither leave float32 nor are flushed.
  // (Not with a near exponent, fe < 0: the centred means are not x - mu, and keep their unit.)
  let fa = max(fe, 0);
  let ff = pow2(-fa);
  var ca = vec4<f32>(wide_centred(t_in, w, 0u), wide_centred(t_ln, w, 1u), wide_centred(t_bn, w, 2u), w.hi + w.lo) * ff;
  // The centred means from the means' pairs in the mix's unit, as pair_dots takes them
  // (pair_centred_means), where wide_centred's float32 (hi_k - hi) + lo_k rounds at the ulp of
  // |mu_k - hi|, hi the row's IN mean: LN and BN means of ~12500 that differ by 1.25e-4 (0.13 of
  // their ulp) about an IN mean of 25000 came out equal, `mean_weight`'s gradient -3.4e-29 for
  // +-7.9e-20 (subnormal dy, nd_subnormal_rows_sweep seed 1134; so scaled, data times 1e-30);
  // means ~0.7 310 roundings apart about one of ~1.4, 0.15% off (dy ~3e19,
  // wide_beside_plain_sweep seed 1438; tests/wide_row_mean_pairs_test.ts). Where every lane is
  // finite (else wide_centred's), running buffers of mean weight 0 at 0 as there.
  let pc = pair_centred_means(t_in, t_ln, t_bn, w, use_bn) * ff;
  if (class_bits(pc.x) == 0u && class_bits(pc.y) == 0u && class_bits(pc.z) == 0u) {
    let run = vec3<bool>((P.wmean[0] == 0.0) & ((t_in.flags & F_RUNNING) != 0u),
      (P.wmean[1] == 0.0) & ((t_ln.flags & F_RUNNING) != 0u), (P.wmean[2] == 0.0) & ((t_bn.flags & F_RUNNING) != 0u));
    ca = vec4<f32>(select(pc, vec3<f32>(0.0), run), ca.w);
  }
  // Mean differences far below that unit in a unit of their own (far_mean_lane; xm: their
  // exponents beyond it, 0 for the other lanes), rare: a branch.
  var xm = vec4<i32>(0);
  let fine = vec3<f32>(p.fine, ln.fine, select(0.0, bn.fine, use_bn));
  let fme = far_mean_exps(t_in, t_ln, t_bn, fine, use_bn, w.e + fa);
  // (Or far below hi, the mix's first word, which wide_centred subtracts first: FAR_HI.)
  let hi_e = select(-1000, exponent_of(w.hi) + w.e, class_bits(w.hi) == 0u);
  let far = (fme < vec3<i32>(w.e + fa - FAR_MEAN)) | (fme < vec3<i32>(hi_e - FAR_HI));
  if (any(far)) {
    let v = fme - vec3<i32>(FAR_MEAN_LIFT);
    let rest = vec3<f32>(0.0, ln.fine_rest, select(0.0, bn.fine_rest, use_bn));
    let d = vec3<f32>(far_mean_lane(t_in, fine.x, t_in, t_ln, t_bn, fine, use_bn, v.x),
      far_mean_lane(t_ln, fine.y, t_in, t_ln, t_bn, fine, use_bn, v.y), far_mean_lane(t_bn, fine.z, t_in, t_ln, t_bn, fine, use_bn, v.z)) +
      vec3<f32>(far_rest_lane(0.0, rest, use_bn, v.x), far_rest_lane(rest.y, rest, use_bn, v.y), far_rest_lane(rest.z, rest, use_bn, v.z));
    ca = vec4<f32>(select(ca.xyz, d, far), ca.w);
    xm = vec4<i32>(select(vec3<i32>(0), v - vec3<i32>(w.e + fa), far), 0);
  }
  // A group of one row (C = 1: LN; bn_is_row: BN) is that row, as in pair_dots: its centred mean
  // the row's, the same bits, as the reference's are equal. The group's (hi, lo) is another split
  // of that mean (sn_group_refine forms a listed group's again, and the row's, and leaves the
  // other group's), whose rounding in the mix's unit was the logit gradients' whole error where
  // every statistic coincides (N = C = 1 under dy ~1e13 or gamma 1e30: `mean_weight` up to 1600x
  // its tolerance where it is 0; attack fuzzer seed 7760, 314x; tests/shape_coinciding_test.ts).
  // (Selects on uniforms, not branches: see sn_mix.wgsl.)
  let ln_is_row = P.c == 1u;
  let bn_row = bn_is_row();
  ca.y = select(ca.y, ca.x, ln_is_row);
  ca.z = select(ca.z, ca.x, bn_row);
  xm.y = select(xm.y, xm.x, ln_is_row);
  xm.z = select(xm.z, xm.x, bn_row);
  // The variance differences in a unit of their own (2^(2 vd.u), backward_common var_diffs),
  // the largest near 2^120 (lift 60): each variance dot then takes an exponent of its own
  // (grad_units), so that differences far below the largest are not flushed.
  let vd = var_diffs(t_in, t_ln, t_bn, w.e, 60);
  var cb = vd.d;
  // Statistics in unit 1 (only dy scaled) whose variances are pairs (rows of several segments,
  // P_PAIRS: an evaluation's IN variances near running_var, refine_variance): the differences
  // from the pairs, as the plain rows take them (var_centred), where float32 variances equal to
  // the last bit left them 0 (rows of N(0, 1) on their own float32 variance under dy ~1e13:
  // `var_weight`'s gradient 0 for -1.4e5, 228x its tolerance, attack helper-77;
  // tests/close_variance_test.ts). A term of variance weight 0 (var_diffs takes its variance as
  // 0; without usingBN, BN) keeps var_diffs' lane, which its weight 0 drops, and adds 0 to the
  // others' (its weight's mantissa is 0); not where a difference is not finite in that unit.
  // (And rows whose M2 sn_group_refine summed again: their groups' variances are pairs too, and a
  // float32 IN variance beside them was 411x its tolerance under dy ~1e15 where the pairs of
  // the plain rows pass, attack helper-80; under a variance weight of 0 these rows took the
  // float32 variances until helper-121: rows that are shuffles of one another, N = 1 or C = 1,
  // `var_weight`'s gradient up to 430x its tolerance, tests/shape_coinciding_test.ts.)
  let zw = vec3<bool>(zero_weight_exp(P_ZERO_WVAR) != 0, zero_weight_exp(P_ZERO_WVAR + 1u) != 0,
    zero_weight_exp(P_ZERO_WVAR + 2u) != 0);
  if (!is_scaled(m.flags) && reads_var_pairs(p)) {
    let v_in = variance_pair(p.m2, p.m2_lo, p.count);
    let vp = group_var_pairs(v_in, ln, bn); // BN: zeros, of weight 0, without usingBN
    let v_ln = vp[0];
    let v_bn = vp[1];
    let d = vec3<f32>(var_centred(v_in, v_in, v_ln, v_bn), var_centred(v_ln, v_in, v_ln, v_bn), var_centred(v_bn, v_in, v_ln, v_bn));
    let dd = select(vec3<f32>(scale2(d.x, -2 * vd.u), scale2(d.y, -2 * vd.u), scale2(d.z, -2 * vd.u)), cb.xyz, zw);
    if (class_bits(dd.x) == 0u && class_bits(dd.y) == 0u && class_bits(dd.z) == 0u) {
      cb = vec4<f32>(dd, cb.w);
    }
  }
  // Scaled rows whose M2 sn_group_refine summed again as an exact pair (F_M2_EXACT: a member of
  // an alike group of scaled rows, whose variance it formed again as a pair) likewise, each
  // pair brought to the differences' unit 2^(2 vd.u) by its bits (a term of weight 0 to 0, as
  // var_diffs takes it): rows of +-3.4e38 that are shuffles of one another, under a variance
  // weight ~1e-31 on LN, had var_IN - var_LN their float32 rounding, var_weight's gradient 8.5e29
  // for -1.2e21, 559x its tolerance (attack fuzzer seed 645; tests/close_stats_training_test.ts).
  // And scaled rows whose M2 sn_wide_stats summed as a pair (rows of several segments, P_PAIRS:
  // an evaluation with BN), as the unscaled rows above: IN and LN variances ~2^-12 apart of rows
  // of ~3e38 in 5 segments under an LN variance weight of ~1e-60, var_weight's gradient 1.8x its
  // tolerance (attack fuzzer seed 27683); scaled rows of a trend on their own statistics, 0 for
  // 1.2e-8 (tests/scaled_variance_pairs_test.ts).
  if (is_scaled(m.flags) && reads_var_pairs(p)) {
    let pin = variance_pair(p.m2, p.m2_lo, p.count);
    let vp = group_var_pairs(pin, ln, bn);
    let v_in = scale2_pair(pin, 2 * (var_unit(t_in.flags) - vd.u) + 4 * zero_weight_exp(P_ZERO_WVAR));
    let v_ln = scale2_pair(vp[0], 2 * (var_unit(t_ln.flags) - vd.u) + 4 * zero_weight_exp(P_ZERO_WVAR + 1u));
    let v_bn = scale2_pair(vp[1], 2 * (var_unit(t_bn.flags) - vd.u) + 4 * zero_weight_exp(P_ZERO_WVAR + 2u));
    let d = vec3<f32>(var_centred(v_in, v_in, v_ln, v_bn), var_centred(v_ln, v_in, v_ln, v_bn), var_centred(v_bn, v_in, v_ln, v_bn));
    if (class_bits(d.x) == 0u && class_bits(d.y) == 0u && class_bits(d.z) == 0u) {
      cb = vec4<f32>(d, cb.w);
    }
  }
  // Differences far below the largest variance in units of their own (far_var_lanes; cx: their
  // exponents beyond 2^(2 vd.u), 0 for the other lanes), rare: a branch.
  var cx = vec4<i32>(0);
  let fv = far_var_exps(t_in, t_ln, t_bn, vd.u);
  if (any(fv < vec3<i32>(vd.u - 50))) {
    let far = far_var_lanes(t_in, t_ln, t_bn, fv, vd.u, cb);
    cb = far.d;
    cx = far.x;
  }
  // Groups of one row (ln_is_row, bn_row): their variance differences so too (with their
  // exponents, cx), from the first of them of variance weight above 0 (var_diffs
  // takes a term of weight 0 as variance 0, whose lane its weight 0 then drops): the group's
  // float32 variance may lie an ulp from the row's (sn_group_refine's pairs), `var_weight`'s
  // gradient up to 330x its tolerance where it is 0 under a variance weight of 0 on the third
  // term (tests/shape_coinciding_test.ts).
  let from_ln = ln_is_row & !zw.y;
  let row_lane = zw.x & (from_ln | (bn_row & !zw.z));
  let v_row = select(cb.x, select(cb.z, cb.y, from_ln), row_lane);
  let x_row = select(cx.x, select(cx.z, cx.y, from_ln), row_lane);
  cb = vec4<f32>(select(cb.x, v_row, ln_is_row | bn_row), select(cb.y, v_row, ln_is_row), select(cb.z, v_row, bn_row), cb.w);
  cx = vec4<i32>(select(cx.x, x_row, ln_is_row | bn_row), select(cx.y, x_row, ln_is_row), select(cx.z, x_row, bn_row), cx.w);
  // The mean dots from factors brought to [1, 2) by their bits, their exponents apart (lane by
  // lane, grad_units): gm' ca in one unit lost the dots far below the largest (a BN mean of
  // -3e38 in the mix beside IN means of 1e-30, attack fuzzer seed 392), and the product of a
  // small gm' (1e-30, S1 of dy ~1e-31) and centred means of 1e-21 was subnormal, flushed:
  // mean_weight's gradient 0 for 3.2e-28 (seed 85; tests/logit_dot_range_test.ts).
  // The variance dots so too (a running_var of 3e38 under a weight just above 2^-252 beside IN
  // variances of 1e-30: var_weight's gradient 0.0126 for -0.072).
  let xg = norm_exps(vec4<f32>(gm, gv, 0.0, 0.0));
  let xc = norm_exps(ca);
  let xb = norm_exps(cb);
  var a = scale2(gm, -xg.x) * scale2_lanes(ca, -xc);
  var b = scale2(gv, -xg.y) * scale2_lanes(cb, -xb);
  a.z = select(0.0, a.z, use_bn);
  b.z = select(0.0, b.z, use_bn);
  let e1 = d_unit - 2 * w.e + 3 * es + g + fe + es2;
  // dgamma = s S2 from both factors brought to [1, 2) by their bits, their exponents apart
  // (xd; the same bits where s S2 is a normal float32): their product fell below float32's
  // normal range (s ~1e-5 times S2 ~1e-33, dgamma ~1e-38), where grad_units read no exponent
  // and scaled it by the dots' unit, gamma's exponent in it: gamma -1e-40 over data ~1e-31 and
  // one 1 made dgamma -Infinity where the reference has -3.6e-38 (attack fuzzer seed 2002).
  let xd = norm_exps(vec4<f32>(s, scale2(s2, -es2), 0.0, 0.0));
  let dg = scale2(s, -xd.x) * scale2(s2, -es2 - xd.y);
  return grad_units(vec4<f32>(gm, gv, dg, s1), a, b, d_unit - w.e + es + g + es1, e1, d_unit,
    vec4<i32>(es + g + fa + es1 + xg.x) + xc + xm, vec4<i32>(3 * es + g + fe + es2 + 2 * (vd.u - w.e) + xg.y) + xb + cx, es + fe + es2 + xd.x + xd.y);
}

// The std exponent of each variance difference var_k - var of a wide row's mix (k = IN, LN, BN
// in lanes x, y, z), the larger of var_k's and the mix's, the mix's from its weighted terms'
// exponents (a term of weight 0 counts neither; -1000 where both are 0). var_diffs takes every
// difference in the unit the largest variance sets, 2^(2u) with u 60 below it: a difference more
// than 50 std binades below u lies below 2^-100 there, and one of ~1 (IN and LN variances ~1e-4,
// the mix ~1e-3 from a BN variance of 2.4e72 under a weight of 2.7e-76, a weight just above
// WebGPU's 2^-252) came out flushed: `var_weight`'s gradient 1.5x the reference's on its IN
// logit, 17x its tolerance (partial_zero_sweep seeds 2060, 2591; tests/partial_zero_rows_test.ts).
fn far_var_exps(t0: Term, t1: Term, t2: Term, u: i32) -> vec3<i32> {
  let mix = max(max(weighted_var_exp(0u, t0), weighted_var_exp(1u, t1)), weighted_var_exp(2u, t2));
  let ev = select(mix >> 1u, -1000, mix <= -1000);
  let z = vec3<i32>(4 * zero_weight_exp(P_ZERO_WVAR), 4 * zero_weight_exp(P_ZERO_WVAR + 1u), 4 * zero_weight_exp(P_ZERO_WVAR + 2u));
  let e = vec3<i32>(term_std_exp(t0), term_std_exp(t1), term_std_exp(t2));
  // -1000 (no difference: a variance and a mix of 0) is taken as u: it never takes the branch.
  let f = max(max(e + z, vec3<i32>(-1000)), vec3<i32>(ev));
  return select(f, vec3<i32>(u), f <= vec3<i32>(-1000));
}

// floor(log2 (wvar_k var_k)) of term t (weight index k) in the unit 2^0, by exponents alone;
// -1000 for a weight or a variance of 0.
fn weighted_var_exp(k: u32, t: Term) -> i32 {
  let ev = bits_exponent(t.variance);
  let w = P.wvar[k];
  return select(exponent_of(w) + P.wvar_e[k] + ev + 2 * var_unit(t.flags), -1000, (ev == -1000) | (w == 0.0) | (zero_weight_exp(P_ZERO_WVAR + k) != 0));
}

// The lanes of cb (var_diffs' d in units of 2^(2u)) whose differences lie far below (exponent
// f_k < u - 50, far_var_exps) taken again in a unit of their own, 2^(2 (f_k - 60)), with their
// exponents beyond 2^(2u) in x: var_k and the mix's var = sum_j wvar_j var_j each from their
// bits (weighted_term_var), the terms far above the difference (wvar_j var_j <= var) in range.
struct FarLanes {
  d: vec4<f32>,
  x: vec4<i32>,
}

fn far_var_lanes(t0: Term, t1: Term, t2: Term, f: vec3<i32>, u: i32, cb: vec4<f32>) -> FarLanes {
  let l0 = far_var_lane(0u, t0, t0, t1, t2, f.x, u, cb.x);
  let l1 = far_var_lane(1u, t1, t0, t1, t2, f.y, u, cb.y);
  let l2 = far_var_lane(2u, t2, t0, t1, t2, f.z, u, cb.z);
  return FarLanes(vec4<f32>(l0.d, l1.d, l2.d, cb.w), vec4<i32>(l0.x, l1.x, l2.x, 0));
}

// One lane of far_var_lanes: term t of weight index k, its difference's std exponent f.
struct FarLane {
  d: f32,
  x: i32,
}

fn far_var_lane(k: u32, t: Term, t0: Term, t1: Term, t2: Term, f: i32, u: i32, d: f32) -> FarLane {
  if (f >= u - 50) {
    return FarLane(d, 0);
  }
  let v = f - 60;
  let mix = weighted_term_var(0u, t0, v) + weighted_term_var(1u, t1, v) + weighted_term_var(2u, t2, v);
  let own = scale2(t.variance, 2 * (var_unit(t.flags) - v) + 4 * zero_weight_exp(P_ZERO_WVAR + k));
  return FarLane(own - mix, 2 * (v - u));
}

// A pair v times 2^k, word by word by their bits (scale2).
fn scale2_pair(v: vec2<f32>, k: i32) -> vec2<f32> {
  return vec2<f32>(scale2(v.x, k), scale2(v.y, k));
}

// The exponents that bring v's finite nonzero lanes to [1, 2) by their bits (lane_exp: a
// subnormal one too), 0 for lanes that are 0, NaN or infinite (left as they are).
fn norm_exps(v: vec4<f32>) -> vec4<i32> {
  let x = vec4<i32>(lane_exp(v.x), lane_exp(v.y), lane_exp(v.z), lane_exp(v.w));
  return select(vec4<i32>(0), x, x > vec4<i32>(-1000));
}

// v * 2^k lane by lane with k per lane (scale2: exact while normal).
fn scale2_lanes(v: vec4<f32>, k: vec4<i32>) -> vec4<f32> {
  return vec4<f32>(scale2(v.x, k.x), scale2(v.y, k.y), scale2(v.z, k.z), scale2(v.w, k.w));
}

// A wide row's mean differences mu_k - mu (the mean dots' factors) lie in the unit 2^(e + fa)
// of its mix, where a difference far below it (its term's mean and every weighted mean w_j mu_j
// of the mix more than 2^FAR_MEAN below it) is subnormal or 0: a row of 0 but one x of 6.3e-39
// beside rows whose mix takes the unit 1 had mu_IN = 1.26e-42 and mu_LN = 6.3e-43 ~900 and ~450
// ulps of 2^-149, `mean_weight`'s gradient 1.045e-23 for 1.066e-23 (partial_zero_sweep seed
// 3402). Such a lane is taken again in the unit 2^(f_k - FAR_MEAN_LIFT), f_k its exponent
// (far_mean_exps): the term's mean less the mix's sum_j w_j mu_j, the weights' exponents apart
// (each weighted mean lies at most 2^FAR_MEAN_LIFT above the unit), each mean from its record's
// fine word where it has one (a mean below 2^-FINE_MEAN_BELOW of its own unit, common.wgsl:
// a row of +-v pairs of ~2^66 whose mean is 2^-179 of its std held 0 there, a gradient 0 for
// 1.8e-34, bn_mean_below_std_sweep seed 666), else from its words' bits; the lane's exponent
// beyond the mix's unit is carried into its mean dot's own. fine = the terms' fine words (IN, LN,
// BN in x, y, z).
const FAR_MEAN = 60;
const FAR_MEAN_LIFT = 30;
// A lane far below the mix's first word hi (the IN term's mean, whatever its weight) in its
// unit, although not 2^FAR_MEAN below the unit itself, is taken so too: wide_centred's
// (mu_k - hi) - lo rounds at hi's ulp, 2^-24 of hi, all of a lane 2^54 below it (an evaluation
// of rows of +-3.4e38 whose IN mean 3.4e36 has weight 0, beside a running_mean of -2e20 and an
// LN mean of 0: the BN lane 0 for -1.57e20, `mean_weight`'s gradient -4.40 for -20.5, attack
// fuzzer seed 90582). 2^-4 of hi: such a lane then keeps 19 of its bits at least. Only where
// every weighted mean lies that far below hi as well (a weight below ~2^-4 on the IN term).
const FAR_HI = 4;

// f_k of each lane (k = IN, LN, BN in x, y, z): the larger of term k's mean's exponent and the
// mix's (its weighted means'), in the unit 2^0; w = the mix's unit (e + fa), the exponent of a
// lane that is not far (BN without usingBN; an evaluation's running buffers of mean weight 0,
// whose lane wide_centred takes as 0; lanes of all zeros).
fn far_mean_exps(t0: Term, t1: Term, t2: Term, fine: vec3<f32>, use_bn: bool, w: i32) -> vec3<i32> {
  let e = vec3<i32>(term_mean_exp(t0, fine.x), term_mean_exp(t1, fine.y), term_mean_exp(t2, fine.z));
  let mix = max(max(weighted_mean_exp_of(0u, e.x), weighted_mean_exp_of(1u, e.y)), select(-1000, weighted_mean_exp_of(2u, e.z), use_bn));
  let f = max(e, vec3<i32>(mix));
  // (Not where a mean is NaN or infinite: lane_exp takes it for none, and the lanes are as the
  // mix's arithmetic has them.)
  let odd = ((t0.flags | t1.flags | select(0u, t2.flags, use_bn)) & (F_NAN | F_POS_INF | F_NEG_INF)) != 0u;
  let keep = vec3<bool>(far_running_zero(0u, t0), far_running_zero(1u, t1), far_running_zero(2u, t2) | !use_bn) | (f <= vec3<i32>(-900)) | vec3<bool>(odd);
  return select(f, vec3<i32>(w), keep);
}

// The exponent above a term's mean (its fine word's, else its words hi and lo's) in the unit
// 2^0 (-1000 where it is 0).
fn term_mean_exp(t: Term, fine: f32) -> i32 {
  let e = max(lane_exp(t.hi), lane_exp(t.lo));
  let words = select(e + unit_of(t.flags) + 1, -1000, e <= -900);
  return select(words, lane_exp(fine) + FINE_MEAN_UNIT + 1, fine != 0.0);
}

// That of w_k mu_k from term_mean_exp's e (-1000 for a weight of 0).
fn weighted_mean_exp_of(k: u32, e: i32) -> i32 {
  let none = (e <= -900) | (P.wmean[k] == 0.0) | (zero_weight_exp(P_ZERO_WMEAN + k) != 0);
  return select(e + exponent_of(P.wmean[k]) + P.wmean_e[k] + 1, -1000, none);
}

fn far_running_zero(k: u32, t: Term) -> bool {
  return (P.wmean[k] == 0.0) & ((t.flags & F_RUNNING) != 0u);
}

// Lane k (term t, fine word f of that term) in the unit 2^v: its mean less the mix's, the high
// words' difference and the low words' apart: their float32 sum rounded a mean's low word away
// where it lies below the high word's last bit in that unit, as the means' difference may (an LN
// mean of constant rows x1 + 9.3e-46 beside the row x1 ~6.7e-38, that rest its low word: 0 in
// the unit 2^v, and `mean_weight`'s gradient lost that row's share, 952x its tolerance; attack
// fuzzer seed 81166).
fn far_mean_lane(t: Term, f: f32, t0: Term, t1: Term, t2: Term, fine: vec3<f32>, use_bn: bool, v: i32) -> f32 {
  let mu = far_weighted(0u, t0, fine.x, v) + far_weighted(1u, t1, fine.y, v) + select(vec2<f32>(0.0), far_weighted(2u, t2, fine.z, v), use_bn);
  let d = term_mean_in(t, f, v) - mu;
  return d.x + d.y;
}

// The fine words' rests' share of a lane (r the term's rest; rests: the groups', Group.fine_rest,
// the row's none) in the unit 2^v: r - sum_k w_k r_k, added after the words' difference, which
// is exact where the means are that close (an LN mean x1 less 2.8e-45 beside a constant row x1
// ~6.7e-38, one word in the fine unit: `mean_weight`'s gradient 2x the reference's,
// tests/far_mean_low_word_test.ts). 0 but for such groups.
fn far_rest_lane(r: f32, rests: vec3<f32>, use_bn: bool, v: i32) -> f32 {
  let none = Term(0.0, 0.0, 0.0, 0u);
  let mu = select(far_weighted(1u, none, rests.y, v).x, 0.0, rests.y == 0.0) +
    select(far_weighted(2u, none, rests.z, v).x, 0.0, (rests.z == 0.0) | !use_bn);
  return select(scale2(r, FINE_MEAN_UNIT - v), 0.0, r == 0.0) - mu;
}

// A term's mean in the unit 2^v by the bits of its fine word where it has one, else of its
// words hi and lo, kept apart (0 for a word far below it).
fn term_mean_in(t: Term, fine: f32, v: i32) -> vec2<f32> {
  let u = unit_of(t.flags) - v;
  return select(vec2<f32>(scale2(t.hi, u), scale2(t.lo, u)), vec2<f32>(scale2(fine, FINE_MEAN_UNIT - v), 0.0), fine != 0.0);
}

// w_k mu_k in the unit 2^v: the mean brought to 2^(v - ew) (ew the weight's exponent, its part
// below float32's range included), times the weight's mantissa (a tiny weight's float32 times
// a large mean in the unit 2^v passed float32's range); 0 for weight 0 or a zero weight bit.
// Each of the mean's words apart, as term_mean_in.
fn far_weighted(k: u32, t: Term, fine: f32, v: i32) -> vec2<f32> {
  let w = P.wmean[k];
  let none = (w == 0.0) | (zero_weight_exp(P_ZERO_WMEAN + k) != 0);
  let ew = exponent_of(w);
  return select((w * pow2(-ew)) * term_mean_in(t, fine, v - ew - P.wmean_e[k]), vec2<f32>(0.0), none);
}
