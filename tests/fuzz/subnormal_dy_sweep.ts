/**
 * A seeded sweep of attack fuzzer seed 4893's kind (issue 10): rows whose dy mix normal values
 * (~1e-31 to 1) with subnormal ones, under a gamma s that brings the subnormal dy's products
 * into float32's normal range, in rows that take the backward's wide passes (a variance weight
 * below float32's normal range, scaled statistics, a factor-wide gamma) or the plain ones:
 * constant or spread rows, training or an evaluation, eps, running_var and gamma varied, layout
 * "nd" (rows of 8 to 5000) or SwitchNorm1d. Each call is held to the float64 reference with the
 * range tests' checks; failures are printed with their seed, then the count. Not a test (no
 * assertion, not run by `deno task test`): a tool to find members of a fault class. NUMERICS.md
 * ("Scaled rows in the backward") says what it found.
 *
 *   deno run -A tests/fuzz/subnormal_dy_sweep.ts FIRST LAST [webgpu|wasm]
 *
 * @module
 */
import type { LayerCall } from "../_range_compare.ts";
import { runSweep } from "./_sweep.ts";
import { seededRandom } from "../../examples/_data.ts";

/** The sweep's call of `seed`. */
export function make(seed: number): LayerCall {
  const r = seededRandom(seed * 53 + 5);
  const pick = <T>(v: T[]) => v[Math.floor(r() * v.length)];
  const layer = pick(["2d", "2d", "2d", "1d"] as const);
  const n = pick([1, 2, 4]), c = pick([1, 2, 3]);
  const m = layer === "1d" ? 1 : pick([8, 16, 257, 5000]);
  const shape = layer === "1d" ? [Math.max(n, 2), c] : [n, c, 1, m];
  const len = shape.reduce((a, b) => a * b, 1);
  const xs = pick([0, 1, 1e-30, 1e-10, 1e10]);
  const constant = r() < 0.5;
  const x = Float32Array.from({ length: len }, (_, i) => {
    const row = layer === "1d" ? i % c : Math.floor(i / m);
    return constant ? ((row % 5) - 2) * xs : (r() * 2 - 1) * xs;
  });
  const dn = pick([1e-31, 1e-20, 1, 1e-36]);
  const dy = Float32Array.from(
    { length: len },
    () => r() < 0.2 ? (r() * 2 - 1) * dn : (r() * 2 - 1) * pick([1e-41, 1e-39, 1e-44]),
  );
  const k = layer === "1d" ? 2 : 3;
  const lw = () => pick([0, 0, 87, -1e30, 1.3]);
  const mean_weight = Float32Array.from({ length: k }, lw);
  const var_weight = Float32Array.from({ length: k }, lw);
  return {
    layer,
    shape,
    options: { eps: pick([1e-30, 1e-5, 1, 2 ** -126]) },
    state: {
      weight: Float32Array.from({ length: c }, () => pick([1, 1e-10, 1e6, -3e20, 1e30])),
      bias: new Float32Array(c),
      mean_weight,
      var_weight,
      running_mean: Float32Array.from({ length: c }, () => pick([0, 1, 1e-30])),
      running_var: Float32Array.from({ length: c }, () => pick([0, 1, 1e-20])),
    },
    partial: true,
    training: r() < 0.4,
    x,
    dy,
    scales: true,
  };
}

if (import.meta.main) await runSweep(make);
