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
  type LayerParams,
  type NormProblem,
  type ResidentTensor,
  type RunningUpdate,
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

/** Computes SN on the CPU in float64. Stateless; one instance serves every layer. */
export class ReferenceBackend implements Backend {
  readonly name = "reference" as const;

  forward(
    problem: NormProblem,
    x: Float32Array | ResidentTensor,
    params: LayerParams,
    update: RunningUpdate,
    out?: Float32Array | ResidentTensor,
  ): Promise<Float32Array> {
    if (!(x instanceof Float32Array)) {
      throw new TypeError("reference backend: x must be a Float32Array");
    }
    if (out !== undefined && !(out instanceof Float32Array)) {
      throw new TypeError("reference backend: out must be a Float32Array");
    }
    const y = out ?? new Float32Array(x.length);
    const { n, c, m } = problem;
    // mu[n*c], sigma2[n*c]: the mixed statistics each element is normalized with.
    const mu = new Float64Array(n * c), sigma2 = new Float64Array(n * c);
    let batchMean: Float64Array | undefined, batchVar: Float64Array | undefined;
    const bnMean = (j: number) => batchMean ? batchMean[j] : params.runningMean[j];
    const bnVar = (j: number) => batchVar ? batchVar[j] : params.runningVar[j];

    if (problem.layout === "1d") {
      const lnMean = new Float64Array(n), lnVar = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        [lnMean[i], lnVar[i]] = meanVar(c, (j) => x[i * c + j]);
      }
      if (problem.training) {
        batchMean = new Float64Array(c), batchVar = new Float64Array(c);
        for (let j = 0; j < c; j++) {
          [batchMean[j], batchVar[j]] = meanVar(n, (i) => x[i * c + j]);
        }
      }
      const [w0, w1] = params.meanMix, [v0, v1] = params.varMix;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < c; j++) {
          mu[i * c + j] = w0 * lnMean[i] + w1 * bnMean(j);
          sigma2[i * c + j] = v0 * lnVar[i] + v1 * bnVar(j);
        }
      }
    } else {
      const inMean = new Float64Array(n * c), inVar = new Float64Array(n * c);
      for (let r = 0; r < n * c; r++) {
        [inMean[r], inVar[r]] = meanVar(m, (i) => x[r * m + i]);
      }
      const lnMean = new Float64Array(n), lnVar = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        [lnMean[i], lnVar[i]] = mergeGroup(c, (j) => inMean[i * c + j], (j) => inVar[i * c + j]);
      }
      if (problem.usingBN && problem.training) {
        batchMean = new Float64Array(c), batchVar = new Float64Array(c);
        for (let j = 0; j < c; j++) {
          [batchMean[j], batchVar[j]] = mergeGroup(
            n,
            (i) => inMean[i * c + j],
            (i) => inVar[i * c + j],
          );
        }
      }
      const [w0, w1, w2] = params.meanMix, [v0, v1, v2] = params.varMix;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < c; j++) {
          const r = i * c + j;
          mu[r] = w0 * inMean[r] + w1 * lnMean[i];
          sigma2[r] = v0 * inVar[r] + v1 * lnVar[i];
          if (problem.usingBN) {
            mu[r] += w2 * bnMean(j);
            sigma2[r] += v2 * bnVar(j);
          }
        }
      }
    }

    for (let r = 0; r < n * c; r++) {
      const j = r % c;
      const scale = params.weight[j] / Math.sqrt(sigma2[r] + problem.eps);
      for (let i = r * m; i < (r + 1) * m; i++) {
        y[i] = (x[i] - mu[r]) * scale + params.bias[j];
      }
    }
    if (batchMean && batchVar && problem.usingBN) {
      applyRunningUpdate(params.runningMean, params.runningVar, batchMean, batchVar, update);
    }
    return Promise.resolve(y);
  }

  upload(): ResidentTensor {
    throw new TypeError(
      "reference backend: tensors cannot be resident here; pass Float32Array data",
    );
  }

  dispose(): void {}
}
