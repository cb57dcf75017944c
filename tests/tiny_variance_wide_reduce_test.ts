/**
 * Issue 10 (attack fuzzer seed 39466, WebGPU): a row whose mixed var + eps is 0 in float32 (a
 * variance weight below float32's smallest subnormal, 2^-149, times the only nonzero variance,
 * under eps 0) whose segments sn_bwd_reduce lists for sn_bwd_wide_reduce (dy past DY_MAX, 2^40;
 * every dy subnormal; products dy (x - c) below 2^-90). That pass kept a segment's S2 only where
 * mixed_bad (a float32 test of var + eps > 0) passed: S2 was 0, and with it gv = dL/dvar and
 * dgamma, though sn_bwd_rows' wide_row takes that row's std from wide_map (mix_var_below_normal).
 * `var_weight`'s gradient, gv times the variance differences, came out 0, and dgamma 0. The wide
 * reduce now keeps such a row's sums, as sn_bwd_reduce does. Expected values: the float64
 * reference.
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";

rangeTests(
  "attack fuzzer seed 39466: constant rows on a running_var under a variance weight of 3.8e-46, dy +-2e38",
  async (backend) => {
    const call = make(39466);
    const { got, want } = await runBoth(call, backend);
    assert.equal(check(call, got, want), null);
  },
);

/**
 * An evaluation of SwitchNorm2d [n, c, 1, m] on samples constant across channels and positions
 * (IN and LN variances 0) under eps 0, BN's `running_var` of weight e^`bnLogit` / 2 the whole
 * mixed variance, dy of size `dy` (past 2^40, subnormal or tiny: the wide reduce's segments)
 * and gamma `gamma`.
 */
function constantSamples(bnLogit: number, dy: number, gamma: number): LayerCall {
  const [n, c, m] = [3, 2, 5];
  return {
    layer: "2d",
    shape: [n, c, 1, m],
    options: { eps: 0 },
    state: {
      weight: Float32Array.from({ length: c }, () => gamma),
      bias: Float32Array.from({ length: c }, (_, j) => 0.5 * j),
      mean_weight: Float32Array.of(0.2, -0.1, 0.3),
      var_weight: Float32Array.of(0, 0, bnLogit),
      running_mean: Float32Array.from({ length: c }, (_, j) => 0.25 * (j + 1)),
      running_var: Float32Array.from({ length: c }, (_, j) => [1, 4][j]),
    },
    partial: true,
    training: false,
    x: Float32Array.from({ length: n * c * m }, (_, i) => [0.5, -1.25, 2][Math.floor(i / (c * m))]),
    dy: Float32Array.from({ length: n * c * m }, (_, i) => dy * Math.sin(i + 1)),
    scales: true,
  };
}

/**
 * Training of SwitchNorm2d [3, 2, 1, 5] on rows constant per channel, alike in every sample (IN
 * and BN variances 0) under eps 0: LN's variance, of weight ~e^-110 / 2, is the whole mix.
 */
function channelConstants(): LayerCall {
  const [n, c, m] = [3, 2, 5];
  return {
    layer: "2d",
    shape: [n, c, 1, m],
    options: { eps: 0 },
    state: {
      weight: Float32Array.of(1, 1),
      bias: Float32Array.of(0, 0.5),
      mean_weight: Float32Array.of(0.2, -0.1, 0.3),
      var_weight: Float32Array.of(0, -110, 0),
    },
    partial: true,
    training: true,
    x: Float32Array.from({ length: n * c * m }, (_, i) => [0.5, -1.25][Math.floor(i / m) % c]),
    dy: Float32Array.from({ length: n * c * m }, (_, i) => 3e12 * Math.sin(i + 1)),
    scales: true,
  };
}

rangeTests(
  "a call whose mixed variance float32 takes as 0 keeps dL/dvar and dgamma where its segments are summed again",
  async (backend) => {
    // Each failed on WebGPU before: dgamma 0 (up to 1.9e3x its tolerance) and `var_weight`'s
    // gradient with it (variance weights ~8e-49 and ~2e-60, below float32's smallest subnormal).
    const cases: [string, LayerCall][] = [
      ["BN variance logit -110, dy ~3e12", constantSamples(-110, 3e12, 1)],
      ["BN variance logit -137, dy ~1e20, gamma 1e-20", constantSamples(-137, 1e20, 1e-20)],
      ["training, LN variance logit -110, dy ~3e12", channelConstants()],
      // The other segments sn_bwd_reduce lists: every dy subnormal, and products dy (x - c)
      // below 2^-90 (low_products).
      [
        "BN variance logit -110, dy ~1e-42 (subnormal), gamma 1e30",
        constantSamples(-110, 1e-42, 1e30),
      ],
      ["BN variance logit -110, dy ~1e-35", constantSamples(-110, 1e-35, 1)],
    ];
    for (const [name, call] of cases) {
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want, name);
    }
  },
);

/**
 * An evaluation of SwitchNorm2d or 3d of `shape` on rows with spread (x = sin(0.7 i) plus a
 * step per sample) under eps 0 and a `running_var` of 0: IN's and LN's variances, of weights
 * ~e^`logit`, the whole mixed variance, which float32 takes as 0; dy of size `dy` and gamma
 * `gamma`.
 */
function spreadRows(shape: number[], logit: number, dy: number, gamma: number): LayerCall {
  const [n, c] = shape;
  const size = shape.reduce((a, b) => a * b);
  return {
    layer: shape.length === 4 ? "2d" : "3d",
    shape,
    options: { eps: 0 },
    state: {
      weight: Float32Array.from({ length: c }, () => gamma),
      bias: Float32Array.from({ length: c }, (_, j) => 0.5 * j),
      mean_weight: Float32Array.of(0.2, -0.1, 0.3),
      var_weight: Float32Array.of(logit, logit, 0),
      running_mean: Float32Array.from({ length: c }, (_, j) => 0.25 * (j + 1)),
      running_var: new Float32Array(c),
    },
    partial: true,
    training: false,
    x: Float32Array.from(
      { length: size },
      (_, i) => Math.sin(0.7 * i) + 0.1 * Math.floor(i / (size / n)),
    ),
    dy: Float32Array.from({ length: size }, (_, i) => dy * Math.sin(i + 1)),
    scales: true,
  };
}

rangeTests(
  "rows with spread whose mixed variance float32 takes as 0 keep dx's dL/dvar term where their segments are summed again",
  async (backend) => {
    // Before the wide reduce kept these rows' sums, dx on WebGPU lacked Gvar_in 2 (x - mu_in) /
    // (M - 1) (gv 0): 0.96x to 1.16x the reference's (-3.41e35 for -2.93e35), and +-Infinity or
    // 2.2e38 of the wrong sign where that term cancels dy gs (95 of 120 such calls failed, all but
    // the dy ~1 ones, which the wide reduce does not sum). sn_bwd_coef's own mixed_bad test never reads them: a mix whose
    // var + eps is below float32's normal range takes wide_coef, whose map (unit_map) keeps it.
    const cases: [string, LayerCall][] = [
      ["2d [2, 2, 1, 5], variance logits -110, dy ~1", spreadRows([2, 2, 1, 5], -110, 1, 1)],
      [
        "2d [2, 2, 1, 5], variance logits -110, dy ~3e12, gamma -3",
        spreadRows([2, 2, 1, 5], -110, 3e12, -3),
      ],
      [
        "2d [2, 2, 1, 5], variance logits -125, dy ~3e12, gamma -3",
        spreadRows([2, 2, 1, 5], -125, 3e12, -3),
      ],
      [
        "2d [3, 1, 8, 9], variance logits -125, dy ~1e20, gamma 1e-20",
        spreadRows([3, 1, 8, 9], -125, 1e20, 1e-20),
      ],
      [
        "3d [3, 1, 4, 8, 16], variance logits -104, dy ~1e-42 (subnormal), gamma 1e30",
        spreadRows([3, 1, 4, 8, 16], -104, 1e-42, 1e30),
      ],
      [
        "3d [2, 2, 1, 2, 3], variance logits -140, dy ~1e-35",
        spreadRows([2, 2, 1, 2, 3], -140, 1e-35, 1),
      ],
    ];
    for (const [name, call] of cases) {
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want, name);
    }
  },
);
