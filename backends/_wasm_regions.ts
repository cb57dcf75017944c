/**
 * The WASM backend's use of one module instance's linear memory: the shared regions (the
 * Float32Array path's copies, the parameter block and statistics of calls that keep nothing, the
 * kernels' per-call scratch), each layer's own regions (held from its first forward that keeps
 * statistics until its release), the layer block the kernels read (wasm/src/layout.rs), and the
 * running-buffer update from the statistics a forward leaves there.
 *
 * Depends on the kernels' ABI (_wasm_abi.ts), the heap (_wasm_heap.ts), WasmTensor and the
 * shared Backend types only.
 *
 * @module
 */
import {
  applyRunningUpdate,
  type LayerParams,
  type NormProblem,
  type ResidentTensor,
  type RunningUpdate,
} from "./_backend.ts";
import {
  LAYER_HEADER_F64,
  LAYOUT_1D,
  LAYOUT_ND,
  MODE_BATCH_AVERAGE,
  MODE_TRAINING,
  MODE_USING_BN,
  type WasmKernels,
} from "./_wasm_abi.ts";
import { Heap, Scratch, ViewSlot } from "./_wasm_heap.ts";
import { WasmTensor } from "./_wasm_tensor.ts";

/**
 * A layer's own regions of linear memory: its parameter block, the statistics of its last forward
 * that kept them, and its backward work area. Grow-only, like the shared regions.
 */
export class LayerSlot {
  readonly layer: Scratch;
  readonly stats: Scratch;
  readonly work: Scratch;
  /** Goes up with each forward that fills `stats`, so a backward can tell whose they are. */
  epoch = 0;
  released = false;

  constructor(heap: Heap) {
    this.layer = new Scratch(heap);
    this.stats = new Scratch(heap);
    this.work = new Scratch(heap);
  }

  release(): void {
    this.released = true;
    this.layer.release();
    this.stats.release();
    this.work.release();
  }
}

/** What a forward leaves in `SavedForward.state` on this backend. */
export class WasmSaved {
  constructor(
    readonly slot: LayerSlot,
    readonly epoch: number,
    /** `slot.stats.generation` when the forward filled it: the region may move in between. */
    readonly statsGeneration: number,
    /** Batch size behind the BN statistics: the global batch's under SyncSN. */
    readonly count: number,
  ) {}
}

/** Byte offsets of the layer block, statistics area and scratch for one call. */
export interface Regions {
  layer: number;
  stats: number;
  scratch: number;
}

/** The kernels' mode bits of a problem (training, usingBN). */
export function modeOf(problem: NormProblem): number {
  return (problem.training ? MODE_TRAINING : 0) | (problem.usingBN ? MODE_USING_BN : 0);
}

/**
 * `MODE_BATCH_AVERAGE` for a training forward of layout "nd" with usingBN whose running update is
 * the batch average and not under SyncSN (whose BN statistics are the replicas' together), else 0.
 */
export function batchAverageMode(problem: NormProblem, update: RunningUpdate): number {
  const averaging = update.kind === "batchAverage" && problem.training && problem.usingBN;
  return averaging && !problem.sync && problem.layout === "nd" ? MODE_BATCH_AVERAGE : 0;
}

/** The kernels' layout code of a problem. */
export function layoutOf(problem: NormProblem): number {
  return problem.layout === "nd" ? LAYOUT_ND : LAYOUT_1D;
}

/** One module instance: its kernels and the regions of its linear memory. */

/**
 * Where the blocks start: 16 bytes past the first 64-byte boundary at or above `__heap_base`, so
 * that where the tensors fall modulo 64 bytes does not move with the module's data size, which
 * changes with every build. Measured (`bench/ab.ts`, one thread, the 2-core CI VM): a heap whose
 * first block was 64-byte aligned made the forward at [8, 64, 56, 56] ~12% slower (p10 1.12x and
 * 0.86x in the two orders) than one 16, 32 or 48 bytes past it, which measured alike.
 */
function heapStart(base: number): number {
  return Math.ceil(base / 64) * 64 + 16;
}
export class WasmRegions {
  readonly k: WasmKernels;
  readonly heap: Heap;
  /** The Float32Array path's copies: x (normalized in place), or x and dy (dx in place of dy). */
  readonly io: Scratch;
  /** Goes up whenever a call writes `io`, so a call resuming after an await can tell. */
  ioEpoch = 0;
  /** Shared parameter block and statistics of calls that keep nothing (evaluation). */
  readonly #layer: Scratch;
  readonly #stats: Scratch;
  /** Transient per-call scratch of the kernels, used only within one synchronous stretch. */
  readonly #scratch: Scratch;
  readonly #slots = new Map<number, LayerSlot>();
  readonly #bnMean = new ViewSlot(Float64Array);
  readonly #bnVar = new ViewSlot(Float64Array);
  #disposed = false;

  constructor(kernels: WasmKernels) {
    this.k = kernels;
    this.heap = new Heap(kernels.memory, heapStart(kernels.__heap_base.value as number));
    this.io = new Scratch(this.heap);
    this.#layer = new Scratch(this.heap);
    this.#stats = new Scratch(this.heap);
    this.#scratch = new Scratch(this.heap);
  }

  /** Throws once the backend was disposed. */
  live(): void {
    if (this.#disposed) throw new Error("wasm backend: used after dispose()");
  }

  /** Makes every later {@linkcode live} check throw. */
  dispose(): void {
    this.#disposed = true;
  }

  /** `t` as a live WasmTensor of this instance with `length` elements, else a clear error. */
  own(t: Float32Array | ResidentTensor, what: string, length: number): WasmTensor {
    if (!(t instanceof WasmTensor) || !t.isLiveIn(this.heap)) {
      throw new TypeError(
        `wasm backend: ${what} must be a live tensor of this backend (made by its upload or ` +
          "forward, not disposed)",
      );
    }
    if (t.length !== length) {
      throw new RangeError(`wasm backend: ${what} has ${t.length} elements, expected ${length}`);
    }
    return t;
  }

  /** The layer's own regions, made on first use. */
  slot(layerId: number): LayerSlot {
    let s = this.#slots.get(layerId);
    if (!s) this.#slots.set(layerId, s = new LayerSlot(this.heap));
    return s;
  }

  /** Frees the layer's own regions (statistics kept for backward); the layer stays usable. */
  forget(layerId: number): void {
    const s = this.#slots.get(layerId);
    if (!s) return;
    s.release();
    this.#slots.delete(layerId);
  }

  /** Number of layers holding their own regions. */
  get layerCount(): number {
    return this.#slots.size;
  }

  /** Copies `parts` (Float32Arrays) one after another into the shared io region; its offset. */
  stage(...parts: Float32Array[]): number {
    // The epoch moves first: an ensure that fails has freed the old copy.
    this.ioEpoch++;
    const io = this.io.ensure(parts.reduce((a, p) => a + p.length, 0) * 4);
    let at = io >>> 2;
    for (const p of parts) this.heap.f32.set(p, at), at += p.length;
    return io;
  }

  /**
   * The module sizes its areas in u32: refuse what could not fit in 32-bit memory before those
   * sizes could wrap.
   */
  checkSize(problem: NormProblem): void {
    const { n, c, m, layout } = problem;
    // 1d: the layer block, statistics, scratch (per-block sums when threads split the pass) and
    // the backward's work area (with its tiles' partial sums); asked of the kernels, whose sizes
    // fit 32 bits whenever x does.
    const k = this.k;
    const oned = () =>
      64 + 16 * c + 16 * (n + c) + (k.sn_scratch_bytes(1, n, c) >>> 0) +
      8 * (k.sn_work_len(1, n, c) >>> 0);
    // nd: 5 f64 of statistics and 48 bytes of scratch (`layout::scratch_bytes`) per row, in
    // float64 here (the kernel's 32-bit product could wrap where M is 1).
    const need = 4 * n * c * m + (layout === "nd" ? 88 * n * c : oned());
    if (need >= 2 ** 32) {
      throw new RangeError(
        `wasm backend: out of memory: this call needs ${need} bytes, more than the 4 GiB of ` +
          "32-bit WebAssembly",
      );
    }
  }

  /** The kernels' scratch for `problem`, sized now (its offset). */
  scratchFor(problem: NormProblem): number {
    const { n, c } = problem;
    return this.#scratch.ensure(this.k.sn_scratch_bytes(layoutOf(problem), n, c) >>> 0);
  }

  /**
   * Sizes the parameter, statistics and scratch regions for `problem` (the layer's own ones with
   * `slot`, else the shared ones) and writes the layer block: eps, the mixing weights, gamma,
   * beta, running buffers (wasm/src/layout.rs). Sizing may grow the memory, so the views are
   * taken after it (and again by whoever allocates later).
   */
  prepare(problem: NormProblem, params: LayerParams, slot?: LayerSlot): Regions {
    this.checkSize(problem);
    const { n, c } = problem;
    const k = this.k, code = layoutOf(problem);
    const layer = (slot?.layer ?? this.#layer).ensure(k.sn_layer_bytes(c) >>> 0);
    const stats = (slot?.stats ?? this.#stats).ensure((k.sn_stats_len(code, n, c) >>> 0) * 8);
    const scratch = this.scratchFor(problem);
    const f64 = this.heap.f64, f32 = this.heap.f32, h = layer >>> 3;
    f64[h] = problem.eps;
    for (let i = 0; i < 3; i++) {
      f64[h + 1 + i] = params.meanMix[i] ?? 0;
      f64[h + 4 + i] = params.varMix[i] ?? 0;
    }
    f64[h + 7] = 0;
    const g = (layer >>> 2) + 2 * LAYER_HEADER_F64;
    f32.set(params.weight, g);
    f32.set(params.bias, g + c);
    if (params.runningMean.length === c) {
      f32.set(params.runningMean, g + 2 * c);
      f32.set(params.runningVar, g + 3 * c);
    }
    return { layer, stats, scratch };
  }

  /** Byte offset of mu_bn, which with var_bn ends the statistics area at `stats`. */
  bnAt(problem: NormProblem, stats: number): number {
    const { n, c } = problem;
    const len = this.k.sn_stats_len(layoutOf(problem), n, c) >>> 0;
    return stats + (len - 2 * c) * 8;
  }

  /** Folds the BN statistics left in the statistics area at `stats` into the buffers. */
  updateRunning(
    problem: NormProblem,
    params: LayerParams,
    update: RunningUpdate,
    stats: number,
  ): void {
    const c = problem.c, at = this.bnAt(problem, stats), buffer = this.heap.buffer;
    const mean = this.#bnMean.get(buffer, at, c), variance = this.#bnVar.get(buffer, at + c * 8, c);
    applyRunningUpdate(params.runningMean, params.runningVar, mean, variance, update);
  }
}
