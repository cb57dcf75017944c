/**
 * The WASM backend: SN on the CPU by the Rust kernels in wasm/ (wasm32 with 128-bit SIMD), one
 * statistics pass and one normalize pass over the tensor. This file owns the module's linear
 * memory: layer parameters, statistics and Float32Array inputs go into grow-only scratch regions
 * reused by every call, and resident tensors ({@linkcode WasmTensor}) are blocks of a first-fit
 * heap, so that layers chain without copies and memory stays bounded: it grows to what the
 * largest call needed plus the live resident tensors, and never shrinks (WebAssembly cannot).
 *
 * The kernels' C ABI is mirrored in ./_wasm_abi.ts; the statistics of the last forward stay in
 * the statistics region (wasm/src/layout.rs) until the next forward.
 *
 * @module
 */
import {
  applyRunningUpdate,
  type Backend,
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
  MODE_TRAINING,
  MODE_USING_BN,
  type WasmKernels,
} from "./_wasm_abi.ts";
import { Heap, Scratch, ViewSlot } from "./_wasm_heap.ts";
import { wasmBytes } from "../wasm/switchnorm_wasm.ts";

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
 * Compiles the embedded module (once per process) and makes a backend on a fresh instance of it,
 * with its own linear memory.
 */
export async function loadWasmBackend(): Promise<WasmBackend> {
  if (!compiled) {
    compiled = WebAssembly.compile(wasmBytes());
    compiled.catch(() => compiled = undefined);
  }
  const instance = await WebAssembly.instantiate(await compiled, {});
  const kernels = instance.exports as unknown as WasmKernels;
  const abi = kernels.sn_abi_version();
  if (abi !== ABI_VERSION) {
    throw new Error(
      `wasm backend: module ABI ${abi}, loader ABI ${ABI_VERSION}; rebuild with deno task build:wasm`,
    );
  }
  return new WasmBackend(kernels);
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
   * the tensor. The view is re-created after the memory grows, which detaches older views, so
   * take it again rather than keeping it across forward calls.
   */
  get data(): Float32Array {
    const buffer = this.#heap.buffer, ptr = this.byteOffset;
    if (this.#view?.buffer !== buffer) this.#view = new Float32Array(buffer, ptr, this.length);
    return this.#view;
  }

  /** Copies the data out into a new Float32Array. */
  read(): Promise<Float32Array> {
    const start = this.byteOffset >> 2;
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
      `wasm backend: shape [${shape}] does not describe ${length} elements`,
    );
  }
}

/**
 * SN on the Rust WASM-SIMD kernels. One instance (one module instance, one linear memory) serves
 * every layer; calls run one at a time, synchronously inside the returned promise's creation.
 */
export class WasmBackend implements Backend {
  /** Always "wasm". */
  readonly name = "wasm" as const;
  readonly #k: WasmKernels;
  readonly #heap: Heap;
  /** The Float32Array path's copy of x, normalized in place. */
  readonly #io: Scratch;
  readonly #layer: Scratch;
  readonly #stats: Scratch;
  readonly #scratch: Scratch;
  /** Byte offsets of the regions as sized for the current call (set by #prepare). */
  #layerAt = 0;
  #statsAt = 0;
  #scratchAt = 0;
  readonly #outView = new ViewSlot(Float32Array);
  readonly #bnMean = new ViewSlot(Float64Array);
  readonly #bnVar = new ViewSlot(Float64Array);
  #disposed = false;

  /** Wraps an instance of the module; see {@linkcode loadWasmBackend}. */
  constructor(kernels: WasmKernels) {
    this.#k = kernels;
    this.#heap = new Heap(kernels.memory, kernels.__heap_base.value as number);
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

  /**
   * y = SN(x). Float32Array x: copied into a scratch region, normalized there in place, copied
   * out to `out` or a new array. Resident x: the kernel reads it where it is and writes `out` (may
   * be x itself) or a new resident tensor. Training with usingBN folds the batch statistics into
   * the running buffers on the CPU before resolving.
   */
  forward(
    problem: NormProblem,
    x: Float32Array | ResidentTensor,
    params: LayerParams,
    update: RunningUpdate,
    out?: Float32Array | ResidentTensor,
    save?: SavedForward,
  ): Promise<Float32Array | ResidentTensor> {
    try {
      this.#live();
      const length = problem.n * problem.c * problem.m;
      let result: Float32Array | WasmTensor;
      if (x instanceof Float32Array) {
        if (x.length !== length) {
          throw new RangeError(`wasm backend: x has ${x.length} elements, expected ${length}`);
        }
        if (out !== undefined && !(out instanceof Float32Array && out.length === length)) {
          throw new TypeError(`wasm backend: out must be a Float32Array of ${length} elements`);
        }
        this.#prepare(problem, params);
        const io = this.#io.ensure(length * 4);
        this.#heap.f32.set(x, io >> 2);
        this.#run(problem, io, io);
        if (out) {
          out.set(this.#outView.get(this.#heap.buffer, io, length));
          result = out;
        } else {
          result = this.#heap.f32.slice(io >> 2, (io >> 2) + length);
        }
      } else {
        const xt = this.#own(x, "x", length);
        const yt = out === undefined
          ? new WasmTensor(this.#heap, this.#heap.alloc(length * 4), xt.shape)
          : this.#own(out, "out", length);
        try {
          this.#prepare(problem, params);
          this.#run(problem, xt.byteOffset, yt.byteOffset);
        } catch (e) {
          if (yt !== out) yt.dispose();
          throw e;
        }
        result = yt;
      }
      if (problem.training && problem.usingBN) this.#updateRunning(problem, params, update);
      if (save) {
        save.problem = problem;
        save.x = x;
      }
      return Promise.resolve(result);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Sizes the parameter, statistics and scratch regions for `problem` and writes the layer block:
   * eps, the mixing weights, gamma, beta, running buffers (wasm/src/layout.rs). Sizing may grow
   * the memory, so the views are taken after it (and again by whoever allocates later).
   */
  #prepare(problem: NormProblem, params: LayerParams): void {
    const { n, c, m, layout } = problem;
    // The module sizes its areas in u32: refuse what could not fit in 32-bit memory before
    // those sizes could wrap.
    const need = 4 * n * c * m + (layout === "nd" ? 48 * n * c : 16 * (n + c) + 12 * c);
    if (need >= 2 ** 32) {
      throw new RangeError(
        `wasm backend: out of memory: this call needs ${need} bytes, more than the 4 GiB of ` +
          "32-bit WebAssembly",
      );
    }
    const k = this.#k, code = layout === "nd" ? LAYOUT_ND : LAYOUT_1D;
    const layer = this.#layerAt = this.#layer.ensure(k.sn_layer_bytes(c) >>> 0);
    this.#statsAt = this.#stats.ensure((k.sn_stats_len(code, n, c) >>> 0) * 8);
    this.#scratchAt = this.#scratch.ensure(k.sn_scratch_bytes(code, n, c) >>> 0);
    const f64 = this.#heap.f64, f32 = this.#heap.f32, h = layer >> 3;
    f64[h] = problem.eps;
    for (let i = 0; i < 3; i++) {
      f64[h + 1 + i] = params.meanMix[i] ?? 0;
      f64[h + 4 + i] = params.varMix[i] ?? 0;
    }
    f64[h + 7] = 0;
    const g = (layer >> 2) + 2 * LAYER_HEADER_F64;
    f32.set(params.weight, g);
    f32.set(params.bias, g + c);
    if (params.runningMean.length === c) {
      f32.set(params.runningMean, g + 2 * c);
      f32.set(params.runningVar, g + 3 * c);
    }
  }

  /** Runs the kernel of `problem` from byte offset `x` to `y` (may be equal). */
  #run(problem: NormProblem, x: number, y: number): void {
    const { n, c, m } = problem;
    const mode = (problem.training ? MODE_TRAINING : 0) | (problem.usingBN ? MODE_USING_BN : 0);
    const k = this.#k, layer = this.#layerAt, stats = this.#statsAt;
    if (problem.layout === "nd") {
      k.sn_stats_nd(x, n, c, m, mode, layer, stats);
      k.sn_normalize_nd(x, y, n, c, m, mode, layer, stats, this.#scratchAt);
    } else {
      k.sn_stats_1d(x, n, c, mode, layer, stats, this.#scratchAt);
      k.sn_normalize_1d(x, y, n, c, mode, layer, stats);
    }
  }

  /** Folds the batch BN statistics the kernel left in the statistics area into the buffers. */
  #updateRunning(problem: NormProblem, params: LayerParams, update: RunningUpdate): void {
    const { n, c } = problem;
    const len = this.#k.sn_stats_len(problem.layout === "nd" ? LAYOUT_ND : LAYOUT_1D, n, c) >>> 0;
    // mu_bn and var_bn are the last 2C values of the statistics area.
    const at = this.#statsAt + (len - 2 * c) * 8, buffer = this.#heap.buffer;
    const mean = this.#bnMean.get(buffer, at, c), variance = this.#bnVar.get(buffer, at + c * 8, c);
    applyRunningUpdate(params.runningMean, params.runningVar, mean, variance, update);
  }

  /** Copies `data` into a new tensor resident in this backend's memory. */
  upload(data: Float32Array, shape: readonly number[]): WasmTensor {
    this.#live();
    if (!(data instanceof Float32Array)) {
      throw new TypeError("wasm backend: upload needs a Float32Array");
    }
    checkShape(shape, data.length);
    const ptr = this.#heap.alloc(data.length * 4);
    this.#heap.f32.set(data, ptr >> 2);
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
   * Makes the backend refuse further work; tensors made by it must not be used afterwards. The
   * memory itself goes with the instance when it is garbage-collected (WebAssembly memory cannot
   * be freed or shrunk explicitly).
   */
  dispose(): void {
    this.#disposed = true;
  }
}
