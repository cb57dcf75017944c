// sn1d_bwd_dx.wgsl: the last backward step of layout "1d", the second and final pass over
// (x, dy) [N, C]. Per element, with the LN statistics groups[n], the BN statistics
// groups[N + c], the sums (GmL, GvL) = bgroups[n] and (GmB, GvB) = bgroups[N + c]
// (sn_bwd_groups; under SyncSN the global batch's), s of the element's mixed statistics and
// NB = Params.batch:
//   dx = dy * gamma[c] * s + w0 * GmL/C + v0 * GvL * 2 * (x - mu_ln)/(C - 1)
//        + w1 * GmB/NB + v1 * GvB * 2 * (x - mu_bn)/(NB - 1)     (BN terms: training only)
// x - mu is formed as (x - hi) - lo. Where a statistic is scaled (F_SCALED), a sum carries
// exponents (Grad) or |dy| passes DY_MAX, the terms are formed as mantissa-exponent pairs (x
// and dy scaled by their bits) and added with xf_add. NaN where the reference's dx is NaN: the element's
// statistics, its row's sums or (training) its column's sums are flagged, C = 1 or NB = 1.
// One vec4 per thread. bgroups is bound from record rec_base on, cgroups from chan_base on
// (windows of the records, which may exceed one storage binding).

//!include common.wgsl
//!include backward_common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> groups: array<Group>;
@group(0) @binding(5) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
@group(0) @binding(6) var<storage, read> bgroups: array<Grad>;
// The channel records of bgroups (the same buffer; bgroups binds the samples' records).
@group(0) @binding(7) var<storage, read> cgroups: array<Grad>;

fn wide_dx(ln: Group, bn: Group, lg: Grad, bg: Grad, c: u32, xv: f32, dv: f32, with_bn: bool) -> f32 {
  var w: WideMap;
  if (is_scaled(ln.flags | bn.flags)) {
    w = wide_map(group_term(ln), group_term(bn), Term(0.0, 0.0, 0.0, 0u), 1.0, 0.0);
  } else {
    let m = mix_add(mix_first(0u, ln.hi, ln.lo, ln.variance, ln.flags), 1u, bn.hi, bn.lo, bn.variance, bn.flags);
    w = WideMap(m.hi, m.lo, m.variance, inv_std(m), 0.0, 0, mixed_bad(m), false);
  }
  let cf = f32(P.c);
  let nb = P.batch;
  let d_unit = dy_unit(select(0.0, abs(dv), class_bits(dv) == 0u));
  let u_ln = unit_of(ln.flags);
  let u_bn = unit_of(bn.flags);
  var v = XF(0.0, 0);
  v = xf_add(v, scale2(dv, -d_unit) * (affine[c] * w.scale), d_unit - w.e);
  v = xf_add(v, P.wmean[0] * lg.s.x / cf, g_exp(lg.flags, 0u));
  let xc_ln = (scale2(xv, -u_ln) - ln.hi) - ln.lo;
  v = xf_add(v, P.wvar[0] * lg.s.y * 2.0 * xc_ln / max(cf - 1.0, 1.0), g_exp(lg.flags, 1u) + u_ln);
  // The BN terms selected, not branched on: a branch on the uniform flag around them made
  // lavapipe keep memory at every dispatch (see sn_mix.wgsl). A term of 0 adds nothing.
  let xc_bn = (scale2(xv, -u_bn) - bn.hi) - bn.lo;
  v = xf_add(v, select(0.0, P.wmean[1] * bg.s.x / nb, with_bn), g_exp(bg.flags, 0u));
  let t_bn = P.wvar[1] * bg.s.y * 2.0 * xc_bn / max(nb - 1.0, 1.0);
  v = xf_add(v, select(0.0, t_bn, with_bn), g_exp(bg.flags, 1u) + u_bn);
  let bad = w.bad || (lg.flags & G_BAD) != 0u || P.c < 2u ||
    (with_bn && ((bg.flags & G_BAD) != 0u || nb < 2.0));
  return select(scale2(v.m, v.e), qnan(), bad);
}

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let q = linear_group(wid, nwg) * 256u + lid;
  if (q >= P.vec_count) {
    return;
  }
  let e0 = P.elem_base + 4u * q;
  let xv = x[q];
  let d = dy[q];
  let cf = f32(P.c);
  let nb = P.batch;
  let with_bn = bn_depends_on_x();
  var out = vec4<f32>(0.0);
  for (var j = 0u; j < 4u; j++) {
    let e = e0 + j;
    if (e < P.total) {
      let n = e / P.c;
      let c = e - n * P.c;
      let ln = groups[n];
      let bn = groups[P.n + c];
      let m = mix_add(mix_first(0u, ln.hi, ln.lo, ln.variance, ln.flags), 1u, bn.hi, bn.lo, bn.variance, bn.flags);
      let lg = bgroups[n - P.rec_base];
      // Formed either way from an in-bounds entry and selected (see sn_mix.wgsl).
      let bg = cgroups[select(0u, P.n + c - P.chan_base, with_bn)];
      let exps = (lg.flags | select(0u, bg.flags, with_bn)) & G_EXPS;
      if (is_scaled(ln.flags | bn.flags) || exps != 0u || abs(d[j]) > DY_MAX) {
        out[j] = wide_dx(ln, bn, lg, bg, c, xv[j], d[j], with_bn);
        continue;
      }
      var v = d[j] * affine[c] * inv_std(m) + P.wmean[0] * lg.s.x / cf +
        P.wvar[0] * lg.s.y * 2.0 * ((xv[j] - ln.hi) - ln.lo) / max(cf - 1.0, 1.0);
      var bad = mixed_bad(m) || (lg.flags & G_BAD) != 0u || P.c < 2u;
      let v_bn = v + P.wmean[1] * bg.s.x / nb +
        P.wvar[1] * bg.s.y * 2.0 * ((xv[j] - bn.hi) - bn.lo) / max(nb - 1.0, 1.0);
      v = select(v, v_bn, with_bn);
      bad = bad || select(false, (bg.flags & G_BAD) != 0u || nb < 2.0, with_bn);
      out[j] = select(v, qnan(), bad);
    }
  }
  dx[q] = out;
}
