/**
 * The registry of backends that the shared test suites run on. Every backend of the library is
 * listed here; a suite runs each one that is present in this process and reports the others as
 * ignored (never as passed). With CI=true a missing backend is a failure, not a skip.
 *
 * @module
 */
import type { BackendName } from "../backends/_backend.ts";
import { currentEnvironment, probeAdapter } from "../backends/select.ts";
import { getNumThreads, setNumThreads, setThreadTestHooks } from "../backends/_wasm_threads.ts";

/** A backend as the test suites see it. */
export interface BackendUnderTest {
  readonly name: BackendName;
  /** true when it can run here, else the reason it cannot. */
  readonly available: () => Promise<true | string>;
}

/** All backends, in the order suites run them. */
export const BACKENDS: readonly BackendUnderTest[] = [
  { name: "reference", available: () => Promise.resolve(true) },
  {
    name: "wasm",
    available: () =>
      Promise.resolve(currentEnvironment().wasmSimd || "WebAssembly SIMD is not available"),
  },
  {
    // Any adapter counts, lavapipe included: CI installs it so that the WGSL runs on every push.
    name: "webgpu",
    available: async () => {
      const probe = await probeAdapter();
      return probe.adapter ? true : `no WebGPU adapter: ${probe.missing}`;
    },
  },
];

/**
 * SWITCHNORM_THREADS=n runs the suites with the WASM backend on n threads (CI runs them at 1 and
 * at 2): above 1, every call is split, however small, and backends wait for their workers.
 */
const threads = Deno.env.get("SWITCHNORM_THREADS");
if (threads !== undefined) {
  setNumThreads(Number(threads));
  if (getNumThreads() > 1) {
    setThreadTestHooks({ minElements: 1, chunkElements: 1, waitForWorkers: true, noBackoff: true });
  }
}

/** Whether this run must not skip any backend. */
export const STRICT = Deno.env.get("CI") === "true";

/**
 * Resolves which backends run here. A backend that is not present is returned with its reason;
 * the caller registers its tests as ignored, or, under CI=true, as one failing test.
 */
export async function backendsHere(): Promise<
  { backend: BackendUnderTest; missing?: string }[]
> {
  const out = [];
  for (const backend of BACKENDS) {
    const ok = await backend.available();
    out.push(ok === true ? { backend } : { backend, missing: ok });
  }
  return out;
}

/**
 * Registers `fn` once per backend: as a real test where the backend is present, as an ignored
 * test where it is not, and, with CI=true, as a failing test where it is not.
 */
export async function testEachBackend(
  name: string,
  fn: (backend: BackendName) => Promise<void>,
): Promise<void> {
  for (const { backend, missing } of await backendsHere()) {
    if (missing === undefined) {
      Deno.test(`${backend.name}: ${name}`, () => fn(backend.name));
    } else if (STRICT) {
      Deno.test(`${backend.name}: ${name}`, () => {
        throw new Error(`backend ${backend.name} must run in CI but is missing: ${missing}`);
      });
    } else {
      Deno.test({ name: `${backend.name}: ${name} (skipped: ${missing})`, ignore: true, fn() {} });
    }
  }
}
