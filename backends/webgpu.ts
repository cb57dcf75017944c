/**
 * The WebGPU backend: SN forward and backward as WGSL compute shaders (shaders/*.wgsl), with the
 * running buffers updated on the GPU.
 *
 * One forward is one command buffer, one compute pass and one submit. Layout "nd": sn_stats (the
 * one statistics pass over x, one dispatch per binding window of x), sn_row_merge (only when
 * rows were cut into segments), sn_group_stats (LN and BN statistics from the IN ones, and the
 * running-buffer update), sn_mix (each row's affine map) and sn_normalize (the second pass over
 * x, one dispatch per binding window of x and y). Layout "1d": sn1d_stats, sn_group_stats,
 * sn1d_normalize. A Float32Array call then reads y and the new running buffers back with one
 * mapAsync of one pooled staging buffer; a call on a {@linkcode GpuTensor} reads nothing back
 * and leaves the running buffers on the device until `syncRunning`. SyncSN splits the submit in
 * two around the cross-replica merge of the BN statistics.
 *
 * A forward given `save` keeps, per layer, its per-row IN summaries and LN/BN statistics on the
 * device (x stays the caller's, by reference); the layer's next forward frees them. One backward
 * is one submit too. Layout "nd": sn_bwd_reduce (the one pass over x and dy for per-row sums),
 * sn_bwd_rows (dL/dmu, dL/dvar and the parameter terms per row), sn_bwd_groups (their sums per
 * sample and per channel), sn_bwd_coef (each row's dx map) and sn_bwd_dx (the second pass over
 * x and dy, writing dx). Layout "1d": sn1d_bwd_reduce, sn_bwd_groups, sn1d_bwd_dx. A
 * Float32Array call reads dx and the O(N + C) gradient sums back with one mapAsync; a
 * GpuTensor call returns dx as a GpuTensor and reads back only the sums. SyncSN reads the sums
 * back after sn_bwd_groups, sums them across replicas and writes them back before the dx passes.
 *
 * NaN and infinity never travel through float arithmetic in the shaders (WGSL lets a compiler
 * assume finite floats): each statistic carries flag bits saying what the float64 reference
 * would hold (NaN, +Inf, -Inf, or an undefined unbiased variance), and y is written as NaN
 * wherever a statistic it mixes is flagged, which is where the reference's y is NaN.
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
import { type DeviceOptions, type GpuContext, openDevice } from "./_webgpu_device.ts";
import {
  BACKWARD_REDUCTION,
  type BackwardPlan,
  GRAD_BYTES,
  grid,
  GROUP_BYTES,
  makeBackwardPlan,
  makePlan,
  PARTIAL_BYTES,
  type Plan,
  type PlannedDispatch,
  SLOT_BYTES,
} from "./_webgpu_plan.ts";
import { checkUpload, checkWrappable, GpuTensor } from "./_webgpu_tensor.ts";
import * as WGSL from "../shaders/_wgsl.ts";

/** Bytes of the Params struct inside each uniform slot. */
const PARAMS_BYTES = 160;

/** Options of a backend instance (tests and the bench make their own instances). */
export type WebGpuBackendOptions = DeviceOptions;

/** What the backend keeps on the device for one layer. */
interface LayerState {
  /** gamma (C) then beta (C). */
  readonly affine: GPUBuffer;
  /** running_mean (C) then running_var (C). */
  readonly running: GPUBuffer;
  /** params.version of the last upload. */
  version: number;
  /** params.runningVersion of the last running-buffer upload or readback. */
  runningVersion?: number;
  /** The device's running buffers are newer than the CPU's (resident training calls). */
  stale: boolean;
  /** A readback of the running buffers in flight. */
  syncing?: Promise<void>;
  /** The layer released this state while stale: free it once the sync is done. */
  released?: boolean;
  /** The statistics the layer's last forward kept for its backward (freed by the next one). */
  saved?: SavedStats;
}

/**
 * What a forward with `save` keeps on the device for the backward: its per-row IN summaries
 * ("nd") and its LN/BN statistics, exactly as the normalize pass used them (under SyncSN the
 * global batch's BN statistics). x is kept by reference in the SavedForward, never copied. One
 * per layer: the layer's next forward frees it, as the layer drops its SavedForward then.
 */
class SavedStats {
  /** Per-row IN summaries (Partial, N*C), layout "nd" only. */
  rows?: GPUBuffer;
  /** LN (N) then BN (C, with BN) statistics (Group). */
  groups?: GPUBuffer;
  /**
   * @param ctx the device the buffers live on
   * @param rows per-row IN summaries ("nd")
   * @param groups LN/BN statistics
   * @param batch samples behind the BN statistics (the global batch under SyncSN)
   */
  constructor(
    readonly ctx: GpuContext,
    rows: GPUBuffer | undefined,
    groups: GPUBuffer,
    readonly batch: number,
  ) {
    this.rows = rows;
    this.groups = groups;
  }

  get released(): boolean {
    return this.groups === undefined;
  }

  /** Gives the buffers back to the pool (`destroy`: destroy them once the queue is done). */
  release(destroy = false): void {
    const buffers = [this.rows, this.groups].filter((b) => b !== undefined);
    this.rows = this.groups = undefined;
    if (destroy) this.ctx.destroyLater(buffers);
    else for (const b of buffers) this.ctx.release("storage", b);
  }
}

type PipelineKind = PlannedDispatch["kind"];

type BackwardKind = Extract<PipelineKind, `bwd${string}`>;

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
  /** Per-sample, then per-channel Grads. */
  readonly groups: GPUBuffer;
  /** Per-row dx maps ("nd"). */
  readonly coef?: GPUBuffer;
}

/** The dispatches before the BN statistics are complete; the rest normalize. */
const STATISTICS: ReadonlySet<PipelineKind> = new Set(["stats", "stats1d", "rowMerge", "group"]);

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
interface BatchPartials {
  count: number;
  mean: Float64Array;
  m2: Float64Array;
}

/** One forward's plan, layer state and scratch buffers. */
interface Prepared {
  readonly plan: Plan;
  readonly state: LayerState;
  readonly uniforms: GPUBuffer;
  readonly parts: GPUBuffer;
  readonly rows: GPUBuffer;
  readonly groups: GPUBuffer;
  readonly mixed?: GPUBuffer;
  /**
   * Gives the scratch buffers back to the pool (safe right after the last submit); with `keep`,
   * the per-row summaries and the group statistics stay out of it (a backward needs them).
   */
  readonly release: (keep?: boolean) => void;
}

/** Timestamp writes for the bench: the pass's begin and end go to these query indices. */
export interface PassTimestamps {
  readonly querySet: GPUQuerySet;
  readonly beginningOfPassWriteIndex: number;
  readonly endOfPassWriteIndex: number;
}

function f32(what: string, v: unknown): Float32Array {
  if (!(v instanceof Float32Array)) {
    throw new TypeError(`webgpu backend: ${what} must be a Float32Array`);
  }
  return v;
}

/** SN forward on a GPU through WebGPU. One instance owns one device. */
export class WebGpuBackend implements Backend {
  /** Always "webgpu". */
  readonly name = "webgpu" as const;
  /** SyncSN: BN statistics take a round trip through the CPU to be merged across replicas. */
  readonly supportsSync = true;
  /** The device, its pool and its loss. */
  readonly ctx: GpuContext;
  readonly #pipelines: Record<PipelineKind, GPUComputePipeline>;
  readonly #layers = new Map<number, LayerState>();
  #disposed = false;

  /** @internal Use {@linkcode loadWebGpuBackend}. */
  constructor(ctx: GpuContext, pipelines: Record<PipelineKind, GPUComputePipeline>) {
    this.ctx = ctx;
    this.#pipelines = pipelines;
  }

  /** The device (for wrapping buffers of your own, see {@linkcode wrap}). */
  get device(): GPUDevice {
    return this.ctx.device;
  }

  /** Why the device is unusable, or undefined while it works. */
  get lost(): string | undefined {
    return this.ctx.lost;
  }

  /**
   * Copies `data` into a new GpuTensor.
   *
   * @throws {RangeError} when `shape` does not describe `data`, or its buffer would exceed the
   * device's maxBufferSize.
   */
  upload(data: Float32Array, shape: readonly number[]): GpuTensor {
    this.ctx.check();
    checkUpload(this.ctx.device, data, shape);
    const buffer = this.ctx.acquire("storage", data.length * 4);
    write(this.ctx.device.queue, buffer, 0, data);
    return new GpuTensor(this.ctx, buffer, shape, true);
  }

  /**
   * A GpuTensor over a buffer of yours on this backend's device (STORAGE | COPY_SRC usage, at
   * least `length * 4` bytes rounded up to 16). dispose() of the tensor leaves the buffer alone.
   */
  wrap(buffer: GPUBuffer, shape: readonly number[]): GpuTensor {
    this.ctx.check();
    checkWrappable(this.ctx.device, buffer, shape);
    return new GpuTensor(this.ctx, buffer, shape, false);
  }

  #state(params: LayerParams, c: number): LayerState {
    let s = this.#layers.get(params.layerId);
    if (s?.released) s = undefined; // being freed after a final sync: start afresh
    const queue = this.ctx.device.queue;
    if (!s) {
      s = {
        affine: this.ctx.device.createBuffer({ size: Math.max(16, 8 * c), usage: 0x80 | 0x08 }),
        running: this.ctx.device.createBuffer({
          size: Math.max(16, 8 * c),
          usage: 0x80 | 0x08 | 0x04,
        }),
        version: -1,
        stale: false,
      };
      this.#layers.set(params.layerId, s);
    }
    if (s.version !== params.version) {
      write(queue, s.affine, 0, params.weight);
      write(queue, s.affine, 4 * c, params.bias);
      s.version = params.version;
    }
    // The running buffers go up only when the CPU wrote them (load, reset, a CPU backend's
    // update): a version bump from an optimiser step must not undo the device's newer values.
    const rv = runningVersion(params);
    if (
      params.runningMean.length > 0 && (s.runningVersion === undefined || s.runningVersion !== rv)
    ) {
      write(queue, s.running, 0, params.runningMean);
      write(queue, s.running, 4 * c, params.runningVar);
      s.runningVersion = rv;
      s.stale = false;
    }
    return s;
  }

  /** Plans one forward and takes its scratch buffers; the uniforms are written at once. */
  #prepare(
    problem: NormProblem,
    params: LayerParams,
    update: RunningUpdate,
  ): Prepared {
    const ctx = this.ctx, device = ctx.device;
    const plan = makePlan(problem, { meanMix: params.meanMix, varMix: params.varMix, update }, {
      maxBinding: ctx.maxBinding,
      offsetAlign: device.limits.minStorageBufferOffsetAlignment,
      elementsPerThread: ctx.elementsPerThread,
    });
    const state = this.#state(params, problem.c);
    const uniforms = ctx.acquire("uniform", plan.uniforms.byteLength);
    device.queue.writeBuffer(uniforms, 0, plan.uniforms);
    const parts = ctx.acquire("storage", plan.partials * PARTIAL_BYTES);
    const rows = plan.mergedRows > 0
      ? ctx.acquire("storage", plan.mergedRows * PARTIAL_BYTES)
      : parts;
    const groups = ctx.acquire("storage", plan.groups * GROUP_BYTES);
    const mixed = plan.mixedRows > 0 ? ctx.acquire("storage", plan.mixedRows * 16) : undefined;
    return {
      plan,
      state,
      uniforms,
      parts,
      rows,
      groups,
      mixed,
      release: (keep = false) => {
        // Layout "nd" keeps its per-row summaries (which are the partials when rows were not
        // cut into segments); "1d" keeps only its group statistics.
        const keepRows = keep && plan.mixedRows > 0;
        ctx.release("uniform", uniforms);
        if (!(keepRows && rows === parts)) ctx.release("storage", parts);
        if (rows !== parts && !keepRows) ctx.release("storage", rows);
        if (!keep) ctx.release("storage", groups);
        if (mixed) ctx.release("storage", mixed);
      },
    };
  }

  /** Records the dispatches of `prep` that `phase` selects into `pass`. */
  #encode(
    pass: GPUComputePassEncoder,
    prep: Prepared,
    x: GPUBuffer,
    y: GPUBuffer,
    phase: "all" | "statistics" | "normalize",
  ): void {
    const device = this.ctx.device;
    const { uniforms, parts, rows, groups, mixed, state } = prep;
    for (const d of prep.plan.dispatches) {
      if (phase !== "all" && STATISTICS.has(d.kind) !== (phase === "statistics")) continue;
      const slot = { buffer: uniforms, offset: d.slot * SLOT_BYTES, size: PARAMS_BYTES };
      const xw = d.window && { buffer: x, offset: d.window.offset, size: d.window.size };
      const yw = d.window && { buffer: y, offset: d.window.offset, size: d.window.size };
      const entries: GPUBufferBinding[] = {
        stats: () => [slot, xw!, { buffer: parts }],
        stats1d: () => [slot, xw!, { buffer: parts }],
        rowMerge: () => [slot, { buffer: parts }, { buffer: rows }],
        group: () => [slot, { buffer: rows }, { buffer: groups }, { buffer: state.running }],
        mix: () => [slot, { buffer: rows }, { buffer: groups }, { buffer: state.affine }, {
          buffer: mixed!,
        }],
        normalize: () => [slot, xw!, yw!, { buffer: mixed! }],
        normalize1d: () => [slot, xw!, yw!, { buffer: groups }, { buffer: state.affine }],
      }[d.kind as Exclude<PipelineKind, BackwardKind>]();
      const pipeline = this.#pipelines[d.kind];
      pass.setPipeline(pipeline);
      pass.setBindGroup(
        0,
        device.createBindGroup({
          layout: pipeline.getBindGroupLayout(0),
          entries: entries.map((resource, binding) => ({ binding, resource })),
        }),
      );
      const [gx, gy] = grid(d.workgroups, this.ctx.maxWorkgroups);
      pass.dispatchWorkgroups(gx, gy);
    }
  }

  /**
   * Records the passes of one forward into `pass`, x and y bound in windows. Returns the
   * function that gives the scratch buffers back, to call after submit.
   * @internal For the bench, which brackets the pass with timestamps.
   */
  encodeForward(
    pass: GPUComputePassEncoder,
    problem: NormProblem,
    x: GPUBuffer,
    y: GPUBuffer,
    params: LayerParams,
    update: RunningUpdate,
  ): () => void {
    const prep = this.#prepare(problem, params, update);
    this.#encode(pass, prep, x, y, "all");
    return prep.release;
  }

  /** Submits the command buffer `record` fills, failing with WebGPU's error if it is invalid. */
  async #submit(
    what: "forward" | "backward",
    record: (enc: GPUCommandEncoder) => void,
  ): Promise<void> {
    const ctx = this.ctx, device = ctx.device;
    device.pushErrorScope("out-of-memory");
    device.pushErrorScope("validation");
    let thrown: unknown;
    try {
      const enc = device.createCommandEncoder({ label: `switchnorm ${what}` });
      record(enc);
      device.queue.submit([enc.finish()]);
    } catch (e) {
      thrown = e;
    }
    // The scopes are popped whatever happened, so that they never leak into later calls.
    const validation = await ctx.guard(device.popErrorScope());
    const oom = await ctx.guard(device.popErrorScope());
    if (thrown !== undefined) throw thrown;
    const err = validation ?? oom;
    if (err) throw new Error(`webgpu backend: the ${what} was rejected by WebGPU: ${err.message}`);
  }

  /** Maps `staging` (`bytes` of it), hands the mapped range to `use`, unmaps and pools it. */
  async #read<T>(staging: GPUBuffer, bytes: number, use: (data: ArrayBuffer) => T): Promise<T> {
    try {
      await this.ctx.guard(staging.mapAsync(1, /* GPUMapMode.READ */ 0, bytes));
      const result = use(staging.getMappedRange(0, bytes));
      staging.unmap();
      this.ctx.release("staging", staging);
      return result;
    } catch (e) {
      this.ctx.destroyLater([staging]);
      throw e;
    }
  }

  /**
   * SyncSN between the two phases: reads this replica's BN statistics back, merges them across
   * replicas in float64, writes the updated running buffers to the device copy, and writes the
   * global statistics where the normalize phase reads them. Returns the new running buffers,
   * which the caller puts into `params` only once the forward has succeeded.
   */
  async #syncBatch(
    problem: NormProblem,
    prep: Prepared,
    params: LayerParams,
    update: RunningUpdate,
    x: GPUBuffer,
  ): Promise<{ merged: BatchPartials; running: [Float32Array, Float32Array] }> {
    const { n, c } = problem, ctx = this.ctx, queue = ctx.device.queue;
    const bytes = c * GROUP_BYTES;
    const staging = ctx.acquire("staging", bytes);
    await this.#submit("forward", (enc) => {
      const pass = enc.beginComputePass();
      this.#encode(pass, prep, x, x, "statistics");
      pass.end();
      enc.copyBufferToBuffer(prep.groups, n * GROUP_BYTES, staging, 0, bytes);
    });
    const mean = new Float64Array(c), m2 = new Float64Array(c);
    await this.#read(staging, bytes, (data) => {
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
    const running: [Float32Array, Float32Array] = [
      params.runningMean.slice(),
      params.runningVar.slice(),
    ];
    applyRunningUpdate(running[0], running[1], merged.mean, variance, update);
    // The device copy moves now (the normalize phase follows in order on the queue); a failure
    // after this point makes the forward invalidate it (see forward).
    write(queue, prep.state.running, 0, running[0]);
    write(queue, prep.state.running, 4 * c, running[1]);
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
    queue.writeBuffer(prep.groups, n * GROUP_BYTES, out.buffer);
    return { merged, running };
  }

  /**
   * SN forward. Float32Array x: uploads it, runs, and reads y and (in training with BN) the new
   * running buffers back in one mapAsync, writing the buffers into `params`. GpuTensor x:
   * returns a new GpuTensor (or fills `out`) and reads nothing back; the running buffers stay
   * on the device ({@linkcode runningStale}) until {@linkcode syncRunning}. With SyncSN in
   * training the BN statistics make one extra round trip: read back, merged across replicas,
   * written back, between the statistics and the normalize passes.
   */
  async forward(
    problem: NormProblem,
    x: Float32Array | ResidentTensor,
    params: LayerParams,
    update: RunningUpdate,
    out?: Float32Array | ResidentTensor,
    save?: SavedForward,
  ): Promise<Float32Array | ResidentTensor> {
    const ctx = this.ctx, device = ctx.device;
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
    if (synced) await this.syncRunning(params);

    const xBuf = resident ? x.buffer : ctx.acquire("storage", bytes);
    let yBuf: GPUBuffer, result: GpuTensor | undefined, copyTo: GPUBuffer | undefined;
    if (!resident) yBuf = ctx.acquire("storage", bytes);
    else if (out instanceof GpuTensor) {
      // y may not be bound read-write beside x read-only in one dispatch: go through a temp.
      if (out.buffer === xBuf) (yBuf = ctx.acquire("storage", bytes)), (copyTo = out.buffer);
      else yBuf = out.buffer;
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
      prep = this.#prepare(problem, params, update);
      const state = prep.state;
      // The layer drops its last SavedForward at every forward: so do its statistics here.
      state.saved?.release();
      state.saved = undefined;
      if (synced) {
        ({ merged: batch, running: newRunning } = await this.#syncBatch(
          problem,
          prep,
          params,
          update,
          xBuf,
        ));
      }
      if (!resident) staging = ctx.acquire("staging", stagingBytes);
      await this.#submit("forward", (enc) => {
        const pass = enc.beginComputePass();
        this.#encode(pass, prep!, xBuf, yBuf, synced ? "normalize" : "all");
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
      if (newRunning && prep) this.#failedUpdate(prep.state);
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
    return await this.#read(staging!, stagingBytes, (mapped) => {
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
      if (newRunning || (updates && !wasStale)) this.#failedUpdate(state);
      throw e;
    });
  }

  /**
   * A forward that failed after its submit moved the device's running buffers, but not the
   * layer's: the device copy is forgotten, so that the next call uploads the layer's (unchanged)
   * values again. (When the device held newer values than the layer, there is nothing older to
   * go back to; that happens only on a lost device, which the layer replaces anyway.)
   */
  #failedUpdate(state: LayerState): void {
    state.runningVersion = undefined;
    state.stale = false;
  }

  /** Records the dispatches of a backward plan that `phase` selects into `pass`. */
  #encodeBackward(
    pass: GPUComputePassEncoder,
    plan: BackwardPlan,
    b: BackwardBuffers,
    phase: "all" | "reduction" | "dx",
  ): void {
    const device = this.ctx.device;
    for (const d of plan.dispatches) {
      if (phase !== "all" && BACKWARD_REDUCTION.has(d.kind) !== (phase === "reduction")) continue;
      const slot = { buffer: b.uniforms, offset: d.slot * SLOT_BYTES, size: PARAMS_BYTES };
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
      const entries: GPUBufferBinding[] = {
        bwdReduce: () => [slot, w(b.x), w(b.dy), whole(stats.rows!), whole(stats.groups!), {
          buffer: b.parts,
        }],
        bwdRows: () => [
          slot,
          whole(b.parts),
          whole(stats.rows!),
          whole(stats.groups!),
          whole(affine),
          at(b.rows!, r.rows),
        ],
        bwdReduce1d: () => [
          slot,
          w(b.x),
          w(b.dy),
          whole(stats.groups!),
          whole(affine),
          at(b.parts, r.rows),
          at(b.chanParts!, r.chanParts),
        ],
        bwdGroups: () => [
          slot,
          r.chanParts ? at(b.chanParts!, r.chanParts) : at(b.rows ?? b.parts, r.rows),
          at(b.groups, r.groups),
        ],
        bwdCoef: () => [
          slot,
          at(b.rows!, r.rows),
          at(b.groups, r.groups),
          whole(stats.rows!),
          whole(stats.groups!),
          whole(affine),
          whole(b.coef!),
          at(b.groups, r.chanGroups),
        ],
        bwdDx: () => [slot, w(b.x), w(b.dy), w(b.dx), whole(b.coef!)],
        bwdDx1d: () => [
          slot,
          w(b.x),
          w(b.dy),
          w(b.dx),
          whole(stats.groups!),
          whole(affine),
          at(b.groups, r.groups),
          at(b.groups, r.chanGroups),
        ],
      }[d.kind as BackwardKind]();
      const pipeline = this.#pipelines[d.kind];
      pass.setPipeline(pipeline);
      pass.setBindGroup(
        0,
        device.createBindGroup({
          layout: pipeline.getBindGroupLayout(0),
          entries: entries.map((resource, binding) => ({ binding, resource })),
        }),
      );
      const [gx, gy] = grid(d.workgroups, this.ctx.maxWorkgroups);
      pass.dispatchWorkgroups(gx, gy);
    }
  }

  /**
   * Plans one backward and takes its scratch buffers (the uniforms are written at once).
   * @internal The bench records it into a timed pass with {@linkcode encodeBackward}.
   */
  prepareBackward(
    saved: SavedForward,
    params: LayerParams,
    x: GPUBuffer,
    dy: GPUBuffer,
    dx: GPUBuffer,
  ): { plan: BackwardPlan; buffers: BackwardBuffers; release: () => void } {
    const ctx = this.ctx, problem = saved.problem!;
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
    }, stats.batch);
    const state = this.#state(params, problem.c);
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
      groups: ctx.acquire("storage", plan.groups * GRAD_BYTES),
      coef: plan.coefRows > 0 ? ctx.acquire("storage", plan.coefRows * 16) : undefined,
    };
    const release = () => {
      ctx.release("uniform", uniforms);
      for (
        const b of [buffers.parts, buffers.chanParts, buffers.rows, buffers.groups, buffers.coef]
      ) {
        if (b) ctx.release("storage", b);
      }
    };
    return { plan, buffers, release };
  }

  /**
   * Records a backward prepared by {@linkcode prepareBackward} into `pass`.
   * @internal For the bench.
   */
  encodeBackward(
    pass: GPUComputePassEncoder,
    plan: BackwardPlan,
    buffers: BackwardBuffers,
  ): void {
    this.#encodeBackward(pass, plan, buffers, "all");
  }

  /**
   * The chain rule of SN_SPEC on the GPU, from x (kept by reference by the forward) and the
   * forward's saved statistics: one pass over (x, dy) for per-row sums (layout "1d": per tile
   * line), the small combine over N*C (dL/dmu and dL/dvar per row, their sums per sample and
   * per channel, dgamma, dbeta, the importance-logit dot products), per-row dx maps and one
   * pass writing dx. Float32Array dy: uploads x and dy, one submit, and one mapAsync reads dx
   * and the gradient sums back. GpuTensor dy: dx is a new GpuTensor and only the gradient sums
   * (O(N + C) floats) are read back. SyncSN: the gradient sums are read back after the combine,
   * summed across replicas by `problem.sync.sum`, written back, and dx follows in a second
   * submit. Where the float64 reference has NaN (a non-finite x, M = 1, C = 1 in "1d", ...),
   * so do these results.
   */
  async backward(
    saved: SavedForward,
    dy: Float32Array | ResidentTensor,
    params: LayerParams,
  ): Promise<BackwardResult> {
    const ctx = this.ctx, device = ctx.device;
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
    } else {
      f32("x", x);
      f32("dy", dy);
    }
    const total = problem.n * problem.c * problem.m;
    if (dy.length !== total || x.length !== total) {
      throw new RangeError(`webgpu backend: dy must have ${total} elements, got ${dy.length}`);
    }
    const bytes = Math.ceil(total / 4) * 16;
    const xBuf = resident ? x.buffer : ctx.acquire("storage", bytes);
    const dyBuf = resident ? (dy as GpuTensor).buffer : ctx.acquire("storage", bytes);
    const dxBuf = ctx.acquire("storage", bytes);
    const result = resident ? new GpuTensor(ctx, dxBuf, x.shape, true) : undefined;
    let prepared: ReturnType<WebGpuBackend["prepareBackward"]> | undefined;
    let staging: GPUBuffer | undefined, stagingBytes = 0, sums: GradientSums | undefined;
    try {
      if (!resident) {
        write(device.queue, xBuf, 0, x as Float32Array);
        write(device.queue, dyBuf, 0, dy as Float32Array);
      }
      prepared = this.prepareBackward(saved, params, xBuf, dyBuf, dxBuf);
      const { plan, buffers } = prepared;
      const groupsBytes = plan.groups * GRAD_BYTES;
      const k = problem.layout === "nd" && problem.usingBN ? 3 : 2;
      if (problem.sync) {
        // SyncSN: the sums over n must be the global batch's before dx can be formed.
        const first = ctx.acquire("staging", groupsBytes);
        await this.#submit("backward", (enc) => {
          const pass = enc.beginComputePass();
          this.#encodeBackward(pass, plan, buffers, "reduction");
          pass.end();
          enc.copyBufferToBuffer(buffers.groups, 0, first, 0, groupsBytes);
        }).catch((e) => {
          ctx.release("staging", first);
          throw e;
        });
        const local = await this.#read(first, groupsBytes, (d) => gradientSums(d, problem, k));
        sums = unpackSums(await problem.sync.sum(packSums(local)), problem.c, k);
        device.queue.writeBuffer(
          buffers.groups,
          problem.n * GRAD_BYTES,
          channelRecords(sums.gmB, sums.gvB),
        );
        if (!resident) staging = ctx.acquire("staging", stagingBytes = total * 4);
        await this.#submit("backward", (enc) => {
          const pass = enc.beginComputePass();
          this.#encodeBackward(pass, plan, buffers, "dx");
          pass.end();
          if (staging) enc.copyBufferToBuffer(dxBuf, 0, staging, 0, total * 4);
        });
      } else {
        stagingBytes = groupsBytes + (resident ? 0 : total * 4);
        staging = ctx.acquire("staging", stagingBytes);
        await this.#submit("backward", (enc) => {
          const pass = enc.beginComputePass();
          this.#encodeBackward(pass, plan, buffers, "all");
          pass.end();
          enc.copyBufferToBuffer(buffers.groups, 0, staging!, 0, groupsBytes);
          if (!resident) enc.copyBufferToBuffer(dxBuf, 0, staging!, groupsBytes, total * 4);
        });
      }
    } catch (e) {
      if (staging) ctx.release("staging", staging);
      result?.dispose();
      throw e;
    } finally {
      prepared?.release();
      if (!resident) { for (const b of [xBuf, dyBuf, dxBuf]) ctx.release("storage", b); }
    }
    const k = problem.layout === "nd" && problem.usingBN ? 3 : 2;
    let dx: Float32Array | GpuTensor = result!;
    if (staging) {
      // Without SyncSN the sums lie first and dx after them; with it, staging holds dx alone.
      const dxAt = sums ? 0 : prepared.plan.groups * GRAD_BYTES;
      const read = await this.#read(staging, stagingBytes, (data) => ({
        sums: sums ?? gradientSums(data, problem, k),
        dx: resident ? undefined : new Float32Array(data.slice(dxAt, dxAt + total * 4)),
      })).catch((e) => {
        result?.dispose(); // no half result: the caller gets the error alone
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
      varDots: sums.varDots,
    };
  }

  /** True while the device holds running buffers newer than `params`' arrays. */
  runningStale(params: LayerParams): boolean {
    const s = this.#layers.get(params.layerId);
    return s !== undefined && (s.stale || s.syncing !== undefined) &&
      s.runningVersion === runningVersion(params);
  }

  /** Reads the device's running buffers into `params` (a no-op when they are not newer). */
  async syncRunning(params: LayerParams): Promise<void> {
    const s = this.#layers.get(params.layerId);
    if (!s) return;
    if (s.syncing) return await s.syncing;
    if (!s.stale || s.runningVersion !== runningVersion(params)) return;
    if (this.ctx.lost !== undefined) {
      // Say once that the newest running buffers are gone; the CPU copy is what remains.
      s.stale = false;
      this.#layers.delete(params.layerId);
      throw new Error(
        `webgpu backend: the running buffers updated on the GPU since the last sync were lost ` +
          `with the device (${this.ctx.lost}); the layer keeps its last synced values`,
      );
    }
    const ctx = this.ctx, c = params.runningMean.length;
    s.syncing = (async () => {
      const staging = ctx.acquire("staging", 8 * c);
      const enc = ctx.device.createCommandEncoder();
      enc.copyBufferToBuffer(s.running, 0, staging, 0, 8 * c);
      ctx.device.queue.submit([enc.finish()]);
      await ctx.guard(staging.mapAsync(1, 0, 8 * c));
      const mapped = staging.getMappedRange(0, 8 * c);
      params.runningMean.set(new Float32Array(mapped, 0, c));
      params.runningVar.set(new Float32Array(mapped, 4 * c, c));
      staging.unmap();
      ctx.release("staging", staging);
      s.stale = false;
    })();
    try {
      await s.syncing;
    } finally {
      s.syncing = undefined;
      if (s.released) this.#free(params.layerId, s);
    }
  }

  /**
   * Frees the layer's device buffers. Running buffers newer on the device are first read back
   * into the layer (asynchronously; `layer.sync()` awaits it), so dispose() loses nothing.
   */
  releaseLayer(params: LayerParams): void {
    const s = this.#layers.get(params.layerId);
    if (!s) return;
    if ((s.stale || s.syncing) && this.ctx.lost === undefined && !this.#disposed) {
      s.released = true;
      this.syncRunning(params).catch(() => {});
      return;
    }
    this.#free(params.layerId, s);
  }

  /** Frees the device buffers of a layer that was garbage-collected: nothing to read back. */
  forgetLayer(layerId: number): void {
    const s = this.#layers.get(layerId);
    if (!s) return;
    if (s.syncing) s.released = true; // freed when that read ends
    else this.#free(layerId, s);
  }

  #free(layerId: number, s: LayerState): void {
    if (this.#layers.get(layerId) === s) this.#layers.delete(layerId);
    s.saved?.release(true);
    this.ctx.destroyLater([s.affine, s.running]);
  }

  /** Number of layers with device state (for tests of dispose). */
  get layerCount(): number {
    return this.#layers.size;
  }

  /** Number of layers holding statistics kept for a backward (for tests of what is kept). */
  get savedCount(): number {
    return [...this.#layers.values()].filter((s) => s.saved !== undefined).length;
  }

  /**
   * Frees every buffer and pipeline and then the device, once the GPU has finished. Later calls
   * fail with a clear error.
   */
  dispose(): void {
    void this.disposeAsync();
  }

  /** dispose(), resolving when the device has been destroyed. */
  async disposeAsync(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const buffers = [...this.#layers.values()].flatMap((s) => [s.affine, s.running]);
    for (const s of this.#layers.values()) s.saved?.release(true);
    this.#layers.clear();
    this.ctx.destroyLater(buffers);
    await this.ctx.destroy();
  }

  /** Same as dispose(), for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Same as disposeAsync(), for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.disposeAsync();
  }
}

/** queue.writeBuffer of a Float32Array, whatever kind of ArrayBuffer is behind it. */
function write(queue: GPUQueue, buffer: GPUBuffer, offset: number, data: Float32Array): void {
  // Deno's writeBuffer panics (killing the process) on a detached buffer: refuse it instead.
  if ((data.buffer as ArrayBuffer).detached) {
    throw new TypeError("webgpu backend: an input's ArrayBuffer was detached during the call");
  }
  queue.writeBuffer(buffer, offset, data as Float32Array<ArrayBuffer>);
}

function runningVersion(params: LayerParams): number {
  return params.runningVersion ?? params.version;
}

const SOURCES: Record<PipelineKind, string> = {
  stats: WGSL.SN_STATS,
  rowMerge: WGSL.SN_ROW_MERGE,
  stats1d: WGSL.SN1D_STATS,
  group: WGSL.SN_GROUP_STATS,
  mix: WGSL.SN_MIX,
  normalize: WGSL.SN_NORMALIZE,
  normalize1d: WGSL.SN1D_NORMALIZE,
  bwdReduce: WGSL.SN_BWD_REDUCE,
  bwdRows: WGSL.SN_BWD_ROWS,
  bwdReduce1d: WGSL.SN1D_BWD_REDUCE,
  bwdGroups: WGSL.SN_BWD_GROUPS,
  bwdCoef: WGSL.SN_BWD_COEF,
  bwdDx: WGSL.SN_BWD_DX,
  bwdDx1d: WGSL.SN1D_BWD_DX,
};

/** The gradient sums of one backward, in float64 (BackwardResult's, plus GmB and GvB). */
interface GradientSums {
  dWeight: Float64Array;
  dBias: Float64Array;
  meanDots: Float64Array;
  varDots: Float64Array;
  gmB: Float64Array;
  gvB: Float64Array;
}

/**
 * Reads the group records of sn_bwd_groups (N per sample, then C per channel; a Grad is 16
 * words: s = (gm, gv, dgamma, dbeta), a, b, flags). Flagged sums are NaN, as in the reference.
 * The dot products come back centred (a'_k = sum gm (mu_k - mu)) beside sum gm * mu: their sum
 * in float64 is a_k, with the logit gradient's precision that of a'_k (see backward_common).
 */
function gradientSums(data: ArrayBuffer, problem: NormProblem, k: number): GradientSums {
  const { n, c } = problem;
  const f = new Float32Array(data, 0, (n + c) * 16), u = new Uint32Array(data, 0, (n + c) * 16);
  const meanDots = new Float64Array(k), varDots = new Float64Array(k);
  let bad = false, sa = 0, sb = 0;
  for (let i = 0; i < n; i++) {
    const at = 16 * i;
    if (u[at + 12] !== 0) bad = true;
    for (let q = 0; q < k; q++) {
      meanDots[q] += f[at + 4 + q];
      varDots[q] += f[at + 8 + q];
    }
    sa += f[at + 7];
    sb += f[at + 11];
  }
  for (let q = 0; q < k; q++) {
    meanDots[q] = bad ? NaN : meanDots[q] + sa;
    varDots[q] = bad ? NaN : varDots[q] + sb;
  }
  const dWeight = new Float64Array(c), dBias = new Float64Array(c);
  const gmB = new Float64Array(c), gvB = new Float64Array(c);
  for (let j = 0; j < c; j++) {
    const at = 16 * (n + j), flagged = u[at + 12] !== 0;
    gmB[j] = flagged ? NaN : f[at];
    gvB[j] = flagged ? NaN : f[at + 1];
    dWeight[j] = flagged ? NaN : f[at + 2];
    dBias[j] = f[at + 3];
  }
  return { dWeight, dBias, meanDots, varDots, gmB, gvB };
}

/** The sums SyncSN adds across replicas, packed as the reference packs them. */
function packSums(s: GradientSums): Float64Array {
  const parts = [s.dWeight, s.dBias, s.meanDots, s.varDots, s.gmB, s.gvB];
  const out = new Float64Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
}

function unpackSums(packed: Float64Array, c: number, k: number): GradientSums {
  let at = 0;
  const take = (len: number) => packed.slice(at, at += len);
  return {
    dWeight: take(c),
    dBias: take(c),
    meanDots: take(k),
    varDots: take(k),
    gmB: take(c),
    gvB: take(c),
  };
}

/** Channel records (Grad) carrying the global GmB/GvB, flagged where they are not finite. */
function channelRecords(gmB: Float64Array, gvB: Float64Array): ArrayBuffer {
  const out = new ArrayBuffer(gmB.length * GRAD_BYTES);
  const f = new Float32Array(out), u = new Uint32Array(out);
  for (let j = 0; j < gmB.length; j++) {
    const ok = Number.isFinite(gmB[j]) && Number.isFinite(gvB[j]);
    f[16 * j] = ok ? gmB[j] : 0;
    f[16 * j + 1] = ok ? gvB[j] : 0;
    u[16 * j + 12] = ok ? 0 : 1;
  }
  return out;
}

/**
 * Opens a device and compiles the pipelines (once per backend instance: shapes travel in
 * uniforms). Rejects with a clear error when there is no adapter.
 */
export async function loadWebGpuBackend(
  options: WebGpuBackendOptions = {},
): Promise<WebGpuBackend> {
  const ctx = await openDevice(options);
  const device = ctx.device;
  device.pushErrorScope("validation");
  const pipelines = {} as Record<PipelineKind, GPUComputePipeline>;
  for (const [kind, code] of Object.entries(SOURCES) as [PipelineKind, string][]) {
    const module = device.createShaderModule({ code, label: `switchnorm ${kind}` });
    pipelines[kind] = device.createComputePipeline({
      label: `switchnorm ${kind}`,
      layout: "auto",
      compute: { module, entryPoint: "main" },
    });
  }
  const err = await ctx.guard(device.popErrorScope());
  if (err) {
    await ctx.destroy();
    throw new Error(`webgpu backend: the shaders did not compile on this device: ${err.message}`);
  }
  return new WebGpuBackend(ctx, pipelines);
}
