/**
 * Issue 10, point 1, for SwitchNorm1d on WebGPU: the members of the fault class that fuzzing
 * against the float64 reference backend found in layout "1d" (silent wrong results, no error),
 * each as a call whose float32 inputs the reference computes in float64. Every case here failed
 * before the fix it names; tests/range_test.ts has the rest of the range promise.
 */
import { seededRandom } from "../examples/_data.ts";
import { GRAD, RUNNING, Y, Y_SCALED } from "./_tolerances.ts";
import { termScales } from "./_term_scales.ts";
import { webgpuTest } from "./_webgpu.ts";
import {
  assertOutputsClose,
  assertRangeChecks,
  gradsToScale,
  type LayerCall,
  rangeTests,
  runBoth,
} from "./_range_compare.ts";

/** One SwitchNorm1d problem: the layer's state, a training batch, and an evaluation batch. */
interface Case {
  n: number;
  c: number;
  eps?: number;
  weight?: Float32Array;
  logits?: [number, number, number, number]; // mean_weight, var_weight
  x: Float32Array;
  dy: Float32Array;
  xEval?: Float32Array;
}

/** A training forward and backward (and, with xEval, an evaluation forward and backward). */
function step(k: Case): LayerCall {
  const [m0, m1, v0, v1] = k.logits ?? [0.3, -0.2, -0.5, 0.4];
  return {
    layer: "1d",
    shape: [k.n, k.c],
    options: { eps: k.eps ?? 1e-5 },
    state: {
      weight: k.weight ?? new Float32Array(k.c).fill(1),
      bias: Float32Array.from({ length: k.c }, (_, i) => 0.1 * (i % 3)),
      mean_weight: new Float32Array([m0, m1]),
      var_weight: new Float32Array([v0, v1]),
    },
    partial: true, // running buffers at their defaults
    training: true,
    x: k.x,
    dy: k.dy,
    xEval: k.xEval,
    running: true,
    dispose: true,
  };
}

/** Every output of `k` on WebGPU within the project's tolerances of the reference's. */
async function assertMatches(k: Case): Promise<void> {
  const { want, got } = await runBoth(step(k), "webgpu");
  const all = { y: Y, dx: GRAD, grads: GRAD };
  assertOutputsClose(got, want, { ...all, runningMean: RUNNING, runningVar: RUNNING });
  if (k.xEval) {
    assertOutputsClose(got.evaluation!, want.evaluation!, { ...all, suffix: " (evaluation)" });
  }
}

/** n x c values `f(row, col, uniform in [-1, 1))`, from a fixed seed. */
function fill(n: number, c: number, seed: number, f: (r: number, j: number, u: number) => number) {
  const random = seededRandom(seed);
  return Float32Array.from(
    { length: n * c },
    (_, i) => f(Math.floor(i / c), i % c, random() * 2 - 1),
  );
}

webgpuTest(
  "WebGPU: SwitchNorm1d where one row of 1e7 dominates every column of 20000 rows matches the reference",
  async () => {
    // The column's group merge took the first tile's shift (here the row of 1e7) as its hi and
    // summed the others' means in float32 beside it: running_mean was ~2e-3 relative off, and
    // the weight gradient ~5x its tolerance.
    const n = 20000, c = 16;
    const x = fill(n, c, 7, (r, j, u) => r === 0 ? 1e7 * (j % 2 ? -1 : 1) * (1 + j / 10) : u);
    await assertMatches({ n, c, x, dy: fill(n, c, 8, (_r, _j, u) => u) });
  },
);

webgpuTest(
  "WebGPU: SwitchNorm1d where a tile line's first value dominates its line matches the reference",
  async () => {
    // A 32-row line shifted by its first value (1e8 beside values of -2.5e6) summed 31 values
    // of ~-1.03e8 into a line sum of ~2e7: their float32 rounding (~1e-4 relative of it) made
    // running_mean 1.7x its tolerance. Lines are now shifted by their plain mean.
    const n = 96, c = 8;
    const x = fill(
      n,
      c,
      9,
      (r, j, u) => r % 32 === 0 && j % 2 === 0 ? 1e8 * (1 + u / 4) : -2.5e6 + 1e3 * u,
    );
    await assertMatches({ n, c, x, dy: fill(n, c, 10, (_r, _j, u) => u) });
  },
);

webgpuTest(
  "WebGPU: SwitchNorm1d with x ~1e-19, gamma ~1e33 and dy ~3e38 keeps the var_weight gradient",
  async () => {
    // gv (var_k - var) of an eps-dominated mix fell below float32's normal range before gamma's
    // exponent was applied: the var_weight gradient was 0 where the reference has ~2e20.
    const n = 6, c = 5;
    const x = fill(n, c, 3, (_r, _j, u) => u * 1e-19);
    const dy = fill(n, c, 4, (_r, _j, u) => u * 3e38);
    const weight = Float32Array.from({ length: c }, (_, j) => 1e33 * (0.6 + 0.2 * j));
    const { want, got } = await runBoth(step({ n, c, x, dy, weight }), "webgpu");
    assertOutputsClose(got, want, { grads: GRAD, y: Y });
  },
);

webgpuTest(
  "WebGPU: SwitchNorm1d with a column of ~1e-19 among ordinary ones matches the reference",
  async () => {
    // The column's statistics are scaled while each sample's LN statistics are not, so the
    // gradient sums of its elements carried no exponent and sn1d_bwd_dx read the scaled
    // statistics as if unscaled: dx ~50x off.
    const n = 3, c = 2;
    const x = fill(n, c, 124, (_r, j, u) => j === 0 ? 1 + u * 0.7 : (1 + u) * 3e-19);
    await assertMatches({ n, c, x, dy: fill(n, c, 125, (_r, _j, u) => u) });
  },
);

webgpuTest(
  "WebGPU: SwitchNorm1d evaluation on an infinite running_var gives the reference's dx",
  async () => {
    // A training batch with a column spread over +-1e28 makes running_var +Infinity; its
    // evaluation's s is 0, which only the wide dx pass forms, and that pass did not run for
    // such a column: dx ~1e-3 where the reference has 0.
    const n = 2, c = 4;
    const x = fill(n, c, 4, (r, _j, u) => r === 0 ? (2 + u) * 3e28 : 1 + u);
    const xEval = fill(n, c, 5, (r, _j, u) => r === 0 ? (2 + u) * 1e28 : 1 + u);
    const weight = new Float32Array(c).fill(1e16);
    await assertMatches({ n, c, x, dy: fill(n, c, 6, (_r, _j, u) => u), xEval, weight });
  },
);

webgpuTest(
  "WebGPU: SwitchNorm1d keeps a subnormal running_var for its evaluation (eps 0)",
  async () => {
    // A batch variance of ~1e-42 makes running_var subnormal (0.003 of it); the GPU wrote 0,
    // and an evaluation with eps 0 whose LN variance is ~1e-50 then divided by the wrong
    // variance: y ~40x off.
    const n = 3, c = 2;
    const x = fill(n, c, 11, (_r, j, u) => j === 0 ? 1 + u : (1.5 + u) * 2e-21);
    const xEval = fill(
      n,
      c,
      12,
      (r, j, u) => r === 0 ? (j === 0 ? 1.5e-25 : 1e-45) : j === 0 ? 1 + u : 2e-21,
    );
    await assertMatches({
      n,
      c,
      eps: 0,
      x,
      xEval,
      dy: fill(n, c, 13, (_r, _j, u) => u),
      logits: [-1.5, 1.6, 1.5, -1.9],
    });
  },
);

webgpuTest(
  "WebGPU: SwitchNorm1d with subnormal dy and gamma / std ~1e54 matches the reference",
  async () => {
    // dy ~3e-43 is subnormal (a few significant bits); the products gamma' s dy formed from it
    // stayed subnormal and lost the rest (or were flushed): dx ~1e4x its tolerance, where
    // gamma / std ~1e54 makes dx ~1e12. Such dy now takes units of its own.
    const n = 4, c = 8;
    const x = fill(n, c, 14, (_r, _j, u) => (1 + u) * 1e-20);
    const dy = fill(n, c, 15, (_r, _j, u) => u * 3e-43);
    const weight = new Float32Array(c).fill(1.2e34);
    await assertMatches({ n, c, eps: 2 ** -126, x, dy, weight });
  },
);

webgpuTest(
  "WebGPU: SwitchNorm1d gradient sums of a column with |dy| beyond 2^40 keep its ordinary rows",
  async () => {
    // Column 2: one row's dy (3e12) is summed in units of 2^128 (dy and gamma ~8e25 kept apart),
    // another's (1.4e11) as plain float32 (gm ~5e34). Aligning the plain sum by a factor
    // pow2(-128), which flushes to 0, dropped it: dx of the column ~4e4x its tolerance.
    const n = 17, c = 3;
    const x = fill(n, c, 16, (r, j, u) => r === 5 && j === 2 ? 1.15e-25 : 1000 + u);
    const dy = new Float32Array(n * c);
    dy[13 * c + 2] = -1.4e11;
    dy[16 * c + 2] = -3.04e12;
    const weight = new Float32Array([1, 1, -8.38e25]);
    await assertMatches({ n, c, eps: 0, x, dy, weight, logits: [-1.86, 1.3, -1.43, 1.59] });
  },
);

webgpuTest(
  "WebGPU: SwitchNorm1d with gamma ~1e-36 and a sample of ~1e35 keeps the logit gradients",
  async () => {
    // gamma's exponent (-120) pushed the dot products of the wide sample below float32's
    // normal range: the mean_weight gradient was 25% off.
    const n = 17, c = 20;
    const x = fill(n, c, 17, (r, _j, u) => u * (r === 9 ? 1.5e35 : 1));
    const dy = fill(n, c, 18, (r, _j, u) => u * (r === 9 ? 1.5e35 : 1));
    const weight = Float32Array.from({ length: c }, (_, j) => 7.9e-37 * (0.5 + (j % 7) / 7));
    await assertMatches({ n, c, eps: 0, x, dy, weight, logits: [-0.42, 0.87, 0.22, -1.56] });
  },
);

webgpuTest(
  "WebGPU: SwitchNorm1d whose dL/dvar of an element is ~1e-39 before gamma's 2^111 matches the reference",
  async () => {
    // s ~4e-8 and dy ~3e-24 make gv ~2e-39 where gamma 4e33 brings it to ~5e-6, and its LN term
    // (~270) cancels another. Once the gradient sums aligned their units exactly (the case
    // above), this gv, formed below float32's normal range, made dx ~200 where the reference
    // has ~0; gv is now a mantissa with an exponent of its own. (A guard of that change: main
    // passed it by dropping both terms.)
    const n = 8, c = 2;
    const x = fill(n, c, 19, (r, j, u) => r === 7 && j === 0 ? 5.53e7 : 1000 + u);
    const dy = new Float32Array(n * c);
    dy[7 * c + 1] = 3.2e-24;
    const weight = new Float32Array([1, 4.29e33]);
    await assertMatches({ n, c, eps: 0, x, dy, weight, logits: [0.49, -0.98, 0.95, 0.97] });
  },
);

/**
 * y within Y, and dx and the parameter gradients within GRAD_SCALED of the size of their float32
 * terms (tests/_term_scales.ts), of a training step of `k` against the reference's.
 */
async function assertMatchesToScale(k: Case): Promise<void> {
  const { want, got } = await runBoth(step(k), "webgpu");
  const [m0, m1, v0, v1] = k.logits ?? [0.3, -0.2, -0.5, 0.4];
  const scales = termScales({
    layout: "1d",
    n: k.n,
    c: k.c,
    m: 1,
    eps: k.eps ?? 1e-5,
    usingBN: true,
    training: true,
    x: k.x,
    dy: k.dy,
    weight: k.weight ?? new Float32Array(k.c).fill(1),
    bias: Float32Array.from({ length: k.c }, (_, i) => 0.1 * (i % 3)),
    meanLogits: [m0, m1],
    varLogits: [v0, v1],
  });
  assertOutputsClose(got, want, { y: Y, ...gradsToScale(scales) });
}

for (const big of [6e22, 1e7]) {
  webgpuTest(
    `WebGPU: SwitchNorm1d with a column of ${big} among columns of -1e4 and BN-heavy logits keeps the other columns' y and dgamma`,
    async () => {
      // The groups' means are written re-centred (hi = f32(mu)), and the mix took LN's hi as
      // its anchor: with BN carrying the mean weight (logits 0, 22), the mixed mean's lo rounded
      // to the ulp of the sample's mean (~2e-1 of the dominating column), so x - mu of the
      // ordinary columns came out exactly 0: y = beta, the weight gradient 0 where the reference
      // has ~1e-2 (~34x GRAD_SCALED), the var_weight gradient 1e-10 where it has 6e-3 (6e22:
      // scaled statistics, wide_map; 1e7: in float32's range, mix_first / mix_add). The mix is
      // now anchored at the heavier term.
      const n = 2, c = 3, random = seededRandom(170);
      const scales = [1, big, 1];
      const x = Float32Array.from(
        { length: n * c },
        (_, i) => (-1e4 + (random() * 2 - 1)) * scales[i % c],
      );
      const dy = Float32Array.from({ length: n * c }, () => random() * 2 - 1);
      await assertMatchesToScale({ n, c, x, dy, logits: [0, 22, 0, 37.7] });
    },
  );
}

/**
 * An evaluation on a loaded `running_var` of 2.8e-45 beside samples whose features all repeat
 * one value of ~1e15 (LN variance 0), eps 1e-5: the var_weight gradient sums dL/dvar times
 * var_k - var, here the BN variance alone (~1e-24 in the reference). WebGPU formed those
 * differences in the unit of the samples' means (2^50), where 2.8e-45 is 0, wrote the running
 * variance flushed to 0 in its group's unit (sqrt(eps)'s), and kept the variance dots in one
 * unit with the mean dots (~2e16): var_weight's gradient was 0.
 */
function subnormalRunningVarDots(): LayerCall {
  const n = 4, c = 2;
  const x = fill(n, c, 19, (r) => 6.4e14 * (1 + 0.1 * r));
  const dy = fill(n, c, 20, (_r, _j, u) => u);
  const state = {
    weight: new Float32Array([1.5, 0.7]),
    bias: new Float32Array([0.3, 0.1]),
    mean_weight: new Float32Array([2.1, 1.6]),
    var_weight: new Float32Array([2.87, 2.07]),
    running_mean: new Float32Array([-174639.23, 5]),
    running_var: new Float32Array([2.8e-45, 2.8e-45]),
  };
  const options = { eps: 1e-5 };
  return { layer: "1d", shape: [n, c], options, state, training: false, x, dy, scales: true };
}

webgpuTest(
  "WebGPU: SwitchNorm1d var_weight's gradient on a running_var of 2.8e-45 beside constant samples of ~1e15 matches the reference",
  async () => {
    const { want, got } = await runBoth(subnormalRunningVarDots(), "webgpu");
    const y = { tol: Y_SCALED, scale: want.scales!.y };
    assertOutputsClose(got, want, { y, ...gradsToScale(want.scales) });
  },
);

webgpuTest(
  "WebGPU: SwitchNorm1d with a var_weight of ~4e-44 (logits 100 apart) matches the reference",
  async () => {
    // Feature 1 repeats 1e9 in every sample (BN variance 0), so its mixed variance is the LN
    // variance (~2.5e17) times softmax(var_weight)'s LN weight of 3.7e-44: a float32 subnormal
    // with 5 significant bits (~1.5% off: y ~0.8% off), or 0 where a GPU flushes it. Such a
    // weight now goes to the shaders as a mantissa and exponent factors (Params.wvar_f1/f2).
    const n = 4, c = 2;
    const x = fill(n, c, 21, (_r, j, u) => j === 1 ? 1e9 : u * 1e-6);
    const dy = fill(n, c, 22, (_r, _j, u) => u);
    await assertMatchesToScale({ n, c, eps: 0, x, dy, logits: [0.3, -0.2, -100, 0] });
  },
);

for (const [std, gamma, dy] of [[1e12, 1e-6, 1e-15], [1e10, 1e-6, 1e-20], [1e12, 1e-6, 1e-13]]) {
  webgpuTest(
    `WebGPU: SwitchNorm1d samples of std ${std} under gamma ${gamma} with dy ${dy} keep dx and the var_weight gradient`,
    async () => {
      // gv = -0.5 s^2 gamma dy xhat lay below float32's normal range (s^2 gamma dy ~1e-45 at
      // 1e12, 1e-6, 1e-15) while its products with the variances (~1 / s^2) are of the size of
      // gamma dy: the hot pass's float32 gv lost them (var_weight's gradient 960x, dx 2000x
      // GRAD_SCALED). Such elements now take the wide passes (gv_is_tiny).
      const n = 8, c = 5, random = seededRandom(1);
      const x = Float32Array.from({ length: n * c }, () => (random() * 2 - 1) * std);
      const d = Float32Array.from({ length: n * c }, () => (random() * 2 - 1) * dy);
      const weight = new Float32Array(c).fill(gamma);
      await assertMatchesToScale({ n, c, x, dy: d, weight, logits: [0.2, -0.3, 0.5, -0.4] });
    },
  );
}

// An evaluation whose y lies near float32's largest value under |gamma| < 1: the wide
// normalize formed t = y 2^-g (gamma's mantissa in [1, 2)), which passed float32's range
// where y does not: y +Infinity for 2.0e38 (gamma 0.72) and for 1.5e38 (gamma 1e-20); and
// t 2^g before a beta of the other sign (gamma 2: wide_y's plain order for g < 2).
for (
  const [runningMean, gamma, beta] of [
    [-1.5e-2, 0.72, 0.5],
    [-2.5e-2, 0.72, 0.5],
    [-8e17, 1e-20, 0.5],
    // beta of the other sign brings y back into float32's range (an attack: +Infinity).
    [-2.5e-2, 1, -3e38],
    [-4e-2, 0.72, -3e38],
    [-1.5e-2, 2, -3.3e38],
  ]
) {
  webgpuTest(
    `WebGPU: SwitchNorm1d y near float32's largest value under gamma ${gamma}, beta ${beta} stays finite`,
    async () => {
      const c = 8;
      const x = Float32Array.from(
        { length: 2 * c },
        (_, i) => (i % 2 ? 1 : -1) * (1 + (i % c)) * 1e-41,
      );
      const call: LayerCall = {
        layer: "1d",
        shape: [2, c],
        options: { eps: 0 },
        state: {
          weight: new Float32Array(c).fill(gamma),
          bias: new Float32Array(c).fill(beta),
          mean_weight: Float32Array.of(-40, 40),
          var_weight: Float32Array.of(40, -40),
          running_mean: new Float32Array(c).fill(runningMean),
          running_var: new Float32Array(c).fill(0),
        },
        partial: true,
        training: false,
        x,
        dispose: true,
      };
      const { want, got } = await runBoth(call, "webgpu");
      assertOutputsClose(got, want, { y: Y });
    },
  );
}

webgpuTest(
  "WebGPU: SwitchNorm1d logit gradients whose dot products pass float32's range on an element that is not factor-wide match the reference",
  async () => {
    // Variance logits 56 apart (LN's weight ~5e-25) over a running_var of 2.7e-10 and an LN
    // variance of ~1e8 under gamma 2e17: gamma / std ~2^73 keeps the element on the hot path,
    // where gv ~1e35 fits float32 but its dot gv (var_LN - var_BN) ~1e43 does not: `var_weight`'s
    // gradient came out NaN and +Infinity where the reference has finite values
    // (tests/fuzz/sn1d_webgpu.ts --wide seed 845). Such elements now take wide_element.
    const state = {
      weight: new Float32Array([2e17, 1.5e17, 1e17]),
      bias: new Float32Array([0.3, -0.2, 0.1]),
      mean_weight: new Float32Array([-24.5, -37.6]),
      var_weight: new Float32Array([-31.4, 24.6]),
      running_mean: new Float32Array([0.01, -0.02, 0.03]),
      running_var: new Float32Array([2.7e-10, 4e-10, 1e-9]),
    };
    const x = new Float32Array([-2e4, 0.03, 0.5, -3e3, -0.4, 0.2]);
    const dy = new Float32Array([0.5, -0.3, 0.7, -0.6, 0.2, 0.9]);
    const call: LayerCall = {
      layer: "1d",
      shape: [2, 3],
      options: { eps: 0 },
      state,
      training: false,
      x,
      dy,
      scales: true,
    };
    const { want, got } = await runBoth(call, "webgpu");
    for (const [key, values] of Object.entries(want.grads)) {
      if (!values.every(Number.isFinite)) throw new Error(`the reference's ${key} is not finite`);
    }
    const y = { tol: Y_SCALED, scale: want.scales!.y };
    assertOutputsClose(got, want, { y, ...gradsToScale(want.scales) });
  },
);

// A mixed variance that a variance weight below float32's normal range takes below it: the
// wide backward passes (wide_element, sn1d_bwd_wide_dx) formed var + eps as a plain float32 mix,
// whose weighted term flushed to 0, and took the mix for a std of 0 (attack fuzzer seed 1878: an
// evaluation of x 1e10 under eps 0, running_var 1e-30 and 1.4e-45 under a BN variance weight of
// ~2.7e-76, and every sample's LN variance 0: dx, dgamma and the logit gradients NaN where the
// reference has ~1e-8 and ~100). They take wide_map_1d there now (mix_var_below_normal).
rangeTests(
  "SwitchNorm1d's backward keeps a mixed variance that a tiny variance weight takes below float32's normal range",
  async (backend) => {
    const cases: [string, LayerCall][] = [
      ["an evaluation on tiny running variances (attack fuzzer seed 1878)", {
        layer: "1d",
        shape: [2, 2],
        options: { eps: 0, momentum: 1 },
        state: {
          weight: new Float32Array([1e-20, 0]),
          bias: new Float32Array([1.401e-45, -3e38]),
          mean_weight: new Float32Array([0, 1.3]),
          var_weight: new Float32Array([0, -174]),
          running_mean: new Float32Array([0.5, 1]),
          running_var: new Float32Array([1e-30, 1.401e-45]),
        },
        partial: true,
        training: false,
        x: new Float32Array(4).fill(1e10),
        dy: new Float32Array([-1.423e-41, -5.902e-41, -6.32e-41, -7.64e-41]),
        scales: true,
      }],
      ["a training step whose samples are constant rows (LN variance 0) under a BN weight ~1e-50", {
        layer: "1d",
        shape: [4, 3],
        options: { eps: 0 },
        state: {
          mean_weight: new Float32Array([0.2, -0.1]),
          var_weight: new Float32Array([0, -115]),
        },
        partial: true,
        training: true,
        x: Float32Array.from({ length: 12 }, (_, i) => [0.5, -1.25, 2, 0.75][Math.floor(i / 3)]),
        dy: Float32Array.from({ length: 12 }, (_, i) => Math.sin(i + 1)),
        scales: true,
      }],
    ];
    for (const [name, call] of cases) {
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want, name);
    }
  },
);

// WASM's forward kept the mixed mean's rounding (err of base + rest, `CARRY` in wasm/src/oned.rs)
// only where the mean passed 2^16 of the std, on the reasoning that y's tolerance is then 2e-5
// gamma. Under gamma 3e38 the sample's other y are infinities and a y near beta is held to its own
// size: means of 1 (the running mean, weight ~1) and ~0.25 (LN's, weight e^-87.5 ~ 1e-38) put
// x - mu of x = 1 at ~7.5e-39, which float64's mean 1 + rest rounds away: y 0 for 6.35 (helper-101).
// The gate counts max(1, |gamma|) now.
rangeTests(
  "SwitchNorm1d keeps the mixed mean's rounding where a huge gamma makes the sample's other y infinities",
  async (backend) => {
    const call: LayerCall = {
      layer: "1d",
      shape: [1, 4],
      options: { eps: 1e-5 },
      state: {
        weight: new Float32Array(4).fill(3e38),
        mean_weight: new Float32Array([-87.5, 0]),
        running_mean: new Float32Array(4).fill(1),
        running_var: new Float32Array(4),
      },
      partial: true,
      training: false,
      x: new Float32Array([1, 1e-30, -1e-30, 2e-30]),
      dy: new Float32Array([0.5, -0.25, 1, 0.75]),
      scales: true,
    };
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);

// A wide element's mean dots (shaders/sn1d_bwd_element.wgsl: wide_element) sit in a unit
// 2^(D + k) of dy's unit D, with k, meant to bring the largest near 2^100, held at -120 or
// above: under a gamma of -1e-40 (2^-133, subnormal) or 1e-37 with eps 1, beside means ~1e-38
// and |dy| ~2e38 (D ~127), a dot of ~2^-122 lay ~2^-130 in that unit and flushed, and
// `mean_weight`'s gradient came out 0 for -+5.7e-37 (corner fuzzer seed 4967; 8 of 48 such
// calls, training and evaluation, dy 1e30 to 3.4e38, failed). k now goes down to -300.
rangeTests(
  "SwitchNorm1d keeps mean dots of a tiny gamma under huge dy (a dot unit below 2^-120)",
  async (backend) => {
    const x = new Float32Array([
      4.18e-38,
      -1.37e-38,
      4.86e-38,
      -1.08e-38,
      -4.15e-37,
      1.5e-38,
      9.74e-38,
      -6.55e-38,
    ]);
    const call = (gamma: number, eps: number, d: number, training: boolean): LayerCall => ({
      layer: "1d",
      shape: [4, 2],
      options: { eps },
      state: {
        weight: new Float32Array([gamma, 1]),
        mean_weight: new Float32Array([0, 0]),
        var_weight: new Float32Array([0, 0]),
        running_mean: new Float32Array([-3e-38, 2e-38]),
        running_var: new Float32Array([1e-40, 1e-40]),
      },
      partial: true,
      training,
      x,
      dy: new Float32Array([-d, 2e-40, -d, -3e-39, d, -7e-39, -d, 1.8e-39]),
      scales: true,
    });
    const cases: [string, LayerCall][] = [
      ["gamma -1e-40, training", call(-1e-40, 1e-5, 2e38, true)],
      ["gamma -1e-40, evaluation", call(-1e-40, 1e-5, 2e38, false)],
      ["gamma 1e-37, eps 1, dy 3.4e38", call(1e-37, 1, 3.4e38, true)],
      ["gamma 1e-37, eps 1, evaluation", call(1e-37, 1, 2e38, false)],
      // The seed's own call.
      ["corner fuzzer seed 4967", {
        layer: "1d",
        shape: [4, 2],
        options: { eps: 1e-5 },
        state: {
          weight: new Float32Array([-9.99994610111476e-41, 1]),
          mean_weight: new Float32Array([-1e30, -1e30]),
          var_weight: new Float32Array([0, -138.6294403076172]),
          running_mean: new Float32Array([-3e38, 1e30]),
          running_var: new Float32Array([1.401298464324817e-45, 1.401298464324817e-45]),
        },
        partial: true,
        training: true,
        x: new Float32Array([
          4.1813305640631215e-38,
          -1.3731561872657818e-38,
          4.858347738403771e-38,
          -1.0765255448316508e-38,
          -4.153458513399947e-37,
          1.5012997470239683e-38,
          9.738318072631459e-38,
          -6.545928115873833e-38,
        ]),
        dy: new Float32Array([
          -2e38,
          2.1584760765380887e-40,
          -2e38,
          -3.060262085075824e-39,
          2e38,
          -7.4429169192488e-39,
          -2e38,
          1.8369901828526892e-39,
        ]),
        scales: true,
      }],
    ];
    for (const [name, c] of cases) {
      const { got, want } = await runBoth(c, backend);
      assertRangeChecks(c, got, want, name);
    }
  },
);

// An evaluation whose x lies on its mixed mean to within float32's ulp of the mix's lo: equal
// mean weights (0.5, exact) over a sample [-3e38, -2e38, -1e38] (LN mean -2e38, its lo 3.4e30)
// and a running_mean of -2e20 put mu at -1e38 - 1.7e30. sn1d_wide_normalize formed x - mu from
// one lo, 0.5 (hi_bn - hi_ln) + 0.5 lo_ln, which rounds to the ulp of the first term and
// dropped the second: x - mu 0 for x = -1e38, y = beta 3e38 where the reference's y is 2.6e53
// (+Infinity) under gamma 3e38 (attack fuzzer seed 5008). It adds the two parts apart now
// (sn1d_mix.wgsl, wide_d_1d).
rangeTests(
  "SwitchNorm1d's wide y keeps x - mu where x lies on a mixed mean of two distant terms",
  async (backend) => {
    const call: LayerCall = {
      layer: "1d",
      shape: [4, 3],
      options: { eps: 1e-30, momentum: 0.9 },
      state: {
        weight: new Float32Array([1.401298464324817e-45, 2e-39, 3e38]),
        bias: new Float32Array([1, -3e38, 3e38]),
        mean_weight: new Float32Array([-1e30, -1e30]),
        var_weight: new Float32Array([-103.2789306640625, 1.2999999523162842]),
        running_mean: new Float32Array([-2e20, -3e38, -2e20]),
        running_var: new Float32Array([1e30, 1e-30, 1]),
      },
      partial: true,
      training: false,
      x: new Float32Array([
        -3e38,
        -2e38,
        -1e38,
        0,
        1e38,
        2e38,
        3e38,
        -2.5e38,
        -1.5e38,
        -5e37,
        5e37,
        1.5e38,
      ]),
      dy: new Float32Array(12),
      scales: true,
    };
    const { got, want } = await runBoth(call, backend);
    // y[2] is +Infinity in the reference (2.6e53 before rounding), beta's 3e38 fails.
    if (want.y[2] !== Infinity) throw new Error(`reference y[2] ${want.y[2]}`);
    assertRangeChecks(call, got, want, "attack fuzzer seed 5008");
  },
);
