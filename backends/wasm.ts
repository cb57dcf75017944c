/**
 * The WASM backend: SN on the CPU by the Rust kernels in wasm/ (wasm32 with 128-bit SIMD), one
 * statistics pass and one normalize pass over the tensor. This file owns the module's linear
 * memory: layer parameters, statistics and Float32Array inputs go into grow-only scratch regions
 * reused by every call, and resident tensors ({@linkcode WasmTensor}) are blocks of a first-fit
 * heap, so that layers chain without copies and memory stays bounded: it grows to what the
 * largest call needed plus the live resident tensors, and never shrinks (WebAssembly cannot).
 *
 * The kernels' C ABI is mirrored in ./_wasm_abi.ts. A forward that may be followed by a backward
 * (training, or `keepForBackward`) runs in the layer's own regions (parameters, statistics, and
 * the backward's work area), held from the layer's first such forward until its `dispose()`
 * (releaseLayer): the statistics of several layers' forwards must survive until their backwards,
 * and SyncSN awaits the other replicas in the middle of a call, where another layer's call may
 * run. What the backward keeps of the forward is x by reference and those O(N*C) statistics.
 *
 * @module
 */
import {
  applyRunningUpdate,
  type Backend,
  type BackwardResult,
  type BatchSync,
  type LayerParams,
  type NormProblem,
  type ResidentTensor,
  type RunningUpdate,
  type SavedForward,
} from "./_backend.ts";
import {
  ABI_VERSION,
  LAYER_HEADER_F64,
  LAYOUT_1D,
  LAYOUT_ND,
  MODE_BN_PARTIALS,
  MODE_TRAINING,
  MODE_USING_BN,
  type WasmKernels,
} from "./_wasm_abi.ts";
import { alignUp16, Heap, Scratch, ViewSlot } from "./_wasm_heap.ts";
import { wasmBytes } from "../wasm/switchnorm_wasm.ts";
import { describeShape, describeValue } from "../_validate.ts";
import {
  chooseKernels,
  OneThread,
  type RowRunner,
  ThreadPool,
  threadTestHooks,
  type WasmKernels as SplitKernels,
} from "./_wasm_threads.ts";

/** `(module (func i32.const 0 i8x16.splat drop))`: valid only where SIMD is. */
// deno-fmt-ignore
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
  0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
  0x0a, 0x09, 0x01, 0x07, 0x00, 0x41, 0x00, 0xfd, 0x0f, 0x1a, 0x0b, // code: i8x16.splat
]);

/** Whether this runtime runs WebAssembly with 128-bit SIMD, which the kernels need. */
export function wasmSimdSupported(): boolean {
  try {
    return typeof WebAssembly === "object" && WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

let compiled: Promise<WebAssembly.Module> | undefined;

/**
 * The runtime would not compile or instantiate the (valid, embedded) module: an embedder that
 * disallows code generation from bytes, e.g. an edge runtime or a page whose Content-Security-Policy
 * lacks 'wasm-unsafe-eval'. "auto" falls back to the reference backend on this error.
 */
export class WasmRefusedError extends Error {
  /** The runtime's own error, as "Name: message". */
  readonly refusal: string;
  /** Wraps `cause`, the runtime's own error. */
  constructor(cause: unknown) {
    const refusal = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    super(
      `backend "wasm": this runtime refused to compile WebAssembly (${refusal}); allow ` +
        "WebAssembly compilation (e.g. 'wasm-unsafe-eval' in a Content-Security-Policy), or use " +
        'backend "reference" (or "auto", which falls back to it)',
      { cause },
    );
    this.name = "WasmRefusedError";
    this.refusal = refusal;
  }
}

/**
 * Whether a compile or instantiate error is the embedder refusing code generation (V8: a
 * CompileError "Wasm code generation disallowed by embedder"; a browser's Content-Security-Policy
 * without 'wasm-unsafe-eval': a CompileError or EvalError naming 'unsafe-eval' or refusing).
 */
function isRefusal(err: unknown): boolean {
  const kind = err instanceof WebAssembly.CompileError || err instanceof EvalError;
  return kind && /disallowed|refused|not allowed|unsafe-eval|code generation/i.test(err.message);
}

/**
 * Compiles the embedded module (once per process) and makes a backend on a fresh instance of it,
 * with its own linear memory. Rejects with {@linkcode WasmRefusedError} when the runtime refuses
 * to compile WebAssembly, and with the runtime's own error for any other failure.
 */
export async function loadWasmBackend(): Promise<WasmBackend> {
  // The shared-memory build where threads can run (./_wasm_threads.ts), else this one.
  const choice = await chooseKernels();
  if ("module" in choice) {
    let threaded: WebAssembly.Instance;
    try {
      threaded = await WebAssembly.instantiate(choice.module, { env: { memory: choice.memory } });
    } catch (err) {
      throw isRefusal(err) ? new WasmRefusedError(err) : err;
    }
    const kernels = { ...threaded.exports, memory: choice.memory } as unknown as SplitKernels;
    checkAbi(kernels.sn_abi_version());
    const backend = new WasmBackend(
      kernels,
      (heap) => new ThreadPool(kernels, choice.module, heap, choice.node),
    );
    if (threadTestHooks().waitForWorkers) await backend.threadsReady();
    return backend;
  }
  let instance: WebAssembly.Instance;
  try {
    if (!compiled) {
      compiled = WebAssembly.compile(wasmBytes());
      compiled.catch(() => compiled = undefined);
    }
    instance = await WebAssembly.instantiate(await compiled, {});
  } catch (err) {
    // Only a refusal is one (auto then stays off WASM for good); any other failure, e.g. memory
    // that could not be reserved, keeps its own error, and a later call may try again.
    throw isRefusal(err) ? new WasmRefusedError(err) : err;
  }
  const kernels = instance.exports as unknown as WasmKernels;
  checkAbi(kernels.sn_abi_version());
  return new WasmBackend(kernels, () => new OneThread(kernels as SplitKernels, choice.why));
}

/** Throws unless the module speaks this loader's ABI. */
function checkAbi(abi: number): void {
  if (abi !== ABI_VERSION) {
    throw new Error(
      `wasm backend: module ABI ${abi}, loader ABI ${ABI_VERSION}: the package's files come from ` +
        "different builds; reinstall it (in a checkout of its sources, rebuild the module)",
    );
  }
}

/**
 * A tensor held in the WASM backend's linear memory, made by {@linkcode WasmBackend.upload} or
 * returned by a forward on one. Layers chain on these without copies; `read()` copies out.
 */
export class WasmTensor implements ResidentTensor {
  /** Always "wasm". */
  readonly backend = "wasm" as const;
  /** Row-major shape. */
  readonly shape: readonly number[];
  /** Number of float32 elements. */
  readonly length: number;
  readonly #heap: Heap;
  #ptr: number;
  #view?: Float32Array;

  /** Wraps the block at byte offset `ptr` of `heap`, which the tensor then owns. */
  constructor(heap: Heap, ptr: number, shape: readonly number[]) {
    this.#heap = heap;
    this.#ptr = ptr;
    this.shape = Object.freeze([...shape]);
    this.length = shape.reduce((a, b) => a * b, 1);
  }

  /** Whether this tensor lives in `heap` and has not been disposed. */
  isLiveIn(heap: Heap): boolean {
    return this.#ptr !== 0 && this.#heap === heap;
  }

  /** Where the data starts in the module's linear memory, in bytes. Throws once disposed. */
  get byteOffset(): number {
    if (this.#ptr === 0) throw new TypeError("wasm backend: this tensor was disposed");
    return this.#ptr;
  }

  /**
   * The data in place, as a Float32Array view of linear memory (no copy): writes go straight to
   * the tensor. The view is re-created after the memory grows, which detaches older views (on
   * the shared memory of threads they stay valid), so take it again rather than keeping it across
   * forward calls.
   */
  get data(): Float32Array {
    const buffer = this.#heap.buffer, ptr = this.byteOffset;
    if (this.#view?.buffer !== buffer) this.#view = new Float32Array(buffer, ptr, this.length);
    return this.#view;
  }

  /** Copies the data out into a new Float32Array. */
  read(): Promise<Float32Array> {
    const start = this.byteOffset >>> 2;
    return Promise.resolve(this.#heap.f32.slice(start, start + this.length));
  }

  /** Frees the memory for reuse; the tensor must not be used afterwards. Idempotent. */
  dispose(): void {
    if (this.#ptr === 0) return;
    this.#heap.free(this.#ptr);
    this.#ptr = 0;
    this.#view = undefined;
  }

  /** Same as dispose(), for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

function checkShape(shape: readonly number[], length: number): void {
  const ok = Array.isArray(shape) && shape.length > 0 &&
    shape.every((d) => Number.isSafeInteger(d) && d > 0);
  const count = ok ? shape.reduce((a, b) => a * b, 1) : NaN;
  if (count !== length) {
    throw new RangeError(
      `wasm backend: shape ${
        Array.isArray(shape) ? `[${describeShape(shape)}]` : describeValue(shape)
      } does not describe ${length} elements`,
    );
  }
}

/**
 * A layer's own regions of linear memory: its parameter block, the statistics of its last forward
 * that kept them, and its backward work area. Grow-only, like the shared regions.
 */
class LayerSlot {
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
class WasmSaved {
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
interface Regions {
  layer: number;
  stats: number;
  scratch: number;
}

/**
 * Bytes of x per chunk of the chunked Float32Array forward (at least; chunks are whole rows):
 * small enough that a chunk is still in cache when the statistics pass reads it right after its
 * copy, and that the normalized chunk is when it is copied out.
 */
const CHUNK_BYTES = 512 * 1024;

/** Whether `a` and `b` share memory without being the same range (in place is fine). */
function overlapsShifted(a: Float32Array, b: Float32Array): boolean {
  if (a.buffer !== b.buffer || a.byteOffset === b.byteOffset) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

function modeOf(problem: NormProblem): number {
  return (problem.training ? MODE_TRAINING : 0) | (problem.usingBN ? MODE_USING_BN : 0);
}

function layoutOf(problem: NormProblem): number {
  return problem.layout === "nd" ? LAYOUT_ND : LAYOUT_1D;
}

/**
 * SN on the Rust WASM-SIMD kernels. One instance (one module instance, one linear memory) serves
 * every layer. A call runs synchronously inside the creation of its promise, except under SyncSN,
 * where it awaits the other replicas between its two kernel calls; other calls may run in that
 * gap, so such a call keeps its statistics in the layer's own regions and copies a Float32Array
 * input in again if another call used the shared copy in between.
 */
export class WasmBackend implements Backend {
  /** Always "wasm". */
  readonly name = "wasm" as const;
  /** SyncSN: BN statistics and BN gradient sums are merged across replicas between passes. */
  readonly supportsSync = true;
  readonly #k: WasmKernels;
  readonly #heap: Heap;
  /** Runs the nd row passes, split across threads where there are any (./_wasm_threads.ts). */
  readonly #rows: RowRunner;
  /** The Float32Array path's copies: x (normalized in place), or x and dy (dx in place of dy). */
  readonly #io: Scratch;
  /** Goes up whenever a call writes `#io`, so a call resuming after an await can tell. */
  #ioEpoch = 0;
  /** Shared parameter block and statistics of calls that keep nothing (evaluation). */
  readonly #layer: Scratch;
  readonly #stats: Scratch;
  /** Transient per-call scratch of the kernels, used only within one synchronous stretch. */
  readonly #scratch: Scratch;
  readonly #slots = new Map<number, LayerSlot>();
  readonly #outView = new ViewSlot(Float32Array);
  /** Views of the chunked forward's staging chunk: a full one and the last, shorter one. */
  readonly #chunkView = new ViewSlot(Float32Array);
  readonly #tailView = new ViewSlot(Float32Array);
  readonly #bnMean = new ViewSlot(Float64Array);
  readonly #bnVar = new ViewSlot(Float64Array);
  #disposed = false;

  /** Wraps an instance of the module; see {@linkcode loadWasmBackend}. */
  constructor(kernels: WasmKernels, rows?: (heap: Heap) => RowRunner) {
    this.#k = kernels;
    this.#heap = new Heap(kernels.memory, kernels.__heap_base.value as number);
    this.#rows = rows?.(this.#heap) ?? new OneThread(kernels as SplitKernels, "not asked for");
    this.#io = new Scratch(this.#heap);
    this.#layer = new Scratch(this.#heap);
    this.#stats = new Scratch(this.#heap);
    this.#scratch = new Scratch(this.#heap);
  }

  /** Size of the linear memory in bytes (for tests of memory reuse). */
  get memoryBytes(): number {
    return this.#heap.byteLength;
  }

  /** Bytes of linear memory held by live tensors and scratch regions (for tests). */
  get usedBytes(): number {
    return this.#heap.usedBytes;
  }

  #live(): void {
    if (this.#disposed) throw new Error("wasm backend: used after dispose()");
  }

  #own(t: Float32Array | ResidentTensor, what: string, length: number): WasmTensor {
    if (!(t instanceof WasmTensor) || !t.isLiveIn(this.#heap)) {
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

  #slot(layerId: number): LayerSlot {
    let s = this.#slots.get(layerId);
    if (!s) this.#slots.set(layerId, s = new LayerSlot(this.#heap));
    return s;
  }

  /** Copies `parts` (Float32Arrays) one after another into the shared io region; its offset. */
  #stage(...parts: Float32Array[]): number {
    // The epoch moves first: an ensure that fails has freed the old copy.
    this.#ioEpoch++;
    const io = this.#io.ensure(parts.reduce((a, p) => a + p.length, 0) * 4);
    let at = io >>> 2;
    for (const p of parts) this.#heap.f32.set(p, at), at += p.length;
    return io;
  }

  /**
   * y = SN(x). Float32Array x: copied into a scratch region, normalized there in place, copied
   * out to `out` or a new array. Resident x: the kernel reads it where it is and writes `out` (may
   * be x itself) or a new resident tensor. Training with usingBN folds the batch statistics into
   * the running buffers on the CPU before resolving. With `save`, the statistics stay in the
   * layer's own region for {@linkcode backward}, and x is kept by reference. Under SyncSN
   * (training with usingBN) the BN partials are merged across replicas between the statistics
   * and the normalize pass, and the running buffers get the merged statistics.
   */
  async forward(
    problem: NormProblem,
    x: Float32Array | ResidentTensor,
    params: LayerParams,
    update: RunningUpdate,
    out?: Float32Array | ResidentTensor,
    save?: SavedForward,
  ): Promise<Float32Array | ResidentTensor> {
    this.#live();
    const { n, c, m } = problem;
    const length = n * c * m;
    const sync = problem.sync && problem.training && problem.usingBN ? problem.sync : undefined;
    const slot = save || sync ? this.#slot(params.layerId) : undefined;
    if (
      x instanceof Float32Array && problem.layout === "nd" && x.length === length &&
      this.#rows.threadsFor(length) === 1 &&
      (out === undefined || (out instanceof Float32Array && out.length === length &&
        !overlapsShifted(x, out)))
    ) {
      return this.#forwardChunked(problem, x, params, update, out, save, sync, slot);
    }
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
      this.#checkSize(problem);
      xAt = yAt = this.#stage(x);
      ioEpoch = this.#ioEpoch;
    } else {
      const xt = this.#own(x, "x", length);
      yt = out === undefined
        ? new WasmTensor(this.#heap, this.#heap.alloc(length * 4), xt.shape)
        : this.#own(out, "out", length);
      xAt = xt.byteOffset;
      yAt = yt.byteOffset;
    }
    try {
      const regions = this.#prepare(problem, params, slot);
      const mode = modeOf(problem);
      this.#statsPass(problem, xAt, mode | (sync ? MODE_BN_PARTIALS : 0), regions);
      let count = n;
      if (sync) {
        count = await this.#mergeStats(problem, sync, slot!, regions.stats);
        // Another call may have run in the gap: the shared regions may have moved or been
        // rewritten, and x's copy with them.
        this.#live();
        regions.scratch = this.#scratchFor(problem);
        if (x instanceof Float32Array) {
          if (this.#ioEpoch !== ioEpoch) xAt = yAt = this.#stage(x);
        } else {
          xAt = this.#own(x, "x", length).byteOffset;
          yAt = this.#own(yt!, "out", length).byteOffset;
        }
      }
      this.#normalizePass(problem, xAt, yAt, mode, regions);
      if (problem.training && problem.usingBN) {
        this.#updateRunning(problem, params, update, regions.stats);
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
    const y = this.#outView.get(this.#heap.buffer, yAt, length);
    if (!out) return y.slice();
    (out as Float32Array).set(y);
    return out;
  }

  /**
   * The forward of a Float32Array x of layout "nd" (into `out` or a new array), with its two
   * copies fused into the two passes. x goes into linear memory once, one chunk of whole rows at
   * a time (`CHUNK_BYTES`), and each chunk is measured while it is still in cache; after the
   * per-row constants, each chunk is normalized from that copy into a small staging block and
   * copied out to y at once. Two copies (x in, y out) is the least a Float32Array path can do;
   * copying x in a second time instead of keeping it costs a full extra copy.
   */
  async #forwardChunked(
    problem: NormProblem,
    x: Float32Array,
    params: LayerParams,
    update: RunningUpdate,
    out: Float32Array | undefined,
    save: SavedForward | undefined,
    sync: BatchSync | undefined,
    slot: LayerSlot | undefined,
  ): Promise<Float32Array> {
    const { n, c, m } = problem;
    const rows = n * c, length = rows * m, k = this.#k;
    this.#checkSize(problem);
    const step = Math.min(rows, Math.ceil(CHUNK_BYTES / (4 * m)));
    const stagingAt = alignUp16(length * 4), ioBytes = stagingAt + step * m * 4;
    // The largest block first, so that running out of memory leaves the layer's regions alone.
    this.#ioEpoch++;
    this.#io.ensure(ioBytes);
    const regions = this.#prepare(problem, params, slot);
    const mode = modeOf(problem);
    /** Stages x (a chunk at a time, each measured while in cache if `measure`); x's offset. */
    const stage = (measure: boolean) => {
      // x, then the staging block (16-byte aligned: length * 4 is a multiple of 4 only). The
      // epoch moves first: a failed ensure has freed the old copy.
      this.#ioEpoch++;
      const io = this.#io.ensure(ioBytes);
      const f32 = this.#heap.f32;
      for (let r = 0; r < rows; r += step) {
        const take = Math.min(step, rows - r), at = io + 4 * r * m;
        f32.set(x.subarray(r * m, (r + take) * m), at >>> 2);
        if (measure) k.sn_stats_rows_nd(at, r, take, n, c, m, regions.stats);
      }
      return io;
    };
    let io = stage(true);
    const ioEpoch = this.#ioEpoch;
    k.sn_stats_derive_nd(n, c, mode | (sync ? MODE_BN_PARTIALS : 0), regions.layer, regions.stats);
    let count = n;
    if (sync) {
      count = await this.#mergeStats(problem, sync, slot!, regions.stats);
      // Another call may have run in the gap, moved the shared regions and rewritten x's copy.
      this.#live();
      regions.scratch = this.#scratchFor(problem);
      if (this.#ioEpoch !== ioEpoch) io = stage(false);
    }
    const y = out ?? new Float32Array(length);
    const wide = k.sn_constants_nd(n, c, mode, regions.layer, regions.stats, regions.scratch);
    const staging = io + stagingAt;
    const buffer = this.#heap.buffer;
    for (let r = 0; r < rows; r += step) {
      const take = Math.min(step, rows - r), len = take * m;
      k.sn_normalize_rows_nd(io + 4 * r * m, staging, take, m, regions.scratch + 16 * r, wide);
      y.set((take === step ? this.#chunkView : this.#tailView).get(buffer, staging, len), r * m);
    }
    if (problem.training && problem.usingBN) {
      this.#updateRunning(problem, params, update, regions.stats);
    }
    if (save) {
      save.problem = problem;
      save.x = x;
      save.state = new WasmSaved(slot!, ++slot!.epoch, slot!.stats.generation, count);
    }
    return y;
  }

  /**
   * Merges this replica's BN partials (count, mean, M2, left by the statistics pass with
   * MODE_BN_PARTIALS) with the other replicas' and writes the merged mean and variance into the
   * statistics area at `stats` of `slot`; resolves to the global batch size.
   */
  async #mergeStats(
    problem: NormProblem,
    sync: BatchSync,
    slot: LayerSlot,
    stats: number,
  ): Promise<number> {
    const { n, c } = problem;
    const at = this.#bnAt(problem, stats) >>> 3;
    const f64 = this.#heap.f64;
    const merged = await sync.mergeStats(n, f64.slice(at, at + c), f64.slice(at + c, at + 2 * c));
    if (slot.released) throw new Error("wasm backend: the layer was released during its forward");
    // nd: var_bn = M2 / N over the IN statistics; 1d: the unbiased variance over n.
    const denominator = problem.layout === "1d" ? merged.count - 1 : merged.count;
    const out = this.#heap.f64;
    out.set(merged.mean, at);
    for (let j = 0; j < c; j++) out[at + c + j] = merged.m2[j] / denominator;
    return merged.count;
  }

  /**
   * dx and the parameter gradients of the forward recorded in `saved` (which must have run on
   * this backend with `save`). dy is of the kind of that forward's x: a Float32Array gives a
   * Float32Array dx; a resident dy gives a new resident dx, computed in place with no copies.
   * Under SyncSN the packed gradient sums are added up across replicas between the reduction
   * and the dx pass.
   */
  async backward(
    saved: SavedForward,
    dy: Float32Array | ResidentTensor,
    params: LayerParams,
  ): Promise<BackwardResult> {
    this.#live();
    const problem = saved.problem, state = saved.state, x = saved.x;
    if (!problem || !(state instanceof WasmSaved) || x === undefined) {
      throw new TypeError(
        "wasm backend: backward needs a forward run on the wasm backend with save " +
          "(training mode or keepForBackward)",
      );
    }
    const slot = state.slot;
    const fresh = () => {
      if (
        slot.released || slot.epoch !== state.epoch ||
        slot.stats.generation !== state.statsGeneration
      ) {
        throw new Error(
          "wasm backend: the statistics of this forward are gone (a later forward of the layer " +
            "replaced them, or moved them and then failed, or the layer was disposed)",
        );
      }
    };
    fresh();
    const { n, c, m } = problem;
    const length = n * c * m;
    const k = this.#k, layout = layoutOf(problem), mode = modeOf(problem);
    let dxTensor: WasmTensor | undefined;
    let xAt: number, dyAt: number, dxAt: number, ioEpoch = 0;
    if (x instanceof Float32Array) {
      if (!(dy instanceof Float32Array) || dy.length !== length) {
        throw new TypeError(
          `wasm backend: dy must be a Float32Array of ${length} elements, like the forward's x`,
        );
      }
      xAt = this.#stage(x, dy);
      ioEpoch = this.#ioEpoch;
      dyAt = dxAt = xAt + 4 * length;
    } else {
      const xt = this.#own(x, "the forward's x", length);
      const dyt = this.#own(dy, "dy", length);
      dxTensor = new WasmTensor(this.#heap, this.#heap.alloc(length * 4), xt.shape);
      xAt = xt.byteOffset;
      dyAt = dyt.byteOffset;
      dxAt = dxTensor.byteOffset;
    }
    try {
      const regions = this.#prepare(problem, params, slot);
      const work = slot.work.ensure((k.sn_work_len(layout, n, c) >>> 0) * 8);
      if (problem.layout === "nd") {
        this.#rows.backwardReduceNd(xAt, dyAt, n, c, m, mode, regions.layer, regions.stats, work);
      } else {
        k.sn_backward_reduce_1d(xAt, dyAt, n, c, mode, regions.layer, regions.stats, work);
      }
      const sumsAt = (work >>> 3) + (k.sn_sums_at(layout, n, c) >>> 0);
      const sumsLen = k.sn_sums_len(layout, mode, c) >>> 0;
      if (problem.sync) {
        const total = await problem.sync.sum(this.#heap.f64.slice(sumsAt, sumsAt + sumsLen));
        this.#live();
        fresh();
        this.#heap.f64.set(total, sumsAt);
        if (x instanceof Float32Array) {
          if (this.#ioEpoch !== ioEpoch) xAt = this.#stage(x, dy as Float32Array);
          dyAt = dxAt = xAt + 4 * length;
        } else {
          xAt = this.#own(x, "the forward's x", length).byteOffset;
          dyAt = this.#own(dy, "dy", length).byteOffset;
          dxAt = dxTensor!.byteOffset;
        }
      }
      // dWeight, dBias, meanDots, varDots lead the sums; the dx pass does not change them.
      const kMix = (sumsLen - 4 * c) / 2, f64 = this.#heap.f64;
      let at = sumsAt;
      const take = (len: number) => f64.slice(at, at += len);
      const dWeight = take(c), dBias = take(c), meanDots = take(kMix), varDots = take(kMix);
      const count = state.count;
      if (problem.layout === "nd") {
        this.#rows.backwardDxNd(
          xAt,
          dyAt,
          dxAt,
          n,
          c,
          m,
          mode,
          regions.layer,
          regions.stats,
          work,
          count,
        );
      } else {
        k.sn_backward_dx_1d(xAt, dyAt, dxAt, n, c, mode, regions.layer, regions.stats, work, count);
      }
      const dx = dxTensor ?? this.#heap.f32.slice(dxAt >>> 2, (dxAt >>> 2) + length);
      return { dx, dWeight, dBias, meanDots, varDots };
    } catch (e) {
      dxTensor?.dispose();
      throw e;
    }
  }

  /**
   * The module sizes its areas in u32: refuse what could not fit in 32-bit memory before those
   * sizes could wrap.
   */
  #checkSize(problem: NormProblem): void {
    const { n, c, m, layout } = problem;
    const need = 4 * n * c * m + (layout === "nd" ? 72 * n * c : 32 * (n + c) + 28 * c + 64);
    if (need >= 2 ** 32) {
      throw new RangeError(
        `wasm backend: out of memory: this call needs ${need} bytes, more than the 4 GiB of ` +
          "32-bit WebAssembly",
      );
    }
  }

  #scratchFor(problem: NormProblem): number {
    const { n, c } = problem;
    return this.#scratch.ensure(this.#k.sn_scratch_bytes(layoutOf(problem), n, c) >>> 0);
  }

  /**
   * Sizes the parameter, statistics and scratch regions for `problem` (the layer's own ones with
   * `slot`, else the shared ones) and writes the layer block: eps, the mixing weights, gamma,
   * beta, running buffers (wasm/src/layout.rs). Sizing may grow the memory, so the views are
   * taken after it (and again by whoever allocates later).
   */
  #prepare(problem: NormProblem, params: LayerParams, slot?: LayerSlot): Regions {
    this.#checkSize(problem);
    const { n, c } = problem;
    const k = this.#k, code = layoutOf(problem);
    const layer = (slot?.layer ?? this.#layer).ensure(k.sn_layer_bytes(c) >>> 0);
    const stats = (slot?.stats ?? this.#stats).ensure((k.sn_stats_len(code, n, c) >>> 0) * 8);
    const scratch = this.#scratchFor(problem);
    const f64 = this.#heap.f64, f32 = this.#heap.f32, h = layer >>> 3;
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

  #statsPass(problem: NormProblem, x: number, mode: number, r: Regions): void {
    const { n, c, m } = problem;
    if (problem.layout === "nd") this.#rows.statsNd(x, n, c, m, mode, r.layer, r.stats);
    else this.#k.sn_stats_1d(x, n, c, mode, r.layer, r.stats, r.scratch);
  }

  #normalizePass(problem: NormProblem, x: number, y: number, mode: number, r: Regions): void {
    const { n, c, m } = problem;
    if (problem.layout === "nd") {
      this.#rows.normalizeNd(x, y, n, c, m, mode, r.layer, r.stats, r.scratch);
    } else {
      this.#k.sn_normalize_1d(x, y, n, c, mode, r.layer, r.stats);
    }
  }

  /** Byte offset of mu_bn, which with var_bn ends the statistics area at `stats`. */
  #bnAt(problem: NormProblem, stats: number): number {
    const { n, c } = problem;
    const len = this.#k.sn_stats_len(layoutOf(problem), n, c) >>> 0;
    return stats + (len - 2 * c) * 8;
  }

  /** Folds the BN statistics left in the statistics area at `stats` into the buffers. */
  #updateRunning(
    problem: NormProblem,
    params: LayerParams,
    update: RunningUpdate,
    stats: number,
  ): void {
    const c = problem.c, at = this.#bnAt(problem, stats), buffer = this.#heap.buffer;
    const mean = this.#bnMean.get(buffer, at, c), variance = this.#bnVar.get(buffer, at + c * 8, c);
    applyRunningUpdate(params.runningMean, params.runningVar, mean, variance, update);
  }

  /** Frees the layer's own regions (statistics kept for backward); the layer stays usable. */
  releaseLayer(params: LayerParams): void {
    this.forgetLayer(params.layerId);
  }

  /** Frees the regions of a layer that was garbage-collected. */
  forgetLayer(layerId: number): void {
    const s = this.#slots.get(layerId);
    if (!s) return;
    s.release();
    this.#slots.delete(layerId);
  }

  /** Number of layers holding their own regions (for tests of what dropped layers leave). */
  get layerCount(): number {
    return this.#slots.size;
  }

  /** Copies `data` into a new tensor resident in this backend's memory. */
  upload(data: Float32Array, shape: readonly number[]): WasmTensor {
    this.#live();
    if (!(data instanceof Float32Array)) {
      throw new TypeError("wasm backend: upload needs a Float32Array");
    }
    checkShape(shape, data.length);
    const ptr = this.#heap.alloc(data.length * 4);
    this.#heap.f32.set(data, ptr >>> 2);
    return new WasmTensor(this.#heap, ptr, shape);
  }

  /**
   * The roofline kernel for benchmarks: moves the bytes a forward moves with no math (reads x,
   * then reads x again and writes y = x). Returns the sum of x so the first read is not dead.
   */
  roofline(x: WasmTensor, y: WasmTensor): number {
    this.#live();
    const xt = this.#own(x, "x", x.length), yt = this.#own(y, "y", x.length);
    return this.#k.sn_roofline(xt.byteOffset, yt.byteOffset, x.length);
  }

  /**
   * The backward roofline kernel for benchmarks: moves the bytes a backward moves with one add
   * per element (reads x and dy, then reads them again and writes dx = x + dy). Returns the sum
   * of x + dy so the first read is not dead.
   */
  rooflineBackward(x: WasmTensor, dy: WasmTensor, dx: WasmTensor): number {
    this.#live();
    const len = x.length;
    const xt = this.#own(x, "x", len), dyt = this.#own(dy, "dy", len);
    const dxt = this.#own(dx, "dx", len);
    return this.#k.sn_roofline_backward(xt.byteOffset, dyt.byteOffset, dxt.byteOffset, len);
  }

  /**
   * Makes the backend refuse further work; tensors made by it must not be used afterwards. The
   * memory itself goes with the instance when it is garbage-collected (WebAssembly memory cannot
   * be freed or shrunk explicitly).
   */
  dispose(): void {
    this.#disposed = true;
    this.#rows.close();
  }

  /** How this backend's calls run (threads, or why one): for backendInfo.reason. */
  get threadNote(): string {
    return this.#rows.note;
  }

  /** Resolves once the worker threads asked for so far have started or failed (for tests). */
  threadsReady(): Promise<void> {
    return this.#rows.ready();
  }
}
