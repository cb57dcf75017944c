/**
 * A seeded sweep of attack fuzzer seeds 16624, 25482 and 27858's kind (issue 10): backward
 * products far below float32's normal range that a large gamma s or gamma s^3 brings back. Rows
 * of a narrow spread about an offset (1 +- 3e-7: products dy (x - mu) ~1e-38 under dy ~1e-31)
 * or of an ordinary one, dy ~1e-36 to 1e-20 with or without subnormal dy beside them, gamma up
 * to 3e38, eps 0 to 1e10 (s from ~1e-5 to ~1e7), mixing logits that put the weight on one term
 * or spread it, training or an evaluation on given running buffers, layout "nd" (rows of 4 to
 * 5000) or SwitchNorm1d. Each call is held to the float64 reference with the range tests'
 * checks; failures are printed with their seed, then the count. Not a test (no assertion, not run
 * by `deno task test`): a tool to find members of a fault class. NUMERICS.md ("Scaled rows in
 * the backward") says what it found.
 *
 *   deno run -A tests/fuzz/tiny_products_sweep.ts FIRST LAST [webgpu|wasm]
 *
 * @module
 */
import type { LayerCall } from "../_range_compare.ts";
import { runSweep } from "./_sweep.ts";
import { seededRandom } from "../../examples/_data.ts";

/** The sweep's call of `seed`. */
export function make(seed: number): LayerCall {
  const r = seededRandom(seed * 7919 + 136);
  const pick = <T>(v: T[]) => v[Math.floor(r() * v.length)];
  const layer = pick(["2d", "2d", "2d", "1d"] as const);
  const n = pick([1, 2, 4, 8]), c = pick([1, 2, 3]);
  const m = layer === "1d" ? 1 : pick([4, 8, 17, 257, 5000]);
  const shape = layer === "1d" ? [Math.max(n, 2), c] : [n, c, 1, m];
  const len = shape.reduce((a, b) => a * b, 1);
  const off = pick([1, 1, -3, 1000, 0]);
  const spread = pick([3e-7, 3e-7, 1e-5, 1]);
  const x = Float32Array.from({ length: len }, () => off + (r() * 2 - 1) * spread);
  const dn = pick([1e-31, 1e-31, 1e-36, 1e-25, 1e-20]);
  const sub = pick([0, 0.5, 0.8]);
  const dy = Float32Array.from(
    { length: len },
    () => (r() * 2 - 1) * (r() < sub ? pick([1e-41, 1e-44, 1e-39]) : dn),
  );
  const k = layer === "1d" ? 2 : 3;
  const lw = () => pick([0, 0, 1.3, 50, -1e30]);
  const mean_weight = Float32Array.from({ length: k }, lw);
  const var_weight = Float32Array.from({ length: k }, lw);
  return {
    layer,
    shape,
    options: { eps: pick([0, 0, 1e10, 1e-5, 1e-30]) },
    state: {
      weight: Float32Array.from({ length: c }, () => pick([3e38, 3e38, -1e30, 1e20, 1])),
      bias: Float32Array.from({ length: c }, () => pick([0, -3e38, 1])),
      mean_weight,
      var_weight,
      running_mean: Float32Array.from({ length: c }, () => pick([off, 1, 0])),
      running_var: Float32Array.from({ length: c }, () => pick([0, 1e-13, 1, 3e38])),
    },
    partial: true,
    training: r() < 0.5,
    x,
    dy,
    scales: true,
  };
}

if (import.meta.main) await runSweep(make);
