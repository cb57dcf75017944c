/**
 * Layout "nd" rows whose mixed var + eps lies near or below float32's smallest normal
 * (mix_var_near_subnormal, shaders/common.wgsl: below 2^-102), whose dy all lie below 2^-102 beside
 * subnormal ones (sn_bwd_reduce's `s1_low`). Such rows take sn_bwd_rows' wide_row, which read their
 * segments' S1 = sum dy in units of 1 from sn_bwd_reduce: `lifted` left out every row of such a mix,
 * `s1_low` included, so a GPU that flushes subnormals (NVIDIA, SwiftShader) lost the subnormal dy
 * from S1, and gamma s S1 / m took that into every dx of the row. Found by
 * tests/fuzz/near_subnormal_var_sweep.ts (rows of 0 under eps 1e-35 and 0); lavapipe
 * and WASM keep subnormals and passed before.
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { make } from "./fuzz/near_subnormal_var_sweep.ts";

/**
 * Training of one row of 4 zeros, eps 1e-35 (IN's and LN's variance of 0 beside BN's of weight 0:
 * var + eps 1e-35), gamma 1e-10 (gamma s 3.2e7), dy ~1e-38 to 8e-38, one of them subnormal: dx
 * -4.4727e-31 for -4.8025e-31 on SwiftShader before (4 of 4 beyond the tolerance). (An early
 * version of tests/fuzz/near_subnormal_var_sweep.ts drew it as seed 13.)
 */
function zeroRow(): LayerCall {
  return {
    layer: "2d",
    shape: [1, 1, 1, 4],
    options: { eps: 1e-35 },
    state: {
      weight: Float32Array.of(1e-10),
      bias: Float32Array.of(1),
      mean_weight: Float32Array.of(0, 0, -100),
      var_weight: Float32Array.of(0, 0, -1e30),
      running_mean: Float32Array.of(1),
      running_var: Float32Array.of(0),
    },
    partial: true,
    training: true,
    x: new Float32Array(4),
    dy: Float32Array.of(
      1.6149854098764835e-38,
      -1.1977405244628297e-38,
      4.416245920180691e-38,
      7.701216303359943e-38,
    ),
    scales: true,
  };
}

rangeTests("a row of 0 under var + eps 1e-35: S1 keeps a subnormal dy", async (backend) => {
  const call = zeroRow();
  const { got, want } = await runBoth(call, backend);
  assertRangeChecks(call, got, want);
});

// Sweep seeds (on SwiftShader before): 1354, training of [2, 1, 1, 5000] rows of 0 (segments of a
// long row), eps 0 (a mixed var of 0: wide_map's std), gamma 1e-20, dy ~1e-37 beside 591 and 2837
// subnormal ones: dbeta 5.3449e-36 for 5.6749e-36; 3030, training of a row of 257 zeros, dx (257
// of 257 beyond the tolerance); 3850, an evaluation of [2, 1, 1, 257] (eps 1e-35, a row of zeros
// with dy ~1e-37 beside a row of std ~1e-20), dx (77 of 514).
for (const seed of [1354, 3030, 3850]) {
  rangeTests(`near subnormal var sweep seed ${seed}: S1 keeps subnormal dy`, async (backend) => {
    const call = make(seed);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  });
}
