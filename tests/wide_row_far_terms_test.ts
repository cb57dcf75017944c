/**
 * Evaluations of rows of +-3.4e38 (float32's largest value) whose statistics of weight ~0 lie far
 * from the mix's (attack helper-164, issue 10):
 *
 * - Attack fuzzer seed 90582 (SwitchNorm3d [1, 2, 2, 1, 500], eps 1e10): the two rows' counts of
 *   +-3.4e38 cancel over the sample, so the LN mean is exactly 0, beside IN means of +-3.4e36 (mean
 *   weight 0) and a running_mean of -2e20. `mean_weight`'s gradient is w_LN w_BN gm (mu_LN - mu_BN),
 *   -20.5: WASM's float64 sums of x - mu_in rounded every term alike (2^-53 of 3.4e38) and left the
 *   LN mean 1e22 off, -1082 (nd_grad_means' exact_mean_dots now sums such rows exactly); WebGPU's
 *   wide row took the BN lane mu_BN - mu about the IN mean 3.4e36 (its mix's first word), which
 *   rounded it to 0, -4.40 (sn_bwd_rows' FAR_HI now takes such lanes in a unit of their own).
 * - Attack fuzzer seed 99545 (SwitchNorm2d [4, 3, 1, 1000], eps 0): a row of 500 of each sign has
 *   an IN mean of exactly 0, so WebGPU's unit for its mix came from the running statistics (0.5,
 *   3e38), 2^0 beside data of 2^128: sn_bwd_wide_reduce's dy' (x' - mu') overflowed, S2 NaN, and
 *   every dx of its sample NaN through gv times an LN variance weight of 0 (over_exp now takes x
 *   - mu in a unit of its own there).
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";

for (const seed of [90582, 99545]) {
  rangeTests(
    `attack fuzzer seed ${seed}: an evaluation of rows of +-3.4e38 gives the reference's dx and logit gradients`,
    async (backend) => {
      const call = make(seed);
      const { got, want } = await runBoth(call, backend);
      assert.equal(check(call, got, want), null);
    },
  );
}

/** `call` with `edit` applied to copies of its state and x. */
function varied(
  call: LayerCall,
  edit: (state: Record<string, Float32Array>, x: Float32Array) => void,
): LayerCall {
  const state = Object.fromEntries(
    Object.entries(call.state!).map(([k, v]) => [k, (v as Float32Array).slice()]),
  );
  const x = call.x.slice();
  edit(state, x);
  return { ...call, state, x };
}

/** Swaps rows `a` and `b` (of `m` floats) of x. */
function swapRows(x: Float32Array, m: number, a: number, b: number): void {
  const t = x.slice(a * m, (a + 1) * m);
  x.copyWithin(a * m, b * m, (b + 1) * m);
  x.set(t, b * m);
}

// Seed 90582's class: the BN lane (running_mean - mu) far below the IN mean of weight 0, and the
// LN mean exactly 0 (the two rows' counts of +-3.4e38 cancel).
for (const rm of [-2e20, 7, 1e25, -3e30]) {
  rangeTests(
    `attack fuzzer seed 90582 on a running_mean of ${rm}: rows of +-3.4e38 whose LN mean is 0 give the reference's mean_weight gradient`,
    async (backend) => {
      const call = varied(make(90582), (st) => st.running_mean[0] = rm);
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}

// Seed 99545's class: a row of +-3.4e38 of IN mean 0 (row 1: 500 of each sign) evaluated on
// running statistics near 0 (channel 1's), in sample 0 or moved to sample 1, 3 or 2 (rows 4,
// 10, 7).
const ZERO_MEAN: [number, number, number][] = [[0, 1, 3e38], [1e10, 4, 3e38], [-3, 10, 1], [
  0.5,
  7,
  1e-30,
]];
for (const [rm, row, rv] of ZERO_MEAN) {
  rangeTests(
    `attack fuzzer seed 99545 with its IN-mean-0 row at row ${row}, on a running_mean of ${rm} and a running_var of ${rv}: no dx is NaN`,
    async (backend) => {
      const call = varied(make(99545), (st, x) => {
        st.running_mean[1] = rm;
        st.running_var[1] = rv;
        if (row !== 1) swapRows(x, 1000, 1, row);
      });
      const { got, want } = await runBoth(call, backend);
      assert.ok(got.dx.every((d) => !Number.isNaN(d)), "no NaN dx");
      assertRangeChecks(call, got, want);
    },
  );
}
