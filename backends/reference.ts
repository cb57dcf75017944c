/**
 * The reference backend: SN written out plainly in TypeScript with float64 arithmetic. It is the
 * in-process oracle for tests and the fallback where WebAssembly SIMD is missing, so it favours
 * being obviously right over being fast.
 *
 * @module
 */
import {
  applyRunningUpdate,
  type Backend,
  type BackwardResult,
  type LayerParams,
  type NormProblem,
  type ResidentTensor,
  type RunningUpdate,
  type SavedForward,
} from "./_backend.ts";

/** Mean and unbiased variance of `count` values `at(0..count-1)`, two-pass in float64. */
function meanVar(count: number, at: (i: number) => number): [number, number] {
  let sum = 0;
  for (let i = 0; i < count; i++) sum += at(i);
  const mean = sum / count;
  let m2 = 0;
  for (let i = 0; i < count; i++) m2 += (at(i) - mean) ** 2;
  // count = 1 gives 0/0 = NaN, as torch's unbiased var does.
  return [mean, m2 / (count - 1)];
}

/**
 * Mean and variance of a group from the per-member (mean, unbiased var) pairs, the way the
 * reference derives LN and BN statistics from IN ones, written without cancellation:
 * mean_k var_k + mean_k (mu_k - mu)^2 equals mean_k (var_k + mu_k^2) - mu^2.
 */
function mergeGroup(count: number, mu: (k: number) => number, v: (k: number) => number) {
  let mean = 0;
  for (let k = 0; k < count; k++) mean += mu(k);
  mean /= count;
  let variance = 0;
  for (let k = 0; k < count; k++) variance += v(k) + (mu(k) - mean) ** 2;
  return [mean, variance / count];
}

/**
 * Every statistic of one forward. The normalizers are listed in mixing order: for "nd" in
 * (per (n,c)), ln (per n), bn (per c); for "1d" ln (per n), bn (per c). `mu`/`sigma2` are the
 * mixed mean and variance per (n, c).
 */
interface Statistics {
  readonly means: ((n: number, c: number) => number)[];
  readonly vars: ((n: number, c: number) => number)[];
  readonly mu: Float64Array;
  readonly sigma2: Float64Array;
  /** Training: the batch's BN statistics (length C). */
  readonly batchMean?: Float64Array;
  readonly batchVar?: Float64Array;
  /** "nd": per-(n,c) IN statistics; "1d": per-n LN statistics. For the backward pass. */
  readonly inner: { mean: Float64Array; var: Float64Array };
}

/** The parameters as the float64 functions read them (LayerParams, or float64 copies in tests). */
export interface Params64 {
  readonly weight: ArrayLike<number>;
  readonly bias: ArrayLike<number>;
  readonly meanMix: readonly number[] | Float64Array;
  readonly varMix: readonly number[] | Float64Array;
  readonly runningMean: ArrayLike<number>;
  readonly runningVar: ArrayLike<number>;
}

function statistics(problem: NormProblem, x: ArrayLike<number>, params: Params64): Statistics {
  const { n, c, m } = problem;
  const means: Statistics["means"] = [], vars: Statistics["vars"] = [];
  let inner: Statistics["inner"];
  if (problem.layout === "1d") {
    const lnMean = new Float64Array(n), lnVar = new Float64Array(n);
    for (let i = 0; i < n; i++) [lnMean[i], lnVar[i]] = meanVar(c, (j) => x[i * c + j]);
    means.push((i) => lnMean[i]);
    vars.push((i) => lnVar[i]);
    inner = { mean: lnMean, var: lnVar };
  } else {
    const inMean = new Float64Array(n * c), inVar = new Float64Array(n * c);
    for (let r = 0; r < n * c; r++) [inMean[r], inVar[r]] = meanVar(m, (i) => x[r * m + i]);
    const lnMean = new Float64Array(n), lnVar = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      [lnMean[i], lnVar[i]] = mergeGroup(c, (j) => inMean[i * c + j], (j) => inVar[i * c + j]);
    }
    means.push((i, j) => inMean[i * c + j], (i) => lnMean[i]);
    vars.push((i, j) => inVar[i * c + j], (i) => lnVar[i]);
    inner = { mean: inMean, var: inVar };
  }
  let batchMean: Float64Array | undefined, batchVar: Float64Array | undefined;
  if (problem.usingBN) {
    if (problem.training) {
      batchMean = new Float64Array(c), batchVar = new Float64Array(c);
      for (let j = 0; j < c; j++) {
        [batchMean[j], batchVar[j]] = problem.layout === "1d"
          ? meanVar(n, (i) => x[i * c + j])
          : mergeGroup(n, (i) => inner.mean[i * c + j], (i) => inner.var[i * c + j]);
      }
    }
    const bnMean = batchMean ?? params.runningMean, bnVar = batchVar ?? params.runningVar;
    means.push((_, j) => bnMean[j]);
    vars.push((_, j) => bnVar[j]);
  }
  const mu = new Float64Array(n * c), sigma2 = new Float64Array(n * c);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) {
      for (let k = 0; k < means.length; k++) {
        mu[i * c + j] += params.meanMix[k] * means[k](i, j);
        sigma2[i * c + j] += params.varMix[k] * vars[k](i, j);
      }
    }
  }
  return { means, vars, mu, sigma2, batchMean, batchVar, inner };
}

/** y = SN(x) in float64, and the batch BN statistics (training). */
export function forward64(problem: NormProblem, x: ArrayLike<number>, params: Params64) {
  const { n, c, m } = problem;
  const st = statistics(problem, x, params);
  const y = new Float64Array(x.length);
  for (let r = 0; r < n * c; r++) {
    const j = r % c;
    const scale = params.weight[j] / Math.sqrt(st.sigma2[r] + problem.eps);
    for (let i = r * m; i < (r + 1) * m; i++) y[i] = (x[i] - st.mu[r]) * scale + params.bias[j];
  }
  return { y, batchMean: st.batchMean, batchVar: st.batchVar };
}

/**
 * The chain rule of SN_SPEC in float64: dx, dgamma, dbeta, and a_k = dL/dmeanMix_k,
 * b_k = dL/dvarMix_k. In training mode the BN statistics are functions of x; in evaluation mode
 * they are constants (the running buffers).
 */
export function backward64(
  problem: NormProblem,
  x: ArrayLike<number>,
  dy: ArrayLike<number>,
  params: Params64,
) {
  const { n, c, m, eps } = problem;
  const st = statistics(problem, x, params);
  const dWeight = new Float64Array(c), dBias = new Float64Array(c);
  const gm = new Float64Array(n * c), gv = new Float64Array(n * c); // dL/dmu, dL/dvar per (n,c)
  for (let r = 0; r < n * c; r++) {
    const j = r % c, s = 1 / Math.sqrt(st.sigma2[r] + eps);
    let sumDxh = 0, sumDxhXhat = 0;
    for (let i = r * m; i < (r + 1) * m; i++) {
      const xhat = (x[i] - st.mu[r]) * s, dxh = dy[i] * params.weight[j];
      dWeight[j] += dy[i] * xhat;
      dBias[j] += dy[i];
      sumDxh += dxh;
      sumDxhXhat += dxh * xhat;
    }
    gm[r] = -s * sumDxh;
    gv[r] = -0.5 * s * s * sumDxhXhat;
  }
  const k = st.means.length;
  const meanDots = new Float64Array(k), varDots = new Float64Array(k);
  const gmL = new Float64Array(n), gvL = new Float64Array(n);
  const gmB = new Float64Array(c), gvB = new Float64Array(c);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) {
      const r = i * c + j;
      gmL[i] += gm[r], gvL[i] += gv[r], gmB[j] += gm[r], gvB[j] += gv[r];
      for (let q = 0; q < k; q++) {
        meanDots[q] += gm[r] * st.means[q](i, j);
        varDots[q] += gv[r] * st.vars[q](i, j);
      }
    }
  }
  const bnLive = problem.usingBN && problem.training;
  const dx = new Float64Array(x.length);
  const dxhs = (e: number, r: number) =>
    dy[e] * params.weight[r % c] / Math.sqrt(st.sigma2[r] + eps);
  if (problem.layout === "1d") {
    // mu = w0 mu_ln + w1 mu_bn, var = v0 var_ln + v1 var_bn, both taken directly from x.
    const ln = st.inner, [w0, w1] = params.meanMix, [v0, v1] = params.varMix;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < c; j++) {
        const r = i * c + j;
        dx[r] = dxhs(r, r) + w0 * gmL[i] / c + v0 * gvL[i] * 2 * (x[r] - ln.mean[i]) / (c - 1);
        if (bnLive) {
          dx[r] += w1 * gmB[j] / n + v1 * gvB[j] * 2 * (x[r] - st.batchMean![j]) / (n - 1);
        }
      }
    }
  } else {
    const inMean = st.inner.mean, [w0, w1, w2] = params.meanMix, [v0, v1, v2] = params.varMix;
    for (let i = 0; i < n; i++) {
      const lnMean = st.means[1](i, 0);
      for (let j = 0; j < c; j++) {
        const r = i * c + j;
        let gVarIn = v0 * gv[r] + v1 * gvL[i] / c;
        let gMuIn = w0 * gm[r] + w1 * gmL[i] / c + v1 * (2 / c) * (inMean[r] - lnMean) * gvL[i];
        if (bnLive) {
          gVarIn += v2 * gvB[j] / n;
          gMuIn += w2 * gmB[j] / n + v2 * (2 / n) * (inMean[r] - st.batchMean![j]) * gvB[j];
        }
        for (let e = r * m; e < (r + 1) * m; e++) {
          dx[e] = dxhs(e, r) + gMuIn / m + gVarIn * 2 * (x[e] - inMean[r]) / (m - 1);
        }
      }
    }
  }
  return { dx, dWeight, dBias, meanDots, varDots };
}

function float32(what: string, v: Float32Array | ResidentTensor | undefined): Float32Array {
  if (v !== undefined && !(v instanceof Float32Array)) {
    throw new TypeError(`reference backend: ${what} must be a Float32Array`);
  }
  return v as Float32Array;
}

/** Computes SN on the CPU in float64. Stateless; one instance serves every layer. */
export class ReferenceBackend implements Backend {
  readonly name = "reference" as const;

  forward(
    problem: NormProblem,
    xIn: Float32Array | ResidentTensor,
    params: LayerParams,
    update: RunningUpdate,
    out?: Float32Array | ResidentTensor,
    save?: SavedForward,
  ): Promise<Float32Array> {
    const x = float32("x", xIn);
    const y = float32("out", out) ?? new Float32Array(x.length);
    const r = forward64(problem, x, params);
    y.set(r.y);
    if (save) {
      save.problem = problem;
      save.x = x;
    }
    if (r.batchMean && r.batchVar) {
      applyRunningUpdate(params.runningMean, params.runningVar, r.batchMean, r.batchVar, update);
    }
    return Promise.resolve(y);
  }

  /**
   * {@linkcode backward64} on the saved x. Statistics are recomputed with the parameters as they
   * are now, which the layer keeps equal to the forward's (in training mode the BN statistics are
   * the batch's, so the running update in between does not matter).
   */
  backward(
    saved: SavedForward,
    dy: Float32Array | ResidentTensor,
    params: LayerParams,
  ): Promise<BackwardResult> {
    const r = backward64(saved.problem!, float32("x", saved.x), float32("dy", dy), params);
    return Promise.resolve({ ...r, dx: Float32Array.from(r.dx) });
  }

  upload(): ResidentTensor {
    throw new TypeError(
      "reference backend: tensors cannot be resident here; pass Float32Array data",
    );
  }

  dispose(): void {}
}
