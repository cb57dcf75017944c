/**
 * The mixing weights as the WebGPU shaders take them (Params.wmean / wvar and their exponent
 * factors, shaders/common.wgsl): a weight below float32's normal range (2^-126, logits ~87
 * apart) is a float32 subnormal with few significant bits, or 0 on GPUs that flush subnormal
 * operands, where its products with huge statistics still count (a var_weight of 1e-44 times an
 * LN variance of 1e17, the whole variance of a constant row: y was ~1% off). Such a weight goes
 * as a mantissa in [1/2, 1) and two normal powers of two f1 f2 = 2^e (the shaders multiply a
 * weighted product by both, exact while it stays normal) and e itself (for exponent sums).
 * Every other weight goes as its float32 rounding with f1 = f2 = 1 and e = 0, so that ordinary
 * calls compute what they did, bit for bit.
 *
 * @module
 */

/** Weights below this take a mantissa and exponent factors. */
const SMALLEST_NORMAL = 2 ** -126;
/**
 * Weights below this (2^-252) count as 0: f1 and f2 must each be a normal float32. The layer's
 * Jacobian takes them as 0 too (BackwardResult.zeroWeightsBelow).
 */
export const ZERO_WEIGHTS_BELOW = 2 ** -252;

/** One weight as the shaders take it: w = mantissa * f1 * f2, f1 f2 = 2^exp. */
export interface ShaderWeight {
  readonly mantissa: number;
  readonly f1: number;
  readonly f2: number;
  readonly exp: number;
}

/** Splits a float64 mixing weight (0 <= w <= 1) for the shaders. */
export function shaderWeight(w: number): ShaderWeight {
  if (!(w > 0) || w >= SMALLEST_NORMAL) return { mantissa: w, f1: 1, f2: 1, exp: 0 };
  // By the weight itself, not by log2's rounding of it, so that the shaders and the layer's
  // Jacobian cut the same weights.
  if (w < ZERO_WEIGHTS_BELOW) return { mantissa: 0, f1: 1, f2: 1, exp: 0 };
  const exp = Math.floor(Math.log2(w)) + 1; // w 2^-exp in [1/2, 1), up to log2's rounding
  const half = Math.trunc(exp / 2);
  return { mantissa: w * 2 ** -exp, f1: 2 ** half, f2: 2 ** (exp - half), exp };
}

/**
 * Whether a weight of `mix` lies below `below` and is not cut to 0. With the default, 2^-126,
 * those are the weights that take exponent factors: the shaders then send every row's dx
 * coefficients through their wide passes, whose sums keep exponents apart (such a weight lets a
 * mean lie ~2^72 stds from the mix's, beyond what the plain float32 products hold). Layout "1d"
 * asks for mean weights below 2^-100 as well: its per-element passes mix with the weights'
 * float32 values alone (mix_add_hot), where such a weight times a mean difference below 1 may lie
 * below float32's normal range, which a GPU that flushes subnormals takes as 0 (an LN mean of 0.5
 * under a weight of 1.65e-38 beside a `running_mean` of 0, s 1e15: x - mu of the features of 0
 * was 0, y 0 for -8.2e-24 and dgamma 0 for -2.1e-25 on SwiftShader); such a call takes the wide
 * passes for every element too (wide_element takes x - mu from fine_mean there: mean_tiny).
 */
export function hasTinyWeight(mix: ArrayLike<number>, below = SMALLEST_NORMAL): boolean {
  for (let k = 0; k < mix.length; k++) {
    if (mix[k] < below && shaderWeight(mix[k]).mantissa !== 0) return true;
  }
  return false;
}

/** Params.flags bits `first + k` for each weight k of `mix` (3 terms; a missing term's) `holds` for. */
function weightBits(mix: ArrayLike<number>, first: number, holds: (w: number) => boolean): number {
  let bits = 0;
  for (let k = 0; k < 3; k++) if (k >= mix.length || holds(mix[k])) bits |= 1 << (first + k);
  return bits;
}

/**
 * Params.flags bits `first + k` for the weights of `mix` that the shaders take as 0 (below
 * 2^-252, or 0): wide_map then brings that term to 0 before its weight, so that a mean or
 * variance of it beyond float32's range in the mix's unit adds 0, not 0 * Inf.
 */
export function zeroWeightBits(mix: ArrayLike<number>, first: number): number {
  return weightBits(mix, first, (w) => shaderWeight(w).mantissa === 0);
}

/**
 * The rest of each weight of `mix` beyond its float32 rounding (of its mantissa: 0 for a weight
 * taken as 0), and, with `complement`, the heaviest weight's from 1 less the others (the first of
 * equal ones, as the reference's anchoredMean takes it). A float64 weight near 1 holds its
 * distance from 1 to ~2^-54 only, while the others hold theirs to 2^-53 of themselves: where a
 * mean's wide map forms the mix about a term far from the heaviest (sn_wide_normalize's anchor,
 * the row's IN mean, 2^37 from BN's running_mean of 1), that 2^-54 times the distance moved mu.
 * Under LN's mean weight e^-25 (BN's 1 - 1.4e-11, the rest -1.4e-11 to 4e-6 of itself) the IN
 * mean of -1.25e11 put mu 7e-6 off, 5.5e-5 of a mixed mean of 0.13 (the reference takes the
 * heaviest weight as 1 less the others, sum_k w_k = 1, tests/partial_zero_rows_test.ts).
 */
export function weightRests(mix: ArrayLike<number>, complement: boolean): number[] {
  const rests = Array.from({ length: mix.length }, (_, k) => {
    const m = shaderWeight(mix[k]).mantissa;
    return m - Math.fround(m);
  });
  if (!complement || mix.length === 0) return rests;
  let a = 0;
  for (let k = 1; k < mix.length; k++) if (mix[k] > mix[a]) a = k;
  // The heaviest weight is at least 1 / 3: a normal float32, its own mantissa.
  let others = 0;
  for (let k = 0; k < mix.length; k++) if (k !== a) others += mix[k];
  const rest = (1 - Math.fround(mix[a])) - others;
  // Not where the weights are not finite or are 0 (NaN logits; a mix of no weight).
  if (Number.isFinite(rest) && mix[a] > 0) rests[a] = rest;
  return rests;
}

/**
 * Writes the weights of `mix` (mixing order) at `at` and their factors and exponents, and at
 * `at.lo` the rest of each mantissa beyond its float32 rounding (`weightRests`; with
 * `complement`, the heaviest's from 1 less the others), for the per-row work in float32 pairs.
 */
export function writeWeights(
  v: DataView,
  mix: ArrayLike<number>,
  at: { weights: number; f1: number; f2: number; exp: number; lo: number },
  complement = false,
): void {
  const rests = weightRests(mix, complement);
  for (let k = 0; k < mix.length; k++) {
    const s = shaderWeight(mix[k]);
    v.setFloat32(at.weights + 4 * k, Math.fround(s.mantissa), true);
    v.setFloat32(at.f1 + 4 * k, s.f1, true);
    v.setFloat32(at.f2 + 4 * k, s.f2, true);
    v.setInt32(at.exp + 4 * k, s.exp, true);
    v.setFloat32(at.lo + 4 * k, rests[k], true);
  }
}
