/**
 * The WebGPU forward: plans one call, takes its scratch buffers, records its dispatches and runs
 * it. One forward is one command buffer, one compute pass and one submit. Layout "nd": sn_stats
 * (the one statistics pass over x, one dispatch per binding window of x), sn_row_merge (only
 * when rows were cut into segments), sn_group_stats (LN and BN statistics from the IN ones, and
 * the running-buffer update), sn_mix (each row's affine map) and sn_normalize (the second pass
 * over x, one dispatch per binding window of x and y). Layout "1d": sn1d_stats, sn_group_stats,
 * sn1d_normalize. A Float32Array call then reads y and the new running buffers back with one
 * mapAsync of one pooled staging buffer; a call on a GpuTensor reads nothing back and leaves the
 * running buffers on the device until `syncRunning`. SyncSN splits the submit in two around the
 * cross-replica merge of the BN statistics (_webgpu_sync.ts).
 *
 * Depends on the shared Backend types, the plan (_webgpu_plan.ts), the pipelines, the per-layer
 * buffers, GpuTensor and the SyncSN step.
 *
 * @module
 */
import type {
  LayerParams,
  NormProblem,
  ResidentTensor,
  RunningUpdate,
  SavedForward,
} from "./_backend.ts";
import {
  forgetRunning,
  type LayerState,
  readBack,
  runningVersion,
  SavedStats,
  submit,
  write,
} from "./_webgpu_buffers.ts";
import {
  EMPTY_LIST,
  type ForwardRecords,
  GROUP_BYTES,
  makePlan,
  PARTIAL_BYTES,
  type Plan,
  type Window,
} from "./_webgpu_plan.ts";
import {
  dispatch,
  type Engine,
  type ForwardKind,
  type PipelineKind,
  slotOf,
} from "./_webgpu_pipelines.ts";
import { f32, GpuTensor, liveBuffer } from "./_webgpu_tensor.ts";
import { type BatchPartials, syncBatch } from "./_webgpu_sync.ts";

/** The windows of a dispatch without any: every buffer bound whole. */
const WHOLE: ForwardRecords = {};

/** `buffer` as a binding: the window `w`, or the whole buffer. */
function at(buffer: GPUBuffer, w?: Window): GPUBufferBinding {
  return w ? { buffer, offset: w.offset, size: w.size } : { buffer };
}

/** The dispatches before the BN statistics are complete; the rest normalize. */
const STATISTICS: ReadonlySet<PipelineKind> = new Set([
  "stats",
  "stats1d",
  "rowMerge",
  "wideStats",
  "wideStats1d",
  "group",
  "groupRefine",
]);

/** One forward's plan, layer state and scratch buffers. */
export interface Prepared {
  readonly plan: Plan;
  readonly state: LayerState;
  readonly uniforms: GPUBuffer;
  readonly parts: GPUBuffer;
  readonly rows: GPUBuffer;
  readonly groups: GPUBuffer;
  readonly mixed?: GPUBuffer;
  /** The blocks' BN parts ("nd" in blocks of samples, training with BN). */
  readonly bnParts?: GPUBuffer;
  /** The wide rows for sn_wide_stats (sn_stats or sn_row_merge fill it). */
  readonly wideRows: GPUBuffer;
  /** The rows with scaled statistics for sn_wide_normalize (sn_mix fills it). */
  readonly wideList: GPUBuffer;
  /**
   * Gives the scratch buffers back to the pool (safe right after the last submit); with `keep`,
   * the per-row summaries and the group statistics stay out of it (a backward needs them).
   */
  readonly release: (keep?: boolean) => void;
}

/**
 * Plans one forward and takes its scratch buffers; the uniforms are written at once.
 * `refineMeans`: a backward may follow (PlanParams.refineMeans).
 */
export function prepareForward(
  engine: Engine,
  problem: NormProblem,
  params: LayerParams,
  update: RunningUpdate,
  refineMeans = true,
): Prepared {
  const ctx = engine.ctx, device = ctx.device;
  const mix = { meanMix: params.meanMix, varMix: params.varMix, update, refineMeans };
  const plan = makePlan(problem, mix, {
    maxBinding: ctx.maxBinding,
    offsetAlign: device.limits.minStorageBufferOffsetAlignment,
    elementsPerThread: ctx.elementsPerThread,
    groupThreads: ctx.groupWorkgroupSize,
    loopLimit: ctx.adapter.isFallbackAdapter,
  });
  const state = engine.layers.state(params, problem.c);
  const uniforms = ctx.acquire("uniform", plan.uniforms.byteLength);
  device.queue.writeBuffer(uniforms, 0, plan.uniforms);
  const parts = ctx.acquire("storage", plan.partials * PARTIAL_BYTES);
  const rows = plan.mergedRows > 0
    ? ctx.acquire("storage", plan.mergedRows * PARTIAL_BYTES)
    : parts;
  // At least two Partials' worth: sn_wide_stats binds it as its unread rows when rows are parts.
  const groups = ctx.acquire("storage", Math.max(plan.groups * GROUP_BYTES, 2 * PARTIAL_BYTES));
  const mixed = plan.mixedRows > 0 ? ctx.acquire("storage", plan.mixedRows * 16) : undefined;
  const bnParts = plan.bnParts > 0
    ? ctx.acquire("storage", plan.bnParts * PARTIAL_BYTES)
    : undefined;
  // At least two Partials' worth: sn_group_stats binds it as its unwritten BN parts.
  const wideRows = ctx.acquire("list", Math.max(plan.wideStatsListBytes, 2 * PARTIAL_BYTES));
  const wideList = ctx.acquire("list", plan.wideListBytes);
  // Every list starts empty: their counts are 0 when the call's dispatches run.
  for (const at of plan.statsListOffsets) device.queue.writeBuffer(wideRows, at, EMPTY_LIST);
  for (const at of plan.listOffsets) device.queue.writeBuffer(wideList, at, EMPTY_LIST);
  return {
    plan,
    state,
    uniforms,
    parts,
    rows,
    groups,
    mixed,
    bnParts,
    wideRows,
    wideList,
    release: (keep = false) => {
      // Layout "nd" keeps its per-row summaries (which are the partials when rows were not
      // cut into segments); "1d" keeps only its group statistics.
      const keepRows = keep && plan.mixedRows > 0;
      ctx.release("uniform", uniforms);
      if (!(keepRows && rows === parts)) ctx.release("storage", parts);
      if (rows !== parts && !keepRows) ctx.release("storage", rows);
      if (!keep) ctx.release("storage", groups);
      if (mixed) ctx.release("storage", mixed);
      if (bnParts) ctx.release("storage", bnParts);
      ctx.release("list", wideRows);
      ctx.release("list", wideList);
    },
  };
}

/** Records the dispatches of `prep` that `phase` selects into `pass`. */
export function encodeForward(
  engine: Engine,
  pass: GPUComputePassEncoder,
  prep: Prepared,
  x: GPUBuffer,
  y: GPUBuffer,
  phase: "all" | "statistics" | "normalize",
): void {
  const { uniforms, parts, rows, groups, mixed, state, wideRows, wideList, bnParts } = prep;
  for (const d of prep.plan.dispatches) {
    if (phase !== "all" && STATISTICS.has(d.kind) !== (phase === "statistics")) continue;
    const slot = slotOf(uniforms, d);
    const xw = d.window && { buffer: x, offset: d.window.offset, size: d.window.size };
    const yw = d.window && { buffer: y, offset: d.window.offset, size: d.window.size };
    // Statistics in the dispatch's windows where it has them (above one binding: in blocks).
    const f = d.forward ?? WHOLE;
    const entries: GPUBufferBinding[] = {
      stats: () => [slot, xw!, at(parts, f.parts), at(wideRows, f.list), { buffer: state.running }],
      stats1d: () => [slot, xw!, at(parts, f.rows), at(wideRows, f.list)],
      rowMerge: () => [
        slot,
        at(parts, f.parts),
        at(rows, f.rows),
        at(wideRows, f.list),
        { buffer: state.running },
      ],
      // Without merged rows (rows === parts) the shader reads no rows: bind any other buffer.
      wideStats: () => [
        slot,
        xw!,
        at(parts, f.parts),
        rows === parts ? { buffer: groups, size: 2 * PARTIAL_BYTES } : at(rows, f.rows),
        at(wideRows, f.list),
      ],
      wideStats1d: () => [slot, xw!, at(parts, f.rows), at(wideRows, f.list)],
      group: () => [
        slot,
        f.bn === "merge" ? { buffer: bnParts! } : at(rows, f.rows),
        at(groups, f.groups),
        { buffer: state.running },
        // Its list of wide groups ("1d" only): in blocks, the block's, or a stand-in.
        f.groupList || !d.forward ? at(wideList, f.groupList) : { buffer: wideList, size: 16 },
        { buffer: state.affine },
        // Its BN parts: bound where it writes them, else a small unwritten stand-in.
        f.bn === "parts" ? { buffer: bnParts! } : { buffer: wideRows, size: 2 * PARTIAL_BYTES },
      ],
      // sn_group_refine: rows of one segment are the parts; a step binds the one it does not
      // use (rows for its sums, parts for its groups where rows are the parts) as a small
      // stand-in, and x in its window (the groups step: a stand-in too).
      groupRefine: () => {
        const standIn = { buffer: wideRows, size: 2 * PARTIAL_BYTES };
        const one = rows === parts;
        return [
          slot,
          one && d.window ? standIn : at(rows, f.rows),
          one && !d.window ? standIn : at(parts, f.parts),
          at(groups, f.groups),
          at(wideList, f.groupList),
          { buffer: state.running },
          xw ?? { buffer: x, size: 16 },
        ];
      },
      mix: () => [
        slot,
        at(rows, f.rows),
        at(groups, f.groups),
        { buffer: state.affine },
        at(mixed!, f.mixed),
        at(wideList, f.list),
        at(groups, f.chanGroups),
      ],
      normalize: () => [slot, xw!, yw!, at(mixed!, f.mixed)],
      normalize1d: () => [
        slot,
        xw!,
        yw!,
        at(groups, f.groups),
        { buffer: state.affine },
        at(groups, f.chanGroups),
      ],
      wideNormalize1d: () => [
        slot,
        xw!,
        yw!,
        at(groups, f.groups),
        { buffer: state.affine },
        f.groupList ? at(wideList, f.groupList) : { buffer: wideList },
        at(groups, f.chanGroups),
      ],
      wideZeroStdY1d: () => [
        slot,
        xw!,
        yw!,
        at(groups, f.groups),
        { buffer: state.affine },
        f.groupList ? at(wideList, f.groupList) : { buffer: wideList },
        at(groups, f.chanGroups),
      ],
      wideZeroStdY: () => [
        slot,
        xw!,
        yw!,
        at(rows, f.rows),
        at(groups, f.groups),
        { buffer: state.affine },
        at(wideList, f.list),
        at(groups, f.chanGroups),
      ],
      wideNormalize: () => [
        slot,
        xw!,
        yw!,
        at(rows, f.rows),
        at(groups, f.groups),
        { buffer: state.affine },
        at(wideList, f.list),
        at(groups, f.chanGroups),
      ],
    }[d.kind as ForwardKind]();
    dispatch(engine, pass, d, entries, prep.plan.groupThreads);
  }
}

/** The backend's forward (see WebGpuBackend.forward). */
export async function runForward(
  engine: Engine,
  problem: NormProblem,
  x: Float32Array | ResidentTensor,
  params: LayerParams,
  update: RunningUpdate,
  out?: Float32Array | ResidentTensor,
  save?: SavedForward,
): Promise<Float32Array | ResidentTensor> {
  const ctx = engine.ctx, device = ctx.device;
  ctx.check();
  const total = problem.n * problem.c * problem.m;
  const resident = x instanceof GpuTensor;
  if (!resident) f32("x", x);
  if (resident && !x.isOn(ctx)) {
    throw new TypeError("webgpu backend: x is a GpuTensor of another device/backend instance");
  }
  if (out !== undefined && resident !== out instanceof GpuTensor) {
    throw new TypeError("webgpu backend: out must be the same kind as x");
  }
  if (out instanceof GpuTensor && !out.isOn(ctx)) {
    throw new TypeError("webgpu backend: out is a GpuTensor of another device/backend instance");
  }
  const usingBN = problem.layout === "1d" || problem.usingBN;
  const synced = problem.training && usingBN && problem.sync !== undefined;
  const updates = problem.training && usingBN && !synced;
  const c = problem.c;
  const bytes = Math.ceil(total / 4) * 16;
  if (bytes + 8 * c > device.limits.maxBufferSize) {
    throw new RangeError(
      `webgpu backend: a tensor of ${total} floats needs buffers of ${bytes} bytes, more than ` +
        `this device's maxBufferSize (${device.limits.maxBufferSize})`,
    );
  }
  // SyncSN updates the running buffers on the CPU: it needs the device's newer ones first.
  if (synced) await engine.layers.syncRunning(params);

  // Disposed tensors are refused, naming which, before anything is acquired.
  const outLive = out instanceof GpuTensor ? liveBuffer(out, "out") : undefined;
  const xBuf = resident ? liveBuffer(x, "x") : ctx.acquire("storage", bytes);
  let yBuf: GPUBuffer, result: GpuTensor | undefined, copyTo: GPUBuffer | undefined;
  if (!resident) yBuf = ctx.acquire("storage", bytes);
  else if (outLive) {
    // y may not be bound read-write beside x read-only in one dispatch: go through a temp.
    if (outLive === xBuf) (yBuf = ctx.acquire("storage", bytes)), (copyTo = outLive);
    else yBuf = outLive;
  } else {
    yBuf = ctx.acquire("storage", bytes);
    result = new GpuTensor(ctx, yBuf, (x as GpuTensor).shape, true);
  }
  let prep: Prepared | undefined, staging: GPUBuffer | undefined;
  const runAt = Math.ceil(total / 4) * 16;
  const stagingBytes = runAt + (updates ? 8 * c : 0);
  let batch: BatchPartials | undefined, kept: SavedStats | undefined;
  /** SyncSN: the new running buffers, for `params` once the forward has succeeded. */
  let newRunning: [Float32Array, Float32Array] | undefined;
  try {
    if (!resident) write(device.queue, xBuf, 0, x as Float32Array);
    prep = prepareForward(engine, problem, params, update, problem.training || save !== undefined);
    const state = prep.state;
    // The layer drops its last SavedForward at every forward: so do its statistics here.
    state.saved?.release();
    state.saved = undefined;
    if (synced) {
      const p = prep;
      ({ merged: batch, running: newRunning } = await syncBatch(
        ctx,
        problem,
        p.groups,
        state.running,
        params,
        update,
        (pass) => encodeForward(engine, pass, p, xBuf, xBuf, "statistics"),
      ));
    }
    if (!resident) staging = ctx.acquire("staging", stagingBytes);
    await submit(ctx, "forward", (enc) => {
      const pass = enc.beginComputePass();
      encodeForward(engine, pass, prep!, xBuf, yBuf, synced ? "normalize" : "all");
      pass.end();
      if (copyTo) enc.copyBufferToBuffer(yBuf, 0, copyTo, 0, bytes);
      if (staging) {
        enc.copyBufferToBuffer(yBuf, 0, staging, 0, total * 4);
        if (updates) enc.copyBufferToBuffer(state.running, 0, staging, runAt, 8 * c);
      }
    });
    if (save) {
      const rows = problem.layout === "nd" ? prep.rows : undefined;
      kept = new SavedStats(ctx, rows, prep.groups, batch?.count ?? problem.n);
      state.saved = kept;
    }
  } catch (e) {
    if (staging) ctx.release("staging", staging);
    result?.dispose();
    if (newRunning && prep) forgetRunning(prep.state);
    throw e;
  } finally {
    prep?.release(kept !== undefined);
    if (!resident) ctx.release("storage", xBuf);
    if (!resident || copyTo) ctx.release("storage", yBuf);
  }
  if (save) {
    save.problem = problem;
    save.x = x;
    save.state = kept;
  }
  const state = prep.state;
  if (resident) {
    if (updates) state.stale = true;
    if (newRunning) params.runningMean.set(newRunning[0]), params.runningVar.set(newRunning[1]);
    return result ?? (out as GpuTensor);
  }
  const wasStale = state.stale;
  return await readBack(ctx, staging!, stagingBytes, (mapped) => {
    const y = out !== undefined ? f32("out", out) : new Float32Array(total);
    y.set(new Float32Array(mapped, 0, total));
    if (updates) {
      params.runningMean.set(new Float32Array(mapped, runAt, c));
      params.runningVar.set(new Float32Array(mapped, runAt + 4 * c, c));
      state.runningVersion = runningVersion(params);
      state.stale = false;
    }
    if (newRunning) params.runningMean.set(newRunning[0]), params.runningVar.set(newRunning[1]);
    return y;
  }).catch((e) => {
    if (newRunning || (updates && !wasStale)) forgetRunning(state);
    throw e;
  });
}
