/**
 * WebGPU test files run again with a GPU's thread counts (tests/_pose_gpu.ts: 64 threads in the
 * group passes, 16 elements per thread) and every workgroup's invocations in the `spread` order
 * (tests/_gpu_lid_orders.ts: the lowest indices, a small group's members, each in a SIMD batch of
 * their own, the highest first), on whatever adapter runs them: lavapipe in CI. It shows a read of
 * workgroup memory that a barrier does not order after a lower-indexed writer: with the barrier
 * after sn_group_stats' unit (`w_unit`) removed, `zero_member_unit_test.ts` fails here and passes
 * in its own file. tests/gpu_lid_up_range_test.ts runs the same files lowest first, for the
 * races this order hides (a reduction tree's reader running before its writer), and their own
 * files keep lavapipe's order (NUMERICS.md, session 53). The files: the agreement of random
 * problems with the float64 reference (forward and backward, every pass), and
 * `zero_member_unit_test.ts`, whose class (constant scaled rows beside a row of zeros) gives y NaN
 * on an H100 (NUMERICS.md, NVIDIA's Vulkan driver). Their own runs stay in their files; this one
 * registers every test of them again.
 *
 * Any other WebGPU test file runs so with
 * `GPU_LID=spread deno test -A --preload tests/_pose_gpu.ts --preload tests/_gpu_lid.ts tests/X_test.ts`.
 *
 * @module
 */
import "./_pose_gpu.ts";
import { installGpuLid } from "./_gpu_lid_orders.ts";
import "./webgpu_agreement_test.ts";
import "./zero_member_unit_test.ts";

// Before any test compiles a pipeline (the imports above only register tests). Every pass must
// have been renumbered, or these tests would only repeat their files' own runs.
const renumbered = Object.values(await installGpuLid("spread")).filter((r) => r.entries === 1);
if (renumbered.length < 28) {
  throw new Error(
    `spread: ${renumbered.length} passes renumbered, expected every pass (28 or more)`,
  );
}
