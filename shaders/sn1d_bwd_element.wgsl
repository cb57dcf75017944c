// sn1d_bwd_element.wgsl: one element's gradient terms for layout "1d" (sn1d_bwd_reduce,
// sn1d_bwd_wide_reduce; included after common.wgsl, backward_common.wgsl, pair.wgsl and
// sn1d_mix.wgsl, with their `groups` and `affine` bindings). Not a shader on its own.

// Whether an element needs wide_element: its LN or BN statistics are scaled (F_SCALED), its
// |dy| passes DY_MAX or lies below 2^-102 (dy_is_wide), its gamma / std is factor-wide
// (common.wgsl), a mixing weight is below float32's normal range (P_TINY_WEIGHTS: x - mu can
// then be ~1e21 stds, and gv ~ s^2 xhat dy pass float32), or s^2 gamma dy lies below float32's
// normal range (gv_is_tiny), or the hot mix's var + eps lies below 2^-102
// (mix_var_near_subnormal: its products flushed, s NaN or coarse where the reference's is
// finite), or the LN or BN mean has a word below 2^-100 (mean_near_subnormal).
// sn1d_bwd_reduce tests the first two per element (element_is_wide_hot), the third and fourth
// per tile column, the fifth per element (element_hot_tested), the sixth by its bounds per
// tile row and column (term_var_near_subnormal) and the last per tile row and column.
fn element_is_wide(ln: Group, bn: Group, c: u32, d: f32) -> bool {
  let m = mix_add(mix_first(0u, ln.hi, ln.lo, ln.variance, ln.flags), 1u, bn.hi, bn.lo, bn.variance, bn.flags);
  let gamma = affine[c];
  return is_scaled(ln.flags | bn.flags) || dy_is_wide(d) || factor_wide(gamma, m.variance + P.eps) ||
    (P.flags & P_TINY_WEIGHTS) != 0u || gv_is_tiny(inv_std(mix_1d(ln, bn)), gamma, d) ||
    (mix_var_near_subnormal(mix_1d(ln, bn)) & ((m.flags & F_CLASS) == 0u)) ||
    mean_near_subnormal(ln) || mean_near_subnormal(bn);
}

// Whether a group's mean hi + lo has a nonzero word below 2^-100 (by bits: subnormal words
// too). element_row_pair forms the mean dots' mu_LN - mu_BN from the words in the unit 1, where
// means of ~1e-38 (or words that far below their mean) differ by a subnormal, which a GPU that
// flushes (NVIDIA, SwiftShader) makes 0: an evaluation of rows [1, -1, 1.5e-38] (LN means
// ~5e-39 beside a running_mean of 0) under gamma 1e20 gave `mean_weight`'s gradient 0 for
// -+3.4e-19 (3.2e3x its tolerance; tests/sn1d_flushed_pair_mean_test.ts). Two words at 2^-100
// or above (or 0) differ by 0 or by at least 2^-123, a normal float32. Such an element takes
// wide_element, whose centred means are lifted (centred_lift, backward_common.wgsl).
fn mean_near_subnormal(g: Group) -> bool {
  let h = bitcast<u32>(g.hi) & 0x7fffffffu;
  let l = bitcast<u32>(g.lo) & 0x7fffffffu;
  return (h - 1u < 0x0d7fffffu) || (l - 1u < 0x0d7fffffu) || g.fine != 0.0;
}

// A group's mean in the unit 2^FINE_MEAN_UNIT as a pair: its fine word (and rest) where it has
// one, else its words by their bits (exact; words beyond 2^100 there are not taken: fine_ok).
fn fine_mean_1d(g: Group) -> vec2<f32> {
  let u = unit_of(g.flags) - FINE_MEAN_UNIT;
  return select(vec2<f32>(scale2(g.hi, u), scale2(g.lo, u)), vec2<f32>(g.fine, g.fine_rest), g.fine != 0.0);
}

// Whether a group's mean goes into centred_1d_fine: by its fine word, or words within 2^100 of the
// unit 2^FINE_MEAN_UNIT (means of 2^36 or less: the centred means stay within float32).
fn fine_ok(g: Group) -> bool {
  let e = max(finite_exponent_of(g.hi), finite_exponent_of(g.lo)) + unit_of(g.flags) - FINE_MEAN_UNIT;
  return g.fine != 0.0 || (e <= 100 && class_bits(g.hi) == 0u && class_bits(g.lo) == 0u);
}

// The centred means (mu_LN - mu, mu_BN - mu, 0, mu) in the unit 2^FINE_MEAN_UNIT, where the LN
// or BN mean has a fine word (sn1d_stats, sn_group_stats: a mean below 2^-100, which a GPU that
// flushes subnormals may hold as 0 in its words): the mix's mean mu from the terms' fine means
// and weights (a running mean of weight 0 counts as 0, as wide_centred_lifted has it).
fn centred_1d_fine(ln: Group, bn: Group) -> vec4<f32> {
  let m0 = fine_mean_1d(ln);
  let m1 = select(fine_mean_1d(bn), vec2<f32>(0.0), (P.wmean[1] == 0.0) & ((bn.flags & F_RUNNING) != 0u));
  let mu = weighted_mean(0u, P.wmean[0] * m0.x) + weighted_mean(1u, P.wmean[1] * m1.x) +
    (weighted_mean(0u, P.wmean[0] * m0.y) + weighted_mean(1u, P.wmean[1] * m1.y));
  let c0 = select((m0.x - mu) + m0.y, 0.0, (P.wmean[0] == 0.0) & ((ln.flags & F_RUNNING) != 0u));
  return vec4<f32>(c0, (m1.x - mu) + m1.y, 0.0, mu);
}

// gv = -0.5 s^2 gamma dy xhat, whose products with the variances (~1 / s^2) are of the size of
// gamma dy: where q = s^2 gamma dy falls below 2^-120 (float32 keeps few of its bits from 2^-126
// on, and GPUs may flush it to 0) while gamma dy is not 0, those products lose it (samples of
// std 1e12 under gamma 1e-6 with dy 1e-15: q ~ 1e-45, `var_weight`'s gradient 960x and dx 2000x
// their tolerance); wide_element keeps s, gamma and dy apart as mantissas and exponents. So does
// s^2 gamma, the step gv_factor forms q by, below 2^-120 while dy brings q back (s^2 ~1e-20
// under gamma 1e-24: 1e-44, a subnormal of three bits, times dy 1e8: dx 34x its tolerance,
// tests/gv_steps_range_test.ts; the steps of layout "nd", steps_wide in sn_bwd_rows.wgsl).
fn gv_is_tiny(s: f32, gamma: f32, d: f32) -> bool {
  let q = gv_factor(s, gamma, d);
  return (abs(q) < 0x1p-120f || abs((s * s) * gamma) < 0x1p-120f) && gamma != 0.0 && d != 0.0;
}

// q = s^2 gamma dy, gv's factor besides -0.5 xhat (element_hot_tested forms gv from it).
fn gv_factor(s: f32, gamma: f32, d: f32) -> f32 {
  return (s * s) * gamma * d;
}

// An in-range element's gradient terms, and whether it needs wide_element after all
// (gv_is_tiny; the reduce lists its line for sn1d_bwd_wide_reduce).
struct HotGrad {
  g: Grad,
  wide: bool,
}

fn element_hot_tested(ln: Group, bn: Group, c: u32, xv: f32, d: f32) -> HotGrad {
  let m = mix_1d(ln, bn);
  if (mixed_bad(m)) {
    return HotGrad(grad(vec4<f32>(0.0, 0.0, 0.0, d), vec4<f32>(0.0), vec4<f32>(0.0), G_BAD, 0), false);
  }
  let s = inv_std(m);
  let gamma = affine[c];
  let xh = ((xv - m.hi) - m.lo) * s;
  let gm = -s * gamma * d;
  // gv as -0.5 (s s) gamma d xh (the factor -0.5 is exact).
  let q = gv_factor(s, gamma, d);
  let gv = -0.5 * q * xh;
  let a = vec4<f32>(gm * centred(m, ln.hi, ln.lo), gm * centred(m, bn.hi, bn.lo), 0.0, gm * (m.hi + m.lo));
  let b = vec4<f32>(gv * (ln.variance - m.variance), gv * (bn.variance - m.variance), 0.0, gv * m.variance);
  return HotGrad(grad(vec4<f32>(gm, gv, d * xh, d), a, b, 0u, 0), gv_is_tiny(s, gamma, d));
}

// Pair elements. Under dy with a mean (y.sum(): every element's dL/dmu is ~gamma / std) the
// logit gradients are small differences of terms ~N C gamma / std times the features' spread:
// (dL/dlogit_LN - dL/dlogit_BN) ~ sum gm (mu_LN - mu_BN). float32 per-element work is ~6e-8 of
// each term off, and part of it is the same for many elements (eps added to a mixed variance
// rounds alike for every variance of a binade; x - mu drops the same bits of mu for every x of
// a binade), so the sums missed by far more than their tolerance ([262144, 4] with feature
// means 0, 6.7, 13.3, 20 under dy = 1: `mean_weight`'s gradient 13x, `var_weight`'s 7x;
// dgamma under a mixing settled on BN, ~0 under dy = 1, 5.8x at [65536, 8]). So a row line
// (whose sums give the dot products) forms each element's dots in loose float32 pairs
// (pair.wgsl: ~2^-33 relative per operation, a third of the work of exact pairs), and a column
// line (whose sums give dgamma) its dgamma:
//   v = wvar_LN var_LN + wvar_BN var_BN + eps,  mu = wmean_LN mu_LN + wmean_BN mu_BN  (pairs,
//   the weights and eps as pairs: Params' *_lo; mu about its anchor, PairPart),
//   s = 1 / sqrt(v)  (loose_rsqrt),
//   xhat = s (x - mu),  gm = -s gamma dy,  gv = -0.5 s^2 gamma dy xhat,
//   a = gm (mu_LN - mu_BN),  b = gv (var_LN - var_BN)  (dots centred at BN: their BN terms 0),
//   dgamma = dy xhat.
// The lines sum them as pairs (grad_add_plain: a.x, b.x with their low words in a.z, b.z,
// unused in layout "1d", which has no IN term; dgamma with Grad.low), and the CPU adds both
// words (backends/_webgpu_grad_sums.ts); a.w, b.w hold the BN terms gm mu_BN, gv var_BN, which
// cancel in the softmax's Jacobian (their float32 rounding with them). The two sides of each mix are formed once per tile row and
// column (ln_pair_part, bn_pair_part). An element whose pair terms are not finite (an infinite
// or NaN dy) keeps element_hot_tested's float32 terms, IEEE's as the reference's.

// One side of an element's mix as pairs: v its share of the mixed variance (wvar_LN var_LN;
// BN's with eps), mu its mean, wmu its mean times the mean weight of the term the mix is not
// anchored at (sn1d_mix.wgsl: bn_anchors). The mixed mean is taken as x - mu = (x - mu_a) -
// (w_o mu_o - w_o mu_a), a the anchor, o the other term: formed from w_LN mu_LN + w_BN mu_BN, a
// mean of 1e6 kept only ~2^-46 of itself (~1e-8) in x - mu, which dgamma on a mixing settled
// on BN under dy = 1 multiplies by N ([65536, 8] at an offset of 1e6: 1.8x its tolerance; attack
// helper-66); here the shift w_o (mu_o - mu_a) is small where the mixing settled.
struct PairPart {
  vm: vec4<f32>, // (v, mu)
  wmu: vec2<f32>,
}

// The mean weight of the term the mix is not anchored at.
fn other_weight() -> u32 {
  return select(1u, 0u, bn_anchors());
}

fn ln_pair_part(ln: Group) -> PairPart {
  let mu = vec2<f32>(ln.hi, ln.lo);
  let v = pair_weighted_var(0u, vec2<f32>(ln.variance, ln.var_lo));
  return PairPart(vec4<f32>(v, mu), pair_weighted_mean(other_weight(), mu));
}

fn bn_pair_part(bn: Group) -> PairPart {
  let mu = vec2<f32>(bn.hi, bn.lo);
  let v = pair_sum(pair_weighted_var(1u, vec2<f32>(bn.variance, bn.var_lo)), vec2<f32>(P.eps, P.eps_lo));
  return PairPart(vec4<f32>(v, mu), pair_weighted_mean(other_weight(), mu));
}

// An element's s and xhat as loose pairs (pair.wgsl), from its mix's sides.
struct PairScale {
  s: vec2<f32>,
  xh: vec2<f32>,
}

fn pair_scale(xv: f32, lp: PairPart, bp: PairPart) -> PairScale {
  let s = loose_rsqrt(loose_add(lp.vm.xy, bp.vm.xy));
  let b = bn_anchors();
  let mu_a = select(lp.vm.zw, bp.vm.zw, b);
  let shift = select(loose_sub(bp.wmu, lp.wmu), loose_sub(lp.wmu, bp.wmu), b);
  let xc = loose_sub(loose_sub(vec2<f32>(xv, 0.0), mu_a), shift);
  return PairScale(s, loose_mul(s, xc));
}

fn pair_finite(p: vec2<f32>) -> bool {
  return is_finite_bits(p.x) && is_finite_bits(p.y);
}

// A row line's element: element_hot_tested's, its dot products as loose pairs (above).
fn element_row_pair(ln: Group, bn: Group, c: u32, xv: f32, d: f32, lp: PairPart, bp: PairPart) -> HotGrad {
  let h = element_hot_tested(ln, bn, c, xv, d);
  let ps = pair_scale(xv, lp, bp);
  // gamma dy 2^k (pair_lift): the loose products below keep words down to ~2^-33 of each
  // factor, which flush where gamma dy, gm = -s gamma dy or s^2 gamma dy lie near float32's
  // subnormal range while the dots gm (mu_LN - mu_BN), gv (var_LN - var_BN) do not (an
  // evaluation of x ~1e12 under a variance weight of 4e-18, gamma 1e-28: s^2 gamma dy ~5e-35,
  // `var_weight`'s gradient 3.7e-4 off where the words flushed, tests/sn1d_eval_quantized_dx_test.ts).
  // The dots are taken back by 2^-k; exact powers of two (k = 0 elsewhere: the same bits).
  // (The lesser of gamma and dy is lifted.)
  let k = pair_lift(affine[c], d, ps.s.x);
  let lift = pow2(k);
  let d_low = exponent_of(d) < exponent_of(affine[c]);
  let gd = loose_times(select(affine[c] * lift, affine[c], d_low), select(d, d * lift, d_low));
  let gm = -loose_mul(ps.s, gd);
  let gv = loose_mul(loose_mul(loose_mul(ps.s, ps.s), gd), ps.xh) * -0.5;
  let back = pow2(-k);
  let a = loose_normal(loose_mul(gm, loose_sub(lp.vm.zw, bp.vm.zw))) * back;
  let b = loose_normal(loose_mul(gv, loose_sub(vec2<f32>(ln.variance, ln.var_lo), vec2<f32>(bn.variance, bn.var_lo)))) * back;
  let aw = gm.x * (bn.hi + bn.lo) * back;
  let bw = gv.x * (bn.variance + bn.var_lo) * back;
  // (a or b is not finite wherever gm or gv is not.) Where x, dy and the statistics are finite,
  // a dot product beyond float32's range goes to wide_element, whose dots take units of their
  // own: gv ~ gamma s^2 dy xhat times a variance far above the mixed one (a term of variance
  // weight ~5e-25, LN's 3.5e7 beside a running_var of 2.7e-10 under gamma 2e17: gv 2.6e34, its
  // dot 9e41) overflowed, and the logit gradients came out NaN and +Infinity for -+5.3e28
  // (tests/fuzz/sn1d_webgpu.ts --wide seed 845; tests/range_1d_test.ts). Only this branch,
  // which finite dots never take, tests it.
  let finite = pair_finite(a) && pair_finite(b) && is_finite_bits(aw) && is_finite_bits(bw);
  if (h.g.flags != 0u || !finite) {
    let overflow = h.g.flags == 0u && is_finite_bits(xv) && is_finite_bits(d);
    return HotGrad(h.g, h.wide || overflow);
  }
  // (gm and gv themselves, which dx takes, as the float32 path forms them: dx of rows whose
  // terms cancel to float32's residue kept its bits.)
  let g = grad(h.g.s, vec4<f32>(a.x, 0.0, a.y, aw), vec4<f32>(b.x, 0.0, b.y, bw), 0u, 0);
  return HotGrad(g, h.wide);
}

// The exponent k of element_row_pair's lift: 0 where gamma dy, s gamma dy and s^2 gamma dy
// (exponents from their factors' fields) all lie at 2^-60 or above, else what brings the least
// of them there, up to 2^126. A lifted dot that passes float32's range goes to wide_element, as
// any dot there does.
fn pair_lift(gamma: f32, d: f32, s: f32) -> i32 {
  let lo = exponent_of(gamma) + exponent_of(d) + min(0, 2 * exponent_of(s));
  return clamp(-60 - lo, 0, 126);
}

// A column line's element: element_hot_tested's, dgamma as a loose pair (above; its dot
// products, which only the row lines' sums carry, 0).
fn element_col_pair(ln: Group, bn: Group, c: u32, xv: f32, d: f32, lp: PairPart, bp: PairPart) -> HotGrad {
  let h = element_hot_tested(ln, bn, c, xv, d);
  let ps = pair_scale(xv, lp, bp);
  // As a float32 pair: a sum with a wide element (grad_add_scaled) keeps the high word alone.
  // dy here lies at 2^-102 or above (below, dy_is_low makes the element wide), so loose_times'
  // 12-bit parts of dy stay normal on a GPU that flushes (tiny products sweep seed 1112: dy
  // -4.3e-37, whose low part flushed before dy_is_low).
  let dg = loose_normal(loose_mul(ps.xh, vec2<f32>(d, 0.0)));
  if (h.g.flags != 0u || !pair_finite(dg)) {
    return HotGrad(grad(h.g.s, vec4<f32>(0.0), vec4<f32>(0.0), h.g.flags, 0), h.wide);
  }
  let g = Grad(vec4<f32>(h.g.s.xy, dg.x, d), vec4<f32>(0.0), vec4<f32>(0.0), 0u, 0, 0, bitcast<u32>(dg.y));
  return HotGrad(g, h.wide);
}

// Whether a tile line's sums g could pass float32's range where sn_bwd_groups adds the lines of
// its group (a column's ceil(N / 32) row tiles, a row's P.chunks column tiles: up to
// 2^lines_lg of them), or passed it already (a field not finite). Each element's terms fit
// float32, their float32 sums need not: an evaluation on a running_var of 1 under a variance
// weight of 2^-100 beside samples of 0 variance (s 2^50) and x 2^38 gives dy xhat ~8.5e37 an
// element, five of one sign and four of the other in a column: dgamma +Infinity where the
// reference has 8.5e37; a sample of eight channels of gv ~8.5e37, four of each sign: var_weight's
// gradient and every dx of the sample NaN (tests/channel_sum_range_test.ts). Such a line is
// listed, and sn1d_bwd_wide_reduce sums it again of wide elements, whose records carry
// exponents. A line's fields each below 2^(126 - lines_lg) sum to below 2^126 over its group.
// By bits, once per line: lines of ordinary data stay far below the bound.
fn line_sums_wide(g: Grad) -> bool {
  return line_top(g) >= (127u + line_bound()) << 23u;
}

// The exponent 126 - lines_lg of line_sums_wide's bound.
fn line_bound() -> u32 {
  let lines = max(max((P.n + TILE_1D - 1u) / TILE_1D, P.chunks), 1u);
  return 126u - (32u - countLeadingZeros(lines - 1u));
}

// The largest |field| of a Grad's s, a and b by their bits (a NaN's or an infinity's included).
fn line_top(g: Grad) -> u32 {
  let mask = vec4<u32>(0x7fffffffu);
  let bits = max(max(bitcast<vec4<u32>>(g.s) & mask, bitcast<vec4<u32>>(g.a) & mask), bitcast<vec4<u32>>(g.b) & mask);
  return max(max(bits.x, bits.y), max(bits.z, bits.w));
}

// Whether sn1d_bwd_wide_reduce sums a line g (of element's terms) again of wide elements
// (element_forced): a field is not finite, or line_sums_wide holds. A line of wide elements
// carries exponents, but its plain elements' terms stay in units of 1 where no wide element's
// unit lies above them (an element of dy 0, or of an LN group scaled by x beyond 2^40 beside
// elements of dy xhat ~2^122 in the column): their sums passed float32's range in the line or
// over the group all the same. A wide element's fields lie below 2^101 in their units (its
// dots and dgamma near 2^100, wide_element), a line's below 2^106: the bound for lines with
// exponents is 2^107 at least, so that a line of wide elements alone is not summed twice.
fn line_again(g: Grad) -> bool {
  let top = line_top(g);
  let bound = select(line_bound(), max(line_bound(), 107u), grad_is_scaled(g));
  return top >= 0x7f800000u || top >= (127u + bound) << 23u;
}

// Any element of a row line (row) or a column line, wide or not (sn1d_bwd_wide_reduce); forced:
// wide_element for every element of finite x and dy (a line whose plain sums could pass
// float32's range: line_again), while an element with a NaN or infinite x or dy keeps element's
// terms, IEEE's as before. Each of wide_element and the pair terms has one call site: every call
// site is inlined whole.
fn element(n: u32, c: u32, xv: f32, d: f32, row: bool, forced: bool) -> Grad {
  let ln = groups[n - P.row_base];
  let bn = groups[P.n + c - P.stat_bn_base];
  var wide = (forced & is_finite_bits(xv) & is_finite_bits(d)) | element_is_wide(ln, bn, c, d);
  var g = grad_zero();
  if (!wide) {
    if (row) {
      // (A row line's element whose dots leave float32's range: element_row_pair flags it wide.)
      let h = element_row_pair(ln, bn, c, xv, d, ln_pair_part(ln), bn_pair_part(bn));
      wide = h.wide;
      g = h.g;
    } else {
      g = element_col_pair(ln, bn, c, xv, d, ln_pair_part(ln), bn_pair_part(bn)).g;
    }
  }
  if (wide) {
    g = wide_element(ln, bn, c, xv, d);
  }
  return g;
}

// var_diffs of a wide element's LN and BN terms, the differences var_LN - var and var_BN - var
// (var the mix's, without eps) formed as w_BN (V_LN - V_BN) and w_LN (V_BN - V_LN) from the
// groups' variance pairs (variance + var_lo, as pair_element's gv dot takes them), not as
// differences of float32 words: where LN's and BN's variances nearly coincide, an ulp of either
// word (f32(M2 / count) under NVIDIA's division, sn1d_wide_var_pairs_test; M2 summed with fused
// multiply-adds, wasm_precision_test's seed 18558 on an H100 and under tests/_nvidia_fma.ts) is
// a large part of their difference: `var_weight`'s gradient 460x and 5.7x its tolerance. With
// float32 weights the form is exact to ~1e-7 of the difference, as the reference's sum of the
// weights is 1. A term of variance weight 0 counts as var_diffs has it (its variance 0, its
// weight 0).
fn var_diffs_1d(ln: Group, bn: Group, e: i32) -> VarDiffs {
  let t_ln = group_term(ln);
  let t_bn = group_term(bn);
  let vd = var_diffs(t_ln, t_bn, Term(0.0, 0.0, 0.0, 0u), e, 0);
  let s_ln = 2 * (var_unit(t_ln.flags) - vd.u) + 4 * zero_weight_exp(P_ZERO_WVAR);
  let s_bn = 2 * (var_unit(t_bn.flags) - vd.u) + 4 * zero_weight_exp(P_ZERO_WVAR + 1u);
  let a = two_sum(scale2(ln.variance, s_ln), -scale2(bn.variance, s_bn));
  let diff = pair_add(a, scale2(ln.var_lo, s_ln) - scale2(bn.var_lo, s_bn));
  let dd = diff.x + diff.y;
  let d = vec2<f32>(weighted_var(1u, P.wvar.y * dd), weighted_var(0u, P.wvar.x * -dd));
  // (Where the pairs' difference is not finite, the words' differences as before.)
  let ok = is_finite_bits(dd);
  return VarDiffs(vec4<f32>(select(vd.d.xy, d, ok), vd.d.zw), vd.u);
}

fn wide_element(ln: Group, bn: Group, c: u32, xv: f32, dv: f32) -> Grad {
  let t_ln = group_term(ln);
  let t_bn = group_term(bn);
  var w: WideMap;
  let m = mix_1d_wide(ln, bn);
  if (is_scaled(ln.flags | bn.flags) || mix_var_near_subnormal(m)) {
    w = wide_map_1d(ln, bn, 1.0, 0.0);
  } else {
    w = WideMap(m.hi, m.lo, m.variance, inv_std(m), 0.0, 0, mixed_bad(m), false, 0);
  }
  let d_unit = dy_unit_1d(dv);
  let d = scale2(dv, -d_unit);
  if (w.bad) {
    return grad_dy_unit(vec4<f32>(0.0, 0.0, 0.0, d), vec4<f32>(0.0), vec4<f32>(0.0), g_flags(G_BAD, 0, 0, d_unit), 0, d_unit);
  }
  if (w.var_inf) {
    // s = 0: gm, gv, dgamma and the mean dots are 0, the variance dots 0 * Inf = NaN; with a
    // NaN or infinite dy, 0 * Inf: NaN as in the reference (as sn_bwd_rows' wide_row).
    let flag = select(G_VNAN, G_BAD, class_bits(d) != 0u);
    return grad_dy_unit(vec4<f32>(0.0, 0.0, 0.0, d), vec4<f32>(0.0), vec4<f32>(0.0), g_flags(flag, 0, 0, d_unit), 0, d_unit);
  }
  // gamma = gamma' 2^g apart (gamma s may pass float32's range), as grad_units
  // (backward_common.wgsl) has it, with these changes, each for values the float64 reference
  // has finite where a float32 product of the factors left float32's normal range:
  // - s, dy and x - mu are taken as mantissas and exponents (exact powers of two), so gm, gv
  //   and dgamma are mantissas of [1/2, 64) whose exponents the record's carry: gv of
  //   s ~ 4e-8 and dy ~ 3e-24 (~2e-39, flushed to 0) made dx ~270 off where the reference has
  //   ~0 (the LN terms cancel);
  // - the dots' factor 2^(g - k) is applied while they are formed (dot_scaled): in a mix whose
  //   unit eps sets (x ~ 1e-19, eps 1e-5) the variance differences are ~1e-34 in that unit and
  //   gv (var_k - var) fell below float32's normal range before gamma's 2^g (1e33) brought it
  //   back: the var_weight gradient came out 0 where the reference has ~4e20;
  // - k, the exponent of the mean dots' unit, may be negative: the largest of them is brought
  //   near 2^100, not only lowered there, so that a gamma of 1e-36 (g = -120) does not push
  //   the dots below float32's normal range (mean_weight's gradient was 25% off); down to
  //   -300 (d_unit + k stays above -511, g_flags' field, for d_unit >= -126): held at -120, a
  //   dot of ~2^-122 under a gamma of -1e-40 and dy ~2e38 (d_unit ~127) lay ~2^-130 in its
  //   unit, flushed (mean_weight's gradient 0 for 5.7e-37, corner fuzzer seed 4967).
  let g = gamma_exp(affine[c]);
  let gamma = gamma_mantissa(affine[c]);
  // s = scale 2^w.g (w.g: wide_map's sv for a std far below the mix's unit).
  let sn = scale2(w.scale, -norm_exp(w.scale));
  let es = norm_exp(w.scale) + w.g;
  let ed = norm_exp(d);
  let dn = scale2(d, -ed);
  // x - mu in the mean's own unit 2^fm.e where it lies far below the mix's (fine_mean, as
  // sn1d_wide_normalize takes it): o = fm.e - w.e apart. So too for an unscaled mix whose mean
  // lies below 2^-100 (mean_tiny: a mean weight of 8.2e-39 times a running_mean of 1 over
  // features of 0, whose x - mu in the unit 1 was 0: dgamma 0 for -2.3e-23 under s 1e15).
  let fm = fine_mean(t_ln, t_bn, Term(0.0, 0.0, 0.0, 0u), w.e, fine_words(w));
  let tm = !is_scaled(ln.flags | bn.flags) & mean_tiny(t_ln, t_bn, Term(0.0, 0.0, 0.0, 0u));
  let fine = fm.ok & (is_scaled(ln.flags | bn.flags) | tm) & (bits_exponent(xv) < fm.e + FINE_X);
  let xs = scale2(xv, -w.e);
  // Else where x and the mean's words all lie far below the mix's unit (x 2^-e below float32's
  // normal range was flushed: x ~1e-10 beside a sample's 1e28 under LN's variance, the unit
  // 2^93, gave dgamma 0 for 0.02), x - mu in a unit near the largest of them, 2^(e + o).
  let xe = select(-1000, bits_exponent(xv) - w.e, (bitcast<u32>(xv) << 1u) != 0u);
  let top = max(xe, max(exponent_of(w.hi), exponent_of(w.lo)) + 1) + 2;
  let near = !fine & is_scaled(ln.flags | bn.flags) & (top < -100) & (top > -900);
  let xn = (scale2(xv, -w.e - top) - scale2(w.hi, -top)) - scale2(w.lo, -top);
  // x alone only where it lies 2^FINE_X above the fine mean's unit (mu is then below its
  // rounding): an unscaled mix's mean of 1e-30 or 1e-20 (fm.ok, 2^60 below the unit 1, yet not
  // mean_tiny) beside x of 0 or 1e-36 took x - mu as x (an evaluation on a running_mean of 1e-20
  // under dy 1e38: dgamma 150 for -1.5e18; tests/sn1d_small_xc_test.ts).
  let x_far = bits_exponent(xv) >= fm.e + FINE_X;
  let xc = select(select(select((xs - w.hi) - w.lo, xs, fm.ok & x_far), (scale2(xv, -fm.e) - fm.hi) - fm.lo, fine), xn, near);
  let o = select(select(0, fm.e - w.e, fine), top, near);
  let ex = norm_exp(xc) + o + es;
  let xh = scale2(xc, es - ex + o) * sn; // xhat 2^-ex
  let egm = es + ed;
  let egv = 2 * es + ed + ex;
  let gm = -sn * gamma * dn; // gm 2^-egm
  let gv = -0.5 * (sn * sn) * gamma * dn * xh; // gv 2^-egv
  let dg = dn * xh; // dgamma 2^-(ed + ex)
  // The centred means in the unit 2^(w.e - lc) (centred_lift: 0 but for means near float32's
  // subnormal range in the mix's unit; the dots are taken back by 2^-lc): an evaluation of rows
  // of ~2e-38 beside a running_mean of 3e-38 under a running_var of 1.5e38 had LN's and BN's
  // mean differences ~5e-39, subnormal, which dot_scaled took as 0: `mean_weight`'s gradient 0
  // for -+6.8e-20 (flushed_mean_probe 991; tests/sn1d_subnormal_centred_test.ts).
  // Where the LN or BN mean has a fine word (both within range there: fine_ok), the centred
  // means in the unit 2^FINE_MEAN_UNIT (centred_1d_fine), lc = w.e - FINE_MEAN_UNIT.
  let fc = (ln.fine != 0.0 || bn.fine != 0.0) && fine_ok(ln) && fine_ok(bn);
  let lw = centred_lift(t_ln, t_bn, w);
  var ca = vec4<f32>(wide_centred_lifted(t_ln, w, 0u, lw), wide_centred_lifted(t_bn, w, 1u, lw), 0.0,
    lifted_word(w.hi, lw) + lifted_word(w.lo, lw));
  let lc = select(lw, w.e - FINE_MEAN_UNIT, fc);
  if (fc) {
    ca = centred_1d_fine(ln, bn);
  }
  // The variance differences in a unit of their own, 2^(2 vd.u) (var_diffs_1d): kv = 2 (vd.u - e).
  let vd = var_diffs_1d(ln, bn, w.e);
  let vb = vec4<f32>(vd.d.x, vd.d.y, 0.0, vd.d.w);
  let kv = 2 * (vd.u - w.e);
  // The dots' exponents from their factors' (a product of normal floats has the exponent sum
  // or one more; an underflowed product would not show its size).
  let ea = egm + finite_exponent_of(gm) + max(max(finite_exponent_of(ca.x), finite_exponent_of(ca.y)), finite_exponent_of(ca.w)) - lc;
  let eb = egv + kv + finite_exponent_of(gv) + max(max(finite_exponent_of(vb.x), finite_exponent_of(vb.y)), finite_exponent_of(vb.w));
  let ezw = ed + ex + finite_exponent_of(dg); // (dbeta stays in the unit of dy: Grad's spare)
  let k = max(ea + 1 + g - 100, -300);
  // The variance dots in a unit 2^(d_unit + kb2) of their own (Grad's eb), and dgamma and dbeta
  // in one of 2^(d_unit + kc) (Grad's ec), by the same rule.
  let kb2 = select(k, max(eb + 1 + g - 100, -400), eb > -1000);
  // (kc as low as -300, as k: held at -120, a dgamma of ~2^-248 in dy's unit under dy ~3e38
  // lay below 2^-126 there and flushed: dgamma 0 for -1.1e-36 in an evaluation of x - mu ~2^-184
  // over a running_var of 3e38, tests/sn1d_small_xc_test.ts.)
  let kc = max(ezw - 100, -300);
  let s4 = vec4<f32>(gm, gv, scale2(dg, ed + ex - kc), d);
  let ka = g - k + egm - lc;
  let kb = g - kb2 + egv + kv;
  let a = vec4<f32>(dot_scaled(gm, ca.x, ka), dot_scaled(gm, ca.y, ka), 0.0, dot_scaled(gm, ca.w, ka));
  let b = vec4<f32>(dot_scaled(gv, vb.x, kb), dot_scaled(gv, vb.y, kb), 0.0, dot_scaled(gv, vb.w, kb));
  let e0 = d_unit - w.e + g + egm;
  let e1 = d_unit - 2 * w.e + g + egv;
  let flags = g_flags(0u, e0, e1, d_unit + k);
  return grad_dy_unit(s4, a, b, flags, pack_units(d_unit + kb2 - g_exp(flags, 2u), d_unit + kc - g_exp(flags, 2u)), d_unit);
}

// p q 2^k for a dot term (|p q 2^k| stays below ~2^101, see wide_element): the product first
// where it is a finite float32 well above its subnormal range (and NaN and the infinities of
// non-finite factors, as the product makes them), else from the factors' mantissas and
// exponents (exact powers of two), so that a product below 2^-100 keeps its value where 2^k
// brings it back into range, and one beyond float32 where 2^k brings it down (gm of a gamma
// normalized from 2^-129 times a mean difference of 3e38: corner fuzzer seed 197, NaN for
// Infinity). A zero or subnormal factor gives 0 (the dot's size estimate in wide_element counts
// it as 0 too).
fn dot_scaled(p: f32, q: f32, k: i32) -> f32 {
  let t = p * q;
  if ((exponent_of(t) > -100 && class_bits(t) == 0u) || (class_bits(p) | class_bits(q)) != 0u) {
    return scale2(t, k);
  }
  let pe = exponent_of(p);
  let qe = exponent_of(q);
  if (pe == -1000 || qe == -1000) {
    return 0.0;
  }
  return scale2(scale2(p, -pe) * scale2(q, -qe), pe + qe + k);
}

fn element_is_wide_hot(ln: Group, bn: Group, d: f32) -> bool {
  return is_scaled(ln.flags | bn.flags) || dy_is_wide(d);
}

// Whether dy needs units of its own: |dy| beyond DY_MAX (dy_is_big), or below 2^-102
// (dy_is_low), subnormal ones included, which GPUs may flush to 0 in arithmetic (dy ~ 1e-40 with
// gamma / std ~ 1e46 gives a dx of ~1e6). By bits, two unsigned comparisons.
fn dy_is_wide(d: f32) -> bool {
  return dy_is_big(d) || dy_is_low(d);
}

// 0 < |dy| < 2^-102 (by bits): the float32 sums of such dy in units of 1 (dbeta, and the sums
// of gm = -s gamma dy) fall below float32's normal range where they cancel, which a GPU that
// flushes subnormals (NVIDIA, SwiftShader) makes 0: a column of dy ~1e-37 in pairs X, -X + 5e-39
// summed to dbeta 0 for 7.5e-37 ([300, 2]; lavapipe keeps them), and a subnormal dy beside them
// is flushed outright. Such an element takes wide_element, its dy in the unit 2^-126
// (dy_unit_1d), where every sum of them stays normal (as layout "nd"'s sn_bwd_reduce lists a
// segment whose largest |dy| lies below 2^-102, s1_low).
fn dy_is_low(d: f32) -> bool {
  return (bitcast<u32>(d) & 0x7fffffffu) - 1u < 0x0c7fffffu;
}

// The unit 2^D of one element's dy (dy_unit, backward_common.wgsl), and for a dy below 2^-102
// (dy_is_low: subnormal ones included) 2^-126, by bits: scale2(dy, 126) is then a normal
// float32 below 2^24.
fn dy_unit_1d(d: f32) -> i32 {
  if (dy_is_low(d)) {
    return -126;
  }
  return dy_unit(select(0.0, bitcast<f32>(bitcast<u32>(d) & 0x7fffffffu), class_bits(d) == 0u));
}

// Whether |d| passes DY_MAX and is finite (by bits): NaN and infinite dy are no reason to go
// wide (their results are IEEE's, as element_hot_tested forms them).
fn dy_is_big(d: f32) -> bool {
  // DY_MAX < |d| < Inf as one unsigned comparison (the subtraction wraps below DY_MAX).
  let lo = bitcast<u32>(DY_MAX) + 1u;
  return (bitcast<u32>(d) & 0x7fffffffu) - lo < 0x7f800000u - lo;
}
