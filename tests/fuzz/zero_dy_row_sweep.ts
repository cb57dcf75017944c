/**
 * A grid of issue 10's kind (tests/zero_dy_row_test.ts): rows whose dy are all 0 beside a gamma /
 * std of 2^100 to 2^190 (one channel of constant data under gamma 1e30 or 3e38 over running_var
 * 0 with eps 1e-20 or 1e-36, or 1e-36 with eps 0), LN and BN means weighted 0.5, the variance
 * BN's: layouts "2d", "3d" (rows of 3 and 5000, one or two samples) and "1d", training and
 * evaluation, the zero rows in one or two channels. Each call is held to the float64 reference
 * with the range tests' checks; failures are printed, then the counts. Not a test (no assertion,
 * not run by `deno task test`); NUMERICS.md ("Scaled rows in the backward") says what it found.
 *
 *   deno run -A tests/fuzz/zero_dy_row_sweep.ts [webgpu|wasm]
 *
 * @module
 */
import { assertRangeChecks, type LayerCall, runBoth } from "../_range_compare.ts";

export interface Spec {
  layer: "1d" | "2d" | "3d";
  training: boolean;
  gamma: number;
  eps: number;
  m: number; // row length (nd) or batch (1d)
  zero: number[]; // channels whose dy are all 0
  big?: number; // the channel of the large gamma and running_var 0
  n?: number;
}

export function zeroDyCall(s: Spec): LayerCall {
  const c = 3, nd = s.layer !== "1d";
  const big = s.big ?? 0, nn = s.n ?? 1;
  const n = nd ? nn : s.m, m = nd ? s.m : 1;
  const shape = s.layer === "1d" ? [n, c] : s.layer === "2d" ? [n, c, 1, m] : [n, c, 1, 1, m];
  const len = n * c * m;
  const chan = (i: number) => nd ? Math.floor(i / m) % c : i % c;
  const pos = (i: number) => nd ? i % m + Math.floor(i / (m * c)) * 13 : Math.floor(i / c);
  const x = Float32Array.from({ length: len }, (_, i) => {
    const k = chan(i), j = pos(i);
    // Channel 0: constant (std sqrt(eps) in both modes); the others spread.
    return k === big ? 1 : ((j * 7 + k * 3) % 11) - 5 + k;
  });
  const dy = Float32Array.from({ length: len }, (_, i) => {
    const k = chan(i), j = pos(i);
    if (s.zero.includes(k)) return 0;
    return ((j * 5 + k) % 7) - 3 || 1;
  });
  return {
    layer: s.layer,
    shape,
    options: { eps: s.eps },
    state: {
      weight: Float32Array.from([1, 2, 0.5], (v, k) => k === big ? s.gamma : v),
      bias: new Float32Array(c),
      mean_weight: nd ? Float32Array.of(-1e30, 0, 0) : Float32Array.of(0, 0),
      var_weight: nd ? Float32Array.of(-1e30, -1e30, 0) : Float32Array.of(-1e30, 0),
      running_mean: new Float32Array(c),
      running_var: Float32Array.from(
        [1, 1, 1],
        (v, k) => k === big ? (s.eps === 0 ? 1e-36 : 0) : v,
      ),
    },
    partial: true,
    training: s.training,
    x,
    dy,
    scales: true,
  };
}

if (import.meta.main) {
  const backend = (Deno.args[0] ?? "webgpu") as "webgpu" | "wasm";
  let fails = 0, total = 0, zeroReference = 0;
  for (const layer of ["2d", "3d", "1d"] as const) {
    for (const training of [false, true]) {
      for (const gamma of [1e30, 3e38]) {
        for (const eps of [1e-20, 1e-36, 0]) {
          if (eps === 0 && training) continue;
          for (const m of [3, 5000]) {
            if (layer === "1d" && m === 5000) continue;
            for (
              const [big, zero] of [[0, [0]], [0, [0, 2]], [2, [2]], [1, [0, 1]]] as [
                number,
                number[],
              ][]
            ) {
              for (const n of layer === "1d" ? [1] : [1, 2]) {
                const s = { layer, training, gamma, eps, m, zero, big, n };
                const call = zeroDyCall(s);
                const { got, want } = await runBoth(call, backend);
                total++;
                // (The reference's dx of the large gamma's row, whose dy are 0, is not 0.)
                if (!(Math.abs(want.dx[layer === "1d" ? big : big * m]) > 0)) zeroReference++;
                try {
                  assertRangeChecks(call, got, want);
                } catch (e) {
                  fails++;
                  console.log("FAIL", JSON.stringify(s), String(e).slice(0, 200));
                }
              }
            }
          }
        }
      }
    }
  }
  console.log({ total, fails, zeroReference });
  Deno.exit(0);
}
