/**
 * A seeded sweep of attack fuzzer seed 1296's kind (issue 10): layout "nd" calls of one sample,
 * a row of small data (1e-38 to 1e-20, its mean off 0) beside a row of far wider spread (1e20
 * to 1e35) and one of ~1, the variance mostly on LN, the mean on IN, dy from 1e-38 to 1e36,
 * training or an evaluation. The small row's mean then lies far below the mix's unit (set by the
 * LN std), where the backward's near unit (sn_bwd_wide_reduce) takes its products dy (x - mu).
 * With `1d`, SwitchNorm1d's like (make1d): a column of small data beside one of far wider spread
 * in each sample, the variance on LN and BN, the mean on BN (an evaluation's running_mean 0.1 or
 * 1e-33). Each call is held to the float64 reference with the range tests' checks; failures are
 * printed with their seed, then the count. Not a test (no assertion, not run by `deno task test`):
 * a tool to find members of a fault class. NUMERICS.md ("Scaled rows in the backward",
 * "SwitchNorm1d's statistics and wide elements") says what it found.
 *
 *   deno run -A tests/fuzz/mean_below_unit_sweep.ts FIRST LAST [webgpu|wasm] [1d]
 *
 * @module
 */
import type { LayerCall } from "../_range_compare.ts";
import { runSweep } from "./_sweep.ts";
import { seededRandom } from "../../examples/_data.ts";

/** The sweep's call of `seed`. */
export function make(seed: number): LayerCall {
  const r = seededRandom(seed * 31 + 7);
  const pick = <T>(v: T[]) => v[Math.floor(r() * v.length)];
  const m = pick([4, 16, 33, 300]);
  const xs = pick([1e-31, 1e-36, 1e-25, 1e-20, 1e-38]);
  const big = pick([1e29, 1e20, 1e35, 1e25]);
  const ds = pick([1e36, 1, 1e-20, 1e20, 1e-38]);
  const off = pick([0.3, 1, 3, -0.5]);
  const training = r() < 0.3;
  const c = pick([2, 3]);
  const x: number[] = [];
  for (let k = 0; k < c; k++) {
    for (let i = 0; i < m; i++) {
      x.push(k === 0 ? (r() * 2 - 1 + off) * xs : k === 1 ? (r() * 2 - 1) * big : r() * 2 - 1);
    }
  }
  const dy = Array.from({ length: c * m }, () => (r() * 2 - 1) * ds);
  return {
    layer: "2d",
    shape: [1, c, 1, m],
    options: { eps: pick([0, 1e-5, 2 ** -126]) },
    state: {
      weight: Float32Array.from({ length: c }, () => pick([1, -1e30, 2e-39, 1e-10])),
      bias: new Float32Array(c),
      mean_weight: Float32Array.of(0, pick([-1e30, -3, 0]), pick([-1e30, -174])),
      var_weight: Float32Array.of(0, pick([1.3, 5, 0]), -1e30),
      running_mean: Float32Array.from({ length: c }, () => 0.1),
      running_var: Float32Array.from({ length: c }, () => pick([1, 3e37, 1e-40])),
    },
    partial: true,
    training,
    x: Float32Array.from(x),
    dy: Float32Array.from(dy),
    scales: true,
  };
}

/** The sweep's SwitchNorm1d call of `seed`. */
export function make1d(seed: number): LayerCall {
  const r = seededRandom(seed * 37 + 11);
  const pick = <T>(v: T[]) => v[Math.floor(r() * v.length)];
  const n = pick([4, 16, 33]);
  const c = pick([2, 3]);
  const xs = pick([1e-31, 1e-36, 1e-25, 1e-20, 1e-38]);
  const big = pick([1e29, 1e20, 1e35, 1e25]);
  const ds = pick([1e36, 1, 1e-20, 1e20, 1e-38]);
  const off = pick([0.3, 1, 3, -0.5]);
  const training = r() < 0.5;
  const x: number[] = [];
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < c; k++) {
      x.push(k === 0 ? (r() * 2 - 1 + off) * xs : k === 1 ? (r() * 2 - 1) * big : r() * 2 - 1);
    }
  }
  const dy = Array.from({ length: c * n }, () => (r() * 2 - 1) * ds);
  return {
    layer: "1d",
    shape: [n, c],
    options: { eps: pick([0, 1e-5, 2 ** -126]) },
    state: {
      weight: Float32Array.from({ length: c }, () => pick([1, -1e30, 2e-39, 1e-10])),
      bias: new Float32Array(c),
      mean_weight: Float32Array.of(pick([-1e30, -3, -174]), 0),
      var_weight: Float32Array.of(0, pick([-1e30, -3, 0])),
      running_mean: Float32Array.from({ length: c }, () => pick([0.1, 1e-33])),
      running_var: Float32Array.from({ length: c }, () => pick([1, 3e37, 1e-40])),
    },
    partial: true,
    training,
    x: Float32Array.from(x),
    dy: Float32Array.from(dy),
    scales: true,
  };
}

if (import.meta.main) {
  const layout1d = Deno.args[3] === "1d";
  await runSweep((seed) => layout1d ? make1d(seed) : make(seed));
}
