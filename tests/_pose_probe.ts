/**
 * Prints, as JSON, whether the WebGPU backend's device takes its adapter for a fallback adapter,
 * and the thread counts it configures from that: [isFallbackAdapter, groupWorkgroupSize,
 * elementsPerThread]. Run by tests/gpu_lid_test.ts with and without tests/_pose_gpu.ts.
 *
 * @module
 */
import { openDevice } from "../backends/_webgpu_device.ts";

const ctx = await openDevice();
console.log(
  JSON.stringify([ctx.adapter.isFallbackAdapter, ctx.groupWorkgroupSize, ctx.elementsPerThread]),
);
ctx.device.destroy();
