// sn_normalize.wgsl: the last step, the second and final pass over x. For element i of row
// r = n*C + c (layout "1d": r = i, M = 1), with the terms in mixing order
//   nd: in (rows[r]), ln (groups[n]), bn (groups[N + c], if usingBN)
//   1d:               ln (groups[n]), bn (groups[N + c])
//   hi  = the first term's shift (IN: the row's first element; 1d: the LN group's)
//   lo  = sum_k wmean_k * ((hi_k - hi) + lo_k)        (mu = hi + lo, a float32 hi/lo pair)
//   var = sum_k wvar_k * var_k
//   y   = ((x - hi) - lo) * (gamma[c] / sqrt(var + eps)) + beta[c]
// so that |mu| ~ 1e4 with std ~ 1 loses nothing: x - hi is exact for x near hi. y is NaN
// wherever a mixed statistic is NaN or infinite in the reference (any F_* flag), or var + eps
// is not positive. One vec4 per thread; a vec4 that straddles two rows (M % 4 != 0, or 1d)
// takes each lane's row in turn.

//!include common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> rows: array<Partial>;
@group(0) @binding(4) var<storage, read> groups: array<Group>;
@group(0) @binding(5) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)

struct RowAffine {
  hi: f32,
  lo: f32,
  scale: f32,
  beta: f32,
  bad: bool,
}

fn add_term(
  a: ptr<function, RowAffine>,
  v: ptr<function, f32>,
  k: u32,
  hi: f32,
  lo: f32,
  variance: f32,
) {
  (*a).lo += P.wmean[k] * ((hi - (*a).hi) + lo);
  *v += P.wvar[k] * variance;
}

fn row_affine(r: u32) -> RowAffine {
  let n = r / P.c;
  let c = r - n * P.c;
  var a: RowAffine;
  var v = 0.0;
  var flags = 0u;
  var k = 0u;
  let ln = groups[n];
  if ((P.flags & P_HAS_IN) != 0u) {
    let p = rows[r];
    a.hi = p.shift;
    a.lo = 0.0;
    flags = p.flags | select(F_NO_VAR, 0u, p.count >= 2u);
    add_term(&a, &v, 0u, p.shift, p.mean, p.m2 / max(f32(p.count) - 1.0, 1.0));
    k = 1u;
  } else {
    a.hi = ln.hi;
    a.lo = 0.0;
  }
  add_term(&a, &v, k, ln.hi, ln.lo, ln.variance);
  flags = flags | ln.flags;
  if ((P.flags & P_USING_BN) != 0u) {
    let bn = groups[P.n + c];
    add_term(&a, &v, k + 1u, bn.hi, bn.lo, bn.variance);
    flags = flags | bn.flags;
  }
  let denom = v + P.eps;
  a.bad = flags != 0u || !(denom > 0.0);
  a.scale = affine[c] / sqrt(max(denom, 1e-38));
  a.beta = affine[P.c + c];
  return a;
}

fn apply1(a: RowAffine, v: f32) -> f32 {
  return select(((v - a.hi) - a.lo) * a.scale + a.beta, bitcast<f32>(QNAN_BITS), a.bad);
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
  let e0 = P.elem_base + 4u * q; // global index of lane 0
  let last = min(e0 + 3u, P.total - 1u);
  let v = x[q];
  let r0 = e0 / P.m;
  if (r0 == last / P.m) {
    let a = row_affine(r0);
    let out = ((v - vec4<f32>(a.hi)) - vec4<f32>(a.lo)) * a.scale + vec4<f32>(a.beta);
    y[q] = select(out, vec4<f32>(bitcast<f32>(QNAN_BITS)), vec4<bool>(a.bad));
    return;
  }
  var out = vec4<f32>(0.0);
  for (var j = 0u; j < 4u; j++) {
    let e = e0 + j;
    if (e <= last) {
      out[j] = apply1(row_affine(e / P.m), v[j]);
    }
  }
  y[q] = out;
}
