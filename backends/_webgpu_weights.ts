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
/** Weights below 2^MIN_EXP count as 0: f1 and f2 must each be a normal float32. */
const MIN_EXP = -252;

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
  const exp = Math.floor(Math.log2(w)) + 1; // w 2^-exp in [1/2, 1), up to log2's rounding
  if (exp <= MIN_EXP) return { mantissa: 0, f1: 1, f2: 1, exp: 0 };
  const half = Math.trunc(exp / 2);
  return { mantissa: w * 2 ** -exp, f1: 2 ** half, f2: 2 ** (exp - half), exp };
}

/**
 * Whether a weight of `mix` takes exponent factors: the shaders then send every row's dx
 * coefficients through their wide passes, whose sums keep exponents apart (such a weight lets
 * a mean lie ~2^72 stds from the mix's, beyond what the plain float32 products hold).
 */
export function hasTinyWeight(mix: ArrayLike<number>): boolean {
  for (let k = 0; k < mix.length; k++) if (shaderWeight(mix[k]).exp !== 0) return true;
  return false;
}

/** Writes the weights of `mix` (mixing order) at `at` and their factors and exponents. */
export function writeWeights(
  v: DataView,
  mix: ArrayLike<number>,
  at: { weights: number; f1: number; f2: number; exp: number },
): void {
  for (let k = 0; k < mix.length; k++) {
    const s = shaderWeight(mix[k]);
    v.setFloat32(at.weights + 4 * k, s.mantissa, true);
    v.setFloat32(at.f1 + 4 * k, s.f1, true);
    v.setFloat32(at.f2 + 4 * k, s.f2, true);
    v.setInt32(at.exp + 4 * k, s.exp, true);
  }
}
