/**
 * SwitchNorm1d training steps on rows of +-3.4e38 (statistics scaled: the backward's wide
 * elements, sn1d_bwd_element.wgsl wide_element) whose LN variances equal their channel's BN
 * variance: [-M, M, M] and [-M, M, M, -M] both have the unbiased variance 4/3 M^2 (M2 / 2 and
 * M2 / 3). The wide elements difference the groups' float32 variance words, which sn_group_stats
 * divided as M2 / (count - 1): under NVIDIA's division (a times an approximate reciprocal,
 * tests/_nvidia_division.ts) the BN variance came out an ulp from the LN one, and `var_weight`'s
 * gradient 1.25e-9 for 4.73e-9, 460x its tolerance (attack fuzzer seed 339936, SwiftShader; the
 * same on lavapipe under the emulation). The group variance is now f32(M2 / (count - 1)) by its
 * exact remainder (common.wgsl fdiv_count), IEEE's bits. Each call is held to the float64
 * reference with the attack fuzzer's checks. These calls pass with IEEE division (lavapipe,
 * SwiftShader) before and after; tests/nvidia_division_range_test.ts runs them under the
 * emulation, where both failed before the fix (gamma 1 on every channel passed before: the
 * error is gv's share where gamma dy is ~0.4).
 */
import assert from "node:assert/strict";
import { check } from "./fuzz/attack_fuzz.ts";
import { type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";

const M = 3.4028234663852886e38;

/**
 * [4, 3]: channel 0 [-M, M, M, -M], channels 1 and 2 so that samples 0, 1 and 3 are [-M, M, M],
 * [M, M, -M] and [-M, -M, M] (LN variance 4/3 M^2, channel 0's BN one), sample 2 [M, M, M];
 * dy +-2e38 alternating, the mean weights [mw, 0], the variance logits [0, 1.3].
 */
function equalVariancesCall(weight: number[], bias: number[], mw: number): LayerCall {
  const x = Float32Array.from([-M, M, M, M, M, -M, M, M, M, -M, -M, M]);
  const dy = Float32Array.from({ length: 12 }, (_, i) => i % 2 ? -2e38 : 2e38);
  return {
    layer: "1d",
    shape: [4, 3],
    options: { eps: 1e-5, momentum: 0.1 },
    state: {
      weight: Float32Array.from(weight),
      bias: Float32Array.from(bias),
      mean_weight: Float32Array.from([mw, 0]),
      var_weight: Float32Array.from([0, 1.3]),
      running_mean: Float32Array.from([1e30, 1e30, 0.5]),
      running_var: Float32Array.from([0, 1e-30, 0]),
    },
    partial: true,
    training: true,
    x,
    dy,
    scales: true,
  };
}

export const CALLS: Record<string, LayerCall> = {
  "attack fuzzer seed 339936 (gamma 2e-39, 1.4e-45, 0)": equalVariancesCall(
    [2.000000431e-39, 1.401298464e-45, 0],
    [1, -9.999946101e-41, -3e38],
    50,
  ),
  "gamma 2e-39 on channel 0 alone": equalVariancesCall([2e-39, 0, 0], [0, 0, 0], 50),
};

rangeTests(
  "SwitchNorm1d: LN and BN variances that coincide on rows of +-3.4e38",
  async (backend) => {
    for (const [name, call] of Object.entries(CALLS)) {
      const { got, want } = await runBoth(call, backend);
      assert.equal(check(call, got, want), null, name);
    }
  },
);
