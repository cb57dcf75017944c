/**
 * A seeded sweep of two neighbours of fixed faults in layout "nd"'s backward (issue 10):
 * partially-zero rows (rows of 0 with 1 to 3 nonzero entries, tiny ~1e-38, subnormal or large,
 * beside rows of 0 and rows of other scales) under mean weights that make the mixed mean tiny
 * (a weight ~8e-39 on a `running_mean` of 1 in an evaluation, logits like 87, 0, -87), the
 * neighbour of `sn_bwd_rows`' `mean_tiny` rows of 0 (subnormal dy sweep seed 47); and dy that
 * are subnormal and of one sign across a row (~1e-44 to 1e-41, some rows with a few normal ones)
 * under a gamma (1e30, -3e20, 1e6) that brings dy gamma into float32's normal range, the
 * neighbour of the wide dx pass's subnormal dy (attack fuzzer seed 4893). Training and
 * evaluation, rows of 8 to 5000, eps, running statistics and variance weights varied so that
 * rows take the scaled (wide) passes or the plain ones. Each call is held to the float64
 * reference with the range tests' checks; failures are printed with their seed, then the count.
 * Not a test (no assertion, not run by `deno task test`): a tool to find members of a fault
 * class. NUMERICS.md ("Scaled rows in the backward") says what it found.
 *
 *   deno run -A tests/fuzz/partial_zero_sweep.ts FIRST LAST [webgpu|wasm]
 *
 * @module
 */
import type { LayerCall } from "../_range_compare.ts";
import { runSweep } from "./_sweep.ts";
import { seededRandom } from "../../examples/_data.ts";

/** The sweep's call of `seed`: odd seeds stress item 1 (partial rows), even ones item 2 (dy). */
export function make(seed: number): LayerCall {
  const r = seededRandom(seed * 61 + 17);
  const pick = <T>(v: T[]) => v[Math.floor(r() * v.length)];
  const oneSignDy = seed % 2 === 0;
  const n = pick([1, 2, 4]), c = pick([1, 2, 3]);
  const m = pick([8, 16, 257, 5000]);
  const shape = [n, c, 1, m];
  const rows = n * c;
  const x = new Float32Array(rows * m);
  // Each row: "partial" (0 but 1 to 3 entries), "zero", or "spread" of a scale of its own.
  const tinyScale = () => pick([1e-38, 1e-40, 1e-44, 3e-39, 1.2e-38]);
  const bigScale = () => pick([1, 1e20, 3e38, 1e-20]);
  for (let row = 0; row < rows; row++) {
    const kind = pick(["partial", "partial", "zero", "spread"]);
    const base = row * m;
    if (kind === "partial") {
      const k = 1 + Math.floor(r() * 3);
      const tiny = r() < 0.6;
      for (let j = 0; j < k; j++) {
        const at = Math.floor(r() * m);
        const s = tiny ? tinyScale() : bigScale();
        x[base + at] = (r() < 0.7 ? 1 : -1) * s * (0.5 + 0.6 * r());
      }
    } else if (kind === "spread") {
      const s = pick([1, 1e-30, 1e10, 1e-38]);
      for (let i = 0; i < m; i++) x[base + i] = (r() * 2 - 1) * s;
    }
  }
  const dy = new Float32Array(rows * m);
  for (let row = 0; row < rows; row++) {
    const base = row * m;
    const sub = oneSignDy && r() < 0.8;
    const sign = r() < 0.5 ? 1 : -1;
    const sScale = pick([1e-41, 1e-43, 1e-44, 1e-42]);
    const dn = pick([1, 1e-20, 1e-36, 1e-31]);
    const fewNormal = sub && r() < 0.4;
    for (let i = 0; i < m; i++) {
      if (sub) {
        dy[base + i] = fewNormal && r() < 3 / m
          ? sign * dn * (0.5 + r())
          : sign * sScale * (0.5 + r() * 9);
      } else {
        dy[base + i] = (r() * 2 - 1) * dn;
      }
    }
  }
  // Mean weights that make the mixed mean tiny: BN (running_mean ~1 in an evaluation) ~8e-39.
  const meanPattern = pick([
    [87, 87, 0],
    [87, 0, -87],
    [0, 87, -87],
    [-87, 87, 0],
    [-1e30, -1e30, 0],
    [0, 0, 0],
    [87, 87, -87],
    [1.3, 0, -87],
  ]);
  const varPattern = pick([
    [0, 0, 0],
    [87, 0, 87],
    [-1e30, -1e30, 0],
    [0, 87, -87],
    [1.3, 0, 0],
  ]);
  return {
    layer: "2d",
    shape,
    options: { eps: pick([1e-30, 1e-5, 1, 2 ** -126]) },
    state: {
      weight: Float32Array.from({ length: c }, () => pick([1, 1e30, -3e20, 3e20, 1e6])),
      bias: new Float32Array(c),
      mean_weight: Float32Array.from(meanPattern),
      var_weight: Float32Array.from(varPattern),
      running_mean: Float32Array.from({ length: c }, () => pick([0, 1, -1, 1e-30])),
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
