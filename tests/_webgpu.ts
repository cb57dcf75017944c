/**
 * Helpers of the WebGPU tests: registration that follows the backend registry's rules (ignored
 * without an adapter, a failure under CI=true), random problems, and backend-level parameters.
 *
 * @module
 */
import type { BackendName, LayerParams, NormProblem, RunningUpdate } from "../backends/_backend.ts";
import { chooseBackend, currentEnvironment, probeAdapter } from "../backends/select.ts";
import { STRICT } from "./_backends.ts";

const probe = await probeAdapter();
/** Why WebGPU cannot run here, or undefined when it can. */
export const WEBGPU_MISSING: string | undefined = probe.adapter ? undefined : probe.missing;

/** The backend WebGPU is compared with: WASM where present, else the float64 reference. */
export const ORACLE: BackendName = currentEnvironment().wasmSimd ? "wasm" : "reference";

/** Registers a WebGPU test as the registry does: ignored without an adapter, failing in CI. */
export function webgpuTest(name: string, fn: () => Promise<void>): void {
  if (WEBGPU_MISSING === undefined) {
    Deno.test({ name, fn, sanitizeResources: false, sanitizeOps: false });
  } else if (STRICT) {
    Deno.test(name, () => {
      throw new Error(`WebGPU must run in CI but there is no adapter: ${WEBGPU_MISSING}`);
    });
  } else {
    Deno.test({ name: `${name} (skipped: ${WEBGPU_MISSING})`, ignore: true, fn() {} });
  }
}

/** mulberry32, the seeded uniform generator the demo uses. */
export { seededRandom as rng } from "../examples/_data.ts";

/** A standard normal from `r`. */
export function normal(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

let nextLayerId = 1_000_000;

/** Backend-level parameters with random values, as a layer would pass them. */
export function randomParams(r: () => number, c: number, k: number, usingBN: boolean): LayerParams {
  const softmax = (n: number) => {
    const e = Array.from({ length: n }, () => Math.exp(2 * normal(r)));
    const s = e.reduce((a, b) => a + b);
    return Float64Array.from(e, (v) => v / s);
  };
  return {
    layerId: nextLayerId++,
    weight: Float32Array.from({ length: c }, () => 1 + 0.5 * normal(r)),
    bias: Float32Array.from({ length: c }, () => normal(r)),
    meanMix: softmax(k),
    varMix: softmax(k),
    runningMean: Float32Array.from({ length: usingBN ? c : 0 }, () => normal(r)),
    runningVar: Float32Array.from({ length: usingBN ? c : 0 }, () => 0.5 + r()),
    version: 0,
    runningVersion: 0,
  };
}

/** An independent copy (own running buffers, own layer id) of `p`. */
export function copyParams(p: LayerParams): LayerParams {
  return {
    ...p,
    layerId: nextLayerId++,
    runningMean: p.runningMean.slice(),
    runningVar: p.runningVar.slice(),
  };
}

/** One forward call of a test. */
export interface Case {
  readonly label: string;
  readonly problem: NormProblem;
  readonly x: Float32Array;
  readonly params: LayerParams;
  readonly update: RunningUpdate;
}

/** Runs `c` on the oracle backend (on copies of the running buffers). */
export async function oracleForward(
  c: Case,
): Promise<{ y: Float32Array; params: LayerParams }> {
  const { backend } = await chooseBackend(ORACLE);
  const params = copyParams(c.params);
  const y = await backend.forward(c.problem, c.x, params, c.update) as Float32Array;
  return { y, params };
}
