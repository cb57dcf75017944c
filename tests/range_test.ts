/**
 * Issue 10, point 1: finite float32 inputs over the whole range. The shared vectors hold the
 * PyTorch examples (tests/vectors/*range*); these tests add what vectors cannot: eps values the
 * layer refuses, and, on WASM and WebGPU against the float64 reference backend, calls that mix
 * rows of every kind (huge, ordinary, tiny) so that the wide-row paths run beside the ordinary
 * ones (WASM's four-row sweeps, WebGPU's gated rescue passes), rows longer than one segment
 * (WebGPU merges segments of 1024 or 4096 floats), both layouts, dy near float32's limit, the
 * evaluation forward on the running buffers such data leave, and SyncSN's CPU merge. Where the
 * data are scaled, dx and the gradients are held to float32 rounding of the size of the terms
 * they sum (GRAD_SCALED, tests/_term_scales.ts), which the cancellation examples need.
 */
import assert from "node:assert/strict";
import { SwitchNorm1d, SwitchNorm2d } from "../mod.ts";
import type { SyncGroup } from "../mod.ts";
import { seededRandom } from "../examples/_data.ts";
import { assertClose } from "./_close.ts";
import { GRAD, RUNNING, Y, Y_SCALED } from "./_tolerances.ts";
import {
  assertOutputsClose,
  type Backend,
  gradsToScale,
  type LayerCall,
  rangeTest,
  rangeTests,
  runBoth,
  runCall,
} from "./_range_compare.ts";

Deno.test("an eps between 0 and float32's smallest normal number is refused, naming it", () => {
  for (const eps of [1e-45, 1e-40, 1e-39, 2 ** -127]) {
    assert.throws(
      () => new SwitchNorm2d(2, { eps }),
      (e: unknown) =>
        e instanceof RangeError && /eps must be 0 or at least 2\^-126/.test(e.message) &&
        e.message.includes(`got ${eps}`),
    );
    assert.throws(() => new SwitchNorm1d(2, { eps }), RangeError);
  }
  assert.equal(new SwitchNorm2d(2, { eps: 0 }).eps, 0);
  assert.equal(new SwitchNorm2d(2, { eps: 2 ** -126 }).eps, 2 ** -126);
});

Deno.test("an eps above float32's largest number is refused, naming it", () => {
  // 1e39 is +Infinity in float32: WebGPU gave y = 0 where the float64 reference has 1.7e13.
  for (const eps of [1e39, 3.5e38, Number.MAX_VALUE]) {
    assert.throws(
      () => new SwitchNorm2d(2, { eps }),
      (e: unknown) =>
        e instanceof RangeError && /eps must be at most float32's largest number/.test(e.message) &&
        e.message.includes(`got ${eps}`),
    );
    assert.throws(() => new SwitchNorm1d(2, { eps }), RangeError);
  }
  assert.equal(new SwitchNorm2d(2, { eps: 3.4028234663852886e38 }).eps, 3.4028234663852886e38);
});

/**
 * SwitchNorm2d without BN (so that each sample's rows share a scale through LN) on [4, 3, 5, 7]
 * with eps 0: samples scaled by 1e19, 1, 1e-22 and 1, so that rows of 35 floats (the four-row
 * sweeps) mix wide and ordinary rows within a group. dy is scaled like x, so dx is O(1).
 */
function mixedScales(): LayerCall {
  const shape = [4, 3, 5, 7], per = 3 * 35, sampleScales = [1e19, 1, 1e-22, 1];
  const random = seededRandom(1010);
  const x = new Float32Array(4 * per), dy = new Float32Array(4 * per);
  for (let i = 0; i < x.length; i++) {
    const s = sampleScales[Math.floor(i / per)];
    x[i] = (random() * 2 - 1 + 0.3) * s;
    dy[i] = (random() * 2 - 1) * s;
  }
  const state = {
    weight: new Float32Array([0.8, 1.1, 1.3]),
    bias: new Float32Array([0.1, -0.2, 0.3]),
    mean_weight: new Float32Array([0.3, -0.4]),
    var_weight: new Float32Array([-0.2, 0.5]),
  };
  const options = { eps: 0, usingBN: false };
  return { layer: "2d", shape, options, state, training: true, x, dy, scales: true };
}

rangeTests(
  "rows of std 1e19, 1 and 1e-22 in one call match the float64 reference",
  async (backend) => {
    const { want, got } = await runBoth(mixedScales(), backend);
    // dx and the gradients to float32 rounding of the size of their terms, which range over
    // 1e-22 to 1e19 here (GRAD_SCALED).
    assertOutputsClose(got, want, { y: Y, ...gradsToScale(want.scales) });
  },
);

/**
 * Gradients whose float32 terms cancel by orders of magnitude: eps 0, gamma ~1.5, x uniform over
 * +-std with std 1e-20 or 1e-25, dy = (uniform + 0.3) * 1e12 or 1e15 (a mean over every row), so
 * that dy gamma / std is ~1e32 (1e40: dx then passes float32's range) while an element of dx, or
 * a logit gradient, is a difference orders of magnitude smaller. The WebGPU examples (seeds
 * picked where its float32 sums are furthest off: dx 9.9x, 1.3x, mean_weight 21x and var_weight
 * 7.2x the plain GRAD tolerance) are off by at most 2.4e-7 of the term scale, as PyTorch float32
 * is on the same inputs (NUMERICS.md); WASM computes such rows in float64.
 */
const CANCELLING = [
  { layer: "1d", shape: [40, 10], std: 1e-20, dyScale: 1e12, seed: 1 },
  { layer: "2d", shape: [4, 3, 5, 7], std: 1e-20, dyScale: 1e12, seed: 1 },
  { layer: "2d", shape: [2, 4, 8, 8], std: 1e-25, dyScale: 1e15, seed: 24 },
  { layer: "2d", shape: [2, 4, 8, 8], std: 1e-25, dyScale: 1e15, seed: 15 },
] as const;

interface ScaledCase {
  readonly layer: "1d" | "2d";
  readonly shape: readonly number[];
  readonly std: number;
  readonly dyScale: number;
  readonly seed: number;
  /** gamma of channel 0 (channel i: gamma (1 + i / 15)); 1.5 if not given. */
  readonly gamma?: number;
}

function cancelling(kase: ScaledCase): LayerCall {
  const { shape, std, dyScale, seed } = kase, gamma = kase.gamma ?? 1.5;
  const random = seededRandom(seed);
  const size = shape.reduce((a: number, b: number) => a * b, 1), c = shape[1];
  const x = Float32Array.from({ length: size }, () => (random() * 2 - 1) * std);
  const dy = Float32Array.from({ length: size }, () => (random() * 2 - 1 + 0.3) * dyScale);
  const state = {
    weight: Float32Array.from({ length: c }, (_, i) => gamma * (1 + i / 15)),
    bias: new Float32Array(c),
    mean_weight: new Float32Array([0.3, -0.4, 0.2].slice(0, kase.layer === "1d" ? 2 : 3)),
    var_weight: new Float32Array([-0.2, 0.5, 0.1].slice(0, kase.layer === "1d" ? 2 : 3)),
  };
  return {
    layer: kase.layer,
    shape,
    options: { eps: 0 },
    state,
    partial: true,
    training: true,
    x,
    dy,
    scales: true,
  };
}

rangeTests(
  "gradients whose float32 terms cancel by orders of magnitude (std 1e-20 with dy 1e12, std 1e-25 with dy 1e15) match the reference to float32 rounding of their terms",
  async (backend) => {
    for (const kase of CANCELLING) {
      const { want, got } = await runBoth(cancelling(kase), backend);
      const what = `SwitchNorm${kase.layer} ${JSON.stringify(kase.shape)}, seed ${kase.seed}`;
      assertOutputsClose(got, want, { what, y: Y, ...gradsToScale(want.scales) });
    }
  },
);

/**
 * Rows whose per-row constants fall below float32's normal range although the terms they make
 * fit it: a std of 1e15 with dy 1e-20 makes dx's (x - mu) coefficient ~1e-50 (0 in float32) and
 * its terms ~1e-35; a std of 1e-17 with dy 1e-28 makes every product dy (x - mu) ~1e-45 (float32
 * subnormals with a digit or none) while dx is ~1e-11; gamma 1e-28 over a std of 1e17 makes the
 * normalize scale ~1e-45. WASM's dx was off by up to 60% of its terms (the property test's shrunk
 * case: std 1e14 with dy 1e-14 and gamma 1e3, 1870x the tolerance); such rows are wide now
 * (`wasm/src/wide.rs` TINY, `nd_grad.rs` TINY_SUM).
 */
const TINY_CONSTANTS: readonly ScaledCase[] = [
  { layer: "2d", shape: [1, 1, 5, 4], std: 1e14, dyScale: 1e-14, seed: 5, gamma: 1e3 },
  { layer: "2d", shape: [1, 5, 3, 3], std: 1e15, dyScale: 1e-20, seed: 5, gamma: 1 },
  { layer: "2d", shape: [2, 3, 4, 5], std: 1e-17, dyScale: 1e-28, seed: 6, gamma: 1 },
  { layer: "2d", shape: [2, 3, 4, 5], std: 1e-15, dyScale: 1e-30, seed: 7, gamma: 1e10 },
  { layer: "2d", shape: [2, 3, 4, 5], std: 1e17, dyScale: 1e-3, seed: 8, gamma: 1e-28 },
];

rangeTests(
  "rows whose constants or products fall below float32's normal range (std 1e15 with dy 1e-20, std 1e-17 with dy 1e-28) match the reference to float32 rounding of their terms",
  async (backend) => {
    for (const kase of TINY_CONSTANTS) {
      const { want, got } = await runBoth(cancelling(kase), backend);
      const what = `SwitchNorm2d ${
        JSON.stringify(kase.shape)
      }, std ${kase.std}, dy ${kase.dyScale}`;
      const y = { tol: Y_SCALED, scale: want.scales!.y };
      assertOutputsClose(got, want, { what, y, ...gradsToScale(want.scales) });
    }
  },
);

rangeTests(
  "backward with dy near float32's limit (row sums overflow float32) matches the reference",
  async (backend) => {
    const shape = [2, 3, 7, 7], len = 2 * 3 * 49;
    const random = seededRandom(5);
    const x = Float32Array.from({ length: len }, () => random() * 2 - 1);
    const dy = Float32Array.from({ length: len }, () => (random() * 2 - 1) * 3e38);
    const { want, got } = await runBoth({ layer: "2d", shape, training: true, x, dy }, backend);
    // Finite values near float32's largest value (dy gamma / std passes it) stay finite on both
    // backends (tests/dx_near_float32_max_test.ts).
    assertOutputsClose(got, want, { dx: GRAD, grads: GRAD });
  },
);

/** The parameters a training step loads: C channels, k logits. */
function stepState(c: number, k: number) {
  return {
    weight: Float32Array.from({ length: c }, (_, i) => 0.7 + 0.1 * (i % 5)),
    bias: Float32Array.from({ length: c }, (_, i) => 0.2 * (i % 3) - 0.2),
    mean_weight: new Float32Array([0.3, -0.4, 0.2].slice(0, k)),
    var_weight: new Float32Array([-0.2, 0.5, 0.1].slice(0, k)),
  };
}

/**
 * A layer with a fixed state (stepState; running buffers at their defaults) through one training
 * step (forward, running buffers, backward) on x, dy, then an evaluation forward and backward on
 * xEval.
 */
function stepCase(
  layer: "1d" | "2d",
  shape: number[],
  options: { eps?: number; usingBN?: boolean; sync?: SyncGroup },
  data: { x: Float32Array; dy: Float32Array; xEval: Float32Array },
): LayerCall {
  const k = layer === "1d" || options.usingBN === false ? 2 : 3;
  const state = stepState(shape[1], k);
  return { layer, shape, options, state, partial: true, training: true, running: true, ...data };
}

async function assertMatchesReference(kase: LayerCall, backend: Backend): Promise<void> {
  const want = await runCall(
    { ...kase, options: { ...kase.options, sync: undefined }, scales: true },
    "reference",
  );
  const got = await runCall(kase, backend);
  // dx and the gradients to float32 rounding of the size of their terms (GRAD_SCALED): rows of
  // std 1e19 and 1e-25 give terms of every size.
  assertOutputsClose(got, want, {
    y: Y,
    runningMean: RUNNING,
    runningVar: RUNNING,
    ...gradsToScale(want.scales),
  });
  assertOutputsClose(got.evaluation!, want.evaluation!, {
    suffix: " (evaluation on the running buffers)",
    y: Y,
    ...gradsToScale(want.evaluation!.scales),
  });
}

/**
 * x of `shape` [N, C, ...] whose sample n has mean 0.3 * scale and spread `scales[n]`, dy
 * scaled alike (so dx is O(1) where IN/LN decide the statistics), and a second x for the
 * evaluation forward. `spread` replaces sample 0 channel 0 by values uniform over +-3e38.
 */
function scaledData(shape: number[], scales: number[], seed: number, spread = false, offset = 0.3) {
  const random = seededRandom(seed);
  const len = shape.reduce((a, b) => a * b, 1), per = len / shape[0];
  const inner = per / shape[1];
  const x = new Float32Array(len), dy = new Float32Array(len), xEval = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    const s = scales[Math.floor(i / per)];
    x[i] = (random() * 2 - 1 + offset) * s;
    dy[i] = (random() * 2 - 1) * s;
    xEval[i] = (random() * 2 - 1 + 0.1) * s;
    if (spread && i < inner) {
      x[i] = (random() * 2 - 1) * 3e38;
      dy[i] = (random() * 2 - 1) * 1e37;
      xEval[i] = (random() * 2 - 1) * 3e38;
    }
  }
  return { x, dy, xEval };
}

rangeTests(
  "rows of 9000 floats (several segments) of std 1e19, 1 and 1e-25, eps 0, without BN, match the reference",
  async (backend) => {
    const shape = [3, 2, 90, 100];
    const data = scaledData(shape, [1e19, 1, 1e-25], 11);
    const kase = stepCase("2d", shape, { eps: 0, usingBN: false }, data);
    await assertMatchesReference(kase, backend);
  },
);

rangeTests(
  "rows of 9000 floats with one row spread over +-3e38 and BN (running_var +Infinity) match the reference",
  async (backend) => {
    const shape = [3, 2, 90, 100];
    const data = scaledData(shape, [1, 2, 0.5], 12, true);
    await assertMatchesReference(stepCase("2d", shape, {}, data), backend);
  },
);

rangeTests(
  "short rows where only one sample is huge (1e19) or tiny (1e-30) match the reference, with BN",
  async (backend) => {
    const shape = [4, 3, 5, 7];
    const data = scaledData(shape, [1, 1e19, 1, 1e-30], 13);
    await assertMatchesReference(stepCase("2d", shape, { eps: 0 }, data), backend);
  },
);

rangeTests(
  "SwitchNorm1d with rows of std 1e19, 1 and 1e-22 across several 32 x 32 tiles matches the reference",
  async (backend) => {
    const shape = [40, 70];
    const scales = Array.from({ length: 40 }, (_, n) => n < 10 ? 1e19 : n < 30 ? 1 : 1e-22);
    // Offset 1: BN means of 40 values (float32 sums, as on every in-range call) far from 0.
    const data = scaledData(shape, scales, 14, false, 1);
    await assertMatchesReference(stepCase("1d", shape, { eps: 0 }, data), backend);
  },
);

rangeTests(
  "8192 rows of 4 floats where two samples of 64 are huge or tiny match the reference",
  async (backend) => {
    const shape = [64, 128, 2, 2];
    const scales = Array.from({ length: 64 }, (_, n) => n === 5 ? 1e19 : n === 40 ? 1e-25 : 1);
    const data = scaledData(shape, scales, 17, false, 1);
    const kase = stepCase("2d", shape, { eps: 0, usingBN: false }, data);
    await assertMatchesReference(kase, backend);
  },
);

rangeTests(
  "SwitchNorm1d on 300 x 100 (40 tiles) where three rows are huge or tiny matches the reference",
  async (backend) => {
    const shape = [300, 100];
    const scales = Array.from(
      { length: 300 },
      (_, n) => n === 7 ? 1e19 : n === 150 || n === 299 ? 1e-22 : 1,
    );
    const data = scaledData(shape, scales, 18, false, 1);
    await assertMatchesReference(stepCase("1d", shape, {}, data), backend);
  },
);

rangeTest(
  "webgpu",
  "SwitchNorm1d backward with dy near float32's limit matches the reference",
  async () => {
    const shape = [50, 40];
    const random = seededRandom(15);
    const x = Float32Array.from({ length: 2000 }, () => random() * 2 - 1);
    const dy = Float32Array.from(
      { length: 2000 },
      (_, i) => (random() * 2 - 1) * (i % 7 ? 1 : 3e38),
    );
    const { want, got } = await runBoth({ layer: "1d", shape, training: true, x, dy }, "webgpu");
    assertOutputsClose(got, want, { dx: GRAD, grads: GRAD });
  },
);

rangeTest(
  "webgpu",
  "SyncSN (one replica) merges huge and spread BN statistics as the reference does",
  async () => {
    const solo: SyncGroup = { size: 1, allGather: (v) => Promise.resolve([v]), timeoutMs: 60_000 };
    const shape = [3, 2, 6, 6];
    const data = scaledData(shape, [1e19, 1, 1e-25], 16, true);
    await assertMatchesReference(stepCase("2d", shape, { sync: solo }, data), "webgpu");
  },
);

/**
 * SwitchNorm2d on [4, 4, 5, 7] (rows of 35 floats: the four-row sweeps), eps 0, whose channels
 * leave float32's range in different ways while the float64 results fit: gamma 1e33 over a std
 * of 3e-7 (gamma / std = 3e39), gamma 3e38 with beta -3e38 (gamma xhat passes float32's largest
 * value, y = that + beta does not), gamma 10 over a std of 3e-38, and an ordinary channel;
 * sample 2's dy is ~1e38. y, dx and the gradients must be the float64 reference's, rounded to
 * float32 once (beyond float32's largest: the infinity of the value's sign).
 */
function factorsOutOfRange(training: boolean): LayerCall {
  const shape = [4, 4, 5, 7], m = 35, c = 4;
  const stds = [3e-7, 1, 3e-38, 1];
  const random = seededRandom(2024);
  const x = new Float32Array(4 * c * m), dy = new Float32Array(4 * c * m);
  for (let i = 0; i < x.length; i++) {
    const j = Math.floor(i / m) % c, n = Math.floor(i / (c * m));
    x[i] = (random() * 2 - 1) * stds[j] + (j === 1 ? 0.5 : 0);
    dy[i] = (random() * 2 - 1) * (n === 2 ? 1e38 : 1);
  }
  const state = {
    weight: new Float32Array([1e33, 3e38, 10, 0.9]),
    bias: new Float32Array([0.5, -3e38, 0.1, -0.2]),
    mean_weight: new Float32Array([1.5, -0.5, -1]),
    var_weight: new Float32Array([2, -1, -2]),
    running_mean: new Float32Array([0, 0.5, 0, 0.1]),
    running_var: new Float32Array([1e-13, 0.3, 1e-75, 1.2]),
  };
  return { layer: "2d", shape, options: { eps: 0 }, state, training, x, dy, scales: true };
}

for (const training of [true, false]) {
  rangeTests(
    `rows whose gamma / std, gamma with beta, or dy leave float32's range match the float64 reference (${
      training ? "training" : "evaluation"
    })`,
    async (backend) => {
      const { want, got } = await runBoth(factorsOutOfRange(training), backend);
      // WASM forms such rows in float64 and rounds y once (Y); WebGPU in float32, where y =
      // gamma xhat + beta of 3e38 and -3e38 cancelling to ~5e35 carries float32's rounding of
      // the terms (3.4e-5 of y per ulp of xhat: Y_SCALED of gamma xhat and beta).
      const y = backend === "wasm" ? Y : { tol: Y_SCALED, scale: want.scales!.y };
      assertOutputsClose(got, want, { y, dx: GRAD, grads: GRAD });
    },
  );
}

/**
 * y and dx per channel (`inner` floats per sample each), within float32 rounding of the
 * channel's scale (atol times its largest finite |expected|), and the gradients to GRAD.
 */
function perChannel(channels: number, inner: number) {
  return { y: { tol: Y, channels, inner }, dx: { tol: GRAD, channels, inner }, grads: GRAD };
}

/**
 * y and dx per row of `inner` floats, within float32 rounding of the row's scale (atol times its
 * largest finite |expected|), and the gradients to GRAD.
 */
function perRow(inner: number) {
  return { y: { tol: Y, rows: inner }, dx: { tol: GRAD, rows: inner }, grads: GRAD };
}

/**
 * The same class in layout "1d" (SwitchNorm1d: each element's own mix, tile passes) and in rows
 * longer than one segment (M = 5000: WebGPU's wide passes walk several segments per row). Three
 * calls each: x of std 1e-6 (gamma 1e33 over it: gamma / std ~ 1e39 beyond float32, y ~ 1e33
 * fits), x of std ~1 (gamma +-3e38 with beta -+3e38: (x - mu) gamma / std passes float32's
 * largest value, y fits), the same with x of std 1e-9 (rows WebGPU keeps in scaled units anyway),
 * dy near 3e38 in one sample; and gamma / std ~ 2^79 with dy ~ 7e11 of one sign, where
 * gamma s sum(dy) (dL/dmu of a row of 5000) passes float32 while dx and the gradients fit.
 */
function factorsOutOfRangeLayouts(training: boolean): LayerCall[] {
  const out: LayerCall[] = [];
  const cases = [
    { std: 1e-6, weight: [1e33, -1e33, 10, 0.9], bias: [0.5, 0.25, 0.1, -0.2] },
    { std: 1, weight: [3e38, -3e38, 1e33, 0.9], bias: [-3e38, 3e38, 0.1, -0.2] },
    { std: 1e-9, weight: [3e38, -3e38, 1e33, 0.9], bias: [-3e38, 3e38, 0.1, -0.2] },
    // gamma / std ~ 2^79 (y fits), dy ~ 7e11 of one sign (below 2^40): gamma s sum(dy) passes float32 in
    // rows of 5000 (dL/dmu of the row), dx and the gradients fit
    { std: 1, weight: [6e23, 6e23, 1, 0.9], bias: [0.5, 0.25, 0.1, -0.2], dyScale: 7e11 },
  ];
  for (const { std, weight, bias, dyScale = 1 } of cases) {
    for (const layout of ["1d", "long"] as const) {
      const shape = layout === "1d" ? [6, 4] : [2, 4, 50, 100];
      const size = shape.reduce((a, b) => a * b, 1), c = 4;
      const inner = layout === "1d" ? 1 : 5000;
      const random = seededRandom(layout === "1d" ? 77 : 78);
      const x = new Float32Array(size), dy = new Float32Array(size);
      for (let i = 0; i < size; i++) {
        const n = Math.floor(i / (c * inner));
        const u = random() * 2 - 1, v = random() * 2 - 1;
        if (dyScale === 1) {
          x[i] = u * std + 0.01 * std;
          dy[i] = v * (n === 1 ? 1e38 : 1);
        } else {
          // Spreads that differ by sample and channel (the mixed variances differ by O(1)), dy
          // of one sign partly following x: the gradients are no small differences of float32
          // sums (WebGPU's float32 row sums would then limit them, as for any gamma).
          const spread = (1 + n) * (1 + 0.5 * (Math.floor(i / inner) % c));
          x[i] = u * std * spread + 0.01 * std;
          dy[i] = (1 + 0.3 * u + 0.2 * v) * dyScale;
        }
      }
      const state = {
        weight: new Float32Array(weight),
        bias: new Float32Array(bias),
        mean_weight: new Float32Array(layout === "1d" ? [1, -0.5] : [1.5, -0.5, -1]),
        var_weight: new Float32Array(layout === "1d" ? [0.5, -1] : [2, -1, -2]),
        running_mean: new Float32Array([0, 0.01 * std, 0, -0.01 * std]),
        running_var: new Float32Array([1, 0.5, 2, 1.5].map((v) => v * std * std)),
      };
      const layer = layout === "1d" ? "1d" : "2d";
      out.push({ layer, shape, options: { eps: 0 }, state, training, x, dy });
    }
  }
  return out;
}

for (const training of [true, false]) {
  rangeTests(
    `SwitchNorm1d elements and rows longer than one segment whose gamma / std or gamma with beta leave float32's range match the float64 reference (${
      training ? "training" : "evaluation"
    })`,
    async (backend) => {
      for (const [k, call] of factorsOutOfRangeLayouts(training).entries()) {
        const { want, got } = await runBoth(call, backend);
        const inner = want.y.length === 24 ? 1 : 5000;
        assertOutputsClose(got, want, {
          what: `call ${k}`,
          ...perChannel(4, inner),
        });
      }
    },
  );
}

/**
 * An evaluation call on a loaded running_mean far from the data: x ~ 1 and running_var 1, but
 * running_mean[0] 1e13 .. 1e30 (of either sign), so that y, dx and the gradients are of that
 * size (|x - mu| / std up to 1e30) while the data's own |x| is ordinary. Both layouts, and rows
 * of 16 and of 4900 floats, 4 channels. y, dx and the gradients must be the float64
 * reference's; y and dx per channel to float32 rounding of the channel's scale (an element of
 * channel 0's dx is a difference of terms of ~|mu| / std, see Check in tests/_range_compare.ts).
 */
async function assertFarRunningMean(
  backend: Backend,
  layout: "1d" | "2d",
  shape: readonly number[],
  mean0: number,
): Promise<void> {
  const c = shape[1], count = shape.reduce((a, b) => a * b);
  const x = Float32Array.from({ length: count }, (_, i) => Math.cos(i * 0.37 + 1));
  const dy = Float32Array.from({ length: count }, (_, i) => Math.cos(i * 0.37));
  const runningMean = new Float32Array(c);
  runningMean[0] = mean0;
  const state = { running_mean: runningMean, running_var: new Float32Array(c).fill(1) };
  const call: LayerCall = { layer: layout, shape, state, partial: true, training: false, x, dy };
  const { want, got } = await runBoth(call, backend);
  const inner = shape.slice(2).reduce((a, b) => a * b, 1);
  assertOutputsClose(got, want, {
    suffix: ` (running_mean[0] ${mean0})`,
    ...perChannel(4, inner),
  });
}

for (
  const [layout, shape] of [["2d", [2, 4, 4, 4]], ["2d", [2, 4, 70, 70]], ["1d", [6, 4]]] as const
) {
  rangeTests(
    `an evaluation on a running_mean 1e13 to 1e30 away from data of std 1 matches the float64 reference (${layout} ${
      JSON.stringify(shape)
    })`,
    async (backend) => {
      for (const mean0 of [1e13, 1e21, -1e25, 1e30]) {
        await assertFarRunningMean(backend, layout, shape, mean0);
      }
    },
  );
}

/**
 * Two of a fuzzer's SwitchNorm1d evaluation cases, data over the whole float32 range:
 * tests/_far_mean_case.json ([40, 6]): channel 5 with gamma 1.56e38 on a running_mean of 4.7e37
 * over a std of 1, whose BN term (in the unit of its std) lies over 2^126 below the unit of the
 * wide LN terms it is mixed with; tests/_far_mean_case_2.json ([5, 70], eps 0): running buffers
 * from 1e-41 to 1e30, where the backward's centred means (mean_weight's gradient) must bring such
 * BN terms to the mix's unit too. y, dx and the weight, mean_weight and var_weight gradients must
 * be the float64 reference's, rounded to float32 once (y and dx per channel's scale; beyond
 * float32's largest: the infinity of the value's sign). (The bias gradient of the first case's
 * channel 5 is another fault: left out.)
 */
async function fuzzedFarMean(file: string): Promise<LayerCall> {
  const p = JSON.parse(await Deno.readTextFile(new URL(file, import.meta.url)));
  const state = {
    weight: new Float32Array(p.weight),
    bias: new Float32Array(p.bias),
    mean_weight: new Float32Array(p.mw),
    var_weight: new Float32Array(p.vw),
    running_mean: new Float32Array(p.rm),
    running_var: new Float32Array(p.rv),
  };
  const x = new Float32Array(p.xs), dy = new Float32Array(p.dy);
  return { layer: "1d", shape: p.shape, options: { eps: p.eps }, state, training: false, x, dy };
}

rangeTests(
  "evaluations whose running_mean lies far from the units of the rows it mixes with match the float64 reference (fuzzed cases)",
  async (backend) => {
    for (const file of ["./_far_mean_case.json", "./_far_mean_case_2.json"]) {
      const call = await fuzzedFarMean(file);
      const { want, got } = await runBoth(call, backend);
      const c = call.shape[1]; // layout 1d: element i is of channel i % C
      assertOutputsClose(got, want, {
        what: file,
        ...perChannel(c, 1),
        gradKeys: ["weight", "mean_weight", "var_weight"],
      });
    }
  },
);

for (
  const [layout, shape] of [["2d", [2, 4, 4, 4]], ["2d", [2, 4, 70, 70]]] as const
) {
  rangeTests(
    `an evaluation on a running_mean 1e38 to 3e38 away from data of std 1 matches the float64 reference (${layout} ${
      JSON.stringify(shape)
    })`,
    async (backend) => {
      // |x - mu| ~ 3e37 over a std of 1: sum dy (x - mu) over a row leaves float32.
      for (const mean0 of [1e38, -1e38, 3e38]) {
        await assertFarRunningMean(backend, layout, shape, mean0);
      }
    },
  );
}

/**
 * SwitchNorm2d on [3, 4, 1, 300] whose rows are constant (0.5, 0.75, ...) with eps 2^-126 and
 * var_weight logits [30, -30, -30]: the mixed variance is the LN variance times ~1e-26 (std
 * ~2e-14, s ~ 2^45) while the means mix far apart, and dy ~ 2^40 of one sign: gamma s^3
 * sum(dy (x - mu)) (dL/dvar of a row, ~2^180) leaves float32 where dx and the gradients fit.
 * gamma 1 and 1.99 (a mantissa in [1, 2)), training and an evaluation on loaded buffers.
 */
function tinyMixedStd(training: boolean, gamma: number): LayerCall {
  const [n, c, m] = [3, 4, 300], shape = [n, c, 1, m];
  const random = seededRandom(3);
  const x = new Float32Array(n * c * m), dy = new Float32Array(n * c * m);
  for (let i = 0; i < x.length; i++) {
    x[i] = 0.5 + Math.floor(i / m) * 0.25;
    dy[i] = (1 + 0.05 * random()) * 2 ** 39.99;
  }
  const state = {
    weight: new Float32Array([gamma, gamma, -gamma, 1.5]),
    bias: new Float32Array(c),
    mean_weight: new Float32Array([0, 0.5, 0.2]),
    var_weight: new Float32Array([30, -30, -30]),
    running_mean: new Float32Array([0.1, 0.2, 0.3, 0.4]),
    running_var: new Float32Array([0, 0, 1e-38, 0]),
  };
  return { layer: "2d", shape, options: { eps: 2 ** -126 }, state, training, x, dy };
}

rangeTests(
  "rows whose mixed std is ~1e-26 of their terms' (dL/dvar beyond float32, dx within it) match the float64 reference",
  async (backend) => {
    for (const training of [true, false]) {
      for (const gamma of [1, 1.99]) {
        const { want, got } = await runBoth(tinyMixedStd(training, gamma), backend);
        assertOutputsClose(got, want, {
          what: `${training ? "training" : "evaluation"}, gamma ${gamma}`,
          ...perChannel(4, 300),
        });
      }
    }
  },
);

/**
 * SwitchNorm3d without BN on [4, 2, 1, 1, 145] whose samples repeat one value each (4.2e23,
 * -1e15, 3e38, 0.5: rows beyond 2^40 are kept in their scaled unit) with eps 1e-5: var + eps is
 * eps alone, whose value in the unit of 4.2e23 (2^-163) lies below float32's range. y must be
 * beta and dx = gamma dy / sqrt(eps) (every mean term cancels), as the reference has them.
 */
function repeatedValues(training: boolean): LayerCall {
  const shape = [4, 2, 1, 1, 145], per = 2 * 145, values = [4.2e23, -1e15, 3e38, 0.5];
  const random = seededRandom(111);
  const x = Float32Array.from({ length: 4 * per }, (_, i) => values[Math.floor(i / per)]);
  const dy = Float32Array.from({ length: 4 * per }, () => random() * 2 - 1);
  const state = {
    weight: new Float32Array([0.68, -1.5]),
    bias: new Float32Array([0.21, -3]),
    mean_weight: new Float32Array([-1.4, 2]),
    var_weight: new Float32Array([-0.9, -1.8]),
  };
  const options = { eps: 1e-5, usingBN: false };
  return { layer: "3d", shape, options, state, training, x, dy };
}

rangeTests(
  "rows of one repeated value beyond 2^40 with eps 1e-5 give beta and the reference's dx",
  async (backend) => {
    for (const training of [true, false]) {
      const what = training ? "training" : "evaluation";
      const { want, got } = await runBoth(repeatedValues(training), backend);
      assertOutputsClose(got, want, { what, y: Y, dx: GRAD, grads: GRAD });
    }
  },
);

/**
 * Evaluations of SwitchNorm2d on [4, 1, 1, M] (fuzzed, then reduced) whose row 2 repeats one value
 * far above the running buffers' std (3.3e30 and -6.3e34 over a running_var of 66 or 8e5, beside
 * rows of std 1e-25 .. 1e10): the mix's variance lies 2^200 below the unit of its means. With dy
 * ~1e32 on that row and var_weight on IN, its dL/dvar (~1e67, through the far means) must not set
 * the unit of its dx either. y, dx and the gradients must be the float64 reference's (y and dx
 * within float32 rounding of their row's scale).
 */
interface FarCase {
  m: number;
  eps: number;
  value: number;
  scales: number[];
  dyScales: number[];
  gamma: number;
  mw: number[];
  vw: number[];
  rm: number;
  rv: number;
}

const FAR_CASES: FarCase[] = [
  // var_weight on BN (running_var 66): y NaN, eps 0 (seed 772)
  ...[3.34e30, -6.27e34].map((value) => ({
    m: 38,
    eps: 0,
    value,
    scales: [1e-25, 5e-15, 0, 4e-3],
    dyScales: [1e3, 1e3, 1e3, 1e3],
    gamma: 1.485,
    mw: [25.37, 0.343, 0.164],
    vw: [-19.73, -1.086, 2.553],
    rm: 7.7e29,
    rv: 66.15,
  })),
  // var_weight on IN, eps 1e-5, dy ~1e32 on the repeated row: dx 0 (seed 1274)
  {
    m: 142,
    eps: 1e-5,
    value: -6.27e34,
    scales: [0, 0, 7.7e10, 0],
    dyScales: [1e3, 1e-4, 2e9, 1e32],
    gamma: 0.66,
    mw: [-2.16, -2.3, -0.522],
    vw: [13.24, -0.603, 0.461],
    rm: 0.128,
    rv: 816522,
  },
];

function farAboveRunningStd(k: FarCase): LayerCall {
  const shape = [4, 1, 1, k.m], m = k.m, rows = 4;
  const random = seededRandom(772);
  const x = Float32Array.from(
    { length: rows * m },
    (_, i) => {
      const r = Math.floor(i / m);
      return r === 2 || (k.scales[r] === 0 && r === 3) ? k.value : (random() * 2 - 1) * k.scales[r];
    },
  );
  const dy = Float32Array.from(
    { length: rows * m },
    (_, i) => {
      const d = k.dyScales[Math.floor(i / m)];
      return (random() * 2 - 1 + (d > 1e30 ? 1.5 : 0)) * d; // one sign where ~1e32
    },
  );
  const state = {
    weight: new Float32Array([k.gamma]),
    bias: new Float32Array([0.07]),
    mean_weight: new Float32Array(k.mw),
    var_weight: new Float32Array(k.vw),
    running_mean: new Float32Array([k.rm]),
    running_var: new Float32Array([k.rv]),
  };
  return { layer: "2d", shape, options: { eps: k.eps }, state, training: false, x, dy };
}

rangeTests(
  "evaluations whose repeated values lie 1e29 running stds away from the running buffers match the float64 reference",
  async (backend) => {
    for (const [n, k] of FAR_CASES.entries()) {
      const { want, got } = await runBoth(farAboveRunningStd(k), backend);
      assertOutputsClose(got, want, { what: `case ${n}`, ...perRow(k.m) });
    }
  },
);

/**
 * Evaluations of SwitchNorm3d on [4, 1, 1, 1, 119] (fuzzed, then reduced) on a running_mean of
 * -1.9e30 over a running std of 8.5e-9, with data of 1e-29 .. 3e12: |x - mu| / std reaches 6e38,
 * beyond float32, while gamma 0.0124 keeps y (~8e36) within it. y, dx and the gradients must be
 * the float64 reference's (y and dx within float32 rounding of their row's scale).
 */
function beyondStdRange(): LayerCall {
  const shape = [4, 1, 1, 1, 119], m = 119;
  const random = seededRandom(695);
  const values = [-2.69e-7, 0, 1.5e12, 1.5e-7];
  const x = Float32Array.from(
    { length: 4 * m },
    (_, i) => values[Math.floor(i / m)] || (random() * 2 - 1) * 5e-29,
  );
  const dy = Float32Array.from({ length: 4 * m }, () => (random() * 2 - 1) * 1e-2);
  const state = {
    weight: new Float32Array([-0.0124]),
    bias: new Float32Array([0.213]),
    mean_weight: new Float32Array([-1.946, -0.49, 0.391]),
    var_weight: new Float32Array([2.605, -0.238, -0.264]),
    running_mean: new Float32Array([-1.88e30]),
    running_var: new Float32Array([7.18e-17]),
  };
  return { layer: "3d", shape, options: { eps: 0 }, state, training: false, x, dy };
}

rangeTests(
  "an evaluation whose |x - mu| / std passes float32's range under a gamma of 0.01 matches the float64 reference",
  async (backend) => {
    const { want, got } = await runBoth(beyondStdRange(), backend);
    assertOutputsClose(got, want, perRow(119));
  },
);

/**
 * An evaluation of SwitchNorm2d on [2, 1, 1, 283] (fuzzed, then reduced) on a subnormal
 * running_var (7.9e-41, which GPUs may flush to 0), eps 0, beside a row of one repeated value:
 * that row's mixed variance is the running_var's share alone (~2e-49). y, dx and the gradients
 * must be the float64 reference's (y and dx within float32 rounding of their row's scale).
 */
function subnormalRunningVar(): LayerCall {
  const shape = [2, 1, 1, 283], m = 283;
  const random = seededRandom(1370);
  const x = Float32Array.from(
    { length: 2 * m },
    (_, i) => i < m ? 6.34e-7 : (random() * 2 - 1) * 1.6e-5,
  );
  const dy = Float32Array.from({ length: 2 * m }, () => (random() * 2 - 1) * 1e3);
  const state = {
    weight: new Float32Array([-2.1e-19]),
    bias: new Float32Array([0.5]),
    mean_weight: new Float32Array([0.918, -1.511, -1.177]),
    var_weight: new Float32Array([22.41, 1.565, 2.79]),
    running_mean: new Float32Array([1.95e8]),
    running_var: new Float32Array([7.87e-41]),
  };
  return { layer: "2d", shape, options: { eps: 0 }, state, training: false, x, dy };
}

rangeTests(
  "an evaluation on a subnormal running_var matches the float64 reference",
  async (backend) => {
    const { want, got } = await runBoth(subnormalRunningVar(), backend);
    assertOutputsClose(got, want, perRow(283));
  },
);

/**
 * SwitchNorm2d without BN on [1, 2, 1, 167] (reduced from a fuzzed case): channel 0 of std ~1.3
 * under gamma 9e30, channel 1 of std 2.5e10 about a mean of 3.8e8, so that the mixed std of
 * channel 0 is ~1.7e10 and its mean ~1.9e8 away: gamma s sum(dy) (~1e33) fits float32 but the
 * importance-logit dot products gm (mu_k - mu) (~1e41) do not, while the mean_weight gradient
 * (1.4e35), dx and the weight and bias gradients fit (var_weight's is +-Infinity). Training and
 * evaluation; every result as the float64 reference has it.
 */
function dotsOutOfRange(training: boolean): LayerCall {
  const shape = [1, 2, 1, 167], m = 167;
  const random = seededRandom(913);
  const x = Float32Array.from(
    { length: 2 * m },
    (_, i) => i < m ? (random() * 2 - 1) * 2.23 : (random() * 2 - 1) * 4.4e10 + 3.8e8,
  );
  const dy = Float32Array.from(
    { length: 2 * m },
    (_, i) => (random() * 2 - 1) * (i < m ? 5.8e11 : 9e17),
  );
  const state = {
    weight: new Float32Array([9.06e30, 1.056]),
    bias: new Float32Array([-0.0068, -0.093]),
    mean_weight: new Float32Array([1.614, 14.85]),
    var_weight: new Float32Array([-2.53, -0.131]),
  };
  const options = { eps: 1e-5, usingBN: false };
  return { layer: "2d", shape, options, state, training, x, dy };
}

rangeTests(
  "rows whose importance-logit dot products pass float32's range give the reference's logit gradients",
  async (backend) => {
    for (const training of [true, false]) {
      const what = training ? "training" : "evaluation";
      const { want, got } = await runBoth(dotsOutOfRange(training), backend);
      assertOutputsClose(got, want, { what, ...perRow(167) });
    }
  },
);

/**
 * An evaluation of SwitchNorm3d on [2, 2, 1, 1, 40] (a fuzzed case, its data redrawn with the
 * same per-row scales): a running_mean of -4.2e36 and rows of 1e-20 .. 1e18 with dy up to 1e32,
 * where the centred means and variances of the rows' mixes lie far above the mix's own (an LN
 * variance ~1e36 beside a mixed one ~1e9): their products with dL/dmu and dL/dvar (the
 * importance-logit dot products) pass float32 in the rows' wide records. The logit gradients are
 * +-Infinity in the reference (NaN before); y, dx, the weight and bias gradients fit.
 */
function farTermsDots(): LayerCall {
  const shape = [2, 2, 1, 1, 40], m = 40;
  const random = seededRandom(556);
  const xs = [
    (r: number) => (r * 2 - 1) * 496,
    () => -3.72e18,
    (r: number) => (r * 2 - 1) * 0.113,
    (r: number) => (r * 2 - 1) * 4.3e-20,
  ];
  const dys = [
    (r: number) => (r * 2 - 1) * 1.6e32,
    (r: number) => (1 + 0.3 * r) * 1.7e26,
    (r: number) => (1 + 0.3 * r) * 3.5e9,
    (r: number) => (r * 2 - 1) * 4.9e15,
  ];
  const x = Float32Array.from({ length: 4 * m }, (_, i) => xs[Math.floor(i / m)](random()));
  const dy = Float32Array.from({ length: 4 * m }, (_, i) => dys[Math.floor(i / m)](random()));
  const state = {
    weight: new Float32Array([-2.124e13, -1.764e25]),
    bias: new Float32Array([-0.403, 0.0323]),
    mean_weight: new Float32Array([24.4, 0.565, 1.542]),
    var_weight: new Float32Array([0.686, 2.74, -2.842]),
    running_mean: new Float32Array([-4.2e36, -4.584]),
    running_var: new Float32Array([2.82e9, 1.894e-4]),
  };
  return { layer: "3d", shape, options: { eps: 0 }, state, training: false, x, dy };
}

rangeTests(
  "an evaluation whose rows' logit dot products pass float32 in their wide records matches the float64 reference",
  async (backend) => {
    const { want, got } = await runBoth(farTermsDots(), backend);
    assertOutputsClose(got, want, perRow(40));
  },
);

/**
 * Holds `backend` to the reference on a call of the range property test (tests/range_property_test.ts)
 * with its parameters given (loaded state, one training step on x, then an evaluation forward and
 * backward on xEval over the running buffers that step left) as the property test does: y to
 * Y_SCALED of its terms (at least 1), the running buffers relatively (RUNNING's rtol, no absolute
 * floor: a subnormal running_var must be kept, not flushed), dx and the gradients to GRAD_SCALED
 * of their term scales, in training and in the evaluation on the reference's running buffers.
 */
async function assertStepThenEvaluate(kase: LayerCall, backend: Backend): Promise<void> {
  const { want, got } = await runBoth(kase, backend);
  const atLeast1 = (t: Float64Array) => t.map((v) => Math.max(1, v));
  for (
    const [mode, g, w] of [["training", got, want], [
      "evaluation",
      got.evaluation!,
      want.evaluation!,
    ]] as const
  ) {
    assertOutputsClose(g, w, {
      what: mode,
      y: { tol: Y_SCALED, scale: atLeast1(w.scales!.y) },
      ...gradsToScale(w.scales),
    });
  }
  const exact = { ...RUNNING, atol: 0, why: `${RUNNING.why} (no absolute floor here)` };
  assertOutputsClose(got, want, { runningMean: exact, runningVar: exact });
}

/**
 * A training step then an evaluation (assertStepThenEvaluate) of x = (uniform + offset) * std,
 * with `stds` per sample or per (n, c) row, dy = uniform * dyScale, gamma uniform over
 * [0.5, 1.5) * `gamma`, logits uniform over +-`logits`.
 */
function evalCase(
  p: {
    layer: "1d" | "2d";
    shape: number[];
    eps: number;
    stds: number[];
    offset?: number;
    gamma: number;
    dyScale: number;
    logits: number;
    runningMean: number[];
    runningVar: number[];
    seed: number;
  },
): LayerCall {
  const random = seededRandom(p.seed);
  const c = p.shape[1], len = p.shape.reduce((a, b) => a * b, 1), per = len / p.stds.length;
  const x = new Float32Array(len), xEval = new Float32Array(len), dy = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    const std = p.stds[Math.floor(i / per)];
    x[i] = (random() * 2 - 1 + (p.offset ?? 0)) * std;
    xEval[i] = (random() * 2 - 1 + (p.offset ?? 0) * random()) * std;
    dy[i] = (random() * 2 - 1) * p.dyScale * (1 + random());
  }
  const k = p.layer === "2d" ? 3 : 2;
  const spread = () => (random() * 2 - 1) * p.logits;
  const state = {
    weight: Float32Array.from({ length: c }, () => (0.5 + random()) * p.gamma),
    bias: Float32Array.from({ length: c }, () => random() * 2 - 1),
    mean_weight: Float32Array.from({ length: k }, spread),
    var_weight: Float32Array.from({ length: k }, spread),
    running_mean: Float32Array.from(p.runningMean),
    running_var: Float32Array.from(p.runningVar),
  };
  return {
    layer: p.layer,
    shape: p.shape,
    options: { eps: p.eps },
    state,
    training: true,
    x,
    dy,
    xEval,
    running: true,
    scales: true,
  };
}

/**
 * Issue 10, found by the range property test: an evaluation with eps 0 on a running_var below
 * float32's normal range. SwitchNorm2d [1, 4, 1, 4] on data of std 1e-25 (batch variance 1e-50)
 * with running_var loaded at 6e-39 .. 1.4e-38 (subnormal or just normal) and dy 1e14, and
 * SwitchNorm1d [2, 6] with samples of std 1e-20 and 1e-17, dy 1e6: the training step's update
 * 0.9 running_var + 0.1 var leaves a subnormal, which WebGPU flushed to 0, so that its
 * evaluation normalized by the data's std 1e-25 instead of the buffer's 1e-19 (y -12626 where
 * the reference has 1.224, dx +-Infinity, gradients ~1e9x off). The running buffers must be the
 * reference's, subnormals included, and the evaluation on them its results.
 */
const SUBNORMAL_RUNNING: Parameters<typeof evalCase>[0][] = [
  {
    layer: "2d",
    shape: [1, 4, 1, 4],
    eps: 0,
    stds: [1e-25],
    gamma: 0.015,
    dyScale: 1e14,
    logits: 1,
    runningMean: [8.4e-20, 2.1e-19, -7.7e-20, -9.2e-21],
    runningVar: [9.7e-39, 6e-39, 1.39e-38, 9e-39],
    seed: 27,
  },
  {
    layer: "1d",
    shape: [2, 6],
    eps: 0,
    stds: [1e-20, 1e-17],
    gamma: 1,
    dyScale: 1e6,
    logits: 1,
    runningMean: [1e-19, -5e-20, 2e-19, 0, -1e-19, 3e-20],
    runningVar: [1e-38, 6e-39, 1.2e-38, 8e-39, 1.1e-38, 7e-39],
    seed: 881646327,
  },
];

rangeTests(
  "a training step that leaves running_var subnormal keeps it, and an eps 0 evaluation on it matches the float64 reference",
  async (backend) => {
    for (const p of SUBNORMAL_RUNNING) await assertStepThenEvaluate(evalCase(p), backend);
  },
);

/**
 * Issue 10, found by the range property test (34 of its 150 cases): an evaluation on a
 * running_var of +Infinity. SwitchNorm1d [10, 6] whose sample 7 has std 1e22 (batch variance
 * ~1e43): one training step makes running_var +Infinity in every channel, and the evaluation's
 * s is 0, so y = beta and dx = 0 exactly in the reference. WebGPU gave dx ~1e-19 (dy gamma over
 * the square root of the 2^127 that stands for the infinite variance).
 */
rangeTests(
  "an evaluation on a running_var of +Infinity gives beta and a dx of 0, as the float64 reference does",
  async (backend) => {
    const stds = [1, 0.5, 2, 1, 3, 1, 1, 1e22, 1, 0.7];
    for (const eps of [0, 1e-5]) {
      const kase = evalCase({
        layer: "1d",
        shape: [10, 6],
        eps,
        stds,
        gamma: 1,
        dyScale: 1,
        logits: 1,
        runningMean: [0, 0, 0, 0, 0, 0],
        runningVar: [1, 1, 1, 1, 1, 1],
        seed: 4,
      });
      await assertStepThenEvaluate(kase, backend);
    }
  },
);

/**
 * Issue 10, found by the range property test: importance-logit gradients far below the units of
 * the sums they are carried in. SwitchNorm2d [1, 4, 6, 4] with rows of std ~1e-20 (per row, 1e-25
 * .. 1e-15) at an offset of 10 stds, eps 1e-5, gamma ~1e-6 and dy ~1e15: the variance dot products
 * are ~1e-35 (gv ~1e-16 in its unit times variance differences ~1e-35 in the mix's unit, and the
 * row record's unit that of dy, 2^50), so WebGPU's var_weight gradient was 0 where the reference
 * has -2.5e-35 (term scale 2.7e-34), in training and in the evaluation after it.
 */
rangeTests(
  "var_weight gradients ~1e-35 under dy 1e15 and gamma 1e-6 over rows of std 1e-20 match the float64 reference",
  async (backend) => {
    const kase = evalCase({
      layer: "2d",
      shape: [1, 4, 6, 4],
      eps: 1e-5,
      stds: [1e-20, 3e-24, 2e-17, 5e-21],
      offset: 10,
      gamma: 1e-6,
      dyScale: 1e15,
      logits: 5,
      runningMean: [0, 0, 0, 0],
      runningVar: [1, 1, 1, 1],
      seed: 598011073,
    });
    await assertStepThenEvaluate(kase, backend);
  },
);

/**
 * Issue 10, found by tests/fuzz/nd_range_fuzz.ts (seed 1370): an evaluation with eps 0 on a
 * loaded running_var below float32's normal range (7.9e-41) beside a running_mean of 1.9e8.
 * SwitchNorm2d [2, 1, 1, 283] whose row 0 repeats one value (IN and LN variances 0, which the
 * variance logits weight ~1): the mixed variance is the BN term alone, ~1e-49, so y is ~8e36 and
 * dx ~1e40 (+-Infinity) in the reference. WebGPU kept such buffers unscaled (their mean is
 * ordinary), so the subnormal variance was flushed to 0: y, dx and the gradients NaN.
 */
function subnormalRunningVarBesideMean(): LayerCall {
  const shape = [2, 1, 1, 283], m = 283;
  const random = seededRandom(1370);
  const x = Float32Array.from(
    { length: 2 * m },
    (_, i) => i < m ? 6.335e-7 : 6.94e-7 + (random() * 2 - 1) * 1.6e-5,
  );
  const dy = Float32Array.from(
    { length: 2 * m },
    (_, i) => (random() * 2 - 1) * (i < m ? 9e28 : 160),
  );
  const state = {
    weight: new Float32Array([-207546.8125]),
    bias: new Float32Array([-1.925e24]),
    mean_weight: new Float32Array([0.918, -1.511, -1.177]),
    var_weight: new Float32Array([22.41, 1.565, 2.79]),
    running_mean: new Float32Array([194916944]),
    running_var: new Float32Array([7.870953344266065e-41]),
  };
  return { layer: "2d", shape, options: { eps: 0 }, state, training: false, x, dy, scales: true };
}

rangeTests(
  "an eps 0 evaluation on a subnormal running_var beside an ordinary running_mean matches the float64 reference",
  async (backend) => {
    const { want, got } = await runBoth(subnormalRunningVarBesideMean(), backend);
    const atLeast1 = want.scales!.y.map((v) => Math.max(1, v));
    assertOutputsClose(got, want, {
      y: { tol: Y_SCALED, scale: atLeast1 },
      ...gradsToScale(want.scales),
    });
  },
);

/**
 * Issue 10, found by tests/fuzz/nd_range_fuzz.ts (seed 987, reduced): an evaluation on a loaded
 * `running_var` of 2.8e-45 (float32's second smallest subnormal) beside samples that each
 * repeat one value of 1e11 .. 1e15 (IN and LN variances 0), eps 1e-5. The BN variance is
 * negligible in the mix beside eps, but var_k - var, which the var_weight gradient sums times
 * dL/dvar (~1e22 here), is that variance alone: ~1e-23 in the reference. WebGPU wrote the
 * running variance flushed to 0 in its group's unit (sqrt(eps)'s), its wide rows formed those
 * differences in the unit of the rows' means (2^50), where 2.8e-45 is 0, and it kept the variance
 * dots in one unit with the mean dots (~2e17, 2^133 above): var_weight's gradient was 0 (the
 * fuzzed case: 327 where the reference has 4.4e26).
 */
function subnormalRunningVarDots(): LayerCall {
  const shape = [3, 1, 1, 16], m = 16, means = [6.4e14, -8.4e10, 3e13];
  const random = seededRandom(987);
  const x = Float32Array.from({ length: 3 * m }, (_, i) => means[Math.floor(i / m)]);
  const dy = Float32Array.from({ length: 3 * m }, () => random() * 2 - 1);
  const state = {
    weight: new Float32Array([1.5]),
    bias: new Float32Array([0.3]),
    mean_weight: new Float32Array([-0.9, 2.1, 1.6]),
    var_weight: new Float32Array([-0.14, 2.87, 2.07]),
    running_mean: new Float32Array([-174639.23]),
    running_var: new Float32Array([2.8e-45]),
  };
  return {
    layer: "2d",
    shape,
    options: { eps: 1e-5 },
    state,
    training: false,
    x,
    dy,
    scales: true,
  };
}

rangeTests(
  "var_weight's gradient on a running_var of 2.8e-45 beside constant samples of 1e11 .. 1e15 matches the float64 reference",
  async (backend) => {
    const { want, got } = await runBoth(subnormalRunningVarDots(), backend);
    const y = { tol: Y_SCALED, scale: want.scales!.y };
    assertOutputsClose(got, want, { y, ...gradsToScale(want.scales) });
    // The term scale of a logit gradient is the size of its terms (~1e-23 here): no
    // cancellation, so hold it to GRAD relative to itself as well.
    const vw = want.grads.var_weight;
    const size = Math.max(...Array.from(vw, Math.abs));
    assert.ok(size > 1e-24, `reference var_weight gradient ${vw}`);
    assertClose(got.grads.var_weight, vw, { ...GRAD, atol: GRAD.atol * size }, "var_weight");
  },
);

/**
 * Issue 10: var_weight logits 100 apart, so that softmax gives the LN and BN terms weights of
 * ~4e-44, below float32's normal range. SwitchNorm2d [2, 2, 4, 4] with eps 0: channel 1 repeats
 * 1e9 (IN variance 0; BN variance 0 in training, a running_var of 1 in evaluation), so its mixed
 * variance is ~4e-44 times the LN variance of ~2.5e17 (plus the BN term). WebGPU took the weight
 * as its float32 rounding, a subnormal with 5 significant bits (0 where a GPU flushes it): y
 * ~0.8% off and var_weight's gradient NaN. Training, then an evaluation on the buffers it left.
 */
function tinyVarWeight(training: boolean): LayerCall {
  const shape = [2, 2, 4, 4], m = 16;
  const random = seededRandom(1044);
  const x = Float32Array.from(
    { length: 4 * m },
    (_, i) => Math.floor(i / m) % 2 === 1 ? 1e9 : (random() * 2 - 1) * 1e-6,
  );
  const dy = Float32Array.from({ length: 4 * m }, () => random() * 2 - 1);
  const state = {
    weight: new Float32Array([1, 1]),
    bias: new Float32Array([0, 0]),
    mean_weight: new Float32Array([0, 0, 0]),
    var_weight: new Float32Array([0, -100, -100]),
    running_mean: new Float32Array([0, 0]),
    running_var: new Float32Array([1, 1]),
  };
  return { layer: "2d", shape, options: { eps: 0 }, state, training, x, dy, scales: true };
}

rangeTests(
  "var_weight logits 100 apart (mixing weights of ~4e-44) match the float64 reference",
  async (backend) => {
    for (const training of [true, false]) {
      const what = training ? "training" : "evaluation";
      const { want, got } = await runBoth(tinyVarWeight(training), backend);
      const y = { tol: Y, rows: 16 };
      assertOutputsClose(got, want, { what, y, ...gradsToScale(want.scales) });
    }
  },
);

/**
 * Issue 10: an evaluation whose mixed mean takes a `running_mean` of 3e38 at a mean weight of
 * 2^-100 (logit ln 2^-100) over samples of std ~2e-28, eps 0: y = -(2^-100 3e38) / std ~ -8e35.
 * In the mix's unit (2^62 above its std) the running mean lay ~2^250 away, so WebGPU's shifted
 * mean overflowed before its weight brought it back: y -Infinity, dx and the mean_weight gradient
 * NaN (the unit now lies at most 2^126 below each mean of nonzero weight, shaders/common.wgsl
 * wide_map). SwitchNorm2d (IN anchors the mix, BN is the far term) and SwitchNorm1d (LN anchors,
 * BN far).
 */
function farRunningMeanOfTinyWeight(layer: "1d" | "2d"): LayerCall {
  const w = Math.log(2 ** -100);
  const nd = layer === "2d";
  const state = {
    mean_weight: Float32Array.from(nd ? [0, -200, w] : [0, w]),
    var_weight: Float32Array.from(nd ? [0, -200, -200] : [0, -200]),
    running_mean: new Float32Array(nd ? 1 : 4).fill(3e38),
    running_var: new Float32Array(nd ? 1 : 4).fill(1),
  };
  return {
    layer,
    shape: nd ? [1, 1, 1, 4] : [1, 4],
    options: { eps: 0 },
    state,
    partial: true,
    training: false,
    x: Float32Array.of(1.6e-28, -1.6e-28, 3.2e-28, -3.2e-28),
    dy: Float32Array.of(1, -2, 0.5, 0.25),
    scales: true,
  };
}

rangeTests(
  "an evaluation whose mean takes a running_mean of weight 2^-100 lying 2^120 stds away matches the float64 reference",
  async (backend) => {
    for (const layer of ["2d", "1d"] as const) {
      const { want, got } = await runBoth(farRunningMeanOfTinyWeight(layer), backend);
      assert.ok(want.y.every((v) => v < -8e35 && v > -8.2e35), `reference y ${want.y}`);
      assertOutputsClose(got, want, {
        what: layer,
        y: { tol: Y, rows: 4 },
        ...gradsToScale(want.scales),
      });
    }
  },
);

/**
 * Issue 10: an evaluation with eps 0 on a loaded `running_var` of 0 whose samples each repeat one
 * value (1.5, -2, 3e20: IN and LN variances 0 too), so that the mix's variance is exactly 0 in
 * channels 0 and 1. There x - mu = w_bn (x - running_mean) is far from 0 (running_mean 0.5 and
 * 3), so y = (x - mu) gamma / 0 is the infinity of that sign, as the float64 reference has it
 * (WebGPU gave NaN, 0 / 0); gamma 0 (channel 3) gives NaN (0 * Inf). Channel 2's running_var 1
 * keeps a finite y beside them. SwitchNorm2d [3, 4, 2, 2] and SwitchNorm1d [3, 4].
 */
function zeroStdEvaluation(layout: "1d" | "nd"): LayerCall {
  const shape = layout === "1d" ? [3, 4] : [3, 4, 2, 2], values = [1.5, -2, 3e20];
  const per = shape.slice(1).reduce((a, b) => a * b);
  const x = Float32Array.from({ length: 3 * per }, (_, i) => values[Math.floor(i / per)]);
  const k = layout === "1d" ? 2 : 3;
  const state = {
    weight: new Float32Array([1.2, -0.7, 0.9, 0]),
    bias: new Float32Array([0.1, -0.2, 0.3, 0.4]),
    mean_weight: new Float32Array([0.3, -0.4, 0.5].slice(0, k)),
    var_weight: new Float32Array([-0.2, 0.5, 0.1].slice(0, k)),
    running_mean: new Float32Array([0.5, 3, 0, 1]),
    running_var: new Float32Array([0, 0, 1, 0]),
  };
  const layer = layout === "1d" ? "1d" : "2d";
  return { layer, shape, options: { eps: 0 }, state, training: false, x }; // a forward alone
}

rangeTests(
  "an evaluation on running_var 0 with eps 0 gives the reference's infinities for constant samples",
  async (backend) => {
    for (const layout of ["nd", "1d"] as const) {
      const { want: { y: want }, got: { y: got } } = await runBoth(
        zeroStdEvaluation(layout),
        backend,
      );
      const finite = (v: Float32Array) => v.map((t) => Number.isFinite(t) ? t : 0);
      for (let i = 0; i < want.length; i++) {
        const what = `${layout}: y[${i}]: got ${got[i]}, want ${want[i]}`;
        if (!Number.isFinite(want[i])) assert.ok(Object.is(got[i], want[i]), what);
        else assert.ok(Number.isFinite(got[i]), what);
      }
      assert.ok(want.some((v) => v === Infinity) && want.some((v) => v === -Infinity));
      assertClose(finite(got), finite(want), Y, `${layout}: finite y`);
    }
  },
);

/**
 * Issue 10: products dy (x - mu) below float32's normal range in the unit of the mix. SwitchNorm2d
 * [2, 3, 1, 16] with rows of std 1e-27 (wide rows), dy ~1e-12 and eps 0: in the evaluation on a
 * running_var of ~1e-8 the mix's unit is the BN term's, where x - mu ~1e-27 and dy (x - mu) ~1e-39
 * lies below float32's normal range (a GPU flushes it): WebGPU's weight and var_weight gradients
 * were 0 where the reference has ~1e-35 .. 7e-35 (1 / std^3 ~1e12 brings them back into range).
 * The wide reduce takes x - mu in units of 2^f, f < 0, there.
 */
rangeTests(
  "dy (x - mu) below float32's normal range in the mix's unit gives the reference's weight and var_weight gradients",
  async (backend) => {
    const kase = evalCase({
      layer: "2d",
      shape: [2, 3, 1, 16],
      eps: 0,
      stds: [1e-27, 3e-27],
      gamma: 1,
      dyScale: 1e-12,
      logits: 1,
      runningMean: [0, 0, 0],
      runningVar: [1e-8, 2e-8, 1e-8],
      seed: 20261130,
    });
    await assertStepThenEvaluate(kase, backend);
  },
);

/**
 * Issue 10: row sums whose gm = -s gamma S1 and gv ~ gamma s^3 S2 fall below float32's normal
 * range. SwitchNorm2d [2, 3, 1, 16] with rows of std 1e12, gamma ~1e-6 and dy ~1e-15: gv ~1e-44
 * (flushed), while its products with the variances (~1e24) are ~1e-20: WebGPU's dx was ~5% and its
 * var_weight gradient ~10% off, in training and in the evaluation after it. Such rows take the
 * wide row path, with s's exponent apart.
 */
rangeTests(
  "gm and gv below float32's normal range (std 1e12, gamma 1e-6, dy 1e-15) give the reference's dx and gradients",
  async (backend) => {
    const kase = evalCase({
      layer: "2d",
      shape: [2, 3, 1, 16],
      eps: 0,
      stds: [1e12, 3e12],
      gamma: 1e-6,
      dyScale: 1e-15,
      logits: 1,
      runningMean: [0, 0, 0],
      runningVar: [1e24, 1e24, 1e24],
      seed: 20261201,
    });
    await assertStepThenEvaluate(kase, backend);
  },
);

/**
 * A mix that gives IN and LN weight 0 (BN alone) over samples that span 1e30 and 1e-30: in the
 * unit of a tiny row, LN's variance (and IN's of a huge row in the unit of the BN term) passes
 * float32's range, and its weight 0 times that infinity made y, dx and dgamma NaN on WebGPU where
 * the float64 reference adds 0 (wide_map now brings such a term to 0 before its weight:
 * zero_weight_exp), and the LN dot product (-Infinity for -1.7e30 in the rows' units) made every
 * logit gradient NaN (dropZeroWeightDots).
 */
function zeroWeightFarTerms(layer: "1d" | "2d", eps: number, training: boolean): LayerCall {
  const nd = layer === "2d";
  const shape = nd ? [1, 2, 2, 2] : [3, 2];
  const x = nd
    ? Float32Array.of(1e30, 2e30, -3e30, 4e30, 1e-30, 2e-30, 3e-30, 4e-30)
    : Float32Array.of(1e30, 1e-30, -2e30, 3e-30, 4e30, 2e-30);
  const dy = nd
    ? Float32Array.of(1, -2, 3, 1, 1e-30, -2e-30, 1e-30, 3e-30)
    : Float32Array.of(1, 1e-30, -2, -2e-30, 3, 3e-30);
  const k = nd ? 3 : 2;
  const logits = Float32Array.from({ length: k }, (_, i) => i === k - 1 ? 1e30 : -1e30);
  const state = {
    weight: Float32Array.of(1, 1.5),
    bias: Float32Array.of(0.5, 0),
    mean_weight: logits,
    var_weight: logits,
    running_mean: Float32Array.of(0, 0),
    running_var: Float32Array.of(1, 1),
  };
  const options = { eps };
  return { layer, shape, options, state, training, x, dy, scales: true, dispose: true };
}

rangeTests(
  "terms of mixing weight 0 far from the mix's unit (a sample spanning 1e30 and 1e-30 under BN alone) add nothing",
  async (backend) => {
    for (const layer of ["2d", "1d"] as const) {
      for (const eps of [1e-5, 0]) {
        for (const training of [true, false]) {
          const call = zeroWeightFarTerms(layer, eps, training);
          const { want, got } = await runBoth(call, backend);
          assertOutputsClose(got, want, {
            what: `${layer} eps ${eps} ${training ? "training" : "evaluation"}`,
            y: { tol: Y_SCALED, scale: want.scales!.y },
            ...gradsToScale(want.scales),
          });
        }
      }
    }
  },
);

/**
 * An evaluation whose var_weight gives BN weight ~1e-87 (logits 200 apart: 0 on WebGPU, below
 * 2^-252) beside rows of std ~1e-41 (subnormal data) and a `running_var` of 1: in the unit of the
 * tiny rows the BN variance passes float32's range, and WebGPU's wide map multiplied the weight 0
 * by that infinity: y, dx and the gradients were NaN where y is up to 4e37 (the mean's BN weight
 * ~1, `running_mean` -3e-30 to -3e-3 away from the data).
 */
function zeroWeightHugeVariance(layer: "1d" | "2d", runningMean: number): LayerCall {
  const nd = layer === "2d", m = 8;
  const x = Float32Array.from({ length: m }, (_, i) => (i % 2 ? 1 : -1) * (1 + i) * 1e-41);
  const dy = Float32Array.from({ length: m }, (_, i) => Math.sin(i + 1));
  const state = nd
    ? {
      weight: Float32Array.of(0.72),
      bias: Float32Array.of(0.1),
      mean_weight: Float32Array.of(-100, -100, 100),
      var_weight: Float32Array.of(100, -100, -100),
      running_mean: Float32Array.of(runningMean),
      running_var: Float32Array.of(1),
    }
    : {
      weight: Float32Array.of(0.72),
      bias: Float32Array.of(0.1),
      mean_weight: Float32Array.of(-100, 100),
      var_weight: Float32Array.of(100, -100),
      running_mean: Float32Array.of(runningMean),
      running_var: Float32Array.of(1),
    };
  const shape = nd ? [1, 1, 1, m] : [m, 1];
  return {
    layer,
    shape,
    options: { eps: 0 },
    state,
    training: false,
    x,
    dy,
    scales: true,
    dispose: true,
  };
}

rangeTests(
  "a variance term of mixing weight 0 beyond float32 in a tiny row's unit adds nothing (evaluation)",
  async (backend) => {
    for (const layer of ["2d", "1d"] as const) {
      for (const runningMean of [-3e-30, -3e-10, -3e-3]) {
        const call = zeroWeightHugeVariance(layer, runningMean);
        const { want, got } = await runBoth(call, backend);
        assertOutputsClose(got, want, {
          what: `${layer}, running_mean ${runningMean}`,
          y: { tol: Y_SCALED, scale: want.scales!.y },
          ...gradsToScale(want.scales),
        });
      }
    }
  },
);

/**
 * A training step whose batch variance passes float32's range (a channel spanning +-1e30: 1e60)
 * leaves `running_var` +Infinity; the evaluation after it mixes that buffer with BN's variance
 * weight. Of weight 0 in float64 (logit -1e30) the reference's mix is 0 * Inf = NaN, as
 * PyTorch's is: WebGPU took a weight of 0 as no term and gave finite y, dx and gradients (nd
 * fuzzer with FUZZ_ZERO_WEIGHTS=1, seed 63). Of weight ~1e-87 (logits 200 apart: 0 in WebGPU's
 * shaders, not in float64) the channel's std is +Infinity and y = beta.
 */
function infiniteRunningVar(
  layer: "1d" | "2d",
  bnVarLogit: number,
  stdZero = false,
): LayerCall {
  const nd = layer === "2d", n = 2, c = 2, m = nd ? 4 : 1;
  const len = n * c * m, random = seededRandom(20261201);
  const at = (i: number) => nd ? Math.floor(i / m) % c : i % c; // the channel of element i
  const x = Float32Array.from(
    { length: len },
    (_, i) => (random() * 2 - 1) * (at(i) === 0 ? 1e30 : 1),
  );
  // stdZero: constant evaluation rows (each row its index's value), so that under variance
  // weight on IN alone with eps 0 every term of nonzero variance weight has variance 0.
  const xEval = Float32Array.from(
    { length: len },
    (_, i) => stdZero ? 1 + Math.floor(i / m) : (random() * 2 - 1) * (at(i) === 0 ? 1e30 : 1),
  );
  const dy = Float32Array.from({ length: len }, () => random() * 2 - 1);
  const k = nd ? 3 : 2, zeros = new Float32Array(k);
  const varWeight = zeros.slice();
  varWeight[k - 1] = bnVarLogit;
  if (stdZero) varWeight[1] = -1e30; // IN alone besides BN
  return {
    layer,
    shape: nd ? [n, c, 1, m] : [n, c],
    options: { eps: stdZero ? 0 : 1e-5 },
    state: {
      weight: Float32Array.of(1.5, 0.7),
      bias: Float32Array.of(0.25, -0.5),
      mean_weight: zeros,
      var_weight: varWeight,
      running_mean: new Float32Array(c),
      running_var: new Float32Array(c).fill(1),
    },
    training: true,
    x,
    dy,
    xEval,
    running: true,
    scales: true,
  };
}

rangeTests(
  "an infinite running_var of variance weight 0 makes the evaluation NaN, of a weight below 2^-252 its std infinite (0 on WebGPU)",
  async (backend) => {
    // And a mix of std 0 beside that buffer (eps 0, constant rows under IN's variance alone):
    // there WebGPU gave y +-Infinity, the std-0 rows' y, for the reference's NaN (nd fuzzer with
    // FUZZ_ZERO_WEIGHTS=1, seed 121).
    for (const [layer, stdZero] of [["2d", false], ["1d", false], ["2d", true]] as const) {
      for (const logit of [-1e30, -200]) {
        const call = infiniteRunningVar(layer, logit, stdZero);
        const { want, got } = await runBoth(call, backend);
        assert.equal(want.runningVar?.[0], Infinity, "the step leaves running_var +Infinity");
        const ev = want.evaluation!;
        // (WebGPU takes a weight below 2^-252 as 0, README: Numerics; runBoth's reference too.)
        if (logit === -1e30 || backend === "webgpu") {
          assert.ok(Number.isNaN(ev.y[0]), "the reference's y is NaN there");
        } else assert.equal(ev.y[0], 0.25, "the reference's y is beta there");
        for (
          const [mode, g, w] of [["training", got, want], [
            "evaluation",
            got.evaluation!,
            ev,
          ]] as const
        ) {
          // Under a weight below 2^-252 the std-0 rows' own dx (NaN, NUMERICS.md: a mixed std of 0)
          // reaches the other rows through LN's mean: y alone there.
          const yOnly = stdZero && logit === -200 && mode === "evaluation" && backend === "wasm";
          assertOutputsClose(g, w, {
            what: `${layer}${stdZero ? " std 0" : ""}, BN variance logit ${logit}, ${mode}`,
            y: { tol: Y_SCALED, scale: w.scales!.y.map((v) => Math.max(1, v)) },
            ...(yOnly ? {} : gradsToScale(w.scales)),
          });
        }
      }
    }
  },
);

/**
 * The evaluation of an infinite `running_var` (left by a training step on a channel spanning
 * +-1e30) of nonzero weight, whose std is +Infinity (s = 0, y = beta), with a NaN or infinite dy
 * in a row of that channel: the reference's gm = -gamma s sum(dy), gv, dgamma (dy xhat) and the
 * dots are 0 * Inf = NaN, and so dx of the row (and, through LN, of its sample). WebGPU took them
 * as 0: dx 0 and dgamma 0 where the reference has NaN (nd fuzzer FUZZ_INJECT=1, seed 53).
 */
rangeTests(
  "a NaN or infinite dy on an infinite running_var gives the reference's NaN gradients",
  async (backend) => {
    for (const layer of ["2d", "1d"] as const) {
      for (const value of [NaN, -Infinity]) {
        const base = infiniteRunningVar(layer, 0);
        const dy = base.dy!.slice();
        dy[0] = value; // channel 0, whose running_var the step leaves +Infinity
        const { want, got } = await runBoth({ ...base, dy }, backend);
        const ev = want.evaluation!;
        assert.ok(
          Number.isNaN(ev.dx[1]) && Number.isNaN(ev.grads.weight[0]),
          "the reference's NaN",
        );
        assertOutputsClose(got.evaluation!, ev, {
          what: `${layer}, dy ${value}`,
          y: { tol: Y_SCALED, scale: ev.scales!.y.map((v) => Math.max(1, v)) },
          ...gradsToScale(ev.scales),
        });
      }
    }
  },
);

/**
 * An attack on this session's fix of the variance dots (helper-60, its seed 394): counting LN's
 * mean as 0 in the mean dots too where LN's mean weight is 0 (tried) set the evaluation's
 * `mean_weight` gradient to [0, 0, 0] for [-2.2e-11, 0, 2.2e-11] (249x its tolerance):
 * SwitchNorm2d [3, 3, 1, 300], channels of 1e20, a constant 5e-21 and 1e-20, eps 0, mean logits
 * [-1, -1e30, 2], a training step then an evaluation.
 */
rangeTests(
  "a mean weight of 0 leaves the other terms' mean dot products as they are",
  async (backend) => {
    // The attack's draws, replayed (its seed 394): the data and dy of the case described above.
    const random = seededRandom(394 * 7919 + 13);
    const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)];
    pick(["1d", "2d", "2d", "3d"]), random(), random(), pick([1, 2, 5, 64, 300]);
    random(), random(), pick([0, 1e-5]);
    const n = 3, c = 3, m = 300, len = n * c * m;
    const scales = Array.from({ length: c }, () => pick([1, 1e30, 3e38, 1e-20, 1e-30, 1e20]));
    const constant = Array.from({ length: c }, () => random() < 0.2);
    const chan = (i: number) => Math.floor(i / m) % c;
    const gen = () =>
      Float32Array.from(
        { length: len },
        (_, i) =>
          constant[chan(i)]
            ? scales[chan(i)] * 0.5
            : (random() * 2 - 1) * scales[chan(i)] + (random() < 0.1 ? scales[chan(i)] * 3 : 0),
      );
    const x = gen(), xEval = random() < 0.5 ? gen() : Float32Array.from(x);
    const dy = Float32Array.from(
      { length: len },
      () => (random() * 2 - 1) * pick([1, 1, 1e-20, 1e30]),
    );
    assert.deepEqual([scales, constant], [[1e20, 1e-20, 1e-20], [false, true, false]]);
    const call: LayerCall = {
      layer: "2d",
      shape: [n, c, 1, m],
      options: { eps: 0 },
      partial: true,
      state: {
        weight: Float32Array.of(1.5, 0.7, -2),
        bias: Float32Array.of(0.25, -0.5, 0),
        mean_weight: Float32Array.of(-1, -1e30, 2),
        var_weight: Float32Array.of(-200, -1, -1),
      },
      training: true,
      x,
      dy,
      xEval,
      running: true,
      scales: true,
      dispose: true,
    };
    const { want, got } = await runBoth(call, backend);
    const ev = want.evaluation!;
    // The logit gradients alone: dx of this evaluation is off on WebGPU at every commit (a
    // variance weight ~1e-87 that the shaders take as 0: README, Numerics, known exceptions).
    assertOutputsClose(got.evaluation!, ev, {
      what: "evaluation",
      grads: gradsToScale(ev.scales).grads,
      gradKeys: ["mean_weight"],
    });
  },
);

/**
 * A row whose dy holds values near -3e38 beside a +Infinity: the reference's dbias (and dgamma)
 * is that infinity, float32 sums of the finite values alone overflow to -Infinity, and WebGPU's
 * sums (taken as they are, since the row's largest |dy| is not finite) were -Infinity +
 * Infinity = NaN (nd fuzzer FUZZ_INJECT=1, seed 65: dbias NaN for +Infinity). The finite dy
 * now set the unit of such a segment (sn_bwd_wide_reduce).
 */
rangeTests(
  "a +Infinity dy beside finite dy whose sum overflows float32 gives the reference's infinite dbias",
  async (backend) => {
    for (const training of [true, false]) {
      const m = 8;
      const call: LayerCall = {
        layer: "2d",
        shape: [2, 1, 1, m],
        partial: true,
        state: { weight: Float32Array.of(0.75), bias: Float32Array.of(0.5) },
        training,
        scales: true,
        x: Float32Array.from({ length: 2 * m }, (_, i) => Math.sin(i + 1)),
        dy: Float32Array.from(
          { length: 2 * m },
          (_, i) => i === 3 ? Infinity : i < 3 ? -3e38 : Math.cos(i),
        ),
        dispose: true,
      };
      const { want, got } = await runBoth(call, backend);
      assert.equal(want.grads.bias[0], Infinity, "the reference's dbias");
      assertOutputsClose(got, want, {
        what: training ? "training" : "evaluation",
        y: { tol: Y_SCALED, scale: want.scales!.y },
        ...gradsToScale(want.scales),
      });
    }
  },
);

/**
 * A channel spanning +-1e20 to +-3e38 beside one of ~1 under a mix whose LN weights are 0 (sparse
 * SN's sparsestmax drops LN; logits -1e30): LN's variance (1e40 to 1e77) and mean, which the
 * reference multiplies by 0, set the unit of the backward's variance (and mean) dot products on
 * WebGPU, which flushed IN's and BN's: `var_weight`'s gradient 0.174 for 0.244, 0 for 3e26
 * (found by an attack on the zero-weight fix). Before that fix y was NaN there.
 */
rangeTests(
  "a term of weight 0 does not set the unit of the other terms' logit dot products",
  async (backend) => {
    const m = 4, c = 2, ch = (i: number) => Math.floor(i / m) % c;
    for (
      const [logits, sparse] of [[[1, -1, 0.5], true], [[1.0986, -1e30, 0], false]] as const
    ) {
      for (const spread of [1e20, 1e30, 3e38]) {
        for (const training of [true, false]) {
          const call: LayerCall = {
            layer: "2d",
            shape: [2, c, 1, m],
            options: { eps: 1e-5, sparse },
            partial: true,
            state: {
              weight: Float32Array.of(1.5, 0.7),
              bias: Float32Array.of(0.25, -0.5),
              mean_weight: Float32Array.from(logits),
              var_weight: Float32Array.from(logits),
            },
            training,
            scales: true,
            x: Float32Array.from(
              { length: 16 },
              (_, i) => Math.sin(i + 1) * (ch(i) === 0 ? spread : 1),
            ),
            dy: Float32Array.from({ length: 16 }, (_, i) => Math.cos(i * 3 + 1)),
            dispose: true,
          };
          const { want, got } = await runBoth(call, backend);
          assertOutputsClose(got, want, {
            what: `${sparse ? "sparse" : "logits -1e30"}, spread ${spread}, ${
              training ? "training" : "evaluation"
            }`,
            y: { tol: Y_SCALED, scale: want.scales!.y },
            ...gradsToScale(want.scales),
          });
        }
      }
    }
  },
);

/**
 * An evaluation where a variance term of small weight (2^-120, logits 83.2 apart) dominates the
 * mix over rows of ~2^80 that differ by 2^-21 (BN's `running_var` 1e-30 beside): the wide map
 * drops the mix's unit below that term's, so that its variance is brought up by the unit factor.
 * Weighing the variance before that factor (tried: the weight 0 exception above) lost it below
 * float32's range: y 1.2e15 times too large, dx and the var_weight gradient infinite.
 */
rangeTests(
  "a variance term of tiny weight keeps its variance where the mix's unit lies below its own",
  async (backend) => {
    for (const eps of [0, 1e-5]) {
      const m = 8;
      const call: LayerCall = {
        layer: "2d",
        shape: [1, 1, 1, m],
        options: { eps },
        state: {
          weight: Float32Array.of(1),
          bias: Float32Array.of(0),
          mean_weight: Float32Array.of(-1e30, -1e30, 0),
          var_weight: Float32Array.of(-83.2, -1e30, 0),
          running_mean: Float32Array.of(2 ** 80),
          running_var: Float32Array.of(1e-30),
        },
        training: false,
        x: Float32Array.from({ length: m }, (_, i) => 2 ** 80 * (1 + i * 2 ** -21)),
        dy: Float32Array.from({ length: m }, (_, i) => Math.sin(i + 1)),
        scales: true,
        dispose: true,
      };
      const { want, got } = await runBoth(call, backend);
      assertOutputsClose(got, want, {
        what: `eps ${eps}`,
        y: { tol: Y_SCALED, scale: want.scales!.y },
        ...gradsToScale(want.scales),
      });
    }
  },
);
