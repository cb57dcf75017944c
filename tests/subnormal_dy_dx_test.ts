/**
 * Subnormal dy beside normal ones in a row that takes layout "nd"'s wide dx pass
 * (sn_bwd_wide_dx: a variance weight below float32's normal range, scaled statistics, ...),
 * attack fuzzer seed 4893 (issue 10). That pass takes dy in the row's dy unit 2^D by its bits,
 * scale2(dy, -D), which gives 0 below float32's normal range: with D = 0 (dy ~1e-31 beside
 * them) a subnormal dy was 0 before its product with gs' (up to 2^64) brought it back into range.
 * An evaluation of a constant row of 0 under gamma s 1e5 with dy ~5e-42 gave dx 0 where the
 * reference has ~5e-37. Such dy are now taken 2^64 higher, then brought back.
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";
import { make as sweepMake } from "./fuzz/subnormal_dy_sweep.ts";

/**
 * [2, 2, 1, 8], an evaluation of constant rows on BN's mean (running_mean 0.5, running_var 1)
 * whose variance weights are IN's and BN's halves beside LN's ~8e-39 (logits 87, 0, 87: a
 * weight below float32's normal range takes the wide passes), gamma 1e6 and -3e5: dx = dy gamma
 * s, with dy alternately +-3e-31 and subnormal (-8e-42 .. 8e-42).
 */
function constantRows(): LayerCall {
  const len = 32;
  return {
    layer: "2d",
    shape: [2, 2, 1, 8],
    options: { eps: 1e-5 },
    state: {
      weight: Float32Array.of(1e6, -3e5),
      bias: new Float32Array(2),
      mean_weight: Float32Array.of(-1e30, -1e30, 0),
      var_weight: Float32Array.of(87, 0, 87),
      running_mean: Float32Array.of(0.5, 0.5),
      running_var: Float32Array.of(1, 1),
    },
    partial: true,
    training: false,
    x: Float32Array.from({ length: len }, (_, i) => Math.floor(i / 8) * 0.25),
    dy: Float32Array.from(
      { length: len },
      (_, i) => i % 4 === 1 ? 3e-31 * (i % 8 === 1 ? 1 : -1) : (((i * 7) % 17) - 8) * 1e-42,
    ),
    scales: true,
  };
}

rangeTests(
  "attack fuzzer seed 4893: subnormal dy beside dy ~1e-31 under gamma s 1e5",
  async (backend) => {
    const call = make(4893);
    const { got, want } = await runBoth(call, backend);
    assert.equal(check(call, got, want), null);
  },
);

rangeTests(
  "SwitchNorm2d: a wide row's subnormal dy times gamma s 1e6 stays in dx",
  async (backend) => {
    const call = constantRows();
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);

// Two of the sweep's (tests/fuzz/subnormal_dy_sweep.ts): 127, an evaluation of [1, 2, 1, 8]
// (dx 0 for -2.7e-31 before), and 80, training of a row of 5000 (1327 dx off by up to 9%).
for (const seed of [127, 80]) {
  rangeTests(`subnormal dy sweep seed ${seed}`, async (backend) => {
    const call = sweepMake(seed);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  });
}
