/**
 * An evaluation of std 0 (running_var 0 of variance weight ~1, eps 0) on a running_mean of 1e30 of
 * mean weight 1 - e^-87 beside a row's IN mean (weight e^-87) whose largest x equals the
 * running_mean: x - mu of that x is e^-87 (rm - IN mean), +-1.6e-8, and its y the infinity of
 * that sign times gamma's. In float32 the BN weight is 1, so WebGPU's wide map, anchored at the
 * IN mean, found x - mu 0, and sn_zero_std_y wrote y from the parts flushed about that anchor
 * (flushed_tail), of the wrong sign: -Infinity for +Infinity (attack fuzzer seed 11178: SwitchNorm2d
 * [4, 1, 1, 5000], gamma 1e-20, beta 3e38). sn_zero_std_y now leaves the elements whose x - mu
 * sn_wide_normalize took about the heaviest term (fine_mean, fine_low).
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";

/**
 * The case above in a row of `m`, x[0] = running_mean = `rm`, the rest in (-1, 1), IN's mean
 * logit `logit` beside BN's 0.
 */
function outlierAtRunningMean(
  m: number,
  rm: number,
  logit: number,
  gamma: number,
  beta: number,
  runningVar = 0,
): LayerCall {
  return {
    layer: "2d",
    shape: [1, 1, 1, m],
    options: { eps: 0 },
    state: {
      weight: Float32Array.of(gamma),
      bias: Float32Array.of(beta),
      mean_weight: Float32Array.of(logit, -1e30, 0),
      var_weight: Float32Array.of(-1e30, -1e30, 0),
      running_mean: Float32Array.of(rm),
      running_var: Float32Array.of(runningVar),
    },
    partial: true,
    training: false,
    x: Float32Array.from({ length: m }, (_, i) => i === 0 ? rm : Math.sin(i * 7.3) * 0.9),
    dy: Float32Array.from({ length: m }, (_, i) => 1 + Math.cos(i) * 0.1),
    scales: true,
  };
}

// [m, running_mean, IN's mean logit]: e^-40 puts x - mu 2^-58 below the row's unit, e^-87 and
// e^-100 beyond 2^-120 (fine_low's parts).
const CASES: [number, number, number][] = [
  [33, 1e30, -87],
  [257, -1e30, -87],
  [1000, 1e20, -87],
  [16, 3e38, -87],
  [16, -3.4e38, -100],
  [257, 1e30, -100],
  [8, 1e10, -40],
  [33, 3e38, -40],
  [5000, -1e30, -40],
  [1000, -3.4e38, -40],
];
for (const [m, rm, logit] of CASES) {
  for (const [gamma, beta] of [[1e-20, 3e38], [1, -1e38], [-1, 3.4e38]]) {
    rangeTests(
      `SwitchNorm2d [1, 1, 1, ${m}]: an evaluation of std 0 whose x = running_mean ${rm} lies e^${logit} (rm - IN mean) from mu (gamma ${gamma}, beta ${beta}) gives the reference's y and dgamma`,
      async (backend) => {
        const call = outlierAtRunningMean(m, rm, logit, gamma, beta);
        const { got, want } = await runBoth(call, backend);
        // x - mu of x[0] is e^logit (rm - IN mean), of rm's sign: y[0] that infinity times gamma's.
        assert.equal(want.y[0], Math.sign(rm) * Math.sign(gamma) * Infinity);
        assertRangeChecks(call, got, want);
      },
    );
  }
}

rangeTests(
  "attack fuzzer seed 11178: training with momentum 1, then an evaluation of std 0 on a running_mean of 1e30 that a row's x equals",
  async (backend) => {
    const call = make(11178);
    const { got, want } = await runBoth(call, backend);
    if (backend === "webgpu") assert.equal(want.evaluation!.y[0], Infinity);
    assert.equal(check(call, got, want), null);
  },
);

/**
 * The same rows over a running_var above 0, IN's weight e^-40: x - mu of x[0], 2^-58 of the row's
 * unit, lay between the mix's float32 words (2^-24) and fine_low's rows (parts 2^-60 or more
 * below fine_mean's unit), so sn_wide_normalize's x - mu lost it, and y[0] = beta + gamma (x - mu)
 * / std near float32's largest value had the wrong sign (-1e38 for 1.2e37, -Infinity for
 * +Infinity). fine_low now takes parts 2^-30 or more below that unit.
 */
const FINITE: [number, number, number, number, number][] = [
  [8, 1e10, 1e-14, 3e38, -1e38],
  [16, 1e10, 1e-14, -3e38, 3e38],
  [33, 1e30, 1e-30, 3e38, 0],
  [257, -1e30, 1e-14, -1e30, 3e38],
  [5000, 3e38, 1e-14, 3e38, -1e38],
];
for (const [m, rm, rv, gamma, beta] of FINITE) {
  rangeTests(
    `SwitchNorm2d [1, 1, 1, ${m}]: an evaluation over running_var ${rv} whose x = running_mean ${rm} lies e^-40 (rm - IN mean) from mu (gamma ${gamma}, beta ${beta}) gives the reference's y`,
    async (backend) => {
      const call = outlierAtRunningMean(m, rm, -40, gamma, beta, rv);
      const { got, want } = await runBoth(call, backend);
      // y[0] - beta: gamma (x - mu) / std of rm's sign times gamma's, near float32's largest value.
      const term = want.y[0] - beta;
      assert.equal(Math.sign(term), Math.sign(rm) * Math.sign(gamma));
      assert.ok(Math.abs(term) > 1e36, `y[0] - beta ${term}`);
      assertRangeChecks(call, got, want);
    },
  );
}
