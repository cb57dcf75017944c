/**
 * SyncSN on WASM, forward: this replica's BN partials (count, mean, M2, left in the statistics
 * area by a statistics pass run with MODE_BN_PARTIALS) merged with the other replicas', and the
 * global mean and variance written back where the normalize pass reads them. (The backward's
 * step, adding the packed gradient sums up across replicas, is one call inside _wasm_backward.ts.)
 *
 * Depends on the shared Backend types and the memory regions (_wasm_regions.ts) only.
 *
 * @module
 */
import type { BatchSync, NormProblem } from "./_backend.ts";
import type { LayerSlot, WasmRegions } from "./_wasm_regions.ts";

/**
 * Merges this replica's BN partials with the other replicas' and writes the merged mean and
 * variance into the statistics area at `stats` of `slot`; resolves to the global batch size.
 */
export async function mergeStats(
  mem: WasmRegions,
  problem: NormProblem,
  sync: BatchSync,
  slot: LayerSlot,
  stats: number,
): Promise<number> {
  const { n, c } = problem;
  const at = mem.bnAt(problem, stats) >>> 3;
  const f64 = mem.heap.f64;
  const merged = await sync.mergeStats(n, f64.slice(at, at + c), f64.slice(at + c, at + 2 * c));
  if (slot.released) throw new Error("wasm backend: the layer was released during its forward");
  // nd: var_bn = M2 / N over the IN statistics; 1d: the unbiased variance over n.
  const denominator = problem.layout === "1d" ? merged.count - 1 : merged.count;
  const out = mem.heap.f64;
  out.set(merged.mean, at);
  for (let j = 0; j < c; j++) out[at + c + j] = merged.m2[j] / denominator;
  return merged.count;
}
