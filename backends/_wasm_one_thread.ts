/**
 * The WASM backend's kernels on one thread: the row runner where threads cannot run, were not
 * asked for, or before a pool is made; the same methods as the pool (./_wasm_pool.ts), no
 * splitting.
 *
 * Depends on the kernels' exports (_wasm_threads.ts, type) only.
 *
 * @module
 */
import type { WasmKernels } from "./_wasm_threads.ts";

/** Kernels on one thread: the same methods as the pool's, no splitting. */
export class OneThread {
  readonly #k: WasmKernels;
  /** Why there are no threads, for backendInfo.reason. */
  readonly note: string;

  constructor(kernels: WasmKernels, why: string) {
    this.#k = kernels;
    this.note = `1 thread: ${why}`;
  }

  threadsFor(_elements: number): number {
    return 1;
  }

  statsNd(x: number, n: number, c: number, m: number, mode: number, layer: number, st: number) {
    this.#k.sn_stats_nd(x, n, c, m, mode, layer, st);
  }

  normalizeNd(
    x: number,
    y: number,
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    st: number,
    scratch: number,
  ) {
    this.#k.sn_normalize_nd(x, y, n, c, m, mode, layer, st, scratch);
  }

  backwardReduceNd(
    x: number,
    dy: number,
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    st: number,
    work: number,
  ) {
    this.#k.sn_backward_reduce_nd(x, dy, n, c, m, mode, layer, st, work);
  }

  backwardDxNd(
    x: number,
    dy: number,
    dx: number,
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    st: number,
    work: number,
    count: number,
  ) {
    this.#k.sn_backward_dx_nd(x, dy, dx, n, c, m, mode, layer, st, work, count);
  }

  stats1d(x: number, n: number, c: number, mode: number, layer: number, st: number, sc: number) {
    this.#k.sn_stats_1d(x, n, c, mode, layer, st, sc);
  }

  normalize1d(x: number, y: number, n: number, c: number, mode: number, layer: number, st: number) {
    this.#k.sn_normalize_1d(x, y, n, c, mode, layer, st);
  }

  backwardReduce1d(
    x: number,
    dy: number,
    n: number,
    c: number,
    mode: number,
    layer: number,
    st: number,
    work: number,
  ) {
    this.#k.sn_backward_reduce_1d(x, dy, n, c, mode, layer, st, work);
  }

  backwardDx1d(
    x: number,
    dy: number,
    dx: number,
    n: number,
    c: number,
    mode: number,
    layer: number,
    st: number,
    work: number,
    count: number,
  ) {
    this.#k.sn_backward_dx_1d(x, dy, dx, n, c, mode, layer, st, work, count);
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {}
}
