/**
 * The mixed mean mu = sum_k w_k mu_k is formed about its heaviest term and its float64 rounding
 * err kept beside it (wasm/src/nd_normalize.rs `anchored_mean`, backends/reference.ts
 * `anchoredMean`): y takes (x - mu) - err, and so must the backward, whose dgamma is
 * s sum dy ((x - mu) - err) and whose dL/dvar (so `var_weight`'s gradient, and dx through it)
 * takes the same sum. WASM's backward took err only in the rows it sums again in f64 and in rows
 * of std 0; its ordinary rows (f32 row sums, then the combine's (centre - mu) sum dy)
 * differentiated about the rounded mu. Where the elements that carry dy equal mu, -err sum dy is
 * the whole of that sum, and a large s, gamma or dy takes it past float32's range. Here rows of
 * 14 equal elements and two more around them (dy 1e-20 at one, 0 at the other, so that the f32
 * sum dy (x - hi) is neither 0 nor tiny and the row stays on the ordinary path), whose mixed mean
 * has a rest below half an ulp of its anchor's: in an evaluation on a running_mean one float32
 * ulp away (BN weight 3.8e-10, std 1e-18, dy 2e37), dgamma -Infinity, which WASM gave as 0.005;
 * in training with LN means an ulp's fraction from the IN means (LN weight 7.6e-10, gamma 1e30,
 * dy 2e37), `var_weight`'s gradient -+Infinity, which WASM gave as ~1e-5. WASM now keeps err per
 * row in the statistics area (wasm/src/layout.rs `Stats::err`), and the combine takes
 * ((centre - mu) - err) sum dy. Three channels: two rows through the combine's f64x2 lanes and
 * one through its odd tail.
 */
import assert from "node:assert/strict";
import { check } from "./fuzz/attack_fuzz.ts";
import { type LayerCall, rangeTest, runBoth } from "./_range_compare.ts";

const M = 16;

/** A row of 14 copies of `a`, then a + d and a - d (its mean a exactly). */
function row(a: number, d: number): number[] {
  return [...new Array(M - 2).fill(a), a + d, a - d];
}

/** dy `big` where x is the row's mean, 1e-20 at a + d, 0 at a - d. */
function rowDy(big: number): number[] {
  return [...new Array(M - 2).fill(big), 1e-20, 0];
}

rangeTest(
  "wasm",
  "the backward's ordinary rows take x - mu as (x - mu) - err, the mixed mean's rounding",
  async () => {
    const up = Math.fround(1 + 2 ** -23), ulp = 2 ** -23;
    const calls: (LayerCall & { what: string })[] = [
      {
        what: "evaluation, rows of 1 on a running_mean of 1 + 2^-23 (dgamma)",
        layer: "2d",
        shape: [1, 3, 1, M],
        options: { eps: 0 },
        training: false,
        x: Float32Array.from([...row(1, 0.5), ...row(1, 0.5), ...row(1, 0.5)]),
        dy: Float32Array.from([...rowDy(2e37), ...rowDy(2e37), ...rowDy(2e37)]),
        state: {
          weight: Float32Array.of(1, 2, -3),
          mean_weight: Float32Array.of(0, 0, -21),
          var_weight: Float32Array.of(-1e30, -1e30, 0),
          running_mean: new Float32Array(3).fill(up),
          running_var: new Float32Array(3).fill(1e-36),
        },
        partial: true,
        scales: true,
      },
      {
        what: "training, rows at 1, 1 and 1 + 2^-23 (var_weight's gradient)",
        layer: "2d",
        shape: [1, 3, 1, M],
        training: true,
        x: Float32Array.from([...row(1, ulp), ...row(1, ulp), ...row(up, ulp)]),
        dy: Float32Array.from([...rowDy(2e37), ...rowDy(2e37), ...rowDy(2e37)]),
        state: {
          weight: Float32Array.of(1e30, 1e30, -1e30),
          mean_weight: Float32Array.of(0, -21, -1e30),
        },
        partial: true,
        scales: true,
      },
    ];
    for (const { what, ...call } of calls) {
      const { got, want } = await runBoth(call, "wasm");
      assert.equal(check(call, got, want), null, what);
    }
  },
);
