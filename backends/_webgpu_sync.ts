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
import {
  channelRecords,
  type GradientSums,
  gradientSums,
  logitCount,
  packSums,
  unpackSums,
} from "./_webgpu_grad_sums.ts";

/** Flag bits of a statistic (shaders/common.wgsl). */
const F_NAN = 1, F_POS_INF = 2, F_NEG_INF = 4, F_NO_VAR = 8, F_MEAN_CLASS = 7;

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
  await readBack(ctx, staging, bytes, (data) => {
    const v = new DataView(data);
    for (let j = 0; j < c; j++) {
      const hi = v.getFloat32(16 * j, true), lo = v.getFloat32(16 * j + 4, true);
      const variance = v.getFloat32(16 * j + 8, true), flags = v.getUint32(16 * j + 12, true);
      mean[j] = meanOf(flags, hi + lo);
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
    const mu = merged.mean[j], hi = Math.fround(mu), v = variance[j];
    let flags = Number.isNaN(mu)
      ? F_NAN
      : mu === Infinity
      ? F_POS_INF
      : mu === -Infinity
      ? F_NEG_INF
      : 0;
    if (!Number.isFinite(v)) flags |= F_NO_VAR;
    const finite = flags === 0;
    out.setFloat32(16 * j, finite ? hi : 0, true);
    out.setFloat32(16 * j + 4, finite ? Math.fround(mu - hi) : 0, true);
    out.setFloat32(16 * j + 8, finite ? v : 0, true);
    out.setUint32(16 * j + 12, flags, true);
  }
  queue.writeBuffer(groups, n * GROUP_BYTES, out.buffer);
  return { merged, running: newRunning };
}

/**
 * SyncSN inside the backward: submits the reduction phase (`recordReduction`), reads this
 * replica's gradient sums back from `groups`, sums them across replicas, and writes the global
 * per-channel records back where the dx phase reads them. Returns the global sums.
 */
export async function syncGradientSums(
  ctx: GpuContext,
  problem: NormProblem,
  groups: GPUBuffer,
  groupsBytes: number,
  recordReduction: (pass: GPUComputePassEncoder) => void,
): Promise<GradientSums> {
  const k = logitCount(problem);
  const first = ctx.acquire("staging", groupsBytes);
  await submit(ctx, "backward", (enc) => {
    const pass = enc.beginComputePass();
    recordReduction(pass);
    pass.end();
    enc.copyBufferToBuffer(groups, 0, first, 0, groupsBytes);
  }).catch((e) => {
    ctx.release("staging", first);
    throw e;
  });
  const local = await readBack(ctx, first, groupsBytes, (d) => gradientSums(d, problem, k));
  const sums = unpackSums(await problem.sync!.sum(packSums(local)), problem.c, k);
  ctx.device.queue.writeBuffer(groups, problem.n * GRAD_BYTES, channelRecords(sums.gmB, sums.gvB));
  return sums;
}
