/**
 * Renumberings of the invocations of every workgroup of the WebGPU backend's passes, for CPU
 * adapters (test-only; tests/_gpu_lid.ts is the preload that installs one): each entry point's
 * `local_invocation_index` becomes a permutation of itself, so that invocations run in another
 * order. llvmpipe (lavapipe) runs a workgroup's invocations in SIMD batches of 8, lowest index
 * first, from barrier to barrier: a read of workgroup memory that no barrier orders after its
 * write passes there whenever its writer's batch runs first, and may fail on a GPU, whose warps
 * run in any order. A correct pass gives the same result under any renumbering, up to the
 * rounding of sums taken in another order. No one order shows every race: a writer below its
 * reader (a small group's members publishing a unit that all threads read) needs the writer's
 * batch to run late, a reduction tree's reader (index i reading i + s) needs its own batch to run
 * early, which lavapipe's order already gives for s >= 8. So CI runs two (tests/gpu_lid_range_test.ts,
 * tests/gpu_lid_up_range_test.ts):
 *
 * - `spread`: lane j of batch b (index 8 b + j) becomes j W / 8 + (W / 8 - 1 - b): the lowest
 *   indices each run in a batch of their own, the highest first;
 * - `spread_up`: j W / 8 + b: the same, the lowest first;
 * - `reverse`: W - 1 - i (the last batch runs first);
 * - `swap`: i ^ 1 (neighbours trade places inside a batch);
 * - `halves`: i ^ W / 2 (the two halves of a workgroup trade places).
 *
 * Where W < 8 (one batch) `spread` is `reverse` and `spread_up` the identity; at W = 8 both are
 * the identity, and `swap` is where W = 1 (one batch either way: no order to change). The
 * workgroup size W is the first of `@workgroup_size`'s values (the passes are one-dimensional).
 *
 * @module
 */
import { rewriteBackendSources } from "./_wgsl_parse.ts";

/** The permutations, as WGSL of the raw index `lid_in` and the workgroup size `W` (a u32). */
export const PERMUTATIONS: Record<string, string> = {
  spread:
    "select(W - 1u - lid_in, (lid_in % 8u) * (W / 8u) + (max(W / 8u, 1u) - 1u - lid_in / 8u), W >= 8u)",
  spread_up: "select(lid_in, (lid_in % 8u) * (W / 8u) + lid_in / 8u, W >= 8u)",
  reverse: "W - 1u - lid_in",
  swap: "select(lid_in, lid_in ^ 1u, W >= 2u)",
  halves: "lid_in ^ (W / 2u)",
};

const ENTRY =
  /@workgroup_size\(([^)]*)\)\s*fn\s+(\w+)\s*\(([\s\S]*?)@builtin\(local_invocation_index\)\s+lid\s*:\s*u32([^{]*)\{/g;

/** `src` with every entry point's `lid` renumbered by `mode` (PERMUTATIONS). */
export function renumber(src: string, mode: string): { code: string; entries: number } {
  const perm = PERMUTATIONS[mode];
  if (!perm) {
    throw new RangeError(
      `GPU_LID must be one of ${Object.keys(PERMUTATIONS).join(", ")}, got "${mode}"`,
    );
  }
  let entries = 0;
  const code = src.replace(ENTRY, (_all, size: string, name: string, before: string, after) => {
    entries++;
    const w = `u32(${size.split(",")[0].trim()})`;
    return `@workgroup_size(${size})\nfn ${name}(${before}@builtin(local_invocation_index) lid_in: u32${after}{\n  let lid = ${
      perm.replaceAll("W", w)
    };`;
  });
  return { code, entries };
}

/**
 * Renumbers every source of the WebGPU backend by `mode` (PERMUTATIONS) before any pipeline
 * compiles; sources renumbered already are left as they are. Returns the entry points renumbered
 * per pipeline kind.
 */
export function installGpuLid(
  mode: string,
): Promise<Record<string, { code: string; entries: number }>> {
  renumber("", mode); // refuses an unknown mode before any device is opened
  return rewriteBackendSources(
    "lid_in: u32",
    (_device, src) => Promise.resolve(renumber(src, mode)),
  );
}
