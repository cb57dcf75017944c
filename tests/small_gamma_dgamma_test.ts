/**
 * dgamma of layout "nd"'s wide rows where a row's dgamma = s S2 lies below float32's normal range
 * under a small gamma (WebGPU, sn_bwd_rows' wide_row and grad_units in
 * shaders/backward_common.wgsl). A subnormal gamma (or a normal one whose gm = -gamma s S1 is
 * tiny) sends the row to wide_row, where s S2 was one float32 product: ~1e-38 and below for
 * s ~1e-5 (eps 1e10) and S2 ~1e-33. grad_units read no exponent from a subnormal dgamma and took
 * the unit of the mean dots instead, which carries gamma's exponent (gm mu ~2^-258 under gamma
 * -1e-40): dgamma scaled by 2^358 was an infinity (attack fuzzer seed 2002: a training call,
 * gamma -1e-40, a row of one 1 among values ~1e-31, dgamma -Infinity for -3.6e-38). dgamma is
 * now formed from s and S2 brought to [1, 2), their exponents apart, and grad_units counts a
 * subnormal dgamma's exponent.
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";

/** Layout "nd" [1, 1, 1, 4]: a row [1, 0, 0, 0] over a std of ~1e5 (eps 1e10), dy ~1e-33 (dgamma -7.5e-39). */
function smallGammaRow(gamma: number, training: boolean): LayerCall {
  return {
    layer: "2d",
    shape: [1, 1, 1, 4],
    options: { eps: 1e10 },
    state: {
      weight: Float32Array.of(gamma),
      bias: Float32Array.of(0),
      running_mean: Float32Array.of(0.25),
      running_var: Float32Array.of(0.25),
    },
    partial: true,
    training,
    x: Float32Array.of(1, 0, 0, 0),
    dy: Float32Array.of(0, 5e-34, 1e-33, 1.5e-33),
    scales: true,
  };
}

for (const gamma of [-1e-40, 2e-39, -1e-30, 1e-20]) {
  for (const training of [true, false]) {
    rangeTests(
      `SwitchNorm2d: gamma ${gamma} keeps a row's subnormal dgamma finite (${
        training ? "training" : "evaluation"
      })`,
      async (backend) => {
        const call = smallGammaRow(gamma, training);
        const { got, want } = await runBoth(call, backend);
        // dgamma = s sum dy (x - mu) = -0.25 * 3e-33 / 1e5: below float32's normal range.
        assert.ok(
          Math.abs(want.grads.weight[0] / -7.5e-39 - 1) < 0.01,
          `dgamma ${want.grads.weight[0]}`,
        );
        assertRangeChecks(call, got, want);
        // Beyond the checks' floor (~1e-37, which a flushed dgamma of 0 passes): its value.
        assert.ok(
          Math.abs(got.grads.weight[0] / want.grads.weight[0] - 1) < 1e-4,
          `dgamma ${got.grads.weight[0]} for ${want.grads.weight[0]}`,
        );
      },
    );
  }
}

rangeTests(
  "attack fuzzer seed 2002: gamma -1e-40, a row of one 1 among values ~1e-31",
  async (backend) => {
    const call = make(2002);
    const { got, want } = await runBoth(call, backend);
    assert.equal(check(call, got, want), null);
  },
);
