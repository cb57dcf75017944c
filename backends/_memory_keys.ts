/**
 * Which memory a buffer belongs to, for the layer's overlap checks: a WASM heap registers every
 * buffer of its linear memory (a new one after each grow) under itself, so a Float32Array view of
 * that memory (a resident tensor's `data`, say) and the resident tensors in it are known to share
 * storage. Other buffers are their own key.
 *
 * @module
 */

const owners = new WeakMap<object, object>();

/** Files `buffer` as a view of the memory `owner` stands for. */
export function registerMemory(buffer: ArrayBufferLike, owner: object): void {
  owners.set(buffer, owner);
}

/** The object that stands for the memory `buffer` is a view of: its owner, or itself. */
export function memoryKey(buffer: ArrayBufferLike): object {
  return owners.get(buffer) ?? buffer;
}
