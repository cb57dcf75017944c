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

// About the heaviest term (IN, mean weight ~1), LN's and BN's parts of the mean w (m_k - a)
// cancel: a constant row of -3.3e29 whose sample's LN mean is twice it, under LN and BN mean
// weights of e^-48.7 each on a running_mean of -2e20, has x - mu = +0.14 beside parts of 2.3e8,
// which WebGPU's parts (fine_low), each difference m_k - a in one float32, lost: y 0 for 0.045
// (gamma 1e-20 over a BN std of 3.2e-20; under a running_var of 0 NaN for +Infinity, attack
// fuzzer seed 146340, tests/std_zero_test.ts).
rangeTests(
  "SwitchNorm2d: an evaluation whose mixed mean lies 0.14 from a row of -3.3e29, the rest of two cancelling parts about its heaviest term, gives the reference's y and gradients",
  async (backend) => {
    const fill = (n: number, v: number) => new Array<number>(n).fill(v);
    const call: LayerCall = {
      layer: "2d",
      shape: [1, 3, 1, 4],
      options: { eps: 0 },
      state: {
        weight: Float32Array.of(1e-20, 1e-20, 1e-20),
        bias: new Float32Array(3),
        mean_weight: Float32Array.of(50, 1.3, 1.3),
        var_weight: Float32Array.of(-1e30, -1e30, 0),
        running_mean: new Float32Array(3).fill(-2e20),
        running_var: new Float32Array(3).fill(1e-39),
      },
      partial: true,
      training: false,
      x: Float32Array.from([...fill(4, -1e30), ...fill(4, -2e30 / 3), ...fill(4, -1e30 / 3)]),
      dy: Float32Array.from([...fill(8, 1), 1, -0.5, 2, 0.25]),
      scales: true,
    };
    const { want, got } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);
