// sn1d_bwd_reduce.wgsl: backward step 1 of layout "1d", the one pass over (x, dy) [N, C]. Every
// element has its own mixed statistics (LN groups[n], BN groups[N + c]), so each element is its
// own "row" of the chain rule, with s = 1 / sqrt(var + eps) and xhat = ((x - hi) - lo) * s:
//   gm = -s * gamma[c] * dy,  gv = -0.5 * s^2 * gamma[c] * dy * xhat,
//   dgamma = dy * xhat,  dbeta = dy,  a/b = the centred dot terms (backward_common.wgsl)
// LN needs these summed along each row n, BN and the parameters along each column c, and both
// come from this one read: like sn1d_stats, each workgroup copies a 32 x 32 tile of x and of dy
// into workgroup memory, then 32 threads sum the tile's columns and 32 its rows:
//   parts[n * CT + ct]   = sum over the tile's columns of row n   (ct: column tile of CT)
//   cparts[rt * C + c]   = sum over the tile's rows of column c   (rt: row tile)
// each bound from record rec_base (parts) and chan_base (cparts) on: per dispatch, the windows
// its row tiles write (the records may exceed one storage binding).
// sn_bwd_groups adds them up. An element whose statistics are flagged adds only dbeta and G_BAD.
// An element with scaled statistics (F_SCALED, unit 2^E of its mix, wide_map) or |dy| beyond
// DY_MAX (unit 2^D) gives its Grad in those units (as sn_bwd_rows does for a wide row): x and
// dy scaled by their bits, exponents D - E (gm), D - 2E (gv) and D; grad_add aligns units.

//!include common.wgsl
//!include backward_common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> groups: array<Group>;
@group(0) @binding(4) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
@group(0) @binding(5) var<storage, read_write> parts: array<Grad>;
@group(0) @binding(6) var<storage, read_write> cparts: array<Grad>;

const T: u32 = TILE_1D;
var<workgroup> tx: array<f32, 1056>; // 32 rows of 33: the pad keeps column reads apart
var<workgroup> tdy: array<f32, 1056>;

fn element(n: u32, c: u32, xv: f32, d: f32) -> Grad {
  let ln = groups[n];
  let bn = groups[P.n + c];
  if (is_scaled(ln.flags | bn.flags) || abs(d) > DY_MAX) {
    return wide_element(ln, bn, c, xv, d);
  }
  let m = mix_add(mix_first(0u, ln.hi, ln.lo, ln.variance, ln.flags), 1u, bn.hi, bn.lo, bn.variance, bn.flags);
  if (mixed_bad(m)) {
    return Grad(vec4<f32>(0.0, 0.0, 0.0, d), vec4<f32>(0.0), vec4<f32>(0.0), G_BAD);
  }
  let s = inv_std(m);
  let gamma = affine[c];
  let xh = ((xv - m.hi) - m.lo) * s;
  let gm = -s * gamma * d;
  let gv = -0.5 * (s * s) * gamma * d * xh;
  let a = vec4<f32>(gm * centred(m, ln.hi, ln.lo), gm * centred(m, bn.hi, bn.lo), 0.0, gm * (m.hi + m.lo));
  let b = vec4<f32>(gv * (ln.variance - m.variance), gv * (bn.variance - m.variance), 0.0, gv * m.variance);
  return Grad(vec4<f32>(gm, gv, d * xh, d), a, b, 0u);
}

fn wide_element(ln: Group, bn: Group, c: u32, xv: f32, dv: f32) -> Grad {
  let t_ln = group_term(ln);
  let t_bn = group_term(bn);
  var w: WideMap;
  if (is_scaled(ln.flags | bn.flags)) {
    w = wide_map(t_ln, t_bn, Term(0.0, 0.0, 0.0, 0u), 1.0, 0.0);
  } else {
    let m = mix_add(mix_first(0u, ln.hi, ln.lo, ln.variance, ln.flags), 1u, bn.hi, bn.lo, bn.variance, bn.flags);
    w = WideMap(m.hi, m.lo, m.variance, inv_std(m), 0.0, 0, mixed_bad(m), false);
  }
  let d_unit = dy_unit(select(0.0, abs(dv), class_bits(dv) == 0u));
  let d = scale2(dv, -d_unit);
  if (w.bad) {
    return Grad(vec4<f32>(0.0, 0.0, 0.0, d), vec4<f32>(0.0), vec4<f32>(0.0), g_flags(G_BAD, 0, 0, d_unit));
  }
  if (w.var_inf) {
    // s = 0: gm, gv, dgamma and the mean dots are 0, the variance dots 0 * Inf = NaN.
    return Grad(vec4<f32>(0.0, 0.0, 0.0, d), vec4<f32>(0.0), vec4<f32>(0.0), g_flags(G_VNAN, 0, 0, d_unit));
  }
  let s = w.scale;
  let gamma = affine[c];
  let xh = ((scale2(xv, -w.e) - w.hi) - w.lo) * s;
  let gm = -s * gamma * d;
  let gv = -0.5 * (s * s) * gamma * d * xh;
  let a = vec4<f32>(gm * wide_centred(t_ln, w), gm * wide_centred(t_bn, w), 0.0, gm * (w.hi + w.lo));
  let b = vec4<f32>(gv * (wide_var(t_ln, w) - w.variance), gv * (wide_var(t_bn, w) - w.variance), 0.0, gv * w.variance);
  return Grad(vec4<f32>(gm, gv, d * xh, d), a, b, g_flags(0u, d_unit - w.e, d_unit - 2 * w.e, d_unit));
}

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let t = tile_1d(linear_group(wid, nwg));
  if (!t.valid) {
    return;
  }
  for (var i = lid; i < T * T; i += 64u) {
    let r = i / T;
    let cc = i % T;
    if (r < t.rows && cc < t.cols) {
      let e = tile_1d_elem(t, r, cc);
      tx[r * 33u + cc] = x[e];
      tdy[r * 33u + cc] = dy[e];
    }
  }
  workgroupBarrier();
  var acc = grad_zero();
  if (lid < T) {
    if (lid < t.cols) {
      for (var r = 0u; r < t.rows; r++) {
        acc = grad_add(acc, element(t.n0 + r, t.c0 + lid, tx[r * 33u + lid], tdy[r * 33u + lid]));
      }
      cparts[t.rt * P.c + t.c0 + lid - P.chan_base] = acc;
    }
  } else if (lid - T < t.rows) {
    let r = lid - T;
    for (var cc = 0u; cc < t.cols; cc++) {
      acc = grad_add(acc, element(t.n0 + r, t.c0 + cc, tx[r * 33u + cc], tdy[r * 33u + cc]));
    }
    parts[(t.n0 + r) * P.chunks + t.ct - P.rec_base] = acc;
  }
}
