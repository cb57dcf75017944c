/**
 * SwitchNorm1d's mean dots where the LN and BN means are normal float32 values of ~3e-38 that
 * differ by a subnormal while the rows and columns hold values of ~1 (their statistics are not
 * scaled, so the elements take the pair path, not wide_element): sn1d_bwd_element.wgsl's
 * element_row_pair formed mu_LN - mu_BN from the means' float32 words in the unit 1, which a GPU
 * that flushes subnormals (NVIDIA; SwiftShader here) makes 0. Training steps on a 6 x 6
 * checkerboard of +-1 bordered by values of ~1e-37 (LN means 2.5e-38 or 2.75e-38 beside BN means
 * of 3e-38 for its elements; dy 0 on the border, whose elements take wide_element) gave
 * `mean_weight`'s gradient 0 for -+3e-20 (116x its tolerance). lavapipe, which keeps subnormals,
 * passed before. Elements whose LN or BN mean has a word below 2^-100 now take wide_element
 * (mean_near_subnormal), whose centred means are lifted (backward_common.wgsl centred_lift). Each
 * call sums its values in an order where float64 is exact (the large values cancel before the
 * small ones come), so the float64 reference's means are the exact ones. Before the fix both calls
 * failed on SwiftShader, with NVIDIA's division emulated (tests/_nvidia_division.ts) or without;
 * both pass after there and on lavapipe. WASM missed both calls (`mean_weight`'s gradient -1.8e-19
 * for -3e-20 in the first, 578x its tolerance): its LN means, f64 sums of x - K in float32 about a
 * shift K of 1 from the row, dropped the 1e-37 beside 1 (0 for 2.5e-38; the BN means, which cancel
 * likewise, were formed again from exact sums). LN means that cancel below 2^-30 of their std are
 * now formed so too (wasm/src/oned.rs, exact_cancelled_rows): both calls pass, the gradients equal
 * to the reference's (which sums in an order where float64 is exact: the exact values to 8 digits).
 */
import assert from "node:assert/strict";
import { check } from "./fuzz/attack_fuzz.ts";
import { type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { seededRandom } from "../examples/_data.ts";

const f = Math.fround;

interface Case {
  /** The border: columns 6 and 7 of row i < 6 (rowBorder), columns 0 to 5 of rows 6, 7. */
  rowBorder: (i: number) => number;
  colBorder: number;
  gamma: number;
  mw: number[];
  vw: number[];
}

/**
 * [8, 8]: a 6 x 6 checkerboard of +-1 (its rows' and columns' partial sums 0 or 1), then the
 * border; dy uniform in (-1, 1) on the checkerboard, 0 on the border.
 */
function call(o: Case): LayerCall {
  const r = seededRandom(5);
  const x = new Float32Array(64), dy = new Float32Array(64);
  for (let i = 0; i < 8; i++) {
    for (let j = 0; j < 8; j++) {
      const inner = i < 6 && j < 6;
      x[i * 8 + j] = inner
        ? ((i + j) % 2 ? -1 : 1)
        : f(i < 6 ? o.rowBorder(i) : j < 6 ? o.colBorder : 1e-37);
      const d = f(r() * 2 - 1);
      dy[i * 8 + j] = inner ? d : 0;
    }
  }
  return {
    layer: "1d",
    shape: [8, 8],
    options: { eps: 1e-5, momentum: 0.1 },
    state: {
      weight: new Float32Array(8).fill(o.gamma),
      bias: new Float32Array(8),
      mean_weight: Float32Array.from(o.mw),
      var_weight: Float32Array.from(o.vw),
      running_mean: new Float32Array(8),
      running_var: new Float32Array(8).fill(1),
    },
    partial: true,
    training: true,
    x,
    dy,
  };
}

const CASES: Record<string, Case> = {
  "LN means 2.5e-38, BN means 3e-38": {
    rowBorder: () => 1e-37,
    colBorder: 1.2e-37,
    gamma: 1e20,
    mw: [0, 0],
    vw: [0, 0],
  },
  "LN means 2.5e-38 and 2.75e-38": {
    rowBorder: (i) => i % 2 ? 1e-37 : 1.1e-37,
    colBorder: 1.2e-37,
    gamma: 1e20,
    mw: [0, 0],
    vw: [0, 0],
  },
};

rangeTests(
  "SwitchNorm1d mean_weight gradients of LN and BN means a subnormal apart beside values of ~1 (pair elements)",
  async (backend) => {
    const failed: string[] = [];
    for (const [name, c] of Object.entries(CASES)) {
      const layerCall = { ...call(c), scales: true };
      const { got, want } = await runBoth(layerCall, backend);
      const err = check(layerCall, got, want);
      if (err) failed.push(`${name}: ${err}`);
    }
    assert.deepEqual(failed, []);
  },
);
