/**
 * Issue 10, point 1 (tiny variances): a mixed variance that a variance weight below float32's
 * normal range (logits ~100 or more apart) takes below that range, 0 or subnormal in float32,
 * while the float64 reference's is a positive number (a weight of 3.7e-44 times an LN variance
 * of 1, under eps 0). WebGPU's plain mix flushed it: rows of such a mix whose IN and LN
 * variances are 0 (constant rows, constant samples) gave y off (logits 100 apart: the mix
 * subnormal) or dx, dgamma and the logit gradients NaN (logits 115 to 175 apart: 0), where WASM
 * and the reference are finite. Those rows now take the wide passes, whose map keeps the
 * variance in a unit of its own (`mix_var_below_normal` in shaders/common.wgsl, `unit_map` in
 * shaders/backward_common.wgsl; tests/range_1d_test.ts has SwitchNorm1d's).
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";

/**
 * A SwitchNorm2d call on [n, c, 1, m] under eps 0 whose x is constant per sample (`"sample"`: IN
 * and LN variances 0, BN's from the samples' spread) or per row (`"row"`: IN variances 0), with
 * variance logits `varWeight` and running buffers away from the data.
 */
function constantData(
  [n, c, m]: [number, number, number],
  pattern: "sample" | "row",
  varWeight: number[],
  training: boolean,
): LayerCall {
  const x = Float32Array.from(
    { length: n * c * m },
    (_, i) =>
      pattern === "sample"
        ? [0.5, -1.25, 2, 0.75][Math.floor(i / (c * m)) % 4]
        : Math.fround(2 * Math.sin(Math.floor(i / m) + 1)),
  );
  return {
    layer: "2d",
    shape: [n, c, 1, m],
    options: { eps: 0 },
    state: {
      mean_weight: Float32Array.from({ length: 3 }, (_, k) => [0.2, -0.1, 0.3][k]),
      var_weight: Float32Array.from(varWeight),
      running_mean: Float32Array.from({ length: c }, (_, j) => 0.1 * (j + 1)),
      running_var: Float32Array.from({ length: c }, (_, j) => [1e-20, 3e-30, 1][j % 3]),
    },
    partial: true,
    training,
    x,
    dy: Float32Array.from({ length: x.length }, (_, i) => Math.sin(i + 1)),
    scales: true,
  };
}

rangeTests(
  "a mixed variance that a tiny variance weight takes below float32's normal range keeps y, dx and the gradients",
  async (backend) => {
    // Each failed on WebGPU before: [name, call, what it gave].
    const cases: [string, LayerCall][] = [
      // y 1.4% off (the mix a subnormal 3.7e-44).
      [
        "an evaluation of constant rows, logits 100 apart",
        constantData([4, 3, 5], "row", [0, -100, -100], false),
      ],
      // dx NaN where the reference has ~1e30 (the mix flushed to 0).
      [
        "training on constant samples, logits 140 apart",
        constantData([4, 3, 5], "sample", [0, 0.5, -140], true),
      ],
      [
        "an evaluation of constant rows, logits 174 apart",
        constantData([4, 3, 5], "row", [0, -174, -174], false),
      ],
      // Rows of several segments (the reduce passes' sums): dx NaN, 72000 of 72000.
      [
        "training on long constant samples",
        constantData([4, 2, 9000], "sample", [0, 0, -167], true),
      ],
    ];
    for (const [name, call] of cases) {
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want, name);
    }
  },
);

/**
 * [1, 2, 1, 8], an evaluation under eps 0 with the mean on IN and the variance on BN's
 * running_var of 0 beside IN's weight e^-33 and LN's e^-59: rows of ~1e-6 and ~2e-6 spread by
 * 1e-12 (IN variances 5.25e-24, LN ~2.5e-13), so that IN's term is ~2^-125 and LN's ~2^-127 (a
 * subnormal) and var + eps, ~1.25 2^-125, is normal. A GPU that flushes subnormal operands
 * (NVIDIA, SwiftShader) dropped LN's term from the plain mix's sum, which stayed normal, so the
 * row kept the plain passes: y -2.09e7 for -1.90e7 (10% off) and dx with it on SwiftShader, where
 * lavapipe, which keeps subnormals, is right. Rows whose var + eps lies below 2^-102 now take the
 * wide passes (`mix_var_near_subnormal`). The test fails only on an adapter that flushes.
 */
rangeTests(
  "a normal mixed variance with a subnormal weighted term keeps y and dx",
  async (backend) => {
    const x = Float32Array.from({ length: 16 }, (_, i) => (i < 8 ? 1e-6 : 2e-6) + (i % 8) * 1e-12);
    const call: LayerCall = {
      layer: "2d",
      shape: [1, 2, 1, 8],
      options: { eps: 0 },
      state: {
        weight: Float32Array.of(1, 1),
        bias: new Float32Array(2),
        mean_weight: Float32Array.of(0, -1e30, -1e30),
        var_weight: Float32Array.of(-33, -59, 0),
        running_mean: new Float32Array(2),
        running_var: new Float32Array(2),
      },
      partial: true,
      training: false,
      x,
      dy: Float32Array.from({ length: 16 }, (_, i) => [0.5, -1, 0.25, 0.75][i % 4]),
      scales: true,
    };
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);
