/**
 * SyncSN on WASM, forward: this replica's BN partials (count, mean, M2, left in the statistics
 * area by a statistics pass run with MODE_BN_PARTIALS) merged with the other replicas', and the
 * global mean and variance written back where the normalize pass reads them. (The backward's
 * step, adding the packed gradient sums up across replicas, is one call inside _wasm_backward.ts.)
 *
 * Depends on the shared Backend types, the ABI mirror and the memory regions (_wasm_regions.ts).
 *
 * @module
 */
import type { BatchSync, NormProblem } from "./_backend.ts";
import { MODE_BN_PARTIALS } from "./_wasm_abi.ts";
import type { LayerSlot, WasmRegions } from "./_wasm_regions.ts";

/**
 * Where a cross-replica merge may ask this replica to sum rows again (layout "nd", a forward
 * that a backward may follow: see `BatchSync.mergeStats`): the statistics pass's `mode` and the
 * layer block's offset, and `relocate`, which finds x and the shared scratch region again after
 * the gather's gap (another call may have moved them or rewritten x's copy).
 */
export interface RowsAgain {
  readonly mode: number;
  readonly layer: number;
  relocate(): { x: number; scratch: number };
}

/**
 * Merges this replica's BN partials with the other replicas' and writes the merged mean and
 * variance into the statistics area at `stats` of `slot`; resolves to the global batch size.
 * With `again`, the merge may take a second gather (`nd::refine_channels`).
 */
export async function mergeStats(
  mem: WasmRegions,
  problem: NormProblem,
  sync: BatchSync,
  slot: LayerSlot,
  stats: number,
  again?: RowsAgain,
): Promise<number> {
  const { n, c, m } = problem;
  const at = mem.bnAt(problem, stats) >>> 3;
  const partials = (f64: Float64Array) => ({
    mean: f64.slice(at, at + c),
    m2: f64.slice(at + c, at + 2 * c),
  });
  const local = partials(mem.heap.f64);
  const merged = again
    ? await sync.mergeStats(n, local.mean, local.m2, narrowestRows(mem.heap.f64, stats, n, c), (
      channels,
    ) => {
      if (slot.released) throw new Error("wasm backend: the layer was released during its forward");
      const { x, scratch } = again.relocate();
      new Uint8Array(mem.heap.buffer, scratch, c).set(channels);
      const mode = again.mode | MODE_BN_PARTIALS;
      mem.k.sn_refine_channels_nd(x, n, c, m, mode, again.layer, stats, scratch);
      return Promise.resolve(partials(mem.heap.f64));
    })
    : await sync.mergeStats(n, local.mean, local.m2);
  if (slot.released) throw new Error("wasm backend: the layer was released during its forward");
  // nd: var_bn = M2 / N over the IN statistics; 1d: the unbiased variance over n.
  const denominator = problem.layout === "1d" ? merged.count - 1 : merged.count;
  const out = mem.heap.f64;
  out.set(merged.mean, at);
  for (let j = 0; j < c; j++) out[at + c + j] = merged.m2[j] / denominator;
  return merged.count;
}

/** Per channel, the smallest var_in of its n rows (the statistics area starts mu_in, var_in). */
function narrowestRows(f64: Float64Array, stats: number, n: number, c: number): Float64Array {
  const varIn = (stats >>> 3) + n * c;
  const out = new Float64Array(c).fill(Infinity);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) out[j] = Math.min(out[j], f64[varIn + i * c + j]);
  }
  return out;
}
