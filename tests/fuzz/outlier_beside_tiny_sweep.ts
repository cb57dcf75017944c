/**
 * A grid of issue 10's rows of 0 but one large x beside rows of tiny ones
 * ({@linkcode outlierBesideTiny}, tests/partial_zero_rows_test.ts): rows of 8 to 20000, the large
 * x 1e3 to 1e20, the tiny ones 1e-15 to 1e-38, gamma of channels 1 and 2 from 1 to 3e38. Row 2's
 * gv = -0.5 gamma s^3 S2 comes from S2 = dy x at its large x, a subnormal dy times x, and reaches
 * the dx of rows 0 and 1 through its sample's LN term. Each call is held to the float64 reference
 * with the range tests' checks; failures are printed with their seed, then the count. Not a test
 * (no assertion, not run by `deno task test`): a tool to find members of a fault class.
 * NUMERICS.md ("Scaled rows in the backward") says what it found.
 *
 *   deno run -A tests/fuzz/outlier_beside_tiny_sweep.ts FIRST LAST [webgpu|wasm]   (1 to 4860)
 *
 * @module
 */
import type { LayerCall } from "../_range_compare.ts";
import { runSweep } from "./_sweep.ts";

/**
 * [1, 3, 1, m], an evaluation with the mean on BN alone (running_mean 0) and equal variance
 * weights (running_var 1e-20, 1e-20, 1; eps 2^-126): rows 0 and 1 of 0 but two x of `tiny`,
 * row 2 of 0 but one x of `big` (IN mean big / m, LN variance ~big^2 / 3m), dy subnormal and
 * positive (~7e-45 to 6e-44) but for two normal dy of 1e-20 and 6e-21 at zeros of row 2. Row 2's
 * sum dy (x - mu), mu = 0, is its subnormal dy times `big` (~1e-24 at big 5.3e19), while its
 * dBias is ~1.6e-20: channel 2's dWeight cancels, and its row taken again about its IN mean
 * (`refine_cancelled`, wasm/src/nd_grad_refine.rs) had p = sum dy (x - mu_in) + mu_in sum dy,
 * whose shift ~2e-4 left its f64 rounding (2.7e-20) as p: dL/dvar of row 2 and its sample's
 * LN variance gradient ~9400x, dx of rows 0 and 1 (carrying (0 - mu_ln) gvL) ~1e4x and
 * `var_weight`'s gradient 2700x (partial_zero_sweep seed 644).
 */
export function outlierBesideTiny(m: number, big: number, tiny: number, gamma: number): LayerCall {
  const x = new Float32Array(3 * m), dy = new Float32Array(3 * m);
  for (let r = 0; r < 2; r++) {
    x[r * m + (3 % m)] = tiny;
    x[r * m + ((5 * r + 6) % m)] = -0.4 * tiny;
  }
  x[2 * m + (m >> 1) + 1] = big;
  for (let i = 0; i < 3 * m; i++) dy[i] = (1 + ((i * 7) % 9)) * 7e-45;
  dy[2 * m] = 1e-20;
  dy[2 * m + 2] = 6e-21;
  return {
    layer: "2d",
    shape: [1, 3, 1, m],
    options: { eps: 2 ** -126 },
    state: {
      weight: Float32Array.of(-3e20, gamma, gamma),
      bias: new Float32Array(3),
      mean_weight: Float32Array.of(-1e30, -1e30, 0),
      var_weight: Float32Array.of(0, 0, 0),
      running_mean: new Float32Array(3),
      running_var: Float32Array.of(1e-20, 1e-20, 1),
    },
    partial: true,
    training: false,
    x,
    dy,
    scales: true,
  };
}

const ROWS = [8, 33, 100, 200, 257, 300, 1000, 5000, 20000];
const BIGS = Array.from({ length: 18 }, (_, k) => 10 ** (k + 3));
const TINYS = [1e-15, 1e-20, 1e-25, 1e-30, 1e-38];
const GAMMAS = [1e30, 1e20, -3e20, 1e25, 3e38, 1];

/** The call of `seed` (1 to 4860): the tiny x fastest, then the large x, the row, gamma. */
export function make(seed: number): LayerCall {
  const k = seed - 1;
  const tiny = TINYS[k % 5], big = BIGS[Math.floor(k / 5) % 18];
  const m = ROWS[Math.floor(k / 90) % 9], gamma = GAMMAS[Math.floor(k / 810) % 6];
  return outlierBesideTiny(m, big, tiny, gamma);
}

if (import.meta.main) await runSweep(make);
