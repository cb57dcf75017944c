/**
 * The maps from importance logits to mixing weights: softmax (SN), and sparsestmax (Sparse SN,
 * Shao et al., CVPR 2019), each with its vector-Jacobian product for the backward pass. Depends
 * on nothing.
 *
 * @module
 */

/** Mixing weights, and dL/dlogits from dL/dweights. */
export interface Importance {
  readonly weights: Float64Array;
  /**
   * dL/dlogits = J^T g for g = dL/dweights. With `zeroBelow`, softmax's Jacobian takes the
   * weights below it as 0, as a backend that computed with them at 0 needs (WebGPU: below
   * 2^-252); sparsemax's ignores it.
   */
  readonly vjp: (g: ArrayLike<number>, zeroBelow?: number) => Float64Array;
}

/**
 * softmax(v) = exp(v) / sum exp(v); J^T g = w * (g - <w, g>), formed as
 * w_i sum_j w_j (g_i - g_j) (the same, as sum w = 1): the differences first, so that entries of g
 * that are equal (IN and LN of one channel) give exactly 0 where g - <w, g> would leave the
 * rounding of <w, g>, which at |g| ~ 1e56 is ~1e40 and +Infinity in float32. A weight below
 * `zeroBelow` counts as 0 there: that backend's dot g_k of it is that of a term of weight 0,
 * which may be ~1e74 (sums in the mix's unit), and w_k g_k gave its logit and the others
 * gradients up to 0.25 where the reference with that weight at 0 gives 0 (attack fuzzer seeds
 * 92, 845).
 */
export function softmax(v: ArrayLike<number>): Importance {
  let max = -Infinity;
  for (let i = 0; i < v.length; i++) max = Math.max(max, v[i]);
  const w = Float64Array.from(v, (x) => Math.exp(x - max));
  const sum = w.reduce((a, b) => a + b, 0);
  for (let i = 0; i < w.length; i++) w[i] /= sum;
  return {
    weights: w,
    vjp(g, zeroBelow = 0) {
      const u = w.map((wi) => wi < zeroBelow ? 0 : wi);
      return u.map((ui, i) => ui * u.reduce((a, uj, j) => a + uj * (g[i] - g[j]), 0));
    },
  };
}

/**
 * `dots` (dL/dweights) with those of the weights that count as 0 (exactly 0 in float64, or below
 * `zeroBelow`) at 0 where they are not finite while every other weight's dot is: such a dot
 * reaches the logits only through its weight, and float64's 0 (or the backend's cut) times an
 * infinity, or a NaN of +Infinity - Infinity, made every logit gradient NaN. The dot itself is
 * finite in exact arithmetic (a finite sum of finite terms), only its float64 sum overflowed: a
 * SwitchNorm3d evaluation under eps 0 of a mixed variance ~1e-136 (std ~1e-68) gave dL/dvar
 * ~1e273 per row, which times a BN `running_var` of 3e38 under BN's variance weight of exactly 0
 * (logit -1e30) summed to NaN; `var_weight`'s gradients are +-Infinity and 0 (attack fuzzer seed
 * 271848; PyTorch in float64 gives NaN there as the reference did). Where another weight's dot is
 * not finite too (non-finite x, dy or running buffers, a std of 0 under eps 0), the dots stay as
 * they are, so that NaN and the infinities propagate as in PyTorch. The same rule serves a
 * backend's cut weights (`zeroWeightsBelow`: WebGPU sums a cut term's dot in the mix's units,
 * where it may pass float32's range, e.g. the LN term of a sample spanning 1e30 and 1e-30 under
 * BN alone: -Infinity for -1.7e30, where the float64 reference's is finite and, times a weight
 * below 2^-252, adds nothing float32 holds).
 */
export function dropZeroWeightDots(
  dots: ArrayLike<number>,
  weights: ArrayLike<number>,
  zeroBelow = 0,
): ArrayLike<number> {
  const zero = (k: number) => !(weights[k] > 0) || weights[k] < zeroBelow;
  let dropped: Float64Array | undefined;
  for (let k = 0; k < dots.length; k++) {
    if (Number.isFinite(dots[k])) continue;
    if (!zero(k)) return dots;
    (dropped ??= Float64Array.from(dots))[k] = 0;
  }
  return dropped ?? dots;
}

/**
 * sparsemax(v): the Euclidean projection of v onto the probability simplex,
 * w_i = max(v_i - tau, 0) with tau from the sorted values (Martins & Astudillo, 2016). Computed on
 * v - max(v) (sparsemax is shift-invariant), so that huge logits do not absorb the "- 1" and a
 * one-hot result is exactly one-hot.
 */
export function sparsemax(v: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < v.length; i++) max = Math.max(max, v[i]);
  const z = Array.from(v, (x) => x - max).sort((a, b) => b - a);
  let cumulative = 0, tau = 0;
  for (let k = 0; k < z.length; k++) {
    cumulative += z[k];
    const t = (cumulative - 1) / (k + 1);
    if (z[k] > t) tau = t;
  }
  return Float64Array.from(v, (x) => Math.max(x - max - tau, 0));
}

/** Indices of v from the largest value to the smallest; ties keep the lower index first. */
function descendingOrder(v: ArrayLike<number>): number[] {
  return Array.from(v, (_, i) => i).sort((a, b) => v[b] - v[a] || a - b);
}

/** Added to |w - u| before dividing by it, as the authors' code does. */
const DISTANCE_GUARD = 1e-6;

/**
 * sparsestmax(v, r) of SN_SPEC, as the authors compute it (`regulated_sparsemax` in
 * switchablenorms/Sparse_SwitchNorm, utils/ssn_utils.py), for K = 3 or K = 2 logits:
 *
 * - w = sparsemax(v); u = 1/K in every entry (the centre of the whole simplex); d = |w - u|.
 * - d >= r: w.
 * - else p = u + r (w - u) / (d + 1e-6) (the authors' guard; below d = 1e-6 their autograd treats
 *   d as a constant, and so does this Jacobian).
 * - K = 3, p negative at the smallest logit: the point of the edge of the two largest logits at
 *   distance r from u, p_top = (1 + sqrt(2) r sin(acos(1 / (sqrt(6) r)))) / 2,
 *   p_second = 1 - p_top, p_third = 0. It depends on r only, so its Jacobian is 0 (as autograd
 *   finds in their code). Ties in v: the lower index counts as larger (torch.sort on CPU).
 * - clamp to [0, 1] (the Jacobian's rows of clamped entries are 0). One-hot from r = sqrt(2/3)
 *   ~ 0.8165 on.
 *
 * K = 2 goes beyond the authors' code (written for K = 3): the same steps with u = 1/2 and no
 * edge step, so that the clamp takes p to the vertex of the larger logit from r ~ 1/sqrt(2) on.
 *
 * @throws {RangeError} for K other than 2 or 3.
 */
export function sparsestmax(v: ArrayLike<number>, r: number): Importance {
  const k = v.length;
  if (k !== 2 && k !== 3) {
    throw new RangeError(`sparsestmax: expected 2 or 3 logits, got ${k}`);
  }
  const w = sparsemax(v);
  // sparsemax's Jacobian: I_S - 1_S 1_S^T / |S| on the support S, 0 elsewhere.
  const support = Array.from(w, (x) => x > 0);
  const size = support.filter(Boolean).length;
  let jacobian: Float64Array[] = support.map((si, i) =>
    Float64Array.from(support, (sj, j) => (si && sj ? +(i === j) - 1 / size : 0))
  );
  const result = (weights: Float64Array): Importance => ({
    weights,
    vjp: (g) =>
      Float64Array.from(
        { length: k },
        (_, i) => jacobian.reduce((a, row, q) => a + row[i] * g[q], 0),
      ),
  });
  const u = 1 / k;
  const e = Float64Array.from(w, (x) => x - u);
  const d = Math.hypot(...e);
  if (d >= r) return result(w);
  const denominator = d + DISTANCE_GUARD;
  const p = e.map((x) => u + r * x / denominator);
  // dp/de = r/D I - r e e^T / (D^2 d) (the second term only where d carries a gradient).
  const sphere = Array.from(e, (ei, i) =>
    Float64Array.from(e, (ej, j) => {
      const along = d < DISTANCE_GUARD ? 0 : r * ei * ej / (denominator * denominator * d);
      return (i === j ? r / denominator : 0) - along;
    }));
  jacobian = sphere.map((row) =>
    Float64Array.from(
      { length: k },
      (_, j) => row.reduce((a, s, q) => a + s * jacobian[q][j], 0),
    )
  );
  if (k === 3) {
    const [top, second, third] = descendingOrder(v);
    if (p[third] < 0) {
      // acos needs 1/(sqrt(6) r) <= 1; p[third] < 0 implies r > 1/sqrt(6) but for rounding.
      const half = Math.SQRT2 * r * Math.sin(Math.acos(Math.min(1 / (Math.sqrt(6) * r), 1)));
      p[top] = (1 + half) / 2;
      p[second] = (1 - half) / 2;
      p[third] = 0;
      jacobian = jacobian.map((row) => row.fill(0));
    }
  }
  for (let i = 0; i < k; i++) {
    if (p[i] < 0 || p[i] > 1) {
      p[i] = Math.min(Math.max(p[i], 0), 1);
      jacobian[i].fill(0);
    }
  }
  return result(p);
}
