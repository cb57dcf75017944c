/**
 * The WASM backend's memory manager: a first-fit allocator over the module's linear memory from
 * `__heap_base` to its end, growing the memory only when no free block fits, and grow-only scratch
 * regions reused across calls. The kernels themselves allocate nothing. Private to the package.
 *
 * Depends on nothing of the package but _memory_keys.ts (its memory's buffers are filed there).
 *
 * @module
 */

import { registerMemory } from "./_memory_keys.ts";

const PAGE = 65536;
/** Every block starts on 16 bytes: f64 arrays need 8, and v128 loads run best aligned. */
const ALIGN = 16;

/** The most a 32-bit WebAssembly memory can address: 65536 pages. */
export const MAX_BYTES = 2 ** 32;

function outOfMemory(size: number, end: number, cause?: unknown): RangeError {
  return new RangeError(
    `wasm backend: out of memory: a block of ${size} bytes does not fit; the linear memory has ` +
      `${end} bytes and cannot grow past 4 GiB (the limit of 32-bit WebAssembly) or past what ` +
      "the runtime grants",
    { cause },
  );
}

interface Block {
  start: number;
  size: number;
}

/**
 * `v` rounded up to a multiple of 16. Plain arithmetic, not `(v + 15) & ~15`: byte counts and
 * offsets here reach 4 GiB, and the bitwise operators of JavaScript are signed 32-bit, so they
 * turn anything from 2 GiB up negative. (For the same reason offsets become indices with `>>>`.)
 */
export function alignUp16(v: number): number {
  return Math.ceil(v / ALIGN) * ALIGN;
}

/**
 * Blocks of linear memory handed out by byte offset. Free blocks are kept sorted by address and
 * coalesced with their neighbours on free, so a mix of sizes does not fragment the heap without
 * bound; the memory grows (never shrinks: WebAssembly cannot) only when no free block fits.
 */
export class Heap {
  readonly #memory: WebAssembly.Memory;
  readonly #free: Block[] = [];
  readonly #used = new Map<number, number>();
  #f32: Float32Array;
  #f64: Float64Array;

  /** Manages `memory` from `base` (the module's `__heap_base`) up. */
  constructor(memory: WebAssembly.Memory, base: number) {
    this.#memory = memory;
    const start = alignUp16(base), end = memory.buffer.byteLength;
    if (end > start) this.#free.push({ start, size: end - start });
    this.#f32 = new Float32Array(memory.buffer);
    this.#f64 = new Float64Array(memory.buffer);
    registerMemory(memory.buffer, this);
  }

  /** Size of the linear memory in bytes. */
  get byteLength(): number {
    return this.#memory.buffer.byteLength;
  }

  /** A float32 view of the whole memory; a new one only after the memory grew. */
  get f32(): Float32Array {
    if (this.#f32.buffer !== this.#memory.buffer) this.#refreshViews();
    return this.#f32;
  }

  /** A float64 view of the whole memory; a new one only after the memory grew. */
  get f64(): Float64Array {
    if (this.#f64.buffer !== this.#memory.buffer) this.#refreshViews();
    return this.#f64;
  }

  /** The memory's current buffer, which changes (and the old one detaches) when it grows. */
  get buffer(): ArrayBuffer {
    const buffer = this.#memory.buffer as ArrayBuffer;
    if (buffer !== this.#f32.buffer) this.#refreshViews();
    return buffer;
  }

  #refreshViews(): void {
    this.#f32 = new Float32Array(this.#memory.buffer);
    this.#f64 = new Float64Array(this.#memory.buffer);
    // Views of the grown memory (a tensor's `data`) must be known as this heap's, as the old were.
    registerMemory(this.#memory.buffer, this);
  }

  /** Bytes currently handed out (for tests). */
  get usedBytes(): number {
    let sum = 0;
    for (const size of this.#used.values()) sum += size;
    return sum;
  }

  /** A block of at least `bytes` bytes, 16-byte aligned; its byte offset. */
  alloc(bytes: number): number {
    const size = alignUp16(Math.max(bytes, ALIGN));
    let i = this.#free.findIndex((b) => b.size >= size);
    if (i < 0) i = this.#grow(size);
    const block = this.#free[i];
    const start = block.start;
    if (block.size === size) this.#free.splice(i, 1);
    else {
      block.start += size;
      block.size -= size;
    }
    this.#used.set(start, size);
    return start;
  }

  /** Returns a block from `alloc` to the free list. Freeing an unknown offset throws. */
  free(ptr: number): void {
    const size = this.#used.get(ptr);
    if (size === undefined) throw new Error(`wasm heap: free of unknown block at ${ptr}`);
    this.#used.delete(ptr);
    // Insert in address order, then merge with the blocks that touch it.
    let i = 0;
    while (i < this.#free.length && this.#free[i].start < ptr) i++;
    this.#free.splice(i, 0, { start: ptr, size });
    const next = this.#free[i + 1];
    if (next && ptr + size === next.start) {
      this.#free[i].size += next.size;
      this.#free.splice(i + 1, 1);
    }
    const prev = this.#free[i - 1];
    if (prev && prev.start + prev.size === ptr) {
      prev.size += this.#free[i].size;
      this.#free.splice(i, 1);
    }
  }

  /** Grows the memory so that a free block of `size` bytes exists at its end; its index. */
  #grow(size: number): number {
    const end = this.#memory.buffer.byteLength;
    const last = this.#free.at(-1);
    const tail = last && last.start + last.size === end ? last : undefined;
    const pages = Math.ceil((size - (tail?.size ?? 0)) / PAGE);
    // 32-bit WebAssembly addresses 4 GiB: say so rather than leave it to grow's own message.
    if (end + pages * PAGE > MAX_BYTES) throw outOfMemory(size, end);
    try {
      this.#memory.grow(pages);
    } catch (e) {
      throw outOfMemory(size, end, e);
    }
    if (tail) tail.size += pages * PAGE;
    else this.#free.push({ start: end, size: pages * PAGE });
    return this.#free.length - 1;
  }
}

/**
 * A grow-only block for per-call data (the copy of a Float32Array input, statistics, parameters):
 * reallocated only when a call needs more than any call before, so that repeated calls of any
 * mix of shapes reach a fixed memory size.
 */
export class Scratch {
  readonly #heap: Heap;
  #ptr = 0;
  #bytes = 0;
  #generation = 0;

  /** A region of `heap`, empty until first used. */
  constructor(heap: Heap) {
    this.#heap = heap;
  }

  /**
   * Goes up whenever the region's contents are lost (released, or moved to a larger block, even
   * by an `ensure` that then failed), so that whoever left data in it can tell.
   */
  get generation(): number {
    return this.#generation;
  }

  /** Returns the block to the heap; the next `ensure` allocates again. Idempotent. */
  release(): void {
    this.#generation++;
    if (this.#bytes > 0) this.#heap.free(this.#ptr);
    this.#ptr = this.#bytes = 0;
  }

  /** The region's byte offset, after making it at least `bytes` long. */
  ensure(bytes: number): number {
    if (bytes > this.#bytes) {
      // Free first, so that the old block can merge into the new one; if the allocation then
      // fails the region is simply empty.
      this.#generation++;
      if (this.#bytes > 0) this.#heap.free(this.#ptr);
      this.#ptr = this.#bytes = 0;
      this.#ptr = this.#heap.alloc(bytes);
      this.#bytes = bytes;
    }
    return this.#ptr;
  }
}

/**
 * A typed-array view of `length` values at `byteOffset` of the memory, kept while the memory and
 * the request stay the same, so that repeated calls of one shape make no new view.
 */
export class ViewSlot<T extends Float32Array | Float64Array> {
  readonly #make: new (buffer: ArrayBuffer, byteOffset: number, length: number) => T;
  #view?: T;
  #at = -1;

  /** A slot for views made by `make` (Float32Array or Float64Array). */
  constructor(make: new (buffer: ArrayBuffer, byteOffset: number, length: number) => T) {
    this.#make = make;
  }

  /** The view of `length` values at `byteOffset` of `buffer`. */
  get(buffer: ArrayBuffer, byteOffset: number, length: number): T {
    const v = this.#view;
    if (!v || v.buffer !== buffer || this.#at !== byteOffset || v.length !== length) {
      this.#view = new this.#make(buffer, byteOffset, length);
      this.#at = byteOffset;
    }
    return this.#view!;
  }
}
