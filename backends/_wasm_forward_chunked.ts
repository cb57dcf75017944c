/**
 * The WASM forward of a Float32Array x of layout "nd" (into `out` or a new array), with its two
 * copies fused into the two passes: x goes into linear memory one chunk of whole rows at a time
 * and is measured while in cache (sn_stats_rows_nd, then sn_stats_derive_nd), and after the
 * per-row constants (sn_constants_nd) each chunk is normalized into a small staging block
 * (sn_normalize_rows_nd) and copied out to y at once.
 *
 * Depends on the shared Backend types, the kernels' ABI, the heap, the memory regions and the
 * SyncSN step.
 *
 * @module
 */
import type { LayerParams, NormProblem, RunningUpdate, SavedForward } from "./_backend.ts";
import { MODE_BN_PARTIALS, MODE_REFINE_MEANS } from "./_wasm_abi.ts";
import { alignUp16, ViewSlot } from "./_wasm_heap.ts";
import {
  batchAverageMode,
  type LayerSlot,
  modeOf,
  type WasmRegions,
  WasmSaved,
} from "./_wasm_regions.ts";
import { mergeStats } from "./_wasm_sync.ts";

/**
 * Bytes of x per chunk of the chunked Float32Array forward (at least; chunks are whole rows):
 * small enough that a chunk is still in cache when the statistics pass reads it right after its
 * copy, and that the normalized chunk is when it is copied out.
 */
const CHUNK_BYTES = 512 * 1024;

/** Whether `a` and `b` share memory without being the same range (in place is fine). */
export function overlapsShifted(a: Float32Array, b: Float32Array): boolean {
  if (a.buffer !== b.buffer || a.byteOffset === b.byteOffset) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/** The chunked forward of one backend instance (it keeps the views of its staging chunk). */
export class WasmChunkedForward {
  readonly #mem: WasmRegions;
  /** Views of the staging chunk: a full one and the last, shorter one. */
  readonly #chunkView = new ViewSlot(Float32Array);
  readonly #tailView = new ViewSlot(Float32Array);

  constructor(mem: WasmRegions) {
    this.#mem = mem;
  }

  /**
   * Runs the forward. Two copies (x in, y out) is the least a Float32Array path can do; copying
   * x in a second time instead of keeping it costs a full extra copy.
   */
  async run(
    problem: NormProblem,
    x: Float32Array,
    params: LayerParams,
    update: RunningUpdate,
    out: Float32Array | undefined,
    save: SavedForward | undefined,
  ): Promise<Float32Array> {
    const mem = this.#mem;
    mem.live();
    const { n, c, m } = problem;
    const rows = n * c, length = rows * m, k = mem.k;
    const sync = problem.sync && problem.training && problem.usingBN ? problem.sync : undefined;
    const slot: LayerSlot | undefined = save || sync ? mem.slot(params.layerId) : undefined;
    mem.checkSize(problem);
    const step = Math.min(rows, Math.ceil(CHUNK_BYTES / (4 * m)));
    const stagingAt = alignUp16(length * 4), ioBytes = stagingAt + step * m * 4;
    // The largest block first, so that running out of memory leaves the layer's regions alone.
    mem.ioEpoch++;
    mem.io.ensure(ioBytes);
    const regions = mem.prepare(problem, params, slot);
    const mode = modeOf(problem);
    // A backward may follow: rows of a mean near 0 are summed again (nd::row_moments).
    const statsMode = mode | (save ? MODE_REFINE_MEANS : 0);
    /** Stages x (a chunk at a time, each measured while in cache if `measure`); x's offset. */
    const stage = (measure: boolean) => {
      // x, then the staging block (16-byte aligned: length * 4 is a multiple of 4 only). The
      // epoch moves first: a failed ensure has freed the old copy.
      mem.ioEpoch++;
      const io = mem.io.ensure(ioBytes);
      const f32 = mem.heap.f32;
      for (let r = 0; r < rows; r += step) {
        const take = Math.min(step, rows - r), at = io + 4 * r * m;
        f32.set(x.subarray(r * m, (r + take) * m), at >>> 2);
        if (measure) k.sn_stats_rows_nd(at, r, take, n, c, m, regions.stats, statsMode);
      }
      return io;
    };
    let io = stage(true);
    const ioEpoch = mem.ioEpoch;
    const deriveMode = statsMode | (sync ? MODE_BN_PARTIALS : batchAverageMode(problem, update));
    k.sn_stats_derive_nd(io, n, c, m, deriveMode, regions.layer, regions.stats);
    let count = n;
    if (sync) {
      count = await mergeStats(mem, problem, sync, slot!, regions.stats);
      // Another call may have run in the gap, moved the shared regions and rewritten x's copy.
      mem.live();
      regions.scratch = mem.scratchFor(problem);
      if (mem.ioEpoch !== ioEpoch) io = stage(false);
    }
    const y = out ?? new Float32Array(length);
    const wide = k.sn_constants_nd(n, c, m, mode, regions.layer, regions.stats, regions.scratch);
    const staging = io + stagingAt;
    const buffer = mem.heap.buffer;
    for (let r = 0; r < rows; r += step) {
      const take = Math.min(step, rows - r), len = take * m;
      k.sn_normalize_rows_nd(io + 4 * r * m, staging, take, m, regions.scratch + 16 * r, wide);
      y.set((take === step ? this.#chunkView : this.#tailView).get(buffer, staging, len), r * m);
    }
    if (problem.training && problem.usingBN) {
      mem.updateRunning(problem, params, update, regions.stats);
    }
    if (save) {
      save.problem = problem;
      save.x = x;
      save.state = new WasmSaved(slot!, ++slot!.epoch, slot!.stats.generation, count);
    }
    return y;
  }
}
