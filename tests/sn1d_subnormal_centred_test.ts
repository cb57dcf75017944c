/**
 * SwitchNorm1d's mean dots where the LN and BN means lie near float32's subnormal range in the
 * mix's unit (helper-194, session 46): an evaluation of rows of ~1e-38 to 1e-37 beside a
 * running_mean of 3e-38 (or 0) under a running_var of 1e38 to 1.5e38 and gamma 3e38 has
 * mu_LN - mu and mu_BN - mu of ~5e-39, subnormal in the unit 1, where sn1d_bwd_element.wgsl's
 * wide_element formed them (wide_centred) and dot_scaled took a subnormal factor as 0:
 * `mean_weight`'s gradient 0 for -+6.8e-20 on lavapipe (2.2e3x its tolerance;
 * tests/fuzz/flushed_mean_probe.ts calls 991, 29, 609, 741, 1462; 1000, a training step's
 * evaluation, 650x). The centred means are now formed in a unit 2^-lift below the mix's
 * (backward_common.wgsl centred_lift). Checked against the float64 reference as the attack
 * fuzzer checks its calls. Each call failed on lavapipe before the fix; all pass after there,
 * on SwiftShader and on WASM.
 */
import assert from "node:assert/strict";
import { check } from "./fuzz/attack_fuzz.ts";
import { probe } from "./fuzz/flushed_mean_probe.ts";
import { rangeTests, runBoth } from "./_range_compare.ts";

rangeTests(
  "SwitchNorm1d mean_weight gradients of means ~1e-38 apart (flushed_mean_probe calls)",
  async (backend) => {
    for (const seed of [991, 29, 609, 741, 1462, 1000]) {
      const { call, desc } = probe(seed);
      const { got, want } = await runBoth(call, backend);
      assert.equal(check(call, got, want), null, `call ${seed}: ${desc}`);
    }
  },
);
