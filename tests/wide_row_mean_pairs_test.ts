/**
 * Layout "nd" rows that take the backward's wide path with their statistics in unit 1 (dy beyond
 * 2^40 or subnormal, a factor-wide gamma / std: shaders/sn_bwd_rows.wgsl wide_row, not scaled)
 * formed their centred means mu_k - mu for the logit dots in float32 about the row's IN mean
 * (wide_centred: (hi_k - hi) + lo_k rounds at the ulp of |mu_k - hi|), so that LN and BN means
 * that coincide to a fraction of their float32 rounding, far from the IN mean, lost their
 * difference although both are float32 pairs: `mean_weight`'s gradient -3.4e-29 for +-7.9e-20
 * (LN and BN means ~12500 that differ by 1.25e-4 about IN means of 25000, subnormal dy;
 * nd_subnormal_rows_sweep seed 1134) and 2.8704e14 for 2.8661e14 (means ~0.7, 310 roundings
 * apart, about IN means of ~1.4 under dy ~3e19; wide_beside_plain_sweep seed 1438). So did scaled
 * rows (the same calls with x and running_mean times 1e-30 or 1e30, in the mix's unit 2^e): 1134
 * as above, 1438 up to 5.4x its tolerance. They are formed from the pairs now, in the mix's unit,
 * as the pair rows' (pair_centred_means). Each call is held to the float64 reference with the
 * range tests' checks, on both backends.
 *
 * @module
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { make as subnormalRows } from "./fuzz/nd_subnormal_rows_sweep.ts";
import { make as wideBesidePlain } from "./fuzz/wide_beside_plain_sweep.ts";

const CASES = [
  { sweep: "nd_subnormal_rows_sweep", seed: 1134, make: subnormalRows },
  { sweep: "wide_beside_plain_sweep", seed: 1438, make: wideBesidePlain },
];

/** The call with x and running_mean times k (a power of ten: scaled rows beyond 1). */
function scaled(call: LayerCall, k: number): LayerCall {
  const state = call.state!;
  return {
    ...call,
    x: call.x.map((v) => v * k),
    state: { ...state, running_mean: state.running_mean.map((v) => v * k) },
  };
}

for (const { sweep, seed, make } of CASES) {
  for (const k of [1, 1e-30, 1e30]) {
    rangeTests(
      `SwitchNorm2d: wide rows whose LN and BN means coincide to a fraction of a rounding give mean_weight's gradient as the reference (${sweep} seed ${seed}, x times ${k})`,
      async (backend) => {
        const call = scaled(make(seed), k);
        const { got, want } = await runBoth(call, backend);
        assertRangeChecks(call, got, want);
      },
    );
  }
}
