// sn_bwd_coef.wgsl: backward step 4 of layout "nd", one thread per row r = n*C + c: the affine
// map of (dy, x) that sn_bwd_dx applies to the row. With gm, gv the row's sums (sn_bwd_rows),
// (GmL, GvL) = groups[n] and (GmB, GvB) = groups[N + c] (sn_bwd_groups; under SyncSN the
// global batch's, written back by the CPU), NB = Params.batch:
//   Gvar_in = v0*gv + v1*GvL/C + v2*GvB/NB
//   Gmu_in  = w0*gm + w1*GmL/C + w2*GmB/NB
//             + v1*(2/C)*(mu_in - mu_ln)*GvL + v2*(2/NB)*(mu_in - mu_bn)*GvB
//   (the BN terms only in training with BN; in evaluation BN statistics are constants)
//   dx = dy * gamma*s + Gmu_in/M + Gvar_in * 2*(x - mu_in)/(M - 1)
//      = dy * gs + (x - K) * B + A,  gs = gamma*s,  B = 2*Gvar_in/(M - 1),
//        A = Gmu_in/M - B*lo_in,  K = hi_in     (mu_in = K + lo_in, the row's shift and mean)
//   coef[r] = (gs, B, A, K), with A replaced by NaN where the reference's dx is NaN: the row,
//   its sample (GmL/GvL) or, when BN depends on x, its channel (GmB/GvB) is flagged, or M = 1.
// Wide rows (scaled statistics in unit 2^E, gradient sums with exponents, Grad, or a
// factor-wide gamma / std, common.wgsl, whose gamma = gamma' 2^G enters gs as 2^G): the terms
// of Gvar_in and Gmu_in are added as mantissa-exponent pairs (xf_add), and the map, for
// sn_bwd_wide_dx (D: the row's dy unit), is
//   coef[r] = (gs 2^(D - U), B 2^(u - U + 32 S), A 2^-U,
//              WIDE_MARK | (D + 512) | (U + 512) << 10 | S << 21 | A_FAR?)
// for dx = 2^U (dy 2^-D gs' + (x 2^-(u + 32 S) - K 2^-32 S) B' + A'), S < 4 (0 but where B
// 2^(u - U) would fall below float32's normal range), u the row's own unit (its summary's, as
// is K), U a unit in which the three terms are at most 2^64 (they can lie far apart: a row
// whose own s is tiny beside its channel's BN terms), A' 2^A_LIFT higher with A_FAR (bit 31)
// where A 2^-U lies below 2^-100. Rows whose Gvar_in or Gmu_in is not
// finite (an infinite dy) take that map too, with INF_MARK and D = U = 0: see wide_coef.
// Words are u32 (the mark survives as bits).
// Rows seg_first .. seg_end - 1 per dispatch; grads is bound from row elem_base on (windows, as
// in sn_bwd_rows), bgroups from record rec_base on, cgroups from record chan_base on.

//!include common.wgsl
//!include backward_common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> grads: array<RowGrad>; // with the row's dy unit
@group(0) @binding(2) var<storage, read> bgroups: array<Grad>;
@group(0) @binding(3) var<storage, read> rows: array<Partial>;
@group(0) @binding(4) var<storage, read> groups: array<Group>;
@group(0) @binding(5) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
@group(0) @binding(6) var<storage, read_write> coef: array<vec4<u32>>;
// The channel records of bgroups (the same buffer; bgroups binds the samples' records).
@group(0) @binding(7) var<storage, read> cgroups: array<Grad>;
// Wide rows for sn_bwd_wide_dx: a count (0 when the call starts), then the rows.
@group(0) @binding(8) var<storage, read_write> wide_rows: array<atomic<u32>>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let r = P.seg_first + linear_group(wid, nwg) * 64u + lid;
  if (r >= P.seg_end) {
    return;
  }
  let n = r / P.c;
  let c = r - n * P.c;
  let p = rows[r - P.row_base];
  let ln = groups[n - P.row_base / P.c];
  // A load under a branch on a uniform leaks per dispatch on lavapipe (see sn_mix.wgsl): load
  // an in-bounds entry either way, and zero it without usingBN.
  let use_bn = (P.flags & P_USING_BN) != 0u;
  let bn = select_group(groups[select(n - P.row_base / P.c, P.n + c - P.stat_bn_base, use_bn)], use_bn);
  let m = nd_mix(p, ln, bn);
  let rg = grads[r - P.elem_base];
  let row = grad(rg.s, rg.a, rg.b, rg.flags, rg.units);
  let lg = bgroups[n - P.rec_base];
  let cf = f32(P.c);
  let s = inv_std(m);
  var gvar = weighted_var(0u, P.wvar[0] * row.s.y) + weighted_var(1u, fdiv_n(P.wvar[1] * lg.s.y, cf));
  var gmu = weighted_mean(0u, P.wmean[0] * row.s.x) + weighted_mean(1u, fdiv_n(P.wmean[1] * lg.s.x, cf)) +
    weighted_var(1u, P.wvar[1] * fdiv_n(2.0, cf) * select(((p.shift - ln.hi) + p.mean) - ln.lo, 0.0, P.c == 1u) * lg.s.y);
  var bad = mixed_bad(m) || ((row.flags | lg.flags) & G_BAD) != 0u || P.m < 2u;
  // The BN terms, where BN depends on x: formed either way from an in-bounds entry and
  // selected, not branched on (see sn_mix.wgsl).
  let bn_x = bn_depends_on_x();
  let bg = cgroups[select(0u, P.n + c - P.chan_base, bn_x)];
  let exps = row.flags | lg.flags | select(0u, bg.flags, bn_x);
  let nb = P.batch;
  gvar = select(gvar, gvar + weighted_var(2u, fdiv_n(P.wvar[2] * bg.s.y, nb)), bn_x);
  gmu = select(
    gmu,
    gmu + weighted_mean(2u, fdiv_n(P.wmean[2] * bg.s.x, nb)) +
      weighted_var(2u, P.wvar[2] * fdiv_n(2.0, nb) * select(((p.shift - bn.hi) + p.mean) - bn.lo, 0.0, nb == 1.0) * bg.s.y),
    bn_x,
  );
  bad = bad || select(false, (bg.flags & G_BAD) != 0u, bn_x);
  let b = fdiv_n(2.0 * gvar, max(f32(P.m) - 1.0, 1.0));
  // Infinite gradient sums (an infinite dy) take wide_coef's map too: dx is then an infinity or
  // NaN by the sign of x - mu_in, which sn_bwd_wide_dx forms as (x - hi_in) - lo_in; x - K with
  // K = hi_in + lo_in rounded to float32 gave 0 or the wrong sign where that rounding is
  // coarse beside the row's spread (a row of mean 1.4e13 and std 1.6e6, 1.5 float32 spacings:
  // NaN where the reference has +Infinity, nd fuzzer FUZZ_INJECT=1 seeds 55, 134, 197).
  let inf_sums = (class_bits(b) | class_bits(gmu)) != 0u;
  // A variance weight's product with a gradient sum (or B, or the weight times 2/C and a mean
  // difference) far below float32's normal range was flushed or kept few bits, which x - K (up
  // to 2^41) brings back in dx (dx 1.107e-33 for 1.427e-33 under a variance weight of 1.6e-38):
  // the wide map, whose weights' mantissas and the sums' exponents keep them. Normal data lies
  // far above 2^-100.
  let lost = lost_product(P.wvar[0], row.s.y, 1.0) || lost_product(P.wvar[1], lg.s.y, cf) ||
    lost_product(P.wvar[1] * fdiv_n(2.0, cf), lg.s.y * select(((p.shift - ln.hi) + p.mean) - ln.lo, 0.0, P.c == 1u), 1.0) ||
    (bn_x && (lost_product(P.wvar[2], bg.s.y, nb) ||
      lost_product(P.wvar[2] * fdiv_n(2.0, nb), bg.s.y * select(((p.shift - bn.hi) + p.mean) - bn.lo, 0.0, nb == 1.0), 1.0))) ||
    lost_product(gvar, 2.0, max(f32(P.m) - 1.0, 1.0));
  if (is_scaled(m.flags) || (exps & G_EXPS) != 0u || factor_wide(affine[c], m.variance + P.eps) ||
    (P.flags & P_TINY_WEIGHTS) != 0u || inf_sums || mix_var_near_subnormal(m) || lost) {
    wide_coef(r, p, ln, bn, use_bn, m, row, lg, bg, bn_x);
    return;
  }
  let a = fdiv_n(gmu, f32(P.m)) - b * p.mean;
  coef[r - P.row_base] = bitcast<vec4<u32>>(vec4<f32>(affine[c] * s, b, select(a, qnan(), bad), p.shift));
}

// Whether w g / k, of nonzero factors, lies below 2^-100 (0 where flushed).
fn lost_product(w: f32, g: f32, k: f32) -> bool {
  return w != 0.0 && g != 0.0 && abs(fdiv_n(w * g, k)) < 7.888609052210118e-31;
}

// mu_in - mu_g (the row's IN mean minus group g's) in units of 2^e.
fn mean_diff(p: Partial, g: Group, e: i32) -> f32 {
  let f_in = pow2(unit_of(p.flags) - e);
  let f_g = pow2(unit_of(g.flags) - e);
  // g.hi by unit_shift, as in wide_map (an evaluation's BN mean can be large in its unit).
  return ((p.shift * f_in - unit_shift(g.hi, unit_of(g.flags) - e)) + p.mean * f_in) - g.lo * f_g;
}

// The unit of mean_diff(p, g, e): the larger of the row's and the group's, but the group's where
// the row's mean is 0 (a row of 0, unscaled: unit 1) and the row's where the group's is 0: in
// units of 1 a group mean below float32's normal range (a BN group of a row of 0 beside a row
// of one x ~1e-44, mean ~6e-46 in its unit) was 0, and the row's dx lost its (2 / NB) GvB
// (x - mu_bn) term under a dL/dvar ~1e62: 1.3e7 for 5e15, partial_zero_sweep seed 648.
fn mean_diff_unit(p: Partial, g: Group) -> i32 {
  let u_in = unit_of(p.flags);
  let u_g = unit_of(g.flags);
  let in_zero = ((bitcast<u32>(p.shift) | bitcast<u32>(p.mean)) << 1u) == 0u;
  let g_zero = ((bitcast<u32>(g.hi) | bitcast<u32>(g.lo)) << 1u) == 0u;
  return select(select(max(u_in, u_g), u_g, in_zero), u_in, g_zero & !in_zero);
}

fn wide_coef(r: u32, p: Partial, ln: Group, bn: Group, use_bn: bool, m: Mixed, row: Grad, lg: Grad, bg: Grad, bn_x: bool) {
  let c = r % P.c;
  var w: WideMap;
  if (is_scaled(m.flags)) {
    w = wide_map(nd_terms_in(p), group_term(ln), select_term(group_term(bn), use_bn), 1.0, 0.0);
  } else {
    w = unit_map(m, nd_terms_in(p), group_term(ln), select_term(group_term(bn), use_bn));
  }
  let e = w.e;
  // dy's unit in the map: the row's dy unit 2^D (RowGrad: the record's own unit is raised where
  // its dots pass 2^100, lowered where they lie far below it) but at most 2^88, where every
  // finite |dy| 2^-88 is at most 2^40: a larger unit would flush ordinary dy to 0 (dx 0 where
  // the reference has 3e31).
  let d_rec = grads[r - P.elem_base].dy_unit;
  let d_unit = min(d_rec, 88);
  // mu_in - mu_k in the unit 2^e_k of the larger of the two, where both are represented.
  // (mean_diff_unit: a mean of 0 sets no unit.)
  let u_in = unit_of(p.flags);
  let e_ln = mean_diff_unit(p, ln);
  let e_bn = mean_diff_unit(p, bn);
  // Their exponents apart (exact): gv's mantissa times a mean difference far above the mix's
  // std (a variance weight below float32's normal range) would overflow.
  // A group of one member is that member (C = 1: LN is IN; a batch of one: BN is IN): its mean
  // difference is 0 exactly, as the reference's, not the rounding of the two pairs' forms (an
  // infinite dy's GvB times that rounding gave dx +Infinity where the reference's 0 * Inf is
  // NaN: nd fuzzer FUZZ_INJECT=1 seed 720). The in-range map above does likewise.
  let d_ln_full = select(mean_diff(p, ln, e_ln), 0.0, P.c == 1u);
  let d_bn_full = select(mean_diff(p, bn, e_bn), 0.0, P.batch == 1.0);
  // Brought to [1, 2) below 1 too: a mean difference of -5e-31 (a row of 0 beside its sample's
  // row of 1e-30) times GvL's mantissa fell below float32's normal range, the row's dx 0 for
  // 1.5e19 under an LN dL/dvar ~1e51 (subnormal_dy_sweep seed 324).
  let x_ln = norm_exp(d_ln_full);
  let x_bn = norm_exp(d_bn_full);
  let d_ln = scale2(d_ln_full, -x_ln);
  let d_bn = scale2(d_bn_full, -x_bn);
  let cf = f32(P.c);
  let nb = P.batch;
  var gvar = XF(0.0, 0);
  // (Each weight's exponent factor apart, Params.wmean_e / wvar_e: 0 for ordinary weights; and
  // its float32 exponent, norm_exp: a weight of 2^-120 times a mantissa of the Grads fell below
  // float32's normal range, the LN terms of dx lost and dx's sign with them, corner fuzzer seed
  // 535.)
  let nv = vec3<i32>(norm_exp(P.wvar[0]), norm_exp(P.wvar[1]), norm_exp(P.wvar[2]));
  let nm = vec3<i32>(norm_exp(P.wmean[0]), norm_exp(P.wmean[1]), norm_exp(P.wmean[2]));
  // The mantissas by their bits (gamma_mantissa, branch-free; equal to scale2(w, -norm_exp(w))
  // for the weights Params holds, 0 or normal): scale2 branches on its argument, here uniforms
  // alone, which lavapipe may bake into a new pipeline variant at every dispatch and keep (the
  // 1d eps-0 passes grew ~1 MB per call so, helper-96; tests/webgpu_memory_test.ts).
  let wv = vec3<f32>(gamma_mantissa(P.wvar[0]), gamma_mantissa(P.wvar[1]), gamma_mantissa(P.wvar[2]));
  let wm = vec3<f32>(gamma_mantissa(P.wmean[0]), gamma_mantissa(P.wmean[1]), gamma_mantissa(P.wmean[2]));
  let we = P.wvar_e + vec4<i32>(nv, 0);
  let me = P.wmean_e + vec4<i32>(nm, 0);
  gvar = xf_add(gvar, wv[0] * row.s.y, g_exp(row.flags, 1u) + we[0]);
  gvar = xf_add(gvar, fdiv_n(wv[1] * lg.s.y, cf), g_exp(lg.flags, 1u) + we[1]);
  var gmu = XF(0.0, 0);
  gmu = xf_add(gmu, wm[0] * row.s.x, g_exp(row.flags, 0u) + me[0]);
  gmu = xf_add(gmu, fdiv_n(wm[1] * lg.s.x, cf), g_exp(lg.flags, 0u) + me[1]);
  gmu = xf_add(gmu, wv[1] * fdiv_n(2.0, cf) * d_ln * lg.s.y, g_exp(lg.flags, 1u) + e_ln + x_ln + we[1]);
  // The BN terms where BN depends on x, selected (a term of 0 adds nothing; see sn_mix.wgsl).
  gvar = xf_add(gvar, select(0.0, fdiv_n(wv[2] * bg.s.y, nb), bn_x), g_exp(bg.flags, 1u) + we[2]);
  gmu = xf_add(gmu, select(0.0, fdiv_n(wm[2] * bg.s.x, nb), bn_x), g_exp(bg.flags, 0u) + me[2]);
  let t_bn = wv[2] * fdiv_n(2.0, nb) * d_bn * bg.s.y;
  gmu = xf_add(gmu, select(0.0, t_bn, bn_x), g_exp(bg.flags, 1u) + e_bn + x_bn + we[2]);
  let bad = w.bad || ((row.flags | lg.flags | select(0u, bg.flags, bn_x)) & G_BAD) != 0u ||
    P.m < 2u;
  if ((class_bits(gmu.m) | class_bits(gvar.m)) != 0u) {
    // NaN or infinite gradient sums (a NaN or infinite dy): every dx of the row is NaN or
    // infinite, of a class set by the non-finite terms alone, so the map carries just those:
    // A = Gmu_in / M and B where non-finite (else 0), gs as +-1/4 (0 for gamma 0: 0 * Inf is
    // NaN), so that no finite term overflows into the sum, in units D = U = 0, and INF_MARK:
    // sn_bwd_wide_dx takes x - mu_in as (x 2^-u - K) - lo_in, whose sign is the reference's.
    let bm_inf = fdiv_n(2.0 * gvar.m, max(f32(P.m) - 1.0, 1.0));
    let gs_sign = select(select(0.25, -0.25, affine[c] < 0.0), 0.0, affine[c] == 0.0);
    coef[r - P.row_base] = vec4<u32>(
      bitcast<u32>(gs_sign),
      bitcast<u32>(select(0.0, bm_inf, class_bits(gvar.m) != 0u)),
      bitcast<u32>(select(select(0.0, gmu.m, class_bits(gmu.m) != 0u), qnan(), bad)),
      WIDE_MARK | INF_MARK | 512u | (512u << 10u),
    );
    list_wide_row(r);
    return;
  }
  // dx = dy gs + (x - K) B + A with gs = gamma' s' 2^(g - e), B = bm 2^gvar.e, K = the row's shift:
  // its terms can lie far apart (a row whose own s is tiny beside its channel's BN terms), so
  // dx is formed in a unit 2^u from bounds of every term: |dy 2^-D| <= 2^40 (1 when scaled),
  // |x 2^-u_in - K| <= 2^41 (2 when scaled), and at most |lo_in| + sqrt(M2) of the row's summary
  // (every |x - mu_in| is at most the root of the row's sum of squared deviations): a row of one
  // repeated value has no such term, whatever its B (a far mean's dL/dvar ~1e67 would otherwise
  // set a unit that flushes dy gs and A to 0).
  // gs = gamma s' 2^-e, with gamma = gamma' 2^g apart: gamma s may pass float32's range.
  // (With w.g: s = scale 2^w.g, wide_map's sv for a std far below the mix's unit.)
  let g = gamma_exp(affine[c]) + w.g;
  let gs = gamma_mantissa(affine[c]) * w.scale;
  let bm = fdiv_n(2.0 * gvar.m, max(f32(P.m) - 1.0, 1.0));
  var ax = xf_add(XF(0.0, 0), fdiv_n(gmu.m, f32(P.m)), gmu.e);
  // -bm mu_in' (p.mean: the IN mean about the row's shift) from both mantissas: bm, a mantissa
  // of 2^gvar.e that can lie near 2^120 where gv passes float32's range, times p.mean overflowed
  // (A NaN: dx NaN where the reference has 7e20 for a row of std 2.5e8 beside a running_mean of
  // 2.3e30 and an LN mean of 1e18, nd fuzzer FUZZ_ZERO_WEIGHTS=1 seed 290).
  let xb = norm_exp(bm);
  let xm = norm_exp(p.mean);
  ax = xf_add(ax, -scale2(bm, -xb) * scale2(p.mean, -xm), gvar.e + u_in + xb + xm);
  let t1 = d_unit - e + g + bits_exponent(gs) + select(0, 40, d_unit == 0 || d_unit < d_rec);
  let xk = min(select(1, 41, u_in == 0), exponent_of(abs(p.mean) + sqrt(max(p.m2, 0.0))) + 1);
  let t2 = gvar.e + u_in + bits_exponent(bm) + xk;
  let t3 = ax.e + bits_exponent(ax.m);
  // Bounds of 2^64 rather than 1: a term far below its bound (dy ~ 1 under the 2^40 allowance)
  // then still lies far above float32's subnormals, and the sum of three cannot overflow.
  // Lower (to 2^120 under the largest bound) where A would fall below 2^-100 in that unit: a
  // row of 0 but x -8e-39 (rows of 5000 under gamma -3e20, dy 1.37 beside dy ~5e-44) had A,
  // its (2/C) GvL (mu_in - mu_ln) term of -1.4e-25, at 2^-126 under a unit set by dy gs's
  // 2^40 allowance, flushed: dx 1.2x the reference (partial_zero_sweep seed 22).
  // B itself (B', its mantissa in the unit) no higher than 2^126 in either case: its bound t2
  // is |B (x - K)|'s, and |x - K| can lie far below 1 (a row of x -3e38 of spread 1.2e32 in
  // the unit 2^128, xk -19), so the unit lowered to 2^120 under t2 took B' to 2^139, +Infinity
  // (dx +-Infinity for +-2.6e-7 beside dy +-2e38 under gamma 1e-20, attack fuzzer seed 13052).
  let top = max(max(t1, t2), t3);
  let low_a = (t3 - (top - 64) < -100) & (ax.m != 0.0);
  let tb = select(gvar.e + u_in + bits_exponent(bm), -1000, xk < -200);
  let u = clamp(max(select(top - 64, max(top - 120, t3 + 100), low_a), tb - 126), -500, 500);
  // B 2^(u_in - U) below float32's normal range where B (x - K) is not (|x - K| up to 2^xk, a
  // unit U set by dy gs's bound, dy ~1e-37 under its 2^40 allowance: B ~2^-131 beside x ~5e9
  // was 0, dx without its dL/dvar term, subnormal_dy_sweep seed 287): B taken 2^(32 xs) higher
  // and x - K 2^(32 xs) lower (x and K by their bits in sn_bwd_wide_dx), xs < 4 in bits 21, 22.
  let eb = gvar.e + u_in - u + bits_exponent(bm);
  let xs = select(0, min(min((-100 - eb + 31) / 32, 3), max(0, (xk + 100) / 32)), eb < -100 && bm != 0.0);
  // A 2^-U below 2^-100 even in the lowered unit (A more than ~2^220 under the row's largest
  // bound): A' taken 2^A_LIFT higher, bit 31 (A_FAR) marking it, and sn_bwd_wide_dx adds A
  // apart. An LN mean weight of e^-156 (A ~5e-5 beside dy gs ~1e64) had A' 0: dx 2e-7 for the
  // reference's -4.9e-5 (session 47, helper-203; tests/wide_dx_far_dy_test.ts).
  let far_a = (t3 - u < -100) & (ax.m != 0.0);
  coef[r - P.row_base] = vec4<u32>(
    bitcast<u32>(scale2(gs, d_unit - e + g - u)),
    // B 0 where every x - K is 0 (M2 0: no bound above), so that its size cannot overflow.
    bitcast<u32>(select(scale2(bm, gvar.e + u_in - u + 32 * xs), 0.0, xk < -200)),
    bitcast<u32>(select(scale2(ax.m, ax.e - u + select(0, A_LIFT, far_a)), qnan(), bad)),
    WIDE_MARK | u32(d_unit + 512) | (u32(u + 512) << 10u) | (u32(xs) << 21u) | select(0u, A_FAR, far_a),
  );
  list_wide_row(r);
}

// Lists row r for sn_bwd_wide_dx and grows that pass's dispatch (common.wgsl: list_grid).
fn list_wide_row(r: u32) {
  let listed = atomicAdd(&wide_rows[0], 1u);
  atomicStore(&wide_rows[LIST_FIRST + listed], r);
  let grid = list_grid((listed + 1u) * P.chunks);
  atomicMax(&wide_rows[1], grid.x);
  atomicMax(&wide_rows[2], grid.y);
}
