/**
 * Issue 10, point 1: a subnormal gamma (`weight` 1.4e-45 = 2^-149, 1e-40, 2e-39) under a large
 * dy. Every gradient but dbias is linear in gamma dy, which is an ordinary float32 (2^-149 times
 * 1e36 is 1.4e-9), so the float64 reference's dx, dgamma and logit gradients are ordinary
 * numbers. WebGPU formed gamma s (or gamma s^2) first, which float32 rounds to its subnormal
 * spacing: half of a gamma of 2^-149 and ~1e-5 of one of 1e-40 were lost (dx 2.4e-7 for 1.6e-7),
 * or flushed to 0 where the product fell below 2^-149 (mean_weight's gradient 0 for 1.2). Such a
 * gamma now takes the wide passes, which keep gamma's exponent apart (shaders/common.wgsl:
 * gamma_exp, gamma_mantissa, factor_wide); found by the corner fuzzer
 * (`deno run -A tests/fuzz/corner_fuzz.ts 1 300 webgpu`: 31 of its 42 failures), whose seeds run
 * here on both backends.
 */
import { seededRandom } from "../examples/_data.ts";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { assertSeedsMatch } from "./fuzz/corner_fuzz.ts";

/**
 * A training step of `layer` on ordinary x with gammas `gamma` and 3 `gamma` and dy ~`dyScale`
 * (a channel of gamma 1 would outweigh the subnormal one's terms in dx).
 */
function subnormalGamma(layer: "1d" | "2d", gamma: number, dyScale: number): LayerCall {
  const nd = layer === "2d";
  const shape = nd ? [4, 2, 1, 8] : [8, 2];
  const len = shape.reduce((a, b) => a * b, 1);
  const r = seededRandom(11);
  return {
    layer,
    shape,
    options: { eps: 1e-5 },
    state: {
      weight: Float32Array.of(gamma, 3 * gamma),
      mean_weight: Float32Array.from({ length: nd ? 3 : 2 }, (_, i) => 0.3 * i),
      var_weight: Float32Array.from({ length: nd ? 3 : 2 }, (_, i) => -0.2 * i),
    },
    partial: true,
    training: true,
    x: Float32Array.from({ length: len }, () => r() * 2 - 1),
    dy: Float32Array.from({ length: len }, () => (r() * 2 - 1) * dyScale),
    scales: true,
  };
}

for (const layer of ["1d", "2d"] as const) {
  for (const [gamma, dyScale] of [[1.4e-45, 1e36], [1e-40, 1e30], [2e-39, 1e25]] as const) {
    rangeTests(
      `SwitchNorm${layer}: a gamma of ${gamma} under dy ~${dyScale} gives the reference's gradients`,
      async (backend) => {
        const call = subnormalGamma(layer, gamma, dyScale);
        const { want, got } = await runBoth(call, backend);
        assertRangeChecks(call, got, want);
      },
    );
  }
}

rangeTests(
  "the corner fuzzer's subnormal-gamma seeds match the float64 reference",
  async (backend) => {
    // Seeds of tests/fuzz/corner_fuzz.ts that failed on WebGPU before (subnormal gamma), and 197,
    // which passed but broke in a first form of the fix (a dot product of gamma's mantissa beyond
    // float32 before its unit brought it down: NaN for Infinity; sn1d_bwd_element.wgsl dot_scaled).
    await assertSeedsMatch([
      22,
      26,
      27,
      32,
      33,
      36,
      49,
      52,
      68,
      72,
      75,
      88,
      101,
      119,
      136,
      140,
      153,
      155,
      158,
      164,
      172,
      186,
      189,
      197,
      201,
      207,
      217,
      251,
      261,
      280,
      288,
      293,
    ], backend);
  },
);
