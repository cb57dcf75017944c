/**
 * A grid sweep of the class of `tests/far_anchor_mean_test.ts`'s "batch mean 0" cases (issue 10):
 * calls whose BN mean (all the mean and variance weight on BN) is exactly 0 or far below the
 * row's small elements, over x = [0, 0, -b, -B, c, 0, b, B] with B 1e20 to 3e38, b 1e-30 to
 * 0.98 and c 0 to 1e-30 (the mean c / 8), so that x = +-b lies 2^100 or more below the mix's
 * unit; training (running_var 0) and evaluations (running_mean 0, running_var B^2 / 4), gamma 1
 * and 3e38, beta 0 and 1e-30, dy ~1 and ~1e-30 (0 at +-B), eps 1e-5. Layout "nd" [2, 1, 1, 4],
 * or "1d" [8, 2] (the data in channel 0, channel 1 all 1). Each call is held to the float64
 * reference with the range tests' checks; failures are printed, then the count. Not a test (no
 * assertion, not run by `deno task test`): a tool to find members of a fault class. NUMERICS.md
 * ("A mean far below the row's unit") says what it found.
 *
 *   deno run -A tests/fuzz/zero_mean_sweep.ts [webgpu|wasm] [nd|1d]
 *
 * @module
 */
import { assertRangeChecks, type LayerCall, runBoth } from "../_range_compare.ts";

interface Case {
  layout: "nd" | "1d";
  train: boolean;
  B: number;
  b: number;
  c: number;
  gamma: number;
  beta: number;
  dys: number;
}

/** The sweep's call for `o`. */
export function make(o: Case): LayerCall {
  const { layout, train, B, b, c, gamma, beta, dys } = o;
  const x = [0, 0, -b, -B, c, 0, b, B];
  const d = [-4.5 * dys, 2 * dys, 4.4 * dys, 0];
  const dy = [...d, ...d];
  const nd = layout === "nd";
  const k = nd ? 1 : 2;
  return {
    layer: nd ? "2d" : "1d",
    shape: nd ? [2, 1, 1, 4] : [8, 2],
    options: { eps: 1e-5 },
    state: {
      weight: new Float32Array(k).fill(gamma),
      bias: new Float32Array(k).fill(beta),
      mean_weight: nd ? Float32Array.of(-1e30, -1e30, 0) : Float32Array.of(-1e30, 0),
      var_weight: nd ? Float32Array.of(-1e30, -1e30, 0) : Float32Array.of(-1e30, 0),
      running_mean: new Float32Array(k),
      running_var: new Float32Array(k).fill(train ? 0 : B * B / 4),
    },
    partial: true,
    training: train,
    x: Float32Array.from(nd ? x : x.flatMap((v) => [v, 1])),
    dy: Float32Array.from(nd ? dy : dy.flatMap((v) => [v, 0.5 * dys])),
    scales: true,
  };
}

/** Every case of the grid, of `only`'s layout where given. */
export function cases(only?: "nd" | "1d"): Case[] {
  const out: Case[] = [];
  for (const layout of ["nd", "1d"] as const) {
    if (only && only !== layout) continue;
    for (const train of [true, false]) {
      for (const B of [3e38, 4.65e28, 1e20]) {
        for (const b of [0.98, 1e-10, 1e-20, 1e-30]) {
          for (const c of [0, 1e-40, 1e-35, 1e-30, -2e-38]) {
            for (const gamma of [1, 3e38]) {
              for (const beta of [0, 1e-30]) {
                for (const dys of [1, 1e-30]) {
                  out.push({ layout, train, B, b, c, gamma, beta, dys });
                }
              }
            }
          }
        }
      }
    }
  }
  return out;
}

if (import.meta.main) {
  const be = (Deno.args[0] ?? "webgpu") as "webgpu" | "wasm";
  const only = Deno.args[1] as "nd" | "1d" | undefined;
  let fails = 0;
  const all = cases(only);
  for (const o of all) {
    const call = make(o);
    try {
      const { got, want } = await runBoth(call, be);
      assertRangeChecks(call, got, want);
    } catch (e) {
      fails++;
      console.log("FAIL", JSON.stringify(o), String(e).slice(0, 300));
    }
  }
  console.log(`DONE ${be}: ${fails} of ${all.length} failed`);
  Deno.exit(0);
}
