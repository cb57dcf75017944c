/**
 * The run-time choice of backend. Backends are created once per process, lazily, and shared by
 * every layer that uses them. The choice is recorded with its reason so that users can inspect
 * which backend ran a layer and why.
 *
 * Depends on the three backends and _validate.ts; the layer and mod.ts depend on it.
 *
 * @module
 */
import type { Backend, BackendName } from "./_backend.ts";
import { ReferenceBackend } from "./reference.ts";
import { loadWasmBackend, type WasmBackend, WasmRefusedError, wasmSimdSupported } from "./wasm.ts";
import { loadWebGpuBackend, type WebGpuBackend } from "./webgpu.ts";
import { type AdapterProbe, requestAdapter } from "./_webgpu_device.ts";
import { describeValue } from "../_validate.ts";

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

/**
 * When "auto" takes WebGPU by itself. It would where WebGPU wins end to end (upload, two passes,
 * readback, against WASM) from some tensor size on, measured by bench/webgpu_bench.ts and recorded
 * with the adapter it was measured on in bench/crossover.json (a test checks that the rule in force
 * is the one that file's measurement gives). A fallback adapter (lavapipe, software Vulkan on the
 * CPU) never counts.
 */
export interface WebGpuAutoRule {
  /**
   * Smallest tensor, in elements, that auto runs on WebGPU; null: none, auto keeps to the CPU at
   * every size (WebGPU only when asked for, or for a tensor resident there).
   */
  readonly minElements: number | null;
  /** Take a fallback (software) adapter too. Only tests set this. */
  readonly allowFallbackAdapter: boolean;
}

/**
 * The rule in force: auto never takes WebGPU by itself (it does not even ask for an adapter).
 * `deno task bench:webgpu` on an NVIDIA H200 (Vulkan, driver 580, Deno 2.9.6, 16-core host,
 * 2026-12-04) found WebGPU slower end to end than WASM at every size: median ms per forward on
 * [4,16,s,s], webgpu against wasm, 13.24 / 0.17 at 16Ki elements, 15.16 / 4.16 at 1Mi, 22.27 /
 * 10.54 at 4Mi, 123.06 / 43.94 at 16Mi. About 13 ms of each WebGPU call is Deno's submit and
 * mapAsync round trip (~11 ms on lavapipe too), and the kernels themselves are not yet near the
 * copy bound there (SN forward 16-85x a kernel moving the same bytes, backward 7-14x). The GPU's
 * compiler also loses accuracy the float32 pairs rely on (it rewrites float arithmetic, flushes
 * subnormals, divides by an approximate reciprocal). bench/crossover.json holds a later H200 run
 * of the same bench (after session 42's shader fixes), whose derived rule is this one.
 */
export const WEBGPU_AUTO: WebGpuAutoRule = {
  minElements: null,
  allowFallbackAdapter: false,
};

/** Why auto keeps to the CPU under a rule without a threshold (minElements null). */
const WEBGPU_NEVER_FASTER =
  "auto keeps to the CPU: WebGPU measured slower end to end than WebAssembly at every size " +
  '(NVIDIA H200, 2026-12-04); backend "webgpu" asks for it';

/** What the environment offers; a parameter so that tests can pose as another environment. */
export interface Environment {
  readonly wasmSimd: boolean;
  /** When auto takes WebGPU. */
  readonly webgpuAuto: WebGpuAutoRule;
}

let environmentOverride: Partial<Environment> | undefined;

/**
 * Makes {@linkcode currentEnvironment} report `env` over the real values (undefined: stop), so
 * that tests can pose as another environment, e.g. one where auto takes lavapipe.
 */
export function setEnvironmentForTesting(env: Partial<Environment> | undefined): void {
  environmentOverride = env;
}

/** The real environment of this process (or the test override). */
export function currentEnvironment(): Environment {
  return { wasmSimd: wasmSimdSupported(), webgpuAuto: WEBGPU_AUTO, ...environmentOverride };
}

/** One forward call, as far as the auto rule cares. */
export interface CallInfo {
  /** N*C*M. */
  readonly elements: number;
  /** SyncSN layers need a backend that supports it (the CPU ones). */
  readonly sync?: boolean;
  /** x is resident in this backend's memory: the call must run there. */
  readonly resident?: BackendName;
}

let warnedFallback = false;
/** Why this runtime refused to compile the WASM module, once it has: auto then stays off WASM. */
let wasmRefused: WasmRefusedError | undefined;

/** The WASM backend, or the runtime's refusal to compile it (remembered, not retried per call). */
async function wasmInstance(): Promise<WasmBackend> {
  if (wasmRefused) throw wasmRefused;
  try {
    return await instance("wasm", loadWasmBackend) as WasmBackend;
  } catch (err) {
    if (err instanceof WasmRefusedError) wasmRefused = err;
    throw err;
  }
}
let adapterProbe: Promise<AdapterProbe> | undefined;
/** Why WebGPU failed in this process, once it has: auto then stays off it. */
let webgpuLost: string | undefined;
/** Why the WebGPU backend could not start for auto (no device, shaders that did not compile). */
let webgpuBroken: string | undefined;

/** The adapter as auto sees it; asked for once per process, and only when auto might use it. */
export function probeAdapter(): Promise<AdapterProbe> {
  return adapterProbe ??= requestAdapter();
}

async function webgpuInstance(): Promise<WebGpuBackend> {
  const cached = instances.get("webgpu");
  if (cached) {
    const b = await cached.catch(() => undefined) as WebGpuBackend | undefined;
    if (b && b.lost === undefined) return b;
    // Lost or disposed: a later explicit request gets a fresh device.
    if (instances.get("webgpu") === cached) instances.delete("webgpu");
  }
  return await instance("webgpu", async () => {
    const b = await loadWebGpuBackend();
    b.ctx.onLost = (why) => webgpuLost = why;
    return b;
  }) as WebGpuBackend;
}

/** The shared WebGPU backend of this process, started on first use. */
export function webgpuBackend(): Promise<WebGpuBackend> {
  return webgpuInstance();
}

/** Why auto does not take WebGPU for this call, or undefined when it does. */
async function webgpuRefusal(env: Environment, call: CallInfo): Promise<string | undefined> {
  if (call.sync) return "SyncSN runs on CPU backends";
  if (env.webgpuAuto.minElements === null) return WEBGPU_NEVER_FASTER;
  if (webgpuLost !== undefined) return `the WebGPU device was lost earlier (${webgpuLost})`;
  if (webgpuBroken !== undefined) return `the WebGPU backend could not start (${webgpuBroken})`;
  const min = env.webgpuAuto.minElements;
  if (call.elements < min) {
    return `${call.elements} elements is below the WebGPU crossover of ${min}`;
  }
  const probe = await probeAdapter();
  if (!probe.adapter) return `no WebGPU adapter (${probe.missing})`;
  if (probe.summary.isFallbackAdapter && !env.webgpuAuto.allowFallbackAdapter) {
    return `the WebGPU adapter "${probe.summary.description}" is a fallback (software) adapter`;
  }
  return undefined;
}

/** Forgets WebGPU state (instance, adapter probe, an earlier device loss). For tests. */
export function resetWebGpuForTesting(): void {
  instances.delete("webgpu");
  adapterProbe = undefined;
  webgpuLost = undefined;
  webgpuBroken = undefined;
}

/**
 * Resolves a request to a backend. An explicit name gives that backend or a clear error. "auto"
 * runs a call on a resident tensor where the tensor lives; otherwise WASM where WebAssembly SIMD is
 * available, and otherwise the reference backend, with a one-time warning that says so. Under the
 * rule in force ({@linkcode WEBGPU_AUTO}) auto never takes WebGPU by itself; under a rule with a
 * threshold (tests pose one) it takes WebGPU for calls at or above it on a real (non-fallback)
 * adapter, unless the device was lost earlier or the backend could not start there (no device, or
 * shaders the adapter's compiler rejects: then with a one-time warning naming the reason). The
 * reason says which rule decided.
 */
export async function chooseBackend(
  request: BackendRequest,
  env: Environment = currentEnvironment(),
  call?: CallInfo,
): Promise<BackendChoice> {
  switch (request) {
    case "reference":
      return {
        backend: await instance("reference", () => Promise.resolve(new ReferenceBackend())),
        reason: "requested: reference",
      };
    case "wasm": {
      if (!env.wasmSimd) {
        throw new Error(
          'backend "wasm" needs WebAssembly SIMD (128-bit), which this runtime lacks; ' +
            'use backend "reference" or "auto"',
        );
      }
      const backend = await wasmInstance();
      return { backend, reason: `requested: wasm; ${backend.threadNote}` };
    }
    case "webgpu": {
      const backend = await webgpuInstance();
      const a = backend.ctx.adapter;
      return {
        backend,
        reason: `requested: webgpu (adapter "${a.description}"${
          a.isFallbackAdapter ? ", a fallback adapter" : ""
        })`,
      };
    }
    case "auto": {
      if (call?.resident) {
        const { backend } = await chooseBackend(call.resident, env);
        return { backend, reason: `auto: x is resident in ${call.resident} memory` };
      }
      let notGpu = "no call size given";
      if (call) {
        const refusal = await webgpuRefusal(env, call);
        if (refusal === undefined) {
          try {
            const backend = await webgpuInstance();
            return {
              backend,
              reason: `auto: WebGPU, ${call.elements} elements >= the crossover of ` +
                `${env.webgpuAuto.minElements} on adapter "${backend.ctx.adapter.description}"`,
            };
          } catch (e) {
            // An adapter that cannot run the backend (its shader compiler rejects the WGSL, no
            // device) must not break auto: it keeps to the CPU, says why once, and stays there.
            const first = webgpuBroken === undefined; // calls racing here warn once
            webgpuBroken ??= (e as Error).message;
            notGpu = `the WebGPU backend could not start (${webgpuBroken})`;
            if (first) {
              console.warn(
                `switchnorm: auto: WebGPU could not start, using ` +
                  `${env.wasmSimd ? "WebAssembly" : "the reference backend"} instead: ` +
                  webgpuBroken,
              );
            }
          }
        } else notGpu = refusal;
      }
      let notWasm = "WebAssembly SIMD is not available here";
      if (env.wasmSimd) {
        try {
          const backend = await wasmInstance();
          return {
            backend,
            reason: `auto: WebAssembly SIMD present; not WebGPU: ${notGpu}; ${backend.threadNote}`,
          };
        } catch (err) {
          if (!(err instanceof WasmRefusedError)) throw err;
          notWasm = `the runtime refused to compile WebAssembly (${err.refusal})`;
        }
      }
      const reason = `auto: ${notWasm}, fell back to reference`;
      if (!warnedFallback) {
        warnedFallback = true;
        console.warn(`switchnorm: ${reason} (slower: plain TypeScript in float64)`);
      }
      return {
        backend: await instance("reference", () => Promise.resolve(new ReferenceBackend())),
        reason: `${reason}; not WebGPU: ${notGpu}`,
      };
    }
    default:
      throw new RangeError(
        `unknown backend ${describeValue(request)} (expected ${BACKEND_REQUESTS.join(", ")})`,
      );
  }
}
