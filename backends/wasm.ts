// TEMPORARY STUB: replaced by the WASM backend.
import type { Backend } from "./_backend.ts";
export function wasmSimdSupported(): boolean {
  return false;
}
export function loadWasmBackend(): Promise<Backend> {
  return Promise.reject(new Error("wasm backend not built yet"));
}
