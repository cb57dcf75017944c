/**
 * The WebGPU backend's buffer lifetimes: each layer's device buffers (gamma/beta, the running
 * buffers and the statistics a forward keeps for its backward), their upload when the layer's
 * versions move, the readback of running buffers the device updated, and the submit/readback
 * steps every call shares (error scopes, pooled staging buffers).
 *
 * Depends on the shared Backend types (_backend.ts) and the device (_webgpu_device.ts) only.
 *
 * @module
 */
import type { LayerParams } from "./_backend.ts";
import type { GpuContext } from "./_webgpu_device.ts";

/** What the backend keeps on the device for one layer. */
export interface LayerState {
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
export class SavedStats {
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

/** queue.writeBuffer of a Float32Array, whatever kind of ArrayBuffer is behind it. */
export function write(
  queue: GPUQueue,
  buffer: GPUBuffer,
  offset: number,
  data: Float32Array,
): void {
  // Deno's writeBuffer panics (killing the process) on a detached buffer: refuse it instead.
  if ((data.buffer as ArrayBuffer).detached) {
    throw new TypeError("webgpu backend: an input's ArrayBuffer was detached during the call");
  }
  queue.writeBuffer(buffer, offset, data as Float32Array<ArrayBuffer>);
}

/** The version of `params`' running buffers (their own, or the parameters' one). */
export function runningVersion(params: LayerParams): number {
  return params.runningVersion ?? params.version;
}

/** Submits the command buffer `record` fills, failing with WebGPU's error if it is invalid. */
export async function submit(
  ctx: GpuContext,
  what: "forward" | "backward",
  record: (enc: GPUCommandEncoder) => void,
): Promise<void> {
  const device = ctx.device;
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
export async function readBack<T>(
  ctx: GpuContext,
  staging: GPUBuffer,
  bytes: number,
  use: (data: ArrayBuffer) => T,
): Promise<T> {
  try {
    await ctx.guard(staging.mapAsync(1, /* GPUMapMode.READ */ 0, bytes));
    const result = use(staging.getMappedRange(0, bytes));
    staging.unmap();
    ctx.release("staging", staging);
    return result;
  } catch (e) {
    ctx.destroyLater([staging]);
    throw e;
  }
}

/** The device state of every layer one backend instance has run. */
export class DeviceLayers {
  readonly #ctx: GpuContext;
  readonly #layers = new Map<number, LayerState>();
  #disposed = false;

  constructor(ctx: GpuContext) {
    this.#ctx = ctx;
  }

  /** The layer's device state, created on first use, with parameters uploaded when newer. */
  state(params: LayerParams, c: number): LayerState {
    const ctx = this.#ctx;
    let s = this.#layers.get(params.layerId);
    if (s?.released) s = undefined; // being freed after a final sync: start afresh
    const queue = ctx.device.queue;
    if (!s) {
      s = {
        affine: ctx.device.createBuffer({ size: Math.max(16, 8 * c), usage: 0x80 | 0x08 }),
        running: ctx.device.createBuffer({
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
    if (this.#ctx.lost !== undefined) {
      // Say once that the newest running buffers are gone; the CPU copy is what remains.
      s.stale = false;
      this.#layers.delete(params.layerId);
      throw new Error(
        `webgpu backend: the running buffers updated on the GPU since the last sync were lost ` +
          `with the device (${this.#ctx.lost}); the layer keeps its last synced values`,
      );
    }
    const ctx = this.#ctx, c = params.runningMean.length;
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
  release(params: LayerParams): void {
    const s = this.#layers.get(params.layerId);
    if (!s) return;
    if ((s.stale || s.syncing) && this.#ctx.lost === undefined && !this.#disposed) {
      s.released = true;
      this.syncRunning(params).catch(() => {});
      return;
    }
    this.#free(params.layerId, s);
  }

  /** Frees the device buffers of a layer that was garbage-collected: nothing to read back. */
  forget(layerId: number): void {
    const s = this.#layers.get(layerId);
    if (!s) return;
    if (s.syncing) s.released = true; // freed when that read ends
    else this.#free(layerId, s);
  }

  #free(layerId: number, s: LayerState): void {
    if (this.#layers.get(layerId) === s) this.#layers.delete(layerId);
    s.saved?.release(true);
    this.#ctx.destroyLater([s.affine, s.running]);
  }

  /** Number of layers with device state. */
  get count(): number {
    return this.#layers.size;
  }

  /** Number of layers holding statistics kept for a backward. */
  get savedCount(): number {
    return [...this.#layers.values()].filter((s) => s.saved !== undefined).length;
  }

  /** Frees every layer's buffers once the queue is done (the backend is being disposed). */
  dispose(): void {
    this.#disposed = true;
    const buffers = [...this.#layers.values()].flatMap((s) => [s.affine, s.running]);
    for (const s of this.#layers.values()) s.saved?.release(true);
    this.#layers.clear();
    this.#ctx.destroyLater(buffers);
  }
}

/**
 * A forward that failed after its submit moved the device's running buffers, but not the
 * layer's: the device copy is forgotten, so that the next call uploads the layer's (unchanged)
 * values again. (When the device held newer values than the layer, there is nothing older to
 * go back to; that happens only on a lost device, which the layer replaces anyway.)
 */
export function forgetRunning(state: LayerState): void {
  state.runningVersion = undefined;
  state.stale = false;
}
