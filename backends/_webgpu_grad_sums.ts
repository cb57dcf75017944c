/**
 * The WebGPU backward's gradient sums as the CPU reads them: the group records sn_bwd_groups
 * writes (N per sample, then C per channel), turned into float64 sums, and back.
 *
 * Depends on the plan's record size (_webgpu_plan.ts) and the shared Backend types only.
 *
 * @module
 */
import type { NormProblem } from "./_backend.ts";
import { GRAD_BYTES, zeroStdPasses } from "./_webgpu_plan.ts";

/** The gradient sums of one backward, in float64 (BackwardResult's, plus GmB and GvB). */
export interface GradientSums {
  dWeight: Float64Array;
  dBias: Float64Array;
  meanDots: Float64Array;
  /** sum Gm mu, the mean dots' common part (BackwardResult.meanDotsOffset). */
  meanDotsOffset: number;
  varDots: Float64Array;
  gmB: Float64Array;
  gvB: Float64Array;
}

/** Number of importance logits: 3 (IN, LN, BN) in layout "nd" with BN, else 2. */
export function logitCount(problem: NormProblem): number {
  return problem.layout === "nd" && problem.usingBN ? 3 : 2;
}

/** Grad's flag bits (shaders/backward_common.wgsl): the float64 reference has NaN there; its
 * variance dot products are NaN (0 * Inf, a mix weighting an infinite running_var). */
const G_BAD = 1, G_VNAN = 0x80000000;

/**
 * Exponent `k` of a Grad's flags (0: gm, 1: gv, 2: every other field): the record holds
 * mantissas in units of 2^e for wide rows (shaders/backward_common.wgsl), 0 otherwise.
 */
function exponentOf(word: number, k: number): number {
  return (((word >>> (1 + 10 * k)) & 0x3ff) << 22) >> 22;
}

/**
 * Whether the record at word `at` carries exponents or units (shaders/backward_common.wgsl
 * grad_is_scaled): its last word is then the mean dots' lane offsets, not dgamma's low word.
 */
function hasExponents(u: Uint32Array, at: number): boolean {
  return (u[at + 12] & 0x7ffffffe) !== 0 || u[at + 13] !== 0 || u[at + 14] !== 0;
}

/**
 * The units of a record's dots a.x, a.y, a.z below `unit` (2^e2: `lane` 0) or b.x, b.y, b.z below
 * `unit` (2^(e2 + eb): `lane` 1): 2^-(8 o) each with o the 5-bit offsets of its last word
 * (Grad.low, shaders/backward_common.wgsl grad_finish) where it carries exponents, else `unit`.
 */
function laneUnits(u: Uint32Array, at: number, unit: number, lane: 0 | 1): number[] {
  const w = hasExponents(u, at) ? u[at + 15] >>> (15 * lane) : 0;
  return [0, 5, 10].map((b) => unit * 2 ** (-8 * ((w >>> b) & 0x1f)));
}

/** v as a float32 mantissa and an exponent that keeps the mantissa O(1) where v is beyond 2^40. */
function split(v: number): [number, number] {
  const size = Math.abs(v);
  if (size === 0 || (size >= 2 ** -40 && size <= 2 ** 40)) return [v, 0];
  const e = Math.max(-500, Math.min(500, Math.ceil(Math.log2(size))));
  return [v / 2 ** e, e];
}

/**
 * Reads the group records of sn_bwd_groups (N per sample, then C per channel; a Grad is 16
 * words: s = (gm, gv, dgamma, dbeta), a, b, flags, units, dbeta's unit, dgamma's low word:
 * b is in units of 2^(e2 + eb) and dgamma in units of 2^(e2 + ec), units of their own, with eb
 * and ec the signed low and high halves of the units word, dbeta in units of 2^(word 14), the
 * unit of dy; dgamma + its low word is a float32 pair where the record has no exponents; where
 * it has, that word holds the offsets of the dots a.x, a.y, a.z below the unit 2^e2 that a.w
 * takes and of b.x, b.y, b.z below b.w's (laneUnits). Flagged sums are NaN, as in the reference, except a flagged
 * channel's dgamma where a call with eps 0 (zeroStdPasses) left an infinity in its field: the
 * reference's sum over rows of std 0 (shaders/sn_bwd_zero_std_fix.wgsl).
 * The dot products come back centred (a'_k = sum gm (mu_k - mu)) beside sum gm * mu: a_k is their
 * sum, returned as the two (`meanDotsOffset`), so that a_k - a_j keeps a'_k's precision.
 * Layout "1d": a.z and b.z are the low words of a.x and b.x (pairs, the row lines' pair elements).
 * Layout "nd": the pair rows' centred dots are not in the records but in the `dots` partial sums
 * that follow them (sn_bwd_rows.wgsl DotSum: a' and b' for k = IN, LN, BN as float32 pairs,
 * lanes x, y, z of hi then lo), added here in float64.
 */
export function gradientSums(
  data: ArrayBuffer,
  problem: NormProblem,
  k: number,
  dots = 0,
): GradientSums {
  const { n, c } = problem;
  const f = new Float32Array(data, 0, (n + c) * 16), u = new Uint32Array(data, 0, (n + c) * 16);
  const meanDots = new Float64Array(k), varDots = new Float64Array(k);
  let bad = false, vnan = false, sa = 0, sb = 0;
  // Layout "1d" has no IN term: its records' a.z and b.z are the low words of the LN dots a.x
  // and b.x (shaders/sn1d_bwd_element.wgsl: pair elements, centred at BN).
  const pairs1d = problem.layout === "1d";
  for (let i = 0; i < n; i++) {
    const at = 16 * i, e2 = exponentOf(u[at + 12], 2), unit = 2 ** e2;
    const unitB = 2 ** (e2 + ((u[at + 13] << 16) >> 16));
    if (u[at + 12] & G_BAD) bad = true;
    if (u[at + 12] & G_VNAN) vnan = true;
    const lanesA = laneUnits(u, at, unit, 0), lanesB = laneUnits(u, at, unitB, 1);
    for (let q = 0; q < k; q++) {
      meanDots[q] += f[at + 4 + q] * lanesA[q];
      varDots[q] += f[at + 8 + q] * lanesB[q];
    }
    if (pairs1d) {
      meanDots[0] += f[at + 6] * lanesA[2];
      varDots[0] += f[at + 10] * lanesB[2];
    }
    sa += f[at + 7] * unit;
    sb += f[at + 11] * unitB;
  }
  const d = new Float32Array(data, (n + c) * GRAD_BYTES, dots * 16);
  for (let i = 0; i < dots; i++) {
    for (let q = 0; q < k; q++) {
      meanDots[q] += d[16 * i + q] + d[16 * i + 4 + q];
      varDots[q] += d[16 * i + 8 + q] + d[16 * i + 12 + q];
    }
  }
  // The centred mean dots stay apart from sa (BackwardResult.meanDotsOffset): a_k - a_j is
  // their difference, where a_k itself rounds at the ulp of sa (~1e-3 at a data offset of 1e6
  // over 4.5M floats).
  for (let q = 0; q < k; q++) {
    if (bad) meanDots[q] = NaN;
    varDots[q] = bad || vnan ? NaN : varDots[q] + sb;
  }
  const dWeight = new Float64Array(c), dBias = new Float64Array(c);
  const gmB = new Float64Array(c), gvB = new Float64Array(c);
  const zeroStd = zeroStdPasses(problem);
  for (let j = 0; j < c; j++) {
    const at = 16 * (n + j), word = u[at + 12], flagged = (word & G_BAD) !== 0;
    const unit = 2 ** (exponentOf(word, 2) + ((u[at + 13] | 0) >> 16));
    gmB[j] = flagged ? NaN : f[at] * 2 ** exponentOf(word, 0);
    gvB[j] = flagged ? NaN : f[at + 1] * 2 ** exponentOf(word, 1);
    const dg = f[at + 2] + (hasExponents(u, at) ? 0 : f[at + 15]);
    dWeight[j] = !flagged ? dg * unit : zeroStd && Math.abs(dg) === Infinity ? dg : NaN;
    dBias[j] = f[at + 3] * 2 ** (u[at + 14] | 0); // in the unit of dy (Grad's spare word)
  }
  return { dWeight, dBias, meanDots, meanDotsOffset: sa, varDots, gmB, gvB };
}

/**
 * The sums SyncSN adds across replicas, packed as the reference packs them: the mean dots whole
 * (their offset added in, as the reference's under SyncSN).
 */
export function packSums(s: GradientSums): Float64Array {
  const meanDots = s.meanDots.map((v) => v + s.meanDotsOffset);
  const parts = [s.dWeight, s.dBias, meanDots, s.varDots, s.gmB, s.gvB];
  const out = new Float64Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
}

/** The inverse of {@linkcode packSums}. */
export function unpackSums(packed: Float64Array, c: number, k: number): GradientSums {
  let at = 0;
  const take = (len: number) => packed.slice(at, at += len);
  return {
    dWeight: take(c),
    dBias: take(c),
    meanDots: take(k),
    meanDotsOffset: 0,
    varDots: take(k),
    gmB: take(c),
    gvB: take(c),
  };
}

/** Channel records (Grad) carrying the global GmB/GvB, flagged where they are not finite. */
export function channelRecords(gmB: Float64Array, gvB: Float64Array): ArrayBuffer {
  const out = new ArrayBuffer(gmB.length * GRAD_BYTES);
  const f = new Float32Array(out), u = new Uint32Array(out);
  for (let j = 0; j < gmB.length; j++) {
    const ok = Number.isFinite(gmB[j]) && Number.isFinite(gvB[j]);
    const [gm, e0] = split(ok ? gmB[j] : 0), [gv, e1] = split(ok ? gvB[j] : 0);
    f[16 * j] = gm;
    f[16 * j + 1] = gv;
    u[16 * j + 12] = (ok ? 0 : G_BAD) | ((e0 & 0x3ff) << 1) | ((e1 & 0x3ff) << 11);
  }
  return out;
}
