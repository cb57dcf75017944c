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
// The rows' dot products (the LN records carry the logit gradients' dots) and the columns'
// dgamma are formed and summed as float32 pairs (sn1d_bwd_element.wgsl: pair elements); the
// columns' records carry no dots.
// each bound from record rec_base (parts) and chan_base (cparts) on: per dispatch, the windows
// its row tiles write (the records may exceed one storage binding).
// sn_bwd_groups adds them up. An element whose statistics are flagged adds only dbeta and G_BAD.
// Lines with an element of scaled statistics (F_SCALED) or |dy| beyond DY_MAX, and every line
// of a tile with a column that may hold a factor-wide gamma / std, are summed again by
// sn1d_bwd_wide_reduce (sn1d_bwd_element.wgsl: wide_element).

//!include common.wgsl
//!include backward_common.wgsl
//!include pair.wgsl
//!include sn1d_mix.wgsl
//!include sn1d_bwd_element.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> groups: array<Group>;
@group(0) @binding(4) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
@group(0) @binding(5) var<storage, read_write> parts: array<Grad>;
@group(0) @binding(6) var<storage, read_write> cparts: array<Grad>;
// Lines with a wide element for sn1d_bwd_wide_reduce: a count (0 when the call starts), then
// tile * 64 + the line's thread.
@group(0) @binding(7) var<storage, read_write> wide_lines: array<atomic<u32>>;

const T: u32 = TILE_1D;
var<workgroup> tx: array<f32, 1056>; // 32 rows of 33: the pad keeps column reads apart
var<workgroup> tdy: array<f32, 1056>;
// Nonzero when a column of the tile may hold a factor-wide element (common.wgsl), tested once
// per column from a bound (below): then every line of the tile is listed, so the element loops
// carry no test of their own (lavapipe would run it for every element).
var<workgroup> t_gamma_wide: atomic<u32>;
// Bit 1 where a column, bit 2 where a row of the tile has a weighted variance plus eps below
// 2^-102 (term_var_near_subnormal): only where both do may an element's hot mix flush var + eps
// or a term of it (element_is_wide then takes it to wide_element), so then every line of the
// tile is listed.
var<workgroup> t_var_tiny: atomic<u32>;
// Nonzero where a row's LN or a column's BN mean has a word below 2^-100 (sn1d_bwd_element.wgsl
// mean_near_subnormal): the pair elements' mu_LN - mu_BN may then be subnormal and flushed, so
// every line of the tile is listed (element_is_wide then takes such elements to wide_element).
var<workgroup> t_mean_low: atomic<u32>;
// The two sides of the tile's mixes as pairs (sn1d_bwd_element.wgsl: ln_pair_part per row,
// bn_pair_part per column), formed once for the 32 elements of a line.
var<workgroup> t_ln_part: array<PairPart, 32>;
var<workgroup> t_bn_part: array<PairPart, 32>;

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
  if (lid < t.cols) {
    // The element's var + eps is at least wvar_bn var_bn + eps (the LN term is >= 0; float32
    // rounding is monotone), so a column whose bound is not factor-wide has no such element.
    let c = t.c0 + lid;
    let bn = groups[P.n + c - P.stat_bn_base];
    if (factor_wide(affine[c], weighted_var(1u, P.wvar[1] * bn.variance) + P.eps)) {
      atomicOr(&t_gamma_wide, 1u);
    }
    if (term_var_near_subnormal(1u, bn.variance) && !is_scaled(bn.flags)) {
      atomicOr(&t_var_tiny, 1u);
    }
    if (mean_near_subnormal(bn)) {
      atomicOr(&t_mean_low, 1u);
    }
    t_bn_part[lid] = bn_pair_part(bn);
  } else if (lid >= T && lid - T < t.rows) {
    let ln = groups[t.n0 + lid - T - P.row_base];
    if (term_var_near_subnormal(0u, ln.variance) && !is_scaled(ln.flags)) {
      atomicOr(&t_var_tiny, 2u);
    }
    if (mean_near_subnormal(ln)) {
      atomicOr(&t_mean_low, 1u);
    }
    t_ln_part[lid - T] = ln_pair_part(ln);
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
  // Plain sums of in-range terms (grad_add_plain: the dots and dgamma as pairs); a line with a
  // wide element is listed and summed again by sn1d_bwd_wide_reduce (whose branches lavapipe
  // would run, masked, for every element here).
  var acc = grad_zero();
  var wide = false;
  // Only the tile's own lines are listed (a thread past its rows or columns has none).
  let tile_wide = atomicLoad(&t_gamma_wide) != 0u || (P.flags & P_TINY_WEIGHTS) != 0u || atomicLoad(&t_var_tiny) == 3u ||
    atomicLoad(&t_mean_low) != 0u;
  if (lid < T) {
    if (lid < t.cols) {
      let c = t.c0 + lid;
      let bn = groups[P.n + c - P.stat_bn_base];
      wide = tile_wide;
      let bp = t_bn_part[lid];
      for (var r = 0u; r < t.rows; r++) {
        let ln = groups[t.n0 + r - P.row_base];
        let d = tdy[r * 33u + lid];
        let h = element_col_pair(ln, bn, c, tx[r * 33u + lid], d, t_ln_part[r], bp);
        wide = wide || element_is_wide_hot(ln, bn, d) || h.wide;
        acc = grad_add_plain(acc, h.g);
      }
      // (And a line whose sums could pass float32's range over its group: line_sums_wide.)
      wide = wide || line_sums_wide(acc);
      cparts[t.rt * P.c + c - P.chan_base] = acc;
    }
  } else if (lid - T < t.rows) {
    let r = lid - T;
    let ln = groups[t.n0 + r - P.row_base];
    let lp = t_ln_part[r];
    wide = tile_wide;
    for (var cc = 0u; cc < t.cols; cc++) {
      let c = t.c0 + cc;
      let bn = groups[P.n + c - P.stat_bn_base];
      let d = tdy[r * 33u + cc];
      let h = element_row_pair(ln, bn, c, tx[r * 33u + cc], d, lp, t_bn_part[cc]);
      wide = wide || element_is_wide_hot(ln, bn, d) || h.wide;
      acc = grad_add_plain(acc, h.g);
    }
    wide = wide || line_sums_wide(acc);
    parts[(t.n0 + r) * P.chunks + t.ct - P.rec_base] = acc;
  }
  if (wide) {
    let tile = t.rt * P.chunks + t.ct;
    let listed = atomicAdd(&wide_lines[0], 1u);
    atomicStore(&wide_lines[LIST_FIRST + listed], tile * 64u + lid);
    // Its reader's dispatch (common.wgsl: list_grid).
    let grid = list_grid(thread_items(listed + 1u));
    atomicMax(&wide_lines[1], grid.x);
    atomicMax(&wide_lines[2], grid.y);
  }
}
