/**
 * The WebGPU backend: SN forward and backward as WGSL compute shaders (shaders/*.wgsl), with the
 * running buffers updated on the GPU. This file implements the shared Backend interface and
 * dispatches; each job lives in its own module:
 *
 * - _webgpu_forward.ts: the forward's plan, scratch buffers, dispatches and run (one submit,
 *   at most one readback);
 * - _webgpu_backward.ts: the backward's, likewise;
 * - _webgpu_sync.ts: SyncSN's cross-replica merges (BN statistics, gradient sums);
 * - _webgpu_buffers.ts: each layer's device buffers, running-buffer readback, submit/readback;
 * - _webgpu_pipelines.ts: the compiled pipelines and how a dispatch is bound;
 * - _webgpu_plan.ts / _webgpu_backward_plan.ts: the dispatch plans and uniforms (pure);
 * - _webgpu_device.ts: the device, its buffer pool and its loss; _webgpu_tensor.ts: GpuTensor.
 *
 * NaN and infinity never travel through float arithmetic in the shaders (WGSL lets a compiler
 * assume finite floats): each statistic carries flag bits saying what the float64 reference
 * would hold (NaN, +Inf, -Inf, or an undefined unbiased variance), and y is written as NaN
 * wherever a statistic it mixes is flagged, which is where the reference's y is NaN.
 *
 * @module
 */
import type { Backend, LayerParams, NormProblem, RunningUpdate } from "./_backend.ts";
import { type DeviceOptions, type GpuContext, openDevice } from "./_webgpu_device.ts";
import type { BackwardPlan } from "./_webgpu_backward_plan.ts";
import { DeviceLayers, write } from "./_webgpu_buffers.ts";
import { compilePipelines, type Engine, type Pipelines } from "./_webgpu_pipelines.ts";
import { encodeForward, prepareForward, runForward } from "./_webgpu_forward.ts";
import {
  type BackwardBindings,
  type BackwardBuffers,
  encodeBackward,
  prepareBackward,
  type PreparedBackward,
  runBackward,
} from "./_webgpu_backward.ts";
import { checkUpload, checkWrappable, GpuTensor } from "./_webgpu_tensor.ts";

/** Options of a backend instance (tests and the bench make their own instances). */
export type WebGpuBackendOptions = DeviceOptions;

/** SN forward on a GPU through WebGPU. One instance owns one device. */
export class WebGpuBackend implements Backend {
  /** Always "webgpu". */
  readonly name = "webgpu" as const;
  /** SyncSN: BN statistics take a round trip through the CPU to be merged across replicas. */
  readonly supportsSync = true;
  /** The device, its pool and its loss. */
  readonly ctx: GpuContext;
  readonly #engine: Engine;
  readonly #layers: DeviceLayers;
  #disposed = false;

  /** @internal Use {@linkcode loadWebGpuBackend}. */
  constructor(ctx: GpuContext, pipelines: Pipelines) {
    this.ctx = ctx;
    this.#layers = new DeviceLayers(ctx);
    this.#engine = { ctx, pipelines, layers: this.#layers };
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
    const prep = prepareForward(this.#engine, problem, params, update);
    encodeForward(this.#engine, pass, prep, x, y, "all");
    return prep.release;
  }

  /**
   * SN forward. Float32Array x: uploads it, runs, and reads y and (in training with BN) the new
   * running buffers back in one mapAsync, writing the buffers into `params`. GpuTensor x:
   * returns a new GpuTensor (or fills `out`) and reads nothing back; the running buffers stay
   * on the device ({@linkcode runningStale}) until {@linkcode syncRunning}. With SyncSN in
   * training the BN statistics make one extra round trip: read back, merged across replicas,
   * written back, between the statistics and the normalize passes.
   */
  forward(...args: Parameters<Backend["forward"]>): ReturnType<Backend["forward"]> {
    return runForward(this.#engine, ...args);
  }

  /**
   * Plans one backward and takes its scratch buffers (the uniforms are written at once).
   * @internal The bench records it into a timed pass with {@linkcode encodeBackward}.
   */
  prepareBackward(...args: BackwardBindings): PreparedBackward {
    return prepareBackward(this.#engine, ...args);
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
    encodeBackward(this.#engine, pass, plan, buffers, "all");
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
  backward(
    ...args: Parameters<NonNullable<Backend["backward"]>>
  ): ReturnType<NonNullable<Backend["backward"]>> {
    return runBackward(this.#engine, ...args);
  }

  /** True while the device holds running buffers newer than `params`' arrays. */
  runningStale(params: LayerParams): boolean {
    return this.#layers.runningStale(params);
  }

  /** Reads the device's running buffers into `params` (a no-op when they are not newer). */
  syncRunning(params: LayerParams): Promise<void> {
    return this.#layers.syncRunning(params);
  }

  /**
   * Frees the layer's device buffers. Running buffers newer on the device are first read back
   * into the layer (asynchronously; `layer.sync()` awaits it), so dispose() loses nothing.
   */
  releaseLayer(params: LayerParams): void {
    this.#layers.release(params);
  }

  /** Frees the device buffers of a layer that was garbage-collected: nothing to read back. */
  forgetLayer(layerId: number): void {
    this.#layers.forget(layerId);
  }

  /** Number of layers with device state (for tests of dispose). */
  get layerCount(): number {
    return this.#layers.count;
  }

  /** Number of layers holding statistics kept for a backward (for tests of what is kept). */
  get savedCount(): number {
    return this.#layers.savedCount;
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
    this.#layers.dispose();
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

/**
 * Opens a device and compiles the pipelines (once per backend instance: shapes travel in
 * uniforms). Rejects with a clear error when there is no adapter.
 */
export async function loadWebGpuBackend(
  options: WebGpuBackendOptions = {},
): Promise<WebGpuBackend> {
  const ctx = await openDevice(options);
  return new WebGpuBackend(ctx, await compilePipelines(ctx));
}
