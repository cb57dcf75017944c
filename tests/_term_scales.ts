/**
 * The scale of the float32 terms that y, dx and each parameter gradient are sums of, computed in
 * float64 from a call's inputs: the tolerance scale of {@linkcode assertCloseToScale} (see
 * GRAD_SCALED in tests/_tolerances.ts for why a float32 result is only as accurate as that).
 *
 * Each scale is the chain rule of SN_SPEC evaluated with every factor replaced by its absolute
 * value and every sum by the sum of absolute values (the "absolute-value evaluation" of running
 * error analysis, Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., 3.3): a float32
 * evaluation of the formula has an error of a few units of float32 rounding times this scale,
 * however much its terms cancel. Two kinds of quantity are not sums of x and need a model:
 * - a deviation x - mu, where mu is a mean of values spread over +-std: its terms are of the size
 *   of that std (PyTorch float32 and every backend round mu to a few float32 units of it), so it
 *   counts as |x - mu| + std (the mixing weights' average of the normalizers' stds; a stored
 *   running_mean adds none). For gamma ~1 this is about Y and GRAD: y's scale is about
 *   |gamma| (|xhat| + 1) + |beta|.
 * - a difference of two statistics, mu_k - mu_j or var_k - var_j (the logit gradients, LN and
 *   BN's variance paths of dx), counts as its own size plus one float32 rounding of the two values
 *   ({@linkcode diff}): the backends compute these differences without cancellation (hi/lo
 *   means, float64 merges; NUMERICS.md), so an offset of 1e4 over a std of 1 loosens
 *   nothing, rows of 4e6 floats keep mean_weight's bar, and statistics equal in exact arithmetic
 *   (one row per sample and per channel: mu_in = mu_ln = mu_bn) still have a scale. In the logit
 *   gradients two normalizers' means that the reference finds exactly equal also count one
 *   float32 rounding of their stds (the spreads above), so that means equal and 0, a row of +-v
 *   pairs beside a row of zeros, have a scale too: the reference's gradient is exactly 0 there,
 *   and a backend's means, a few 1e-14 of the std off, gave -7e-15 (attack helper-77). Means that
 *   differ, however little, keep the scale of their difference: the backends tell apart means
 *   ~2^-24 of the std apart (attack helper-78: a floor for every pair let a gradient of the
 *   wrong sign pass there).
 *
 * @module
 */

import { softmax } from "./_softmax.ts";

/** A SwitchNorm call as the scales see it: float32 inputs and the parameters of the call. */
export interface TermScaleCall {
  /** "1d": x is [N, C]; "nd": x is [N, C, M...] with M elements per (n, c) row. */
  readonly layout: "1d" | "nd";
  readonly n: number;
  readonly c: number;
  /** Elements per (n, c) row: 1 for "1d". */
  readonly m: number;
  readonly eps: number;
  readonly usingBN: boolean;
  readonly training: boolean;
  readonly x: ArrayLike<number>;
  readonly dy: ArrayLike<number>;
  readonly weight: ArrayLike<number>;
  readonly bias: ArrayLike<number>;
  /** The logits (not their softmax), order (in,) ln, bn. */
  readonly meanLogits: ArrayLike<number>;
  readonly varLogits: ArrayLike<number>;
  /**
   * Sparse SN: the mixings' weights and their Jacobians (row k: dw_k / dlogits), in place of
   * softmax's of the logits.
   */
  readonly mixing?: {
    readonly mean: TermMixing;
    readonly var: TermMixing;
  };
  /** Used in evaluation with BN: BN's statistics are these. */
  readonly runningMean?: ArrayLike<number>;
  readonly runningVar?: ArrayLike<number>;
}

/** A mixing's weights and Jacobian (row k: dw_k / dlogits), for {@linkcode TermScaleCall}. */
export interface TermMixing {
  readonly weights: ArrayLike<number>;
  readonly jacobian: readonly ArrayLike<number>[];
}

/** Per-element scales of y and dx, per-entry scales of the parameter gradients. */
export interface TermScales {
  readonly y: Float64Array;
  readonly dx: Float64Array;
  readonly weight: Float64Array;
  readonly bias: Float64Array;
  readonly mean_weight: Float64Array;
  readonly var_weight: Float64Array;
}

/** Float32's unit roundoff, 2^-24. */
const U32 = 2 ** -24;

/** |a - b| as a float32 computation of the difference of two float32-held values may give it. */
function diff(a: number, b: number): number {
  return Math.abs(a - b) + U32 * (Math.abs(a) + Math.abs(b));
}

/** Mean and unbiased variance, two-pass in float64, of `count` values at(0..count-1). */
export function meanVar(count: number, at: (i: number) => number): [number, number] {
  let sum = 0;
  for (let i = 0; i < count; i++) sum += at(i);
  const mean = sum / count;
  let m2 = 0;
  for (let i = 0; i < count; i++) m2 += (at(i) - mean) ** 2;
  return [mean, m2 / (count - 1)];
}

/** The term scales of one forward and backward call (O(size) float64 work, two sweeps). */
export function termScales(call: TermScaleCall): TermScales {
  const { n, c, m, x, dy, weight, bias, eps } = call;
  const nd = call.layout === "nd";
  const rows = n * c;
  const w = call.mixing ? Float64Array.from(call.mixing.mean.weights) : softmax(call.meanLogits);
  const v = call.mixing ? Float64Array.from(call.mixing.var.weights) : softmax(call.varLogits);
  const bnLive = call.usingBN && call.training;

  // Statistics per normalizer, as per-row functions (row r = n * C + c in both layouts).
  const inMean = new Float64Array(nd ? rows : 0), inVar = new Float64Array(nd ? rows : 0);
  const lnMean = new Float64Array(n), lnVar = new Float64Array(n);
  const bnMean = new Float64Array(c), bnVar = new Float64Array(c);
  if (nd) {
    for (let r = 0; r < rows; r++) [inMean[r], inVar[r]] = meanVar(m, (i) => x[r * m + i]);
    // LN and BN from the IN statistics (SN_SPEC): mean var_in + mean (mu_in - mu)^2.
    for (let s = 0; s < n; s++) {
      [lnMean[s], lnVar[s]] = mergeRows(c, (j) => s * c + j, inMean, inVar);
    }
    for (let j = 0; j < c; j++) {
      [bnMean[j], bnVar[j]] = mergeRows(
        n,
        (s) => s * c + j,
        inMean,
        inVar,
      );
    }
  } else {
    for (let s = 0; s < n; s++) [lnMean[s], lnVar[s]] = meanVar(c, (j) => x[s * c + j]);
    for (let j = 0; j < c; j++) [bnMean[j], bnVar[j]] = meanVar(n, (s) => x[s * c + j]);
  }
  if (call.usingBN && !call.training) {
    for (let j = 0; j < c; j++) {
      bnMean[j] = call.runningMean![j];
      bnVar[j] = call.runningVar![j];
    }
  }
  const means: ((r: number) => number)[] = [], vars: ((r: number) => number)[] = [];
  if (nd) means.push((r) => inMean[r]), vars.push((r) => inVar[r]);
  means.push((r) => lnMean[Math.floor(r / c)]), vars.push((r) => lnVar[Math.floor(r / c)]);
  if (call.usingBN) means.push((r) => bnMean[r % c]), vars.push((r) => bnVar[r % c]);
  const k = means.length;

  // spread[j]: the size of the deviations a mean of normalizer j sums (its std); 0 for BN's mean
  // in evaluation, a stored value.
  const spreads: ((r: number) => number)[] = vars.map((at) => (r: number) => Math.sqrt(at(r)));
  if (call.usingBN && !call.training) spreads[k - 1] = () => 0;
  const mu = new Float64Array(rows), s = new Float64Array(rows), spread = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let mix = 0, variance = 0, size = 0;
    for (let j = 0; j < k; j++) {
      mix += w[j] * means[j](r), variance += v[j] * vars[j](r), size += w[j] * spreads[j](r);
    }
    mu[r] = mix;
    s[r] = 1 / Math.sqrt(variance + eps);
    spread[r] = size;
  }

  // Sweep 1: y's scale, the row sums |dL/dmu| (am) and |dL/dvar| (av), dgamma's and dbeta's.
  const y = new Float64Array(x.length);
  const am = new Float64Array(rows), av = new Float64Array(rows);
  const dWeight = new Float64Array(c), dBias = new Float64Array(c);
  for (let r = 0; r < rows; r++) {
    const j = r % c, g = Math.abs(weight[j]);
    let sumDy = 0, sumDyDev = 0;
    for (let i = r * m; i < (r + 1) * m; i++) {
      const dev = diff(x[i], mu[r]) + spread[r], d = Math.abs(dy[i]);
      y[i] = g * dev * s[r] + Math.abs(bias[j]);
      sumDy += d;
      sumDyDev += d * dev;
    }
    am[r] = s[r] * g * sumDy;
    av[r] = 0.5 * s[r] ** 3 * g * sumDyDev;
    dWeight[j] += sumDyDev * s[r];
    dBias[j] += sumDy;
  }

  // Group sums of am and av: over c per sample (LN), over n per channel (BN).
  const amLn = new Float64Array(n), avLn = new Float64Array(n);
  const amBn = new Float64Array(c), avBn = new Float64Array(c);
  for (let r = 0; r < rows; r++) {
    const sample = Math.floor(r / c), j = r % c;
    amLn[sample] += am[r], avLn[sample] += av[r], amBn[j] += am[r], avBn[j] += av[r];
  }
  const [wIn, wLn, wBn] = nd ? [w[0], w[1], w[2]] : [0, w[0], w[1]];
  const [vIn, vLn, vBn] = nd ? [v[0], v[1], v[2]] : [0, v[0], v[1]];

  // Sweep 2: dx's scale, each path of the chain rule with absolute values.
  const dx = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    const sample = Math.floor(r / c), j = r % c, g = Math.abs(weight[j]);
    for (let i = r * m; i < (r + 1) * m; i++) {
      let t = Math.abs(dy[i]) * g * s[r];
      if (nd) {
        const devIn = diff(x[i], inMean[r]) + Math.sqrt(inVar[r]);
        t += wIn * am[r] / m + vIn * av[r] * 2 * devIn / (m - 1);
        t += wLn * amLn[sample] / (c * m) +
          vLn * avLn[sample] *
            (2 * devIn / (m - 1) + 2 * diff(inMean[r], lnMean[sample]) / m) /
            c;
        if (bnLive) {
          t += wBn * amBn[j] / (n * m) +
            vBn * avBn[j] * (2 * devIn / (m - 1) + 2 * diff(inMean[r], bnMean[j]) / m) / n;
        }
      } else {
        t += wLn * amLn[sample] / c +
          vLn * avLn[sample] * 2 * (diff(x[i], lnMean[sample]) + Math.sqrt(lnVar[sample])) /
            (c - 1);
        if (bnLive) {
          t += wBn * amBn[j] / n +
            vBn * avBn[j] * 2 * (diff(x[i], bnMean[j]) + Math.sqrt(bnVar[j])) / (n - 1);
        }
      }
      dx[i] = t;
    }
  }

  // The logits' gradients, centred form: w_k sum_r dL/dmu_r (mu_k - mu_r), mu_k - mu_r being
  // sum_j w_j (mu_k - mu_j) (and likewise for the variances).
  const dMean = new Float64Array(k), dVar = new Float64Array(k);
  for (let r = 0; r < rows; r++) {
    for (let a = 0; a < k; a++) {
      let dm = 0, dv = 0;
      for (let b = 0; b < k; b++) {
        const [ma, mb] = [means[a](r), means[b](r)];
        // Two normalizers' means that the reference finds equal: one float32 rounding of
        // their stds (a backend's means are not exact).
        const tie = b !== a && ma === mb ? U32 * (spreads[a](r) + spreads[b](r)) : 0;
        dm += w[b] * (diff(ma, mb) + tie);
        dv += v[b] * diff(vars[a](r), vars[b](r));
      }
      // A row that contributes nothing (s = 0: a variance of +Infinity) adds nothing, even
      // against an infinite difference of variances; nor does a weight (or Jacobian entry) of 0
      // against a row's float64 overflow (the layer's dropZeroWeightDots).
      if (!call.mixing) {
        if (am[r] > 0 && w[a] > 0) dMean[a] += w[a] * am[r] * dm;
        if (av[r] > 0 && v[a] > 0) dVar[a] += v[a] * av[r] * dv;
        continue;
      }
      // Sparse SN: gradient q = sum_k J_kq a_k, a_k centred as above (the columns of J sum
      // to 0), each term at its absolute value.
      for (let q = 0; q < k; q++) {
        const jm = Math.abs(call.mixing.mean.jacobian[a][q]);
        const jv = Math.abs(call.mixing.var.jacobian[a][q]);
        if (am[r] > 0 && jm > 0) dMean[q] += jm * am[r] * dm;
        if (av[r] > 0 && jv > 0) dVar[q] += jv * av[r] * dv;
      }
    }
  }
  return { y, dx, weight: dWeight, bias: dBias, mean_weight: dMean, var_weight: dVar };
}

/** Mean and (biased over members) variance of a group of rows from their IN statistics. */
function mergeRows(
  count: number,
  row: (i: number) => number,
  mean: Float64Array,
  variance: Float64Array,
): [number, number] {
  let mu = 0;
  for (let i = 0; i < count; i++) mu += mean[row(i)];
  mu /= count;
  let v = 0;
  for (let i = 0; i < count; i++) v += variance[row(i)] + (mean[row(i)] - mu) ** 2;
  return [mu, v / count];
}

/** Training forwards that update a layer's running buffers, for {@linkcode runningMeanScale}. */
export interface RunningSteps {
  readonly c: number;
  /** Elements per (n, c) row: 1 for "1d". */
  readonly m: number;
  /** Each step's x, [N, C, M...] in row-major order. */
  readonly batches: readonly ArrayLike<number>[];
  /** running_mean before the first step (a batch average starts from 0 whatever it is). */
  readonly start?: ArrayLike<number>;
  readonly momentum: number;
  /** The paper's batch average (`usingMovingAverage: false`, finalized): the steps' mean. */
  readonly average?: boolean;
}

/**
 * The size of the terms `running_mean` is a sum of after `steps`, per channel: a moving-average
 * step r' = momentum r + (1 - momentum) mu_bn sums momentum |r| and (1 - momentum) mean |x| (mean
 * |x| over the channel: the terms mu_bn sums), from |start|; a batch average the mean over the
 * steps of mean |x|. Every backend's batch mean is accurate to a few float32 roundings of that
 * size, not of mu_bn itself (a row mixing values of both signs rounds x - K at x's own ulp,
 * NUMERICS.md), and an update that cancels (mu_bn near -momentum / (1 - momentum) r, or a
 * batch mean near 0 beside data far from it) keeps that error in full: held to RUNNING times this
 * scale (as `tests/range_property_test.ts` holds it), the buffers keep RUNNING's margin wherever
 * they do not cancel.
 */
export function runningMeanScale(steps: RunningSteps): Float64Array {
  const { c, m, momentum } = steps;
  const scale = Float64Array.from(
    { length: c },
    (_, j) => steps.average ? 0 : Math.abs(steps.start?.[j] ?? 0),
  );
  for (const x of steps.batches) {
    const meanAbs = new Float64Array(c);
    for (let i = 0; i < x.length; i++) meanAbs[Math.floor(i / m) % c] += Math.abs(x[i]);
    const count = x.length / c;
    for (let j = 0; j < c; j++) {
      scale[j] = steps.average
        ? scale[j] + meanAbs[j] / count / steps.batches.length
        : momentum * scale[j] + (1 - momentum) * meanAbs[j] / count;
    }
  }
  return scale;
}
