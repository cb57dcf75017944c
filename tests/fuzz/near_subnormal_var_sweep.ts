/**
 * Rows whose mixed var + eps lies near or below float32's smallest normal (mix_var_near_subnormal,
 * shaders/common.wgsl: below 2^-102), which the backward sends to its wide passes (sn_bwd_rows'
 * wide_row, sn1d_bwd_element's wide elements) but keeps out of sn_bwd_reduce's `lifted` and
 * `s1_low` re-summing: rows of std ~1e-19 to 1e-23 about a mean of 0 or 1e-38 to 1e-13 (eps 0,
 * 2^-126 or 1e-35 and a running_var of 0 to 1e-30), beside rows of data at 1e-30 to 1e30 whose
 * terms tiny weights (logits -20 to -100, or -1e30) keep in or out of the mix; dy normal, ~1e-20,
 * ~1e-37, subnormal, or mixed; layout "nd" (rows of 4 to 5000, one segment or several) and
 * SwitchNorm1d, training and evaluation. Each call is held to the float64 reference with the
 * range tests' checks; failures are printed with their seed, then the count. Not a test (no
 * assertion, not run by `deno task test`): a tool to find members of a fault class; failures of
 * coinciding statistics carry `_close_stats.ts`'s tag. Seeds 1 to 4000 on SwiftShader (NVIDIA's
 * division emulated) failed 10 before session 46's fix (3 of the class: S1 lost subnormal dy in
 * rows of such a mix, `s1_low`), 7 after, all `var_weight`'s gradient tagged `[close-stats ...]`;
 * lavapipe 8 (those and 3157) before and after; WASM 0. NUMERICS.md ("WebGPU on NVIDIA's Vulkan
 * driver") says more.
 *
 *   deno run -A tests/fuzz/near_subnormal_var_sweep.ts FIRST LAST [webgpu|wasm]
 *
 * @module
 */
import type { LayerCall } from "../_range_compare.ts";
import { runSweep } from "./_sweep.ts";
import { closeStats } from "./_close_stats.ts";
import { seededRandom } from "../../examples/_data.ts";

/** The sweep's call of `seed`. */
export function make(seed: number): LayerCall {
  const r = seededRandom(seed * 7919 + 188);
  const pick = <T>(v: T[]) => v[Math.floor(r() * v.length)];
  const layer = pick(["2d", "2d", "2d", "1d"] as const);
  const n = pick([1, 2, 4]), c = pick([1, 2, 3]);
  const m = layer === "1d" ? 1 : pick([4, 8, 33, 257, 257, 1500, 5000]);
  const shape = layer === "1d" ? [pick([2, 3, 8, 64]), c] : [n, c, 1, m];
  const len = shape.reduce((a, b) => a * b, 1);
  const rows = layer === "1d" ? c : n * c;
  const inner = layer === "1d" ? 1 : m;
  const x = new Float32Array(len), dy = new Float32Array(len);
  // Per row (a channel in "1d", a (sample, channel) row in "nd"): a tiny std about a mean, or data
  // at a magnitude 1e-30 to 1e30; one dy kind per row.
  const shift = pick([0, 0, 1e-38, 1e-30, 1e-25, 1e-20, -1e-17, 1e-13]);
  const kinds = Array.from({ length: rows }, () => ({
    kind: pick(["tiny", "tiny", "tiny", "far", "const", "const"]),
    std: pick([1e-19, 1e-20, 1e-21, 1e-22, 1e-23]),
    mean: r() < 0.7 ? shift : pick([0, 1e-38, 1e-30, 1e-20, -1e-17, 1e-13]),
    mag: 10 ** pick([-30, -20, -10, 0, 10, 20, 30]),
    dk: pick(["normal", "tiny", "small", "sub", "mixed", "mixed_normal", "small_sub", "small_sub"]),
    ds: pick([1e-37, 1e-35, 1e-33]),
  }));
  for (let i = 0; i < len; i++) {
    const row = layer === "1d" ? i % c : Math.floor(i / inner);
    const k = kinds[row];
    const z = r() * 2 - 1;
    x[i] = k.kind === "tiny"
      ? k.mean + z * k.std * 1.7
      : k.kind === "far"
      ? k.mean + z * k.mag
      : k.mean;
    const sub = Math.round((r() * 2 - 1) * 9000) * 1e-45;
    dy[i] = k.dk === "normal"
      ? r() * 2 - 1
      : k.dk === "tiny"
      ? (r() * 2 - 1) * 1e-20
      : k.dk === "small"
      ? (r() * 2 - 1) * 1e-37
      : k.dk === "sub"
      ? sub
      : k.dk === "mixed"
      ? (r() < 0.5 ? sub : (r() * 2 - 1) * 1e-20)
      : k.dk === "small_sub"
      ? (r() < 0.5 ? sub : (r() * 2 - 1) * k.ds)
      : (r() < 0.8 ? sub : r() * 2 - 1);
  }
  const nk = layer === "1d" ? 2 : 3;
  const lw = () => pick([0, 0, 0, -20, -87, -100, -1e30]);
  const mean_weight = Float32Array.from({ length: nk }, lw);
  const var_weight = Float32Array.from({ length: nk }, lw);
  return {
    layer,
    shape,
    options: { eps: pick([0, 0, 0, 2 ** -126, 1e-35]) },
    state: {
      weight: Float32Array.from({ length: c }, () => pick([1, 1, -3, 1e-10, 1e10, 1e-20])),
      bias: Float32Array.from({ length: c }, () => pick([0, 0, 1])),
      mean_weight,
      var_weight,
      running_mean: Float32Array.from({ length: c }, () => pick([0, shift, 1e-20, 1])),
      running_var: Float32Array.from({ length: c }, () => pick([0, 0, 1e-40, 1e-38, 1e-30])),
    },
    partial: true,
    training: r() < 0.5,
    x,
    dy,
    scales: true,
  };
}

if (import.meta.main) {
  await runSweep(
    make,
    undefined,
    Deno.args,
    (call) =>
      closeStats(call, call.x, call.training, call.state?.running_mean, call.state?.running_var),
  );
}
