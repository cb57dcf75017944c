/**
 * SwitchNorm1d's hot pass (sn1d_normalize) at elements near the mixed mean of an LN mean far from
 * BN's (attack fuzzer seed 33003, WebGPU): the mix kept mu as hi + lo in float32, hi the heavier
 * term's mean and lo the lighter term's weighted distance from it, whose float32 rounding (and the
 * weight's) is of the size of x - mu there: an evaluation of equal mean weights over a sample
 * [1666666624, 5e9] (LN mean 3.3e9) beside a `running_mean` of 1, under a std of 1e-15, had x - mu
 * 0 for -32.5 (y = beta for -3.25e6). Elements whose (x - hi) - lo cancels by 2^5 or more now take
 * x - mu from exact pairs (NUMERICS.md, "SwitchNorm1d's statistics and wide elements"). Expected
 * values are the float64 reference's.
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";

rangeTests(
  "attack fuzzer seed 33003: an evaluation's element at the mixed mean of an LN mean of 3.3e9 and a running_mean of 1 gives the reference's y",
  async (backend) => {
    const call = make(33003);
    const { got, want } = await runBoth(call, backend);
    // y of sample 5, channel 0: -3.25e6 (gamma 1e-10 times -32.5 over a std of 1e-15).
    assert.ok(Math.abs(want.y[10]) > 1e6, `y ${want.y[10]}`);
    assert.equal(check(call, got, want), null);
  },
);

/**
 * An evaluation of layout "1d" [6, 2] whose channel 0 holds, in each sample, the element at that
 * sample's mixed mean (rounded to float32) beside channel 1's `x1` ~ X (1 + n / 7): the mean
 * logits `logits` (equal, LN-heavy, BN-heavy: weights 0.27 and 0.73 are not float32's), variance
 * weights BN's alone, channel 0 over a `running_mean` of `rm` and a std of 1e-10 (channel 1's
 * 1e15, so that channel 0's y is its sample's largest).
 */
function atMixedMean(xScale: number, rm: number, logits: [number, number]): LayerCall {
  const n = 6;
  const e = logits.map(Math.exp), wl = e[0] / (e[0] + e[1]), wb = e[1] / (e[0] + e[1]);
  const x = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    const x1 = Math.fround(xScale * (1 + i / 7 + (i + 1) * 2 ** -21));
    // x0 = wl (x0 + x1) / 2 + wb rm, solved for x0, rounded to float32; one ulp above it where
    // float32 holds it (nearly) exactly, so that x - mu stays far above float64's rounding.
    const at = (wl * x1 / 2 + wb * rm) / (1 - wl / 2), x0 = Math.fround(at);
    const ulp = 2 ** (Math.floor(Math.log2(Math.abs(x0))) - 23);
    x[2 * i] = Math.abs(x0 - at) < ulp / 8 ? x0 + ulp : x0;
    x[2 * i + 1] = x1;
  }
  return {
    layer: "1d",
    shape: [n, 2],
    options: { eps: 0 },
    state: {
      weight: Float32Array.of(1, 1),
      bias: Float32Array.of(0, 0),
      mean_weight: Float32Array.from(logits),
      var_weight: Float32Array.of(-1e30, 0),
      running_mean: Float32Array.of(rm, 0),
      running_var: Float32Array.of(1e-20, 1e30),
    },
    partial: true,
    training: false,
    x,
    dy: Float32Array.from({ length: 2 * n }, (_, i) => (i % 3 ? 1 : -0.5) * (1 + i / 5)),
    scales: true,
  };
}

for (const xScale of [3e9, -5e7, 1e12, -2e15]) {
  for (const rm of [1, -12345.678]) {
    for (const logits of [[0, 0], [1, 0], [0, 1]] as [number, number][]) {
      rangeTests(
        `SwitchNorm1d: an evaluation's elements at their sample's mixed mean beside data of ${xScale} (running_mean ${rm}, mean logits ${logits}) give the reference's y`,
        async (backend) => {
          const call = atMixedMean(xScale, rm, logits);
          const { got, want } = await runBoth(call, backend);
          // Channel 0's x - mu (y times the std of 1e-10): at least 2^-40 of x, far above the
          // float64 rounding of the mean's parts (2^-53 of them).
          for (let i = 0; i < 6; i++) {
            const d = want.y[2 * i] * 1e-10, x0 = call.x[2 * i];
            assert.ok(Math.abs(d) >= Math.abs(x0) * 2 ** -40, `row ${i}: x - mu ${d} at x ${x0}`);
          }
          assertRangeChecks(call, got, want);
        },
      );
    }
  }
}
