/**
 * The WASM forward on a resident x (either layout) or a Float32Array x of layout "1d": the
 * statistics pass (sn_stats_nd / sn_stats_1d) and the normalize pass (sn_normalize_nd /
 * sn_normalize_1d), with SyncSN's merge between them. (A Float32Array x of layout "nd" takes
 * the chunked path, _wasm_forward_chunked.ts.)
 *
 * Depends on the shared Backend types, the kernels' ABI, the memory regions, WasmTensor and the
 * SyncSN step.
 *
 * @module
 */
import type {
  LayerParams,
  NormProblem,
  ResidentTensor,
  RunningUpdate,
  SavedForward,
} from "./_backend.ts";
import { MODE_BN_PARTIALS, MODE_REFINE_MEANS } from "./_wasm_abi.ts";
import { ViewSlot } from "./_wasm_heap.ts";
import {
  batchAverageMode,
  modeOf,
  type Regions,
  type WasmRegions,
  WasmSaved,
} from "./_wasm_regions.ts";
import { WasmTensor } from "./_wasm_tensor.ts";
import { mergeStats } from "./_wasm_sync.ts";
import type { RowRunner } from "./_wasm_pool.ts";

/** The forward of one backend instance (it keeps the view of its output). */
export class WasmForward {
  readonly #mem: WasmRegions;
  /** Runs the passes, split across threads where there are any. */
  readonly #rows: RowRunner;
  readonly #outView = new ViewSlot(Float32Array);

  constructor(mem: WasmRegions, rows: RowRunner) {
    this.#mem = mem;
    this.#rows = rows;
  }

  /** The backend's forward for the cases this module handles (see WasmBackend.forward). */
  async run(
    problem: NormProblem,
    x: Float32Array | ResidentTensor,
    params: LayerParams,
    update: RunningUpdate,
    out?: Float32Array | ResidentTensor,
    save?: SavedForward,
  ): Promise<Float32Array | ResidentTensor> {
    const mem = this.#mem;
    mem.live();
    const { n, c, m } = problem;
    const length = n * c * m;
    const sync = problem.sync && problem.training && problem.usingBN ? problem.sync : undefined;
    const slot = save || sync ? mem.slot(params.layerId) : undefined;
    let xAt: number, yAt: number, ioEpoch = 0;
    /** The resident result: `out`, or a new tensor that an error must free. */
    let yt: WasmTensor | undefined;
    if (x instanceof Float32Array) {
      if (x.length !== length) {
        throw new RangeError(`wasm backend: x has ${x.length} elements, expected ${length}`);
      }
      if (out !== undefined && !(out instanceof Float32Array && out.length === length)) {
        throw new TypeError(`wasm backend: out must be a Float32Array of ${length} elements`);
      }
      mem.checkSize(problem);
      xAt = yAt = mem.stage(x);
      ioEpoch = mem.ioEpoch;
    } else {
      const xt = mem.own(x, "x", length);
      yt = out === undefined
        ? new WasmTensor(mem.heap, mem.heap.alloc(length * 4), xt.shape)
        : mem.own(out, "out", length);
      xAt = xt.byteOffset;
      yAt = yt.byteOffset;
    }
    try {
      const regions = mem.prepare(problem, params, slot);
      const mode = modeOf(problem);
      const refine = save && problem.layout === "nd" ? MODE_REFINE_MEANS : 0;
      const extra = (sync ? MODE_BN_PARTIALS : 0) | refine | batchAverageMode(problem, update);
      this.#statsPass(problem, xAt, mode | extra, regions);
      let count = n;
      if (sync) {
        count = await mergeStats(mem, problem, sync, slot!, regions.stats);
        // Another call may have run in the gap: the shared regions may have moved or been
        // rewritten, and x's copy with them.
        mem.live();
        regions.scratch = mem.scratchFor(problem);
        if (x instanceof Float32Array) {
          if (mem.ioEpoch !== ioEpoch) xAt = yAt = mem.stage(x);
        } else {
          xAt = mem.own(x, "x", length).byteOffset;
          yAt = mem.own(yt!, "out", length).byteOffset;
        }
      }
      this.#normalizePass(problem, xAt, yAt, mode, regions);
      if (problem.training && problem.usingBN) {
        mem.updateRunning(problem, params, update, regions.stats);
      }
      if (save) {
        save.problem = problem;
        save.x = x;
        save.state = new WasmSaved(slot!, ++slot!.epoch, slot!.stats.generation, count);
      }
    } catch (e) {
      if (yt !== undefined && yt !== out) yt.dispose();
      throw e;
    }
    if (yt) return yt;
    const y = this.#outView.get(mem.heap.buffer, yAt, length);
    if (!out) return y.slice();
    (out as Float32Array).set(y);
    return out;
  }

  #statsPass(problem: NormProblem, x: number, mode: number, r: Regions): void {
    const { n, c, m } = problem;
    if (problem.layout === "nd") this.#rows.statsNd(x, n, c, m, mode, r.layer, r.stats);
    else this.#rows.stats1d(x, n, c, mode, r.layer, r.stats, r.scratch);
  }

  #normalizePass(problem: NormProblem, x: number, y: number, mode: number, r: Regions): void {
    const { n, c, m } = problem;
    if (problem.layout === "nd") {
      this.#rows.normalizeNd(x, y, n, c, m, mode, r.layer, r.stats, r.scratch);
    } else {
      this.#rows.normalize1d(x, y, n, c, mode, r.layer, r.stats);
    }
  }
}
