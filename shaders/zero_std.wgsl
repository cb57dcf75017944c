// zero_std.wgsl: what the passes of eps 0 share (included after common.wgsl; not a shader on its
// own): rows or elements whose mix has std 0 (every term of nonzero variance weight has variance
// 0, eps 0), where the float64 reference's s = 1 / sqrt(var + eps) is +Infinity. Those passes
// (sn_bwd_zero_std, sn1d_bwd_zero_std, sn_bwd_zero_std_fix, sn_zero_std_y, sn1d_zero_std_y) are
// compiled on the first call with eps 0 and dispatched only for such calls: SwiftShader's
// compile time grows with a shader's size, and every eagerly compiled pass pays for what it
// holds (a fix inside the hot passes made headless Chromium's suite ~3x slower).

// Whether a mix of terms t0, t1, t2 (weights 0, 1, 2) has std 0 in the reference: std_zero, with
// no flagged term (NaN or infinite statistics; an infinite variance, even of weight 0).
fn zero_std_mix(t0: Term, t1: Term, t2: Term) -> bool {
  return std_zero(t0, t1, t2) && ((t0.flags | t1.flags | t2.flags) & (F_CLASS | F_VAR_INF)) == 0u;
}

// Whether the reference's s or mu of the mix is NaN: a flagged term of any weight (0 times NaN
// or an infinity is NaN), or an infinite variance of weight 0 (null_var_inf).
fn mix_flagged(t0: Term, t1: Term, t2: Term) -> bool {
  return (((t0.flags | t1.flags | t2.flags) & F_CLASS) != 0u) | null_var_inf(t0, t1, t2);
}

// Whether some term counts in the mix (common.wgsl counts). Where none does (every term of
// nonzero weight a term of zeros: an evaluation on a running_mean and running_var of 0 under BN
// alone) the mixed mean is exactly 0 and x - mu is x. (Not sets_unit, which running buffers
// never meet: a running_mean of 2 was then taken for 0, y +Infinity for -Infinity.)
fn some_term_counts(t0: Term, t1: Term, t2: Term) -> bool {
  return counts(t0, P.wmean.x, P.wvar.x) || counts(t1, P.wmean.y, P.wvar.y) || counts(t2, P.wmean.z, P.wvar.z);
}

// Layout "nd"'s mixed mean in the mix's unit as sn_wide_normalize takes it where fine_mean is not
// ok (keep the two in step): the words hi', lo' (their float32 pair where they cancel past 2^24 of
// the larger), and lo's exact pair (wide_lo_pair).
struct WideCentre {
  hi: f32,
  lo: f32,
  mp: vec3<f32>,
}

fn wide_centre(t0: Term, t1: Term, t2: Term, w: WideMap) -> WideCentre {
  let mp = wide_lo_pair(t0, t1, t2, w);
  let mu2 = two_sum(w.hi, w.lo);
  let cancel = exponent_of(mu2.x) < max(exponent_of(w.hi), exponent_of(w.lo)) - 24;
  let mq = two_sum(w.hi, mp.x);
  let mu3 = two_sum(mq.x, mq.y + mp.y);
  let exact = cancel & ((class_bits(mu3.x) | class_bits(mu3.y)) == 0u);
  return WideCentre(select(select(w.hi, mu2.x, cancel), mu3.x, exact), select(select(w.lo, mu2.y, cancel), mu3.y, exact), mp);
}

// x 2^-e - mu of xv as sn_wide_normalize takes it for y (its d1): from lo's exact pair where the
// words' difference lies within 2^-5 of lo's largest part and the pair's at or above 2^-48 of it.
// The eps-0 passes took the words' difference alone, which rounds to lo's ulp: a constant row of
// -3.33e29 under equal LN and BN mean weights, LN's mean -6.67e29 and a running_mean of -2e20,
// has x - mu = +1e20, 6e-10 of lo's parts of 1.7e29, where the words' difference was 0 (then
// taken about the heaviest term, zero_std_fine, which lost it too: y NaN for -Infinity under
// gamma -1e-40, attack fuzzer seed 79106).
fn wide_centre_d(c: WideCentre, w: WideMap, xv: f32) -> f32 {
  let xs = scale2(xv, -w.e);
  let d0 = (xs - c.hi) - c.lo;
  let dp = wide_d_pair(xs, w.hi, c.mp);
  let resolved = (abs(d0) < c.mp.z * 0x1p-5f) & (abs(dp) >= c.mp.z * 0x1p-48f);
  return select(d0, dp, resolved & (class_bits(dp) == 0u));
}

// x - mu of a mix of std 0 as the forward takes it for y from d, its value in the mix's unit
// (wide_centre_d, wide_centre_d_1d), or x where no term sets the unit (mu = 0); where d is 0,
// `tail` (flushed_tail): only the sign of x - mu counts under a std of 0.
fn zero_std_centred(d: f32, xv: f32, has_unit: bool, tail: f32) -> f32 {
  return select(xv, select(d, tail, (bitcast<u32>(d) << 1u) == 0u), has_unit);
}

// Whether an eps-0 y pass (sn_zero_std_y, sn1d_zero_std_y) writes y of x again: where no term
// counts (mu = 0: y is x's infinity), or where the wide pass's x - mu in the mix's unit, d, was 0
// (not in fine_mean's rows, `fine_ok`) while the parts of mu that unit lost (`tail`) are not.
fn zero_std_y_again(d: f32, has_unit: bool, tail: f32, fine_ok: bool) -> bool {
  let lost = (bitcast<u32>(tail) << 1u) != 0u && !fine_ok && (bitcast<u32>(d) << 1u) == 0u;
  return !has_unit || lost;
}

// The parts of the mixed mean that wide_map's lo (in the unit 2^e) lost below float32's range,
// negated, as a float32 of their sum's sign (0 where none was lost): mu = hi + sum_k w_k d_k, d_k
// the anchor's own lo or another term's m_k - hi, each w_k d_k taken with every exponent apart.
// Under a std of 0 such a part is all of x - mu where the others cancel: a BN mean weight of
// 2^-201 on a running_mean of -2e20 beside IN and LN means of -1e30 puts 3.1e-31, 2^-201 in the
// unit 2^100, between x and mu (y 0 / 0, NaN, for -Infinity: attack fuzzer seed 901,
// tests/std_zero_test.ts).
fn flushed_tail(a: Term, ka: u32, b: Term, kb: u32, c: Term, kc: u32, e: i32) -> f32 {
  // Term a is wide_map's anchor (its hi); weight indices ka, kb, kc.
  let ua = unit_of(a.flags) - e;
  let ub = unit_of(b.flags) - e + zero_weight_exp(P_ZERO_WMEAN + kb);
  let uc = unit_of(c.flags) - e + zero_weight_exp(P_ZERO_WMEAN + kc);
  let hi = unit_shift(a.hi, ua);
  let da = a.lo * pow2(ua);
  let db = (unit_shift(b.hi, ub) - hi) + b.lo * pow2(ub);
  let dc = (unit_shift(c.hi, uc) - hi) + c.lo * pow2(uc);
  let top = max(lost_exp(ka, da), max(lost_exp(kb, db), lost_exp(kc, dc)));
  let sum = lost_part(ka, da, top) + lost_part(kb, db, top) + lost_part(kc, dc, top);
  return select(-sum, 0.0, top == -1000);
}

// The exponent of w_k d (weight k) where wide_map's product of the two lost it (0 of nonzero
// factors), -1000 elsewhere.
fn lost_exp(k: u32, d: f32) -> i32 {
  let w = P.wmean[k];
  let nonzero = ((bitcast<u32>(w) << 1u) != 0u) & ((bitcast<u32>(d) << 1u) != 0u);
  let lost = nonzero & ((bitcast<u32>(weighted_mean(k, w * d)) << 1u) == 0u);
  return select(-1000, bits_exponent(w) + bits_exponent(d) + P.wmean_e[k], lost);
}

// w_k d 2^-top where lost_exp(k, d) is not -1000 (mantissas multiplied, exponents apart), else 0.
// w's mantissa by gamma_mantissa's bits (scale2(w, -ew) bit for bit where lost_exp counts it),
// not by scale2: its branches on a uniform alone made lavapipe compile sn1d_bwd_zero_std and
// sn1d_zero_std_y again at every dispatch, keeping ~0.5-0.9 MB each for good
// (tests/webgpu_memory_test.ts).
fn lost_part(k: u32, d: f32, top: i32) -> f32 {
  let w = P.wmean[k];
  let ew = bits_exponent(w);
  let ed = bits_exponent(d);
  let m = gamma_mantissa(w) * scale2(d, -ed);
  return select(0.0, scale2(m, ew + ed + P.wmean_e[k] - top), lost_exp(k, d) != -1000);
}

// The class (F_NAN, F_POS_INF, F_NEG_INF) of the reference's dgamma term dy ((x - mu) s) with
// s = +Infinity, from d = x - mu: the infinity of the signs of dy and d, NaN where either is 0
// (0 * Inf) or dy is NaN.
fn zero_std_term(d: f32, g: f32) -> u32 {
  let nan = (bitcast<u32>(d) << 1u) == 0u || (bitcast<u32>(g) << 1u) == 0u || (class_bits(g) & F_NAN) != 0u;
  return select(select(F_POS_INF, F_NEG_INF, (sign_bit(d) ^ sign_bit(g)) != 0u), F_NAN, nan);
}

// Whether sn_wide_normalize took x - mu of xv from fine_low's parts (fine_centred_d, common.wgsl;
// attack fuzzer seed 11178, tests/overflow_sign_test.ts).
fn fine_low_takes(f: FineCentred, xv: f32) -> bool {
  return !f.fm.ok & f.low & (bits_exponent(xv) < f.fm.e + FINE_X);
}

// Whether the eps-0 passes take x - mu of xv from fine_centred_d: where sn_wide_normalize did
// (fine_low_takes), and where the mix's unit found it 0 (d, about term 0) while
// fine_mean's unit holds xv and the parts about the heaviest term: the heaviest weight rounded
// to 1 lost them (an IN weight of e^-40 beside a running_mean of 1e30 that x equals: y NaN for
// +Infinity). d: x - mu in the mix's unit as sn_wide_normalize takes it (wide_centre_d).
// Also where fine_mean is ok and holds xv (fine_mean_takes).
fn zero_std_fine(f: FineCentred, d: f32, xv: f32) -> bool {
  let lost = !f.fm.ok & f.fm.finite & (f.fm.e > -900) & (f.fl.pe > -900) &
    (bits_exponent(xv) < f.fm.e + FINE_X) & ((bitcast<u32>(d) << 1u) == 0u);
  return fine_low_takes(f, xv) | lost | fine_mean_takes(f, xv);
}

// Whether the wide passes took x - mu of xv from an ok fine_mean, (x 2^-e - hi) - lo in its unit,
// which the eps-0 passes take from fine_centred_d instead (its parts w_k (m_k - a) every exponent
// apart): fine_mean's lo drops the parts below float32's range in its unit, and under a std of 0
// such a part is all of x - mu where x equals the anchor's mean. An evaluation after a training
// step on a constant sample of 1e10 (momentum 0, eps 0: running_var 0, running_mean 1e10) under an
// LN mean weight of e^-174 (2^-251): the element at its running_mean has x - mu =
// w_LN (mu_BN - mu_LN) ~ 2.4e-47, below float32's subnormals, and y was 0 / 0, NaN, for +Infinity
// (attack fuzzer seed 217219, tests/zero_std_tiny_mean_term_test.ts). The backward passes took
// x - mu of these rows in the mix's unit (flushed_tail about term 0), which misses what the
// heaviest weight's rounding to 1 lost: x = 0 beside IN and LN means of -3F and -F of weight
// 2^-216 on a running_mean of 0 has x - mu = +4 w F, and its dgamma term was -Infinity where y
// was -Infinity under gamma -1.
fn fine_mean_takes(f: FineCentred, xv: f32) -> bool {
  return f.fm.ok & (bits_exponent(xv) < f.fm.e + FINE_X);
}
