/**
 * The run-time choice of backend. Backends are created once per process, lazily, and shared by
 * every layer that uses them. The choice is recorded with its reason so that users can inspect
 * which backend ran a layer and why.
 *
 * @module
 */
import type { Backend, BackendName } from "./_backend.ts";
import { ReferenceBackend } from "./reference.ts";
import { loadWasmBackend, wasmSimdSupported } from "./wasm.ts";

/** What a layer asks for: a backend by name, or "auto" for the best one present. */
export type BackendRequest = "auto" | BackendName;

/** The backend chosen for a layer, and why. */
export interface BackendChoice {
  readonly backend: Backend;
  readonly reason: string;
}

/** The backend names a layer accepts. */
export const BACKEND_REQUESTS: readonly BackendRequest[] = ["auto", "wasm", "webgpu", "reference"];

const instances = new Map<BackendName, Promise<Backend>>();

function instance(name: BackendName, make: () => Promise<Backend>): Promise<Backend> {
  let p = instances.get(name);
  if (!p) {
    p = make();
    instances.set(name, p);
    p.catch(() => instances.delete(name)); // a failed start may be retried later
  }
  return p;
}

/** What the environment offers; a parameter so that tests can pose as another environment. */
export interface Environment {
  readonly wasmSimd: boolean;
}

/** The real environment of this process. */
export function currentEnvironment(): Environment {
  return { wasmSimd: wasmSimdSupported() };
}

let warnedNoSimd = false;

/**
 * Resolves a request to a backend. An explicit name gives that backend or a clear error; "auto"
 * takes WASM where WebAssembly SIMD is available and otherwise the reference backend, with a
 * one-time warning that says so.
 */
export async function chooseBackend(
  request: BackendRequest,
  env: Environment = currentEnvironment(),
): Promise<BackendChoice> {
  switch (request) {
    case "reference":
      return {
        backend: await instance("reference", () => Promise.resolve(new ReferenceBackend())),
        reason: "requested: reference",
      };
    case "wasm":
      if (!env.wasmSimd) {
        throw new Error(
          'backend "wasm" needs WebAssembly SIMD (128-bit), which this runtime lacks; ' +
            'use backend "reference" or "auto"',
        );
      }
      return { backend: await instance("wasm", loadWasmBackend), reason: "requested: wasm" };
    case "webgpu":
      throw new Error('backend "webgpu" is not available in this version');
    case "auto": {
      if (env.wasmSimd) {
        return {
          backend: await instance("wasm", loadWasmBackend),
          reason: "auto: WebAssembly SIMD present",
        };
      }
      const reason = "auto: WebAssembly SIMD is not available here, fell back to reference";
      if (!warnedNoSimd) {
        warnedNoSimd = true;
        console.warn(`switchnorm: ${reason}`);
      }
      return {
        backend: await instance("reference", () => Promise.resolve(new ReferenceBackend())),
        reason,
      };
    }
    default:
      throw new RangeError(
        `unknown backend "${String(request)}" (expected ${BACKEND_REQUESTS.join(", ")})`,
      );
  }
}
