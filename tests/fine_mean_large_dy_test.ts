/**
 * sn_bwd_wide_reduce's fine path (session 47, helper-196): an evaluation of a SwitchNorm2d/3d row
 * spanning 6e29 whose mixed mean, 2.5e-9 (an IN mean of weight e^-87 beside a running_mean of 0),
 * lies far below the mix's unit (2^99): x - mu of the elements near the mean is taken in the
 * fine mean's unit (S2 f), x alone above. Two faults where a dy of up to 3e38 meets an element
 * near the mean:
 * - S2 f brought to the mix's unit flushed where S2 there was small or 0: dy 3e38 at an x of
 *   1e-9 is 2^-127 of the unit (its dy unit 2^127), beside the dy of 1 at 6e29, subnormal in that
 *   unit and kept apart (dgamma 3.65e10 for 9.7e9, 1640x its tolerance), or beside a dy of 1e3
 *   there (3.7x; lavapipe and SwiftShader alike).
 * - An infinite dy (outside the promise) at such an element took x alone, ~2^-127 of the unit,
 *   flushed: Infinity times 0, dgamma NaN for the reference's +-Infinity.
 * And the elements that still take x alone below 2^(fm.e + FINE_X), whose product with dy passes
 * 2^100 in the fine unit (x 1e13 and 1e20 under dy 1e11: x - mu is x there within 2^-60), kept
 * from the fine sum (where x 1e20 times 1e11 would overflow it).
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";

function fineRow(layer: "2d" | "3d", x: number[], dy: number[]): LayerCall {
  const m = x.length;
  return {
    layer,
    shape: layer === "2d" ? [1, 1, 1, m] : [1, 1, 1, 1, m],
    options: { eps: 0 },
    state: {
      weight: Float32Array.of(-1e30),
      bias: new Float32Array(1),
      mean_weight: Float32Array.of(0, -1e30, 87),
      var_weight: Float32Array.of(-1e30, -1e30, 0),
      running_mean: new Float32Array(1),
      running_var: Float32Array.of(2.7e38),
    },
    partial: true,
    training: false,
    x: Float32Array.from(x),
    dy: Float32Array.from(dy),
    scales: true,
  };
}

const near = (n: number) => Array.from({ length: n }, (_, i) => 2.5e-9 * (1 + 0.5 * Math.sin(i)));
const CASES: [string, number[], number[]][] = [
  ["dy 3e38 at x 1e-9 beside a dy of 1 at 6e29", [6e29, 1e-9, -3e-20, 2e-20], [1, 3e38, -1, 2]],
  ["dy 3e38 at x 1e-9 beside a dy of 1e3 at 6e29", [6e29, 1e-9, -3e-20, 2e-20], [1e3, 3e38, 0, 0]],
  [
    "300 elements near the mean under dy ~+-1e38",
    [6e29, ...near(299)],
    [1, ...near(299).map((_, i) => (i % 7 === 0 ? 3e38 : -1e38) * Math.cos(i))],
  ],
  ["dy +Infinity at x 1e-9", [6e29, 1e-9, -3e-20, 2e-20], [1, Infinity, -1, 2]],
  ["dy -Infinity at x 1e-9", [6e29, 1e-9, -3e-20, 2e-20], [1, -Infinity, -1, 2]],
  ["dy +Infinity at x 4e-9", [6e29, 4e-9, -3e-20, 2e-20], [1, Infinity, -1, 2]],
  ["dy +Infinity at x 1e-16", [6e29, 1e-16, -3e-20, 2e-20], [1, Infinity, -1, 2]],
  [
    "300 elements near the mean, one dy +Infinity",
    [6e29, ...near(299)],
    [1, ...near(299).map((_, i) => (i === 100 ? Infinity : 1e30 * Math.cos(i)))],
  ],
  ["dy 1e11 at x 1e13 and 1e20", [6e29, 1e13, 1e20, 2e-9], [1, 1e11, 1e11, 2]],
];

for (const layer of ["2d", "3d"] as const) {
  for (const [name, x, dy] of CASES) {
    rangeTests(
      `SwitchNorm${
        layer[0]
      }d evaluation: a mean of 2.5e-9 in a row spanning 6e29 (the fine mean), ${name}, gives the reference's gradients`,
      async (backend) => {
        const call = fineRow(layer, x, dy);
        const { got, want } = await runBoth(call, backend);
        assertRangeChecks(call, got, want);
      },
    );
  }
}
