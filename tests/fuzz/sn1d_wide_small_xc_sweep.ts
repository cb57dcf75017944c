/**
 * A seeded sweep of SwitchNorm1d calls that take the backward's wide passes (issue 10) with
 * centred values x - mu far below 1 in their unit (sn1d_bwd_wide_dx took x - mu_LN and x - mu_BN
 * with their exponent apart but floored at 0, and wide_element's dgamma sat in a unit at least
 * 2^-120 of dy's). Rows of tiny data (1e-30 to 1e-44), columns of tiny or unit data beside
 * columns of +-1e20 to 3e38 (scaled statistics), data a few spacings about an offset, and
 * evaluations of tiny data on a far or tiny `running_mean` under a `running_var` up to 3e38;
 * gamma factor-wide (1e30, -3e20, 3e38) or tiny (1e-36, -1e-40), dy 1e-40 to 3e38, logits that
 * give weights below float32's normal range (-1e30, -92), eps 0 to 2^-126. Each call is held to
 * the float64 reference with the range tests' checks; failures are printed with their seed, then
 * the count. Not a test (no assertion, not run by `deno task test`): a tool to find members of a
 * fault class. NUMERICS.md ("SwitchNorm1d's statistics and wide elements") says what it found.
 *
 *   deno run -A tests/fuzz/sn1d_wide_small_xc_sweep.ts FIRST LAST [webgpu|wasm]
 *
 * @module
 */
import type { LayerCall } from "../_range_compare.ts";
import { runSweep } from "./_sweep.ts";
import { seededRandom } from "../../examples/_data.ts";

/** The sweep's call of `seed`. */
export function make(seed: number): LayerCall {
  const r = seededRandom(seed * 61 + 7);
  const pick = <T>(v: T[]) => v[Math.floor(r() * v.length)];
  const n = pick([2, 3, 4]), c = pick([2, 3, 4]);
  const len = n * c;
  const mode = pick(["tiny", "beside", "offset", "near"] as const);
  const tiny = () => pick([1e-30, 1e-36, 1e-38, 1e-40, 1e-44]);
  const big = pick([1e20, 1e30, 3e38]);
  const small = pick([1e-36, 1e-30, 1e-10, 1]);
  const xs = tiny();
  const base = pick([1, 1e10, 1e30, -3e20]);
  const wide = Array.from({ length: c }, () => r() < 0.5);
  const x = Float32Array.from({ length: len }, (_, i) => {
    const row = Math.floor(i / c), col = i % c;
    const u = r() * 2 - 1;
    if (mode === "tiny") return u * xs;
    if (mode === "beside") {
      return wide[col] ? (row % 2 ? big : -big) * (0.5 + r() / 2) : u * small;
    }
    if (mode === "offset") return base * (1 + Math.round(u * 4) * 2 ** -23);
    return u * xs;
  });
  const dy = Float32Array.from(
    { length: len },
    () => (r() * 2 - 1) * pick([1, 3e38, 1e30, 1e-20, 1e-40]),
  );
  const lw = () => pick([0, 0, -1e30, 87, 1.3, -92, -60]);
  return {
    layer: "1d",
    shape: [n, c],
    options: { eps: pick([1e-30, 1e-5, 2 ** -126, 0, 1]) },
    state: {
      weight: Float32Array.from({ length: c }, () => pick([1, 1e30, -3e20, 3e38, 1e-36, -1e-40])),
      bias: new Float32Array(c),
      mean_weight: Float32Array.from({ length: 2 }, lw),
      var_weight: Float32Array.from({ length: 2 }, lw),
      running_mean: Float32Array.from(
        { length: c },
        () => mode === "near" ? pick([0, 1e-38, 1e-30, 1e30, -1e10]) : pick([0, 1, 1e-30]),
      ),
      running_var: Float32Array.from({ length: c }, () => pick([0, 1, 1e-20, 1e30, 3e38])),
    },
    partial: true,
    training: r() < 0.5,
    x,
    dy,
    scales: true,
  };
}

if (import.meta.main) await runSweep(make);
