/**
 * Layout "nd"'s backward reduce (sn_bwd_reduce) sums a segment's dy in units of 1 unless its
 * largest |dy| lies low enough that the subnormal dy beside it matter (s1_low), when
 * sn_bwd_wide_reduce sums it again in that dy's unit: a GPU that flushes subnormals (NVIDIA,
 * SwiftShader; lavapipe keeps them) reads them as 0 in units of 1. The bound was a fixed 2^-102,
 * so a segment of 1024 dy, one of 2^-102 and the rest just below 2^-126, lost up to 1023 x 2^-126
 * of dbeta = sum dy: 0.30x its tolerance on SwiftShader, ~1.2x at segments of 4096 (calls of ~4M
 * floats or more), where neither of the reduce's other lists took it (a row of 0, whose products
 * dy (x - c) are 0; a row longer than one segment whose x spread past 2^11). The bound now grows
 * with the segment's length, and lists a flagged row's segment too (an x of Infinity: dbeta still
 * counts its S1; 0.30x before). The checks here are tighter than the range tests' (GRAD_SCALED):
 * 1/16 of its tolerance on dbeta, which a sum that drops the subnormal dy misses at segments of
 * 1024 (0.30x) and keeps in that dy's unit (0.02x).
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { worstScaledRatio } from "./_close.ts";
import { GRAD_SCALED } from "./_tolerances.ts";

const ULP = 2 ** -149;

/**
 * A training step of [2, 2] rows of `m` (layout "nd"; SwitchNorm1d: [2 m, 2]) whose dy are 2^-102
 * at every 1024th element and subnormal, 2^-126 less a few hundred ulps, elsewhere: x 0
 * (`spread` 0) or ~`spread` about 0; `infinite`: x[5] = Infinity (its sample's and channel's rows
 * flagged, dx and the logit gradients NaN, dbeta = sum dy finite).
 */
function subnormalBeside(
  layer: "1d" | "2d" | "3d",
  m: number,
  spread: number,
  infinite = false,
): LayerCall {
  const len = 4 * m;
  const x = Float32Array.from(
    { length: len },
    (_, i) => (Math.sin(i * 0.37) * 2 + (i % 7) * 0.1) * spread,
  );
  if (infinite) x[5] = Infinity;
  const shape = layer === "1d" ? [2 * m, 2] : layer === "3d" ? [2, 2, 1, 1, m] : [2, 2, 1, m];
  // (SwitchNorm1d: rows are features, elements alternate between them.)
  const at = (i: number) => layer === "1d" ? Math.floor(i / 2) : i % m;
  return {
    layer,
    shape,
    options: { eps: 1e-5 },
    training: true,
    x,
    dy: Float32Array.from(
      { length: len },
      (_, i) =>
        at(i) % 1024 === 0 ? 2 ** -102 : 2 ** -126 - ULP * (1 + (((i * 2654435761) >>> 0) % 1000)),
    ),
    scales: true,
  };
}

const CASES: [string, "1d" | "2d" | "3d", number, number, boolean?][] = [
  ["a 2d row of 0 (one segment of 1024)", "2d", 1024, 0],
  ["a 3d row of 0 (one segment of 1024)", "3d", 1024, 0],
  ["2d rows of 4096 (segments of 1024) of x ~100", "2d", 4096, 100],
  ["1d features of 1024 samples of 0", "1d", 1024, 0],
  ["2d rows of 1024 beside an x of Infinity", "2d", 1024, 1, true],
];

for (const [name, layer, m, spread, infinite] of CASES) {
  rangeTests(`${name}: dbeta keeps subnormal dy beside one of 2^-102`, async (backend) => {
    const call = subnormalBeside(layer, m, spread, infinite);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
    const ratio = worstScaledRatio(got.grads.bias, want.grads.bias, want.scales!.bias, GRAD_SCALED);
    assert.ok(
      ratio < 1 / 16,
      `dbeta ${got.grads.bias} for ${want.grads.bias}: ${ratio} x GRAD_SCALED`,
    );
  });
}
