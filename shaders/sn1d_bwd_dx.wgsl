// sn1d_bwd_dx.wgsl: the last backward step of layout "1d", the second and final pass over
// (x, dy) [N, C]. Per element, with the LN statistics groups[n], the BN statistics
// groups[N + c], the sums (GmL, GvL) = bgroups[n] and (GmB, GvB) = bgroups[N + c]
// (sn_bwd_groups; under SyncSN the global batch's), s of the element's mixed statistics and
// NB = Params.batch:
//   dx = dy * gamma[c] * s + w0 * GmL/C + v0 * GvL * 2 * (x - mu_ln)/(C - 1)
//        + w1 * GmB/NB + v1 * GvB * 2 * (x - mu_bn)/(NB - 1)     (BN terms: training only)
// x - mu is formed as (x - hi) - lo. NaN where the reference's dx is NaN: the element's
// statistics, its row's sums or (training) its column's sums are flagged, C = 1 or NB = 1.
// One vec4 per thread. bgroups is bound from record rec_base on, cgroups from chan_base on
// (windows of the records, which may exceed one storage binding). Elements whose statistics are
// scaled or whose sums carry exponents (wide data) are written again by sn1d_bwd_wide_dx.

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
      let ln = groups[n - P.row_base];
      let bn = groups[P.n + c - P.stat_bn_base];
      // The weights' float32 values alone (mix_first_hot): with a weight below float32's normal
      // range every element is written again by sn1d_bwd_wide_dx (P_TINY_WEIGHTS).
      let m = mix_add_hot(mix_first_hot(0u, ln.hi, ln.lo, ln.variance, ln.flags), 1u, bn.hi, bn.lo, bn.variance, bn.flags);
      let lg = bgroups[n - P.rec_base];
      // LN's variance term with the weight 2^64 higher (and the term 2^64 lower after) where
      // w GvL falls below 2^-64: far below float32's normal range it was flushed or kept few
      // bits, which an evaluation's x - mu_ln (up to 2^41) brings back above dx's scale (dx 0
      // for 5.8e-36). Normal data keeps factors of 1 and its bits. (BN's term in training
      // cannot: there x - mu_bn lies within a few stds of the mix.)
      let kl = lift(P.wvar[0] * lg.s.y);
      // dy gamma s with dy 2^64 higher (and the product 2^64 lower after) where dy gamma falls
      // below 2^-64: a GPU that flushes (NVIDIA, SwiftShader) made a subnormal dy gamma 0 where s
      // brings the product back (dy 1e-10, gamma 1e-30, s 1e5: dx 0 for 1e-35,
      // tests/sn1d_eval_quantized_dx_test.ts). Elsewhere factors of 1: the same bits. Not where
      // |dy| reaches 2^63 (lift_dy): dy 2^64 passed float32's range, and a gamma of 0 (dy gamma
      // 0, the only gamma such dy lift here: a subnormal one is factor-wide, its channel written
      // again by sn1d_bwd_wide_dx) made Infinity 0 = NaN where dx is 0 (dy 2e38, attack fuzzer
      // seed 234465).
      let kd = lift_dy(d[j], affine[c]);
      var v = (d[j] * kd) * affine[c] * inv_std(m) * select(1.0, 5.421010862427522e-20, kd != 1.0) + fdiv_n(P.wmean[0] * lg.s.x, cf) +
        fdiv_n((P.wvar[0] * kl) * lg.s.y * 2.0 * ((xv[j] - ln.hi) - ln.lo), max(cf - 1.0, 1.0)) * fdiv_n(1.0, kl);
      var bad = mixed_bad(m) || (lg.flags & G_BAD) != 0u || P.c < 2u;
      // Formed either way from an in-bounds entry and selected (see sn_mix.wgsl).
      let bg = cgroups[select(0u, P.n + c - P.chan_base, with_bn)];
      let v_bn = v + fdiv_n(P.wmean[1] * bg.s.x, nb) +
        fdiv_n(P.wvar[1] * bg.s.y * 2.0 * ((xv[j] - bn.hi) - bn.lo), max(nb - 1.0, 1.0));
      v = select(v, v_bn, with_bn);
      bad = bad || select(false, (bg.flags & G_BAD) != 0u || nb < 2.0, with_bn);
      out[j] = select(v, qnan(), bad);
    }
  }
  dx[q] = out;
}

// 2^64 where a weight's product with a gradient sum lies below 2^-64 (then at most 2^44 once
// lifted and multiplied by 2 (x - mu) / (C - 1), |x - mu| <= 2^41 in unscaled rows), else 1.
fn lift(wg: f32) -> f32 {
  return select(1.0, 18446744073709551616.0, abs(wg) < 5.421010862427522e-20);
}

// 2^64 where dy gamma lies below 2^-64 and |dy| below 2^63 (so that dy 2^64 stays finite), else 1.
fn lift_dy(d: f32, gamma: f32) -> f32 {
  return select(1.0, 18446744073709551616.0, abs(d * gamma) < 5.421010862427522e-20 && abs(d) < 9223372036854775808.0);
}
