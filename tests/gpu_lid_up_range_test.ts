/**
 * WebGPU test files run again with a GPU's thread counts (tests/_pose_gpu.ts: 64 threads in the
 * group passes, 16 elements per thread) and every workgroup's invocations in the `spread_up`
 * order (tests/_gpu_lid_orders.ts: the lowest indices, a small group's members, each in a SIMD
 * batch of their own, the lowest first), on whatever adapter runs them: lavapipe in CI. It shows a
 * read of workgroup memory that a barrier does not order after a higher-indexed writer in another
 * batch (a reduction tree's lower levels, thread i reading i + 1, 2 or 4), which lavapipe's own
 * order runs in one batch and tests/gpu_lid_range_test.ts's `spread` runs writer first. The files:
 * the agreement of random problems with the float64 reference (forward and backward, every pass), and
 * `zero_member_unit_test.ts`, whose class (constant scaled rows beside a row of zeros) gives y NaN
 * on an H100 (NUMERICS.md, NVIDIA's Vulkan driver). Their own runs stay in their files; this one
 * registers every test of them again.
 *
 * Any other WebGPU test file runs so with
 * `GPU_LID=spread_up deno test -A --preload tests/_pose_gpu.ts --preload tests/_gpu_lid.ts tests/X_test.ts`.
 *
 * @module
 */
import "./_pose_gpu.ts";
import { installGpuLid } from "./_gpu_lid_orders.ts";
import "./webgpu_agreement_test.ts";
import "./zero_member_unit_test.ts";

// Before any test compiles a pipeline (the imports above only register tests). Every pass must
// have been renumbered, or these tests would only repeat their files' own runs.
const renumbered = Object.values(await installGpuLid("spread_up")).filter((r) => r.entries === 1);
if (renumbered.length < 28) {
  throw new Error(
    `spread_up: ${renumbered.length} passes renumbered, expected every pass (28 or more)`,
  );
}
