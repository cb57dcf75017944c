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
// Rows seg_first .. seg_end - 1 per dispatch; grads is bound from row elem_base on (windows, as
// in sn_bwd_rows), bgroups from record rec_base on, cgroups from record chan_base on.

//!include common.wgsl
//!include backward_common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> grads: array<Grad>;
@group(0) @binding(2) var<storage, read> bgroups: array<Grad>;
@group(0) @binding(3) var<storage, read> rows: array<Partial>;
@group(0) @binding(4) var<storage, read> groups: array<Group>;
@group(0) @binding(5) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
@group(0) @binding(6) var<storage, read_write> coef: array<vec4<f32>>;
// The channel records of bgroups (the same buffer; bgroups binds the samples' records).
@group(0) @binding(7) var<storage, read> cgroups: array<Grad>;

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
  let p = rows[r];
  let ln = groups[n];
  // A load under a branch on a uniform leaks per dispatch on lavapipe (see sn_mix.wgsl): load
  // an in-bounds entry either way, and zero it without usingBN.
  let use_bn = (P.flags & P_USING_BN) != 0u;
  let bn = select_group(groups[select(n, P.n + c, use_bn)], use_bn);
  let m = nd_mix(p, ln, bn);
  let row = grads[r - P.elem_base];
  let lg = bgroups[n - P.rec_base];
  let cf = f32(P.c);
  let s = inv_std(m);
  var gvar = P.wvar[0] * row.s.y + P.wvar[1] * lg.s.y / cf;
  var gmu = P.wmean[0] * row.s.x + P.wmean[1] * lg.s.x / cf +
    P.wvar[1] * (2.0 / cf) * (((p.shift - ln.hi) + p.mean) - ln.lo) * lg.s.y;
  var bad = mixed_bad(m) || row.flags != 0u || lg.flags != 0u || P.m < 2u;
  // The BN terms, where BN depends on x: formed either way from an in-bounds entry and
  // selected, not branched on (see sn_mix.wgsl).
  let bn_x = bn_depends_on_x();
  let bg = cgroups[select(0u, P.n + c - P.chan_base, bn_x)];
  let nb = P.batch;
  gvar = select(gvar, gvar + P.wvar[2] * bg.s.y / nb, bn_x);
  gmu = select(
    gmu,
    gmu + P.wmean[2] * bg.s.x / nb +
      P.wvar[2] * (2.0 / nb) * (((p.shift - bn.hi) + p.mean) - bn.lo) * bg.s.y,
    bn_x,
  );
  bad = bad || select(false, bg.flags != 0u, bn_x);
  let b = 2.0 * gvar / max(f32(P.m) - 1.0, 1.0);
  let a = gmu / f32(P.m) - b * p.mean;
  coef[r] = vec4<f32>(affine[c] * s, b, select(a, qnan(), bad), p.shift);
}
