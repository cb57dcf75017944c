/**
 * WasmTensor: a float32 tensor held in a block of the WASM backend's linear memory, so that
 * layers on the wasm backend chain without copies.
 *
 * Depends on the heap (_wasm_heap.ts), the shared Backend types and _validate.ts only.
 *
 * @module
 */
import type { ResidentTensor } from "./_backend.ts";
import type { Heap } from "./_wasm_heap.ts";
import { describeShape, describeValue } from "../_validate.ts";

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

  /**
   * Where the data lies, for the layer's overlap checks: the heap (which files its memory's
   * buffers under itself, so that `data` views overlap too) and the byte range. Disposed: itself.
   */
  get memoryRange(): { key: object; start: number; end: number } {
    if (this.#ptr === 0) return { key: this, start: 0, end: Infinity };
    return { key: this.#heap, start: this.#ptr, end: this.#ptr + 4 * this.length };
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

/** Throws a RangeError unless `shape` is a list of positive integers whose product is `length`. */
export function checkShape(shape: readonly number[], length: number): void {
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
