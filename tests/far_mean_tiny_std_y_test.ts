/**
 * y within a factor ~2 of float32's largest value where the mixed mean lies 2^190 or more of
 * the mix's std from the data, under a gamma ~1e-20: a `running_mean` of 1.2e18 over samples of
 * std ~5e-41 (2^194 stds). WebGPU's wide map takes x - mu in a unit 2^e that the means bound,
 * and where that unit lay more than 2^62 above the std's, var + eps fell below float32's normal
 * range in it: a subnormal of ~11 bits, y 1.8e-4 relative off in layout "1d" (2.2334e38 for
 * 2.2339e38, README's known exception until session 39), 1.0e-4 in layout "nd" (-9.5645e37 for
 * -9.5635e37), and NaN in training forwards, where it was 0. The wide map takes the variances
 * and eps in a unit 2^sv lower, 2^62 above the std's, and carries 2^sv in gamma's exponent (`sv`
 * in `wide_map`, shaders/common.wgsl, since c3b281c: every WebGPU case here fails on its parent).
 * Evaluations on loaded running buffers, and training forwards whose LN mean lies as far from a
 * narrow channel or row, on WASM and WebGPU against the float64 reference (NUMERICS.md, "y near
 * float32's largest value"; tests/fuzz/y_near_largest_sweep.ts).
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  affineSizes,
  assertChecked,
  type LayerCall,
  rangeTests,
  runBoth,
} from "./_range_compare.ts";
import { Y_SCALED } from "./_tolerances.ts";

/** y held as the range tests hold it: Y_SCALED per row of `m` floats, of |gamma xhat| + |beta|. */
function assertYClose(call: LayerCall, got: Float32Array, want: Float32Array, m: number): void {
  assertChecked(got, want, { tol: Y_SCALED, rows: m, termScale: affineSizes(call, want) }, "y");
}

/** At least one y of the reference lies in (2^126, 2^128): the case is near the limit. */
function assertNearLargest(y: Float32Array): void {
  assert.ok(
    y.some((v) => Math.abs(v) > 2 ** 126 && Number.isFinite(v)),
    `no y near float32's largest value: ${y.slice(0, 4)}`,
  );
}

// Layout "1d": samples of std ~5e-41 (subnormal floats), the mean BN's (a running_mean of
// +-1.2e18 loaded), the variance LN's (the sample's), eps 0: x - mu ~1.2e18 over a std of
// ~5e-41, y = gamma 2.4e58.
for (const runningMean of [-1.2e18, 1.2e18, -1.3e18]) {
  for (const gamma of [7.2e-21, 1e-20, 1.4e-20]) {
    rangeTests(
      `SwitchNorm1d: an evaluation on a running_mean of ${runningMean} over samples of std 5e-41 under gamma ${gamma} gives y near float32's largest value as the reference does`,
      async (backend) => {
        const c = 8;
        const call: LayerCall = {
          layer: "1d",
          shape: [2, c],
          options: { eps: 0 },
          state: {
            weight: new Float32Array(c).fill(gamma),
            bias: new Float32Array(c).fill(0.5),
            mean_weight: Float32Array.of(-40, 40),
            var_weight: Float32Array.of(40, -40),
            running_mean: new Float32Array(c).fill(runningMean),
            running_var: new Float32Array(c),
          },
          partial: true,
          training: false,
          x: Float32Array.from(
            { length: 2 * c },
            (_, i) => (i % 2 ? 1 : -1) * (1 + (i % c)) * 1e-41,
          ),
          dispose: true,
        };
        const { want, got } = await runBoth(call, backend);
        assertNearLargest(want.y);
        assertYClose(call, got.y, want.y, c);
      },
    );
  }
}

// Layout "nd": rows of 9 floats of std ~2e-36 (IN), the mean BN's (a running_mean of 8e22 and a
// running_var of 3e-76 loaded), the variance IN's and LN's: x - mu ~8e22 over a std of ~2e-36
// (2^195 stds), y = gamma 4e58.
for (const gamma of [3e-21, 6e-21]) {
  rangeTests(
    `SwitchNorm2d: an evaluation on a running_mean of 8e22 over rows of std 2e-36 under gamma ${gamma} gives y near float32's largest value as the reference does`,
    async (backend) => {
      const n = 3, c = 2, m = 9;
      const call: LayerCall = {
        layer: "2d",
        shape: [n, c, 3, 3],
        options: { eps: 0 },
        state: {
          weight: Float32Array.of(gamma, -gamma),
          bias: Float32Array.of(0, 2e37),
          mean_weight: Float32Array.of(-40, -40, 40),
          var_weight: Float32Array.of(12, 1, -40),
          running_mean: Float32Array.of(8e22, -5e22),
          running_var: new Float32Array(c).fill(3e-76),
        },
        partial: true,
        training: false,
        x: Float32Array.from(
          { length: n * c * m },
          (_, i) => ((i * 7) % 11 - 5) * 4e-37 * (1 + (i % 3)),
        ),
        dispose: true,
      };
      const { want, got } = await runBoth(call, backend);
      assertNearLargest(want.y);
      assertYClose(call, got.y, want.y, m);
    },
  );
}

// Training forwards: a sample's LN mean ~2e30 (its other channel's 4e30) beside a channel (1d)
// or row (nd) of std ~1e-30, the mean LN's and the variance BN's (1d) or IN's (nd): x - mu
// ~2e30 over a std of ~1e-30 (2^199 stds), y = gamma 2e60.
for (const layer of ["1d", "2d"] as const) {
  for (const gamma of [1.2e-22, 2e-22]) {
    rangeTests(
      `SwitchNorm${layer}: a training forward whose LN mean lies 2^199 stds from a narrow ${
        layer === "1d" ? "channel" : "row"
      } under gamma ${gamma} gives y near float32's largest value as the reference does`,
      async (backend) => {
        const n = 3, c = 2, m = layer === "1d" ? 1 : 4;
        const x = new Float32Array(n * c * m);
        for (let s = 0; s < n; s++) {
          for (let j = 0; j < m; j++) {
            x[(s * c) * m + j] = 4e30 * (1 + 1e-3 * ((s + j) % 3));
            x[(s * c + 1) * m + j] = ((s * 5 + j * 3) % 7 - 3) * 1e-30;
          }
        }
        const call: LayerCall = {
          layer,
          shape: layer === "1d" ? [n, c] : [n, c, 2, 2],
          options: { eps: 0 },
          state: {
            weight: Float32Array.of(1, gamma),
            bias: Float32Array.of(0, -1e37),
            // (Other variance weights exactly 0: the LN variance ~4e60 would set the std.)
            mean_weight: layer === "1d" ? Float32Array.of(40, -40) : Float32Array.of(-40, 40, -40),
            var_weight: layer === "1d"
              ? Float32Array.of(-1e30, 0)
              : Float32Array.of(0, -1e30, -1e30),
          },
          partial: true,
          training: true,
          x,
          dispose: true,
        };
        const { want, got } = await runBoth(call, backend);
        assertNearLargest(want.y);
        assertYClose(call, got.y, want.y, layer === "1d" ? c : m);
      },
    );
  }
}
