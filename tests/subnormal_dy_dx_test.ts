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

/**
 * The sweep's call of `seed` with its subnormal dy set to 0 (normal dy ~1e-37 alone) and each
 * row cut to its first `m` elements (all of them without `m`).
 */
function normalDy(seed: number, m?: number): LayerCall {
  const call = sweepMake(seed);
  const [n, c, h, w] = call.shape;
  const len = m ?? w;
  const rows = n * c * h;
  const x = new Float32Array(rows * len);
  const dy = new Float32Array(rows * len);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < len; i++) {
      x[r * len + i] = call.x[r * w + i];
      const d = call.dy![r * w + i];
      dy[r * len + i] = Math.abs(d) < 2 ** -126 ? 0 : d;
    }
  }
  return { ...call, shape: [n, c, h, len], x, dy };
}

// Sweep seed 324 at [4, 2, 1, 8], an evaluation: a row of 0 beside its sample's row of 1e-30
// under gamma 1e30 (LN's dL/dvar ~1e51), whose mean difference to the LN mean, -5e-31, times
// GvL's mantissa fell below float32's normal range in the row's unit 1 (sn_bwd_coef kept only
// exponents above 0 apart): the row's dx 0 where the reference has 1.5e19.
rangeTests("subnormal dy sweep seed 324: a row of 0 keeps its LN dL/dvar term", async (backend) => {
  const call = normalDy(324, 8);
  const { got, want } = await runBoth(call, backend);
  assertRangeChecks(call, got, want);
});

// Sweep seed 287, an evaluation of [2, 2, 1, 16] (gamma 1e30 over a std of ~4e9, dy ~1e-37):
// the wide dx pass's B' ~2^-131 in a unit set by dy gs's bound was 0 (dx without its dL/dvar
// term), and the pair rows' s^2 S2' ~4e-46 was 0 (`var_weight`'s gradient -4.5e-18 for
// -8.6e-7).
rangeTests("subnormal dy sweep seed 287: dL/dvar under dy ~1e-37 and s ~2e-10", async (backend) => {
  const call = normalDy(287);
  const { got, want } = await runBoth(call, backend);
  assertRangeChecks(call, got, want);
});
