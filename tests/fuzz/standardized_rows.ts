/**
 * Training calls on input already standardized per row (an InstanceNorm's output, in float32 as
 * PyTorch computes it: rows of N(1.5, 3^2) minus their mean over sqrt(var + 1e-5)), the most
 * common case of README's "coinciding statistics" known exception (issue 10): every IN variance
 * lies within ~1e-6 of its LN and BN ones, so `var_weight`'s gradient is a sum of differences
 * that float32-accurate IN variances carry whole. Prints each call that fails the range checks
 * (tests/_range_compare.ts) and the count. Not a test (no assertion, not run by `deno task test`):
 * NUMERICS.md ("Coinciding statistics in training") says what it found.
 *
 *   deno run -A tests/fuzz/standardized_rows.ts [wasm|webgpu] [SEEDS]
 *
 * @module
 */
import { assertRangeChecks, type LayerCall, runBoth } from "../_range_compare.ts";
import { seededRandom } from "../../examples/_data.ts";

/** A training call on [n, c, h, w] of rows standardized in float32, dy uniform in +-dyScale. */
export function standardized(seed: number, [n, c, h, w]: number[], dyScale: number): LayerCall {
  const r = seededRandom(seed);
  const m = h * w;
  const x = new Float32Array(n * c * m), dy = new Float32Array(n * c * m);
  for (let row = 0; row < n * c; row++) {
    const v = Array.from({ length: m }, () => {
      const u = r(), u2 = r();
      return Math.fround(
        Math.sqrt(-2 * Math.log(u + 1e-12)) * Math.cos(2 * Math.PI * u2) * 3 + 1.5,
      );
    });
    let s = 0;
    for (const a of v) s = Math.fround(s + a);
    const mu = Math.fround(s / m);
    let q = 0;
    for (const a of v) q = Math.fround(q + Math.fround((a - mu) ** 2));
    const sd = Math.fround(Math.sqrt(Math.fround(q / m) + 1e-5));
    for (let k = 0; k < m; k++) x[row * m + k] = Math.fround(Math.fround(v[k] - mu) / sd);
    for (let k = 0; k < m; k++) dy[row * m + k] = (r() * 2 - 1) * dyScale;
  }
  return {
    layer: "2d",
    shape: [n, c, h, w],
    state: {
      mean_weight: Float32Array.from([0.3, 0.5, -0.2]),
      var_weight: Float32Array.from([0.1, 1.2, 0.4]),
    },
    partial: true,
    training: true,
    x,
    dy,
    scales: true,
  };
}

if (import.meta.main) {
  const backend = (Deno.args[0] ?? "wasm") as "wasm" | "webgpu";
  const seeds = Number(Deno.args[1] ?? 3);
  const shapes = [[2, 1, 5, 10], [8, 3, 8, 8], [32, 3, 28, 28], [4, 16, 14, 14], [16, 8, 7, 7]];
  let fails = 0, calls = 0;
  for (let seed = 1; seed <= seeds; seed++) {
    for (const shape of shapes) {
      for (const dyScale of [1, 1e3]) {
        const call = standardized(seed, shape, dyScale);
        const { got, want } = await runBoth(call, backend);
        calls++;
        try {
          assertRangeChecks(call, got, want, `seed ${seed} [${shape}] dy ~${dyScale}`);
        } catch (e) {
          fails++;
          console.log(String((e as Error).message).replaceAll("\n", " | ").slice(0, 400));
        }
      }
    }
  }
  console.log(`${fails} of ${calls} calls fail on ${backend}`);
}
