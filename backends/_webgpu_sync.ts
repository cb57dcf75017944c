/**
 * SyncSN on WebGPU: the two CPU round trips that merge statistics across replicas. Forward: this
 * replica's BN statistics are read back after the statistics passes, merged in float64
 * (`problem.sync.mergeStats`), and the global ones written where the normalize passes read them.
 * Backward: the gradient sums are read back after sn_bwd_groups, summed across replicas
 * (`problem.sync.sum`), and the global per-channel ones written back before the dx passes.
 *
 * Depends on the shared Backend types and running update (_backend.ts), the submit/readback
 * steps (_webgpu_buffers.ts), the plan's record sizes and the gradient-sum records.
 *
 * @module
 */
import {
  applyRunningUpdate,
  type LayerParams,
  type NormProblem,
  type RunningUpdate,
} from "./_backend.ts";
import type { GpuContext } from "./_webgpu_device.ts";
import { readBack, submit, write } from "./_webgpu_buffers.ts";
import { GRAD_BYTES, GROUP_BYTES } from "./_webgpu_plan.ts";
import { DOT_SUM_BYTES } from "./_webgpu_backward_plan.ts";
import {
  channelRecords,
  type GradientSums,
  gradientSums,
  logitCount,
  packSums,
  unpackSums,
} from "./_webgpu_grad_sums.ts";

/** Flag bits of a statistic (shaders/common.wgsl). */
const F_NAN = 1, F_POS_INF = 2, F_NEG_INF = 4, F_NO_VAR = 8, F_MEAN_CLASS = 7, F_CLASS = 0xff;
/** A Group in units of 2^u (wide data): F_SCALED, with u + 127 in bits 8..15. */
const F_SCALED = 0x10000;
/** shaders/common.wgsl FINE_MEAN_BELOW, FINE_MEAN_UNIT: a Group's fine word. */
const FINE_MEAN_BELOW = 100, FINE_MEAN_UNIT = -64;

/** The unit exponent of a Group's flags (0 when not scaled). */
function unitOf(flags: number): number {
  return flags & F_SCALED ? ((flags >>> 8) & 0xff) - 127 : 0;
}

/**
 * The unit a global BN statistic is written back in: 0 when its mean and standard deviation lie
 * where the unscaled passes handle them, else 2^u with u the exponent of the larger, so that the
 * float32 words stay O(1) (as sn_group_stats writes a scaled group).
 */
function unitFor(mu: number, variance: number): number {
  const size = Math.max(Math.abs(mu), Math.sqrt(variance));
  if (size === 0 || (size > 2 ** -21 && size <= 2 ** 40)) return 0;
  return Math.min(128, Math.max(-126, Math.ceil(Math.log2(size))));
}

/** The float64 mean a statistic with these flags has in the reference. */
function meanOf(flags: number, finite: number): number {
  if ((flags & F_NAN) || (flags & F_MEAN_CLASS) === (F_POS_INF | F_NEG_INF)) return NaN;
  if (flags & F_POS_INF) return Infinity;
  if (flags & F_NEG_INF) return -Infinity;
  return finite;
}

/** SyncSN's per-channel BN partials (count, mean, M2), as the reference backend keeps them. */
export interface BatchPartials {
  count: number;
  mean: Float64Array;
  m2: Float64Array;
}

/**
 * SyncSN between the forward's two phases: submits the statistics phase (`recordStatistics`),
 * reads this replica's BN statistics back from `groups`, merges them across replicas in
 * float64, writes the updated running buffers to the device copy (`running`), and writes the
 * global statistics where the normalize phase reads them. Returns the merge and the new running
 * buffers, which the caller puts into `params` only once the forward has succeeded.
 */
export async function syncBatch(
  ctx: GpuContext,
  problem: NormProblem,
  groups: GPUBuffer,
  running: GPUBuffer,
  params: LayerParams,
  update: RunningUpdate,
  recordStatistics: (pass: GPUComputePassEncoder) => void,
): Promise<{ merged: BatchPartials; running: [Float32Array, Float32Array] }> {
  const { n, c } = problem, queue = ctx.device.queue;
  const bytes = c * GROUP_BYTES;
  const staging = ctx.acquire("staging", bytes);
  await submit(ctx, "forward", (enc) => {
    const pass = enc.beginComputePass();
    recordStatistics(pass);
    pass.end();
    enc.copyBufferToBuffer(groups, n * GROUP_BYTES, staging, 0, bytes);
  });
  const mean = new Float64Array(c), m2 = new Float64Array(c);
  // The channels whose group here holds a third word: only they get one back (below), so that
  // other rows keep sn_mix's plain mix.
  const triple = new Uint8Array(c);
  await readBack(ctx, staging, bytes, (data) => {
    const v = new DataView(data);
    for (let j = 0; j < c; j++) {
      const at = GROUP_BYTES * j;
      const hi = v.getFloat32(at, true), lo = v.getFloat32(at + 4, true);
      const word = v.getUint32(at + 12, true), flags = word & F_CLASS;
      const unit = 2 ** unitOf(word);
      // With its low word: sn_group_stats writes a training BN group's batch variance as a pair
      // here (run_pairs; layout "1d" var_lo), so that the merged variance, and running_var
      // rounded once from it, are the reference's (the float32 word alone left running_var an
      // ulp off, tests/running_var_rounding_test.ts).
      const variance = (v.getFloat32(at + 8, true) + v.getFloat32(at + 16, true)) * unit * unit;
      // With the mean's third word (shaders/common.wgsl Group.mean_rest: a group sn_group_refine
      // summed again in triples), as float64 holds it.
      const rest = v.getFloat32(at + 24, true);
      triple[j] = rest !== 0 ? 1 : 0;
      // A layout "1d" group whose mean lies below 2^-FINE_MEAN_BELOW of its unit holds it again
      // in its fine word and rest (shaders/common.wgsl Group.fine, sn_group_stats'
      // group_fine_1d), normal float32 values where its words may be subnormal: on a GPU that
      // flushes subnormals (NVIDIA) those words are 0 (tests/sync_subnormal_mean_test.ts).
      const fine = v.getFloat32(at + 20, true), fineRest = v.getFloat32(at + 28, true);
      mean[j] = meanOf(
        flags,
        fine !== 0 ? (fine + fineRest) * 2 ** FINE_MEAN_UNIT : (hi + lo + rest) * unit,
      );
      // nd: var_bn = M2 / N; 1d: var_bn = M2 / (N - 1), where N = 1 leaves M2 = 0 (not NaN).
      const undefinedVar = (flags & F_MEAN_CLASS) !== 0 ||
        (problem.layout === "nd" && (flags & F_NO_VAR) !== 0);
      m2[j] = undefinedVar ? NaN : variance * (problem.layout === "nd" ? n : Math.max(n - 1, 0));
    }
  });
  const merged = await problem.sync!.mergeStats(n, mean, m2);
  const denominator = problem.layout === "1d" ? merged.count - 1 : merged.count;
  const variance = merged.m2.map((v) => v / denominator);
  const newRunning: [Float32Array, Float32Array] = [
    params.runningMean.slice(),
    params.runningVar.slice(),
  ];
  applyRunningUpdate(newRunning[0], newRunning[1], merged.mean, variance, update);
  // The device copy moves now (the normalize phase follows in order on the queue); a failure
  // after this point makes the forward invalidate it (see forward).
  write(queue, running, 0, newRunning[0]);
  write(queue, running, 4 * c, newRunning[1]);
  const out = new DataView(new ArrayBuffer(bytes));
  for (let j = 0; j < c; j++) {
    const mu = merged.mean[j], v = variance[j];
    let flags = Number.isNaN(mu)
      ? F_NAN
      : mu === Infinity
      ? F_POS_INF
      : mu === -Infinity
      ? F_NEG_INF
      : 0;
    if (!Number.isFinite(v)) flags |= F_NO_VAR;
    const finite = flags === 0;
    const u = finite ? unitFor(mu, v) : 0, unit = 2 ** u;
    const hiU = Math.fround(mu / unit), varU = Math.fround(v / unit / unit), at = GROUP_BYTES * j;
    out.setFloat32(at, finite ? hiU : 0, true);
    const loU = Math.fround(mu / unit - hiU);
    out.setFloat32(at + 4, finite ? loU : 0, true);
    // The mean's third word (Group.mean_rest) where this replica's group held one: the mixes of
    // a row on a BN mean that cancels its LN mean take it (sn_mix's mix_lo_triple); with the pair
    // alone, rows of std 5e-8 beside rows of std 1e5 cancelling in their mix had y 1.2x its
    // tolerance under one replica.
    out.setFloat32(at + 24, finite && triple[j] ? Math.fround(mu / unit - hiU - loU) : 0, true);
    // The fine word and its rest (Group.fine, fine_rest: the mean in the unit 2^FINE_MEAN_UNIT)
    // where sn_group_stats forms them, layout "1d" (group_fine_1d; "nd" BN groups have none)
    // with the mean's words below 2^-FINE_MEAN_BELOW of the unit: written as 0, a GPU that
    // flushes subnormals took a merged BN mean of 2.5e-39 as 0 in the backward's mean dots
    // (`mean_weight`'s gradient 348x its tolerance, tests/sync_subnormal_mean_test.ts).
    const low = finite && problem.layout === "1d" && mu !== 0 &&
      Math.max(Math.abs(hiU), Math.abs(loU)) < 2 ** -FINE_MEAN_BELOW;
    const fine = low ? Math.fround(mu * 2 ** -FINE_MEAN_UNIT) : 0;
    out.setFloat32(at + 20, fine, true);
    out.setFloat32(at + 28, fine !== 0 ? Math.fround(mu * 2 ** -FINE_MEAN_UNIT - fine) : 0, true);
    out.setFloat32(at + 8, finite ? varU : 0, true);
    out.setUint32(at + 12, flags | (u === 0 ? 0 : F_SCALED | ((u + 127) << 8)), true);
    // The variance's low word (shaders/common.wgsl Group), for the backward's differences.
    out.setFloat32(at + 16, finite ? Math.fround(v / unit / unit - varU) : 0, true);
  }
  queue.writeBuffer(groups, n * GROUP_BYTES, out.buffer);
  return { merged, running: newRunning };
}

/**
 * SyncSN inside the backward: submits the reduction phase (`recordReduction`), reads this
 * replica's gradient sums back (`copySums` copies the group records, then the dot products'
 * partial sums, `sumsBytes` in all, into the staging buffer), sums them across replicas, and
 * writes the global per-channel records back into `groups`, where the dx phase reads them.
 * Returns the global sums.
 */
export async function syncGradientSums(
  ctx: GpuContext,
  problem: NormProblem,
  groups: GPUBuffer,
  sumsBytes: number,
  recordReduction: (enc: GPUCommandEncoder) => void,
  copySums: (enc: GPUCommandEncoder, to: GPUBuffer) => void,
): Promise<GradientSums> {
  const k = logitCount(problem);
  const first = ctx.acquire("staging", sumsBytes);
  await submit(ctx, "backward", (enc) => {
    recordReduction(enc);
    copySums(enc, first);
  }).catch((e) => {
    ctx.release("staging", first);
    throw e;
  });
  const dots = (sumsBytes - (problem.n + problem.c) * GRAD_BYTES) / DOT_SUM_BYTES;
  const local = await readBack(ctx, first, sumsBytes, (d) => gradientSums(d, problem, k, dots));
  const sums = unpackSums(await problem.sync!.sum(packSums(local)), problem.c, k);
  ctx.device.queue.writeBuffer(groups, problem.n * GRAD_BYTES, channelRecords(sums.gmB, sums.gvB));
  return sums;
}
