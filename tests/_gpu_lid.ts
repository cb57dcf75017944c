/**
 * A test-only preload that renumbers the invocations of every workgroup of the WebGPU backend's
 * passes (`--preload tests/_gpu_lid.ts`, GPU_LID=reverse|swap|halves|spread, default spread): each
 * entry point's `local_invocation_index` becomes a permutation of itself, so that the thread that
 * writes a workgroup variable on lavapipe early (llvmpipe runs a workgroup's invocations in SIMD
 * batches one after another, lowest index first, from barrier to barrier) now runs late, as a
 * GPU's warps may in any order. A correct pass gives the same result under any renumbering, up
 * to the rounding of sums taken in another order; a read of workgroup memory that a barrier does
 * not order after its write (a race) is what this makes visible where lavapipe's fixed order
 * hid it.
 *
 * - `reverse`: W - 1 - i (the last batch runs first);
 * - `swap`: i ^ 1 (neighbours trade places inside a SIMD batch);
 * - `halves`: i ^ W / 2 (the two halves of a workgroup trade places, each in its own order);
 * - `spread`: lane j of batch b (i = 8 b + j) becomes j W / 8 + (W / 8 - 1 - b), so that the
 *   lowest indices, which hold a small group's members, each run in a batch of their own, the
 *   highest first (`reverse` where W < 8).
 *
 * @module
 */
import { rewriteBackendSources } from "./_wgsl_parse.ts";

/** The permutations, as WGSL of the raw index `lid_in` and the workgroup size `W` (a u32). */
export const PERMUTATIONS: Record<string, string> = {
  reverse: "W - 1u - lid_in",
  swap: "lid_in ^ 1u",
  halves: "lid_in ^ (W / 2u)",
  spread:
    "select(W - 1u - lid_in, (lid_in % 8u) * (W / 8u) + (W / 8u - 1u - lid_in / 8u), W >= 8u)",
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

/** What the install on import renumbered: entry points per pipeline kind. */
export const RENUMBERED: Record<string, { code: string; entries: number }> =
  await rewriteBackendSources(
    "lid_in: u32",
    (_device, src) => Promise.resolve(renumber(src, Deno.env.get("GPU_LID") ?? "spread")),
  );
