/**
 * Switchable Normalization (SN) for Deno: layers that give the same numbers as the authors'
 * PyTorch SwitchNorm1d/2d/3d, computed by a WebAssembly SIMD kernel on the CPU (or a plain
 * TypeScript reference), behind one API.
 *
 * @example
 * ```ts
 * import { SwitchNorm2d } from "./mod.ts";
 * const sn = new SwitchNorm2d(4);
 * const x = Float32Array.from({ length: 2 * 4 * 5 * 5 }, () => Math.random());
 * const y = await sn.forward(x, [2, 4, 5, 5]);
 * console.log(sn.backendInfo, y.length);
 * ```
 *
 * @module
 */
export {
  type ForwardOptions,
  type Gradients,
  SwitchNorm,
  SwitchNorm1d,
  SwitchNorm2d,
  SwitchNorm3d,
  type SwitchNormNdOptions,
  type SwitchNormOptions,
} from "./_layer.ts";
export type { StateDict, StateValue } from "./_state_dict.ts";
export type { SyncGroup } from "./_sync.ts";
export type { BackendName, ResidentTensor } from "./backends/_backend.ts";
export type { BackendRequest } from "./backends/select.ts";
export { GpuTensor } from "./backends/_webgpu_tensor.ts";
export { webgpuDevice, wrapGpuBuffer } from "./backends/_webgpu_public.ts";
export { getNumThreads, setNumThreads } from "./backends/_wasm_threads.ts";
