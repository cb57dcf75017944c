/**
 * Issue 10, point 1: a mixed mean far below the largest |x| of its row. An evaluation whose
 * means are an IN (or LN) mean of weight e^-87 (1.6e-38) and a running_mean of 0 of weight ~1:
 * the mixed mean is 2.5e-9, while the row spans 6e29 and 1e-20, so y of the small elements is
 * -gamma mu / std = 150 (gamma -1e30 over a std of 1.6e19). WebGPU held x and the mean in one
 * unit, the row's largest |x| (2^99), where both are below float32's range: y 0 for 150 (attack
 * fuzzer seed 903: 0 for 284).
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";

/** The case above; layout "nd" [1, 1, 1, 4] or "1d" [1, 4] (the row is then a sample). */
function tinyWeightMeanFarBelowRow(layer: "1d" | "2d", dyOfLargest = 1): LayerCall {
  const nd = layer === "2d";
  const c = nd ? 1 : 4;
  const x = Float32Array.of(6e29, 1e-20, -3e-20, 2e-20);
  return {
    layer,
    shape: nd ? [1, 1, 1, 4] : [1, 4],
    options: { eps: 0 },
    state: {
      weight: new Float32Array(c).fill(-1e30),
      bias: new Float32Array(c),
      // Weights e^-87 on IN (LN for "1d"), ~1 on BN; the variance BN's alone.
      mean_weight: nd ? Float32Array.of(0, -1e30, 87) : Float32Array.of(0, 87),
      var_weight: nd ? Float32Array.of(-1e30, -1e30, 0) : Float32Array.of(-1e30, 0),
      running_mean: new Float32Array(c),
      running_var: new Float32Array(c).fill(2.7e38),
    },
    partial: true,
    training: false,
    x,
    dy: Float32Array.of(dyOfLargest, 0.5, -1, 2),
    scales: true,
  };
}

for (const layer of ["1d", "2d"] as const) {
  rangeTests(
    `SwitchNorm${layer}: an evaluation whose mixed mean lies 2^130 below the row's largest |x| gives the reference's y and gradients`,
    async (backend) => {
      const call = tinyWeightMeanFarBelowRow(layer);
      const { want, got } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}

// dy 0 at the largest |x|: dgamma and dL/dvar are the small elements' sums alone.
rangeTests(
  "SwitchNorm2d: the gradients of the small elements of such a row, where dy of its largest is 0, are the reference's",
  async (backend) => {
    const call = tinyWeightMeanFarBelowRow("2d", 0);
    const { want, got } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);
