/**
 * Probes of two possible members of attack fuzzer seed 217219's class (x - mu below float32's
 * subnormals on a std of 0, eps 0; tests/zero_std_tiny_mean_term_test.ts), against the float64
 * reference: both passed before any change, so these are regression cases.
 * - Layout "nd": fine_low's low_part rescales each part to the largest, so a part 2^150 or more
 *   below it flushes to 0; where x - a cancels the larger part exactly, the smaller is all of
 *   x - mu. The reference's anchored mean sums the parts in float64 (reference.ts anchoredMean),
 *   which drops a part below 2^-53 of the other just the same: y and dgamma NaN on both (0 / 0),
 *   the infinity of the part's sign where it lies 2^-48 to 2^-40 below (kept by both).
 * - SwitchNorm1d rows without an ok fine_mean whose wide pass takes x - mu from fine_low's parts
 *   (sn1d_wide_normalize's own `low`, stricter than fine_centred's) while the backward
 *   (sn1d_bwd_zero_std) takes it in the mix's unit: there lo lies 2^100 or more below the unit,
 *   so x - a (2^-83 of the unit or more) or, at x = a, -lo (or flushed_tail, its sign) gives the
 *   same sign as fine_centred_d; y, dx, dgamma and the weights' gradients match.
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";

/**
 * SwitchNorm2d [1, 2, 1, 2] evaluating on running_mean `rm` and running_var 0 under IN and LN
 * mean logits 0 (weights (1 - w_BN) / 2, 1/2 in float64 where w_BN lies below 2^-53) and BN's
 * `logit`; variance BN alone. Rows [s, -s] (IN mean 0, the anchor) and [4s, 4s]: the LN mean 2s,
 * so x[0] - a = s = w_LN (m_LN - a) exactly where the weights are 1/2, and x[0] - mu = w_BN (s - rm).
 */
function cancelPart(s: number, rm: number, logit: number): LayerCall {
  return {
    layer: "2d",
    shape: [1, 2, 1, 2],
    options: { eps: 0 },
    state: {
      weight: Float32Array.of(1, -1),
      bias: Float32Array.of(0, 0),
      mean_weight: Float32Array.of(0, 0, logit),
      var_weight: Float32Array.of(-1e30, -1e30, 0),
      running_mean: Float32Array.of(rm, rm),
      running_var: Float32Array.of(0, 0),
    },
    partial: true,
    training: false,
    x: Float32Array.of(s, -s, 4 * s, 4 * s),
    dy: Float32Array.of(1, 0.75, 1.25, 0.5),
    scales: true,
  };
}

// [s, rm, logit]: w_BN rm 2^150 or more below s (the first six: the reference's float64 sum of the
// two parts drops it, x - mu 0, y NaN) or 2^-48 to 2^-40 of s (kept: the infinity of s - rm's sign).
const CANCEL: [number, number, number][] = [
  [1, 1e38, -400],
  [1, -1e38, -400],
  [1, 3e20, -400],
  [2 ** -60, -1e30, -300],
  [2 ** 40, 1e38, -200],
  [1, -1e30, -120],
  [1, 3, -27],
  [1, -1e3, -35],
  [2 ** 30, 1e12, -30],
];
// (The first four: w_BN rm 2^70 or more below s.)
for (const [s, rm, logit] of CANCEL) {
  rangeTests(
    `SwitchNorm2d [1, 2, 1, 2]: an evaluation of std 0 whose x - a cancels the LN part ${s} exactly beside a BN part ${rm} e^${logit} gives the reference's y`,
    async (backend) => {
      const call = cancelPart(s, rm, logit);
      const { got, want } = await runBoth(call, backend);
      const kept = Math.abs(rm) * Math.exp(logit) / 2 > s * 2 ** -49;
      // x - mu = w_BN (s - rm) where the weights are not 1/2 exactly in float64.
      assert.equal(want.y[0], kept ? Math.sign(s - rm) * Infinity : NaN);
      assertRangeChecks(call, got, want);
    },
  );
}

/** Unit row-major steps of a deterministic pattern in (-1, 1). */
const wave = (i: number) => Math.sin(i * 7.3 + 1) * 0.9;

/**
 * SwitchNorm1d [4, 3] evaluating on running_mean `rm` and running_var 0 (variance: BN alone)
 * under an LN mean logit `logit`: channel 0 at rm in every sample (its x - mu w_LN (rm - mu_LN),
 * one sign: dgamma the infinity of that sign), the others `far` times (1 + small).
 */
function eval1d(rm: number, far: number, logit: number, gamma: number): LayerCall {
  const [n, c] = [4, 3];
  return {
    layer: "1d",
    shape: [n, c],
    options: { eps: 0 },
    state: {
      weight: Float32Array.of(gamma, -gamma, gamma),
      bias: Float32Array.of(0, 1, -1),
      mean_weight: Float32Array.of(logit, 0),
      var_weight: Float32Array.of(-1e30, 0),
      running_mean: Float32Array.of(rm, rm, rm),
      running_var: Float32Array.of(0, 0, 0),
    },
    partial: true,
    training: false,
    x: Float32Array.from(
      { length: n * c },
      (_, i) => i % c === 0 ? rm : far * (1 + wave(i) * 0.5),
    ),
    dy: Float32Array.from({ length: n * c }, (_, i) => 1 + wave(i) * 0.1),
    scales: true,
  };
}

const EVAL_1D: [number, number, number][] = [
  [1, 1e10, -100],
  [1, -1e10, -100],
  [-1, 1e20, -110],
  [1e5, 1e30, -100],
  [1, 1e10, -70],
  [1, -1e20, -90],
];
for (const [rm, far, logit] of EVAL_1D) {
  for (const gamma of [1, -3e38]) {
    rangeTests(
      `SwitchNorm1d [4, 3]: an evaluation of std 0 on running_mean ${rm} beside samples of ${far} under an LN mean logit of ${logit} (gamma ${gamma}) gives the reference's y and gradients`,
      async (backend) => {
        const call = eval1d(rm, far, logit, gamma);
        const { got, want } = await runBoth(call, backend);
        assert.equal(want.y[0], -Math.sign(far - rm) * Math.sign(gamma) * Infinity);
        assertRangeChecks(call, got, want);
      },
    );
  }
}

/**
 * SwitchNorm1d [4, 3] training: channel 0 constant at `v` (BN variance 0, BN mean v), the others
 * `far` times (1 + small); LN mean logit `logit`, variance BN alone.
 */
function train1d(v: number, far: number, logit: number): LayerCall {
  const [n, c] = [4, 3];
  return {
    layer: "1d",
    shape: [n, c],
    options: { eps: 0 },
    state: {
      weight: Float32Array.of(-2, 1, 1),
      bias: Float32Array.of(0.5, 0, 0),
      mean_weight: Float32Array.of(logit, 0),
      var_weight: Float32Array.of(-1e30, 0),
    },
    partial: true,
    training: true,
    x: Float32Array.from({ length: n * c }, (_, i) => i % c === 0 ? v : far * (1 + wave(i) * 0.5)),
    dy: Float32Array.from({ length: n * c }, (_, i) => 1 + wave(i) * 0.1),
    scales: true,
  };
}

for (const [v, far, logit] of EVAL_1D) {
  rangeTests(
    `SwitchNorm1d [4, 3]: training on a channel constant at ${v} beside samples of ${far} under an LN mean logit of ${logit} gives the reference's y and gradients`,
    async (backend) => {
      const call = train1d(v, far, logit);
      const { got, want } = await runBoth(call, backend);
      assert.equal(want.y[0], Math.sign(far - v) * Infinity);
      assertRangeChecks(call, got, want);
    },
  );
}
