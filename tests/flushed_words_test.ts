/**
 * Issue 10: a wide row whose mixed mean is exactly 0 (an evaluation with the mean on BN's
 * `running_mean` of 0, the other means of weight 0) beside a mix whose unit 2^e lies far above
 * its data, so that x 2^-e falls below float32's normal range. The wide map keeps term 0's mean
 * in its word hi' whatever its weight, cancelled by lo': both below float32's normal range in
 * that unit, nonzero, so the row was not taken for one of mean 0 and x - mu was formed as
 * (x 2^-e - hi') - lo', x 2^-e flushed: y 0 where the reference has gamma x / std (51 for x
 * 1e-25 under gamma 3e38 over an LN std of ~6e11 in the unit 2^44; outlier_beside_tiny_sweep
 * seeds under gamma 3e38, 109 of 810 calls). A row of the mean 0 to its words' precision now
 * takes x alone from its own exponent there (`words_below_normal`, shaders/common.wgsl).
 */
import {
  affineSizes,
  assertOutputsClose,
  type CallResult,
  type LayerCall,
  rangeTests,
  runBoth,
} from "./_range_compare.ts";
import { Y_SCALED } from "./_tolerances.ts";
import { make } from "./fuzz/outlier_beside_tiny_sweep.ts";

/** y held to the reference's as the range tests hold it (assertRangeChecks), per row. */
function assertYClose(call: LayerCall, got: CallResult, want: CallResult): void {
  const rows = call.shape.slice(call.layer === "1d" ? 1 : 2).reduce((a, b) => a * b, 1);
  assertOutputsClose(got, want, {
    y: { tol: Y_SCALED, rows, termScale: affineSizes(call, want.y) },
  });
}

/**
 * [1, 2, 1, 4]: channel 0 one x of 1e13 (an LN std of ~1.9e12 over the sample, the mix's unit
 * 2^44), channel 1 x ~1e-25 (its IN mean, of weight 0, in hi'), gamma 3e38: y of channel 1 ~160.
 */
const meanZeroFarBelowUnit: LayerCall = {
  layer: "2d",
  shape: [1, 2, 1, 4],
  options: { eps: 1e-5 },
  state: {
    weight: Float32Array.of(1, 3e38),
    bias: new Float32Array(2),
    mean_weight: Float32Array.of(-1e30, -1e30, 0),
    var_weight: new Float32Array(3),
    running_mean: new Float32Array(2),
    running_var: Float32Array.of(1, 1),
  },
  partial: true,
  training: false,
  x: Float32Array.of(1e13, 0, 0, 0, 1e-25, -4e-26, 0, 3e-26),
};

rangeTests(
  "SwitchNorm2d: an evaluation of mean 0 whose data lie below float32's normal range in the mix's unit gives the reference's y",
  async (backend) => {
    const { want, got } = await runBoth(meanZeroFarBelowUnit, backend);
    assertYClose(meanZeroFarBelowUnit, got, want);
  },
);

// Sweep seeds (forward alone: their backward is another class): x of 1e-38 beside LN's std of
// ~100 (3245, 3335), 1e-25 beside ~6e11 (3383), 1e-20 beside ~6e18 (3417).
rangeTests(
  "SwitchNorm2d: outlier_beside_tiny_sweep's evaluations under gamma 3e38 give the reference's y",
  async (backend) => {
    for (const seed of [3245, 3335, 3383, 3417]) {
      const call = { ...make(seed), dy: undefined };
      const { want, got } = await runBoth(call, backend);
      assertYClose(call, got, want);
    }
  },
);
