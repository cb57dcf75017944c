/**
 * A seeded sweep of issue 10's mixing weights just above a cut (2^-252, WebGPU's; 2^-149, 2^-126;
 * or ~2^-87) on a term whose mean and variance lie far beyond the others'
 * (tests/tiny_weight_far_variance_test.ts): one channel (SwitchNorm1d: two features) of data
 * spanning +-1e12 to +-2.5e38 beside channels of ~1e-30 to ~1, the tiny weight on IN, LN or BN
 * (SwitchNorm1d: LN or BN) in `mean_weight`, `var_weight` or both, dy 1e-35 to 1e30 and gamma
 * 1e-20 to 1e20, training steps and evaluations on loaded running buffers of which one channel's
 * lie far too (`running_var` up to 3e38). Layouts "2d" and "3d" (rows of 2 to 300) and "1d",
 * usingBN on and off. Each call is held to the float64 reference with the range tests' checks
 * (WebGPU's: the call with weights below 2^-252 at 0); failures are printed with their seed,
 * then the count. Not a test (no assertion, not run by `deno task test`): a tool to find members
 * of a fault class. NUMERICS.md ("Known exceptions on WebGPU (the range fuzzers)") says what it
 * found.
 *
 *   deno run -A tests/fuzz/tiny_weight_far_variance_sweep.ts FIRST LAST [webgpu|wasm]
 *
 * @module
 */
import type { LayerCall } from "../_range_compare.ts";
import { runSweep } from "./_sweep.ts";
import { seededRandom } from "../../examples/_data.ts";

/** The sweep's call of `seed`. */
export function make(seed: number): LayerCall {
  const r = seededRandom(seed * 61 + 7);
  const pick = <T>(v: readonly T[]) => v[Math.floor(r() * v.length)];
  const layer = pick<"1d" | "2d" | "3d">(["1d", "2d", "2d", "3d"]);
  const nd = layer !== "1d";
  const training = r() < 0.5;
  const usingBN = !nd || r() < 0.7;
  const n = nd ? pick([1, 2, 3]) : pick([2, 4, 7]), c = nd ? pick([2, 3, 4]) : pick([3, 6]);
  const m = nd ? pick([2, 6, 40, 300]) : 1;
  const shape = layer === "1d" ? [n, c] : layer === "2d" ? [n, c, 1, m] : [n, c, 1, 1, m];
  const terms = nd ? (usingBN ? 3 : 2) : 2;
  // A gap below the largest logit (0.4) that puts the tiny weight just above a cut.
  const gap = pick([170.5, 171, 173, 173.5, 103.2, 87.3, 60]);
  const tiny = Math.floor(r() * terms);
  const base = [0.4, pick([-0.3, 0.4, -2]), pick([0.1, -1, 0.4])];
  const logits = (on: boolean) =>
    Float32Array.from({ length: terms }, (_, k) => on && k === tiny ? 0.4 - gap : base[k]);
  const which = pick(["mean", "var", "both", "both"]);
  const spread = pick([1e12, 1e18, 1e20, 1e25, 1e30, 1e35, 2.5e38]);
  const small = pick([1, 1, 1e-15, 1e-30]);
  const far = nd ? 1 : 2;
  const channel = (i: number) => nd ? Math.floor(i / m) % c : i % c;
  const x = Float32Array.from(
    { length: shape.reduce((a, b) => a * b) },
    (_, i) =>
      channel(i) < far
        ? (r() * 2 - 1 + pick([0, 0.3, 1.5])) / 1.5 * spread
        : (r() * 2 - 1 + 0.2 * channel(i)) * small,
  );
  const dyScale = pick([1, 1e-35, 1e-25, 1e25, 1e30]);
  const dy = Float32Array.from(x, () => dyScale * (r() * 2 - 1));
  const gamma = pick([1, 1e-20, 1e12, 1e20]);
  const state: Record<string, Float32Array> = {
    weight: Float32Array.from({ length: c }, () => gamma * (0.5 + r())),
    bias: Float32Array.from({ length: c }, () => r() - 0.5),
    mean_weight: logits(which !== "var"),
    var_weight: logits(which !== "mean"),
  };
  if (!training && usingBN) {
    const farRunning = Math.min(c - 1, 1);
    state.running_mean = Float32Array.from(
      { length: c },
      (_, j) => j === farRunning ? pick([spread, -spread, 0.5]) : 0.2 * j * small,
    );
    state.running_var = Float32Array.from(
      { length: c },
      (_, j) => j === farRunning ? Math.min(3e38, spread * spread) : pick([1, 0.5]) * small * small,
    );
  }
  return {
    layer,
    shape,
    options: nd ? { eps: pick([1e-5, 0]), usingBN } : { eps: pick([1e-5, 0]) },
    state,
    partial: true,
    training,
    x,
    dy,
    scales: true,
  };
}

if (import.meta.main) await runSweep(make);
