/**
 * The closest statistics whose differences the logit gradients take, for the fuzzers' tags
 * (README's known exception "coinciding statistics"): tests/fuzz/plausible_shapes_fuzz.ts's
 * `[close-stats ...]`, and tests/fuzz/attack_fuzz.ts's.
 *
 * @module
 */
import type { LayerCall } from "../_range_compare.ts";
import { meanVar } from "../_term_scales.ts";

/** One float32 ulp at |v|. */
function ulp32(v: number): number {
  return 2 ** (Math.max(Math.floor(Math.log2(Math.abs(v) || 2 ** -126)), -126) - 23);
}

/**
 * The closest distinct pair of statistics (in float32 ulps, float64 statistics of `x`) among those
 * whose differences the logit gradients and dx's LN/BN paths take: IN with LN and with BN (or the
 * running buffers in evaluation), LN with BN. Pairs equal by construction (C = 1: LN is IN; N = 1
 * in training: BN is IN) are left out. "[close-stats mean=a var=b]" where the means lie closer
 * than `within.mean` float32 roundings of their std or the variances closer than `within.var`
 * float32 ulps (64 each unless given).
 */
export function closeStats(
  call: LayerCall,
  x: Float32Array,
  training: boolean,
  rm?: ArrayLike<number>,
  rv?: ArrayLike<number>,
  within: { readonly mean: number; readonly var: number } = { mean: 64, var: 64 },
): string {
  const [n, c] = call.shape;
  const m = x.length / (n * c);
  const nd = call.layer !== "1d";
  const usingBN = call.options?.usingBN !== false;
  const inS = nd ? Array.from({ length: n * c }, (_, r) => meanVar(m, (i) => x[r * m + i])) : [];
  const lnS = Array.from(
    { length: n },
    (_, s) =>
      nd
        ? merge(Array.from({ length: c }, (_, j) => inS[s * c + j]), m)
        : meanVar(c, (j) => x[s * c + j]),
  );
  const bnS = Array.from(
    { length: c },
    (_, j) =>
      !training && usingBN && rm
        ? [rm[j], rv![j]] as [number, number]
        : nd
        ? merge(Array.from({ length: n }, (_, s) => inS[s * c + j]), m)
        : meanVar(n, (s) => x[s * c + j]),
  );
  let bm = Infinity, bv = Infinity;
  const pair = (a: [number, number], b: [number, number]) => {
    // Means: in float32 roundings of the larger std (the WASM statistics pass's accuracy).
    const sd = Math.sqrt(Math.max(a[1], b[1], 0));
    const dm = Math.abs(a[0] - b[0]) /
      Math.max(2 ** -24 * sd, ulp32(Math.max(Math.abs(a[0]), Math.abs(b[0]))) / 2);
    const dv = Math.abs(a[1] - b[1]) / ulp32(Math.max(Math.abs(a[1]), Math.abs(b[1])));
    if (dm > 0) bm = Math.min(bm, dm);
    if (dv > 0) bv = Math.min(bv, dv);
  };
  const bnLive = usingBN && (training ? n > 1 : true);
  for (let s = 0; s < n; s++) {
    for (let j = 0; j < c; j++) {
      if (nd && c > 1) pair(inS[s * c + j], lnS[s]);
      if (nd && bnLive) pair(inS[s * c + j], bnS[j]);
      if (usingBN && (nd ? (c > 1 || bnLive) : true)) pair(lnS[s], bnS[j]);
    }
  }
  return bm < within.mean || bv < within.var
    ? ` [close-stats mean=${bm.toPrecision(2)} var=${bv.toPrecision(2)}]`
    : "";
}

/** SN_SPEC's LN or BN statistics from the members' IN ones: mean var + mean (mu - mu_k)^2. */
function merge(parts: [number, number][], _m: number): [number, number] {
  const k = parts.length;
  const mu = parts.reduce((a, p) => a + p[0], 0) / k;
  let q = 0;
  for (const [pm, pv] of parts) q += pv + (pm - mu) ** 2;
  return [mu, q / k];
}
