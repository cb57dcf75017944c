/**
 * The WASM backend's allocator (backends/_wasm_heap.ts) on a bare WebAssembly.Memory: alignment,
 * first-fit reuse, coalescing, growth, and grow-only scratch regions.
 */
import assert from "node:assert/strict";
import { Heap, Scratch } from "../backends/_wasm_heap.ts";

const PAGE = 65536;

function heap(pages = 1, base = 100): { heap: Heap; memory: WebAssembly.Memory } {
  const memory = new WebAssembly.Memory({ initial: pages });
  return { heap: new Heap(memory, base), memory };
}

Deno.test("allocations start at the aligned heap base, are 16-byte aligned and do not overlap", () => {
  const { heap: h } = heap();
  const a = h.alloc(1), b = h.alloc(17), c = h.alloc(32);
  assert.deepEqual([a, b, c], [112, 128, 160]);
  assert.equal(h.usedBytes, 16 + 32 + 32);
});

Deno.test("a freed block is reused first-fit, and freeing merges neighbours in any order", () => {
  const { heap: h } = heap();
  const a = h.alloc(64), b = h.alloc(64), c = h.alloc(64);
  h.alloc(16); // keeps c's right neighbour used
  h.free(b);
  assert.equal(h.alloc(48), b, "a smaller block fits in b's hole");
  h.free(b);
  h.free(a);
  h.free(c); // a, b and c merge into one 192-byte block
  assert.equal(h.alloc(192), a);
  assert.throws(() => h.free(a + 16), /unknown block/);
});

Deno.test("the memory grows only when no free block fits, extending the free tail", () => {
  const { heap: h, memory } = heap(1, 0);
  const a = h.alloc(PAGE - 1024);
  assert.equal(memory.buffer.byteLength, PAGE);
  const b = h.alloc(4096); // 1024 bytes left at the end: one more page, merged with them
  assert.equal(memory.buffer.byteLength, 2 * PAGE);
  assert.equal(b, a + PAGE - 1024);
  h.free(a);
  assert.equal(h.alloc(PAGE - 1024), a, "no growth for what fits in a freed block");
  assert.equal(memory.buffer.byteLength, 2 * PAGE);
});

Deno.test("views of the whole memory are re-made after growth and only then", () => {
  const { heap: h } = heap(1, 0);
  const v = h.f32;
  assert.equal(h.f32, v);
  h.alloc(2 * PAGE);
  assert.notEqual(h.f32, v);
  assert.equal(h.f32.length, h.byteLength / 4);
  assert.equal(h.f64.length, h.byteLength / 8);
});

Deno.test("a scratch region grows to the largest request and is then reused as is", () => {
  const { heap: h } = heap(1, 0);
  const s = new Scratch(h);
  const small = s.ensure(100);
  assert.equal(s.ensure(50), small);
  const large = s.ensure(5000);
  assert.equal(s.ensure(100), large);
  assert.equal(h.usedBytes, 5008);
});

Deno.test("running out of 32-bit memory is a clear error", () => {
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 2 });
  const h = new Heap(memory, 0);
  assert.throws(() => h.alloc(3 * PAGE), /out of memory/);
});
