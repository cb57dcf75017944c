// pair.wgsl: float32 hi/lo pairs (value = hi + lo), for statistics of rows longer than one
// segment, whose means and variances need more than float32's 6e-8 (the importance-logit
// gradients are differences of IN, LN and BN statistics only ~1 / sqrt(M) apart), and for the
// 1d column means, where one dominating row would otherwise swallow the rest in float32 (a
// column with one row of 1e7 among rows of ~1: its mean came out 2e-3 relative off), and for the
// backward's logit dot products and dgamma (sn_bwd_rows' pair rows, sn1d_bwd_element's pair
// elements). Included after common.wgsl (it reads P); not a shader on its own.
//
// Exact float32 arithmetic here relies only on additions (two_sum, whose result an optimiser
// cannot simplify: it goes through a factor read from the uniforms) and on products of operands
// of at most 12 significant bits (cut by masking their bit patterns), which are exact whether or
// not a compiler fuses them into an fma.

// (opaque and two_sum, the exact addition everything here builds on, and pair_add, pair_sum,
// split12 and pair_times, which the mix uses, are in common.wgsl.)

// sum + v for a running sum kept as a float32 pair: its high word by two_sum, the rounding errors
// gathered in its low word in float32 (they are small beside it: one rounding of the running sum
// each), two additions more per term than pair_add's.
// A non-finite sum (a NaN or infinite term) is its high word alone: two_sum's error of an
// infinity is NaN (Inf - Inf), which would turn an infinite sum into NaN.
fn sum_add(sum: ptr<function, vec2<f32>>, v: f32) {
  let t = two_sum((*sum).x, v);
  let finite = (bitcast<u32>(t.x) & 0x7f800000u) != 0x7f800000u;
  *sum = vec2<f32>(t.x, (*sum).y + select(0.0, t.y, finite));
}

// sum + (v.x + v.y + v.z + v.w) for a running sum as sum_add keeps it, the vec4's own sum taken
// exactly (a two_sum tree, its roundings into the low word): a float32 sum of the four rounds
// like x - K (or dy (x - c)) alike for every vec4 of a row, which a row's mean kept, and sums
// of rows that cancel (dgamma under dy = 1 and a mixing settled on BN or IN, rows of 16384)
// kept times N M: 2.2x dgamma's tolerance, ~1e-10 of the std in each row mean.
fn sum4_add(sum: ptr<function, vec2<f32>>, v: vec4<f32>) {
  let a = two_sum(v.x, v.y);
  let b = two_sum(v.z, v.w);
  let t = two_sum(a.x, b.x);
  sum_add(sum, t.x);
  let rest = (a.y + b.y) + t.y;
  let finite = (bitcast<u32>(t.x) & 0x7f800000u) != 0x7f800000u;
  (*sum).y += select(0.0, rest, finite);
}

// Two running sums of sum_add merged (as sum_add keeps them).
fn sum_merge(p: vec2<f32>, q: vec2<f32>) -> vec2<f32> {
  var s = p;
  sum_add(&s, q.x);
  return vec2<f32>(s.x, s.y + q.y);
}

// p + k * v for an integer k < 2^12 (exact products).
fn pair_add_times(p: vec2<f32>, k: f32, v: f32) -> vec2<f32> {
  let s = split12(v);
  return pair_add(pair_add(p, k * s.x), k * s.y);
}

// The low word of p / k for an integer k >= 1, given a float32 hi near it: (p - hi k) / k, the
// remainder formed exactly, so that hi + lo is p / k to ~1e-14 relative whatever hi's rounding.
fn quotient_lo(p: vec2<f32>, k: u32, hi: f32) -> f32 {
  let rem = pair_sub_times(p, k, hi);
  return fdiv_n(rem.x + rem.y, f32(k));
}

// The unbiased variance of a summary (M2 = m2_hi + m2_lo over `count` values) as a pair; hi is
// the float32 M2 / (count - 1) the other passes compute.
fn variance_pair(m2_hi: f32, m2_lo: f32, count: u32) -> vec2<f32> {
  let hi = row_variance(m2_hi, count);
  return vec2<f32>(hi, quotient_lo(vec2<f32>(m2_hi, m2_lo), max(count, 2u) - 1u, hi));
}

// Whether a row's IN variance enters sn_bwd_rows' dots (and sn_group_refine's group variances)
// as its pair (m2 + m2_lo): rows of several segments, evaluations with BN that may have summed it
// again (P_PAIRS: refine_variance), and rows whose M2 sn_group_refine summed again as a pair
// (F_M2_EXACT: members of groups alike in variance).
fn reads_var_pairs(p: Partial) -> bool {
  return P.chunks > 1u || (P.flags & P_PAIRS) != 0u || (p.flags & F_M2_EXACT) != 0u;
}

// The mean of `count` values whose sum is the pair t, as a pair (q1, q2): q1 = f32(t / count),
// q2 the rest from the exact remainder t - q1 count. q1 is corrected by the rest of a first
// quotient before q2 is formed: NVIDIA's Vulkan driver divides as t times an approximate
// reciprocal of count, whose quotient may lie an ulp or more off f32(t / count), and the pair's
// readers took q1 as the mean's float32 and q2 as the quotient of its remainder (rows of
// +-3.4e38 whose LN mean is 0, tests/wide_row_far_terms_test.ts: `mean_weight`'s gradient
// -1.9e-3 for 6.9e-19 on an H200, reproduced by tests/_nvidia_division.ts's reciprocal). Where
// the first quotient is f32(t / count) already (IEEE division), its rest stays below half its
// ulp and q1 is that quotient: the bits of a single division.
fn pair_mean(t: vec2<f32>, count: u32) -> vec2<f32> {
  let q0 = fdiv_n(t.x + t.y, f32(count));
  let r0 = pair_sub_times(t, count, q0);
  let q1 = q0 + fdiv_n(r0.x + r0.y, f32(count));
  let rem = pair_sub_times(t, count, q1);
  return vec2<f32>(q1, fdiv_n(rem.x + rem.y, f32(count)));
}

// A record's fine word (Partial.fine, Group.fine, common.wgsl) from the pair sum t of `count`
// values in the unit 2^FINE_MEAN_UNIT: their mean where `keep` holds and it is finite, else 0
// (the record's words alone then hold its mean).
fn fine_word(t: vec2<f32>, count: u32, keep: bool) -> f32 {
  let m = pair_mean(t, count);
  return select(0.0, m.x + m.y, keep && class_bits(m.x + m.y) == 0u);
}

// The sums a record's fine word is formed from, its values v added one by one (fine_sums_add;
// the record's unit is 2^-k): those at or above 2^-FINE_MEAN_BELOW of the unit summed in it
// (big), those below in the unit 2^FINE_MEAN_UNIT (fine), as in the record's unit they may flush
// (below 2^-126); each a pair renormalized at every step (pair_add). For a record whose mean
// lies below 2^-FINE_MEAN_BELOW of its unit (0 or subnormal words, as GPUs may flush them),
// fine_sums_word forms its fine word, the mean in the unit 2^FINE_MEAN_UNIT,
// (big 2^(-k - FINE_MEAN_UNIT) + fine) / count (sn_wide_stats' re-sums about 0, sn1d_wide_stats'
// lines).
struct FineSums {
  big: vec2<f32>,
  fine: vec2<f32>,
}

fn fine_sums_add(sums: ptr<function, FineSums>, v: f32, k: i32) {
  if (bits_exponent(v) + k < -FINE_MEAN_BELOW) {
    (*sums).fine = pair_add((*sums).fine, scale2(v, -FINE_MEAN_UNIT));
  } else {
    (*sums).big = pair_add((*sums).big, scale2(v, k));
  }
}

// fine_word of the sums: their mean where `keep` holds (the record's words below
// 2^-FINE_MEAN_BELOW of its unit), else 0.
fn fine_sums_word(sums: FineSums, k: i32, count: u32, keep: bool) -> f32 {
  let t = pair_sum(vec2<f32>(scale2(sums.big.x, -k - FINE_MEAN_UNIT), scale2(sums.big.y, -k - FINE_MEAN_UNIT)), sums.fine);
  return fine_word(t, count, keep);
}

// A record's M2 again in pairs, about its pair mean q (K its shift), for the low word m2_lo
// that the groups sum M2 from as pairs (sn_group_stats: var_lo), where a backward may follow:
// float32 squares and their float32 sum are ~1e-7 relative off (more where a GPU contracts
// m2 += d * d into fused multiply-adds, as NVIDIA's does), which the backward's variance dots
// gv (var_LN - var_BN) carry where LN's and BN's variances nearly coincide. Per value v:
// d = v - K - q exactly enough (two exact differences, the low words added in float32: ~2^-48
// of d), d^2 = h^2 + 2 h l + l^2 + 2 d.x d.y with h, l d.x's 12-bit parts: h^2 and 2 h l exact,
// each summed by sum_add; the small rest in float32.
struct M2Pairs {
  hh: vec2<f32>,
  hl: vec2<f32>,
  rest: f32,
}

// (By value: naga 29's SPIR-V writer panics on a pointer to a member of a pointed-to struct.)
fn m2_pairs_add(acc: M2Pairs, v: f32, shift: f32, q: vec2<f32>) -> M2Pairs {
  let e = two_sum(v, -shift);
  let dh = two_sum(e.x, -q.x);
  let dl = dh.y + (e.y - q.y);
  let h = split12(dh.x);
  var hh = acc.hh;
  var hl = acc.hl;
  sum_add(&hh, h.x * h.x);
  sum_add(&hl, 2.0 * h.x * h.y);
  return M2Pairs(hh, hl, acc.rest + (h.y * h.y + 2.0 * dh.x * dl));
}

// The pairs' M2 less the record's float32 m2: its low word m2_lo.
fn m2_pairs_lo(acc: M2Pairs, m2: f32) -> f32 {
  let m2_pair = pair_add(pair_sum(acc.hh, acc.hl), acc.rest);
  return (m2_pair.x - m2) + m2_pair.y;
}

// The mean K + sum / n of n values whose sum of x - K is the pair `sum`, re-centred as a
// summary's (shift, mean): shift = f32(K + q1) with q1 + q2 = pair_mean(sum, n), mean = the
// rest, exact up to float32 rounding of that small rest.
fn recentred_mean(shift: f32, sum: vec2<f32>, n: u32) -> vec2<f32> {
  return recentred(shift, pair_mean(sum, n));
}

// K + q for the pair q = pair_mean(..), re-centred as recentred_mean has it.
fn recentred(shift: f32, q: vec2<f32>) -> vec2<f32> {
  let c = two_sum(shift, q.x);
  return vec2<f32>(c.x, c.y + q.y);
}

// s - r s1 for pairs s, r and s1 (r s1 small beside neither: a centre's move times a sum of dy),
// the products of r's words with s1's high word exact (pair_times), s1's low word's in float32.
fn pair_sub_product(s: vec2<f32>, r: vec2<f32>, s1: vec2<f32>) -> vec2<f32> {
  let moved = pair_add(pair_sum(pair_times(r.x, s1.x), pair_times(r.y, s1.x)), (r.x + r.y) * s1.y);
  return pair_sum(s, -moved);
}

// p * q as a float32 pair: p.x q.x exact (pair_times), the cross terms in float32 (~2^-46
// relative).
fn pair_mul(p: vec2<f32>, q: vec2<f32>) -> vec2<f32> {
  return pair_add(pair_times(p.x, q.x), p.x * q.y + p.y * q.x);
}

// 1 / sqrt(v) for a pair v > 0, as a pair: one Newton step from the float32 s0, whose residual
// r = 1 - v s0^2 (~2^-23) is formed in pairs: s = s0 (1 + r / 2), off by ~3 r^2 / 8 (~1e-14).
fn pair_rsqrt(v: vec2<f32>) -> vec2<f32> {
  let s0 = fdiv_n(1.0, sqrt(v.x));
  let t = pair_mul(pair_mul(v, vec2<f32>(s0, 0.0)), vec2<f32>(s0, 0.0));
  let r = (1.0 - t.x) - t.y; // 1 - t.x exact: t.x is within a few ulps of 1
  return two_sum(s0, s0 * (0.5 * r));
}

// Loose pairs: hi + lo with |lo| up to ~2^-10 |hi| (not renormalized), each operation ~2^-33
// relative off: a third of the work of the pairs above, for per-element terms (sn1d_bwd_element,
// sn1d_stats' M2) whose errors then stay far below float32's (~2^-24, which sums over many
// elements carry where their terms cancel) at a cost per element the passes can bear.
// a * b for float32 a, b: the product of their 12-bit high parts (exact) and the rest (three
// exact products, summed in float32: ~2^-33 of a b).
fn loose_times(a: f32, b: f32) -> vec2<f32> {
  let x = split12(a);
  let y = split12(b);
  return vec2<f32>(x.x * y.x, (x.x * y.y + x.y * y.x) + x.y * y.y);
}

// p * q for loose pairs (the cross terms in float32; p.y q.y too: the low words can be ~2^-11 of
// the high ones, and their product ~2^-22 of p q).
fn loose_mul(p: vec2<f32>, q: vec2<f32>) -> vec2<f32> {
  let t = loose_times(p.x, q.x);
  return vec2<f32>(t.x, t.y + ((p.x * q.y + p.y * q.x) + p.y * q.y));
}

// p + q for loose pairs: the high words by two_sum.
fn loose_add(p: vec2<f32>, q: vec2<f32>) -> vec2<f32> {
  let t = two_sum(p.x, q.x);
  return vec2<f32>(t.x, t.y + (p.y + q.y));
}

// A loose pair as a float32 pair: hi the float32 value nearest p (a loose pair's hi alone is only
// ~2^-11 of it, a product of 12-bit parts), for words a consumer may read alone.
fn loose_normal(p: vec2<f32>) -> vec2<f32> {
  return two_sum(p.x, p.y);
}

// p - q for loose pairs.
fn loose_sub(p: vec2<f32>, q: vec2<f32>) -> vec2<f32> {
  return loose_add(p, -q);
}

// 1 / sqrt(v) for a loose pair v > 0: one Newton step from the float32 s0, s = s0 (1 + r / 2)
// with r = 1 - v s0^2 (~2^-23, formed to ~2^-34: 1 - t.x is exact, t.x being a product of two
// 12-bit parts near 1), off by ~2^-33 relative.
fn loose_rsqrt(v: vec2<f32>) -> vec2<f32> {
  let s0 = fdiv_n(1.0, sqrt(v.x));
  let t = loose_mul(loose_times(s0, s0), v);
  let r = (1.0 - t.x) - t.y;
  return vec2<f32>(s0, s0 * (0.5 * r));
}

// w p for a weight w as a pair (a mixing weight's float32 word and its rest) and a pair p:
// pair_mul with the high words' product by weight_times (common.wgsl), whose split keeps a
// weight below 2^-100 normal where GPUs flush subnormals (pair_mul's lost up to 2^-12 of it).
fn weight_pair_mul(w: vec2<f32>, p: vec2<f32>) -> vec2<f32> {
  return pair_add(weight_times(w.x, p.x), w.x * p.y + w.y * p.x);
}

// wmean_k p for a pair p, the weight as a pair (its mantissa, P.wmean_lo) times its exponent
// factors (weighted_mean: 1 for a normal weight), both words alike.
fn pair_weighted_mean(k: u32, p: vec2<f32>) -> vec2<f32> {
  let q = weight_pair_mul(vec2<f32>(P.wmean[k], P.wmean_lo[k]), p);
  return vec2<f32>(weighted_mean(k, q.x), weighted_mean(k, q.y));
}

// wvar_k p likewise.
fn pair_weighted_var(k: u32, p: vec2<f32>) -> vec2<f32> {
  let q = weight_pair_mul(vec2<f32>(P.wvar[k], P.wvar_lo[k]), p);
  return vec2<f32>(weighted_var(k, q.x), weighted_var(k, q.y));
}

// Four running sums as float32 pairs (hi + lo, lane by lane).
struct Pair4 {
  hi: vec4<f32>,
  lo: vec4<f32>,
}

// opaque() lane by lane.
fn opaque4(v: vec4<f32>) -> vec4<f32> {
  return bitcast<vec4<f32>>(bitcast<vec4<u32>>(v) ^ vec4<u32>(P.inf_bits ^ 0x7f800000u));
}

// p + q lane by lane, as sum_merge adds two pairs (a non-finite lane keeps its high word).
fn pair4_merge(p: Pair4, q: Pair4) -> Pair4 {
  let s = opaque4(p.hi + q.hi);
  let bb = opaque4(s - p.hi);
  let e = opaque4(p.hi - opaque4(s - bb)) + (q.hi - bb);
  let finite = (bitcast<vec4<u32>>(s) & vec4<u32>(0x7f800000u)) != vec4<u32>(0x7f800000u);
  return Pair4(s, p.lo + q.lo + select(vec4<f32>(0.0), e, finite));
}

// m a + b 2^k for a running buffer a, a factor m (a pair: the momentum, or 1) and a batch term b
// (a pair) in units of 2^k (k = 0 but for a scaled group, |x| beyond 2^40 or within 2^-21),
// rounded once as the float64 reference rounds it, in add_scaled's unit (running_update).
// `plain` where a, b or the result is not finite.
fn add_scaled_pair(a: f32, m: vec2<f32>, b: vec2<f32>, k: i32, plain: f32) -> f32 {
  if ((class_bits(a) | class_bits(b.x) | class_bits(b.y)) != 0u) {
    return plain;
  }
  let u = scaled_unit(a, m.x, b.x, k);
  let f = select(pow2(k - u.x), 0.0, b.x == 0.0);
  let s = pair_sum(scaled_product(a, m, u), vec2<f32>(b.x * f, b.y * f));
  let t = s.x + s.y;
  return select(plain, scale2_round(t, u.x), class_bits(t) == 0u);
}

// A BN group's running update (sn_group_stats, sn_group_refine) from its batch mean mean_pair and
// variance vp (float32 pairs, in units of 2^unit and 2^(2 unit); vp's low word var_lo is 0 but in
// layout "1d" and on rows of several segments) and its F_* flags: the moving average
// m r + (1 - m) s with the factors as pairs (Params' momentum and its rest), or the batch
// average's sums r + s (s = mu, and mu^2 + var unrounded), each rounded once as the float64
// reference rounds it (add_scaled_pair). In float32 steps a running_mean came out up to 1.5 ulps
// off, which an evaluation over a tiny running_var amplifies (y 0.031 for 0.023), a batch
// average's sums a third of the channels an ulp off, which finalizeBatchAverage's
// sum_sq / K - mean^2 amplifies (y up to 1.8e4x Y), and scaled groups likewise (attack helpers 75
// and 76; tests/running_update_test.ts, tests/batch_average_test.ts). A NaN or infinite mean, or
// an undefined variance, takes IEEE's float32 steps (the flags decide them, mean_value /
// var_value). A scaled group's mean is finite whenever no member is NaN or infinite, also where
// its variance is NaN (rows of one value): its running_mean takes the scaled update then (read in
// units of 1 it gave 0.018 for 3.3e17), running_var the NaN.
fn running_update(rm: f32, rv: f32, mean_pair: vec2<f32>, vp: vec2<f32>, unit: i32, flags: u32) -> vec2<f32> {
  // The mean as a float32 pair: a group's (hi, lo) may be a shift and the mean about it, with hi
  // 0 (a first member of 0 in rows of one value); add_scaled_pair reads b.x == 0 as b == 0 and
  // pair_mul drops lo lo: a batch average's running_mean came out 0 for 5.25 (helper-85).
  let mp = select(mean_pair, loose_normal(mean_pair), (class_bits(mean_pair.x) | class_bits(mean_pair.y)) == 0u);
  let mu = mean_value(flags, mp.x + mp.y);
  let v = var_value(flags, vp.x);
  let average = (P.flags & P_BATCH_AVERAGE) != 0u;
  let m = select(vec2<f32>(P.momentum, P.momentum_lo), vec2<f32>(1.0, 0.0), average);
  let m1 = vec2<f32>(P.one_minus_momentum, P.one_minus_momentum_lo);
  let mean_finite = (flags & (F_NAN | F_POS_INF | F_NEG_INF)) == 0u;
  let scaled = unit != 0 && mean_finite;
  let u = select(0, unit, scaled);
  // The batch terms: as pairs, and as the plain float32 steps.
  let bm = select(pair_mul(m1, mp), mp, average);
  let bv = select(pair_mul(m1, vp), pair_sum(pair_mul(mp, mp), vp), average);
  let tm = select(ieee_mul(P.one_minus_momentum, mu), mu, average);
  let tv = select(ieee_mul(P.one_minus_momentum, v), ieee_add(ieee_mul(mu, mu), v), average);
  let plain_m = select(ieee_add(ieee_mul(m.x, rm), tm), add_scaled(rm, m.x, tm, u), scaled);
  let plain_v = select(ieee_add(ieee_mul(m.x, rv), tv), add_scaled(rv, m.x, tv, 2 * u), scaled && flags == 0u);
  return vec2<f32>(
    select(plain_m, add_scaled_pair(rm, m, bm, u, plain_m), mean_finite),
    select(plain_v, add_scaled_pair(rv, m, bv, 2 * u, plain_v), flags == 0u),
  );
}

