/**
 * The WebGPU entry points mod.ts exports: the shared device, and wrapping a GPUBuffer of your own
 * as a tensor layers can take.
 *
 * Depends on the backend choice (select.ts) and GpuTensor only.
 *
 * @module
 */
import { webgpuBackend } from "./select.ts";
import type { GpuTensor } from "./_webgpu_tensor.ts";

/**
 * The GPUDevice that layers with backend "webgpu" run on (started on first use; the same device
 * for every layer of the process). Create your buffers on it to pass them to
 * {@linkcode wrapGpuBuffer}.
 *
 * @throws {Error} (rejects) when there is no WebGPU (no `navigator.gpu`), no adapter, or the
 * adapter refuses a device or the shaders; the message names the cause.
 * @example
 * ```ts ignore
 * import { webgpuDevice } from "./mod.ts";
 * const device = await webgpuDevice();
 * console.log(device.limits.maxStorageBufferBindingSize);
 * ```
 */
export async function webgpuDevice(): Promise<GPUDevice> {
  return (await webgpuBackend()).device;
}

/**
 * Wraps a GPUBuffer of yours (made on {@linkcode webgpuDevice}, usage STORAGE | COPY_SRC, and
 * COPY_DST to serve as `out`; at least `length * 4` bytes rounded up to a multiple of 16) as a
 * tensor of `shape` that layers on "webgpu" accept and fill. Disposing the tensor leaves your
 * buffer alone.
 *
 * @param buffer a GPUBuffer of {@linkcode webgpuDevice}'s device.
 * @param shape row-major shape, positive integers (e.g. `[N, C, H, W]`).
 * @throws {TypeError} (rejects) if buffer is not a GPUBuffer, shape is not an array of positive
 * integers, or the buffer lacks the usages above.
 * @throws {RangeError} (rejects) if the buffer is smaller than the shape needs.
 * @throws {Error} (rejects) as {@linkcode webgpuDevice} does where WebGPU cannot start.
 * @example
 * ```ts ignore
 * import { SwitchNorm2d, webgpuDevice, wrapGpuBuffer } from "./mod.ts";
 * const device = await webgpuDevice();
 * const shape = [1, 4, 8, 8];
 * const buffer = device.createBuffer({
 *   size: 4 * 8 * 8 * 4,
 *   usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
 * });
 * device.queue.writeBuffer(buffer, 0, new Float32Array(256).map(Math.random));
 * const x = await wrapGpuBuffer(buffer, shape);
 * const y = await new SwitchNorm2d(4, { backend: "webgpu" }).forward(x);
 * console.log(y.shape, (await y.read()).length);
 * ```
 */
export async function wrapGpuBuffer(
  buffer: GPUBuffer,
  shape: readonly number[],
): Promise<GpuTensor> {
  return (await webgpuBackend()).wrap(buffer, shape);
}
