// common.wgsl: declarations every SN shader shares. shaders/_build.ts pastes this file where a
// shader has the line `//!include common.wgsl`; it is not a shader on its own.
//
// Formulas defined here:
//   class_bits(v)      = which of NaN / +Inf / -Inf v is (0 for a finite v), from its bit pattern
//   merge(a, b)        = Chan's merge of two (count, mean, M2) summaries:
//                        n = na + nb, d = mean_b - mean_a,
//                        mean = mean_a + d * nb / n,  M2 = M2_a + M2_b + d^2 * na * nb / n
//   ieee_add/ieee_mul  = a + b and a * b with IEEE-754 results for infinite and NaN operands

// Non-finite values are tracked as flag bits, never as float NaN/Inf: WGSL lets implementations
// assume floats are finite (a driver may fold `x * 0.0` to 0 or drop NaN checks), so NaN and
// infinity must not flow through float arithmetic. The bits say what the float64 reference would
// have produced: any NaN, or +Inf together with -Inf, makes a mean NaN; +Inf alone makes it +Inf;
// any non-finite input, or fewer than two values, makes an unbiased variance NaN.
const F_NAN: u32 = 1u;
const F_POS_INF: u32 = 2u;
const F_NEG_INF: u32 = 4u;
// The unbiased variance is 0/0: fewer than two values (M = 1, N = 1 or C = 1, as in torch).
const F_NO_VAR: u32 = 8u;

// Bits of Params.flags.
const P_HAS_IN: u32 = 1u; // layout "nd": IN statistics per (n, c) take part
const P_USING_BN: u32 = 2u;
const P_TRAINING: u32 = 4u;
const P_BATCH_AVERAGE: u32 = 8u; // running update: batch average (else moving average)
const P_CHAN_GROUPS: u32 = 16u; // group pass merges raw partial sums (layout "1d")
const P_NO_RUNNING_UPDATE: u32 = 32u; // SyncSN: the CPU updates the running buffers
const P_ACCUMULATE: u32 = 64u; // sn_bwd_groups: add to the output records instead of writing them

// One uniform block for every pass; each dispatch gets its own 256-byte slot, so shapes and
// window offsets never force a pipeline to be rebuilt. Written by backends/_webgpu_plan.ts.
struct Params {
  n: u32,
  c: u32,
  m: u32,
  total: u32, // N * C * M elements
  seg_threads: u32, // stats: threads per segment (a power of two <= 256)
  seg_len: u32, // stats: elements per segment (chunk of a row)
  chunks: u32, // stats: segments per row; 1d stats: column tiles
  seg_first: u32, // first segment (1d: row tile) of this dispatch
  seg_end: u32, // one past the last segment (1d: row tile) of this dispatch
  elem_base: u32, // element index where this dispatch's binding window of x / y starts
  vec_count: u32, // normalize: vec4s in this window
  flags: u32,
  ln_base: u32, // group pass: members of LN group g are ln_base + g*ln_step + k*ln_stride
  ln_step: u32,
  ln_stride: u32,
  ln_count: u32, // members per LN group
  bn_base: u32,
  bn_step: u32,
  bn_stride: u32,
  bn_count: u32,
  groups_ln: u32, // number of LN groups (N)
  groups_bn: u32, // number of BN groups (C, or 0 without usingBN)
  eps: f32,
  momentum: f32,
  one_minus_momentum: f32, // 1 - momentum, formed in float64 on the CPU
  batch: f32, // backward: samples behind the BN statistics (the global batch under SyncSN)
  // Backward, where the gradient records exceed one storage binding and are bound in windows:
  // the first record of the bound window of per-row / per-sample records, and of channel records.
  rec_base: u32,
  chan_base: u32,
  wmean: vec4<f32>, // mixing weights of the means, in mixing order (in,) ln, bn
  wvar: vec4<f32>, // mixing weights of the variances
  inf_bits: u32, // 0x7f800000, the bits of +Inf: what qnan(), pos_inf() and neg_inf() are made of
}

// A (count, mean, M2) summary of some finite values, kept relative to `shift` (a value of the
// same scope) so that a large common offset costs no precision: the true mean is
// shift + mean, computed as a float32 hi/lo pair.
struct Partial {
  shift: f32,
  mean: f32,
  m2: f32,
  count: u32, // finite values summarized
  flags: u32, // F_* bits of every value of the scope, finite or not
}

// A derived statistic of a group (LN per n, BN per c): mean = hi + lo, biased or unbiased
// variance as the scope requires, F_* flags.
struct Group {
  hi: f32,
  lo: f32,
  variance: f32,
  flags: u32,
}

struct Acc {
  n: f32,
  mean: f32,
  m2: f32,
}

// NaN and the infinities are made at run time from P.inf_bits, which the CPU writes, never from
// constants: WGSL rejects a const-expression whose value is NaN or infinite (Tint, Chromium's
// compiler, refuses `bitcast<f32>(0x7fc00000u)`), and a value the compiler cannot see is one that
// its finite-math assumptions cannot fold away.
fn qnan() -> f32 {
  return bitcast<f32>(P.inf_bits | 0x00400000u);
}

fn pos_inf() -> f32 {
  return bitcast<f32>(P.inf_bits);
}

fn neg_inf() -> f32 {
  return bitcast<f32>(P.inf_bits | 0x80000000u);
}

fn class_bits(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  if ((b & 0x7f800000u) != 0x7f800000u) {
    return 0u;
  }
  if ((b & 0x007fffffu) != 0u) {
    return F_NAN;
  }
  return select(F_POS_INF, F_NEG_INF, (b & 0x80000000u) != 0u);
}

fn merge(a: Acc, b: Acc) -> Acc {
  if (b.n == 0.0) {
    return a;
  }
  if (a.n == 0.0) {
    return b;
  }
  let n = a.n + b.n;
  let d = b.mean - a.mean;
  let fb = b.n / n;
  return Acc(n, a.mean + d * fb, a.m2 + b.m2 + d * d * a.n * fb);
}

// The float a statistic with these flags has in the float64 reference: its mean.
fn mean_value(flags: u32, finite_mean: f32) -> f32 {
  if ((flags & F_NAN) != 0u || (flags & (F_POS_INF | F_NEG_INF)) == (F_POS_INF | F_NEG_INF)) {
    return qnan();
  }
  if ((flags & F_POS_INF) != 0u) {
    return pos_inf();
  }
  if ((flags & F_NEG_INF) != 0u) {
    return neg_inf();
  }
  return finite_mean;
}

// ... and its variance: NaN as soon as any flag is set.
fn var_value(flags: u32, finite_var: f32) -> f32 {
  return select(finite_var, qnan(), flags != 0u);
}

fn sign_bit(v: f32) -> u32 {
  return bitcast<u32>(v) & 0x80000000u;
}

fn ieee_mul(a: f32, b: f32) -> f32 {
  let ca = class_bits(a);
  let cb = class_bits(b);
  if ((ca | cb) == 0u) {
    return a * b;
  }
  if (((ca | cb) & F_NAN) != 0u || (ca == 0u && a == 0.0) || (cb == 0u && b == 0.0)) {
    return qnan(); // NaN operand, or 0 * Inf
  }
  return bitcast<f32>(P.inf_bits | (sign_bit(a) ^ sign_bit(b)));
}

fn ieee_add(a: f32, b: f32) -> f32 {
  let ca = class_bits(a);
  let cb = class_bits(b);
  if ((ca | cb) == 0u) {
    return a + b;
  }
  if (((ca | cb) & F_NAN) != 0u || (ca | cb) == (F_POS_INF | F_NEG_INF)) {
    return qnan(); // NaN operand, or Inf - Inf
  }
  return select(b, a, ca != 0u);
}

// The mixed statistics of one (n, c), built term by term in mixing order (sn_mix, sn1d_normalize):
//   lo  = sum_k wmean_k * ((hi_k - hi) + lo_k)   with hi the first term's hi
//   var = sum_k wvar_k * var_k,   flags = OR_k flags_k
struct Mixed {
  hi: f32,
  lo: f32,
  variance: f32,
  flags: u32,
}

fn mix_first(k: u32, hi: f32, lo: f32, variance: f32, flags: u32) -> Mixed {
  return Mixed(hi, P.wmean[k] * lo, P.wvar[k] * variance, flags);
}

fn mix_add(m: Mixed, k: u32, hi: f32, lo: f32, variance: f32, flags: u32) -> Mixed {
  return Mixed(
    m.hi,
    m.lo + P.wmean[k] * ((hi - m.hi) + lo),
    m.variance + P.wvar[k] * variance,
    m.flags | flags,
  );
}

// WebGPU's range: the float32 statistics and gradient products are right while var + eps (of a
// row's mixed statistics) lies in [2^-120, 2^120], std in [8.7e-19, 1.2e18]. Beyond, squares
// and sums overflow (|x| ~ 1e19), or squared deviations and s^3 fall below float32's normal
// range, which GPUs may flush to 0 (eps = 0 with std ~ 1e-20); the results there are NaN, never a
// wrong finite number (the float64 reference and WASM backends cover the whole float32 range).
const VAR_EPS_MIN: f32 = 7.523163845262640e-37; // 2^-120
const VAR_EPS_MAX: f32 = 1.329227995784916e36; // 2^120

fn in_gpu_range(var_eps: f32) -> bool {
  return var_eps >= VAR_EPS_MIN && var_eps <= VAR_EPS_MAX && class_bits(var_eps) == 0u;
}

// y = ((x - hi) - lo) * scale + beta for one (n, c): (hi, lo, scale, beta), with beta replaced by
// NaN when y must be NaN (a flagged statistic, var + eps <= 0) or var + eps is outside WebGPU's
// range (in_gpu_range). Normalize tests beta's bits.
fn row_affine(m: Mixed, gamma: f32, beta: f32) -> vec4<f32> {
  let denom = m.variance + P.eps;
  let bad = m.flags != 0u || !in_gpu_range(denom);
  let scale = gamma / sqrt(max(denom, 1e-38));
  return vec4<f32>(m.hi, m.lo, scale, select(beta, qnan(), bad));
}

fn is_nan_marker(beta: f32) -> bool {
  return (bitcast<u32>(beta) & 0x7f800000u) == 0x7f800000u;
}

// Workgroups are laid out on a 2D grid because one dimension holds at most 65535 of them.
fn linear_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}

// The tile of a layout "1d" pass (sn1d_stats, sn1d_bwd_reduce) that workgroup `wg` covers: row
// tile rt (rows n0 .. n0 + rows - 1) and column tile ct (columns c0 .. c0 + cols - 1) of x [N, C],
// TILE_1D x TILE_1D or less at the edges. Spare workgroups past the dispatch's last row tile get
// valid = false. Params.chunks holds the number of column tiles.
const TILE_1D: u32 = 32u;
struct Tile1d {
  valid: bool,
  rt: u32,
  ct: u32,
  n0: u32,
  c0: u32,
  rows: u32,
  cols: u32,
}

fn tile_1d(wg: u32) -> Tile1d {
  let rt = P.seg_first + wg / P.chunks;
  let ct = wg % P.chunks;
  let n0 = rt * TILE_1D;
  let c0 = ct * TILE_1D;
  if (rt >= P.seg_end) {
    return Tile1d(false, rt, ct, n0, c0, 0u, 0u);
  }
  return Tile1d(true, rt, ct, n0, c0, min(TILE_1D, P.n - n0), min(TILE_1D, P.c - c0));
}

// Index, within this dispatch's binding window, of the tile's element (r, cc).
fn tile_1d_elem(t: Tile1d, r: u32, cc: u32) -> u32 {
  return (t.n0 + r) * P.c + t.c0 + cc - P.elem_base;
}
