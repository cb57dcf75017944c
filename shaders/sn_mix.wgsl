// sn_mix.wgsl: step 3 of layout "nd", after sn_group_stats: one thread per row r = n*C + c
// turns the statistics into the affine map that sn_normalize applies to the row:
//   terms in mixing order: in (rows[r]: mu = K + mean, var = M2 / (count - 1)),
//                          ln (groups[n]), bn (groups[N + c], if usingBN)
//   hi  = K (the row's first element),  lo = sum_k wmean_k * ((hi_k - K) + lo_k)
//   var = sum_k wvar_k * var_k
//   mixed[r] = (hi, lo, gamma[c] / sqrt(var + eps), beta[c])      (mu = hi + lo)
// with beta replaced by NaN when any term is NaN/infinite in the reference or var + eps <= 0,
// so that the normalize pass does one load per row and no arithmetic on statistics.
// Rows with a scaled term (F_SCALED: wide rows or groups), and rows whose gamma / std could
// take a float32 factor out of range (factor_wide: gamma 1e33 over a std of 3e-7), get a
// meaningless map here: their y is written again by sn_wide_normalize, which forms their map in
// scaled units, gamma's exponent apart, itself. (A
// branch to that code here would cost every row on lavapipe, which runs both sides of a
// branch whose condition differs between invocations, masked.)

//!include common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
// Rows seg_first .. seg_end - 1; rows and mixed bound from row rec_base on (common.wgsl), the
// LN groups from group rec_base / C on (the samples of those rows), the BN groups (cgroups) from
// group chan_base on.
@group(0) @binding(1) var<storage, read> rows: array<Partial>;
@group(0) @binding(2) var<storage, read> groups: array<Group>;
@group(0) @binding(3) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
@group(0) @binding(4) var<storage, read_write> mixed: array<vec4<f32>>;
// Rows with a scaled term or factor-wide: a count (0 when the call starts), then the rows, for
// sn_wide_normalize.
@group(0) @binding(5) var<storage, read_write> wide_list: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read> cgroups: array<Group>;

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
  let p = rows[r - P.rec_base];
  let var_in = row_variance(p.m2, p.count);
  var m = mix_first(0u, p.shift, p.mean, var_in, p.flags | select(F_NO_VAR, 0u, p.count >= 2u));
  let ln = groups[n - P.rec_base / P.c];
  m = mix_add(m, 1u, ln.hi, ln.lo, ln.variance, ln.flags);
  // Selects rather than branches on the uniform flag: with the branch, every dispatch of this
  // shader kept ~130 KB on lavapipe for good (a raw WebGPU loop of this shader alone shows it),
  // so a training loop's memory grew without bound. The index stays in bounds either way.
  let use_bn = (P.flags & P_USING_BN) != 0u;
  let bn = cgroups[select(0u, P.n + c - P.chan_base, use_bn)];
  let with_bn = mix_add(m, 2u, bn.hi, bn.lo, bn.variance, bn.flags);
  m = Mixed(
    m.hi,
    select(m.lo, with_bn.lo, use_bn),
    select(m.variance, with_bn.variance, use_bn),
    select(m.flags, with_bn.flags, use_bn),
    select(m.lo_rest, with_bn.lo_rest, use_bn),
  );
  // A group summed again in triples (sn_group_refine: its mean_rest): the mix's mean from them
  // (mix_lo_triple), where its LN and BN means may cancel far below the pairs' precision. Formed
  // for every row and taken by select, not by a branch (see use_bn above: lavapipe runs both
  // sides of a branch anyway, and a branch here kept memory per dispatch); a few flops per row.
  let lt = mix_lo_triple(m.hi, p.mean, p.mean_rest, ln, select_group(bn, use_bn));
  let rest = (ln.mean_rest != 0.0) | (use_bn & (bn.mean_rest != 0.0));
  let triple = rest & is_finite_bits(lt.x) & is_finite_bits(lt.y) & ((m.flags & F_CLASS) == 0u);
  m.lo = select(m.lo, lt.x, triple);
  m.lo_rest = select(m.lo_rest, lt.y, triple);
  let gamma = affine[c];
  let map = row_affine(m, gamma, affine[P.c + c]);
  mixed[r - P.rec_base] = map;
  // and rows of std 0 with eps 0 (a constant row in every term of variance weight; an
  // evaluation on running_var 0), whose y is +-Infinity by the sign of x - mu (std_zero_y).
  // So are rows whose var + eps a tiny variance weight takes below float32's normal range, or
  // near it (mix_var_near_subnormal: below 2^-102, where a GPU may flush a term), which wide_map
  // keeps in a unit of its own.
  let std0 = (m.flags & F_CLASS) == 0u && mix_var_near_subnormal(m);
  // And rows whose y may pass float32's range, where WASM's bound does (refine_overflowing_rows:
  // scale^2 ((M - 1) var_in + (mu_in - mu)^2) beyond 2^248): their finite y, those near mu, are
  // held to their own size, below the single float32 lo's rounding (~2^-24 of mu - hi), which
  // sn_wide_normalize's map keeps as a pair (wide_lo_pair), from the means sn_group_refine summed
  // again (sn_group_stats: may_overflow). A few operations per row, none per element.
  let dm = p.mean - m.lo;
  let spread = p.m2 + dm * dm;
  let overflow = 2 * exponent_of(abs(map.z)) + exponent_of(spread) + 3 > 248;
  if (is_scaled(m.flags) || factor_wide(gamma, m.variance + P.eps) || std0 || overflow) {
    let listed = atomicAdd(&wide_list[0], 1u);
    atomicStore(&wide_list[LIST_FIRST + listed], r);
    // Its reader's dispatch (common.wgsl: list_grid).
    let grid = list_grid((listed + 1u) * P.chunks);
    atomicMax(&wide_list[1], grid.x);
    atomicMax(&wide_list[2], grid.y);
  }
}
