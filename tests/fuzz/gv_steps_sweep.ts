/**
 * A seeded sweep of issue 10's pair rows whose s^2 S2 passes float32's range while dL/dvar =
 * -gamma s^3 S2 / 2 fits (attack fuzzer seed 19475; tests/gv_steps_range_test.ts): rows
 * constant or of a tiny spread (IN variances ~0) of 2048 to 1e10, a mix of variance ~0 (the
 * variance weight on IN, LN or a tiny `running_var`, the other terms' weights cut below 2^-252
 * or e^-87 to e^-100) under eps 1e-36 to 1e-24, so that s is 2^40 to 2^60, its mean far from the
 * rows (on BN or LN, or a `running_mean` of 1 to -1e10), gamma taken so that gamma s^3 S2 lies
 * near 2^100. Layouts "2d" and "3d" (rows of 8 to 5000) and "1d", training and evaluation. Each
 * call is held to the float64 reference with the range tests' checks; failures are printed
 * with their seed, then the count. Not a test (no assertion, not run by `deno task test`): a
 * tool to find members of a fault class. NUMERICS.md ("Scaled rows in the backward") says what
 * it found.
 *
 *   deno run -A tests/fuzz/gv_steps_sweep.ts FIRST LAST [webgpu|wasm]
 *
 * @module
 */
import type { LayerCall } from "../_range_compare.ts";
import { runSweep } from "./_sweep.ts";
import { seededRandom } from "../../examples/_data.ts";

/** The sweep's call of `seed`. */
export function make(seed: number): LayerCall {
  const r = seededRandom(seed * 53 + 29);
  const pick = <T>(v: T[]) => v[Math.floor(r() * v.length)];
  const layer = pick<"1d" | "2d" | "3d">(["1d", "2d", "2d", "3d"]);
  const training = r() < 0.5;
  const nd = layer !== "1d";
  const n = nd ? pick([1, 2, 3]) : pick([2, 4, 7]), c = pick([1, 2, 3]);
  const m = nd ? pick([8, 16, 300, 5000]) : 1;
  const shape = layer === "1d" ? [n, c] : layer === "2d" ? [n, c, 1, m] : [n, c, 1, 1, m];
  const size = pick([2048, 1e6, 3e9, 1e10]);
  const spread = pick([0, 0, 1e-7, 1e-6]);
  const values = Array.from({ length: n * c }, () => (r() < 0.5 ? 1 : -1) * size * (0.3 + r()));
  const x = Float32Array.from({ length: n * c * m }, (_, i) => {
    const v = nd ? values[Math.floor(i / m)] : values[i];
    return v * (1 + spread * (r() * 2 - 1));
  });
  const dyScale = pick([1, 1e3, 1e8]);
  const dy = Float32Array.from(x, () => dyScale * (r() * 2 - 1));
  const eps = pick([1e-36, 1e-30, 2 ** -88, 1e-24]);
  // s ~ 1 / sqrt(eps), S2 ~ size dy sqrt(m): gamma s^3 S2 near 2^100 (not above sums_wide's bound).
  const s = 1 / Math.sqrt(eps);
  const gamma = Math.max(2 ** -120, 2 ** 100 / (s ** 3 * size * dyScale * Math.sqrt(m)));
  const k = nd ? 3 : 2;
  const cut = pick([-200, -180, -175.4, -100, -87]);
  const meanLogits = nd
    ? pick([[-20, -20, 0], [1.3, 0, 1.3], [-1, 1, 1], [-20, 0, -20]])
    : pick([[-5, 5], [5, -5], [0, 0]]);
  const varLogits = nd
    ? pick([[0, cut, cut], [0, 0, cut], [cut, 0, cut], [cut, cut, 0], [-87, 0, cut]])
    : pick([[0, cut], [cut, 0]]);
  const state: Record<string, Float32Array> = {
    weight: Float32Array.from({ length: c }, () => gamma * (0.5 + r())),
    bias: Float32Array.from({ length: c }, () => pick([0, 1, -3e38])),
    mean_weight: Float32Array.from(meanLogits.slice(0, k)),
    var_weight: Float32Array.from(varLogits.slice(0, k)),
    running_mean: Float32Array.from({ length: c }, () => pick([1, 0, -1e10, 3e9])),
    running_var: Float32Array.from({ length: c }, () => pick([1e-30, 0, 1e-36, 1])),
  };
  return {
    layer,
    shape,
    options: { eps, momentum: 0 },
    state,
    partial: true,
    training,
    x,
    dy,
    scales: true,
  };
}

if (import.meta.main) await runSweep(make);
