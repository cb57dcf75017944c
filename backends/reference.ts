/**
 * The reference backend: SN written out plainly in TypeScript with float64 arithmetic. It is the
 * in-process oracle for tests and the fallback where WebAssembly SIMD is missing, so it favours
 * being obviously right over being fast.
 *
 * Depends on the shared Backend types (_backend.ts) only.
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

/**
 * The sum of `count` values `at(0..count-1)` in float64 with every addition's rounding error
 * gathered apart and added at the end (Neumaier's compensated sum, "Rundungsfehleranalyse einiger
 * Verfahren zur Summation endlicher Summen", 1974): within a few ulps of the exact sum, where a
 * float64 sum in order drops values far below a running sum that later cancels: a row of five
 * +3.4e38, five -3.4e38 and O(1) values has the mean 0.0354, which such a sum made 2.75e-32, and
 * an evaluation of std 0 took the sign of x - mu from it (y +Infinity for -Infinity; attack
 * fuzzer seed 204240, tests/exact_mean_test.ts). Where a value is not finite, the plain sum (its
 * NaN and infinities are PyTorch's).
 */
export function compensatedSum(count: number, at: (i: number) => number): number {
  const [sum, lost] = compensatedParts(count, at);
  return sum + lost;
}

/**
 * compensatedSum's two parts [sum, lost]: the float64 sum in order and the rounding errors it
 * dropped (0 where the sum is not finite), whose compensated sums over rows give a group's.
 */
function compensatedParts(count: number, at: (i: number) => number): [number, number] {
  let sum = 0, lost = 0;
  for (let i = 0; i < count; i++) {
    const v = at(i), t = sum + v;
    lost += Math.abs(sum) >= Math.abs(v) ? (sum - t) + v : (v - t) + sum;
    sum = t;
  }
  return [sum, Number.isFinite(sum) ? lost : 0];
}

/**
 * Mean and unbiased variance of `count` values `at(0..count-1)`, two-pass in float64, the mean
 * from their compensated sum; with that sum's parts (compensatedParts).
 */
function meanVar(count: number, at: (i: number) => number): [number, number, number, number] {
  const [sum, lost] = compensatedParts(count, at);
  const mean = (sum + lost) / count;
  let m2 = 0;
  for (let i = 0; i < count; i++) m2 += (at(i) - mean) ** 2;
  // count = 1 gives 0/0 = NaN, as torch's unbiased var does.
  return [mean, m2 / (count - 1), sum, lost];
}

/**
 * Mean and variance of a group from the per-member (mean, unbiased var) pairs, the way the
 * reference derives LN and BN statistics from IN ones, written without cancellation:
 * mean_k var_k + mean_k (mu_k - mu)^2 equals mean_k (var_k + mu_k^2) - mu^2. `mean` is the
 * group's mean from its values' compensated sum (the members' rounded means may cancel).
 */
function mergeGroup(
  count: number,
  mean: number,
  mu: (k: number) => number,
  v: (k: number) => number,
) {
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
  /**
   * The rounding of each `mu` (`anchoredMean`): the mixed mean is mu + muErr, and x - mu is taken
   * as (x - mu) - muErr, so that terms below half an ulp of the anchor's mean still count.
   */
  readonly muErr: Float64Array;
  readonly sigma2: Float64Array;
  /** Training with BN: the batch's BN statistics (length C) and its size. */
  readonly batch?: { mean: Float64Array; var: Float64Array; count: number };
  /** "nd": per-(n,c) IN statistics; "1d": per-n LN statistics. For the backward pass. */
  readonly inner: {
    mean: Float64Array;
    var: Float64Array;
    /** Each row's compensated sum's parts (compensatedParts), for its groups' means. */
    sum: Float64Array;
    lost: Float64Array;
  };
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

/** Per-channel BN statistics as a mergeable (count, mean, M2) triple (see BatchSync). */
interface BNPartials {
  count: number;
  mean: Float64Array;
  m2: Float64Array;
}

function innerStatistics(problem: NormProblem, x: ArrayLike<number>): Statistics["inner"] {
  const { n, c, m } = problem;
  const rows = problem.layout === "1d" ? n : n * c, len = problem.layout === "1d" ? c : m;
  const mean = new Float64Array(rows), variance = new Float64Array(rows);
  const sum = new Float64Array(rows), lost = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    [mean[r], variance[r], sum[r], lost[r]] = meanVar(len, (i) => x[r * len + i]);
  }
  return { mean, var: variance, sum, lost };
}

/** The mean of `count` rows of `len` values each from their sums' parts (rows `row(0..count-1)`). */
function groupMean(
  inner: Statistics["inner"],
  count: number,
  len: number,
  row: (k: number) => number,
): number {
  const parts = compensatedSum(
    2 * count,
    (k) => k < count ? inner.sum[row(k)] : inner.lost[row(k - count)],
  );
  return parts / (count * len);
}

/** This batch's BN statistics per channel, as a triple that merges across replicas. */
function bnPartials(
  problem: NormProblem,
  x: ArrayLike<number>,
  inner: Statistics["inner"],
): BNPartials {
  const { n, c } = problem;
  const mean = new Float64Array(c), m2 = new Float64Array(c);
  // Each mean as a sum divided once, as torch's mean (a sum of x / n rounds every term: a
  // constant column of 2^109 had a mean off by its ulps and a variance of 6e33 for 0).
  const { m } = problem;
  for (let j = 0; j < c; j++) {
    if (problem.layout === "1d") {
      mean[j] = compensatedSum(n, (i) => x[i * c + j]) / n;
      for (let i = 0; i < n; i++) m2[j] += (x[i * c + j] - mean[j]) ** 2;
    } else {
      mean[j] = groupMean(inner, n, m, (i) => i * c + j);
      for (let i = 0; i < n; i++) {
        m2[j] += inner.var[i * c + j] + (inner.mean[i * c + j] - mean[j]) ** 2;
      }
    }
  }
  return { count: n, mean, m2 };
}

/**
 * All statistics of a forward on x. `batch` replaces this batch's BN partials by those of the
 * global batch (SyncSN); without it the local batch is the batch.
 */
function statistics(
  problem: NormProblem,
  x: ArrayLike<number>,
  params: Params64,
  batch?: BNPartials,
): Statistics {
  const { n, c, m } = problem;
  const inner = innerStatistics(problem, x);
  const means: Statistics["means"] = [], vars: Statistics["vars"] = [];
  if (problem.layout === "1d") {
    means.push((i) => inner.mean[i]);
    vars.push((i) => inner.var[i]);
  } else {
    const lnMean = new Float64Array(n), lnVar = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      [lnMean[i], lnVar[i]] = mergeGroup(
        c,
        groupMean(inner, c, m, (j) => i * c + j),
        (j) => inner.mean[i * c + j],
        (j) => inner.var[i * c + j],
      );
    }
    means.push((i, j) => inner.mean[i * c + j], (i) => lnMean[i]);
    vars.push((i, j) => inner.var[i * c + j], (i) => lnVar[i]);
  }
  let bn: Statistics["batch"];
  if (problem.usingBN) {
    if (problem.training) {
      const p = batch ?? bnPartials(problem, x, inner);
      // nd: var_bn = mean_n var_in + mean_n (mu_in - mu_bn)^2; 1d: unbiased variance over n.
      const denominator = problem.layout === "1d" ? p.count - 1 : p.count;
      bn = { mean: p.mean, var: p.m2.map((v) => v / denominator), count: p.count };
    }
    const bnMean = bn?.mean ?? params.runningMean, bnVar = bn?.var ?? params.runningVar;
    means.push((_, j) => bnMean[j]);
    vars.push((_, j) => bnVar[j]);
  }
  const mu = new Float64Array(n * c), sigma2 = new Float64Array(n * c);
  const muErr = new Float64Array(n * c);
  const anchor = heaviest(params.meanMix);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) {
      for (let k = 0; k < means.length; k++) {
        mu[i * c + j] += params.meanMix[k] * means[k](i, j);
        sigma2[i * c + j] += params.varMix[k] * vars[k](i, j);
      }
      [mu[i * c + j], muErr[i * c + j]] = anchoredMean(
        params.meanMix,
        means,
        anchor,
        i,
        j,
        mu[i * c + j],
      );
    }
  }
  return { means, vars, mu, muErr, sigma2, batch: bn, inner };
}

/** The index of the largest weight (the first of equal ones). */
function heaviest(weights: ArrayLike<number>): number {
  let a = 0;
  for (let k = 1; k < weights.length; k++) if (weights[k] > weights[a]) a = k;
  return a;
}

/**
 * The mixed mean sum_k w_k mu_k as mu_a + sum_{k != a} w_k (mu_k - mu_a), a the heaviest weight:
 * equal where the weights sum to 1, as softmax's do exactly, but their float64 sum is 1 +- ~1e-16,
 * which sum_k w_k mu_k multiplies by the means' size: a constant row at 1e10 that equals every mean
 * of its mix (y = beta exactly) gave y off by gamma 1e10 1e-16 / std, 30x Y under the default eps
 * on WASM, which forms it so, and 188x at 1e7 under eps 0 (attack helper-86; the reference was right
 * there only by working about a centre). Where that form is not finite (a mean is), `plain` (the
 * sum), whose infinities and NaN are PyTorch's. Returns [mu, err]: err = mu_a + rest - mu
 * exactly (Knuth's TwoSum; 0 with `plain`), so that a rest below half an ulp of mu_a, which mu
 * drops, still counts in x - mu: rows of 1 on a running_mean of 1 + 2^-23 under a BN mean weight
 * of 4.6e-10 and a std of 1e-19 have y -548.25, which the rounded mean made 0 (WASM and WebGPU
 * kept it; attack helper-90).
 */
function anchoredMean(
  weights: ArrayLike<number>,
  means: readonly ((i: number, j: number) => number)[],
  a: number,
  i: number,
  j: number,
  plain: number,
): [number, number] {
  const base = means[a](i, j);
  let rest = 0;
  for (let k = 0; k < means.length; k++) if (k !== a) rest += weights[k] * (means[k](i, j) - base);
  const anchored = base + rest;
  if (!Number.isFinite(anchored)) return [plain, 0];
  const restPart = anchored - base;
  return [anchored, (base - (anchored - restPart)) + (rest - restPart)];
}

/** The global batch's BN partials under SyncSN, or undefined where the local batch is the batch. */
async function syncedBatch(
  problem: NormProblem,
  x: ArrayLike<number>,
): Promise<BNPartials | undefined> {
  if (!problem.sync || !problem.training || !problem.usingBN) return undefined;
  const local = bnPartials(problem, x, innerStatistics(problem, x));
  return await problem.sync.mergeStats(local.count, local.mean, local.m2);
}

/** y = SN(x) in float64, and the batch BN statistics (training). */
export function forward64(
  problem: NormProblem,
  x: ArrayLike<number>,
  params: Params64,
  batch?: BNPartials,
): { y: Float64Array; batch: Statistics["batch"] } {
  const { n, c, m } = problem;
  const st = statistics(problem, x, params, batch);
  const y = new Float64Array(x.length);
  for (let r = 0; r < n * c; r++) {
    const j = r % c;
    const scale = params.weight[j] / Math.sqrt(st.sigma2[r] + problem.eps);
    const mu = st.mu[r], err = st.muErr[r];
    for (let i = r * m; i < (r + 1) * m; i++) y[i] = ((x[i] - mu) - err) * scale + params.bias[j];
  }
  return { y, batch: st.batch };
}

/** Gradient sums of one backward that SyncSN adds up across replicas, packed in one vector. */
function packSums(parts: Float64Array[]): Float64Array {
  const out = new Float64Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
}

/**
 * The chain rule of SN_SPEC in float64: dx, dgamma, dbeta, and a_k = dL/dmeanMix_k,
 * b_k = dL/dvarMix_k. In training mode the BN statistics are functions of x; in evaluation mode
 * they are constants (the running buffers). `reduce` (SyncSN) turns this replica's sums over n
 * into the global batch's before dx is formed, so that every replica gets the gradients of the
 * whole batch; `batch` is the global batch's BN partials from the forward.
 */
export function backward64(
  problem: NormProblem,
  x: ArrayLike<number>,
  dy: ArrayLike<number>,
  params: Params64,
  batch?: BNPartials,
): ReturnType<typeof finishBackward> {
  const partial = startBackward(problem, x, dy, params, batch);
  return finishBackward(partial, partial.sums);
}

function startBackward(
  problem: NormProblem,
  x: ArrayLike<number>,
  dy: ArrayLike<number>,
  params: Params64,
  batch?: BNPartials,
) {
  const { n, c, m, eps } = problem;
  const st = statistics(problem, x, params, batch);
  const dWeight = new Float64Array(c), dBias = new Float64Array(c);
  const gm = new Float64Array(n * c), gv = new Float64Array(n * c); // dL/dmu, dL/dvar per (n,c)
  for (let r = 0; r < n * c; r++) {
    const j = r % c, s = 1 / Math.sqrt(st.sigma2[r] + eps);
    let sumDxh = 0, sumDxhXhat = 0;
    for (let i = r * m; i < (r + 1) * m; i++) {
      const xhat = ((x[i] - st.mu[r]) - st.muErr[r]) * s, dxh = dy[i] * params.weight[j];
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
  const sums = packSums([dWeight, dBias, meanDots, varDots, gmB, gvB]);
  return { problem, x, dy, params, st, gm, gv, gmL, gvL, sums };
}

function finishBackward(p: ReturnType<typeof startBackward>, sums: Float64Array) {
  const { problem, x, dy, params, st, gmL, gvL } = p;
  const { n, c, m, eps } = problem;
  const k = st.means.length;
  let at = 0;
  const take = (len: number) => sums.subarray(at, at += len);
  const dWeight = take(c), dBias = take(c), meanDots = take(k), varDots = take(k);
  const gmB = take(c), gvB = take(c);
  const bn = problem.usingBN && problem.training ? st.batch! : undefined; // BN depends on x
  const nBatch = bn?.count ?? n;
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
        if (bn) {
          dx[r] += w1 * gmB[j] / nBatch +
            v1 * gvB[j] * 2 * (x[r] - bn.mean[j]) / (nBatch - 1);
        }
      }
    }
  } else {
    const inMean = st.inner.mean, [w0, w1, w2] = params.meanMix, [v0, v1, v2] = params.varMix;
    for (let i = 0; i < n; i++) {
      const lnMean = st.means[1](i, 0);
      for (let j = 0; j < c; j++) {
        const r = i * c + j;
        let gVarIn = v0 * p.gv[r] + v1 * gvL[i] / c;
        let gMuIn = w0 * p.gm[r] + w1 * gmL[i] / c +
          v1 * (2 / c) * (inMean[r] - lnMean) * gvL[i];
        if (bn) {
          gVarIn += v2 * gvB[j] / nBatch;
          gMuIn += w2 * gmB[j] / nBatch + v2 * (2 / nBatch) * (inMean[r] - bn.mean[j]) * gvB[j];
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

/**
 * Where every finite x lies within 2^-10 of its |mean| from it (an offset over 1024 times the
 * spread, such as 1e6 +- 1), the float32 value K nearest that mean; else 0. SN is
 * shift-invariant, and x - K is exact there (Sterbenz), so the backend works on x - K: its
 * statistics are then float64-accurate to the spread, not to the offset (at 1e6 a float64 mean
 * rounds at 1.2e-10, which a logit gradient's dot products over rows of 1.5e6 floats under dy of
 * one sign carried as 4.3e-4 on `mean_weight`'s 0.0827, 4x its tolerance; attack helper-82), and
 * its mean dot products are taken about K (`BackwardResult.meanDotsOffset`). Not under SyncSN,
 * whose replicas' BN statistics travel unshifted.
 */
function centreOf(problem: NormProblem, x: Float32Array): number {
  if (problem.sync) return 0;
  let sum = 0, count = 0;
  for (let i = 0; i < x.length; i++) {
    if (Number.isFinite(x[i])) sum += x[i], count++;
  }
  const k = Math.fround(sum / count);
  if (!(count > 0 && Number.isFinite(k) && k !== 0)) return 0;
  const reach = Math.abs(k) * 2 ** -10;
  for (let i = 0; i < x.length; i++) {
    if (Number.isFinite(x[i]) && !(Math.abs(x[i] - k) <= reach)) return 0;
  }
  return k;
}

/** x - K and the parameters with running_mean - K, for `centreOf`'s K (as they are for 0). */
function shifted(x: Float32Array, params: LayerParams, k: number): [ArrayLike<number>, Params64] {
  if (k === 0) return [x, params];
  return [
    Float64Array.from(x, (v) => v - k),
    { ...paramsOf(params), runningMean: Float64Array.from(params.runningMean, (v) => v - k) },
  ];
}

/** The float64 functions' view of the layer's parameters. */
function paramsOf(p: LayerParams): Params64 {
  const { weight, bias, meanMix, varMix, runningMean, runningVar } = p;
  return { weight, bias, meanMix, varMix, runningMean, runningVar };
}

/** Computes SN on the CPU in float64. Stateless; one instance serves every layer. */
export class ReferenceBackend implements Backend {
  readonly name = "reference" as const;
  readonly supportsSync = true;

  async forward(
    problem: NormProblem,
    xIn: Float32Array | ResidentTensor,
    params: LayerParams,
    update: RunningUpdate,
    out?: Float32Array | ResidentTensor,
    save?: SavedForward,
  ): Promise<Float32Array> {
    const x = float32("x", xIn);
    const y = float32("out", out) ?? new Float32Array(x.length);
    const batch = await syncedBatch(problem, x);
    const k = centreOf(problem, x), [xs, ps] = shifted(x, params, k);
    const r = forward64(problem, xs, ps, batch);
    y.set(r.y);
    if (save) {
      save.problem = problem;
      save.x = x;
      save.state = batch;
    }
    if (r.batch) {
      const mean = k === 0 ? r.batch.mean : r.batch.mean.map((v) => v + k);
      applyRunningUpdate(params.runningMean, params.runningVar, mean, r.batch.var, update);
    }
    return y;
  }

  /**
   * {@linkcode backward64} on the saved x. Statistics are recomputed with the parameters as they
   * are now, which the layer keeps equal to the forward's (in training mode the BN statistics are
   * the batch's, so the running update in between does not matter).
   */
  async backward(
    saved: SavedForward,
    dy: Float32Array | ResidentTensor,
    params: LayerParams,
    out?: Float32Array | ResidentTensor,
  ): Promise<BackwardResult> {
    const problem = saved.problem!, x = float32("x", saved.x);
    const dx = out === undefined ? undefined : float32("out", out);
    // The forward's K (the same x): the mean dots come back about it.
    const k = centreOf(problem, x), [xs, ps] = shifted(x, params, k);
    const partial = startBackward(
      problem,
      xs,
      float32("dy", dy),
      ps,
      saved.state as BNPartials | undefined,
    );
    const sums = problem.sync ? await problem.sync.sum(partial.sums) : partial.sums;
    const r = finishBackward(partial, sums);
    const meanDotsOffset = k === 0 ? 0 : k * partial.gm.reduce((a, v) => a + v, 0);
    // dx is written only now, after every read of dy: out may overlap dy.
    return { ...r, meanDotsOffset, dx: dx ? (dx.set(r.dx), dx) : Float32Array.from(r.dx) };
  }

  upload(): ResidentTensor {
    throw new TypeError(
      "reference backend: tensors cannot be resident here; pass Float32Array data",
    );
  }

  dispose(): void {}
}
