/**
 * A wide row (|x| beyond 2^40, summed in the unit 2^(field - 127)) whose mean cancels to below
 * 2^-100 of that unit: its record's words hi and lo are then 0 or subnormal, and the mean is
 * carried in the record's fine word (FINE_MEAN_UNIT, shaders/common.wgsl). An evaluation that
 * takes that row's IN mean (LN's in layout "1d") over a tiny running_var needs it: the row
 * [B, -B, s, s/2, 0, 0, 0, 0] has mean 1.5 s / 8, and y of its zeros is -mu / sqrt(running_var).
 * WebGPU's forward took the mean as 0 there: y 4.6e-12 for -8.6e17 (B 3.4e38, s 0.5, running_var
 * 1.2e-38), 0 for -0.017 (B 1e20, s 1e-20); with running_var 0 (std 0) +-Infinity of the wrong
 * sign, or NaN. Both orders [B, -B, s, s/2, ...] and [s, B, -B, s/2, ...]: a float64 sum in
 * order lost s in the second (the reference's means are compensated sums since, tests/exact_mean_test.ts).
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";

function cancelledRow(big: number, small: number, smallFirst = false): Float32Array {
  return smallFirst
    ? Float32Array.of(small, big, -big, small / 2, 0, 0, 0, 0)
    : Float32Array.of(big, -big, small, small / 2, 0, 0, 0, 0);
}

const DY = Float32Array.of(0.5, -1, 2, 0.25, -0.75, 1, 0.125, -2);

/** An evaluation on IN's mean (LN's for "1d") and BN's variance, running_var `rv`. */
function evaluation(
  layer: "1d" | "2d",
  big: number,
  small: number,
  rv: number,
  smallFirst = false,
): LayerCall {
  const nd = layer === "2d";
  const c = nd ? 1 : 8;
  return {
    layer,
    shape: nd ? [1, 1, 1, 8] : [1, 8],
    options: { eps: 0 },
    state: {
      weight: new Float32Array(c).fill(1),
      bias: new Float32Array(c),
      mean_weight: nd ? Float32Array.of(0, -1e30, -1e30) : Float32Array.of(0, -1e30),
      var_weight: nd ? Float32Array.of(-1e30, -1e30, 0) : Float32Array.of(-1e30, 0),
      running_mean: new Float32Array(c),
      running_var: new Float32Array(c).fill(rv),
    },
    training: false,
    x: cancelledRow(big, small, smallFirst),
    dy: DY,
    scales: true,
  };
}

const CASES: readonly [number, number][] = [
  [3.4028234663852886e38, 0.5],
  [1e20, 1e-20],
  [1e30, 1e-20],
  [1e36, 1e-20],
];

for (const layer of ["2d", "1d"] as const) {
  for (const rv of [1.2e-38, 1e-30, 0]) {
    for (const [big, small] of CASES) {
      for (const smallFirst of [false, true]) {
        rangeTests(
          `SwitchNorm${layer}: an evaluation on the mean of a row of +-${big} that cancels to ${small} ` +
            `(below 2^-100 of its unit${
              smallFirst ? ", that value first" : ""
            }), over a running_var of ${rv}, gives the reference's y and gradients`,
          async (backend) => {
            const call = evaluation(layer, big, small, rv, smallFirst);
            const { want, got } = await runBoth(call, backend);
            assertRangeChecks(call, got, want);
          },
        );
      }
    }
  }
}

// Training: a narrow row (channel 1, values ~1e-18) mixed on its sample's LN mean, which the
// wide row of channel 0 (+-B, cancelling) puts below 2^-100 of the LN group's unit; its variance
// is its own IN variance (~1e-36).
for (const [big, small] of [[1e20, 1e-18], [3.4028234663852886e38, 0.5]] as const) {
  rangeTests(
    `SwitchNorm2d: a training step mixing a narrow row on an LN mean that a row of +-${big} ` +
      `cancels to ~${small} gives the reference's y and gradients`,
    async (backend) => {
      const narrow = Float32Array.from([1, -3, 2, 5, -1, 4, 0.5, 3], (v) => v * small);
      const x = new Float32Array(16);
      x.set(cancelledRow(big, small));
      x.set(narrow, 8);
      const call: LayerCall = {
        layer: "2d",
        shape: [1, 2, 1, 8],
        options: { eps: 0 },
        state: {
          weight: new Float32Array(2).fill(1),
          bias: new Float32Array(2),
          mean_weight: Float32Array.of(-1e30, 0, -1e30),
          var_weight: Float32Array.of(0, -1e30, -1e30),
        },
        partial: true,
        training: true,
        x,
        dy: Float32Array.from({ length: 16 }, (_, i) => DY[i % 8] * (i < 8 ? 1 : -1)),
        scales: true,
      };
      const { want, got } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}

// Layout "1d", training: a channel [B, -B, v] (samples 0 and 1 wide there) whose BN mean v / 3
// lies below 2^-100 of its unit, mixed into sample 2's narrow elements (values ~1e-18) under
// that sample's LN variance (~1e-36).
for (const big of [1e20, 3.4028234663852886e38]) {
  rangeTests(
    `SwitchNorm1d: a training step mixing a narrow sample on a BN mean that +-${big} cancel ` +
      `to ~1e-18 gives the reference's y and gradients`,
    async (backend) => {
      const v = (k: number) => k * 1e-18;
      const x = Float32Array.of(
        big,
        v(1),
        v(-2),
        v(3),
        -big,
        v(2),
        v(1),
        v(-1),
        v(3),
        v(-1),
        v(4),
        v(2),
      );
      const call: LayerCall = {
        layer: "1d",
        shape: [3, 4],
        options: { eps: 0 },
        state: {
          weight: new Float32Array(4).fill(1),
          bias: new Float32Array(4),
          mean_weight: Float32Array.of(-1e30, 0),
          var_weight: Float32Array.of(0, -1e30),
        },
        partial: true,
        training: true,
        x,
        dy: Float32Array.from({ length: 12 }, (_, i) => DY[i % 8] * (i % 3 === 0 ? -1 : 1)),
        scales: true,
      };
      const { want, got } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}
