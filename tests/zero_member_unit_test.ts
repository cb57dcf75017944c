/**
 * Issue 10, point 1: an LN or BN group whose members are a row of zeros and rows of tiny
 * constants (1e-25: wide rows, held in units near their size). WebGPU's group statistics took
 * the largest member unit, and a row of zeros (unscaled: its largest |x|, 0, is not wide) counted
 * as unit 1, in which the other members' squares (1e-50) are 0: the group's variance 0. With
 * eps 0 y of the zero row was -Infinity for -1.68 and the others' 2.2x off; with eps 2^-126 the
 * logit gradients NaN, and under dy of -3e38 `var_weight`'s gradient 2% off (attack fuzzer seed
 * 487). Rows of zeros no longer set the group's unit (shaders/sn_group_stats.wgsl).
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";

/** Training on [n, c, 1, m] rows, each the constant consts[r] 1e-25 (some 0), dy ~1. */
function zeroBesideTinyRows(
  n: number,
  c: number,
  m: number,
  consts: number[],
  eps: number,
): LayerCall {
  const rows = n * c;
  return {
    layer: "2d",
    shape: [n, c, 1, m],
    options: { eps },
    state: {
      weight: new Float32Array(c).fill(1),
      bias: new Float32Array(c),
      mean_weight: Float32Array.of(-1e30, 0, -1e30),
      var_weight: Float32Array.of(1.3, 0, 0),
    },
    partial: true,
    training: true,
    x: Float32Array.from(
      { length: rows * m },
      (_, i) => consts[Math.floor(i / m) % consts.length] * 1e-25,
    ),
    dy: Float32Array.from({ length: rows * m }, (_, i) => 1 + 0.5 * Math.sin(i)),
    scales: true,
  };
}

const cases: [string, LayerCall][] = [
  ["eps 0, rows of 4", zeroBesideTinyRows(2, 2, 4, [0, 1, -1, 0.5], 0)],
  [
    "eps 2^-126, rows of 300",
    zeroBesideTinyRows(4, 3, 300, [-1, -2 / 3, -1 / 3, 0, 1 / 3, 2 / 3, 1, -5 / 6], 2 ** -126),
  ],
];
for (const [what, call] of cases) {
  rangeTests(
    `SwitchNorm2d: groups of a row of zeros and rows of constants of 1e-25 (${what}) give the reference's y and gradients`,
    async (backend) => {
      const { want, got } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}
