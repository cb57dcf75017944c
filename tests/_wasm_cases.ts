/**
 * What the WASM backend's tests share: random problems, the float64 reference to compare with and
 * the tolerances of that comparison, and the backend itself (one instance, loaded once).
 */
import type { LayerParams, NormProblem, RunningUpdate } from "../backends/_backend.ts";
import { ReferenceBackend } from "../backends/reference.ts";
import { loadWasmBackend, type WasmBackend, wasmSimdSupported } from "../backends/wasm.ts";
import { assertClose, type Tolerance } from "./_close.ts";
import { STRICT } from "./_backends.ts";
import { softmax } from "./_softmax.ts";
import { seededRandom as rng } from "../examples/_data.ts";

/**
 * y of the WASM backend against the reference's float64 y (rounded once to float32). With the
 * random parameters below |y| is at most ~10 and typically ~1. The WASM kernel keeps every
 * statistic in f64 except the in-chunk sums, which are f32 sums of deviations from a shift within
 * ~1.7 standard deviations of the mean (64 terms per lane): relative error ~1e-7 typical, ~1e-6
 * at worst, reaching y as |xhat| times that. The normalize sweep rounds scale and bias to f32 and
 * does three f32 operations: a few ulps of |xhat * gamma| + |beta|. The mean is a hi/lo float
 * pair, so the 1e4 offsets cost nothing extra. Observed over ~400 random problems of every kind
 * here: at most 7e-7 absolute, 0.2 of this tolerance; 2e-6 leaves room for other inputs without
 * hiding a real error (a wrong formula, a dropped tail element or a lost offset digit is off by
 * 1e-3 or more).
 */
export const Y: Tolerance = {
  atol: 2e-6,
  rtol: 2e-6,
  why: "f32 chunk sums around a near-mean shift and an f32 normalize sweep: a few ulps of |y|",
};

/**
 * Running buffers after training forwards: float32 arrays updated by the same TypeScript
 * (applyRunningUpdate) from batch statistics that differ from the reference's by ~1e-8 relative,
 * so they agree to float32 rounding (observed worst: 0.05 of this bound); |running_mean| reaches
 * 3e4 with the offsets, hence a relative bound with a small absolute floor.
 */
export const RUNNING: Tolerance = {
  atol: 1e-6,
  rtol: 1e-6,
  why: "float32 buffers fed by batch statistics accurate to ~1e-8 relative",
};

export const ignore = !wasmSimdSupported();
if (ignore && STRICT) {
  throw new Error("WebAssembly SIMD is missing, and CI must run the WASM tests");
}

export interface Case {
  problem: NormProblem;
  x: Float32Array;
  /** Fresh copies per call: backends update the running buffers in place. */
  params(): LayerParams;
}

/** A random problem; `offset` adds a large mean (per channel, with sign) to x. */
export function randomCase(
  seed: number,
  layout: "1d" | "nd",
  [n, c, m]: [number, number, number],
  training: boolean,
  usingBN: boolean,
  offset = 0,
): Case {
  const r = rng(seed);
  const k = layout === "nd" && usingBN ? 3 : 2;
  const x = new Float32Array(n * c * m);
  for (let i = 0; i < x.length; i++) {
    const ch = Math.floor(i / m) % c;
    const sign = ch % 2 ? -1 : 1;
    x[i] = sign * offset * (1 + ch / 10) + (r() - 0.5) * 4 + (ch % 3);
  }
  const weight = Float32Array.from({ length: c }, () => 0.5 + r());
  const bias = Float32Array.from({ length: c }, () => r() - 0.5);
  const meanMix = softmax(Array.from({ length: k }, () => r() * 2 - 1));
  const varMix = softmax(Array.from({ length: k }, () => r() * 2 - 1));
  const bn = layout === "1d" || usingBN;
  const runningMean = Float32Array.from({ length: bn ? c : 0 }, () => offset + r() - 0.5);
  const runningVar = Float32Array.from({ length: bn ? c : 0 }, () => 0.5 + r() * 2);
  return {
    problem: { layout, n, c, m, training, usingBN: bn, eps: 1e-5 },
    x,
    params: () => ({
      layerId: 1,
      weight,
      bias,
      meanMix,
      varMix,
      runningMean: runningMean.slice(),
      runningVar: runningVar.slice(),
      version: 0,
    }),
  };
}

export const MOVING: RunningUpdate = { kind: "movingAverage", momentum: 0.9 };
export const reference = new ReferenceBackend();

/** Runs `c` on both backends and compares y and the running buffers. */
export async function agree(
  wasm: WasmBackend,
  c: Case,
  what: string,
  update = MOVING,
): Promise<void> {
  const pw = c.params(), pr = c.params();
  const yw = await wasm.forward(c.problem, c.x, pw, update) as Float32Array;
  const yr = await reference.forward(c.problem, c.x, pr, update);
  assertClose(yw, yr, Y, `${what}: y`);
  assertClose(pw.runningMean, pr.runningMean, RUNNING, `${what}: running_mean`);
  assertClose(pw.runningVar, pr.runningVar, RUNNING, `${what}: running_var`);
}

export const wasm = ignore ? undefined! : await loadWasmBackend();

export function randomDy(seed: number, length: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length }, () => r() * 2 - 1);
}
