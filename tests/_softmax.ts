/**
 * The softmax a layer mixes its statistics with, and its vector-Jacobian product, in float64: the
 * tests' and fuzzers' own copies of the layer's formulas (SN_SPEC.md, "Forward"), kept in one
 * place so that every judge forms its expected weights alike.
 *
 * @module
 */

/**
 * softmax(logits) in float64, shifted by the largest logit first (the shift changes nothing in
 * exact arithmetic and keeps exp from overflowing).
 *
 * @param logits The importance logits, any length >= 1.
 * @returns The weights w_k = exp(l_k - max l) / sum_j exp(l_j - max l).
 */
export function softmax(logits: ArrayLike<number>): Float64Array {
  const top = Math.max(...Array.from(logits));
  const e = Float64Array.from(logits, (v) => Math.exp(v - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/**
 * The importance logits' gradients from the backward's dot products a_k = dL/dw_k (the softmax's
 * vector-Jacobian product): w_k (a_k - sum_j w_j a_j). Backends may return a_k shifted by a
 * constant common to every k (the WebGPU one keeps them centred for precision), which this does
 * not see.
 *
 * @param mix The softmax weights w (float64).
 * @param dots The dot products a, one per weight.
 * @returns The logits' gradients, float64.
 */
export function logitGrads(mix: ArrayLike<number>, dots: ArrayLike<number>): Float64Array {
  let mean = 0;
  for (let k = 0; k < mix.length; k++) mean += mix[k] * dots[k];
  return Float64Array.from(mix, (w, k) => w * (dots[k] - mean));
}
