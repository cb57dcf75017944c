/**
 * Issue 10, point 1: WebGPU takes a mixing weight below 2^-252 as 0 (README, Numerics), and the
 * layer formed its logit gradients through softmax's Jacobian with the float64 weight. Its dot
 * product, summed in the mix's unit by a backend that computes with that weight at 0, may be
 * ~1e100 (dL/dmu ~2e61 of gamma 3e38 over a std of 1e15, times means of 3e38): times a weight of
 * 5e-101 the cut logit's gradient was 0.0147 where the reference at that weight 0 gives 0 (attack
 * fuzzer seed 92; seeds 26, 30, 845: up to 0.28, and in others' logits too). The Jacobian now takes
 * the weights the backend cut as 0 (`BackwardResult.zeroWeightsBelow`).
 */
import assert from "node:assert/strict";
import { softmax } from "../_importance.ts";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";

Deno.test("softmax's vector-Jacobian product takes the weights below zeroBelow as 0", () => {
  // Weights [0.5, ~2^-332, 0.5]: the middle dot is 1e120, beyond every other term.
  const s = softmax([0, -230, 0]);
  const g = [1, 1e120, 3];
  const cut = s.vjp(g, 2 ** -252);
  const asZero = softmax([0, -1e30, 0]).vjp(g);
  assert(cut[1] === 0, `the cut weight's logit gradient is ${cut[1]}`);
  assert(cut[0] === asZero[0] && cut[2] === asZero[2], `${cut} for ${asZero}`);
  // Without zeroBelow the weight stays: 2^-332 1e120 shows in every gradient.
  assert(Math.abs(s.vjp(g)[1]) > 1e10);
});

/** An evaluation whose LN mean weight is 5e-101 (taken as 0 on WebGPU) under a dot of ~1e100. */
function cutWeightHugeDot(): LayerCall {
  return {
    layer: "2d",
    shape: [1, 1, 1, 16],
    options: { eps: 1e-30 },
    state: {
      weight: Float32Array.of(3e38),
      bias: Float32Array.of(0),
      mean_weight: Float32Array.of(50, -180.22, 50),
      var_weight: Float32Array.of(-87, 50, 87),
      running_mean: Float32Array.of(1e30),
      running_var: Float32Array.of(1e30),
    },
    partial: true,
    training: false,
    x: new Float32Array(16).fill(3e38),
    dy: Float32Array.from({ length: 16 }, (_, i) => 8e36 * Math.sin(i + 1)),
    scales: true,
  };
}

rangeTests(
  "SwitchNorm2d: a logit whose weight lies below 2^-252 under a dot product of 1e100 gets the reference's gradient",
  async (backend) => {
    const call = cutWeightHugeDot();
    const { want, got } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);
