/**
 * A test-only preload that runs every workgroup's invocations of the WebGPU backend's passes in
 * another order (tests/_gpu_lid_orders.ts says which and why): GPU_LID=spread (the default),
 * spread_up, reverse, swap or halves. With tests/_pose_gpu.ts, at a GPU's thread counts:
 *
 *   GPU_LID=spread deno test -A --preload tests/_pose_gpu.ts --preload tests/_gpu_lid.ts tests/X_test.ts
 *
 * @module
 */
import { installGpuLid } from "./_gpu_lid_orders.ts";

/** What the install on import renumbered: entry points per pipeline kind. */
export const RENUMBERED: Record<string, { code: string; entries: number }> = await installGpuLid(
  Deno.env.get("GPU_LID") ?? "spread",
);
