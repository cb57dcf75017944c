// sn1d_bwd_wide_dx.wgsl: the last backward step of layout "1d", after sn1d_bwd_dx: dx of the
// elements of the samples and channels whose gradient sums carry exponents (wide data: scaled
// statistics, |dy| beyond DY_MAX or a factor-wide gamma / std, whose gamma's exponent the sums
// carry; sn_bwd_groups lists those groups), written again with the
// terms of sn1d_bwd_dx formed as mantissa-exponent pairs (x and dy scaled by their bits) and
// added with xf_add. A workgroup per listed group (64 workgroups taking them in turn), its
// threads over the group's elements in this dispatch's window: for sample n all of row n, for
// channel c column c (an element in both is written twice, with the same value). The loop's
// bound is one load from one address, so without wide data lavapipe skips its code. Bindings
// and windows as sn1d_bwd_dx.

//!include common.wgsl
//!include backward_common.wgsl
//!include pair.wgsl
//!include sn1d_mix.wgsl
//!include sn1d_bwd_element.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<storage, read> groups: array<Group>;
@group(0) @binding(5) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
@group(0) @binding(6) var<storage, read> bgroups: array<Grad>;
// The channel records of bgroups (the same buffer; bgroups binds the samples' records).
@group(0) @binding(7) var<storage, read> cgroups: array<Grad>;
// The groups whose sums carry exponents: a count, then group indices (sn_bwd_groups).
@group(0) @binding(8) var<storage, read> wide_groups: array<u32>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let count = wide_groups[0];
  for (var k = linear_group(wid, nwg); k < count; k += nwg.x * nwg.y) {
    let g = wide_groups[LIST_FIRST + k];
    let first = P.elem_base;
    let end = min(P.elem_base + 4u * P.vec_count, P.total);
    let span = group_span(g, first, end);
    for (var j = span.x + lid; j < span.y; j += 64u) {
      let nc = group_member(g, j);
      write_dx(nc.x, nc.y, first, end);
    }
  }
}

fn write_dx(n: u32, c: u32, first: u32, end: u32) {
  let e = n * P.c + c;
  if (e >= first && e < end) {
    let i = e - first;
    let with_bn = bn_depends_on_x();
    let lg = bgroups[n - P.rec_base];
    let bg = cgroups[select(0u, P.n + c - P.chan_base, with_bn)];
    dx[i] = wide_dx(groups[n - P.row_base], groups[P.n + c - P.stat_bn_base], lg, bg, c, x[i], dy[i], with_bn);
  }
}

fn wide_dx(ln: Group, bn: Group, lg: Grad, bg: Grad, c: u32, xv: f32, dv: f32, with_bn: bool) -> f32 {
  var w: WideMap;
  let m = mix_add(mix_first(0u, ln.hi, ln.lo, ln.variance, ln.flags), 1u, bn.hi, bn.lo, bn.variance, bn.flags);
  if (is_scaled(ln.flags | bn.flags) || mix_var_near_subnormal(m)) {
    w = wide_map(group_term(ln), group_term(bn), Term(0.0, 0.0, 0.0, 0u), 1.0, 0.0);
  } else {
    w = WideMap(m.hi, m.lo, m.variance, inv_std(m), 0.0, 0, mixed_bad(m), false, 0);
  }
  let cf = f32(P.c);
  let nb = P.batch;
  let d_unit = dy_unit_1d(dv);
  let u_ln = unit_of(ln.flags);
  let u_bn = unit_of(bn.flags);
  var v = XF(0.0, 0);
  // gamma = gamma' 2^g apart: gamma s may pass float32's range (a factor-wide element).
  let g = gamma_exp(affine[c]);
  // dy s as mantissas and exponents (see wide_element): d' s of d' ~ 3e-24, s ~ 4e-8 is ~1e-31
  // and d' ~ 1e-38 would flush it, where gamma' 2^g brings the term back into range.
  let d = scale2(dv, -d_unit);
  let ed = norm_exp(d);
  let es = norm_exp(w.scale);
  let t0 = (scale2(d, -ed) * scale2(w.scale, -es)) * gamma_mantissa(affine[c]);
  v = xf_add(v, t0, d_unit - w.e + g + ed + es + w.g); // s = scale 2^w.g (wide_map's sv)
  // (Each weight's exponent factor apart, Params.wmean_e / wvar_e: 0 for ordinary weights; and
  // its float32 exponent, as sn_bwd_coef's: a variance weight of 1.6e-38 times GvL's mantissa
  // fell below float32's normal range, dx 2^-52 for 0.988 2^-52, attack fuzzer seed 8118. The
  // mantissas by their bits, gamma_mantissa: see sn_bwd_coef.)
  let wv = vec2<f32>(gamma_mantissa(P.wvar[0]), gamma_mantissa(P.wvar[1]));
  let wm = vec2<f32>(gamma_mantissa(P.wmean[0]), gamma_mantissa(P.wmean[1]));
  let we = vec2<i32>(norm_exp(P.wvar[0]), norm_exp(P.wvar[1])) + P.wvar_e.xy;
  let me = vec2<i32>(norm_exp(P.wmean[0]), norm_exp(P.wmean[1])) + P.wmean_e.xy;
  v = xf_add(v, fdiv_n(wm[0] * lg.s.x, cf), g_exp(lg.flags, 0u) + me[0]);
  // x - mu_k with its exponent apart (exact): gv's mantissa times an x far from the term's mean
  // beside the mix's std (a variance weight below float32's normal range) would overflow.
  let xc_ln_full = (scale2(xv, -u_ln) - ln.hi) - ln.lo;
  let x_ln = centred_exp(xc_ln_full);
  let xc_ln = scale2(xc_ln_full, -x_ln);
  v = xf_add(v, fdiv_n(wv[0] * lg.s.y * 2.0 * xc_ln, max(cf - 1.0, 1.0)), g_exp(lg.flags, 1u) + u_ln + x_ln + we[0]);
  // The BN terms selected, not branched on: a branch on the uniform flag around them made
  // lavapipe keep memory at every dispatch (see sn_mix.wgsl). A term of 0 adds nothing.
  let xc_bn_full = (scale2(xv, -u_bn) - bn.hi) - bn.lo;
  let x_bn = centred_exp(xc_bn_full);
  let xc_bn = scale2(xc_bn_full, -x_bn);
  v = xf_add(v, select(0.0, fdiv_n(wm[1] * bg.s.x, nb), with_bn), g_exp(bg.flags, 0u) + me[1]);
  let t_bn = fdiv_n(wv[1] * bg.s.y * 2.0 * xc_bn, max(nb - 1.0, 1.0));
  v = xf_add(v, select(0.0, t_bn, with_bn), g_exp(bg.flags, 1u) + u_bn + x_bn + we[1]);
  let bad = w.bad || (lg.flags & G_BAD) != 0u || P.c < 2u ||
    (with_bn && ((bg.flags & G_BAD) != 0u || nb < 2.0));
  return select(scale2(v.m, v.e), qnan(), bad);
}

// The exponent wide_dx takes apart from x - mu_k: its own where it is finite and not 0, below
// 1 too (floored at 0, a centred value of 1.2e-7 in LN's unit times a variance weight of
// 1.6e-38 fell below float32's normal range: dx -256 for -250, evaluations of samples of 1 and
// 1 + 2^-23; tests/sn1d_small_xc_test.ts); 0 for 0 and non-finite values (bits_exponent reads
// a subnormal's by its bits).
fn centred_exp(v: f32) -> i32 {
  let e = bits_exponent(v);
  return select(0, e, e > -1000 && class_bits(v) == 0u);
}
