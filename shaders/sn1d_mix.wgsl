// sn1d_mix.wgsl: the mix of one element's LN and BN statistics for layout "1d", anchored at the
// term of the larger mean weight (included after common.wgsl; not a shader on its own). Every
// pass of layout "1d" that forms an element's mixed mean (the forward's y, the backward's
// element terms and dx) goes through these, so that they agree bit for bit.
//
// A mix keeps its mean as hi + lo with hi one term's hi and lo = sum_k wmean_k (mu_k - hi), so
// lo rounds to the ulp of (1 - w_hi) |mu_other - hi|. Since sn_group_stats writes a group's
// mean re-centred (hi = f32(mu)), anchoring at LN put hi at the sample's mean, far from the mix's
// where BN carries the weight and one column dominates the sample (a column of 1e7 or 6e26 among
// columns of -1e4, mean logits (0, 22)): x - hi - lo of the ordinary columns came out exactly 0
// (y = beta, dgamma 0, the var_weight gradient 1e-10 where the reference has 6e-3). Anchored at
// the heavier term, lo's rounding is that of the lighter term's share. Ties (equal weights: the
// default logits) keep LN first, as before; the variances add the same two products either way.

// Whether BN's mean weight is the larger (a uniform: every element takes the same order).
// (A weight below float32's normal range has a larger exponent factor apart, Params.wmean_e.)
fn bn_anchors() -> bool {
  let e0 = P.wmean_e[0];
  let e1 = P.wmean_e[1];
  return select(P.wmean[1] > P.wmean[0], e1 > e0, e0 != e1);
}

// The unscaled mix of LN and BN (mix_first_hot then mix_add_hot), anchored at the heavier term:
// the per-element hot passes' (a call with a weight below float32's normal range writes every
// element again in the wide passes, P_TINY_WEIGHTS).
fn mix_1d(ln: Group, bn: Group) -> Mixed {
  let b = bn_anchors();
  let m = mix_first_hot(select(0u, 1u, b), select(ln.hi, bn.hi, b), select(ln.lo, bn.lo, b), select(ln.variance, bn.variance, b), select(ln.flags, bn.flags, b));
  return mix_add_hot(m, select(1u, 0u, b), select(bn.hi, ln.hi, b), select(bn.lo, ln.lo, b), select(bn.variance, ln.variance, b), select(bn.flags, ln.flags, b));
}

// mix_1d with every weight's exponent factors (mix_first, mix_add): the wide passes'.
fn mix_1d_wide(ln: Group, bn: Group) -> Mixed {
  let b = bn_anchors();
  let m = mix_first(select(0u, 1u, b), select(ln.hi, bn.hi, b), select(ln.lo, bn.lo, b), select(ln.variance, bn.variance, b), select(ln.flags, bn.flags, b));
  return mix_add(m, select(1u, 0u, b), select(bn.hi, ln.hi, b), select(bn.lo, ln.lo, b), select(bn.variance, ln.variance, b), select(bn.flags, ln.flags, b));
}

// wide_map of (LN, BN), its mean re-anchored at BN where BN is the heavier (wide_map anchors at
// its first term; the same exact powers of two bring each term to the unit 2^e). Selected, not
// branched on (see sn_mix.wgsl).
fn wide_map_1d(ln: Group, bn: Group, gamma: f32, beta: f32) -> WideMap {
  var w = wide_map(group_term(ln), group_term(bn), Term(0.0, 0.0, 0.0, 0u), gamma, beta);
  let u = units_1d(ln, bn, w.e);
  let hi = unit_shift(bn.hi, u.y);
  let lo = weighted_mean(1u, P.wmean[1] * bn.lo * pow2(u.y)) + weighted_mean(0u, P.wmean[0] * ((unit_shift(ln.hi, u.x) - hi) + ln.lo * pow2(u.x)));
  let b = bn_anchors();
  w.hi = select(w.hi, hi, b);
  w.lo = select(w.lo, lo, b);
  return w;
}

// The elements of a listed group g (an LN group g < N: sample g's C elements; a BN group
// N + c: channel c's elements) within the window [first, end) of the elements, for the passes
// that write a listed group's elements again (sn1d_wide_normalize, sn1d_bwd_wide_dx): members
// j in [span.x, span.y), each the element (n, c) = group_member(g, j).
fn group_span(g: u32, first: u32, end: u32) -> vec2<u32> {
  if (g < P.n) {
    return vec2<u32>(0u, P.c);
  }
  return vec2<u32>(first / P.c, min((end + P.c - 1u) / P.c, P.n));
}

fn group_member(g: u32, j: u32) -> vec2<u32> {
  return select(vec2<u32>(j, g - P.n), vec2<u32>(g, j), g < P.n);
}

// The units of LN's and BN's terms in the unit 2^e of a wide mix (wide_map_1d's): 2^u.x and
// 2^u.y, LN's mean of weight 0 brought to 0 first, as in wide_map (zero_weight_exp: 0 * Inf was
// NaN; only where LN is the lighter term: a weight of 0 never anchors).
fn units_1d(ln: Group, bn: Group, e: i32) -> vec2<i32> {
  return vec2<i32>(unit_of(ln.flags) - e + zero_weight_exp(P_ZERO_WMEAN), unit_of(bn.flags) - e);
}

// x - mu from the terms as exact pairs, LN's and BN's taken in the units 2^u.x and 2^u.y of the
// mix (units_1d in a wide map's unit 2^e; 0, 0 for the hot pass's real units), hi the anchor's
// mean there (the mix's hi) and xs x there. The mix's single float32 lo = w_o ((hi_o - hi) +
// lo_o) + w_a lo_a rounds to its own ulp (and to the weight's float32 rounding times hi_o - hi),
// which is of the size of x - mu where the lighter term's mean lies far from the anchor's and x
// near the mix's. Wide (sn1d_wide_normalize): equal weights over LN means of -2e38 and a
// `running_mean` of 1: lo ~1e38 lost LN's low word, x - mu 0 for 1.7e30, y = beta for -1.7e22
// (attack fuzzer seed 6780, tests/far_anchor_mean_test.ts). Hot (sn1d_normalize): equal weights
// over an LN mean of 3.3e9 and a `running_mean` of 1 under a std of 1e-15, x - mu -32.5 came
// out 0 (y = beta for -3.25e6, attack fuzzer seed 33003, tests/sn1d_hot_cancel_test.ts). The
// callers take it where (x - hi) - lo cancels (those elements only). (The weights' exponent
// factors, weighted_mean, are 1 wherever the hot pass's y stands: a call with a weight below
// float32's normal range has every element written again by the wide pass, P_TINY_WEIGHTS.)
fn d_pairs_1d(ln: Group, bn: Group, u: vec2<i32>, hi: f32, xs: f32) -> f32 {
  let b = bn_anchors();
  let ka = select(0u, 1u, b);
  let ko = 1u - ka;
  // The other term's mean and lo, and the anchor's lo, in the mix's unit.
  let ho = select(unit_shift(bn.hi, u.y), unit_shift(ln.hi, u.x), b);
  let lo_o = select(bn.lo * pow2(u.y), ln.lo * pow2(u.x), b);
  let lo_a = select(ln.lo * pow2(u.x), bn.lo * pow2(u.y), b);
  let diff = two_sum(ho, -hi);
  let p = weight_times(P.wmean[ko], diff.x);
  let px = weighted_mean(ko, p.x);
  let py = weighted_mean(ko, p.y);
  // With the lighter weight's rest beyond its float32 rounding (wmean_lo, as wide_lo_pair takes
  // it): that rounding, ~2^-25 of the weight, times the anchor's distance from the other mean was
  // of x - mu's size near the mix's mean.
  let rest = weighted_mean(ko, P.wmean[ko] * (diff.y + lo_o) + P.wmean_lo[ko] * diff.x) +
    weighted_mean(ka, P.wmean[ka] * lo_a);
  let xd = two_sum(xs, -hi);
  let s = two_sum(xd.x, -px);
  return s.x + ((s.y - py) + (xd.y - rest));
}
