/**
 * Mixes of std 0 (eps 0, every term of nonzero variance weight of variance 0) where x equals the
 * heaviest term's mean and x - mu is the product of a tiny mean weight and its mean's difference,
 * w_k (mu_a - mu_k), below float32's smallest subnormal in the unit of the mixed mean: y is the
 * infinity of that sign times gamma's in the float64 reference (its anchored mean keeps the rest,
 * backends/reference.ts), and the dgamma terms dy (x - mu) s likewise. WebGPU's wide passes took
 * x - mu from fine_mean, whose lo dropped that product, so x - mu was 0 and y 0 / 0, NaN (attack
 * fuzzer seed 217219: SwitchNorm1d [4, 3], an evaluation after a training step on constant samples
 * of 1e10 with momentum 0, an LN mean weight of e^-174). The eps-0 passes take x - mu from
 * fine_low's parts there (zero_std.wgsl, fine_mean_lost).
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";

rangeTests(
  "attack fuzzer seed 217219: an evaluation of std 0 whose x equals its running_mean beside an LN mean weight of e^-174",
  async (backend) => {
    const call = make(217219);
    const { got, want } = await runBoth(call, backend);
    assert.equal(want.evaluation!.y[10], Infinity);
    assert.equal(check(call, got, want), null);
  },
);

/** Unit row-major steps of a deterministic pattern in (-1, 1). */
const wave = (i: number) => Math.sin(i * 7.3 + 1) * 0.9;

/**
 * SwitchNorm1d [4, 3] evaluating on running_mean `rm` (every channel) and running_var 0 under LN
 * mean logit `logit` beside BN's 0 (variance: BN alone): sample n has x = rm in channel n % 3 and
 * `far` times (1 + small) elsewhere, so that element's x - mu is w_LN (rm - mu_LN).
 */
function eval1d(rm: number, far: number, logit: number, gamma: number): LayerCall {
  const [n, c] = [4, 3];
  return {
    layer: "1d",
    shape: [n, c],
    options: { eps: 0 },
    state: {
      weight: Float32Array.of(gamma, -gamma, gamma),
      bias: Float32Array.of(0, 1, -3e38),
      mean_weight: Float32Array.of(logit, 0),
      var_weight: Float32Array.of(-1e30, 0),
      running_mean: Float32Array.of(rm, rm, rm),
      running_var: Float32Array.of(0, 0, 0),
    },
    partial: true,
    training: false,
    x: Float32Array.from(
      { length: n * c },
      (_, i) => i % c === Math.floor(i / c) % c ? rm : far * (1 + wave(i) * 0.5),
    ),
    dy: Float32Array.from({ length: n * c }, (_, i) => 1 + wave(i) * 0.1),
    scales: true,
  };
}

/**
 * SwitchNorm1d [4, 3] training: channel 0 constant at `v` (BN variance 0, BN mean v), the others
 * `far` times (1 + small); LN mean logit `logit`, variance BN alone. Channel 0's x - mu is
 * w_LN (v - mu_LN) in every sample.
 */
function train1d(v: number, far: number, logit: number, gamma: number): LayerCall {
  const [n, c] = [4, 3];
  return {
    layer: "1d",
    shape: [n, c],
    options: { eps: 0 },
    state: {
      weight: Float32Array.of(gamma, 1, 1),
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

/**
 * SwitchNorm2d [2, 2, 1, m] evaluating on running_mean `rm` and running_var 0: the term of mean
 * logit `logit` is IN (`term` 0) or LN (1), BN's logit 0, the third -1e30; variance BN alone.
 * Each row has x[0] = rm, the rest `far` times (1 + small).
 */
function evalNd(rm: number, far: number, logit: number, term: 0 | 1, m: number): LayerCall {
  const [n, c] = [2, 2];
  const mean = [-1e30, -1e30, 0];
  mean[term] = logit;
  return {
    layer: "2d",
    shape: [n, c, 1, m],
    options: { eps: 0 },
    state: {
      weight: Float32Array.of(1e-20, -1),
      bias: Float32Array.of(3e38, 0),
      mean_weight: Float32Array.from(mean),
      var_weight: Float32Array.of(-1e30, -1e30, 0),
      running_mean: Float32Array.of(rm, rm),
      running_var: Float32Array.of(0, 0),
    },
    partial: true,
    training: false,
    x: Float32Array.from(
      { length: n * c * m },
      (_, i) => i % m === 0 ? rm : far * (1 + wave(i) * 0.5),
    ),
    dy: Float32Array.from({ length: n * c * m }, (_, i) => 1 + wave(i) * 0.1),
    scales: true,
  };
}

/**
 * SwitchNorm2d [2, 1, 1, m] training on constant rows (IN variance 0): sample 0 at `v`, sample 1
 * at `far`; IN mean logit 0, BN's `logit`, LN's -1e30; variance IN alone. x - mu of sample 0 is
 * w_BN (v - mu_BN).
 */
function trainNd(v: number, far: number, logit: number, m: number): LayerCall {
  return {
    layer: "2d",
    shape: [2, 1, 1, m],
    options: { eps: 0 },
    state: {
      weight: Float32Array.of(2),
      bias: Float32Array.of(0),
      mean_weight: Float32Array.of(0, -1e30, logit),
      var_weight: Float32Array.of(0, -1e30, -1e30),
    },
    partial: true,
    training: true,
    x: Float32Array.from({ length: 2 * m }, (_, i) => i < m ? v : far),
    dy: Float32Array.from({ length: 2 * m }, (_, i) => 1 + wave(i) * 0.1),
    scales: true,
  };
}

// [rm, far, logit]: w (rm - mu_LN) below 2^-149 of rm's unit.
const EVAL_1D: [number, number, number][] = [
  [1e10, 3e29, -174],
  [1e10, -3e29, -174],
  [-1e10, 1e29, -160],
  [1, 1e20, -150],
  [-1, -1e25, -170],
  [1e20, -1e36, -174],
];
for (const [rm, far, logit] of EVAL_1D) {
  for (const gamma of [1e-10, -3e38]) {
    rangeTests(
      `SwitchNorm1d [4, 3]: an evaluation of std 0 on running_mean ${rm} beside samples of ${far} under an LN mean logit of ${logit} (gamma ${gamma}) gives the reference's y`,
      async (backend) => {
        const call = eval1d(rm, far, logit, gamma);
        const { got, want } = await runBoth(call, backend);
        // x - mu of the element at rm (channel 0 of sample 0): the sign of rm - mu_LN, -far's.
        assert.equal(want.y[0], -Math.sign(far) * Math.sign(gamma) * Infinity);
        assertRangeChecks(call, got, want);
      },
    );
  }
}

const TRAIN_1D: [number, number, number][] = [
  [1e10, 3e29, -174],
  [-1e10, 3e29, -160],
  [1, -1e20, -150],
  [3e20, -1e37, -174],
];
for (const [v, far, logit] of TRAIN_1D) {
  rangeTests(
    `SwitchNorm1d [4, 3]: training on a channel constant at ${v} beside samples of ${far} under an LN mean logit of ${logit} gives the reference's y and gradients`,
    async (backend) => {
      const call = train1d(v, far, logit, 2);
      const { got, want } = await runBoth(call, backend);
      assert.equal(want.y[0], -Math.sign(far) * Infinity);
      assertRangeChecks(call, got, want);
    },
  );
}

const EVAL_ND: [number, number, number, 0 | 1, number][] = [
  [1e10, 3e29, -174, 0, 16],
  [1e10, -3e29, -174, 1, 33],
  [-1e10, 1e29, -160, 0, 257],
  [1, 1e20, -150, 1, 16],
  [1e20, -1e36, -174, 0, 1000],
];
for (const [rm, far, logit, term, m] of EVAL_ND) {
  rangeTests(
    `SwitchNorm2d [2, 2, 1, ${m}]: an evaluation of std 0 on running_mean ${rm} beside x of ${far} under an ${
      ["IN", "LN"][term]
    } mean logit of ${logit} gives the reference's y`,
    async (backend) => {
      const call = evalNd(rm, far, logit, term, m);
      const { got, want } = await runBoth(call, backend);
      // x[0] = rm: x - mu of -far's sign, gamma 1e-20.
      assert.equal(want.y[0], -Math.sign(far) * Infinity);
      assertRangeChecks(call, got, want);
    },
  );
}

const TRAIN_ND: [number, number, number, number][] = [
  [1e10, 3e29, -174, 16],
  [-1e10, -3e29, -160, 33],
  [1, 1e20, -150, 257],
];
for (const [v, far, logit, m] of TRAIN_ND) {
  rangeTests(
    `SwitchNorm2d [2, 1, 1, ${m}]: training on constant rows of ${v} and ${far} under a BN mean logit of ${logit} gives the reference's y and gradients`,
    async (backend) => {
      const call = trainNd(v, far, logit, m);
      const { got, want } = await runBoth(call, backend);
      // Sample 0: x - mu = w_BN (v - mu_BN), of -far's sign (far's mean dominates mu_BN).
      assert.equal(want.y[0], -Math.sign(far) * Infinity);
      assertRangeChecks(call, got, want);
    },
  );
}

/**
 * SwitchNorm2d [1, 2, 1, 2] evaluating on running_mean 0 and running_var 0 under IN and LN mean
 * logits `logit` beside BN's 0: rows [0, 2F] and [-6F, r] (F = 2^90), so that channel 0's IN mean
 * F and the LN mean -F + r / 4 cancel in x[0] - mu = -w (F + mu_LN) exactly where r is 0 (the
 * reference's 0 / 0, NaN) and leave w r / 4 where it is not.
 */
function cancelNd(logit: number, r: number): LayerCall {
  const f = 2 ** 90;
  return {
    layer: "2d",
    shape: [1, 2, 1, 2],
    options: { eps: 0 },
    state: {
      weight: Float32Array.of(1, -1),
      bias: Float32Array.of(0, 0),
      mean_weight: Float32Array.of(logit, logit, 0),
      var_weight: Float32Array.of(-1e30, -1e30, 0),
      running_mean: Float32Array.of(0, 0),
      running_var: Float32Array.of(0, 0),
    },
    partial: true,
    training: false,
    x: Float32Array.of(0, 2 * f, -6 * f, r),
    dy: Float32Array.of(1, 1, 1, 1),
    scales: true,
  };
}

for (const logit of [-150, -174]) {
  for (const r of [0, 2 ** 70, -(2 ** 70)]) {
    rangeTests(
      `SwitchNorm2d [1, 2, 1, 2]: an evaluation of std 0 whose IN and LN terms (mean logit ${logit}) cancel at x[0] ${
        r === 0 ? "exactly" : `but for ${r} / 4`
      } gives the reference's y`,
      async (backend) => {
        const call = cancelNd(logit, r);
        const { got, want } = await runBoth(call, backend);
        // x[0] - mu = -w (F + mu_LN) = -w r / 4: NaN (0 / 0) where r is 0.
        assert.equal(want.y[0], r === 0 ? NaN : -Math.sign(r) * Infinity);
        assertRangeChecks(call, got, want);
      },
    );
  }
}
