// backward_common.wgsl: declarations the backward shaders share (included after common.wgsl;
// not a shader on its own). The backward is the chain rule of SN_SPEC, per (n, c) row:
//   s = 1 / sqrt(var + eps),  xhat = (x - mu) * s,  dxh = dy * gamma
//   gm = dL/dmu  = -s * sum_i dxh             gv = dL/dvar = -0.5 * s^2 * sum_i dxh * xhat
//   dgamma += sum_i dy * xhat                  dbeta += sum_i dy
// and the importance-logit dot products a_k = sum gm * mu_k, b_k = sum gv * var_k, which are
// kept centred: a'_k = sum gm * (mu_k - mu) with mu_k - mu formed from hi/lo pairs, so that a
// common offset of 1e4 in the means cancels exactly instead of in float32 sums, plus
// sum gm * mu separately (the backend adds the two in float64; the softmax/sparsestmax
// Jacobians ignore a shift common to every k, so the logit gradients keep the centred precision).

// A set of gradient sums: a row's, a tile line's, or a group's (LN per n, channel per c).
//   s = (gm, gv, dgamma, dbeta)
//   a = (gm * (mu_0 - mu), gm * (mu_1 - mu), gm * (mu_2 - mu), gm * mu)
//   b = (gv * (var_0 - var), gv * (var_1 - var), gv * (var_2 - var), gv * var)
//   flags: G_BAD where the float64 reference has NaN in gm, gv, dgamma and the dots (a statistic
//          of some member is NaN/infinite or var + eps <= 0); dbeta never depends on it.
//          Bits 1..30: three exponents of 10 bits (two's complement), 0 for in-range data: gm is
//          s.x * 2^e0, gv is s.y * 2^e1, and every other field is in units of 2^e2. Rows with a
//          scaled statistic (F_SCALED, unit 2^E) or dy beyond 2^40 (unit 2^D) get
//          e0 = D - E, e1 = D - 2E, e2 = D: gm ~ dy s, gv ~ dy s^3 (x - mu) and the rest ~ dy
//          leave float32's range there, their mantissas do not.
//   units: two signed 16-bit offsets from e2 (unit_offsets; both 0 for in-range data, so that
//   the word is 0 there):
//     eb (bits 0..15): the variance dots b are in units of 2^(e2 + eb): they can lie far below
//       the mean dots and dgamma (an evaluation on a running_var of 2.8e-45 beside rows of
//       1e14: var_weight's gradient 1e-23 beside mean_weight's 2e17, 2^133 apart, more than one
//       float32 unit holds), so they take a unit of their own;
//     ec (bits 16..31): dgamma (s.z) is in units of 2^(e2 + ec): beside mean dots past ~2^226
//       of it (gamma 1e29 over a running_var of 1e-22 and a running_mean 1e30 from the data) a
//       shared unit flushed it, so it takes one of its own.
//   (One word for both: a record, and sn_bwd_groups' workgroup copies, stay the size they were.)
// spare: dbeta (s.w, a sum of dy) is in units of 2^spare, the unit of dy (RowGrad's dy_unit in
//   the same word): dbeta does not depend on x, and it took dgamma's unit before, where a
//   dgamma ~2^226 above it (x 5e36 over a running_var of 0 in an evaluation) left dbeta a few
//   float32 spacings of that unit (-0.89 for 0.41: SwitchNorm1d fuzzer --wide seed 749; 12%
//   off under dy 1e-37). 0 in records without exponents.
// low: in records without exponents (grad_is_scaled false) the bits of dgamma's low word
//   (s.z + low a float32 pair): sn_bwd_rows' pair rows form dgamma = s S2 in pairs, and
//   grad_add (sn_bwd_groups) sums it in pairs. In records with exponents the dots' lane
//   offsets (grad_lanes): a.x, a.y, a.z are in units of 2^(e2 - 8 o) and b.x, b.y, b.z of
//   2^(e2 + eb - 8 o), with o the 5-bit fields of bits 0..4, 5..9, 10..14 (a) and 15..19,
//   20..24, 25..29 (b); a.w and b.w are in the record's units. One unit for the four mean
//   dots flushed those ~2^226 below the largest: a record's BN dot on a running_mean of -3e38
//   under a mean weight of 2^-251 beside IN dots of rows of 1e-30 (the IN dots left the logit
//   gradients 5e3x their tolerance off, attack fuzzer seed 392), and the variance dots alike
//   (a running_var of 3e38 under such a weight beside IN variances of 1e-30: var_weight's
//   gradient 0.0126 for -0.072; tests/logit_dot_range_test.ts).
//   A record whose lanes are not all at their record's unit always has an exponent set in its
//   flags (grad_finish), so that no reader takes them for dgamma's low word.
struct Grad {
  s: vec4<f32>,
  a: vec4<f32>,
  b: vec4<f32>,
  flags: u32,
  units: i32,
  spare: i32,
  low: u32,
}

// A Grad without dgamma's low word.
fn grad(s: vec4<f32>, a: vec4<f32>, b: vec4<f32>, flags: u32, units: i32) -> Grad {
  return Grad(s, a, b, flags, units, 0, 0u);
}

// grad with dbeta (s.w) in units of 2^d.
fn grad_dy_unit(s: vec4<f32>, a: vec4<f32>, b: vec4<f32>, flags: u32, units: i32, d: i32) -> Grad {
  return Grad(s, a, b, flags, units, d, 0u);
}

// (eb, ec) of a Grad's units word, and the word of (eb, ec).
fn unit_offsets(units: i32) -> vec2<i32> {
  return vec2<i32>((units << 16u) >> 16u, units >> 16u);
}

fn pack_units(eb: i32, ec: i32) -> i32 {
  return (eb & 0xffff) | (ec << 16u);
}

// A row's Grad of layout "nd" (sn_bwd_rows, sn_bwd_coef) with the row's dy unit D (0 up to
// DY_MAX) in Grad's first padding word: the same 64-byte stride, read as Grad elsewhere. The
// record's own unit can lie below D (grad_units: dots far below it), so D travels apart.
struct RowGrad {
  s: vec4<f32>,
  a: vec4<f32>,
  b: vec4<f32>,
  flags: u32,
  units: i32,
  dy_unit: i32,
  low: u32,
}

const G_BAD: u32 = 1u;
const G_EXPS: u32 = 0x7ffffffeu;
// The variance dot products are NaN (0 * Inf in the reference: a row whose mix weights an
// infinite variance, F_VAR_INF); the rest of the record is as usual.
const G_VNAN: u32 = 0x80000000u;
// |dy| beyond this: the row's dy is summed in units of 2^D (float32 sums of dy could overflow).
const DY_MAX: f32 = 1099511627776.0; // 2^40

// Exponent k (0: gm, 1: gv, 2: the rest) of a Grad's flags.
fn g_exp(flags: u32, k: u32) -> i32 {
  return i32(((flags >> (1u + 10u * k)) & 0x3ffu) << 22u) >> 22;
}

// Exponents beyond the fields' range (only where gamma's exponent joins D - 2E of subnormal
// x and dy near 3e38, whose results are infinite anyway) saturate rather than wrap.
fn g_flags(bad: u32, e0: i32, e1: i32, e2: i32) -> u32 {
  let e = clamp(vec3<i32>(e0, e1, e2), vec3<i32>(-511), vec3<i32>(511));
  return (bad & (G_BAD | G_VNAN)) | ((u32(e.x) & 0x3ffu) << 1u) | ((u32(e.y) & 0x3ffu) << 11u) |
    ((u32(e.z) & 0x3ffu) << 21u);
}

// The unit both of two sums take (the larger exponent; a sum of zeros has none), and the
// factors that bring each to it, each as two factors (u.x u.y for p, u.z u.w for q): exact while
// the product is a normal float32 (unit_shift). One factor pow2(ep - e) flushed to 0 below
// 2^-126, while a record without exponents holds real values up to float32's largest, which
// count beside a record in units of 2^128 (1e34 there is ~3e-5).
fn common_unit(p_zero: bool, q_zero: bool, ep: i32, eq: i32) -> vec4<f32> {
  let e = select(select(max(ep, eq), ep, q_zero), eq, p_zero);
  return vec4<f32>(pow2((ep - e) / 2), pow2(ep - e - (ep - e) / 2), pow2((eq - e) / 2), pow2(eq - e - (eq - e) / 2));
}

fn unit_of_pair(p_zero: bool, q_zero: bool, ep: i32, eq: i32) -> i32 {
  return select(select(max(ep, eq), ep, q_zero), eq, p_zero);
}

fn grad_add_scaled(p: Grad, q: Grad) -> Grad {
  let pz = all(p.a == vec4<f32>(0.0));
  let qz = all(q.a == vec4<f32>(0.0));
  let pcz = p.s.z == 0.0;
  let qcz = q.s.z == 0.0;
  let pbz = all(p.b == vec4<f32>(0.0));
  let qbz = all(q.b == vec4<f32>(0.0));
  let e0 = vec3<i32>(g_exp(p.flags, 0u), g_exp(q.flags, 0u), 0);
  let e1 = vec3<i32>(g_exp(p.flags, 1u), g_exp(q.flags, 1u), 0);
  let e2 = vec3<i32>(g_exp(p.flags, 2u), g_exp(q.flags, 2u), 0);
  let po = unit_offsets(p.units);
  let qo = unit_offsets(q.units);
  let eb = e2.xy + vec2<i32>(po.x, qo.x);
  let ec = e2.xy + vec2<i32>(po.y, qo.y);
  let u0 = common_unit(p.s.x == 0.0, q.s.x == 0.0, e0.x, e0.y);
  let u1 = common_unit(p.s.y == 0.0, q.s.y == 0.0, e1.x, e1.y);
  let uc = common_unit(pcz, qcz, ec.x, ec.y);
  let ud = common_unit(p.s.w == 0.0, q.s.w == 0.0, p.spare, q.spare);
  let s = vec4<f32>(
    p.s.x * u0.x * u0.y + q.s.x * u0.z * u0.w,
    p.s.y * u1.x * u1.y + q.s.y * u1.z * u1.w,
    p.s.z * uc.x * uc.y + q.s.z * uc.z * uc.w,
    p.s.w * ud.x * ud.y + q.s.w * ud.z * ud.w,
  );
  // The dots lane by lane, each in its own unit (Grad.low): a.x, a.y, a.z at 2^(e2 - 8 o), a.w
  // at 2^e2, the variance dots likewise below 2^eb.
  let e2u = unit_of_pair(pz, qz, e2.x, e2.y);
  let ebu = unit_of_pair(pbz, qbz, eb.x, eb.y);
  let pl = grad_lanes(p);
  let ql = grad_lanes(q);
  let pa = vec3<i32>(e2.x) - pl[0];
  let qa = vec3<i32>(e2.y) - ql[0];
  let pb = vec3<i32>(eb.x) - pl[1];
  let qb = vec3<i32>(eb.y) - ql[1];
  let ax = lane_add(p.a.x, q.a.x, pa.x, qa.x);
  let ay = lane_add(p.a.y, q.a.y, pa.y, qa.y);
  let az = lane_add(p.a.z, q.a.z, pa.z, qa.z);
  let aw = lane_add(p.a.w, q.a.w, e2.x, e2.y);
  let bx = lane_add(p.b.x, q.b.x, pb.x, qb.x);
  let by = lane_add(p.b.y, q.b.y, pb.y, qb.y);
  let bz = lane_add(p.b.z, q.b.z, pb.z, qb.z);
  let bw = lane_add(p.b.w, q.b.w, eb.x, eb.y);
  // (a.w's and b.w's units are at most e2u and ebu: brought to them, as one unit for the
  // record brought them before.)
  let a = vec4<f32>(ax.v, ay.v, az.v, unit_shift(aw.v, aw.u - e2u));
  let b = vec4<f32>(bx.v, by.v, bz.v, unit_shift(bw.v, bw.u - ebu));
  return grad_finish(
    p.flags | q.flags,
    s,
    a,
    b,
    unit_of_pair(p.s.x == 0.0, q.s.x == 0.0, e0.x, e0.y),
    unit_of_pair(p.s.y == 0.0, q.s.y == 0.0, e1.x, e1.y),
    e2u,
    vec3<i32>(ax.u, ay.u, az.u),
    ebu,
    vec3<i32>(bx.u, by.u, bz.u),
    unit_of_pair(pcz, qcz, ec.x, ec.y),
    unit_of_pair(p.s.w == 0.0, q.s.w == 0.0, p.spare, q.spare),
  );
}

// Whether a record carries exponents or units (grad_add_scaled adds it; its `low` holds the
// mean dots' lane offsets, not dgamma's low word).
fn grad_is_scaled(g: Grad) -> bool {
  return (g.flags & G_EXPS) != 0u || (g.units | g.spare) != 0;
}

// The offsets 8 o of a record's mean dots a.x, a.y, a.z below its unit 2^e2 ([0]) and of its
// variance dots b.x, b.y, b.z below 2^eb ([1]) (Grad.low); 0 in records without exponents.
fn grad_lanes(g: Grad) -> array<vec3<i32>, 2> {
  let w = select(0u, g.low, grad_is_scaled(g));
  let o = vec3<u32>(0u, 5u, 10u);
  let m = vec3<u32>(0x1fu);
  return array<vec3<i32>, 2>(
    vec3<i32>(((vec3<u32>(w) >> o) & m) * LANE_STEP),
    vec3<i32>(((vec3<u32>(w) >> (o + 15u)) & m) * LANE_STEP),
  );
}

// A lane's offset below its record's unit is 8 o, o < 32 (5 bits): each lane keeps ~2^226 of
// float32's range below its own unit, and the lanes up to 2^248 below the record's.
const LANE_STEP: u32 = 8u;
const LANE_MAX: i32 = 31;

// One lane of the dots of two records, p in units of 2^ep and q of 2^eq, summed in the larger
// (common_unit): its value and unit.
struct LaneSum {
  v: f32,
  u: i32,
}

fn lane_add(p: f32, q: f32, ep: i32, eq: i32) -> LaneSum {
  let u = common_unit(p == 0.0, q == 0.0, ep, eq);
  return LaneSum(p * u.x * u.y + q * u.z * u.w, unit_of_pair(p == 0.0, q == 0.0, ep, eq));
}

// Lanes v.xyz in units of 2^lanes brought to offsets 8 o below the unit 2^u (o < 32; a lane
// above u, or more than 8 LANE_MAX below, is brought to the nearest offset, flushed on the way
// where it is that small): the values and the offsets' 15 bits.
struct Lanes {
  v: vec3<f32>,
  bits: u32,
}

fn lanes_at(v: vec3<f32>, lanes: vec3<i32>, u: i32) -> Lanes {
  let nz = v != vec3<f32>(0.0);
  let below = select(vec3<i32>(0), vec3<i32>(u) - lanes, nz);
  let o = clamp(below / i32(LANE_STEP), vec3<i32>(0), vec3<i32>(LANE_MAX));
  // The lane's value m 2^lane as m' 2^(u - 8 o): m' = m 2^(lane - u + 8 o).
  let k = i32(LANE_STEP) * o - below;
  let bits = u32(o.x) | (u32(o.y) << 5u) | (u32(o.z) << 10u);
  return Lanes(vec3<f32>(scale2(v.x, k.x), scale2(v.y, k.y), scale2(v.z, k.z)), bits);
}

// A record with exponents (flags' bad bits from `bad`): gm = s.x 2^e0, gv = s.y 2^e1, the mean
// dots a.x, a.y, a.z in units of 2^la (each at most e2) and a.w of 2^e2, the variance dots
// b.x, b.y, b.z of 2^lb (each at most eb) and b.w of 2^eb, dgamma (s.z) of 2^ec, dbeta (s.w) of
// 2^spare. The lanes' offsets go to Grad.low (lanes_at). Where the flags' exponents would be 0
// but a lane lies below its unit, e2 is 1 (a.w, and the units of b and dgamma, follow), so that
// the record reads as one with exponents by its flags alone (sn_bwd_groups' workgroup copies
// drop eb or spare).
fn grad_finish(bad: u32, s: vec4<f32>, a: vec4<f32>, b: vec4<f32>, e0: i32, e1: i32, e2: i32, la: vec3<i32>, eb: i32, lb: vec3<i32>, ec: i32, spare: i32) -> Grad {
  let away = any((a.xyz != vec3<f32>(0.0)) & (la != vec3<i32>(e2))) || any((b.xyz != vec3<f32>(0.0)) & (lb != vec3<i32>(eb)));
  let bump = away && e0 == 0 && e1 == 0 && e2 == 0;
  let flags = g_flags(bad, e0, e1, select(e2, 1, bump));
  // The unit the flags hold (g_flags saturates; the bump): a.w and a's lanes are taken to it.
  let u = g_exp(flags, 2u);
  let ax = lanes_at(a.xyz, la, u);
  let bx = lanes_at(b.xyz, lb, eb);
  let a2 = vec4<f32>(ax.v, scale2(a.w, e2 - u));
  let b2 = vec4<f32>(bx.v, b.w);
  return Grad(s, a2, b2, flags, pack_units(eb - u, ec - u), spare, ax.bits | (bx.bits << 15u));
}

// p + q; sums in different units (wide rows) are brought to the larger first.
fn grad_add(p: Grad, q: Grad) -> Grad {
  if (((p.flags | q.flags) & G_EXPS) != 0u || (p.units | q.units | p.spare | q.spare) != 0) {
    return grad_add_scaled(p, q);
  }
  return grad_add_plain(p, q);
}

// p + q for records without exponents or units. dgamma as a pair (Grad.low), and in layout
// "1d" the dot products' a.x and b.x too, their low words in a.z and b.z (sn1d_bwd_element.wgsl:
// pair elements). A non-finite sum keeps its high word, as sum_add does.
fn grad_add_plain(p: Grad, q: Grad) -> Grad {
  let dg = two_sum(p.s.z, q.s.z);
  let ax = two_sum(p.a.x, q.a.x);
  let bx = two_sum(p.b.x, q.b.x);
  let pairs_1d = (P.flags & P_CHAN_GROUPS) != 0u;
  let dg_err = select(0.0, dg.y, class_bits(dg.x) == 0u);
  let a_err = select(0.0, ax.y, pairs_1d && is_finite_bits(ax.x));
  let b_err = select(0.0, bx.y, pairs_1d && is_finite_bits(bx.x));
  let s = vec4<f32>(p.s.xy + q.s.xy, dg.x, p.s.w + q.s.w);
  let a = vec4<f32>(ax.x, p.a.y + q.a.y, p.a.z + q.a.z + a_err, p.a.w + q.a.w);
  let b = vec4<f32>(bx.x, p.b.y + q.b.y, p.b.z + q.b.z + b_err, p.b.w + q.b.w);
  return Grad(s, a, b, p.flags | q.flags, 0, 0, bitcast<u32>(bitcast<f32>(p.low) + bitcast<f32>(q.low) + dg_err));
}

fn grad_zero() -> Grad {
  return grad(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), 0u, 0);
}

// A float32 m * 2^e summed term by term (the gradient terms of dx of wide rows).
struct XF {
  m: f32,
  e: i32,
}

fn xf_add(a: XF, m: f32, e: i32) -> XF {
  if (m == 0.0) {
    return a;
  }
  if (a.m == 0.0) {
    return XF(m, e);
  }
  // Two factors each (unit_shift), not one pow2(..): see common_unit.
  let u = max(a.e, e);
  return XF(unit_shift(a.m, a.e - u) + unit_shift(m, e - u), u);
}

// The exponent that brings a finite, normal v to [1, 2) (scale2(v, -norm_exp(v))); 0 for 0,
// subnormals, NaN and the infinities (left as they are).
fn norm_exp(v: f32) -> i32 {
  let e = exponent_of(v);
  return select(0, e, e != -1000 && class_bits(v) == 0u);
}

// Whether the reference's s = 1 / sqrt(var + eps) of these mixed statistics is NaN: then the
// row's gradients are NaN. Only for mixes without scaled terms (the rest go through wide_map).
fn mixed_bad(m: Mixed) -> bool {
  return (m.flags & F_CLASS) != 0u || !(m.variance + P.eps > 0.0);
}

// The map of an unscaled mix m (unit 1, as the reduce passes summed its rows) for the wide
// backward passes: its mean and std, but where var + eps lies below float32's normal range or
// near it (mix_var_near_subnormal: a tiny variance weight, a term a GPU may flush) the std of
// wide_map's map of the terms, whose unit 2^e keeps that variance in range, brought to unit 1:
// 1 / std = scale 2^(g - e).
fn unit_map(m: Mixed, t0: Term, t1: Term, t2: Term) -> WideMap {
  if (mix_var_near_subnormal(m) && (m.flags & F_CLASS) == 0u) {
    let w = wide_map(t0, t1, t2, 1.0, 0.0);
    return WideMap(m.hi, m.lo, m.variance, w.scale, 0.0, 0, w.bad, w.var_inf, w.g - w.e);
  }
  return WideMap(m.hi, m.lo, m.variance, inv_std(m), 0.0, 0, mixed_bad(m), false, 0);
}

// Term k of a scaled mix brought to the mix's unit 2^e: its mean minus the mixed mean, and its
// variance (exact powers of two, as wide_map forms them).
// Running buffers of mean weight 0 (weight index k; the shaders' 0, below 2^-252 too) take a
// centred mean of 0: their dot product is multiplied by that weight, and their mean can lie
// beyond float32's range in the mix's unit (sets_unit: it does not count them; Infinity made the
// logit gradients NaN) or far above the data's dots in a record's unit (a running_mean of 1e30
// beside data of 1e-37 flushed the IN and LN dots: mean_weight's gradient 0 for 3.4e4, corner
// fuzzer seed 925).
fn wide_centred(t: Term, w: WideMap, k: u32) -> f32 {
  return wide_centred_lifted(t, w, k, 0);
}

// wide_centred in the unit 2^(w.e - lift) (lift >= 0: the mix's words by their bits, scale2;
// lift 0: wide_centred's bits). For means whose words all lie near or below float32's normal
// range in the mix's unit, whose differences there are subnormal: see lifted_word.
fn wide_centred_lifted(t: Term, w: WideMap, k: u32, lift: i32) -> f32 {
  let u = unit_of(t.flags) - w.e + lift;
  // hi by unit_shift, as in wide_map (an evaluation's BN mean can be large in its unit); lo so
  // too where lifted (u may then pass pow2's 2^127 for a term of mean 0 in a unit above the mix's).
  let lo = select(t.lo * pow2(u), unit_shift(t.lo, u), lift != 0);
  let c = ((unit_shift(t.hi, u) - lifted_word(w.hi, lift)) + lo) - lifted_word(w.lo, lift);
  return select(c, 0.0, (P.wmean[k] == 0.0) & ((t.flags & F_RUNNING) != 0u));
}

// v 2^lift by its bits (scale2; exact for a subnormal v too), v itself for lift 0.
fn lifted_word(v: f32, lift: i32) -> f32 {
  return select(v, scale2(v, lift), lift != 0);
}

// The lift of wide_centred_lifted for the means of terms t0, t1 in a mix w (layout "1d"): 0
// where the largest of their words lies at 2^-60 of the unit 2^w.e or above, else what brings
// it there (up to 2^120; words of 0 or subnormal count as 2^-1000). Means of ~2e-38 and 3e-38
// in the unit 1 differ by a subnormal, which wide_element's dot_scaled took as 0.
fn centred_lift(t0: Term, t1: Term, w: WideMap) -> i32 {
  let e0 = finite_exponent_of(t0.hi) + unit_of(t0.flags) - w.e;
  let e1 = finite_exponent_of(t1.hi) + unit_of(t1.flags) - w.e;
  let top = max(max(e0, e1), max(finite_exponent_of(w.hi), finite_exponent_of(w.lo)));
  return clamp(-60 - top, 0, 120);
}

// The variance differences of a mix's terms t0, t1, t2 (weights 0, 1, 2; a missing term of
// zeros), d = (var_0 - var, var_1 - var, var_2 - var, var) with var = sum_j wvar_j var_j, in
// units of 2^(2u): u is the std exponent of the largest term variance, not the mix's unit 2^e
// (fallback e where every variance is 0). In the mix's unit the squares of f_k = 2^(u_k - e)
// left variances far below it at 0: an evaluation on a running_var of 2.8e-45 (subnormal, or
// so in the unit of sqrt(eps) its group takes) beside constant rows of 1e14 (units of 2^50) had
// every variance difference 0 there, and var_weight's gradient, those differences times a huge
// gv, 2^80 off. Each variance enters by its bits (scale2, exact where the result is normal), so
// that one subnormal in its own unit counts on GPUs that flush subnormal operands.
// lift > 0 lowers u by lift, so that the largest variance lies near 2^(2 lift) and those below
// it keep 2 lift binades more of float32's range before they flush (sn_bwd_rows' wide rows,
// whose variance dots keep exponents of their own: a running_var of 3e38 under a weight just
// above 2^-252 beside IN variances of 1e-30 had the IN differences 0, var_weight's gradient
// 0.0126 for -0.072; tests/logit_dot_range_test.ts). The mix's var, a sum of three terms of at
// most ~2^(2 lift + 2), stays within float32 for lift up to 60.
struct VarDiffs {
  d: vec4<f32>,
  u: i32,
}

fn var_diffs(t0: Term, t1: Term, t2: Term, e: i32, lift: i32) -> VarDiffs {
  // A term of variance weight 0 (the shaders' 0: below 2^-252 too, README: Numerics) neither
  // sets u nor counts (its variance as 0, by an exponent: zero_weight_exp): an LN variance of
  // 1e60 beside IN and BN ones of ~1 under LN weight 0 set u and flushed theirs, and the
  // var_weight gradient came out 0 for 3e26 (a weight of 3.6e-83 likewise: dx 0 for -5.5e5, nd
  // fuzzer FUZZ_ZERO_WEIGHTS=1 seed 115). (The means are left as they are in the mean dots,
  // whose unit already holds mu: a mean of weight 0 taken as 0 there made an evaluation's
  // mean_weight gradient 0.)
  let z0 = 4 * zero_weight_exp(P_ZERO_WVAR);
  let z1 = 4 * zero_weight_exp(P_ZERO_WVAR + 1u);
  let z2 = 4 * zero_weight_exp(P_ZERO_WVAR + 2u);
  let top = max(max(max(term_std_exp(t0) + z0, -1000), max(term_std_exp(t1) + z1, -1000)), max(term_std_exp(t2) + z2, -1000));
  let u = select(top - lift, e, top == -1000);
  let v0 = scale2(t0.variance, 2 * (var_unit(t0.flags) - u) + z0);
  let v1 = scale2(t1.variance, 2 * (var_unit(t1.flags) - u) + z1);
  let v2 = scale2(t2.variance, 2 * (var_unit(t2.flags) - u) + z2);
  let v = weighted_var(0u, P.wvar.x * v0) + weighted_var(1u, P.wvar.y * v1) + weighted_var(2u, P.wvar.z * v2);
  return VarDiffs(vec4<f32>(v0 - v, v1 - v, v2 - v, v), u);
}

// unit + floor(log2 variance) / 2 of a term (its std's exponent, from the bits: subnormal
// variances included); -1000 for a variance of 0.
fn term_std_exp(t: Term) -> i32 {
  let x = bits_exponent(t.variance);
  return select(var_unit(t.flags) + (x >> 1u), -1000, x == -1000);
}

// Whether v is a nonzero subnormal, by its bits.
fn is_subnormal_bits(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) - 1u < 0x007fffffu;
}

// Whether a segment of an unscaled, unflagged row (mix m, summary p, largest |dy| mx, normal)
// has every product dy (x - c) below 2^-90 in units of 1, c = long_centre, by bounds of their
// factors' exponents: |x - c| <= |mu_in - c| + sqrt(M2) (every |x - mu_in| is at most the root
// of the row's sum of squared deviations). Float32 products there are subnormal or near it, and
// a GPU may flush them (lavapipe does): rows of 1 +- 5e-7 under dy ~1e-31 (products ~1e-38)
// had S2 0 or a few bits, which gamma s^3 (3e38 times s ~3e6 under eps 0) brings back into dx:
// 4.56e13 for 4.70e13 (attack fuzzer seed 27858). sn_bwd_reduce lists such segments and
// sn_bwd_wide_reduce sums them again with dy in the unit of mx (PART_LOW tells it why). c is
// long_centre(m, p), which sn_bwd_reduce has. Products that reach 2^-90 keep units of 1: those
// flushed beside them lie 2^36 below the largest bound. A few operations per segment.
fn low_products(m: Mixed, p: Partial, c: f32, mx: f32) -> bool {
  let spread = abs((p.shift - c) + p.mean) + sqrt(max(p.m2, 0.0));
  let em = exponent_of(mx);
  let ex = exponent_of(spread);
  let plain = ((m.flags & F_CLASS) == 0u) & !is_scaled(m.flags) & (far_exp(m.lo) == 0);
  return plain & (class_bits(mx) == 0u) & (class_bits(spread) == 0u) & (em > -1000) & (ex > -1000) &
    (em + ex + 2 < -90);
}

// The unit of dy for a set of values of largest |dy| mx: 0 up to DY_MAX, else its exponent.
fn dy_unit(mx: f32) -> i32 {
  return select(0, i32(abs_field(bitcast<u32>(mx) & 0x7fffffffu)) - 127, mx > DY_MAX);
}

fn inv_std(m: Mixed) -> f32 {
  return fdiv_n(1.0, sqrt(select(1.0, m.variance + P.eps, m.variance + P.eps > 0.0)));
}

// Whether the BN statistics are functions of x (training with BN): only then do the BN
// gradient sums flow back into dx.
fn bn_depends_on_x() -> bool {
  return (P.flags & (P_TRAINING | P_USING_BN)) == (P_TRAINING | P_USING_BN);
}

// The centre c of a row's S2 = sum dy (x - c) (sn_bwd_reduce, sn_bwd_wide_reduce; (mu - c) S1
// is taken off, centre_offset): the 12-bit cut of the mixed mean mu (coarse12), or f32(mu) itself
// where the cut lies farther from it than the row's own spread (WASM's narrow_centre): there
// every x - cut is of the cut's size, and their float32 rounding, which (mu - c) S1 cancels, was
// the result (a constant row of 2048 floats of 2.5e11: dgamma 1.3e4 where it is 0), where about
// f32(mu) x - c is exact. Not the row's shift hi (its IN mean): where the mix takes its mean
// elsewhere (an evaluation on a running_mean of 0 over a row [1e6, 0.3] with dy 0 at 1e6),
// x - hi carried rounding of |x - hi| (0.3125 for 0.3), far beyond x - mu's, and the offset
// cancelled it down to sum dy (x - mu): dgamma 4% off. Scaled mixes keep the cut.
// A centre far below the row's std (|c| < 2^-9 std: a mean near 0) keeps no bits below q =
// 2^(e + 3 - 23), e the std's exponent, the ulp of x at ~8 stds (rounded toward 0, which moves
// it by less than q, ~1e-6 of the std): its 12 bits were finer than x's there, and x - c dropped
// its low bits alike for every x of a binade (a mixing settled on BN, channel mean -4.5e-6 over a
// std of 1, rows of 16384 floats under dy = 1: dgamma 1.6e-3 off, 16x its tolerance).
fn long_centre(m: Mixed, p: Partial) -> f32 {
  let mu = m.hi + m.lo;
  let cut = coarse12(mu);
  let moved = mu - cut;
  let spread = fdiv_n(p.m2, max(f32(p.count), 1.0));
  let c = select(cut, mu, !is_scaled(m.flags) && moved * moved > spread);
  let q = pow2((exponent_of(spread) >> 1u) + 3 - 23);
  let coarse = !is_scaled(m.flags) && spread > 0.0 && q > 0.0;
  return select(c, trunc(fdiv(c, select(1.0, q, coarse))) * q, coarse);
}

// mu - c of the mix m = (hi, lo) and a centre c (long_centre) as a pair, exact: the first word
// from hi + lo's float32 sum (c is it or its cut: Sterbenz), the second its rounding error, and
// mix_rest.
fn centre_offset(m: Mixed, c: f32) -> vec2<f32> {
  let u = two_sum(m.hi, m.lo);
  return vec2<f32>(u.x - c, u.y + mix_rest(m));
}

// The mean's rest beyond hi + lo that the backward's sums of dy (x - mu) take (S2 is about
// hi + lo + mix_rest(m)): lo_rest where hi and lo cancel past 2^8, else 0. There lo's ulp may
// hold all of the mean (a factor-wide evaluation on a running_mean of 1 of weight 1 beside a row
// of 0 but one x of 1e10, its IN mean of weight 0 as hi: lo = -hi, mu 0 from (hi, lo), dgamma
// 0 for -1.5e11 under dy 1 at the 0s), or 2^-5 of it (mu -0.3 about an IN mean of 2e5: -0.296875,
// dgamma 1% off).
fn mix_rest(m: Mixed) -> f32 {
  let u = two_sum(m.hi, m.lo);
  let cancel = exponent_of(u.x) < max(exponent_of(m.hi), exponent_of(m.lo)) - 8;
  return select(0.0, m.lo_rest, cancel);
}

// mu_k - mu for a term (hi_k, lo_k) of the mix m: exact in hi, so offsets cancel.
fn centred(m: Mixed, hi: f32, lo: f32) -> f32 {
  return ((hi - m.hi) + lo) - m.lo;
}

// The mixed statistics of one row of layout "nd" (as sn_mix forms them): IN from its summary
// p, LN from ln, BN from bn (ignored without usingBN). hi is the row's shift. Selects rather
// than a branch on the uniform flag, as sn_mix (lavapipe compiles a shader again at dispatches
// for as long as the values of the uniforms in its if conditions shrink it: see sn_bwd_reduce).
fn nd_mix(p: Partial, ln: Group, bn: Group) -> Mixed {
  let var_in = row_variance(p.m2, p.count);
  var m = mix_first(0u, p.shift, p.mean, var_in, p.flags | select(F_NO_VAR, 0u, p.count >= 2u));
  m = mix_add(m, 1u, ln.hi, ln.lo, ln.variance, ln.flags);
  let use_bn = (P.flags & P_USING_BN) != 0u;
  let with_bn = mix_add(m, 2u, bn.hi, bn.lo, bn.variance, bn.flags);
  // lo_rest with the weights' rest beyond their float32 roundings (wmean_lo), as wide_lo_pair
  // takes it: read only where hi and lo cancel (mix_rest), where a weight of 1 - 2e-9 that
  // rounds to 1 left mu 1 for 2.29 (about an IN mean 2^27 above it).
  let rest = weighted_mean(0u, P.wmean_lo.x * p.mean) + weighted_mean(1u, P.wmean_lo.y * ((ln.hi - p.shift) + ln.lo)) +
    select(0.0, weighted_mean(2u, P.wmean_lo.z * ((bn.hi - p.shift) + bn.lo)), use_bn);
  let lo_rest = select(m.lo_rest, with_bn.lo_rest, use_bn);
  return Mixed(
    select(m.hi, with_bn.hi, use_bn),
    select(m.lo, with_bn.lo, use_bn),
    select(m.variance, with_bn.variance, use_bn),
    select(m.flags, with_bn.flags, use_bn),
    select(lo_rest, lo_rest + rest, class_bits(rest) == 0u),
  );
}

// |v| lane by lane, 0 for NaN and the infinities (by bits: no float Inf arithmetic).
fn finite_abs(v: vec4<f32>) -> vec4<f32> {
  let b = bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu);
  return select(bitcast<vec4<f32>>(b), vec4<f32>(0.0), b >= vec4<u32>(0x7f800000u));
}

// v * 2^k lane by lane (exact while normal; see scale2).
fn scale2v(v: vec4<f32>, k: i32) -> vec4<f32> {
  return vec4<f32>(scale2(v.x, k), scale2(v.y, k), scale2(v.z, k), scale2(v.w, k));
}

// The Grad of a wide row whose gamma = gamma' 2^g was kept apart (gamma s may pass float32's
// range; gm, gv and the dots are mantissas formed with gamma', their exponents carry g), every
// field in a unit of its own, for rows of layout "nd" whose gm, gv or sums could leave float32
// otherwise (sn_bwd_rows' wide_row): the dots can pass float32's range where the logit gradients
// do not (they cancel across rows and terms), or lie far below the unit of dy. The channel
// records only use s.zw of such sums, the sample records only the dots. gm = s.x 2^e0, gv = s.y 2^e1,
// the mean dots a in units of 2^(d + ea) and the variance dots b of 2^(d + eb) lane by lane,
// dgamma (s.z) of 2^(d + ez) and dbeta (s.w) of 2^d. The record's unit 2^(d + k) puts the
// largest mean dot at 2^100, and each other mean dot a.x, a.y, a.z takes a unit of its own
// below it that puts it at 2^100 too (Grad.low: lanes ~2^226 below the largest were flushed in
// one unit, attack fuzzer seed 392); the variance dots likewise below a unit 2^(d + kb) of
// their own, and the pair (dgamma, dbeta) a unit of its own.
fn grad_units(s: vec4<f32>, a: vec4<f32>, b: vec4<f32>, e0: i32, e1: i32, d: i32, ea: vec4<i32>, eb: vec4<i32>, ez: i32) -> Grad {
  // Non-finite dots (NaN or infinite dy) stay as they are (scale2) and do not set k; the dots'
  // exponents by their bits (lane_exp: a subnormal one counts, scale2 takes it exactly).
  let lt = lane_tops(a, ea);
  let lb = lane_tops(b, eb);
  let dots_a = max(max(lt.x, lt.y), max(lt.z, lt.w));
  let dots_b = max(max(lb.x, lb.y), max(lb.z, lb.w));
  // The unit puts the largest field at 2^100 (k = 0 before: the unit of dy), so that fields far
  // below it keep 2^226 of range: variance dots ~2^-140 in the unit of dy 1e15 beside mean dots
  // and dbeta near 1 (gamma 1e-6 or 1, rows of std 1e-19 under eps 1e-5) were flushed to 0. Layout
  // "nd" reads a row's dy unit from RowGrad, not from this unit; grad_add_scaled aligns units far
  // apart. A record without a finite nonzero field (an infinite dy's) keeps the unit of dy, so
  // that no factor aligning it with another record's unit is 0 (Inf * 0).
  // The variance dots take a unit 2^(d + kb) of their own (Grad's eb), and dgamma and dbeta one
  // of 2^(d + kc) (Grad's ec), by the same rule.
  // (dbeta, s.w, stays in the unit of dy: Grad's spare.)
  // (lane_exp: a subnormal dgamma counts, else it took the dots' unit, passing float32's range.)
  let xz = lane_exp(s.z);
  let top_c = select(-2000, xz + ez, xz > -1000);
  let k = select(0, max(dots_a - 100, -400), dots_a > -2000);
  let kb = select(k, max(dots_b - 100, -400), dots_b > -2000);
  let kc = select(k, max(top_c - 100, -400), top_c > -2000);
  // Each dot's own unit, at most its record's (grad_finish takes them as offsets below it).
  let ku = select(vec3<i32>(k), min(vec3<i32>(k), lt.xyz - 100), lt.xyz > vec3<i32>(-2000));
  let kbu = select(vec3<i32>(kb), min(vec3<i32>(kb), lb.xyz - 100), lb.xyz > vec3<i32>(-2000));
  let s2 = vec4<f32>(s.x, s.y, scale2(s.z, ez - kc), s.w);
  let a2 = vec4<f32>(scale2(a.x, ea.x - ku.x), scale2(a.y, ea.y - ku.y), scale2(a.z, ea.z - ku.z), scale2(a.w, ea.w - k));
  let b2 = vec4<f32>(scale2(b.x, eb.x - kbu.x), scale2(b.y, eb.y - kbu.y), scale2(b.z, eb.z - kbu.z), scale2(b.w, eb.w - kb));
  return grad_finish(0u, s2, a2, b2, e0, e1, d + k, vec3<i32>(d) + ku, d + kb, vec3<i32>(d) + kbu, d + kc, d);
}

// The exponents of v's lanes in units of 2^e (lane_exp's, plus e), -2000 for a lane that is 0,
// NaN or infinite.
fn lane_tops(v: vec4<f32>, e: vec4<i32>) -> vec4<i32> {
  let x = vec4<i32>(lane_exp(v.x), lane_exp(v.y), lane_exp(v.z), lane_exp(v.w));
  return select(vec4<i32>(-2000), x + e, x > vec4<i32>(-1000));
}

// The exponent of a finite nonzero v by its bits (subnormals included: bits_exponent), -1000
// for 0, NaN and the infinities.
fn lane_exp(v: f32) -> i32 {
  return select(-1000, bits_exponent(v), class_bits(v) == 0u);
}

// Whether an unscaled mix's mean lies below 2^-100 though some weighted mean w_k mu_k is not 0
// (by exponents alone: float32 may have flushed it): a mean weight below float32's normal range
// times a running_mean of 1 over a row of 0 (mu ~8.2e-39). Its products dy (x - mu) lie below
// float32's normal range where dgamma = s S2 need not (s 1e15 under eps 1e-30: 0 for 8.7e-24,
// subnormal_dy_sweep seed 47): wide rows of 0 (sn_bwd_rows' wide_row) and wide elements
// (sn1d_bwd_element) take x - mu from fine_mean, in the mean's unit. Where any weighted mean
// reaches 2^-100 the mix keeps its arithmetic (the tiny parts lie below its precision there).
fn mean_tiny(t0: Term, t1: Term, t2: Term) -> bool {
  let em = max(max(weighted_mean_exp(0u, t0), weighted_mean_exp(1u, t1)), weighted_mean_exp(2u, t2));
  return (em > -900) & (em < -100);
}

// An exponent of w_k mu_k (term t, weight index k) within 2 of its size, -1000 where either is 0.
fn weighted_mean_exp(k: u32, t: Term) -> i32 {
  let em = max(finite_exponent_of(t.hi), finite_exponent_of(t.lo)) + unit_of(t.flags);
  return select(exponent_of(P.wmean[k]) + P.wmean_e[k] + em, -1000, (P.wmean[k] == 0.0) | (em < -900));
}

// Whether a row's x are all 0 (its IN summary: shift, mean about it and M2 all 0, by their bits).
fn zero_row(p: Partial) -> bool {
  return ((bitcast<u32>(p.shift) | bitcast<u32>(p.mean) | bitcast<u32>(p.m2)) << 1u) == 0u;
}

// The far exponent f of a row's mixed mean (hi, lo) (see sn_bwd_wide_reduce): 0 while
// |lo| <= 2^60 (every in-range row: |x - mu| then stays below 2^62), else what brings |lo| to 2^60.
fn far_exp(lo: f32) -> i32 {
  return max(0, finite_exponent_of(lo) - 60);
}

// The near exponent f < 0 of a segment (sn_bwd_wide_reduce) whose products dy (x - mu) all lie
// below 2^-90, from bounds of their factors' exponents: |x - mu| < 2^(max(xb, hi's, lo's) + 2)
// (xb: x's largest field in the unit), |dy| < 2^(dx + 1): f puts the largest product near 2^4
// (at most 2^-120 below, so that 2^-f stays a normal power of two). 0 otherwise, and for every
// segment whose products reach 2^-90, in-range ones included (their arithmetic is unchanged),
// and for a segment whose dy are all 0 (dx -1000 and below): its products are 0, and 2^-f of
// its bound took x - mu far from the data to +-Infinity, 0 times that NaN (an evaluation on a
// running_mean of -2e24 over rows of std ~1, dy = 0: dgamma, var_weight's gradient and every
// dx of the sample NaN, nd fuzzer FUZZ_ZERO_WEIGHTS=1 seed 290).
fn near_exp(xb: i32, hi: f32, lo: f32, dx: i32) -> i32 {
  let top = max(xb, max(exponent_of(hi), exponent_of(lo)) + 1) + 1 + dx + 1;
  return select(0, max(top - 4, -120), (top < -90) & (dx > -900));
}

// The far exponent f > 0 of a scaled row's segment (sn_bwd_wide_reduce) whose products dy' (x' -
// mu') may pass 2^100 in the mix's unit, from the same bounds as near_exp (xb: x's largest field
// in the unit; dx: dy' 's exponent): f brings the largest to 2^100, so that the segment's sums
// stay within float32. The mix's unit holds its weighted terms and the row's own IN mean, not
// its data's spread: a row of +-3.4e38 whose IN mean is exactly 0, of weight 0, evaluated on a
// running_mean of 0.5 and a running_var of 1 (unit 2^0) had dy' ~1 times x' ~3.4e38 overflow,
// S2 NaN and every dx of its sample NaN through its gv times an LN variance weight of 0 (attack
// fuzzer seed 99545; with an IN mean of 6.8e35 the unit holds it, 2^119). 0 otherwise.
fn over_exp(xb: i32, hi: f32, lo: f32, dx: i32) -> i32 {
  let top = max(xb, max(exponent_of(hi), exponent_of(lo)) + 1) + 1 + dx + 1;
  return select(0, top - 100, (top > 100) & (dx > -900));
}

// bparts' fourth word: the dy unit D (bits 0..15, signed: part_d; -126 for a segment of
// subnormal dy, the exponent of its largest |dy| for one of low_products or a scaled row's low
// dy, else >= 0) and the far or near exponent f (bits 16..31, signed: part_f).
fn part_units(d_unit: i32, f: i32) -> u32 {
  return (u32(d_unit) & 0xffffu) | (u32(f) << 16u);
}

fn part_d(w: u32) -> i32 {
  return (i32(w) << 16u) >> 16u;
}

fn part_f(w: u32) -> i32 {
  return i32(w) >> 16u;
}

// bparts' fourth word of a segment sn_bwd_reduce does not list (its D and f are 0): PART_MX |
// the float32 exponent field of the segment's largest |dy| (0: every dy 0), which sn_bwd_rows
// reads for a wide row's dy unit (wide_dy_unit); no word of part_units has these high bits
// (its f lies within +-1000). part_word reads such a word as 0, the units it stands for.
const PART_MX: u32 = 0x40000000u;

// bparts' fourth word of a segment sn_bwd_reduce lists for low_products alone (else 0 there), for
// sn_bwd_wide_reduce, which writes the word again: the reason travels with the segment rather
// than being formed again from the statistics there (a float32 bound on the edge could differ).
const PART_LOW: u32 = 0x20000000u;

// bparts' fourth word of a segment sn_bwd_reduce lists only because its S2 in units of 1 may
// have lost its terms below float32's normal range (sn_bwd_reduce's `lifted`): sn_bwd_wide_reduce
// sums it again in the unit of its largest |dy| and writes the word anew.
const PART_LIFT: u32 = 0x10000000u;

fn part_word(w: u32) -> u32 {
  return select(w, 0u, (w & 0xffff0000u) == PART_MX);
}

// The exponent of a segment's largest |dy|: from PART_MX, or from MX, which a listed segment
// keeps in its third word (sn_bwd_wide_reduce writes it back); -127 for 0 or subnormal, 128 for
// a NaN or infinity.
fn part_mx_exp(rec: vec4<u32>) -> i32 {
  let field = select((rec.z >> 23u) & 0xffu, rec.w & 0xffu, (rec.w & 0xffff0000u) == PART_MX);
  return i32(field) - 127;
}
