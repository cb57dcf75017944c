/**
 * Switchable Normalization (SN; Luo et al., ICLR 2019 / TPAMI 2021) for Deno: `SwitchNorm1d`,
 * `SwitchNorm2d` and `SwitchNorm3d` layers that learn to mix instance, layer and batch
 * normalization, and give the same numbers as the authors' PyTorch code. Forward, backward
 * (with the parameter gradients), PyTorch state dicts, the paper's batch average, SyncSN across
 * data-parallel replicas and Sparse SN.
 *
 * Three backends behind one API: a Rust kernel compiled to WebAssembly with 128-bit SIMD
 * (`"wasm"`, the CPU default), WGSL compute shaders on WebGPU (`"webgpu"`, with tensors that stay
 * on the GPU: {@linkcode GpuTensor}, {@linkcode wrapGpuBuffer}) and a float64 TypeScript
 * reference (`"reference"`, anywhere). `"auto"` (the default) picks per call and says why in
 * `layer.backendInfo`: the backend a resident tensor lives in, else WASM (WebGPU only for tensors
 * resident there: on the GPU measured, it was slower end to end); where WebAssembly SIMD is
 * missing or the runtime refuses to compile WebAssembly it falls back to the reference with a
 * one-time warning. No dependencies and no permissions: the WebAssembly module and the shaders ship
 * inside the package's `.ts` modules.
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
export { SwitchNorm } from "./_layer.ts";
export type { SwitchNormState } from "./_layer_state.ts";
export type { BackwardOptions, ForwardOptions } from "./_call_args.ts";
export { SwitchNorm1d, SwitchNorm2d, SwitchNorm3d } from "./_layers.ts";
export type { SwitchNormNdOptions, SwitchNormOptions } from "./_options.ts";
export type { Gradients } from "./_params.ts";
export type {
  LoadStateDictOptions,
  LoadStateDictResult,
  RunningBuffers,
  ShapedTensor,
  StateDict,
  StateDictOptions,
  StateDictParams,
  StateValue,
} from "./_state_dict.ts";
export { readSafetensors, type SafeTensor, type SafetensorsDtype } from "./_safetensors.ts";
export { type TensorToWrite, writeSafetensors } from "./_safetensors_write.ts";
export type { SyncGroup } from "./_sync.ts";
export type { BackendName, ResidentTensor } from "./backends/_backend.ts";
export type { BackendRequest } from "./backends/select.ts";
export { GpuTensor } from "./backends/_webgpu_tensor.ts";
export { webgpuDevice, wrapGpuBuffer } from "./backends/_webgpu_public.ts";
export { WasmRefusedError } from "./backends/wasm.ts";
export { getNumThreads, setNumThreads } from "./_threads.ts";
