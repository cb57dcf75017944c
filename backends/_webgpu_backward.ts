/**
 * The WebGPU backward: the chain rule of SN_SPEC from x (kept by reference by the forward) and
 * the forward's saved statistics, in one submit. Layout "nd": sn_bwd_reduce (the one pass over
 * x and dy for per-row sums), sn_bwd_rows (dL/dmu, dL/dvar and the parameter terms per row),
 * sn_bwd_groups (their sums per sample and per channel), sn_bwd_coef (each row's dx map) and
 * sn_bwd_dx (the second pass over x and dy, writing dx). Layout "1d": sn1d_bwd_reduce,
 * sn_bwd_groups, sn1d_bwd_dx. A Float32Array call reads dx and the O(N + C) gradient sums (and,
 * "nd", sn_bwd_rows' partial sums of the logit dot products, one per 64 rows) back with one
 * mapAsync; a GpuTensor call returns dx as a GpuTensor and reads back only the sums.
 * SyncSN sums them across replicas between sn_bwd_groups and the dx passes (_webgpu_sync.ts).
 *
 * Depends on the shared Backend types, the plan (_webgpu_plan.ts), the pipelines, the per-layer
 * buffers, GpuTensor, the gradient-sum records and the SyncSN step.
 *
 * @module
 */
import type { BackwardResult, LayerParams, ResidentTensor, SavedForward } from "./_backend.ts";
import { readBack, SavedStats, submit, write } from "./_webgpu_buffers.ts";
import { EMPTY_LIST, GRAD_BYTES, GROUP_BYTES } from "./_webgpu_plan.ts";
import {
  BACKWARD_REDUCTION,
  type BackwardPlan,
  DOT_SUM_BYTES,
  makeBackwardPlan,
} from "./_webgpu_backward_plan.ts";
import { type BackwardKind, dispatch, type Engine, slotOf } from "./_webgpu_pipelines.ts";
import { f32, GpuTensor, liveBuffer } from "./_webgpu_tensor.ts";
import { type GradientSums, gradientSums, logitCount } from "./_webgpu_grad_sums.ts";
import { syncGradientSums } from "./_webgpu_sync.ts";
import { ZERO_WEIGHTS_BELOW } from "./_webgpu_weights.ts";

/** The buffers one backward binds. @internal */
export interface BackwardBuffers {
  readonly uniforms: GPUBuffer;
  /** The forward's statistics. */
  readonly stats: SavedStats;
  /** gamma (C), then beta (C). */
  readonly affine: GPUBuffer;
  readonly x: GPUBuffer;
  readonly dy: GPUBuffer;
  readonly dx: GPUBuffer;
  /** Segment sums ("nd") or the rows' tile-line Grads ("1d"). */
  readonly parts: GPUBuffer;
  /** The columns' tile-line Grads ("1d"). */
  readonly chanParts?: GPUBuffer;
  /** Per-row Grads ("nd"). */
  readonly rows?: GPUBuffer;
  /** Partial sums of the pair rows' dot products ("nd": sn_bwd_rows). */
  readonly dotSums?: GPUBuffer;
  /** The segment sums' S1 low words ("nd": sn_bwd_reduce). */
  readonly segLo?: GPUBuffer;
  /** Per-sample, then per-channel Grads. */
  readonly groups: GPUBuffer;
  /** Per-row dx maps ("nd"). */
  readonly coef?: GPUBuffer;
  /** Segments for sn_bwd_wide_reduce, rows for sn_bwd_wide_dx: a count, then the items. */
  readonly wideSegs: GPUBuffer;
  readonly wideRows: GPUBuffer;
  /** The forward's group statistics as the passes bind them: those of the forward, or ("nd" in
   * blocks of samples) each block's copy of its LN groups and the BN groups. */
  readonly statGroups: GPUBuffer;
  /** Calls with eps 0: the per-channel classes of the rows of std 0 (sn_bwd_zero_std). */
  readonly zeroStd?: GPUBuffer;
}

/** One backward's plan and scratch buffers, and how to give them back. @internal */
export interface PreparedBackward {
  readonly plan: BackwardPlan;
  readonly buffers: BackwardBuffers;
  readonly release: () => void;
}

/** Records the dispatches of a backward plan that `phase` selects into `pass`. */
export function encodeBackward(
  engine: Engine,
  pass: GPUComputePassEncoder,
  plan: BackwardPlan,
  b: BackwardBuffers,
  phase: "all" | "reduction" | "dx",
): void {
  for (const d of plan.dispatches) {
    if (phase !== "all" && BACKWARD_REDUCTION.has(d.kind) !== (phase === "reduction")) continue;
    const slot = slotOf(b.uniforms, d);
    const w = (buffer: GPUBuffer) => ({ buffer, offset: d.window!.offset, size: d.window!.size });
    const whole = (buffer: GPUBuffer) => ({ buffer });
    // Gradient records, in the dispatch's windows where it has them (they may exceed one
    // storage binding).
    const r = d.records ?? {};
    const at = (buffer: GPUBuffer, window?: { offset: number; size: number }) => ({
      buffer,
      ...window,
    });
    const { stats, affine } = b;
    // "nd" in blocks of samples: the forward's statistics and the per-row and per-segment
    // buffers in the block's windows.
    const saved = (): GPUBufferBinding[] => [
      at(stats.rows!, r.savedRows),
      at(b.statGroups, r.savedGroups),
    ];
    // The reduce passes and their wide ones bind the same arrays (the wide ones read the lists
    // the hot ones fill).
    const reduceNd = () => [
      slot,
      w(b.x),
      w(b.dy),
      ...saved(),
      at(b.parts, r.segSums),
      at(b.wideSegs, r.list),
      at(b.segLo!, r.segLo),
    ];
    const reduce1d = () => [
      slot,
      w(b.x),
      w(b.dy),
      at(b.statGroups, r.savedGroups),
      whole(affine),
      at(b.parts, r.rows),
      at(b.chanParts!, r.chanParts),
      at(b.wideSegs, r.list),
    ];
    const entries: GPUBufferBinding[] = {
      bwdReduce: reduceNd,
      bwdWideReduce: reduceNd,
      bwdRows: () => [
        slot,
        at(b.parts, r.segSums),
        ...saved(),
        whole(affine),
        at(b.rows!, r.rows),
        whole(b.dotSums!),
        at(b.segLo!, r.segLo),
      ],

      bwdReduce1d: reduce1d,
      bwdWideReduce1d: reduce1d,
      bwdGroups: () => [
        slot,
        r.chanParts ? at(b.chanParts!, r.chanParts) : at(b.rows ?? b.parts, r.rows),
        at(b.groups, r.groups),
        // Written in layout "1d" only: in "nd" blocks (above a binding) a stand-in.
        plan.chanPartBytes === 0 && plan.statCopies.length > 0
          ? { buffer: b.wideRows, size: 16 }
          : whole(b.wideRows),
        // The forward's statistics, read in layout "1d" only (its window's copy where they
        // exceed a binding): in "nd" one Group's stand-in.
        plan.chanPartBytes > 0
          ? at(b.statGroups, r.savedGroups)
          : { buffer: b.statGroups, size: GROUP_BYTES },
        whole(affine),
      ],
      bwdCoef: () => [
        slot,
        at(b.rows!, r.rows),
        at(b.groups, r.groups),
        ...saved(),
        whole(affine),
        at(b.coef!, r.coef),
        at(b.groups, r.chanGroups),
        at(b.wideRows, r.list),
      ],

      bwdZeroStd: () => [slot, w(b.x), w(b.dy), ...saved(), whole(b.zeroStd!)],
      bwdZeroStd1d:
        () => [slot, w(b.x), w(b.dy), at(b.statGroups, r.savedGroups), whole(b.zeroStd!)],
      bwdZeroStdFix: () => [slot, whole(b.zeroStd!), at(b.groups, r.chanGroups)],

      bwdDx: () => [slot, w(b.x), w(b.dy), w(b.dx), at(b.coef!, r.coef)],
      bwdWideDx: () => [
        slot,
        w(b.x),
        w(b.dy),
        w(b.dx),
        at(b.coef!, r.coef),
        at(stats.rows!, r.savedRows),
        at(b.wideRows, r.list),
      ],
      bwdDx1d: () => [
        slot,
        w(b.x),
        w(b.dy),
        w(b.dx),
        at(b.statGroups, r.savedGroups),
        whole(affine),
        at(b.groups, r.groups),
        at(b.groups, r.chanGroups),
      ],
      bwdWideDx1d: () => [
        slot,
        w(b.x),
        w(b.dy),
        w(b.dx),
        at(b.statGroups, r.savedGroups),
        whole(affine),
        at(b.groups, r.groups),
        at(b.groups, r.chanGroups),
        whole(b.wideRows),
      ],
    }[d.kind as BackwardKind]();
    dispatch(engine, pass, d, entries, plan.groupThreads);
  }
}

/** What a backward binds besides its scratch: the forward it differentiates, and x, dy, dx. */
export type BackwardBindings = [
  saved: SavedForward,
  params: LayerParams,
  x: GPUBuffer,
  dy: GPUBuffer,
  dx: GPUBuffer,
];

/** Plans one backward and takes its scratch buffers (the uniforms are written at once). */
export function prepareBackward(
  engine: Engine,
  ...[saved, params, x, dy, dx]: BackwardBindings
): PreparedBackward {
  const ctx = engine.ctx, problem = saved.problem!;
  const stats = saved.state;
  if (!(stats instanceof SavedStats) || stats.ctx !== ctx) {
    throw new Error(
      "webgpu backend: backward needs the statistics of a forward run on this backend with " +
        "`save` (keepForBackward)",
    );
  }
  if (stats.released) {
    throw new Error(
      "webgpu backend: the statistics this forward kept for backward were freed by a later " +
        "forward of the same layer (or its release); run the forward again before backward",
    );
  }
  const plan = makeBackwardPlan(problem, params, {
    maxBinding: ctx.maxBinding,
    offsetAlign: ctx.device.limits.minStorageBufferOffsetAlignment,
    elementsPerThread: ctx.elementsPerThread,
    maxBuffer: ctx.device.limits.maxBufferSize,
    groupThreads: ctx.groupWorkgroupSize,
    loopLimit: ctx.adapter.isFallbackAdapter,
  }, stats.batch);
  const state = engine.layers.state(params, problem.c);
  const uniforms = ctx.acquire("uniform", plan.uniforms.byteLength);
  ctx.device.queue.writeBuffer(uniforms, 0, plan.uniforms);
  const buffers: BackwardBuffers = {
    uniforms,
    stats,
    affine: state.affine,
    x,
    dy,
    dx,
    parts: ctx.acquire("storage", plan.partBytes),
    chanParts: plan.chanPartBytes > 0 ? ctx.acquire("storage", plan.chanPartBytes) : undefined,
    rows: plan.rows > 0 ? ctx.acquire("storage", plan.rows * GRAD_BYTES) : undefined,
    dotSums: plan.dotRecords > 0
      ? ctx.acquire("storage", plan.dotRecords * DOT_SUM_BYTES)
      : undefined,
    segLo: plan.segLoBytes > 0 ? ctx.acquire("storage", plan.segLoBytes) : undefined,
    groups: ctx.acquire("storage", plan.groups * GRAD_BYTES),
    coef: plan.coefRows > 0 ? ctx.acquire("storage", plan.coefRows * 16) : undefined,
    wideSegs: ctx.acquire("list", plan.wideSegBytes),
    wideRows: ctx.acquire("list", plan.wideRowBytes),
    statGroups: plan.statGroupsBytes > 0
      ? ctx.acquire("storage", plan.statGroupsBytes)
      : stats.groups!,
    zeroStd: plan.zeroStdBytes > 0 ? ctx.acquire("storage", plan.zeroStdBytes) : undefined,
  };
  // The passes of eps 0 OR classes into their words.
  if (buffers.zeroStd) {
    ctx.device.queue.writeBuffer(buffers.zeroStd, 0, new Uint32Array(plan.zeroStdBytes / 4));
  }
  // Every list starts empty: their counts are 0 when the call's dispatches run.
  for (const at of plan.lineListOffsets) {
    ctx.device.queue.writeBuffer(buffers.wideSegs, at, EMPTY_LIST);
  }
  for (const at of plan.listOffsets) ctx.device.queue.writeBuffer(buffers.wideRows, at, EMPTY_LIST);
  if (plan.statCopies.length > 0) {
    // Before every later submit, in queue order.
    const enc = ctx.device.createCommandEncoder({ label: "switchnorm backward statistics" });
    for (const [from, to, bytes] of plan.statCopies) {
      enc.copyBufferToBuffer(stats.groups!, from, buffers.statGroups, to, bytes);
    }
    ctx.device.queue.submit([enc.finish()]);
  }
  const release = () => {
    ctx.release("uniform", uniforms);
    for (
      const b of [
        buffers.parts,
        buffers.chanParts,
        buffers.rows,
        buffers.dotSums,
        buffers.segLo,
        buffers.groups,
        buffers.coef,
        plan.statGroupsBytes > 0 ? buffers.statGroups : undefined,
        buffers.zeroStd,
      ]
    ) {
      if (b) ctx.release("storage", b);
    }
    ctx.release("list", buffers.wideSegs);
    ctx.release("list", buffers.wideRows);
  };
  return { plan, buffers, release };
}

/** The backend's backward (see WebGpuBackend.backward). */
export async function runBackward(
  engine: Engine,
  saved: SavedForward,
  dy: Float32Array | ResidentTensor,
  params: LayerParams,
  out?: Float32Array | ResidentTensor,
): Promise<BackwardResult> {
  const ctx = engine.ctx, device = ctx.device;
  ctx.check();
  const problem = saved.problem, x = saved.x;
  if (!problem || !x) throw new Error("webgpu backend: backward needs a saved forward");
  const resident = x instanceof GpuTensor;
  if (resident !== dy instanceof GpuTensor) {
    throw new TypeError("webgpu backend: dy must be the same kind as the forward's x");
  }
  if (resident) {
    if (!x.isOn(ctx) || !(dy as GpuTensor).isOn(ctx)) {
      throw new TypeError("webgpu backend: x and dy must be GpuTensors of this backend");
    }
    if (out !== undefined && !(out instanceof GpuTensor && out.isOn(ctx))) {
      throw new TypeError("webgpu backend: out must be a GpuTensor of this backend");
    }
  } else {
    f32("x", x);
    f32("dy", dy);
    if (out !== undefined) f32("out", out);
  }
  const total = problem.n * problem.c * problem.m;
  if (dy.length !== total || x.length !== total) {
    throw new RangeError(`webgpu backend: dy must have ${total} elements, got ${dy.length}`);
  }
  const bytes = Math.ceil(total / 4) * 16;
  // Disposed tensors are refused, naming which, before anything is acquired.
  const xLive = resident ? liveBuffer(x, "the forward's x") : undefined;
  const dyLive = resident ? liveBuffer(dy as GpuTensor, "dy") : undefined;
  const outBuf = out instanceof GpuTensor ? liveBuffer(out, "out") : undefined;
  const xBuf = xLive ?? ctx.acquire("storage", bytes);
  const dyBuf = dyLive ?? ctx.acquire("storage", bytes);
  // dx may not be bound read-write beside dy read-only in one dispatch: out = dy goes through a
  // temporary buffer and a copy.
  const copyTo = outBuf === dyBuf ? outBuf : undefined;
  const dxBuf = outBuf !== undefined && !copyTo ? outBuf : ctx.acquire("storage", bytes);
  const result = !resident
    ? undefined
    : out instanceof GpuTensor
    ? out
    : new GpuTensor(ctx, dxBuf, x.shape, true);
  const ownsDx = dxBuf !== outBuf;
  let prepared: PreparedBackward | undefined;
  let staging: GPUBuffer | undefined, stagingBytes = 0, sums: GradientSums | undefined;
  try {
    if (!resident) {
      write(device.queue, xBuf, 0, x as Float32Array);
      write(device.queue, dyBuf, 0, dy as Float32Array);
    }
    prepared = prepareBackward(engine, saved, params, xBuf, dyBuf, dxBuf);
    const { plan, buffers } = prepared;
    // The group records, then the dot products' partial sums (read together).
    const groupsBytes = plan.groups * GRAD_BYTES;
    const sumsBytes = groupsBytes + plan.dotRecords * DOT_SUM_BYTES;
    const copySums = (enc: GPUCommandEncoder, to: GPUBuffer) => {
      enc.copyBufferToBuffer(buffers.groups, 0, to, 0, groupsBytes);
      if (buffers.dotSums) {
        enc.copyBufferToBuffer(buffers.dotSums, 0, to, groupsBytes, sumsBytes - groupsBytes);
      }
    };
    if (problem.sync) {
      // SyncSN: the sums over n must be the global batch's before dx can be formed.
      sums = await syncGradientSums(
        ctx,
        problem,
        buffers.groups,
        sumsBytes,
        (enc) => {
          const pass = enc.beginComputePass();
          encodeBackward(engine, pass, plan, buffers, "reduction");
          pass.end();
        },
        copySums,
      );
      if (!resident) staging = ctx.acquire("staging", stagingBytes = total * 4);
      await submit(ctx, "backward", (enc) => {
        const pass = enc.beginComputePass();
        encodeBackward(engine, pass, plan, buffers, "dx");
        pass.end();
        if (copyTo) enc.copyBufferToBuffer(dxBuf, 0, copyTo, 0, bytes);
        if (staging) enc.copyBufferToBuffer(dxBuf, 0, staging, 0, total * 4);
      });
    } else {
      stagingBytes = sumsBytes + (resident ? 0 : total * 4);
      staging = ctx.acquire("staging", stagingBytes);
      await submit(ctx, "backward", (enc) => {
        const pass = enc.beginComputePass();
        encodeBackward(engine, pass, plan, buffers, "all");
        pass.end();
        if (copyTo) enc.copyBufferToBuffer(dxBuf, 0, copyTo, 0, bytes);
        copySums(enc, staging!);
        if (!resident) enc.copyBufferToBuffer(dxBuf, 0, staging!, sumsBytes, total * 4);
      });
    }
  } catch (e) {
    if (staging) ctx.release("staging", staging);
    if (result !== out) result?.dispose();
    throw e;
  } finally {
    prepared?.release();
    if (!resident) { for (const b of [xBuf, dyBuf]) ctx.release("storage", b); }
    if (ownsDx && (!resident || copyTo)) ctx.release("storage", dxBuf);
  }
  const k = logitCount(problem);
  let dx: Float32Array | GpuTensor = result!;
  if (staging) {
    // Without SyncSN the sums lie first and dx after them; with it, staging holds dx alone.
    const plan = prepared.plan;
    const dxAt = sums ? 0 : plan.groups * GRAD_BYTES + plan.dotRecords * DOT_SUM_BYTES;
    const read = await readBack(ctx, staging, stagingBytes, (data) => {
      let dxRead: Float32Array | undefined;
      if (!resident) {
        const view = new Float32Array(data, dxAt, total);
        dxRead = out instanceof Float32Array ? (out.set(view), out) : view.slice();
      }
      return { sums: sums ?? gradientSums(data, problem, k, plan.dotRecords), dx: dxRead };
    }).catch((e) => {
      if (result !== out) result?.dispose(); // no half result: the caller gets the error alone
      throw e;
    });
    sums = read.sums;
    if (read.dx) dx = read.dx;
  }
  if (!sums) throw new Error("webgpu backend: internal error: no gradient sums were read");
  return {
    dx,
    dWeight: sums.dWeight,
    dBias: sums.dBias,
    meanDots: sums.meanDots,
    meanDotsOffset: sums.meanDotsOffset,
    varDots: sums.varDots,
    zeroWeightsBelow: ZERO_WEIGHTS_BELOW,
  };
}
