/**
 * WebGPU: dx's variance terms where a mixing weight times a gradient sum falls below float32's
 * normal range (attack fuzzer seed 8118, issue 10).
 *
 * In an evaluation under a variance weight near float32's bottom (logits 87 apart: 1.6e-38), x -
 * mu_ln can lie ~1e17 stds of the mix from the mean (the mix is BN's, of a tiny running_var), and
 * the LN term of dx, w GvL 2 (x - mu_ln) / (C - 1), is the whole dx of an element whose own dy
 * gamma s is tiny. w GvL itself lies below float32's normal range there: lavapipe, as GPUs may,
 * flushed it or kept few of its bits, and dx came out as a coarse power of two (2^-52 for 0.988
 * 2^-52: seed 8118, a scaled row in sn1d_bwd_wide_dx), or 0 for 5.8e-36 (an unscaled row in
 * sn1d_bwd_dx); layout "nd" (sn_bwd_coef's B) alike. The wide pass now takes each weight's float32
 * exponent apart (as sn_bwd_coef's wide map did), the 1d hot pass lifts such a product by 2^64,
 * and sn_bwd_coef sends such rows to its wide map. WASM forms these terms in float64.
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";

rangeTests(
  "attack fuzzer seed 8118: SwitchNorm1d evaluation dx through LN's variance under a weight of 1.6e-38",
  async (backend) => {
    const call = make(8118);
    const { got, want } = await runBoth(call, backend);
    // dx[0] is w GvL (x - mu_ln), x - mu_ln one float32 spacing of 1e30 (2^76): 0.988 2^-52.
    assert.ok(Math.abs(want.dx[0] / 2.1943e-16 - 1) < 1e-3, `dx[0] ${want.dx[0]}`);
    assert.equal(check(call, got, want), null);
  },
);

/**
 * The scaled kind of seed 8118 written out: rows of 1e30 a few float32 spacings apart over
 * running statistics whose BN std is tiny beside w var_ln, dy ~1e-31 beside subnormal ones.
 */
function scaledRows(eps: number, shape: [number, number]): LayerCall {
  const [n, c] = shape;
  const u = 2 ** 76; // float32's spacing at 1e30
  const x = Float32Array.from({ length: n * c }, (_, i) => 1e30 + ((i * 7) % 11) * u);
  return {
    layer: "1d",
    shape,
    options: { eps },
    state: {
      weight: Float32Array.from({ length: c }, (_, j) => j === c - 1 ? -1e30 : 1e-20),
      bias: Float32Array.from({ length: c }, () => 1),
      mean_weight: Float32Array.of(-87, 0),
      var_weight: Float32Array.of(-87, 0),
      running_mean: Float32Array.from({ length: c }, (_, j) => j === c - 1 ? 1e30 : -3e38),
      running_var: Float32Array.from({ length: c }, (_, j) => j === c - 1 ? 1e-40 : 1),
    },
    partial: true,
    training: false,
    x,
    dy: Float32Array.from({ length: n * c }, (_, i) => i % 3 === 0 ? -4e-31 : 7e-31 + i * 1e-32),
    scales: true,
  };
}

for (const [eps, shape] of [[0, [2, 3]], [1e-5, [4, 5]], [0, [8, 2]]] as const) {
  rangeTests(
    `SwitchNorm1d: evaluation dx of scaled rows under a variance weight of 1.6e-38 (eps ${eps}, [${shape}])`,
    async (backend) => {
      const call = scaledRows(eps, [...shape]);
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}

/**
 * Unscaled rows (the hot passes): x ~1e12 over a running_var of 1e-10 (BN's, the mix's std 1e-5),
 * channel 0 of gamma g, the others of gamma 0, whose dx is LN's terms alone: w GvL ~ w g 5e26.
 */
function unscaledRows(layer: "1d" | "2d", logit: number, gamma: number, dyScale = 1): LayerCall {
  const shape = layer === "1d" ? [2, 3] : [2, 3, 1, 4];
  const len = shape.reduce((a, b) => a * b, 1);
  const mix = layer === "1d" ? [logit, 0] : [logit, logit, 0];
  return {
    layer,
    shape,
    options: { eps: 0 },
    state: {
      weight: Float32Array.of(gamma, 0, 0),
      bias: Float32Array.of(0, 0, 0),
      mean_weight: Float32Array.from(mix),
      var_weight: Float32Array.from(mix),
      running_mean: Float32Array.of(0, 0, 0),
      running_var: Float32Array.of(1e-10, 1, 1),
    },
    partial: true,
    training: false,
    x: layer === "1d"
      ? Float32Array.of(1e12, -3e11, 5e11, -7e11, 2e11, 9e11)
      : Float32Array.from({ length: len }, (_, k) => Math.sin((k + 1) * 12.9898) * 1e12),
    dy: layer === "1d"
      ? Float32Array.of(1, 1, 1, -1, 1, 1).map((v) => v * dyScale)
      : Float32Array.from({ length: len }, (_, k) => ((k % 3) - 0.5) * dyScale),
    scales: true,
  };
}

for (
  const [layer, logit, gamma] of [
    ["1d", -87, 1e-36], // dx 0 for 5.8e-36 before
    ["1d", -87, 1e-34],
    ["1d", -60, 1e-34],
    ["1d", -40, 1e-28], // a weight of 4e-18: w GvL 8.6e-44
    ["2d", -87, 1e-31],
    ["2d", -87, 1e-33], // dx 1.107e-33 for 1.427e-33 before
  ] as const
) {
  rangeTests(
    `SwitchNorm${layer}: evaluation dx of unscaled rows where w GvL falls below float32's normal range (logit ${logit}, gamma ${gamma})`,
    async (backend) => {
      const call = unscaledRows(layer, logit, gamma);
      const { got, want } = await runBoth(call, backend);
      // The gamma-0 elements' dx, LN's terms alone, lie far above the checks' floor (~9.4e-38).
      const inner = layer === "1d" ? 1 : 4;
      const far = Array.from(want.dx).filter((v, i) =>
        Math.floor(i / inner) % 3 !== 0 && Math.abs(v) > 1e-36
      );
      assert.ok(far.length >= 2, `dx ${want.dx}`);
      assertRangeChecks(call, got, want);
    },
  );
}

/**
 * gamma dy itself below float32's normal range (1e-30 x 1e-10, 1e-25 x 1e-16, 1e-36 x 1e-4) beside
 * s ~1e5 and xhat ~1e17, where a GPU that flushes subnormal results (NVIDIA; SwiftShader) made it
 * 0: the loose pairs of a row line's element (sn1d_bwd_element.wgsl, element_row_pair), whose
 * variance dots came out 0 (`var_weight`'s gradient 0 for ~3e-28), and sn1d_bwd_dx's dy gamma s,
 * formed as (dy gamma) s: dx 0 for 1e-35. (The case logit -40, gamma 1e-28 above is the same
 * class: s^2 gamma dy ~5e-35, whose loose words near 2^-126 flushed, `var_weight`'s gradient 1.87x
 * its tolerance.)
 */
for (
  const [logit, gamma, dyScale] of [[-87, 1e-30, 1e-10], [-87, 1e-25, 1e-16], [
    -80,
    1e-36,
    1e-4,
  ]] as const
) {
  rangeTests(
    `SwitchNorm1d: evaluation dx and logit gradients where gamma dy lies below float32's normal range (logit ${logit}, gamma ${gamma}, dy ${dyScale})`,
    async (backend) => {
      const call = unscaledRows("1d", logit, gamma, dyScale);
      const { got, want } = await runBoth(call, backend);
      // The variance dots' share lies far above the checks' floor (~9.4e-38).
      assert.ok(
        Math.abs(want.grads.var_weight[0]) > 1e-30,
        `var_weight grad ${want.grads.var_weight}`,
      );
      assertRangeChecks(call, got, want);
    },
  );
}
