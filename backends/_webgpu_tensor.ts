/**
 * GpuTensor: a float32 tensor held in a GPUBuffer, so that layers on the webgpu backend chain
 * without reading data back.
 *
 * Depends on the shared Backend types, the device (_webgpu_device.ts), the plan's buffer padding
 * (_webgpu_plan.ts) and _validate.ts only.
 *
 * @module
 */
import type { ResidentTensor } from "./_backend.ts";
import { type GpuContext, USAGE } from "./_webgpu_device.ts";
import { paddedBytes } from "./_webgpu_plan.ts";
import { describeShape, describeValue } from "../_validate.ts";

/**
 * A float32 tensor in a GPUBuffer on the webgpu backend's device, row-major with `shape`.
 * Made by `layer.upload()` on a layer that runs on "webgpu", returned by `forward()` on such a
 * tensor, or made from a buffer of your own with {@linkcode wrapGpuBuffer}. `buffer` and
 * `device` are there for your own WebGPU work (bind it, copy from it); the buffer holds
 * `length` floats from offset 0 and is at least `length * 4` bytes rounded up to 16.
 *
 * @example
 * ```ts ignore
 * import { SwitchNorm2d } from "./mod.ts";
 * const a = new SwitchNorm2d(8, { backend: "webgpu" });
 * const b = new SwitchNorm2d(8, { backend: "webgpu" });
 * const shape = [2, 8, 16, 16];
 * using x = await a.upload(new Float32Array(2 * 8 * 16 * 16).fill(1), shape);
 * using h = await a.forward(x); // stays on the GPU
 * using y = await b.forward(h);
 * const values = await y.read(); // the one readback
 * await a.sync(); // training updated a's running buffers on the GPU: bring them back
 * console.log(values.length, a.stateDict().running_mean);
 * ```
 */
export class GpuTensor implements ResidentTensor {
  /** Always "webgpu". */
  readonly backend = "webgpu" as const;
  /** Row-major shape. */
  readonly shape: readonly number[];
  /** Number of float32 elements. */
  readonly length: number;
  #buffer?: GPUBuffer;
  readonly #ctx: GpuContext;
  readonly #owned: boolean;

  /**
   * Internal: use `layer.upload()`, `forward()` or {@linkcode wrapGpuBuffer}.
   * @ignore
   * @param ctx the device the buffer lives on
   * @param buffer the data, from offset 0
   * @param shape row-major shape
   * @param owned whether dispose() gives the buffer back to the backend (else it is the caller's)
   */
  constructor(ctx: GpuContext, buffer: GPUBuffer, shape: readonly number[], owned: boolean) {
    this.#ctx = ctx;
    this.#buffer = buffer;
    this.shape = Object.freeze([...shape]);
    this.length = shape.reduce((a, b) => a * b, 1);
    this.#owned = owned;
  }

  /**
   * The GPUBuffer holding the data.
   *
   * @throws {Error} after dispose().
   */
  get buffer(): GPUBuffer {
    if (!this.#buffer) throw new Error("GpuTensor: used after dispose()");
    return this.#buffer;
  }

  /** The GPUDevice the buffer belongs to. */
  get device(): GPUDevice {
    return this.#ctx.device;
  }

  /**
   * Internal: whether this tensor lives on `ctx`'s device.
   * @ignore
   */
  isOn(ctx: GpuContext): boolean {
    return this.#ctx === ctx;
  }

  /**
   * Copies the data out into a new Float32Array (one GPU round trip).
   *
   * @throws {Error} (rejects) after dispose() or once the GPU device is lost.
   * @example
   * ```ts ignore
   * import { SwitchNorm2d } from "./mod.ts";
   * const sn = new SwitchNorm2d(2, { backend: "webgpu" }); // needs a WebGPU adapter
   * const t = await sn.upload(new Float32Array(16).fill(1), [2, 2, 2, 2]);
   * console.log(await t.read()); // Float32Array(16) [ 1, 1, ... ]
   * t.dispose(); // or `using t = ...`
   * ```
   */
  async read(): Promise<Float32Array> {
    const ctx = this.#ctx, src = this.buffer;
    ctx.check();
    const bytes = this.length * 4;
    const staging = ctx.acquire("staging", bytes);
    const enc = ctx.device.createCommandEncoder();
    enc.copyBufferToBuffer(src, 0, staging, 0, Math.ceil(bytes / 4) * 4);
    ctx.device.queue.submit([enc.finish()]);
    await ctx.guard(staging.mapAsync(1, /* GPUMapMode.READ */ 0, bytes));
    const out = new Float32Array(staging.getMappedRange(0, bytes).slice(0));
    staging.unmap();
    ctx.release("staging", staging);
    return out;
  }

  /**
   * Frees the tensor: a buffer the backend made goes back to its pool (destroyed later, once
   * the GPU is done with it); a wrapped buffer of yours is left alone. Idempotent.
   *
   * @example
   * ```ts ignore
   * import { SwitchNorm2d } from "./mod.ts";
   * const sn = new SwitchNorm2d(2, { backend: "webgpu" }); // needs a WebGPU adapter
   * const t = await sn.upload(new Float32Array(16).fill(1), [2, 2, 2, 2]);
   * console.log(await t.read()); // Float32Array(16) [ 1, 1, ... ]
   * t.dispose(); // or `using t = ...`
   * ```
   */
  dispose(): void {
    const b = this.#buffer;
    this.#buffer = undefined;
    if (b && this.#owned) this.#ctx.release("storage", b);
  }

  /** Same as dispose(), for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Checks an upload of `data` as a tensor of `shape` to `device` before any buffer is made: a
 * buffer above maxBufferSize would be an invalid one, which WebGPU reports only at a later use.
 */
export function checkUpload(device: GPUDevice, data: Float32Array, shape: readonly number[]): void {
  if (!(data instanceof Float32Array)) {
    throw new TypeError("webgpu backend: upload needs a Float32Array");
  }
  const ok = Array.isArray(shape) && shape.length > 0 &&
    shape.every((d) => Number.isSafeInteger(d) && d > 0);
  if (!ok || shape.reduce((a, b) => a * b, 1) !== data.length) {
    throw new RangeError(
      `webgpu backend: shape [${shape}] does not describe ${data.length} floats`,
    );
  }
  const need = paddedBytes(data.length), max = device.limits.maxBufferSize;
  if (need > max) {
    throw new RangeError(
      `webgpu backend: an upload of ${data.length} floats needs a buffer of ${need} bytes, more ` +
        `than this device's maxBufferSize (${max})`,
    );
  }
}

/** Checks that a caller's buffer can back a tensor of `shape` on the backend's `device`. */
export function checkWrappable(
  device: GPUDevice,
  buffer: GPUBuffer,
  shape: readonly number[],
): void {
  if (typeof buffer !== "object" || buffer === null || typeof buffer.size !== "number") {
    throw new TypeError("wrapGpuBuffer: buffer must be a GPUBuffer");
  }
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new TypeError(
      `wrapGpuBuffer: shape must be an array of positive integers, got ${
        Array.isArray(shape) ? `[${describeShape(shape)}]` : describeValue(shape)
      }`,
    );
  }
  const length = shape.reduce((a, b) => a * b, 1);
  const need = paddedBytes(length);
  if (buffer.size < need) {
    throw new RangeError(
      `wrapGpuBuffer: a [${shape.join(", ")}] tensor needs a buffer of at least ${need} bytes ` +
        `(${length} floats rounded up to whole vec4s), got ${buffer.size}`,
    );
  }
  // WebGPU makes a buffer above the limit anyway, as an invalid object that keeps its size.
  if (buffer.size > device.limits.maxBufferSize) {
    throw new RangeError(
      `wrapGpuBuffer: the buffer's ${buffer.size} bytes exceed this device's maxBufferSize ` +
        `(${device.limits.maxBufferSize}): it is not a valid buffer of this device`,
    );
  }
  const needUsage = USAGE.storage & ~0x08; // STORAGE | COPY_SRC; COPY_DST only to be written
  if ((buffer.usage & needUsage) !== needUsage) {
    throw new TypeError(
      "wrapGpuBuffer: the buffer needs GPUBufferUsage.STORAGE and COPY_SRC (and COPY_DST to " +
        "be used as `out`)",
    );
  }
}

/** `v` itself when it is a Float32Array (a backend's array argument), else a TypeError. */
export function f32(what: string, v: unknown): Float32Array {
  if (!(v instanceof Float32Array)) {
    throw new TypeError(`webgpu backend: ${what} must be a Float32Array`);
  }
  return v;
}

/**
 * The buffer of a resident argument of a call, or a TypeError naming the argument where the
 * tensor was disposed (its own getter's message cannot say which argument it was).
 */
export function liveBuffer(t: GpuTensor, what: string): GPUBuffer {
  try {
    return t.buffer;
  } catch {
    throw new TypeError(
      `webgpu backend: ${what} must be a live tensor (made by upload or a call, not disposed)`,
    );
  }
}
