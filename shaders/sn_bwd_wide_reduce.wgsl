// sn_bwd_wide_reduce.wgsl: backward step 1b of layout "nd", after sn_bwd_reduce: the segments
// whose sums float32 cannot hold as they are, summed again in scaled units. Segment s of row r:
//   - the row's statistics are scaled (F_SCALED: a wide row or group, unit 2^E of its mix,
//     wide_map): x is taken as x' = x * 2^-E and the mixed mean (hi', lo') in that unit;
//   - or its largest |dy| (MX from sn_bwd_reduce) passes DY_MAX: dy is taken as
//     dy' = dy * 2^-D, D = dy_unit(MX) (sums of dy ~ 3e38 would overflow float32);
//   - or its S2 in units of 1 may have lost its terms below float32's normal range (PART_LIFT,
//     sn_bwd_reduce's `lifted`): D is MX's exponent where MX < 1.
// Then S1' = sum dy', S2' = sum dy' ((x' - hi') - lo') (S2' = 0 for a flagged row), in blocks
// of 64 added up, and bparts[s] = (S1', S2', MX, D | f << 16): S1 = 2^D S1', S2 = 2^(D + E + f) S2',
// where f > 0 only for a mixed mean far from the data (|lo| beyond 2^60 in the mix's unit,
// far_exp: an evaluation on a running_mean ~1e38 over a std of 1), whose x - mu is taken in
// units of 2^f (the products dy (x - mu) would overflow float32), and f < 0 only for a scaled
// row whose products dy (x - mu) all lie far below float32's normal range (near_exp).
// x' and dy' are formed from the bits (scale2), exact. The segments come from a list that
// sn_bwd_reduce fills; a thread each.

//!include common.wgsl
//!include backward_common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<Partial>;
@group(0) @binding(4) var<storage, read> groups: array<Group>;
@group(0) @binding(5) var<storage, read_write> bparts: array<vec4<u32>>;
// The segments to sum again: a count, then the segments (sn_bwd_reduce).
@group(0) @binding(6) var<storage, read> wide_segs: array<u32>;
@group(0) @binding(7) var<storage, read_write> seg_lo: array<f32>; // sn_bwd_reduce's S1 low words

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  // Blocks of 64 listed segments, a thread each, taken by the workgroups in turn: the loop's
  // bound is one load from one address, so without such segments lavapipe skips its code.
  let count = wide_segs[0];
  for (var base = linear_group(wid, nwg) * 64u; base < count; base += nwg.x * nwg.y * 64u) {
    if (base + lid < count) {
      let seg = wide_segs[LIST_FIRST + base + lid];
      if (seg >= P.seg_first && seg < P.seg_end) {
        reduce_wide(seg);
      }
    }
  }
}

fn reduce_wide(seg: u32) {
  let row = seg / P.chunks;
  let n = row / P.c;
  let c = row - n * P.c;
  let rec = bparts[seg - P.row_base * P.chunks];
  let mx = bitcast<f32>(rec.z);
  let p = rows[row - P.row_base];
  let ln = groups[n - P.row_base / P.c];
  // Loaded either way and zeroed without usingBN (see sn_mix.wgsl).
  let use_bn = (P.flags & P_USING_BN) != 0u;
  let bn = select_group(groups[select(n - P.row_base / P.c, P.n + c - P.stat_bn_base, use_bn)], use_bn);
  let scaled = is_scaled(p.flags | ln.flags | bn.flags);
  let row_start = row * P.m;
  let s = row_start + (seg % P.chunks) * P.seg_len - P.elem_base;
  let end = min(s + P.seg_len, row_start + P.m - P.elem_base);
  // A NaN or infinite dy (MX not finite, sn_bwd_reduce lists such segments too): the unit from
  // the finite |dy|, whose float32 sum may overflow on its own (values near 3e38 beside a
  // +Infinity summed to -Infinity + Infinity: dbias NaN for the reference's +Infinity, nd fuzzer
  // FUZZ_INJECT=1 seed 65).
  var mxf = mx;
  if (class_bits(mx) != 0u) {
    mxf = 0.0;
    for (var i = s; i < end; i++) {
      let a = abs(dy[i]);
      mxf = select(mxf, max(mxf, a), class_bits(a) == 0u);
    }
  }
  let big = mxf > DY_MAX;
  // Every dy subnormal (sn_bwd_reduce lists such segments): the unit 2^-126, in which they are
  // normal.
  let tiny = is_subnormal_bits(mxf);
  let plain = nd_mix(p, ln, bn);
  // A segment of a NaN or infinite dy is summed again here in any case, with the reference's
  // terms dy ((x - hi) - lo): sn_bwd_reduce takes lo S1 off once, which needs finite sums, so its
  // sum dy (x - hi) kept Inf * 0 (NaN) where x = hi and an infinity of the wrong sign where x - hi
  // and x - mu differ in sign (regression hunt helper-63: dgamma NaN or +Infinity for -Infinity).
  // An unscaled row's segment of products dy (x - c) all below 2^-90 (sn_bwd_reduce listed it
  // for low_products, PART_LOW): dy in the unit of its largest, where the products are normal.
  // (A segment listed for its S2 alone, PART_LIFT: summed again in the unit of its largest
  // |dy|, below.)
  let low = rec.w == PART_LOW;
  let lifted = rec.w == PART_LIFT;
  if (!lifted && !scaled && !big && !tiny && !low && far_exp(plain.lo) == 0 && class_bits(mx) == 0u) {
    return;
  }
  // A scaled row's segment whose largest |dy| lies below 2^-60 (normal): the unit of that dy, in
  // which its subnormal dy are normal (lavapipe read them as 0 in units of 1: dy -2.8e-42 beside
  // 4.4e-31 times x - mu of -4.7e28 over a std of 1e5 lost 1.3e-18 of dgamma's 4.9e-17, 120x its
  // tolerance, attack fuzzer seed 2602).
  let mx_e = exponent_of(mxf);
  let low_dy = scaled & !big & !tiny & (mx_e < -60) & (mx_e > -200);
  // A segment listed for its S2 alone (sn_bwd_reduce's `lifted`: an unscaled row whose S2 in
  // units of 1 may have lost its terms below float32's normal range): the unit of its largest
  // |dy| where that lies below 1, in which subnormal dy beside dy of ~1e-20 are normal, its
  // subnormal dy left below that taken 2^64 higher (sub_seg), and S2 in a unit 2^k lower.
  let lift_dy = lifted & !scaled & !big & !tiny & (mx_e < 0);
  let d_unit = select(select(dy_unit(select(0.0, mxf, big)), -126, tiny), mx_e, low_dy | low | lift_dy);
  var e = 0;
  var hi: f32;
  var lo: f32;
  var keep: bool;
  var fm = FineMean(0.0, 0.0, 0, false, false);
  var mu2 = vec2<f32>(0.0);
  var mu3 = vec2<f32>(0.0);
  var cancel = false;
  if (scaled) {
    let t0 = nd_terms_in(p);
    let t2 = select_term(group_term(bn), use_bn);
    let w = wide_map(t0, group_term(ln), t2, 1.0, 0.0);
    e = w.e;
    hi = w.hi;
    lo = w.lo;
    keep = !w.bad;
    fm = fine_mean(t0, group_term(ln), t2, e, fine_words(w));
    // hi (term 0's mean, whatever its weight) and lo cancel more than 2^8 to mu: see `cut`.
    // (Not 2^24: lo rounded to a multiple of hi's ulp that is not 0 cancels by 23 bits.)
    mu2 = two_sum(hi, lo);
    cancel = exponent_of(mu2.x) < max(exponent_of(hi), exponent_of(lo)) - 8;
    // There mu's pair from lo's exact parts (wide_lo_pair), as sn_wide_normalize takes it: lo
    // alone rounds to hi's ulp, which may hold most of mu (see `cut`).
    if (cancel) {
      let mp = wide_lo_pair(t0, group_term(ln), t2, w);
      let mq = two_sum(hi, mp.x);
      mu3 = two_sum(mq.x, mq.y + mp.y);
      mu3 = select(mu2, mu3, (class_bits(mu3.x) | class_bits(mu3.y)) == 0u);
    }
  } else {
    // About c = long_centre in rows longer than one segment, as sn_bwd_reduce takes them (not
    // for a mean far from the data: x - mu is then taken in units of 2^f, below).
    // Else about f32(mu) (mu's float32 pair, two_sum), not the row's shift: x - shift rounds as
    // |x - shift|, far beyond x - mu's where the mix takes its mean elsewhere (long_centre).
    let long = P.chunks > 1u && far_exp(plain.lo) == 0;
    let mu = two_sum(plain.hi, plain.lo);
    hi = select(mu.x, long_centre(plain, p), long);
    lo = select(mu.y + mix_rest(plain), 0.0, long);
    // A mix whose float32 var + eps is 0 or subnormal (mix_var_below_normal: a tiny variance
    // weight; sn_bwd_rows' wide_row takes its std from wide_map) keeps its sums too, as
    // sn_bwd_reduce keeps them: mixed_bad read a var + eps of 0 as a std of 0 and left S2 0, gv
    // and dgamma with it (attack fuzzer seeds 39466, dy +-2e38 under a variance weight of
    // 3.8e-46: `var_weight`'s gradient 0 for +-1.2e16; and 34110, dy ~1e-31 listed by
    // low_products under a weight of e^-174: dgamma 0 for 2.9e8; found apart by two helpers;
    // tests/tiny_variance_wide_reduce_test.ts, tests/tiny_variance_summed_again_test.ts).
    keep = !mixed_bad(plain) | (((plain.flags & F_CLASS) == 0u) & mix_var_below_normal(plain));
  }
  // x - mu in units of 2^f where the mixed mean lies far from the data (far_exp), or, for a
  // scaled row, where every product dy (x - mu) lies far below float32's normal range in the
  // mix's unit (f < 0, near_exp: rows of std 1e-27 under a running_var of 1e-8, dy 1e-12).
  // A fine mean (fm.ok: hi and lo lie below float32's normal range there, flushed) bounds
  // |mu| by 2^fm.e itself, and gives the near unit its mean: in the mix's unit its hi and lo
  // were 0 (an evaluation of a row of ~1e-31 of mean -3.7e-32 beside LN variances ~5e57: x - mu
  // was x, S2 0.33 of itself, dx of the sample's other rows 13x through the LN's sum of dL/dvar,
  // attack fuzzer seed 1296).
  let xb = i32(max_field(p.flags)) - 126 - e;
  let near_xb = select(xb, max(xb, fm.e - e), fm.ok);
  let dy_e = exponent_of(scale2(mxf, -d_unit));
  let near = near_exp(near_xb, hi, lo, dy_e);
  var f = select(far_exp(select(lo, plain.lo, !scaled)), near, scaled && near < 0);
  // (And a scaled row's x far above its mix's unit: over_exp.)
  f = select(f, max(f, over_exp(near_xb, hi, lo, dy_e)), scaled && f >= 0);
  // A scaled row whose hi and lo cancel (an evaluation on a running_mean of 0 of weight ~1
  // beside a row's IN mean of -1.2e28, of weight 0, in the unit 2^-29) where fine_mean does not
  // take x - mu (a mean of 0; or f != 0: |lo| passes 2^60, far_exp): (x 2^-e - hi) - lo rounded
  // x - mu to hi's ulp, and 2^-f flushed the rest: dy 4.4e-31 times x - mu of -0.98 over a std
  // of 1e5 was 0 of dgamma's -4.4e-36 (seed 2602's evaluation with its subnormal dy at 0, 46x
  // its tolerance). x - mu is then taken from mu's float32 pair (mu3), as the unscaled rows
  // take it, in units of 2^f from the products' bounds (x's exponent field, dy's): the largest
  // near 2^100 at most, x 2^-(e + f) and mu 2^-f within float32.
  let cut = cancel & keep & !(fm.ok & (f == 0)) & (class_bits(mx) == 0u);
  // A cut whose mean is lost (below) and whose fine mean is flushed in the unit 2^e too (mu
  // below float32's normal range there): x - mu from the fine mean in the near unit, as the
  // uncut rows take it (fine_near).
  var fine_cut = false;
  if (cut) {
    let lost = (mu2.x == 0.0) & (hi != 0.0);
    hi = mu3.x;
    lo = mu3.y;
    // mu from the fine mean where hi + lo cancelled to 0 from hi != 0 and the fine mean is not
    // 0 in the unit 2^e: hi + lo lost mu itself there, the heavier term's weighted difference to
    // hi rounded at hi's ulp (an evaluation on a running_mean of 1 of weight 1 beside a row of 0
    // but one x of 1e20, its IN mean of weight 0 in the unit 2^-58: lo = -hi, mu 0, dgamma 0 for
    // -1 under dy 1 at an x of 0, partial_zero_sweep seed 968). Not where hi + lo is not 0: the
    // pair is the finer where lo is exact (the fine mean there made attack fuzzer seed 2847's
    // dgamma 83x its tolerance). A mean rounded to a multiple of hi's ulp that is not 0 (a
    // running_mean of 3e11 there: mu 2^39, dgamma -5.5e11 for -3e11) takes mu3, the pair from
    // lo's exact parts.
    if (fm.finite & (fm.e > -900) & lost) {
      let ph = scale2(fm.hi, fm.e - e);
      let pl = scale2(fm.lo, fm.e - e);
      let mf = two_sum(ph, pl);
      if (exponent_of(mf.x) > -1000) {
        hi = mf.x;
        lo = mf.y;
      }
      // hi + lo and the fine mean in the unit 2^e both flushed (an evaluation of rows of
      // +-1e-37 of mean ~-1e-38 under a BN std of 1.2e19, unit 2^1, dy ~1e37: x - mu was x,
      // dgamma 0.09x its value on a flushing GPU, attack fuzzer seed 245751). Also where one word
      // of it lies below float32's normal range there (a subnormal fm.lo 2^(fm.e - e) flushed
      // beside a normal fm.hi: mu taken as the anchor's mean alone, x - 2 mu for an LN mean of
      // weight 1/2 beside a running_mean of 0, var_weight's gradient 0.84x on SwiftShader with
      // NVIDIA's division emulated; tests/flushed_fine_cut_test.ts). And not only where the fine
      // mean's anchor is nonzero: an anchor of 0 (a running_mean of 0 of weight 0.79 beside LN
      // means of 1e-37, a mean of 2.1e-38 all in the fine mean's lo; dgamma 1.27x its value,
      // attack fuzzer seed 270920).
      let sub = (exponent_of(mf.x) == -1000) | ((fm.hi != 0.0) & (exponent_of(ph) == -1000)) |
        ((fm.lo != 0.0) & (exponent_of(pl) == -1000));
      fine_cut = fm.ok & sub & ((fm.hi != 0.0) | (fm.lo != 0.0));
    }
    let eh = exponent_of(hi);
    var pb = -1000;
    for (var i = s; i < end; i++) {
      let d = scale2(dy[i], -d_unit);
      let top = max(bits_exponent(x[i]) - e, eh) + bits_exponent(d) + 2;
      pb = select(pb, max(pb, top), d != 0.0);
    }
    f = max(max(pb - 100, xb - 120), max(eh - 100, -120));
  }
  let ff = pow2(-f);
  // There x - mu from x 2^-(e + f), hi 2^-f and lo 2^-f: x 2^-e, then 2^-f, flushed the
  // elements below float32's normal range in the mix's unit (data ~1e-38 over a std of 1.2e19,
  // whose unit lies 2^62 below the std's at most: those below 2^-125 lost from dgamma, 54x its
  // tolerance, attack fuzzer seed 2847).
  let near_x = scaled & ((f < 0) | cut);
  let fine_near = fm.ok & (!cut | fine_cut);
  let hi_near = select(scale2(hi, -f), scale2(fm.hi, fm.e - e - f), fine_near);
  let lo_near = select(scale2(lo, -f), scale2(fm.lo, fm.e - e - f), fine_near);
  // A mean far below the mix's unit (fine_mean, as sn_wide_normalize takes it): x - mu in the
  // mean's unit 2^fm.e for the elements below 2^(fm.e + FINE_X) (S2 f), x alone in the mix's
  // unit above (S2 c); S2 in the unit 2^fm.e (f = fm.e - e) where no element above has a
  // nonzero product, else in 2^e (f = 0) with S2 f brought there.
  // And where the near unit 2^(e + f) cannot hold that mean (f is at least -120, so that 2^-f
  // stays normal: hi_near and lo_near at most 2^-100, flushed more than ~2^246 below the mix's
  // unit): x - mu of the elements near mu in fine_mean's unit too, those above as the near
  // path takes them, x 2^-(e + f) (a row of 0 under a mix of unit ~2^123, set by an x of
  // 1.6e38, whose mean of -4.9e-42 is BN's: S2 = -mu S1 was 0, `var_weight`'s gradient 0 for
  // -1.4e-30 on the LN logit, partial_zero_sweep seed 3915).
  let near_lost = fine_near & (f < 0) & (fm.e - e - f < -100);
  let fine = fm.ok & ((f == 0) | near_lost) & (!cut | fine_cut);
  var s1 = 0.0;
  var s2 = 0.0;
  var s2f = 0.0;
  // A scaled row's dy that dy' flushed (subnormal beside normal ones, D = 0) times x - mu: their
  // products in units of 2^-64 (s2s), added below.
  let sub_seg = scaled | lifted;
  var s2s = 0.0;
  for (var b = s; b < end; b += 64u) {
    var b1 = 0.0;
    var b2 = 0.0;
    var bf = 0.0;
    for (var i = b; i < min(b + 64u, end); i++) {
      let d = scale2(dy[i], -d_unit);
      let xv = x[i];
      // (and whose product with dy' stays below 2^100: the sums stay within float32; a finite
      // dy' lies below 2^41, so only x 2^60 above mu passes it. An infinite dy' (exponent 128)
      // stays here: x alone gave its product x's sign, not x - mu's, or an infinity for NaN at
      // x = mu (dgamma NaN for -Infinity, tests/fine_mean_large_dy_test.ts).)
      let ex = bits_exponent(xv) - fm.e;
      let dx_e = bits_exponent(d);
      let small = fine & (ex < FINE_X) & ((ex + dx_e < 100) | (dx_e == 128));
      let xs = scale2(xv, -e);
      b1 += d;
      let xm = select(select((xs - hi) - lo, xs, fine) * ff, (scale2(xv, -e - f) - hi_near) - lo_near, near_x);
      b2 += select(0.0, d * xm, keep & !small);
      bf += select(0.0, d * ((scale2(xv, -fm.e) - fm.hi) - fm.lo), keep & small);
      if (sub_seg && keep && !small && ((bitcast<u32>(d) << 1u) == 0u) && ((bitcast<u32>(dy[i]) << 1u) != 0u)) {
        s2s += scale2(dy[i], 64 - d_unit) * xm;
      }
    }
    s1 += b1;
    s2 += b2;
    s2f += bf;
  }
  // S2 f in the unit 2^(e + f): where it, S2 and the kept-apart products below (s2s) all lie
  // below 2^-90 there, the three are added in a unit 2^k lower (the largest near 2^100): S2 f
  // brought to 2^(e + f) alone flushed (an evaluation of a row spanning 6e29 under a mean of
  // 2.5e-9, dy 3e38 at an x of 1e-9: 2^-127 of the mix's unit, beside the dy of 1 at 6e29
  // subnormal in dy's unit, s2s: dgamma 3.7e10 for 9.7e9; or beside a dy of 1e3 there, S2
  // 2^-117: 0.1% of dgamma lost; tests/fine_mean_large_dy_test.ts).
  if (fine) {
    let only_small = (s2 == 0.0) & (s2s == 0.0);
    let g = fm.e - e - f;
    let top = max(max(bits_exponent(s2), bits_exponent(s2f) + g), bits_exponent(s2s) - 64);
    let fin = (class_bits(s2) | class_bits(s2f) | class_bits(s2s)) == 0u;
    let lift = !only_small & fin & (top < -90);
    let k = select(0, min(100 - top, 250), lift);
    let lifted = scale2(s2, k) + scale2(s2f, g + k) + scale2(s2s, k - 64);
    s2 = select(select(s2 + scale2(s2f, g), lifted, lift), s2f, only_small);
    s2s = select(s2s, 0.0, lift);
    f = select(f - k, fm.e - e, only_small);
  }
  // Subnormal dy beside normal ones in a scaled row: dy' 0 in units of 1, where dy (x - mu) was
  // not small (dy -4e-44 times an x of -9e19 in a row of 0 otherwise, over a std of 2.3e19 under
  // gamma 1e30: S2 ~4e-24 lost, dx 3% of its term scale off, partial_zero_sweep seed 484; dgamma
  // 0 for 1e-12 for dy 1e-42 at an x of 1e30). Where f <= 0 S2 is then taken in a unit 2^k
  // lower (k <= 64, while S2's words stay below 2^100), a near exponent f - k; a far exponent
  // (f > 0: x - mu in units of 2^f) is kept, the products added in its unit.
  if (sub_seg & (s2s != 0.0) & (class_bits(s2s) == 0u) & (class_bits(s2) == 0u)) {
    let k = select(clamp(100 - finite_exponent_of(s2), 0, 64), 0, f > 0);
    s2 = scale2(s2, k) + scale2(s2s, k - 64);
    f -= k;
  }
  // A segment listed for its S2 alone that stays in units of 1 (its largest |dy| at 1 or above,
  // no subnormal dy's product kept apart) is written as sn_bwd_reduce writes an unlisted one
  // (PART_MX, S2's low word 0): its row may be a pair row, which reads the third word as S2's
  // low word (MX there: NaN dx, partial_zero_sweep seed 110).
  // So is one listed for low_products alone whose largest |dy| lies in [1, 2) (its D, that dy's
  // exponent, is 0): a row of 0 under a mixed mean of -1.6e-38 beside dy 1.45 (an evaluation,
  // eps 1.2e-38) was read as a pair row with MX as S2's low word: dgamma 2.0e10 = s MX for
  // -1.7e-11 (partial_zero_sweep seed 1620).
  let as_plain = (lifted | low) & (d_unit == 0) & (f == 0);
  let third = select(rec.z, 0u, as_plain);
  let units = select(part_units(d_unit, f), PART_MX | (rec.z >> 23u), as_plain);
  bparts[seg - P.row_base * P.chunks] = vec4<u32>(bitcast<u32>(s1), bitcast<u32>(s2), third, units);
  seg_lo[seg - P.row_base * P.chunks] = 0.0; // S1 in one float32 here (sn_bwd_reduce)
}
