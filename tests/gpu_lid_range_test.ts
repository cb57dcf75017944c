/**
 * WebGPU test files run again with a GPU's thread counts (tests/_pose_gpu.ts: 64 threads in the
 * group passes, 16 elements per thread) and every workgroup's invocations in another order
 * (tests/_gpu_lid.ts; GPU_LID, default `spread`), on whatever adapter runs them: lavapipe in CI.
 * lavapipe runs a workgroup's invocations in SIMD batches of 8, lowest index first, so a read of
 * workgroup memory that no barrier orders after its write passes there whenever its writer has
 * the lower index, and may fail on a GPU. Spread, a small group's members (the lowest indices)
 * each run in a batch of their own, the highest first: with the barrier after sn_group_stats'
 * unit (`w_unit`) removed, `zero_member_unit_test.ts` fails here and passes plainly (NUMERICS.md,
 * session 53). The files: the agreement of random problems with the float64 reference (forward
 * and backward, every pass), and `zero_member_unit_test.ts`, whose class (constant scaled rows
 * beside a row of zeros) gives y NaN on an H100 (NUMERICS.md, NVIDIA's Vulkan driver). Their own
 * runs stay in their files; this one registers every test of them again.
 *
 * Any other WebGPU test file runs so with
 * `deno test -A --preload tests/_pose_gpu.ts --preload tests/_gpu_lid.ts tests/X_test.ts`
 * (GPU_LID=reverse, swap or halves: other orders).
 *
 * @module
 */
import "./_pose_gpu.ts";
import "./_gpu_lid.ts";
import "./webgpu_agreement_test.ts";
import "./zero_member_unit_test.ts";
