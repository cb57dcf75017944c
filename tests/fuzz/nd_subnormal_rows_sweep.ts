/**
 * Layout "nd" (SwitchNorm2d) rows of subnormal or near-subnormal x (~1e-45 to 2e-38, or a normal
 * offset with a subnormal spread) beside rows of ordinary data, under mixing logits that take a
 * row's mean from its own tiny IN statistics while its variance comes from normal rows (LN or BN),
 * so that gamma s stays moderate (below the ~2^80 that makes a row factor-wide) while x - mu is
 * subnormal (rows of values 2^-126 to 3 2^-126 apart by subnormal steps, beside one x of 1e-3 to
 * 1e5 that keeps the row out of the wide passes, with running_mean among them): y = gamma (x - mu) s + beta is then normal-sized where a flushing GPU could read
 * x - mu as 0. dy per row: normal, all subnormal, or mixed. Each call is held to the float64
 * reference with the range tests' checks; failures are printed with their seed, then the count.
 * Not a test (no assertion, not run by `deno task test`): a tool to find members of a fault class.
 * NUMERICS.md ("WebGPU on NVIDIA's Vulkan driver") says what it found.
 *
 *   deno run -A tests/fuzz/nd_subnormal_rows_sweep.ts FIRST LAST [webgpu|wasm]
 *
 * @module
 */
import type { LayerCall } from "../_range_compare.ts";
import { runSweep } from "./_sweep.ts";
import { seededRandom } from "../../examples/_data.ts";

/** The sweep's call of `seed`. */
export function make(seed: number): LayerCall {
  const r = seededRandom(seed * 6007 + 45);
  const pick = <T>(v: T[]) => v[Math.floor(r() * v.length)];
  const n = pick([1, 2, 4]), c = pick([1, 2, 3]), m = pick([4, 8, 33, 257]);
  const len = n * c * m;
  const x = new Float32Array(len), dy = new Float32Array(len);
  for (let row = 0; row < n * c; row++) {
    const kind = pick(["tiny", "tiny", "near", "near", "offset", "normal"]);
    const unit = pick([1e-45, 1e-43, 1e-41, 1e-39, 1e-38, 3e-38]);
    const off = pick([0, 1e-39, -3e-39, 1e-37]);
    const sp = pick([1, 1e-3, 1e5]);
    const near = pick([1, 1.5, 3, -1]) * 2 ** -126;
    const dk = pick(["normal", "sub", "sub", "mixed", "small"]);
    for (let i = 0; i < m; i++) {
      const k = row * m + i;
      x[k] = kind === "tiny"
        ? off + Math.round((r() * 2 - 1) * 9) * unit
        : kind === "near"
        ? (i === m - 1 ? sp : near + Math.round((r() * 2 - 1) * 9) * 2 ** -149)
        : kind === "offset"
        ? 1 + (r() * 2 - 1) * 1e-7
        : (r() * 2 - 1) * sp;
      const sub = Math.round((r() * 2 - 1) * 9000) * 1e-45;
      dy[k] = dk === "sub"
        ? sub
        : dk === "mixed"
        ? (r() < 0.5 ? sub : (r() * 2 - 1) * 1e-30)
        : dk === "small"
        ? (r() * 2 - 1) * 1e-37
        : r() * 2 - 1;
    }
  }
  const lw = () => pick([0, 0, 20, -20, -1e30]);
  const mean_weight = Float32Array.from({ length: 3 }, lw);
  const var_weight = Float32Array.from({ length: 3 }, lw);
  return {
    layer: "2d",
    shape: [n, c, 1, m],
    options: { eps: pick([1e-5, 0, 1e-30]) },
    state: {
      weight: Float32Array.from({ length: c }, () => pick([1, 1e10, 1e20, 3e23, -1e15])),
      bias: Float32Array.from({ length: c }, () => pick([0, 0, 1e-30, 1])),
      mean_weight,
      var_weight,
      running_mean: Float32Array.from(
        { length: c },
        () => pick([0, 1e-39, 1, 2 ** -126, 1.5 * 2 ** -126]),
      ),
      running_var: Float32Array.from({ length: c }, () => pick([1, 1e-3, 1e-30])),
    },
    partial: true,
    training: r() < 0.5,
    x,
    dy,
    scales: true,
  };
}

if (import.meta.main) await runSweep(make);
