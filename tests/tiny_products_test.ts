/**
 * Backward products far below float32's normal range that gamma s or gamma s^3 brings back
 * (issue 10; NUMERICS.md, "Scaled rows in the backward"). Two faults of layout "nd" on WebGPU,
 * whose GPU (lavapipe) flushes subnormal results and operands:
 *   - sn_bwd_reduce summed dy (x - c) in units of 1 where every product lay near or below
 *     float32's normal range (rows of 1 +- 3e-7 under dy ~1e-31: products ~1e-38), S2 0 or a few
 *     bits, and gamma s^3 (3e38 times s ~5e6 under eps 0) made that dx's dL/dvar term: such
 *     segments (low_products) are now summed again by sn_bwd_wide_reduce with dy in the unit of
 *     its largest.
 *   - sn_bwd_rows' wide_row keeps gamma's exponent apart, so gm' = s gamma' S1 and
 *     gv' = gamma' s^3 S2 are mantissas: s ~1e-5 (eps 1e10) times S2 ~1e-30 made gv' ~8e-46,
 *     a subnormal of a few bits (dx's dL/dvar term 2.2x the reference's); such sums are now
 *     brought to [1, 2), their exponents apart.
 * Expected values from the float64 reference.
 */
import assert from "node:assert/strict";
import { assertRangeChecks, rangeTests, runBoth } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";
import { make as sweepMake } from "./fuzz/tiny_products_sweep.ts";

// Attack fuzzer seeds, training then an evaluation on the running buffers it left:
// 16624, SwitchNorm2d [2, 1, 1, 4] under eps 1e10, gamma 3e38 (the evaluation's dx 3700x its
// tolerance: gv' ~8e-46); 25482, SwitchNorm3d [1, 3, 2, 1, 17] under eps 1e10 (`var_weight`'s
// gradient 0 for +-3.55e-18, 906x); 27858, SwitchNorm2d [8, 3, 1, 4] under eps 0, rows of
// 1 +- 5e-7 under dy ~1e-31 (dx 4.56e13 for 4.70e13: S2's products flushed).
for (const seed of [16624, 25482, 27858]) {
  rangeTests(
    `attack fuzzer seed ${seed}: tiny backward products keep their terms`,
    async (backend) => {
      const call = make(seed);
      const { got, want } = await runBoth(call, backend);
      assert.equal(check(call, got, want), null);
    },
  );
}

// Sweep seeds (tests/fuzz/tiny_products_sweep.ts): 47, training of [4, 2, 1, 4] rows of 1 +- 3e-7
// under eps 0 and dy ~5e-32 (S2's products flushed: dx 4.4x the reference); 110, rows of 5000 of
// that kind over several segments (dx of the wrong sign); 289, a factor-wide row of 257 under
// eps 1e10 whose gm' = s gamma' S1 (s 1e-5, S1 ~1.5e-36) was subnormal (dx 0.3% off).
for (const seed of [47, 110, 289]) {
  rangeTests(`tiny products sweep seed ${seed}`, async (backend) => {
    const call = sweepMake(seed);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  });
}

/**
 * Tiny products sweep seed 1112: a SwitchNorm1d [2, 3] evaluation under eps 0 whose channel 0
 * has dy -4.3e-37 times xhat ~2.3e6 (dgamma -9.8e-31). sn1d_bwd_reduce's column line forms
 * dgamma's share as a loose pair, which cuts dy into 12-bit parts: its low part, ~1e-40, lay below
 * float32's normal range, and a GPU that flushes (NVIDIA, SwiftShader) took it for 0: dgamma
 * -9.79991e-31 for -9.80324e-31 (1.7x its tolerance). Also the same call with dy -4.3e-37 alone
 * (its subnormal dy 0).
 */
rangeTests("tiny products sweep seed 1112 (SwitchNorm1d dgamma of dy ~4e-37)", async (backend) => {
  const call = sweepMake(1112);
  for (const dy of [call.dy!, Float32Array.from(call.dy!, (v) => Math.abs(v) < 1e-38 ? 0 : v)]) {
    const c = { ...call, dy };
    const { got, want } = await runBoth(c, backend);
    assert.ok(Math.abs(want.grads.weight[0] / -9.803e-31 - 1) < 1e-3);
    assertRangeChecks(c, got, want);
  }
});
