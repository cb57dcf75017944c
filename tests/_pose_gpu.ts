/**
 * A test-only preload (`--preload tests/_pose_gpu.ts`) under which the adapter reports itself as
 * no fallback adapter, so that the WebGPU backend configures its passes on lavapipe as on a GPU:
 * 64 threads in the group passes (8 on a fallback adapter), 16 elements per thread in the
 * statistics pass (256) and no loop limit in its plans (`loopLimit`), as on NVIDIA.
 * `backends/_webgpu_device.ts` reads `adapter.info.isFallbackAdapter` (and the older
 * `adapter.isFallbackAdapter`); this wraps both getters of GPUAdapter.prototype. The automatic
 * backend choice (`backends/select.ts`) reads the same flag, so under the pose it takes WebGPU on
 * lavapipe too; `device.adapterInfo` is not wrapped.
 *
 * With tests/_gpu_lid.ts (tests/_gpu_lid_orders.ts) it runs every workgroup's invocations in another order at a GPU's
 * thread counts: `GPU_LID=reverse deno test -A --preload tests/_pose_gpu.ts --preload
 * tests/_gpu_lid.ts tests/X_test.ts`.
 *
 * @module
 */

const proto = GPUAdapter.prototype as unknown as Record<string, unknown>;
const infoGetter = Object.getOwnPropertyDescriptor(proto, "info")?.get;
if (!infoGetter) throw new Error("tests/_pose_gpu.ts: GPUAdapter.prototype has no info getter");

Object.defineProperty(proto, "info", {
  configurable: true,
  get(this: GPUAdapter) {
    const info = infoGetter.call(this) as GPUAdapterInfo;
    return {
      vendor: info.vendor,
      architecture: info.architecture,
      device: info.device,
      description: info.description,
      subgroupMinSize: info.subgroupMinSize,
      subgroupMaxSize: info.subgroupMaxSize,
      isFallbackAdapter: false,
    };
  },
});
if (Object.getOwnPropertyDescriptor(proto, "isFallbackAdapter")) {
  Object.defineProperty(proto, "isFallbackAdapter", { configurable: true, get: () => false });
}
