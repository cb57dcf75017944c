/**
 * Gradient records of wide rows (layout "nd": data beyond (2^-21, 2^40], or SwitchNorm1d's wide
 * elements: dy below 2^-102 or beyond 2^40, gamma near 3e38) merged with unit-1 records of plain
 * ones in one channel or sample (`grad_add_scaled`, shaders/backward_common.wgsl, brings both to
 * the larger unit: the smaller keeps ~24 bits of itself, or is flushed where it falls below 2^-126
 * of that unit). Per row (or element) a data scale of 1e-30 to 1e30 and a dy scale of 1e-42 to
 * 1e20, dy of alternating rows negated (times 1 + ~1e-3) so that dbeta, dgamma and the LN and BN
 * sums gm, gv cancel between the wide and plain records; mixing logits on one term or spread;
 * training or an evaluation. Each call is held to the float64 reference with the range tests'
 * checks; failures are printed with their seed, then the count. Not a test (no assertion, not
 * run by `deno task test`): a tool to find members of a fault class. NUMERICS.md ("WebGPU on
 * NVIDIA's Vulkan driver") says what it found.
 *
 *   deno run -A tests/fuzz/wide_beside_plain_sweep.ts FIRST LAST [webgpu|wasm]
 *
 * @module
 */
import type { LayerCall } from "../_range_compare.ts";
import { runSweep } from "./_sweep.ts";
import { seededRandom } from "../../examples/_data.ts";

/** The sweep's call of `seed`. */
export function make(seed: number): LayerCall {
  const r = seededRandom(seed * 4513 + 183);
  const pick = <T>(v: T[]) => v[Math.floor(r() * v.length)];
  const layer = pick(["2d", "2d", "1d"] as const);
  const n = pick([2, 4, 8]), c = pick([1, 2, 3]);
  const m = layer === "1d" ? 1 : pick([4, 8, 33]);
  const shape = layer === "1d" ? [n, c] : [n, c, 1, m];
  const len = n * c * m;
  const x = new Float32Array(len), dy = new Float32Array(len);
  const pattern = Float32Array.from({ length: m }, () => r() * 2 - 1);
  const dpat = Float32Array.from({ length: m }, () => r() * 2 - 1);
  for (let row = 0; row < n * c; row++) {
    const xs = pick([1, 1, 1e-3, 1e-8, 1e-30, 1e15, 1e30]);
    const off = pick([0, 0, 1, -3e3]) * xs;
    const ds = pick([1, 1e-20, 1e-37, 1e-31, 1e-42, 1e20]);
    const sign = row % 2 ? -(1 + (r() - 0.5) * 2e-3) : 1;
    for (let i = 0; i < m; i++) {
      const k = row * m + i;
      x[k] = off + (pattern[i] + (r() - 0.5) * 1e-3) * xs;
      dy[k] = sign * ds * (dpat[i] + (r() - 0.5) * 1e-3);
    }
  }
  const k = layer === "1d" ? 2 : 3;
  const lw = () => pick([0, 0, 1.3, -1e30]);
  return {
    layer,
    shape,
    options: { eps: pick([1e-5, 0, 1e-30]) },
    state: {
      weight: Float32Array.from({ length: c }, () => pick([1, -2, 1e20, 3e38, 1e-20])),
      bias: Float32Array.from({ length: c }, () => pick([0, 1])),
      mean_weight: Float32Array.from({ length: k }, lw),
      var_weight: Float32Array.from({ length: k }, lw),
      running_mean: Float32Array.from({ length: c }, () => pick([0, 1, 1e-8])),
      running_var: Float32Array.from({ length: c }, () => pick([1, 1e-16, 1e30])),
    },
    partial: true,
    training: r() < 0.5,
    x,
    dy,
    scales: true,
  };
}

if (import.meta.main) await runSweep(make);
