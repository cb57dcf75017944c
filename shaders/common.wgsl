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
// The bits above say what the reference has; a statistic is usable where these are all 0.
const F_CLASS: u32 = 0xffu;
// Bits 8..15 of a Partial's flags: the magnitude field of the largest finite |x| it summarizes,
// (bits(|x|) + 0x7fffff) >> 23, so that |x| <= 2^(field - 127) (0: every value is 0). Bit 16:
// the summary (or Group) is kept in scaled units: its means are in units of 2^u and its M2 and
// variances in units of 2^(2u), u = field - 127 (for a Group, field is the unit + 127 itself).
// Rows whose largest |x| lies outside (2^-21, 2^40] are summarized so ("wide" rows: beyond it
// float32 squares and sums overflow or go subnormal); every later pass brings its terms to a
// common unit with exact powers of two, so the whole float32 range is covered.
const F_FIELD: u32 = 0xff00u;
const F_SCALED: u32 = 0x10000u;
// A Group whose variance is +Infinity with a finite mean (an evaluation on a running_var that
// overflowed): a mix that gives it weight has s = 0, as in the reference (y = beta).
const F_VAR_INF: u32 = 0x20000u;
// A Partial of sn_stats whose shift was poor (poor_shift): sn_wide_stats measures it again about
// its mean, and sn_row_merge (P_WIDE_ONLY) merges its row again. No later pass sees the bit.
const F_REMEASURE: u32 = 0x40000u;
// A Group sn_group_stats listed for sn_group_refine (an LN or BN mean near 0 by cancellation,
// beside a far narrower member), until sn_group_refine writes it again. No other pass sees it.
const F_GROUP_REFINE: u32 = 0x80000u;
// A Partial whose M2 sn_group_refine summed again as an exact pair (m2 + m2_lo, like the merged
// rows'): sn_bwd_rows' pair dots read its variance as that pair.
const F_M2_EXACT: u32 = 0x100000u;
// The same bit of a Group's flags: sn_group_stats listed it for sn_group_refine as alike (its
// members' variances within 2^-20 of its own), until sn_group_refine writes it again.
const F_GROUP_ALIKE: u32 = 0x100000u;
// Bits 21..29 of an evaluation's BN Group (sn_group_stats): -o (two's complement), where its
// variance is held in units of 2^(2 (u + o)) rather than of its mean's 2^(2u) (var_unit): a
// running_var far below its running_mean's unit (3e38 over 1.4e-45, |mean| / std ~2^202) is 0 or
// a few subnormal bits there (y 3e28 for 1e22; NaN where a mark replaced that), o < 0; a
// running_mean far below its std's unit (1e-33 beside a running_var of 3e37) was 0 in that unit,
// o > 0 (the mean in its own unit). Every other record has 0 there.
const F_VAR_OFFSET: u32 = 0x3fe00000u;
// Bit 30: an evaluation's BN Group (running buffers), whose unit bounds no x: it does not set a
// mix's unit (sets_unit); its mean sets a floor of it and its variance the std's unit (wide_map).
const F_RUNNING: u32 = 0x40000000u;
// Bit 31 of a Term's flags (never a record's): its mean is its record's fine word, in the unit
// 2^FINE_MEAN_UNIT (fine_mean_term); its variance and x keep the record's unit (var_unit, x_unit).
const F_FINE_TERM: u32 = 0x80000000u;

// Bits of Params.flags.
const P_HAS_IN: u32 = 1u; // layout "nd": IN statistics per (n, c) take part
const P_USING_BN: u32 = 2u;
const P_TRAINING: u32 = 4u;
const P_BATCH_AVERAGE: u32 = 8u; // running update: batch average (else moving average)
const P_CHAN_GROUPS: u32 = 16u; // group pass merges raw partial sums (layout "1d")
const P_NO_RUNNING_UPDATE: u32 = 32u; // SyncSN: the CPU updates the running buffers
const P_ACCUMULATE: u32 = 64u; // sn_bwd_groups: add to the output records instead of writing them
const P_WIDE_ONLY: u32 = 128u; // sn_row_merge: only the rows sn_wide_stats summarized again
// sn_group_stats, layout "nd" with per-row records bound in blocks of whole samples (more rows
// than one storage binding holds): P_BN_PARTS writes each BN group's part over the block as a
// Partial (count = its rows, mean, M2 = sum of row variances + spread of row means) to bn_parts;
// P_BN_MERGE merges those parts (the members) into the BN groups.
const P_BN_PARTS: u32 = 256u;
const P_BN_MERGE: u32 = 512u;
// sn_group_stats: rows span several segments (or an evaluation with BN: refine_variance), write
// var_lo (pair.wgsl); sn_bwd_rows reads the IN variances as pairs.
const P_PAIRS: u32 = 1024u;
// A mixing weight below float32's normal range (Params.wmean_e / wvar_e): the backward's dx
// coefficients of every row take the wide passes (sn_bwd_coef, sn1d_bwd_wide_dx), whose sums
// keep exponents apart, and layout "1d" writes every element again in its wide passes (its
// per-element hot passes mix with the weights' float32 values alone: mix_first_hot). Such a weight lets a term's mean lie ~2^72 stds from the mix's (a
// constant row of 1e12 whose variance is that weight times an LN variance of 1e23), where the
// plain products gv (mu_k - mu) of the hot passes overflow.
const P_TINY_WEIGHTS: u32 = 2048u;
// A backward may follow this forward (training, or keepForBackward): refine_mean applies.
const P_REFINE_MEANS: u32 = 4096u;
// sn_group_stats, layout "nd" in one block: LN and BN groups whose mean cancels to ~0 beside a
// far narrower member, or with a member whose y may overflow, are listed for sn_group_refine.
const P_GROUP_REFINE: u32 = 8192u;
// sn_group_refine's step: sum the flagged groups' member rows again, or form their means again.
const P_REFINE_ROWS: u32 = 16384u;
const P_MERGE_ROWS: u32 = 32768u; // rows of several segments: merged again where summed again
const P_REFINE_GROUPS: u32 = 65536u;
// sn_group_stats with P_GROUP_REFINE in a forward no backward follows (an inference forward):
// only the groups of rows whose y may overflow are listed (may_overflow).
const P_OVERFLOW_ONLY: u32 = 131072u;
// Bits P_ZERO_WMEAN + k (P_ZERO_WVAR + k): the mean (variance) weight of term k, in mixing
// order, is 0 (the shaders' 0: below 2^-252, which the WebGPU backend takes as 0 throughout,
// README: Numerics; a missing term's). See zero_weight_exp.
const P_ZERO_WMEAN: u32 = 20u;
const P_ZERO_WVAR: u32 = 24u;

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
  // Forward, layout "nd": rec_base is the first row of the bound windows of per-row records
  // (parts from rec_base * chunks, rows, mixed); chan_base is the first group sn_group_stats
  // writes (within its window of groups), and the first group of the window of BN groups that
  // sn_mix and sn_wide_normalize read.
  rec_base: u32,
  chan_base: u32,
  wmean: vec4<f32>, // mixing weights of the means, in mixing order (in,) ln, bn
  wvar: vec4<f32>, // mixing weights of the variances
  inf_bits: u32, // 0x7f800000, the bits of +Inf: what qnan(), pos_inf() and neg_inf() are made of
  // floor(log2(eps) / 2) (-1000 for eps = 0): the unit of sqrt(eps), which sets a scaled mix's
  // std unit (wide_map's v_e) as the weighted variances do.
  eps_exp: i32,
  // Backward, layout "nd" in blocks of samples (more rows than one binding holds): the first row
  // of the bound windows of the forward's row summaries, of the segment sums and of the dx maps,
  // and where the channels' statistics lie in the bound window of the forward's group
  // statistics: the block's LN groups at groups[n - row_base / C], its copy of the BN groups at
  // groups[N + c - stat_bn_base]. Layout "1d" with more group statistics than one binding holds:
  // the window's LN groups at groups[n - row_base], the BN copy likewise. 0 and 0 without.
  row_base: u32,
  stat_bn_base: u32,
  // A mixing weight w below float32's normal range (logits ~87 apart) is wmean / wvar's
  // mantissa in [1/2, 1) times f1 f2 = 2^e (two normal powers of two) and e; every other weight
  // is its float32 rounding with f1 = f2 = 1, e = 0 (backends/_webgpu_weights.ts). Every
  // weighted product goes through weighted_mean / weighted_var (or adds e to an exponent), so that such a
  // weight times a huge statistic counts: its subnormal float32 rounding was ~1.5% off (y ~1%
  // off), and 0 where a GPU flushes subnormal operands.
  wmean_f1: vec4<f32>,
  wmean_f2: vec4<f32>,
  wvar_f1: vec4<f32>,
  wvar_f2: vec4<f32>,
  wmean_e: vec4<i32>,
  wvar_e: vec4<i32>,
  // The rest of the weights' mantissas and of eps beyond their float32 roundings (w = (wmean +
  // wmean_lo) f1 f2; 0 for a weight taken as 0; backends/_webgpu_weights.ts), for the backward's
  // per-row gradient work in float32 pairs (sn_bwd_rows.wgsl). The heaviest mean weight's rest is
  // 1 less the others (weightRests): its float64 value near 1 holds its distance from 1 to ~2^-54.
  wmean_lo: vec4<f32>,
  wvar_lo: vec4<f32>,
  eps_lo: f32,
  // sn_bwd_rows: the first record of this dispatch's workgroups in the dot-product partial sums.
  dot_base: u32,
  // The rest of momentum and of 1 - momentum beyond their float32 roundings (the running
  // update's factors as pairs, pair.wgsl running_update).
  momentum_lo: f32,
  one_minus_momentum_lo: f32,
}

// v itself, through an integer XOR with a uniform word that is 0 (inf_bits always holds
// 0x7f800000), which no compiler can prove: so no algebraic rewrite reaches across it. Shader
// compilers rewrite float arithmetic as if it were exact: lavapipe's turns (a + b) - a into b,
// NVIDIA's Vulkan driver s - (s - a) into a as well (tests/fuzz/adapter_float_probe.ts), either
// of which makes two_sum's error 0 or wrong. A subnormal v keeps its bits (an integer operation).
fn opaque(v: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(v) ^ (P.inf_bits ^ 0x7f800000u));
}

// The shaders' one float32 division: every a / b of floats is fdiv or fdiv_n, both of which
// divide here (tests/wgsl_float_division_guard_test.ts refuses any other float `/`). The tests
// replace this body with NVIDIA's division (tests/_nvidia_division.ts: a times an approximate
// reciprocal, 0 for |b| above 2^126, a subnormal b flushed to 0), which no CPU adapter has.
fn div_f32(a: f32, b: f32) -> f32 {
  return a / b;
}

// a / b for any float32 b. NVIDIA's Vulkan driver divides as a times an approximate reciprocal
// (tests/fuzz/adapter_float_probe.ts): the reciprocal of |b| above 2^126 is flushed to 0
// (3e38 / 3e38 = 0), and a subnormal b is flushed before it (2^-130 / 2^-129 = NaN). Such a b is
// brought into range first with a by the same power of two, by their bits (scale2: a multiply
// would flush a subnormal operand): quartered above 2^126 (a loses only bits below 2^-124,
// where a / b < 2^-250 is 0 either way), raised by 2^64 below 2^-126 (a beyond 2^64 overflows,
// where a / b beyond 2^190 does too). Exact powers of two: IEEE division gives the same bits.
fn fdiv(a: f32, b: f32) -> f32 {
  let bb = bitcast<u32>(b) & 0x7fffffffu;
  if (bb > 0x7e800000u || (bb < 0x00800000u && bb != 0u)) {
    let k = select(64, -2, bb > 0x7e800000u);
    return div_f32(scale2(a, k), scale2(b, k));
  }
  return div_f32(a, b);
}

// a / n for a divisor known to lie in float32's normal range below 2^126: a count or a count
// less one, the square root of a positive variance (2^-75 to 2^64), a power of two such as
// lift's. Nothing to guard, so the hot loops divide as they did (an inlined call).
fn fdiv_n(a: f32, n: f32) -> f32 {
  return div_f32(a, n);
}

// s + e = a + b exactly, s = f32(a + b) (Knuth's TwoSum). Each intermediate passes opaque(),
// so that no rewrite of the formula as exact arithmetic folds the error away.
fn two_sum(a: f32, b: f32) -> vec2<f32> {
  let s = opaque(a + b);
  let bb = opaque(s - a);
  return vec2<f32>(s, opaque(a - opaque(s - bb)) + (b - bb));
}

// Pair arithmetic the mix needs (the rest is in pair.wgsl).
// (hi, lo) + v, as a float32 pair.
fn pair_add(p: vec2<f32>, v: f32) -> vec2<f32> {
  let s = two_sum(p.x, v);
  return two_sum(s.x, s.y + p.y);
}

// v cut into a part with 12 significant bits and the rest (also <= 12 bits): v = hi + lo.
fn split12(v: f32) -> vec2<f32> {
  let hi = bitcast<f32>(bitcast<u32>(v) & 0xfffff000u);
  return vec2<f32>(hi, v - hi);
}

// p - k * v for any u32 k: k split into parts of at most 12 significant bits as well. The loop
// stops at k's last nonzero part (a part of 0 adds nothing): a count below 2^12, a line's or a
// segment's, takes one part, not three (SwitchNorm1d's statistics call pair_mean, two of these,
// per line: 1.07x to 1.09x its forward at [65536, 64] with three parts).
fn pair_sub_times(p: vec2<f32>, k: u32, v: f32) -> vec2<f32> {
  let s = split12(v);
  var q = p;
  for (var part = 0u; part < 3u && (k >> (12u * part)) != 0u; part++) {
    let kp = f32(k & (0xfffu << (12u * part))); // bits 24.. of a u32 are 8: exact too
    q = pair_add(q, -(kp * s.x));
    q = pair_add(q, -(kp * s.y));
  }
  return q;
}

// f32(a / k) for a count k >= 1 (a group's M2 over its count, or count - 1): the quotient
// corrected by its exact remainder a - q k over k, as pair_mean corrects q1. NVIDIA's Vulkan
// driver divides as a times an approximate reciprocal of k, an ulp or more off f32(a / k), and
// the backward differences the LN and BN variances' float32 words (the wide path of layout
// "1d", wide_element): rows of +-3.4e38 whose LN and BN variances are equal had them an ulp
// apart, `var_weight`'s gradient 1.25e-9 for 4.73e-9, 460x its tolerance (attack fuzzer seed
// 339936; tests/sn1d_wide_var_pairs_test.ts). Where the first quotient is f32(a / k) already
// (IEEE division) its rest lies within half its ulp and the sum rounds back to it: the bits of
// a single division. A quotient that is not finite, or whose correction is not, stays. Layout
// "nd" likewise: its row variances (row_variance, below) and merged groups (sn_group_stats).
fn fdiv_count(a: f32, k: u32) -> f32 {
  let q0 = fdiv_n(a, f32(k));
  let r = pair_sub_times(vec2<f32>(a, 0.0), k, q0);
  let q1 = q0 + fdiv_n(r.x + r.y, f32(k));
  return select(q0, q1, is_finite_bits(q0) && is_finite_bits(q1));
}

// A row's (or segment's) IN variance M2 / (count - 1) as float32 (M2 / 1 for count below 2):
// every pass that reads it forms these bits (fdiv_count, f32(M2 / (count - 1)) under NVIDIA's
// division too), so that the backward's differences of one statistic are exactly 0, and a row
// whose variance equals its LN or BN one in exact arithmetic finds the same float32 where the
// groups' quotients (fdiv_count) do: under the reciprocal's rounding a row of 8 values of
// variance 15.8203125 = 110.7421875 / 7 came out an ulp above its LN variance of the same value,
// `var_weight`'s gradient 538x its tolerance (tests/nd_count_quotients_test.ts).
fn row_variance(m2: f32, count: u32) -> f32 {
  return fdiv_count(m2, max(count, 2u) - 1u);
}

// p + q, as a float32 pair.
fn pair_sum(p: vec2<f32>, q: vec2<f32>) -> vec2<f32> {
  return pair_add(pair_add(p, q.x), q.y);
}

// a * b exactly, as a float32 pair: both split into parts of at most 12 significant bits, whose
// four products are exact (where they stay normal).
fn pair_times(a: f32, b: f32) -> vec2<f32> {
  let x = split12(a);
  let y = split12(b);
  let p = two_sum(x.x * y.x, x.x * y.y);
  return pair_add(pair_add(p, x.y * y.x), x.y * y.y);
}

// w * b exactly, as pair_times, for a mixing weight w (a float32 word of Params' wmean or
// wmean_lo, at most 1): a weight below 2^-100 is taken as w 2^64 and the pair brought back by
// 2^-64 (exact powers of two). pair_times' 12-bit split of a weight below ~2^-102 leaves a low
// part below float32's normal range, which GPUs that flush subnormal operands and results
// (NVIDIA, SwiftShader) take for 0: the product lost up to 2^-12 of itself (w = e^-87 = 1.6e-38
// times a running_mean of 1e30, 1.4e-4 of it: y -4.936732e25 for -4.937434e25,
// tests/far_mean_low_word_test.ts). Scaled, the parts and products stay normal (|w b 2^64| is at
// most 2^92); lavapipe's bits are those of pair_times wherever its products were normal. The
// test is of a uniform: no divergence.
fn weight_times(w: f32, b: f32) -> vec2<f32> {
  let small = abs(w) < 0x1p-100f;
  let p = pair_times(select(w, w * 0x1p64f, small), b);
  return select(p, p * 0x1p-64f, small);
}

// Float32 triples t.x + t.y + t.z (words of decreasing size), for the means of the groups
// sn_group_refine sums again and the mixes that take them (mix_lo_triple, wide_lo_triple): a
// sum of float32 words in pairs keeps ~2^-48 of its largest partial sum, which where an LN and a
// BN mean of ~1e5 cancel in the mix of a row of std ~1e-6 is ~1e-4 of that std (y 1.3x to 80x
// its tolerance, tests/narrow_scaled_row_cancel_test.ts); in triples, ~2^-72. t + v: exact but
// for the last word's addition.
fn triple_add(t: vec3<f32>, v: f32) -> vec3<f32> {
  let a = two_sum(t.x, v);
  let b = two_sum(t.y, a.y);
  let c = two_sum(a.x, b.x);
  let d = two_sum(c.y, t.z + b.y);
  return vec3<f32>(c.x, d.x, d.y);
}

fn triple_add_pair(t: vec3<f32>, p: vec2<f32>) -> vec3<f32> {
  return triple_add(triple_add(t, p.x), p.y);
}

// t / count for an integer count below 2^24: each word's quotient from the remainder formed
// exactly (pair_times of a quotient and count).
fn triple_mean(t: vec3<f32>, count: u32) -> vec3<f32> {
  let k = f32(count);
  let q1 = fdiv_n(t.x + t.y, k);
  let r1 = triple_add_pair(t, -pair_times(q1, k));
  let q2 = fdiv_n(r1.x + r1.y, k);
  let r2 = triple_add_pair(r1, -pair_times(q2, k));
  let q3 = fdiv_n(r2.x + r2.y + r2.z, k);
  let a = two_sum(q1, q2);
  let b = two_sum(a.y, q3);
  return vec3<f32>(a.x, b.x, b.y);
}

// wmean_k v and wvar_k v from a product p = wmean[k] v (wvar[k] v) of the weight's mantissa:
// p f1 f2, exact while it stays normal (each factor is 1 for ordinary weights).
fn weighted_mean(k: u32, p: f32) -> f32 {
  return p * P.wmean_f1[k] * P.wmean_f2[k];
}

fn weighted_var(k: u32, p: f32) -> f32 {
  return p * P.wvar_f1[k] * P.wvar_f2[k];
}


// A (count, mean, M2) summary of some finite values, kept relative to `shift` (a value of the
// same scope) so that a large common offset costs no precision: the true mean is
// shift + mean, computed as a float32 hi/lo pair. M2 is m2 + m2_lo: m2_lo is 0 except in the
// rows sn_row_merge merges from several segments (pair.wgsl), which every pass but the
// backward's variance differences reads as the float32 m2 alone.
struct Partial {
  shift: f32,
  mean: f32,
  m2: f32,
  count: u32, // finite values summarized
  flags: u32, // F_* bits of every value of the scope, finite or not
  m2_lo: f32,
  // The mean where it lies below 2^-FINE_MEAN_BELOW of its unit (see FINE_MEAN_UNIT), else 0.
  fine: f32,
  // The mean's third word beyond shift + mean, where a segment's mean was summed again about its
  // shift (sn_wide_stats, sn_group_refine: the rest of the quotient, pair_mean), else 0: the
  // groups sn_group_refine sums again in triples take it (Group.mean_rest). The record is 32
  // bytes: a power of two, so that a block of rows starts at an offsetAlign (256) boundary every
  // 8 rows (28 bytes took 64, and blocks of samples of the backward's plan no longer fit where
  // the forward's did: tests/webgpu_plan_test.ts).
  mean_rest: f32,
}

// A derived statistic of a group (LN per n, BN per c): mean = hi + lo, biased or unbiased
// variance as the scope requires (variance + var_lo, a float32 pair for the backward's variance
// differences; var_lo is 0 for running buffers and in layout "nd" on rows of one segment), F_* flags.
struct Group {
  hi: f32,
  lo: f32,
  variance: f32,
  flags: u32,
  var_lo: f32,
  // As Partial's.
  fine: f32,
  // The mean's third word beyond hi + lo (sn_group_refine's groups, whose members it sums again
  // in float32 triples), else 0: see mix_lo_triple. The record is 32 bytes, as Partial's (24
  // bytes made blocks of samples start every 32 samples, 8 now).
  mean_rest: f32,
  // The fine word's rest (fine + fine_rest the mean in the unit 2^FINE_MEAN_UNIT, group_fine),
  // else 0: a group mean that differs from a member's by less than its fine word's last bit (an
  // LN mean x1 less 2.8e-45 beside a constant row x1 ~6.7e-38, both below 2^-100 of their unit:
  // tests/far_mean_low_word_test.ts) keeps that difference for the backward's far lanes
  // (far_rest_lane, sn_bwd_rows.wgsl). In the padding word.
  fine_rest: f32,
}

struct Acc {
  n: f32,
  mean: f32,
  m2: f32,
}

// v with its significand cut to 12 bits (toward 0): a centre x - centre is exact for, whenever x
// is as coarse as a float32 near it can be, so that subtracting it rounds only x's own low bits.
// A centre with bits finer than x's would round every x of a binade the same way (its discarded
// bits are constant): an error of ~2^-25 per element, systematic over long rows.
fn coarse12(v: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(v) & 0xfffff000u);
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

// Whether v is finite, by its bits: no branch, unlike class_bits (lavapipe kept ~40 KB and more
// per call for good where the backward's pair sums tested each sum with class_bits:
// tests/webgpu_memory_test.ts).
fn is_finite_bits(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
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
  let fb = fdiv_n(b.n, n);
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
  // The rest of the mean minus hi beyond float32 (lo + lo_rest, a pair): mix_add adds the
  // weighted means' differences from hi exactly, so that terms that cancel (LN and BN means
  // carrying outliers of opposite signs) leave lo the float32 rounding of their sum, not of
  // theirs (y of a row of std 1 whose LN and BN means were +-78125: 26x its tolerance).
  lo_rest: f32,
}

fn mix_first(k: u32, hi: f32, lo: f32, variance: f32, flags: u32) -> Mixed {
  let t = weighted_pair(k, vec2<f32>(lo, 0.0));
  let exact = is_finite_bits(t.x) && is_finite_bits(t.y);
  let plain = weighted_mean(k, P.wmean[k] * lo);
  return Mixed(hi, select(plain, t.x, exact), weighted_var(k, P.wvar[k] * variance), flags, select(0.0, t.y, exact));
}

fn mix_add(m: Mixed, k: u32, hi: f32, lo: f32, variance: f32, flags: u32) -> Mixed {
  // (hi - m.hi) + lo as a pair, its weighted value as a pair, added to (m.lo, m.lo_rest); where
  // any of it is not finite, the float32 sum as before (an infinite or NaN statistic).
  let t = pair_sum(vec2<f32>(m.lo, m.lo_rest), weighted_pair(k, pair_add(two_sum(hi, -m.hi), lo)));
  let plain = m.lo + weighted_mean(k, P.wmean[k] * ((hi - m.hi) + lo));
  let exact = is_finite_bits(t.x) && is_finite_bits(t.y);
  return Mixed(
    m.hi,
    select(plain, t.x, exact),
    m.variance + weighted_var(k, P.wvar[k] * variance),
    m.flags | flags,
    select(0.0, t.y, exact),
  );
}

// wmean_k (d.x + d.y) as a float32 pair: the product with d.x exact (weight_times), with d.y in
// float32 (a rounding of that small word), both scaled by the weight's exponent factors (exact
// while normal: weighted_mean).
fn weighted_pair(k: u32, d: vec2<f32>) -> vec2<f32> {
  let p = pair_add(weight_times(P.wmean[k], d.x), P.wmean[k] * d.y);
  return vec2<f32>(weighted_mean(k, p.x), weighted_mean(k, p.y));
}

// t + w_k ((d.x + d.y) + lo + rest) in triples, w_k = (wmean + wmean_lo) times its exponent
// factors: each weight word's product with d.x, d.y and lo exact (weight_times), with rest and the
// weight's rest's small products in float32 (far below the triple's second word).
fn weighted_triple(t: vec3<f32>, k: u32, d: vec2<f32>, lo: f32, rest: f32) -> vec3<f32> {
  let w = P.wmean[k];
  let wl = P.wmean_lo[k];
  var s = triple_add_pair(vec3<f32>(0.0), weight_times(w, d.x));
  s = triple_add_pair(s, weight_times(w, d.y));
  s = triple_add_pair(s, weight_times(w, lo));
  s = triple_add_pair(s, weight_times(wl, d.x));
  s = triple_add(s, w * rest + wl * (d.y + lo));
  return triple_add(triple_add(triple_add(t, weighted_mean(k, s.x)), weighted_mean(k, s.y)), weighted_mean(k, s.z));
}

// The mix's mean less hi (term 0's hi) as a float32 pair, for a row one of whose groups holds a
// third word (Group.mean_rest: sn_group_refine summed it again): sum_k w_k ((hi_k - hi) + lo_k
// + rest_k) in triples, the weights with their rest beyond float32 (wmean_lo). mix_add's pairs
// keep ~2^-48 of the largest term, w_k (mu_k - hi): where an LN and a BN mean of ~1e5 cancel in
// the mix of a row of std ~1e-6 that is ~1e-4 of the std, y up to 1.4x its tolerance (and the
// weights' float32 roundings ~2^-25 of it). Term 2 of weight 0 without usingBN (g2 zeroed).
fn mix_lo_triple(hi: f32, lo0: f32, rest0: f32, g1: Group, g2: Group) -> vec2<f32> {
  var t = weighted_triple(vec3<f32>(0.0), 0u, vec2<f32>(0.0), lo0, rest0);
  t = weighted_triple(t, 1u, two_sum(g1.hi, -hi), g1.lo, g1.mean_rest);
  t = weighted_triple(t, 2u, two_sum(g2.hi, -hi), g2.lo, g2.mean_rest);
  let s = two_sum(t.x, t.y + t.z);
  return s;
}

// mix_first and mix_add with the weights' float32 values alone (no exponent factors), for the
// per-element passes of layout "1d" (sn1d_normalize, sn1d_bwd_reduce, sn1d_bwd_dx), where two
// multiplications more per weighted term cost lavapipe ~10%: a call with a weight below
// float32's normal range (P_TINY_WEIGHTS) writes every element again in the wide passes.
fn mix_first_hot(k: u32, hi: f32, lo: f32, variance: f32, flags: u32) -> Mixed {
  return Mixed(hi, P.wmean[k] * lo, P.wvar[k] * variance, flags, 0.0);
}

fn mix_add_hot(m: Mixed, k: u32, hi: f32, lo: f32, variance: f32, flags: u32) -> Mixed {
  return Mixed(m.hi, m.lo + P.wmean[k] * ((hi - m.hi) + lo), m.variance + P.wvar[k] * variance, m.flags | flags, 0.0);
}

// y = ((x - hi) - lo) * scale + beta for one (n, c): (hi, lo, scale, beta), with beta replaced by
// NaN when y must be NaN (a flagged statistic, var + eps <= 0). Normalize tests beta's bits.
// Only for unscaled terms (see wide_map for the rest): there var + eps lies in [2^-126, 2^84].
fn row_affine(m: Mixed, gamma: f32, beta: f32) -> vec4<f32> {
  let denom = m.variance + P.eps;
  let bad = (m.flags & F_CLASS) != 0u || !(denom > 0.0);
  let scale = fdiv_n(gamma, sqrt(select(denom, 1.0, bad)));
  return vec4<f32>(m.hi, m.lo, scale, select(beta, qnan(), bad));
}

// Whether an unscaled mix's var + eps lies below float32's normal range (0 or subnormal, by its
// exponent field): a variance weight below that range (its exponent factors, weighted_var) times
// a small variance (2.7e-76 times a running_var of 1e-30, 3.7e-44 times an LN variance of 1)
// flushes to 0 or to a subnormal there, which the plain mix takes for a std of 0 or a coarse
// one (dx NaN, y off where the reference is finite: attack fuzzer seed 1878,
// tests/range_1d_test.ts, tests/tiny_variance_mix_test.ts). Those rows take the wide passes,
// whose map (wide_map) keeps such a variance in a unit of its own (a mix of std 0 is bad there
// too).
fn mix_var_below_normal(m: Mixed) -> bool {
  return ((bitcast<u32>(m.variance + P.eps) >> 23u) & 0xffu) == 0u;
}

// mix_var_below_normal, or var + eps within 2^24 above float32's normal range
// (below 2^-102, by its exponent field): there a weighted term below that range may be 2^-24 or
// more of var + eps, which GPUs that flush subnormal operands (NVIDIA, SwiftShader) drop from
// the plain mix's sum while lavapipe keeps it (an evaluation on running_var 0 under eps 0 beside
// IN and LN terms of 2^-125 and 2^-127: y -2.09e7 for -1.90e7 on SwiftShader; the flushed sum
// is still normal, so mix_var_below_normal kept the row plain). Such rows take the wide passes,
// whose wide_map keeps every term normal (its lift). Rows whose var + eps lies above 2^-102 lose
// at most ~2^-24 of it to a flush: they stay plain.
fn mix_var_near_subnormal(m: Mixed) -> bool {
  return ((bitcast<u32>(m.variance + P.eps) >> 23u) & 0xffu) < 25u;
}

// Layout "1d": whether term k's weighted variance plus eps (variance in real units), a lower
// bound of every mixed var + eps it takes part in (the weights are >= 0), lies below 2^-102
// (mix_var_near_subnormal's bound) while its variance weight is not 0. Only where both terms'
// bounds do can an element's hot mix (the weights' float32 values, mix_1d) flush var + eps to 0
// or a subnormal, or drop a weighted term below float32's normal range that is 2^-24 or more of
// it (mix_var_near_subnormal): an evaluation on a running_var of 0, eps 0, beside an LN
// variance of 2.5e-13 under a variance weight of e^-85 (3e-50: dx NaN where the reference's std
// is 1.7e-25, tests/sn1d_tiny_mixed_var_test.ts), and one under eps 2^-126 beside an LN term of
// ~2^-127 (e^-58.7 times 1.8e-13), which a GPU that flushes subnormals dropped from var + eps (y
// 3.30e12 for 2.62e12 on SwiftShader; it was tested below float32's normal range then, where
// the flushed sum is not). The backward sends such elements to its wide passes, one test per
// tile row and column (sn1d_bwd_reduce) and per channel (sn_bwd_groups); the forward lists
// such channels for sn1d_wide_normalize (sn_group_stats: list_if_wide).
fn term_var_near_subnormal(k: u32, variance: f32) -> bool {
  let v = weighted_var(k, P.wvar[k] * variance) + P.eps;
  return (P.wvar[k] != 0.0) & (((bitcast<u32>(v) >> 23u) & 0xffu) < 25u);
}

// Whether gamma / sqrt(denom) of an unscaled mix may pass 2^80, where its products with
// x - mu (up to 2^42 in such a row), with dy and with the row sums could leave float32 while
// y, dx and the gradients fit (gamma 1e33 over a std of 3e-7, gamma near +-3e38): such a row
// ("factor-wide") takes the wide passes, which carry gamma's exponent apart (wide_map's g).
// Exponent fields only (denom 0 or subnormal counts as 2^-127): never a float test of a value
// that may have overflowed (see the top). In-range data (|gamma| / std up to 2^80) stays hot.
fn factor_wide(gamma: f32, denom: f32) -> bool {
  let ge = i32((bitcast<u32>(gamma) >> 23u) & 0xffu);
  let de = i32((bitcast<u32>(denom) >> 23u) & 0xffu);
  // 2 log2|gamma| - log2(denom) > 160, or a subnormal gamma (its bits apart: gamma s rounded
  // to float32's subnormal spacing lost up to half of a gamma of 2^-149).
  return (2 * ge - de > 287) | ((ge == 0) & ((bitcast<u32>(gamma) & 0x7fffffffu) != 0u));
}

// y = t 2^g + beta of a wide map (w.scale carries gamma 2^-g), added in a safe order: for
// g >= 0, 4 (t 2^(g - 2) + beta / 4) (exact powers of two: the same bits as t 2^g + beta
// wherever that does not overflow), whose terms and sum stay below float32's largest value
// wherever |y| does (|t 2^g| > 4 max makes |y| > 3 max: the infinity of t's sign either way; g
// of 0 and 1 took the plain order: gamma 2, beta -3.3e38 gave +Infinity for y 2.3e38). Few
// operations: lavapipe runs this code, masked, for every element of sn1d_normalize.
fn wide_y(w: WideMap, t: f32) -> f32 {
  // g beyond pow2's range (a std far below the mix's unit, wide_map's sv) by t's bits.
  let near = select(t * pow2(w.g) + w.beta, (t * pow2(w.g - 2) + w.beta * 0.25) * 4.0, w.g >= 0);
  return select(near, (scale2(t, w.g - 2) + w.beta * 0.25) * 4.0, (w.g > 120) | (w.g < -120));
}

// gamma = gamma' 2^g with |gamma'| in [1, 2), from the bits (g = 0, gamma' = 0 for 0), a
// subnormal's included: GPUs may flush it as an operand, and gamma s on the subnormal spacing
// rounds away up to half of it (dx 2.4e-7 for 1.6e-7 under gamma 2^-149, corner fuzzer seed 288).
fn gamma_exp(gamma: f32) -> i32 {
  return select(bits_exponent(gamma), 0, (bitcast<u32>(gamma) << 1u) == 0u);
}

// floor(log2 |v|) by v's bits, subnormals included (exponent_of takes them for 0: the bounds of
// sn_bwd_coef's dx map then set a unit 2^-500 in which such a term passed float32's range, NaN
// where the reference's dx is 0 under subnormal dy and gamma); -1000 for 0, 128 for NaN and the
// infinities.
fn bits_exponent(v: f32) -> i32 {
  let b = bitcast<u32>(v) & 0x7fffffffu;
  let f = i32(b >> 23u);
  return select(select(f - 127, -118 - i32(countLeadingZeros(b)), f == 0), -1000, b == 0u);
}

fn gamma_mantissa(gamma: f32) -> f32 {
  let b = bitcast<u32>(gamma);
  let a = b & 0x7fffffffu;
  // A subnormal's bits shifted up to a leading 1 at bit 23 (its exponent in gamma_exp).
  let sub = (b & 0x80000000u) | 0x3f800000u | ((a << (countLeadingZeros(a) - 8u)) & 0x007fffffu);
  return select(bitcast<f32>((b & 0x807fffffu) | 0x3f800000u), select(bitcast<f32>(sub), gamma, a == 0u), (b & 0x7f800000u) == 0u);
}

// The second word of a wide row's mixed[r] (sn_mix): an exponent pattern no finite lo has.
const WIDE_MARK: u32 = 0x7f800000u;
// With WIDE_MARK in a wide row's dx map (sn_bwd_coef): its gradient sums are not finite, and
// sn_bwd_wide_dx subtracts the row's mean offset lo_in from x - K (bit 20: above D and U).
const INF_MARK: u32 = 0x00100000u;
// With WIDE_MARK: the map's A' is 2^A_LIFT higher (A far below the row's dx unit), added apart
// in sn_bwd_wide_dx (bit 31, sn_bwd_coef).
const A_FAR: u32 = 0x80000000u;
const A_LIFT: i32 = 220;

// Whether v is NaN, by its bits (an infinite v is not: sn_bwd_dx's maps take A = +-Inf where dy is infinite).
fn is_nan_bits(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn is_nan_marker(beta: f32) -> bool {
  return (bitcast<u32>(beta) & 0x7f800000u) == 0x7f800000u;
}

// A SyncSN training call: the BN statistics and sums this replica's passes form are its own, and
// the CPU puts the global batch's in their place between the passes.
fn synced_training() -> bool {
  return (P.flags & (P_NO_RUNNING_UPDATE | P_TRAINING)) == (P_NO_RUNNING_UPDATE | P_TRAINING);
}

// Workgroups are laid out on a 2D grid because one dimension holds at most 65535 of them.
fn linear_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}

// The lists of wide rows, segments, lines or groups that a hot pass fills and a wide pass reads
// (storage, each bound at its own offset): word 0 the count; words 1..3 the wide pass's
// indirect dispatch arguments (x, y, z), which the call writes as (0, 1, 1) with the count
// (backends: EMPTY_LIST) and each entry listed raises to list_grid of the items listed so far
// (atomicMax of x and of y); the entries from word LIST_FIRST on. Without wide data the wide
// passes dispatch no workgroup: on lavapipe a dispatch of 64 workgroups that only read a zero
// count cost ~0.15 ms each.
const LIST_FIRST: u32 = 4u;
const LIST_WORKGROUPS: u32 = 64u;
// At most this many work items per workgroup of a wide pass. llvmpipe (lavapipe) ends an
// invocation's loops after 65535 iterations in all, with no error: with 64 workgroups whatever
// the count, [16,65536,2,2] of data ~1e-7 (every row wide) had a third of y unwritten, and a
// row of 5.2M floats its last 1.2M elements. A wide pass's item is at most one segment (4096
// elements, 64 per thread) or one line, so a thread loops at most ~LIST_ITEMS_PER_GROUP * 66
// times.
const LIST_ITEMS_PER_GROUP: u32 = 256u;

// The work items of `entries` list entries for a wide pass whose threads (not workgroups) take
// one entry each: 64 entries, one per thread of a workgroup, make one item.
fn thread_items(entries: u32) -> u32 {
  return entries / 64u + select(0u, 1u, entries % 64u != 0u);
}

// Work item `item` of a pass that takes a row list by segments (sn_wide_normalize,
// sn_bwd_wide_dx, sn_zero_std_y: item k * chunks + j is segment j of listed row k, here `row`):
// the segment's elements [x, y) in this dispatch's window of the tensor, empty (x = y) where
// the segment lies outside it.
fn listed_segment(row: u32, item: u32) -> vec2<u32> {
  let j = item % P.chunks;
  let seg = row * P.chunks + j;
  if (seg < P.seg_first || seg >= P.seg_end) {
    return vec2<u32>(0u);
  }
  let s = row * P.m + j * P.seg_len - P.elem_base;
  return vec2<u32>(s, min(s + P.seg_len, row * P.m + P.m - P.elem_base));
}

// The wide pass's dispatch (x, y) for `items` work items: a workgroup per item up to
// LIST_WORKGROUPS, and beyond that at most LIST_ITEMS_PER_GROUP items per workgroup, x at most
// 65535 (rows of y beyond). Monotone in `items`, so the atomicMax of each lister's own grid
// (x and y apart) covers the count the list ends with.
fn list_grid(items: u32) -> vec2<u32> {
  let per = items / LIST_ITEMS_PER_GROUP + select(0u, 1u, items % LIST_ITEMS_PER_GROUP != 0u);
  let w = max(min(items, LIST_WORKGROUPS), per);
  let y = w / 65535u + select(0u, 1u, w % 65535u != 0u);
  return vec2<u32>(w / y + select(0u, 1u, w % y != 0u), y);
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

// floor(log2 |v|) of a normal float32 v; -1000 for 0 (and subnormals).
fn exponent_of(v: f32) -> i32 {
  let b = (bitcast<u32>(v) >> 23u) & 0xffu;
  return select(i32(b) - 127, -1000, b == 0u);
}

// exponent_of for a finite v, -1000 (none) for NaN and the infinities: estimates of a result's
// size from its inputs' exponents must not take a non-finite input for a huge finite one (its
// result follows IEEE arithmetic instead).
fn finite_exponent_of(v: f32) -> i32 {
  return select(exponent_of(v), -1000, class_bits(v) != 0u);
}

// The magnitude field (see F_FIELD) of a finite value's bits without the sign.
fn abs_field(abs_bits: u32) -> u32 {
  return (abs_bits + 0x7fffffu) >> 23u;
}

fn max_field(flags: u32) -> u32 {
  return (flags & F_FIELD) >> 8u;
}

// Flags of two summaries merged: the F_* bits and F_SCALED or'ed, the larger field.
fn merge_flags(a: u32, b: u32) -> u32 {
  return ((a | b) & ~F_FIELD) | max(a & F_FIELD, b & F_FIELD);
}

// Whether a summary (count n, mean and M2 of x - K) was taken about a poor shift K: one more
// than 4 standard deviations from its mean (mean^2 > 16 M2 / n). Its mean K + mean(x - K) then
// cancels: the float32 mean of x - K ~ -K is off by ulps of K, which the row mean keeps (a row
// of 1023 zeros after a 1e6: running_mean 97.65 for 97.65625). Such a summary is measured again
// about K + mean (sn_wide_stats). A first value within 4 standard deviations (almost every
// segment of ordinary data) leaves an error below ~1e-6 of the std, as float32 summation does
// anyway, and costs nothing more; so does a mean of x - K below 2^-8 |K|, whose rounding lies
// below K's own (a constant segment of 3.1 about K = coarse12(3.1), which a second sweep about
// the same K would not change). But a mean of x - K more than 2^10 standard deviations from 0
// is poor whatever K: Welford's M2 takes deltas to a running mean rounded at that mean's ulps,
// ~2^-24 |mean| / std of M2 each (rows of several segments, whose K has 12 significant bits,
// where the std lies below ~2^-22 of |x|: 1023 values of 1004234.125 and two 0.0625 below, y
// 3.3e-4 relative off, tests/far_shift_test.ts). Not for summaries with non-finite values (the
// flags decide their statistics).
fn poor_shift(n: f32, shift: f32, mean: f32, m2: f32, flags: u32) -> bool {
  let far = mean * mean * n > 16.0 * m2 && abs(mean) > abs(shift) * 0.00390625;
  return (flags & F_CLASS) == 0u && (far || (m2 > 0.0 && mean * mean * n > 1048576.0 * m2));
}

// Whether a row whose largest |x| has this field is "wide" (outside (2^-21, 2^40], see F_FIELD).
fn is_wide_field(field: u32) -> bool {
  return field != 0u && (field < 107u || field > 167u);
}

fn is_scaled(flags: u32) -> bool {
  return (flags & F_SCALED) != 0u;
}

// The unit exponent u of a record (0 when it is not scaled).
fn unit_of(flags: u32) -> i32 {
  return select(0, i32(max_field(flags)) - 127, is_scaled(flags));
}

// The unit exponent of a scaled term's variance's root: its variance is in units of
// 2^(2 var_unit) (unit_of but for an evaluation's BN Group of F_VAR_OFFSET).
fn var_unit(flags: u32) -> i32 {
  // The field's 9 bits as two's complement (negative: a running_mean held far below its std's
  // unit, sn_group_stats.wgsl).
  return unit_of(flags) - (i32((flags & F_VAR_OFFSET) << 2u) >> 23u);
}

// Flags of a Group (or mixed statistic) in unit 2^u: F_* bits, and F_SCALED with u + 127
// unless u = 0.
fn unit_flags(bad: u32, u: i32) -> u32 {
  return (bad & F_CLASS) | select(F_SCALED | (u32(u + 127) << 8u), 0u, u == 0);
}

// 2^k for k <= 127, 0 below 2^-126 (a factor that only shrinks negligible terms).
fn pow2(k: i32) -> f32 {
  return select(bitcast<f32>(u32(min(k, 127) + 127) << 23u), 0.0, k < -126);
}

// v * 2^k by its bits (v itself for NaN and the infinities): exact while the result is a normal float32, whatever v
// is (GPUs may flush subnormal operands of float arithmetic to 0; bit operations see them).
// Below float32's normal range the result is 0 of v's sign (flushed, as a GPU may), above it
// the infinity of v's sign (built from P.inf_bits).
fn scale2(v: f32, k: i32) -> f32 {
  let b = bitcast<u32>(v);
  let sign = b & 0x80000000u;
  var e = i32((b >> 23u) & 0xffu);
  var mant = b & 0x007fffffu;
  if (e == 255) {
    return v; // NaN and the infinities are their own multiples (a non-finite dy of a wide row)
  }
  if (e == 0) {
    if (mant == 0u) {
      return v;
    }
    let sh = countLeadingZeros(mant) - 8u; // brings the leading 1 to bit 23
    mant = (mant << sh) & 0x007fffffu;
    e = 1 - i32(sh);
  }
  let ne = e + k;
  if (ne <= 0) {
    return bitcast<f32>(sign);
  }
  if (ne >= 255) {
    return bitcast<f32>(sign | P.inf_bits);
  }
  return bitcast<f32>(sign | (u32(ne) << 23u) | mant);
}

// m a + b * 2^k as a float32 (a infinite or NaN: m a as IEEE arithmetic has it), for b of at
// most ~8: the running-buffer update of a scaled statistic (m the momentum, 1 for the batch
// average). a enters scaled by its bits, so a subnormal buffer counts (m a would be flushed to 0
// by a GPU), and the result is rounded by its bits to what a float32 buffer holds: the infinity
// of its sign beyond float32's range, a subnormal or 0 below its normal range (running_var 9e-39
// updated with a batch variance of 1e-50 is 8e-39, as in PyTorch's float32 buffers: 0 instead
// made an evaluation with eps 0 normalize by a std 1e13 times smaller).
fn add_scaled(a: f32, m: f32, b: f32, k: i32) -> f32 {
  if (class_bits(a) != 0u) {
    return ieee_mul(m, a);
  }
  let u = scaled_unit(a, m, b, k);
  let zero = (bitcast<u32>(a) & 0x7fffffffu) == 0u || (bitcast<u32>(m) & 0x7fffffffu) == 0u;
  let ma = select(scale2(m, -u.y) * scale2(a, u.y - u.x), 0.0, zero);
  return scale2_round(ma + select(b * pow2(k - u.x), 0.0, b == 0.0), u.x);
}

// The working unit 2^j of add_scaled (x) and m's binary exponent (y) for the sum m a + b 2^k.
// Where the term m a (both nonzero) lies more than 2^100 above b's unit, or b is exactly 0 (a
// batch variance of 0: a constant channel; a batch mean of 0), the sum is formed in a unit near
// m a's, 2^60 below it, instead of b's, where m a would overflow or underflow (x of 1e19 set the
// unit 2^126 for running_var, which the old 1.5 then left as 0); elsewhere in b's. By m a's
// exponent, not a's: with momentum 0 a's unit left the batch term below float32's range
// (running_var and running_mean 0 for 5e-30 and 1e-27 after a buffer of 1e30: attack helper-76).
fn scaled_unit(a: f32, m: f32, b: f32, k: i32) -> vec2<i32> {
  let a_term = (bitcast<u32>(a) & 0x7fffffffu) != 0u && (bitcast<u32>(m) & 0x7fffffffu) != 0u;
  let em = select(0, binary_exponent(m), a_term);
  let e_ma = binary_exponent(a) + em;
  return vec2<i32>(select(k, e_ma - 60, a_term && (e_ma - k > 100 || b == 0.0)), em);
}

// m a in the unit 2^u.x as a pair (m a pair: its low word times a), m taken to [1, 2) by its
// exponent u.y and a to the unit by the rest, so that neither factor leaves float32's range
// (exact while the product stays normal); 0 where m or a is 0.
fn scaled_product(a: f32, m: vec2<f32>, u: vec2<i32>) -> vec2<f32> {
  let a_n = scale2(a, u.y - u.x);
  let p = pair_times(scale2(m.x, -u.y), a_n);
  let zero = (bitcast<u32>(a) & 0x7fffffffu) == 0u || (bitcast<u32>(m.x) & 0x7fffffffu) == 0u;
  return select(vec2<f32>(p.x, p.y + scale2(m.y, -u.y) * a_n), vec2<f32>(0.0), zero);
}

// The binary exponent of a finite nonzero v, subnormals included (floor(log2 |v|)).
fn binary_exponent(v: f32) -> i32 {
  let b = bitcast<u32>(v) & 0x7fffffffu;
  return select(i32(b >> 23u) - 127, -118 - i32(countLeadingZeros(b)), b < 0x00800000u);
}

// v * 2^k for a float32 v whose result may lie below float32's normal range: there the
// subnormal (or 0) that float32 rounds it to (to nearest, ties to even), built from the bits;
// elsewhere scale2. For values that are stored, not computed with (a GPU may flush them).
// A subnormal v counts by its bits too (a running_var of 2.8e-45 written in a unit of 2^-9).
fn scale2_round(v: f32, k: i32) -> f32 {
  let b = bitcast<u32>(v);
  var e = i32((b >> 23u) & 0xffu);
  var full = (b & 0x007fffffu) | 0x00800000u;
  if (e == 0 && (b & 0x007fffffu) != 0u) {
    let lz = countLeadingZeros(b & 0x007fffffu) - 8u; // brings the leading 1 to bit 23
    full = (b & 0x007fffffu) << lz;
    e = 1 - i32(lz);
  }
  let ne = e + k;
  if ((b & 0x7fffffffu) == 0u || e == 255 || ne > 0) {
    return scale2(v, k);
  }
  let sh = u32(1 - ne); // v 2^k = full 2^(ne - 150); subnormals are multiples of 2^-149
  if (sh > 24u) {
    return bitcast<f32>(b & 0x80000000u);
  }
  let q = full >> sh;
  let rem = full & ((1u << sh) - 1u);
  let half = 1u << (sh - 1u);
  let up = rem > half || (rem == half && (q & 1u) != 0u);
  return bitcast<f32>((b & 0x80000000u) | (q + select(0u, 1u, up)));
}

// One term of a mix: a statistic with mean hi + lo, its variance and flags (units: F_SCALED).
struct Term {
  hi: f32,
  lo: f32,
  variance: f32,
  flags: u32,
}

// The affine map of a mix with scaled terms: y = ((x * 2^-e - hi) - lo) * scale 2^g + beta, with
// every term brought to the unit 2^e (the largest unit among data terms of nonzero weight that
// are not all zeros, then bounded by the std's unit, x and the means: see wide_map) by exact
// powers of two:
//   hi = hi_0 f_0,  lo = sum_k wmean_k ((hi_k f_k - hi) + lo_k f_k),
//   var = sum_k wvar_k var_k (f_k 2^sv)^2,  f_k = 2^(u_k - e),
//   scale = gamma 2^-g' / sqrt(var + eps 2^(2 (sv - e))),  g = g' + sv
// (g' = gamma's exponent, sv = 0 but where the std lies far below the means' unit; wide_y adds
// beta), also for unscaled factor-wide rows (factor_wide). `bad` as in row_affine. Terms are in
// mixing order (weight k for term k).
struct WideMap {
  hi: f32,
  lo: f32,
  variance: f32, // in units of 2^(2 (e - sv - lift)) (wide_map's lift; no pass reads it)
  scale: f32,
  beta: f32,
  e: i32,
  bad: bool,
  var_inf: bool, // a term of nonzero variance weight has F_VAR_INF: scale is 0
  // The exponent scale leaves apart: (x 2^-e - mu') scale 2^g is y - beta. gamma's exponent
  // plus sv (0 for gamma 1 where the std is near the unit): the backward's maps (gamma 1) take
  // s as scale 2^g.
  g: i32,
}

// t where `keep`, else a term of zeros (weight 0 without usingBN, where Params' weight 2 is 0).
fn select_term(t: Term, keep: bool) -> Term {
  return Term(select(0.0, t.hi, keep), select(0.0, t.lo, keep), select(0.0, t.variance, keep), select(0u, t.flags, keep));
}

// Whether term t, of mean weight wm and variance weight wv, sets the unit: not of weight 0, not
// an unscaled term of zeros (a row of zeros), and not running buffers (F_RUNNING: their unit,
// their std's, bounds no x; their mean sets a floor of the unit and their variance the std's
// unit, wide_map): a variance weight of 2^-200 on a running std of 1e15 set the unit 2^50, in
// which data of 1e-36 was flushed (dgamma 0 for -3e16, corner fuzzer seed 87; with a mean weight
// of 2^-100 on its running_mean of 0.5, dgamma 0 for 7e-9, seed 1875).
fn sets_unit(t: Term, wm: f32, wv: f32) -> bool {
  return counts(t, wm, wv) & ((t.flags & F_RUNNING) == 0u);
}

// Whether term t, of mean weight wm and variance weight wv, counts in the mix: not of weight 0,
// and not an unscaled term of zeros.
fn counts(t: Term, wm: f32, wv: f32) -> bool {
  let zero = !is_scaled(t.flags) && t.hi == 0.0 && t.lo == 0.0 && t.variance == 0.0;
  return ((wm != 0.0) | (wv != 0.0)) & !zero;
}

// Terms t0, t1, t2 take weights 0, 1, 2 (a missing term has weight 0: Params' unused weights
// are 0). Written without arrays or loops: lavapipe kept memory for good at every dispatch of
// a shader with a local array of terms in its element loop (tests/webgpu_memory_test.ts).
fn wide_map(t0: Term, t1: Term, t2: Term, gamma: f32, beta: f32) -> WideMap {
  // (eps, like running buffers, sets the std's unit v_e alone, and e is at least 2^62 below it:
  // a unit of at least sqrt(eps)'s flushed data of 1e-37 under eps 1e10, dgamma 0.19 of its term
  // scale off, attack helper-71.)
  // (x_unit: a fine term's, fine_mean_term, is its record's unit, not its mean's.)
  var e = -1000;
  e = select(e, max(e, x_unit(t0.flags)), sets_unit(t0, P.wmean.x, P.wvar.x));
  e = select(e, max(e, x_unit(t1.flags)), sets_unit(t1, P.wmean.y, P.wvar.y));
  e = select(e, max(e, x_unit(t2.flags)), sets_unit(t2, P.wmean.z, P.wvar.z));
  // The unit of the mix's std: the largest of its weighted variances' (unit_k + half the exponent
  // of wvar_k var_k) and sqrt(eps)'s. A unit set by means far above it (a row of one repeated
  // value 4e23 with eps > 0, data of 3e30 beside an evaluation's BN std of 8) would take var +
  // eps below float32's normal range (0: y NaN where the reference is finite): the unit drops to
  // 2^62 above the std's, but no lower than 2^125 below the largest unit (x 2^-e stays finite).
  let v_e = max(max(var_unit(t0.flags) + (weighted_exp(0u, t0.variance) >> 1u),
    var_unit(t1.flags) + (weighted_exp(1u, t1.variance) >> 1u)),
    max(var_unit(t2.flags) + (weighted_exp(2u, t2.variance) >> 1u), P.eps_exp));
  // The std's unit at most 2^62 above the mix's (var + eps stays within float32): running
  // buffers set it alone (sets_unit).
  e = max(e, v_e - 62);
  // Not for a mix of std 0 with eps 0 (every term of variance weight has variance 0): there
  // y is +-Infinity by the sign of x - mu alone (sn_wide_normalize), which the drop would push
  // past float32's range (x 2^125 - mu).
  e = select(e, max(v_e + 62, e - 125), e > v_e + 62 && !std_zero(t0, t1, t2));
  // The largest unit bounds the data terms' means, not an evaluation's BN mean (up to 2^126 in
  // the unit of its std, sn_group_stats.wgsl), nor x where term 0 (layout "nd": the row's own
  // IN term, whose unit is its largest |x|) has weight 0. So e is also at least 2^125 below
  // that unit, and 2^126 below each mean of nonzero weight: an evaluation on a running_mean of
  // -2e30 and running_var of 6e-23 (the unit sqrt(eps) sets, 2^-9) over a row of 1.3e37 took
  // x to +Infinity in that unit (y NaN for +Infinity: nd fuzzer FUZZ_ZERO_WEIGHTS=1 seed 598),
  // a running_mean of -2.9e34 of weight 0.14 beside IN stds of 3e-30 the mixed mean (dx NaN
  // for +-Infinity and for finite values of the sample's other rows: seed 23), and one of 3e38
  // of weight 2^-100 beside data of std 2e-28 its term (y -Infinity for -8e35).
  // (An unscaled term 0 bounds |x| by 2^40: x 2^-e stays finite down to e = -86. Running
  // buffers set no unit, sets_unit: with the data's terms of weight 0, e was eps_exp, -1000 for
  // eps 0: NaN for -Infinity, nd fuzzer FUZZ_ZERO_WEIGHTS=1 seeds 82, 899.)
  let x_floor = select(-86, x_unit(t0.flags) - 125, is_scaled(t0.flags));
  e = max(e, max(x_floor, max(mean_exp(1u, t1), mean_exp(2u, t2)) - 126));
  // Where the means keep e more than 2^62 above the std's unit (means 2^125 above it, the most
  // x 2^-e allows, and a std 2^63 or more below that), var + eps would fall below float32's
  // normal range in the unit 2^e (0: y NaN where the reference is +-Infinity, or finite under a
  // tiny gamma: LN means ~1e35 beside IN stds ~1e-29, nd fuzzer FUZZ_ZERO_WEIGHTS=1 seed 79).
  // The variances and eps are then taken in the unit 2^(e - sv), 2^62 above the std's, and
  // the scale carries the 2^sv apart (in g, with gamma's exponent).
  let sv = select(0, e - v_e - 62, e > v_e + 62 && !std_zero(t0, t1, t2));
  // Factors 2^(u_k - e), where a term's weight is 0 2^(u_k - e - 512) = 0 (zero_weight_exp):
  // such a term's mean or variance in the mix's unit may pass float32's range (an LN term of a
  // sample spanning 1e30 and 1e-30 in the unit of its tiny row), and its weight 0 times that
  // infinity was NaN. The anchor hi keeps term 0's mean whatever its weight (sparse SN's IN of
  // weight 0 keeps the pair's precision); its lo of weight 0 adds 0 either way.
  let u0 = unit_of(t0.flags) - e;
  let u1 = unit_of(t1.flags) - e + zero_weight_exp(P_ZERO_WMEAN + 1u);
  let u2 = unit_of(t2.flags) - e + zero_weight_exp(P_ZERO_WMEAN + 2u);
  let f0 = pow2(u0);
  // The means by unit_shift: an evaluation's BN term in the unit of its std can hold a mean up
  // to 2^126 (sn_group_stats.wgsl), which a factor 2^(u_k - e) below 2^-126 (flushed to 0 by
  // pow2) would drop.
  let hi = unit_shift(t0.hi, u0);
  let lo = weighted_mean(0u, P.wmean.x * t0.lo * f0) +
    weighted_mean(1u, P.wmean.y * ((unit_shift(t1.hi, u1) - hi) + t1.lo * pow2(u1))) +
    weighted_mean(2u, P.wmean.z * ((unit_shift(t2.hi, u2) - hi) + t2.lo * pow2(u2)));
  // The variances and eps summed in the unit 2^(e - sv - lift): lift > 0 raises a std that lies
  // more than 2^20 below the unit 2^(e - sv) (down to 2^-62 there: var + eps ~2^-124, at the
  // foot of float32's normal range) to 2^-20, so that terms 2^-2 to 2^-24 of the largest stay
  // normal. In the unit 2^(e - sv) they were subnormal, which GPUs that flush subnormal operands
  // (NVIDIA, SwiftShader) took for 0: a training's rows of ~0 beside a BN variance of 2.4e72
  // under the weight e^-174 and eps 1 (the unit 2^62, the std's 2^0) lost the LN and BN terms
  // (8.6e-4 beside eps), std 1 for 1.00043 (partial_zero_sweep seed 2060). Exact powers of two
  // (each of weighted_term_var's factors stays within float32): scale takes 2^lift back, and
  // where no term was subnormal the result has the same bits.
  let lift = max(0, e - sv - v_e - 20);
  let variance = weighted_term_var(0u, t0, e - sv - lift) + weighted_term_var(1u, t1, e - sv - lift) +
    weighted_term_var(2u, t2, e - sv - lift);
  // eps 2^(-2 (e - sv - lift)) in two factors (each a normal power of two: e - sv - lift lies at
  // most 2^62 below the std's unit, at least sqrt(eps)'s). Not
  // scale2(P.eps, ..): lavapipe kept memory for good at every dispatch of sn1d_normalize with it.
  let denom = variance + P.eps * pow2(sv + lift - e) * pow2(sv + lift - e);
  // An infinite variance (a running_var of +Infinity) of variance weight 0 (below 2^-252 too)
  // makes the reference's mix NaN (0 * Inf: PyTorch's too); of any other weight its std
  // +Infinity (scale 0: y = beta).
  // (& and |, not && and ||: see null_var_inf.)
  let null_inf = null_var_inf(t0, t1, t2);
  let var_inf = (((t0.flags | t1.flags | t2.flags) & F_VAR_INF) != 0u) & !null_inf;
  let bad = (((t0.flags | t1.flags | t2.flags) & F_CLASS) != 0u) | (!(denom > 0.0) & !var_inf) | null_inf;
  // gamma's exponent apart (exact): gamma / std may pass float32's range where y does not.
  let g = gamma_exp(gamma) + sv;
  let scale = select(fdiv_n(gamma_mantissa(gamma), sqrt(select(denom, 1.0, bad))) * pow2(lift), 0.0, var_inf);
  return WideMap(hi, lo, variance, scale, beta, e, bad, var_inf, g);
}

// wide_map's lo = sum_k wmean_k ((hi_k f_k - hi) + lo_k f_k) from exact parts (layout "nd"):
// (x, y) a float32 pair of it, z the size of its largest part. The single float32 lo rounds to
// the ulp of its parts, which where the terms' means lie far apart is of the size of x - mu near
// the mix's mean: an evaluation of equal IN and BN mean weights over a row [-3e38, -2e38, -1e38]
// (IN mean -2e38, its low word -3.4e30) on a running_mean of 1 lost the low word, x - mu 0 for
// 1.7e30 at x = -1e38 (y = beta for 1.7e33 under gamma 1e3 over a running_var of 1; as
// d_pairs_1d for layout "1d", tests/far_anchor_mean_test.ts). Each wmean_k (hi_k f_k - hi)
// as an exact pair (two_sum, weight_times), the rest of each part in one float32.
fn wide_lo_pair(t0: Term, t1: Term, t2: Term, w: WideMap) -> vec3<f32> {
  let u0 = unit_of(t0.flags) - w.e;
  let u1 = unit_of(t1.flags) - w.e + zero_weight_exp(P_ZERO_WMEAN + 1u);
  let u2 = unit_of(t2.flags) - w.e + zero_weight_exp(P_ZERO_WMEAN + 2u);
  let d1 = two_sum(unit_shift(t1.hi, u1), -w.hi);
  let d2 = two_sum(unit_shift(t2.hi, u2), -w.hi);
  let p1 = weight_times(P.wmean.y, d1.x);
  let p2 = weight_times(P.wmean.z, d2.x);
  let a1 = weighted_mean(1u, p1.x);
  let a2 = weighted_mean(2u, p2.x);
  let big = two_sum(a1, a2);
  // (With the weights' rest beyond their float32 roundings, wmean_lo: a weight of 1 - 2e-9
  // rounds to 1, and its part about an anchor 2^27 from mu was off by ~mu / 4.)
  let rest = weighted_mean(0u, (P.wmean.x + P.wmean_lo.x) * t0.lo * pow2(u0)) +
    weighted_mean(1u, p1.y + P.wmean.y * (d1.y + t1.lo * pow2(u1)) + P.wmean_lo.y * d1.x) +
    weighted_mean(2u, p2.y + P.wmean.z * (d2.y + t2.lo * pow2(u2)) + P.wmean_lo.z * d2.x);
  return vec3<f32>(big.x, big.y + rest, max(max(abs(a1), abs(a2)), abs(w.lo)));
}

// wide_lo_pair for a row one of whose groups holds a third word (Group.mean_rest, r1 and r2 in
// their groups' units; r0 the row's own, Partial.mean_rest): lo in triples from exact parts (mix_lo_triple), the weights with their
// rest; z as wide_lo_pair's. Its rest in one float32 rounded the parts w_k lo_k f_k, which
// where an LN and a BN mean of ~1e5 cancel in the mix of a row of values ~1e-8 (in its unit,
// ~2^26 above the groups') are ~1e4 of x - mu: y 50x to 80x its tolerance.
fn wide_lo_triple(t0: Term, t1: Term, t2: Term, w: WideMap, r0: f32, r1: f32, r2: f32) -> vec3<f32> {
  let u0 = unit_of(t0.flags) - w.e;
  let u1 = unit_of(t1.flags) - w.e + zero_weight_exp(P_ZERO_WMEAN + 1u);
  let u2 = unit_of(t2.flags) - w.e + zero_weight_exp(P_ZERO_WMEAN + 2u);
  let d1 = two_sum(unit_shift(t1.hi, u1), -w.hi);
  let d2 = two_sum(unit_shift(t2.hi, u2), -w.hi);
  var t = weighted_triple(vec3<f32>(0.0), 0u, vec2<f32>(0.0), t0.lo * pow2(u0), r0 * pow2(u0));
  t = weighted_triple(t, 1u, d1, t1.lo * pow2(u1), r1 * pow2(u1));
  t = weighted_triple(t, 2u, d2, t2.lo * pow2(u2), r2 * pow2(u2));
  let s = two_sum(t.x, t.y + t.z);
  let a1 = weighted_mean(1u, P.wmean.y * d1.x);
  let a2 = weighted_mean(2u, P.wmean.z * d2.x);
  return vec3<f32>(s.x, s.y, max(max(abs(a1), abs(a2)), abs(w.lo)));
}

// x 2^-e - mu from wide_lo_pair's pair m of a wide map of anchor hi: exact but for the last
// additions of the low words (x 2^-e - hi and its difference from m.x as exact pairs).
fn wide_d_pair(xs: f32, hi: f32, m: vec3<f32>) -> f32 {
  let xd = two_sum(xs, -hi);
  let s = two_sum(xd.x, -m.x);
  return s.x + ((s.y - m.y) + xd.y);
}

// The mixed mean in a unit of its own, 2^e: mu = (hi + lo) 2^e, for rows whose mean lies far
// below the mix's unit (wide_map's e, set by the row's largest |x|), where hi + lo of wide_map
// is below float32's normal range or lost (ok false elsewhere): an evaluation whose IN mean of
// weight e^-87 over a row spanning 6e29 and 1e-20 makes a mean of 2.5e-9 beside a running_mean
// of 0 of weight ~1 (y 0 for 150 under gamma -1e30, tests/fine_mean_test.ts). Anchored at the
// heaviest term (its hi), whose mean the others' differences are taken from, each weighted with
// its weight's exponent apart; e lies above every weighted part: mu = a + sum_k w_k (m_k - a)
// (sum w = 1), so each is at most 1 in that unit. The passes that form x - mu take it as
// (x 2^-e - hi) - lo for the elements below 2^(e + FINE_X) and as x alone above (|mu| below
// 2^-119 of |x|).
struct FineMean {
  hi: f32,
  lo: f32,
  e: i32,
  ok: bool,
  finite: bool, // hi, lo and the terms finite (ok without its unit tests)
}

const FINE_X = 120;
// fine_mean's unit more than 2^FINE_WORDS below a wide map's words (fine_words): there its x - mu,
// accurate to ~2^-24 of its unit, is the finer.
const FINE_WORDS = 8;

// The term of the heaviest mean weight (fine_mean's and fine_low's anchor): a weight below
// float32's normal range (wmean_e < 0) is never it.
fn fine_anchor(t0: Term, t1: Term, t2: Term) -> Term {
  let v0 = select(P.wmean.x, 0.0, P.wmean_e[0] != 0);
  let v1 = select(P.wmean.y, 0.0, P.wmean_e[1] != 0);
  let v2 = select(P.wmean.z, 0.0, P.wmean_e[2] != 0);
  return pick_term(pick_term(t0, t1, v1 > v0), t2, v2 > max(v0, v1));
}

fn fine_mean(t0: Term, t1: Term, t2: Term, unit: i32, words: i32) -> FineMean {
  let anchor = fine_anchor(t0, t1, t2);
  let a_u = unit_of(anchor.flags);
  let ea = max(finite_exponent_of(anchor.hi), finite_exponent_of(anchor.lo)) + a_u;
  let e = max(max(ea, fine_part_exp(0u, t0, ea)), max(fine_part_exp(1u, t1, ea), fine_part_exp(2u, t2, ea))) + 2;
  let hi = scale2(anchor.hi, a_u - e);
  let lo = fine_part(0u, t0, anchor, e) + fine_part(1u, t1, anchor, e) + fine_part(2u, t2, anchor, e);
  let finite = (class_bits(hi) | class_bits(lo) | ((t0.flags | t1.flags | t2.flags) & F_CLASS)) == 0u;
  // Also where the wide map's own words lie far above it (`words`, fine_words): mu and the
  // elements near it are then lost below the ulp of hi, which x 2^-e - hi rounds to. Only in
  // rows of a scaled term, as the unit's test holds it (sn1d_bwd_element takes x alone for a
  // row of fm.ok without one).
  let poor = (e < words - FINE_WORDS) & is_scaled(t0.flags | t1.flags | t2.flags);
  return FineMean(hi, lo, e, finite & ((e < unit - 60) | poor) & (e > -900), finite);
}

// The exponent of a wide map's words hi and lo (x - mu is (x 2^-e - hi) - lo there) in the unit
// 2^0, for fine_mean: where the mix's heaviest mean lies far from term 0's, hi (term 0's shift)
// and lo cancel to mu, and x - mu of the elements near mu rounds to hi's ulp. An evaluation on
// a running_mean of -0.34 of weight ~1 beside a row's IN mean of -2e29 (weight 8.5e-17, a mixed
// mean of -1.7e13) in the unit 2^100 took x - mu 0 for 1.7e13 (y = beta for 1.3e22 under gamma
// 3e38, attack fuzzer seed 2310; 2005, 1534 likewise: -1e-40 and 1e30 for +-Infinity).
fn fine_words(w: WideMap) -> i32 {
  return w.e + max(finite_exponent_of(w.hi), finite_exponent_of(w.lo));
}

// The parts sum_k w_k (m_k - a) of a fine mean (fine_mean's anchor a, its unit 2^e) in a unit of
// their own, 2^pe above the largest (-998 where all are 0): each from its weight's and its
// difference's mantissas, every exponent apart, so that parts below float32's normal range in
// the unit 2^e (weights near 2^-126 times differences ~1: attack fuzzer seed 2985) still count.
// parts + rest is their sum as a float32 pair, big the largest part: where the parts cancel (LN
// and BN means of equal weight e^-49 about an IN anchor of -3.3e29, the LN mean twice it and a
// running_mean of -2e20, x - mu = +0.14 beside parts of 2.3e8) their float32 sum, and each
// difference m_k - a in one float32 (the running_mean's -2e20 below 3.3e29's ulp), lost x - mu
// (0 under a std of 0: y NaN for +Infinity, attack fuzzer seed 146340; fine_centred_d).
struct FineLow {
  parts: f32,
  pe: i32,
  rest: f32,
  big: f32,
}

fn fine_low(t0: Term, t1: Term, t2: Term) -> FineLow {
  let anchor = fine_anchor(t0, t1, t2);
  let u0 = diff_unit(t0, anchor);
  let u1 = diff_unit(t1, anchor);
  let u2 = diff_unit(t2, anchor);
  let d0 = fine_diff(t0, anchor, u0);
  let d1 = fine_diff(t1, anchor, u1);
  let d2 = fine_diff(t2, anchor, u2);
  let x0 = low_exp(0u, d0.x, u0);
  let x1 = low_exp(1u, d1.x, u1);
  let x2 = low_exp(2u, d2.x, u2);
  let pe = max(x0, max(x1, x2)) + 2;
  let p0 = low_part(0u, d0, x0 - pe);
  let p1 = low_part(1u, d1, x1 - pe);
  let p2 = low_part(2u, d2, x2 - pe);
  let s1 = two_sum(p0.x, p1.x);
  let s2 = two_sum(s1.x, p2.x);
  let big = max(abs(p0.x), max(abs(p1.x), abs(p2.x)));
  return FineLow(s2.x, pe, s2.y + s1.y + (p0.y + p1.y + p2.y), big);
}

// x - mu about the mix's heaviest term from fine_low's parts, shared by sn_wide_normalize (its
// `low` rows) and the eps-0 passes (zero_std.wgsl), so that both take the same rows: `low` where
// fine_low's parts lie 2^30 or more below fine_mean's unit (a heaviest weight of 1 - e^-40, 1 in
// float32, put x - mu 2^-58 below the unit, lost in wide_map's words: y -1e38 for 1.2e37; one of
// e^-87 took x - mu 0 and flushed_tail's sign in the eps-0 pass, -Infinity for +Infinity, attack
// fuzzer seed 11178, tests/overflow_sign_test.ts).
struct FineCentred {
  fm: FineMean,
  fl: FineLow,
  low: bool,
}

fn fine_centred(t0: Term, t1: Term, t2: Term, w: WideMap) -> FineCentred {
  let fm = fine_mean(t0, t1, t2, w.e, fine_words(w));
  let fl = fine_low(t0, t1, t2);
  return FineCentred(fm, fl, fm.finite & (fm.e > -900) & (fl.pe < fm.e - 30) & (fl.pe > -900));
}

// Whether a wide map's words (hi' and lo', or their pair) both lie below float32's normal range,
// 0 or subnormal: with no fine mean (fine_mean not ok) the mixed mean is then 0 to the words'
// precision, as GPUs that flush subnormal operands take it (x 2^-e - hi' - lo' is x 2^-e), so
// sn_wide_normalize takes x alone where x 2^-e falls below float32's normal range too. Term 0's
// mean of weight 0 (an evaluation with the mean on BN's running_mean of 0) stays in hi',
// cancelled by lo', and sn_wide_normalize's cancel test reads subnormal words as having no
// exponent: a row of zeros but x ~1e-25 beside an LN std of ~6e11 (the unit 2^44) held hi' =
// -lo' = 1e-40, not taken for a mean of 0, and x 2^-e was flushed: y 0 for 51 under gamma 3e38
// (tests/flushed_words_test.ts). (Layout "1d" anchors at the heavier term, so its words hold no
// mean of weight 0.)
fn words_below_normal(hi: f32, lo: f32) -> bool {
  return ((bitcast<u32>(hi) | bitcast<u32>(lo)) & 0x7f800000u) == 0u;
}

// x - mu of xv for a `low` row: x - a in fine_mean's unit, brought to 2^fl.pe less the parts where
// it fits there (x near a), else less the parts brought to 2^fm.e.
fn fine_centred_d(f: FineCentred, xv: f32) -> f32 {
  let da = scale2(xv, -f.fm.e) - f.fm.hi;
  let near = bits_exponent(da) + f.fm.e - f.fl.pe < 100;
  return select(da - scale2(f.fl.parts, f.fl.pe - f.fm.e), fine_low_d(f.fl, scale2(da, f.fm.e - f.fl.pe)), near);
}

// x - mu in fine_low's unit from x - a there (dn): less the parts' pair where dn - parts lies
// within 2^-5 of the largest part (they cancel: attack fuzzer seed 146340) and the pair's
// difference at or above 2^-48 of it (below, float64's rounding of the parts, which the
// reference loses, as wide_centre_d); else less the parts' float32 word alone, the arithmetic
// of every other row.
fn fine_low_d(fl: FineLow, dn: f32) -> f32 {
  let d0 = dn - fl.parts;
  let dp = d0 - fl.rest;
  let resolved = (abs(d0) < fl.big * 0x1p-5f) & (abs(dp) >= fl.big * 0x1p-48f);
  return select(d0, dp, resolved);
}

// A unit 2^u above |t.hi|, |t.lo| and |anchor.hi| (u near -1000 where all are 0).
fn diff_unit(t: Term, anchor: Term) -> i32 {
  let ut = unit_of(t.flags);
  let ua = unit_of(anchor.flags);
  return max(max(finite_exponent_of(t.hi), finite_exponent_of(t.lo)) + ut, finite_exponent_of(anchor.hi) + ua) + 1;
}

// m_k - a (a the anchor's hi) in the unit 2^u.
fn fine_diff(t: Term, anchor: Term, u: i32) -> vec2<f32> {
  let s = two_sum(scale2(t.hi, unit_of(t.flags) - u), -scale2(anchor.hi, unit_of(anchor.flags) - u));
  return two_sum(s.x, s.y + scale2(t.lo, unit_of(t.flags) - u));
}

// The exponent of w_k d 2^u in the unit 2^0 (d fine_diff's high word), -1000 where either is 0.
fn low_exp(k: u32, d: f32, u: i32) -> i32 {
  let none = (P.wmean[k] == 0.0) | ((bitcast<u32>(d) << 1u) == 0u);
  return select(bits_exponent(P.wmean[k]) + P.wmean_e[k] + bits_exponent(d) + u, -1000, none);
}

// w_k d 2^k2 from the two mantissas (0 where low_exp is -1000: k2 is then below -900), d a pair
// (fine_diff): a float32 pair, the mantissas' exact product and the rest of d and of the weight
// beyond float32 (wmean_lo) in its low word.
fn low_part(k: u32, d: vec2<f32>, k2: i32) -> vec2<f32> {
  let mw = gamma_mantissa(P.wmean[k]);
  let md = gamma_mantissa(d.x);
  let p = pair_times(mw, md);
  // (The weight's rest scaled with md in the product, not by scale2 of the uniform alone: see
  // lost_part, zero_std.wgsl.)
  let rest = mw * scale2(d.y, -bits_exponent(d.x)) + scale2(P.wmean_lo[k] * md, -bits_exponent(P.wmean[k]));
  return vec2<f32>(scale2(p.x, k2), scale2(p.y + rest, k2));
}

// b where `take_b`, else a (select is for scalars and vectors).
fn pick_term(a: Term, b: Term, take_b: bool) -> Term {
  return Term(select(a.hi, b.hi, take_b), select(a.lo, b.lo, take_b), select(a.variance, b.variance, take_b), select(a.flags, b.flags, take_b));
}

// An exponent above |w_k (m_k - a)| for term t (weight k; ea: the anchor's), -1000 for weight 0.
fn fine_part_exp(k: u32, t: Term, ea: i32) -> i32 {
  let em = max(max(finite_exponent_of(t.hi), finite_exponent_of(t.lo)) + unit_of(t.flags), ea) + 1;
  return select(exponent_of(P.wmean[k]) + P.wmean_e[k] + em + 1, -1000, P.wmean[k] == 0.0);
}

// w_k (m_k - a) in the unit 2^e: the difference taken in the unit 2^(e - wmean_e) (exact powers of
// two by the bits), then times the weight's mantissa (0 for weight 0).
fn fine_part(k: u32, t: Term, anchor: Term, e: i32) -> f32 {
  let u = e - P.wmean_e[k];
  let d = (scale2(t.hi, unit_of(t.flags) - u) - scale2(anchor.hi, unit_of(anchor.flags) - u)) + scale2(t.lo, unit_of(t.flags) - u);
  return select(P.wmean[k] * d, 0.0, P.wmean[k] == 0.0);
}

// wvar_k var_k of term t (weight index k) in the mix's variance unit 2^(2v), from the weight's
// mantissa with every exponent apart, applied last (exact powers of two): the weight's, its
// exponent below float32 (wvar_e), and that of the term's unit: a running variance in its own
// unit far above the mix's (a running std of 1e15 at weight 2^-120 beside data of 1e-36) passed
// float32's range before its weight brought it back (y 0 for 2.5e-3, corner fuzzer seed 152).
// A weight of 0 (zero_weight_exp) gives 0.
fn weighted_term_var(k: u32, t: Term, v: i32) -> f32 {
  let w = P.wvar[k];
  let we = exponent_of(w); // w is 0 or a normal float32
  let j = 2 * (var_unit(t.flags) - v) + we + P.wvar_e[k] + 2 * zero_weight_exp(P_ZERO_WVAR + k);
  return (t.variance * (w * pow2(-we))) * pow2(j / 2) * pow2(j - j / 2);
}

// floor(log2 |hi|) of term t in the unit 2^0 where its mean weight (index k) is not 0; at most
// -258 where it is 0, and near -1000 for a mean of 0, NaN or an infinity (so that none of these
// raises wide_map's unit).
fn mean_exp(k: u32, t: Term) -> i32 {
  return unit_of(t.flags) + finite_exponent_of(t.hi) + zero_weight_exp(P_ZERO_WMEAN + k);
}

// 0, or -512 where Params.flags has `bit` (a weight of 0): added to a term's unit exponent, it
// makes the term's factor 0 (pow2, unit_shift), so that the term adds 0 times 0, not 0 times
// what may pass float32's range. An integer product, not a select: selects on the weights in
// wide_map made SwiftShader's shader compilation ~3x slower (commit 41e1aef, reverted).
fn zero_weight_exp(bit: u32) -> i32 {
  return -512 * i32((P.flags >> bit) & 1u);
}

// Whether a term of variance weight 0 (Params.flags, P_ZERO_WVAR + k: below 2^-252 too) has an
// infinite variance: the reference's mix is then NaN (0 * Inf), neither of std 0 nor of std
// +Infinity.
// Bit arithmetic, not && and || (which branch): branches in this function, inlined into every
// pass that mixes, made SwiftShader's shader compilation ~2x slower (headless Chromium's WebGPU
// test 96 s for 52 s).
fn null_var_inf(t0: Term, t1: Term, t2: Term) -> bool {
  let inf = ((t0.flags / F_VAR_INF) & 1u) | (((t1.flags / F_VAR_INF) & 1u) << 1u) |
    (((t2.flags / F_VAR_INF) & 1u) << 2u);
  return (inf & (P.flags >> P_ZERO_WVAR)) != 0u;
}

// floor(log2(wvar_k v)), to within one, from the weight's mantissa and exponent (-1000 where v
// or the weight is 0): a weight below float32's normal range still sets the mix's std unit.
fn weighted_exp(k: u32, v: f32) -> i32 {
  // From the factors' exponent fields (to within one; a subnormal v as 2^-126), not from their
  // float32 product: a product below float32's normal range (a variance weight of 5e-14 times
  // a running_var of 1.5e-37 in its unit) was 0, which took the mix's std for 0, and wide_map's
  // sv dropped the variance far below float32 (y = beta, dx 0 where the reference has -Infinity
  // and -1.9e23: nd fuzzer seed 3801).
  let f = i32((bitcast<u32>(v) >> 23u) & 0xffu);
  let none = ((bitcast<u32>(v) << 1u) == 0u) | (P.wvar[k] == 0.0); // (| not ||: see null_var_inf)
  return select(exponent_of(P.wvar[k]) + max(f, 1) - 127 + P.wvar_e[k], -1000, none);
}

// Whether a mix has std 0 with eps 0: every term of nonzero variance weight has variance 0 (by
// its bits, so a stored subnormal variance counts as nonzero), and no term has an infinite one
// (of weight 0 that mix is NaN, null_var_inf, where y was +-Infinity).
fn std_zero(t0: Term, t1: Term, t2: Term) -> bool {
  let v0 = (bitcast<u32>(t0.variance) << 1u) == 0u || P.wvar.x == 0.0;
  let v1 = (bitcast<u32>(t1.variance) << 1u) == 0u || P.wvar.y == 0.0;
  let v2 = (bitcast<u32>(t2.variance) << 1u) == 0u || P.wvar.z == 0.0;
  return (v0 && v1 && v2 && P.eps == 0.0) & (((t0.flags | t1.flags | t2.flags) & F_VAR_INF) == 0u);
}

// y of a row whose mix has std 0 (std_zero, no flagged term): (x - mu) gamma / 0, from d = x - mu
// in the mix's unit and gamma's sign (scale, whose sign is gamma's): the infinity of their
// signs, NaN where d or gamma is 0 (0 / 0, 0 * Inf). The float64 reference forms mu from
// rounded mixing weights, so where x equals every term's mean (x - mu = 0 exactly) its y may be
// +-Infinity by that rounding instead (README, Numerics).
fn std_zero_y(d: f32, scale: f32) -> f32 {
  let inf = bitcast<f32>(P.inf_bits | (sign_bit(d) ^ sign_bit(scale)));
  return select(qnan(), inf, (bitcast<u32>(d) << 1u) != 0u && (bitcast<u32>(scale) << 1u) != 0u);
}

// v 2^k for k <= 0 in two exact factors of 2 (each normal for k >= -252): v * pow2(k) where
// that is normal, and v's value where only 2^k would be below float32's normal range.
fn unit_shift(v: f32, k: i32) -> f32 {
  return v * pow2(k / 2) * pow2(k - k / 2);
}

// g where `keep`, else the zero Group: a select, not a branch (see sn_mix.wgsl).
fn select_group(g: Group, keep: bool) -> Group {
  return Group(
    select(0.0, g.hi, keep),
    select(0.0, g.lo, keep),
    select(0.0, g.variance, keep),
    select(0u, g.flags, keep),
    select(0.0, g.var_lo, keep),
    select(0.0, g.fine, keep),
    select(0.0, g.mean_rest, keep),
    select(0.0, g.fine_rest, keep),
  );
}

// The statistics of a row of layout "nd" as Terms (wide_map's): IN, LN, BN (zeros without
// usingBN, whose weight 2 is 0).
fn nd_terms_in(p: Partial) -> Term {
  let var_in = row_variance(p.m2, p.count);
  return Term(p.shift, p.mean, var_in, p.flags | select(F_NO_VAR, 0u, p.count >= 2u));
}

fn group_term(g: Group) -> Term {
  return Term(g.hi, g.lo, g.variance, g.flags);
}

// A scaled term whose record carries a fine word (its mean below 2^-FINE_MEAN_BELOW of its unit,
// the words hi and lo 0 or subnormal there) as a Term whose mean is that word: hi = fine, lo =
// rest, in the unit 2^FINE_MEAN_UNIT, the variance kept in the record's unit by F_VAR_OFFSET
// (var_unit) and the record's unit, which bounds its x, read by x_unit. The forward's x - mu took
// the words: an evaluation on the IN mean 1.5 s / 8 of a row [B, -B, s, s / 2, 0, 0, 0, 0] over a
// tiny running_var lost it (y 4.6e-12 for -8.6e17 with B 3.4e38, s 0.5, running_var 1.2e-38; 0
// for -0.017 with B 1e20, s 1e-20; NaN or the wrong infinity over a running_var of 0), and a
// narrow row mixed on such an LN mean in training likewise (tests/wide_row_fine_mean_eval_test.ts).
// The term itself elsewhere (records without a fine word, running buffers: F_VAR_OFFSET 0 in
// every data record).
fn fine_mean_term(t: Term, fine: f32, rest: f32) -> Term {
  let on = fine_flags_on(t.flags, fine);
  return Term(select(t.hi, fine, on), select(t.lo, rest, on), t.variance, select(t.flags, fine_flags(t.flags), on));
}

// Whether a record of these flags with this fine word is taken as a fine term.
fn fine_flags_on(flags: u32, fine: f32) -> bool {
  return (fine != 0.0) & is_scaled(flags) & ((flags & F_VAR_OFFSET) == 0u) & is_finite_bits(fine);
}

// A fine term's flags: the unit 2^FINE_MEAN_UNIT, var_unit = FINE_MEAN_UNIT + o with o = unit -
// FINE_MEAN_UNIT (|o| <= 255; -o in the bits), F_FINE_TERM.
fn fine_flags(flags: u32) -> u32 {
  let o = unit_of(flags) - FINE_MEAN_UNIT;
  return (flags & ~(F_FIELD | F_VAR_OFFSET)) | (u32(FINE_MEAN_UNIT + 127) << 8u) | ((u32(-o) & 0x1ffu) << 21u) |
    F_FINE_TERM;
}

// nd_terms_in with its record's fine word (fine_mean_term).
fn nd_mean_term_in(p: Partial) -> Term {
  return fine_mean_term(nd_terms_in(p), p.fine, 0.0);
}

// A Group with its fine word as its mean (fine_mean_term): hi = fine, lo = fine_rest, fine 0.
fn fine_group(g: Group) -> Group {
  let on = fine_flags_on(g.flags, g.fine);
  return Group(
    select(g.hi, g.fine, on),
    select(g.lo, g.fine_rest, on),
    g.variance,
    select(g.flags, fine_flags(g.flags), on),
    g.var_lo,
    select(g.fine, 0.0, on),
    select(g.mean_rest, 0.0, on),
    select(g.fine_rest, 0.0, on),
  );
}

// The unit a term's record bounds its x by: unit_of, but a fine term's (fine_mean_term) record's.
fn x_unit(flags: u32) -> i32 {
  return select(unit_of(flags), var_unit(flags), (flags & F_FINE_TERM) != 0u);
}

// Whether a segment's (or row's) float32 mean (~6e-8 of its std off) is too coarse: it lies within 2^-10
// of its std of 0 or, in an evaluation with BN, of its channel's running_mean (mean^2 < 2^-20
// M2 / n). The logit gradients are sums of gm (mu_k - mu) and dgamma of dy (x - mu) / std,
// which there are ~1e-4 of the terms' size or less: a row of std 1e18 and mean 7.5e13
// dominating its BN mean gave dgamma 3e-4 relative off (nd fuzzer seed 2410), evaluation IN
// means 1e-6 of their std from running_mean mean_weight's gradient 50x its tolerance off. Such
// segments (rare in ordinary data: ~0.5% of rows of 49 floats of mean 0) are marked F_REMEASURE
// and sn_wide_stats sums them again about the mean in exact pairs. Not for segments of spread 0
// (their mean K + 0 is exact) nor with non-finite values.
// rm: the row's running_mean (read only in an evaluation with BN). Rows of several segments are
// tested again as a whole (sn_row_merge): their segment means lie ~std / 64 apart.
fn refine_mean(n: f32, mu: f32, m2: f32, flags: u32, rm: f32) -> bool {
  if ((flags & F_CLASS) != 0u || !(m2 > 0.0)) {
    return false;
  }
  // A forward that no backward follows keeps its float32 means (only the gradients need them
  // finer) but for one within 2^-20 of its std of 0 (mean^2 < 2^-40 M2 / n), as WASM's
  // SWEPT_CANCELLED2 (wasm/src/nd.rs): a mean that cancels (2^-38 of the std and below) shows
  // there as the sweeps' rounding or as 0, and was all of its sample's LN mean, which a narrow
  // row mixed on it took as its x - mu (bn_mean_below_std_sweep seed 957 as an evaluation: y
  // 1.1e4 for -1.0e18). Ordinary means lie that near 0 with a chance of ~2^-20 sqrt(n) per row.
  if ((P.flags & P_REFINE_MEANS) == 0u) {
    return mu * mu < fdiv_n(m2, n) * CANCELLED_MEAN2;
  }
  let near = fdiv_n(m2, n) * 9.5367431640625e-7; // (2^-10 std)^2
  var d = mu;
  if ((P.flags & (P_TRAINING | P_USING_BN)) == P_USING_BN) {
    d = select(mu, mu - rm, (mu - rm) * (mu - rm) < d * d);
  }
  return d * d < near;
}

// Whether a segment's (or row's) float32 variance v = M2 / (n - 1) (a few float32 roundings of
// itself off) is too coarse: in an evaluation with BN that a backward may follow, it lies within
// 2^-8 of itself of its channel's running_var rv. var_weight's gradient is a sum of gv (var_k -
// var), which there is that rounding times 2^8 or more relative off: an evaluation on the running
// buffers a batch of one sample left (rv its float32 IN variance) had it 0 for -2.8e-8 (the
// reference's var_in - rv is rv's rounding), rows of a square wave of amplitude ~sqrt(rv) 33x its
// tolerance (tests/close_variance_test.ts). Such segments are marked F_REMEASURE too:
// sn_wide_stats sums their M2 again as an exact pair (m2 + m2_lo), which the groups (P_PAIRS,
// set for such calls: backends/_webgpu_plan.ts writeCommon) and sn_bwd_rows' pair dots read.
// rv: the row's running_var. Rows of several segments are tested again as a whole (sn_row_merge).
fn refine_variance(n: f32, m2: f32, flags: u32, rv: f32) -> bool {
  let eval_bn = P_REFINE_MEANS | P_USING_BN;
  if ((P.flags & (eval_bn | P_TRAINING)) != eval_bn || (flags & F_CLASS) != 0u || !(m2 > 0.0) || n < 2.0) {
    return false;
  }
  let v = fdiv_n(m2, n - 1.0);
  return abs(v - rv) < v * 0.00390625; // 2^-8
}

// mean^2 / (M2 / n) below which a mean counts as cancelled (2^-40: the mean below 2^-20 of its
// std), for the re-sums about 0 of sn_wide_stats, sn1d_stats and a forward alone's refine_mean;
// sn_wide_stats' segments summed again unscaled take its square (2^-40 of the std).
const CANCELLED_MEAN2: f32 = 9.094947017729282e-13;

// A record's fine word (Partial.fine, Group.fine): where its mean lies below 2^-FINE_MEAN_BELOW
// of its unit, its words hi and lo are 0 or subnormal there (a mean 2^-179 of its row's std, in
// a row of +-v pairs of ~2^66 whose small pair leaves 2^-113), and the logit gradients, which
// difference such means (sn_bwd_rows' far_mean_lane), took them as 0: the record then carries
// the mean again in the unit 2^FINE_MEAN_UNIT, in which every mean of float32 data below
// 2^(128 - FINE_MEAN_BELOW) is a normal float32 (sums of elements of at least 2^-149 over fewer
// than 2^31 of them: 2^-116 there at least). 0 in every other record (and where no pass formed
// it: see NUMERICS.md).
const FINE_MEAN_BELOW = 100;
const FINE_MEAN_UNIT = -64;

// bits_exponent for a finite v (-1000 for 0), 1000 for NaN and the infinities (a record's words
// against FINE_MEAN_BELOW: a non-finite word is never below it).
fn fine_bits_exp(v: f32) -> i32 {
  return select(1000, bits_exponent(v), class_bits(v) == 0u);
}

// Whether a record's mean hi + lo lies below 2^-FINE_MEAN_BELOW of its unit by its words, where
// the record takes a fine word.
fn words_below_fine(hi: f32, lo: f32) -> bool {
  return max(fine_bits_exp(hi), fine_bits_exp(lo)) < -FINE_MEAN_BELOW;
}

// Whether a member p of unit 2^u (a segment of a row, a row of a group) can go into the sum of a
// fine word: by its own fine word where it has one, else by its words shift and mean brought to
// the unit 2^FINE_MEAN_UNIT by their bits, not where a word passes 2^30 (the members' shares may
// cancel far below them, and their share in that unit could pass float32's range).
fn fine_member_ok(p: Partial, u: i32) -> bool {
  return max(fine_bits_exp(p.shift), fine_bits_exp(p.mean)) + u <= 30 || p.fine != 0.0;
}
