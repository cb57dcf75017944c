/**
 * The public thread setting of the WASM backend (its implementation, the pool and the row
 * splitting, is backends/_wasm_threads.ts). Depends on that file only.
 *
 * @module
 */
import {
  getNumThreads as threadsInUse,
  setNumThreads as setThreads,
} from "./backends/_wasm_threads.ts";

/**
 * Sets how many threads the WASM backend uses per call, process-wide (PyTorch's
 * `torch.set_num_threads`; ONNX Runtime's `env.wasm.numThreads`). 1 is the single-threaded
 * path: no worker is started. The default is `navigator.hardwareConcurrency` where threads are
 * supported. Calls below a size threshold run on one thread whatever the setting, and where
 * threads are not supported (no Worker, no SharedArrayBuffer or Atomics, a worker that fails to
 * start) every call does, and the layer's `backendInfo.reason` says why.
 *
 * Each thread beyond the first is a worker the pool starts at the first large call: in Deno
 * starting one blocks ~30-110 ms and holds ~10 MB, so counts far above the cores cost seconds and
 * gigabytes (1000 threads on 2 cores: a first call of ~60 s and ~12 GB) and gain nothing.
 *
 * @param n The number of threads, an integer from 1 to 1024 (the calling thread counts as one).
 * @throws {TypeError} when n is not a number.
 * @throws {RangeError} when n is not an integer from 1 to 1024.
 * @example
 * ```ts
 * import { getNumThreads, setNumThreads } from "./mod.ts";
 * setNumThreads(2);
 * console.log(getNumThreads()); // 2
 * ```
 */
export function setNumThreads(n: number): void {
  setThreads(n);
}

/**
 * The number of threads the WASM backend uses per call where threads are supported: the value
 * given to {@linkcode setNumThreads}, else `navigator.hardwareConcurrency` (1 where unknown).
 *
 * @returns The thread count, at least 1.
 * @example
 * ```ts
 * import { getNumThreads } from "./mod.ts";
 * console.log(`the wasm backend uses up to ${getNumThreads()} threads`);
 * ```
 */
export function getNumThreads(): number {
  return threadsInUse();
}
