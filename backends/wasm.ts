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
import type { Backend, LayerParams } from "./_backend.ts";
import { ABI_VERSION, type WasmKernels } from "./_wasm_abi.ts";
import { wasmBytes } from "../wasm/switchnorm_wasm.ts";
import { WasmRegions } from "./_wasm_regions.ts";
import { checkShape, WasmTensor } from "./_wasm_tensor.ts";
import { WasmForward } from "./_wasm_forward.ts";
import { overlapsShifted, WasmChunkedForward } from "./_wasm_forward_chunked.ts";
import { runBackward } from "./_wasm_backward.ts";
import type { Heap } from "./_wasm_heap.ts";
import {
  chooseKernels,
  threadTestHooks,
  type WasmKernels as SplitKernels,
} from "./_wasm_threads.ts";
import { type RowRunner, ThreadPool } from "./_wasm_pool.ts";
import { OneThread } from "./_wasm_one_thread.ts";

export { WasmTensor };

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
  readonly #mem: WasmRegions;
  /** Runs the nd row passes, split across threads where there are any (./_wasm_pool.ts). */
  readonly #rows: RowRunner;
  readonly #forward: WasmForward;
  readonly #chunked: WasmChunkedForward;

  /** Wraps an instance of the module; see {@linkcode loadWasmBackend}. */
  constructor(kernels: WasmKernels, rows?: (heap: Heap) => RowRunner) {
    this.#mem = new WasmRegions(kernels);
    this.#rows = rows?.(this.#mem.heap) ??
      new OneThread(kernels as SplitKernels, "not asked for");
    this.#forward = new WasmForward(this.#mem, this.#rows);
    this.#chunked = new WasmChunkedForward(this.#mem);
  }

  /** Size of the linear memory in bytes (for tests of memory reuse). */
  get memoryBytes(): number {
    return this.#mem.heap.byteLength;
  }

  /** Bytes of linear memory held by live tensors and scratch regions (for tests). */
  get usedBytes(): number {
    return this.#mem.heap.usedBytes;
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
  forward(...args: Parameters<Backend["forward"]>): ReturnType<Backend["forward"]> {
    const [problem, x, params, update, out, save] = args;
    const length = problem.n * problem.c * problem.m;
    if (
      x instanceof Float32Array && problem.layout === "nd" && x.length === length &&
      this.#rows.threadsFor(length) === 1 &&
      (out === undefined || (out instanceof Float32Array && out.length === length &&
        !overlapsShifted(x, out)))
    ) {
      return this.#chunked.run(problem, x, params, update, out, save);
    }
    return this.#forward.run(...args);
  }

  /**
   * dx and the parameter gradients of the forward recorded in `saved` (which must have run on
   * this backend with `save`). dy is of the kind of that forward's x: a Float32Array gives a
   * Float32Array dx; a resident dy gives a new resident dx, computed in place with no copies.
   * Under SyncSN the packed gradient sums are added up across replicas between the reduction
   * and the dx pass.
   */
  backward(
    ...args: Parameters<NonNullable<Backend["backward"]>>
  ): ReturnType<NonNullable<Backend["backward"]>> {
    return runBackward(this.#mem, this.#rows, ...args);
  }

  /** Frees the layer's own regions (statistics kept for backward); the layer stays usable. */
  releaseLayer(params: LayerParams): void {
    this.forgetLayer(params.layerId);
  }

  /** Frees the regions of a layer that was garbage-collected. */
  forgetLayer(layerId: number): void {
    this.#mem.forget(layerId);
  }

  /** Number of layers holding their own regions (for tests of what dropped layers leave). */
  get layerCount(): number {
    return this.#mem.layerCount;
  }

  /** Copies `data` into a new tensor resident in this backend's memory. */
  upload(data: Float32Array, shape: readonly number[]): WasmTensor {
    this.#mem.live();
    if (!(data instanceof Float32Array)) {
      throw new TypeError("wasm backend: upload needs a Float32Array");
    }
    checkShape(shape, data.length);
    const ptr = this.#mem.heap.alloc(data.length * 4);
    this.#mem.heap.f32.set(data, ptr >>> 2);
    return new WasmTensor(this.#mem.heap, ptr, shape);
  }

  /**
   * The roofline kernel for benchmarks: moves the bytes a forward moves with no math (reads x,
   * then reads x again and writes y = x). Returns the sum of x so the first read is not dead.
   */
  roofline(x: WasmTensor, y: WasmTensor): number {
    this.#mem.live();
    const xt = this.#mem.own(x, "x", x.length), yt = this.#mem.own(y, "y", x.length);
    return this.#mem.k.sn_roofline(xt.byteOffset, yt.byteOffset, x.length);
  }

  /**
   * The backward roofline kernel for benchmarks: moves the bytes a backward moves with one add
   * per element (reads x and dy, then reads them again and writes dx = x + dy). Returns the sum
   * of x + dy so the first read is not dead.
   */
  rooflineBackward(x: WasmTensor, dy: WasmTensor, dx: WasmTensor): number {
    this.#mem.live();
    const len = x.length;
    const xt = this.#mem.own(x, "x", len), dyt = this.#mem.own(dy, "dy", len);
    const dxt = this.#mem.own(dx, "dx", len);
    return this.#mem.k.sn_roofline_backward(xt.byteOffset, dyt.byteOffset, dxt.byteOffset, len);
  }

  /**
   * Makes the backend refuse further work; tensors made by it must not be used afterwards. The
   * memory itself goes with the instance when it is garbage-collected (WebAssembly memory cannot
   * be freed or shrunk explicitly).
   */
  dispose(): void {
    this.#mem.dispose();
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
