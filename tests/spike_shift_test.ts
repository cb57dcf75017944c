/**
 * Issue 10, point 1: a spike among the values a row's statistics sweep takes its first shift from
 * (plausible-shapes helper-73). WASM's `first_shift` is the mean of elements 0, m/4, m/2 and
 * 3m/4 of a row's first chunk; a spike there makes that shift poor, and the chunk was measured
 * again in float32 about a mean the spike dominates, where every other deviation is ~ -spike / m
 * and the f32 lane sums holding the spike round each at its ulp: the row's IN mean came out 35 to
 * 251 float32 ulps off. Where a mix takes it through LN and BN means that cancel, y of a narrow
 * row of the same sample was 0.5% off (156x its tolerance); an evaluation on the running buffers
 * a step with momentum 0 left had `mean_weight`'s gradient 652x its tolerance. WASM now measures
 * such a chunk again in float64 (wasm/src/moments.rs `chunk`). WebGPU takes each segment's shift
 * from its first four values cut to x's bits and sums in float32 pairs, but its mix added
 * w_k (mu_k - shift) in float32: where LN and BN means carrying the spikes cancel, y of the narrow
 * row was 1.14x its tolerance (rows of 1024) to 26x (rows of 64); it adds them as pairs now
 * (shaders/common.wgsl `mix_add`). And a spike beyond 8 times the largest of a segment's first
 * four values rounded K's bits in its x - K (1.35x at rows of 1024 with the spike at element 256,
 * 5.4x at rows of 300): such a segment is summed again exactly about its mean (shaders/sn_stats.wgsl
 * `drops_shift_bits`).
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import assert from "node:assert/strict";
import { check } from "./fuzz/attack_fuzz.ts";
import { make as makePlausible } from "./fuzz/plausible_fuzz.ts";
import { make as makeShapes, runSteps } from "./fuzz/plausible_shapes_fuzz.ts";
import { seededRandom } from "../examples/_data.ts";

function normal(seed: number): () => number {
  const r = seededRandom(seed);
  return () => Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r());
}

/**
 * [2, 2, 1, m]: rows (0, 0) and (1, 1) ~N(0, 1); rows (0, 1) and (1, 0) 0.3 with +spike and
 * -spike at element `at`, so that the LN mean of sample 0 and the BN mean of channel 0 carry
 * them with opposite signs and cancel in a mix of equal mean weights (IN's variance alone).
 */
function cancellingSpikes(m: number, spike: number, at: number): LayerCall {
  const g = normal(1);
  const x = Float32Array.from({ length: 4 * m }, () => g());
  x.fill(0.3, m, 3 * m);
  x[m + at] = spike;
  x[2 * m + at] = -spike;
  return {
    layer: "2d",
    shape: [2, 2, 1, m],
    training: true,
    x,
    dy: Float32Array.from({ length: 4 * m }, () => g()),
    state: { mean_weight: new Float32Array(3), var_weight: Float32Array.of(0, -1e30, -1e30) },
    partial: true,
    scales: true,
  };
}

/** A row of 0.3 with a spike at element 0: a step with momentum 0, then an evaluation on x. */
function evaluationOnItsOwnStatistics(m: number, spike: number): LayerCall {
  const g = normal(3);
  const x = new Float32Array(m).fill(0.3);
  x[0] = spike;
  return {
    layer: "2d",
    shape: [1, 1, 1, m],
    options: { eps: 1e-5, momentum: 0 },
    training: true,
    x,
    xEval: x,
    running: true,
    dy: Float32Array.from({ length: m }, () => g()),
    scales: true,
  };
}

rangeTests(
  "a spike among the values a row's first shift is taken from leaves y and the gradients the reference's",
  async (backend) => {
    for (
      const [m, spike, at] of [[1024, 1e7, 0], [1024, 1e7, 256], [300, 1e7, 150], [4096, 3e6, 2048]]
    ) {
      const call = cancellingSpikes(m, spike, at);
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want, `m ${m}, spike ${spike} at ${at}`);
    }
    const call = evaluationOnItsOwnStatistics(1024, 1e7);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want, "the training step");
    // The evaluation on the buffers the backend's step left, beside the reference's on the same
    // buffers: WebGPU's float32 IN variance equalled its running_var there, where the reference's
    // float64 one differs from it by float32's rounding (var_weight's gradient 0 for 2.1e-7),
    // before it summed IN variances that near running_var again as pairs (refine_variance).
    const evaluation: LayerCall = {
      layer: "2d",
      shape: call.shape,
      options: call.options,
      state: { running_mean: got.runningMean!, running_var: got.runningVar! },
      partial: true,
      training: false,
      x: call.x,
      dy: call.dy,
      scales: true,
    };
    const alone = await runBoth(evaluation, backend);
    assertRangeChecks(evaluation, alone.got, alone.want, "the evaluation on the step's buffers");
    // WebGPU's step leaves running_var an ulp from the reference's (its float32 IN variance; the
    // reference rounds its float64 one once), which this evaluation on each one's own buffers
    // amplifies (README, Numerics: a known exception); WASM's are the reference's.
    if (backend === "webgpu") return;
    assertRangeChecks(call, got.evaluation!, want.evaluation!, "the evaluation");
  },
);

/**
 * A row of ~N(0, 1e-3) with spikes `at` (element, value): a step with momentum 0, then an
 * evaluation on x, its IN means on their own running_mean.
 */
function spikesOnItsOwnStatistics(m: number, at: readonly [number, number][]): LayerCall {
  const g = normal(5);
  const x = Float32Array.from({ length: m }, () => 1e-3 * g());
  for (const [i, v] of at) x[i] = v;
  return { ...evaluationOnItsOwnStatistics(m, 0), x, xEval: x };
}

rangeTests(
  "an outlier that holds most of its row's squared deviations leaves y and the running mean the reference's",
  async (backend) => {
    // The f32 lane sums of x - K holding an outlier round every later term at its ulp: the
    // row's mean was float32-accurate to the outlier's size only, which LN and BN means that
    // cancel in a mix kept (y of the narrow row 1.35x its tolerance at rows of 1024 with the
    // spike at element 1, 3.2x at 500, 7.9x at 200, 31x at 64, 7.2x at 12 with the spike at one of
    // first_shift's samples, element 3, where the mean of the four was no poor shift), as did a batch
    // mean of a channel with an outlier of -1.4e5 (`running_mean` 1.5x its tolerance,
    // tests/fuzz/plausible_fuzz.ts seed 2706). WASM now measures a chunk one of whose lanes
    // holds most of its squared deviations again in float64 (`simd::dominated`), and takes a
    // row's first shift as the mean of the middle two of its four samples.
    for (
      const [m, spike, at] of [[1024, 1e7, 1], [500, 1e7, 3], [64, 1e7, 3], [12, 1e6, 3], [
        3000,
        1e7,
        750,
      ]]
    ) {
      const call = cancellingSpikes(m, spike, at);
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want, `m ${m}, spike ${spike} at ${at}`);
    }
    const call = makePlausible(2706);
    const { got, want } = await runBoth(call, backend);
    assert.equal(check(call, got, want), null);
  },
);

rangeTests(
  "two outliers in different lanes of a row leave its mean, running_mean and an evaluation on it the reference's",
  async (backend) => {
    // tests/fuzz/plausible_shapes_fuzz.ts seed 786: a step with momentum 0 on a row of 1026 floats
    // with outliers of -1.9e7 and 1.3e7 at elements 54 and 353, which fall in different lanes of
    // the sweep's sums, each with under 3/4 of its squares (`simd::dominated` took neither): the
    // row's mean, and so running_mean, came out 6 float32 ulps off, and the evaluation on that
    // running_mean (IN means 4e-4 of a rounding of the std from it) had `mean_weight`'s gradient
    // 283x its tolerance. WASM measures a chunk two of whose 16 lanes hold over 3/4 of its
    // squares again in f64 (`simd::two_dominate`).
    const call = makeShapes(786);
    const { got, want } = await runBoth(call, backend);
    assert.equal(check(call, got, want), null);
  },
);

rangeTests(
  "spikes among a row's first four samples leave its mean, running_mean and an evaluation on it the reference's",
  async (backend) => {
    // A row's first shift is the mean of the middle two of four samples (elements 0, m/4, m/2 and
    // 3m/4 of its first 1024 floats); with spikes at two of them it lies halfway to the smaller
    // spike, every deviation about it grows, and a third spike's lane held 55% to 65% of the
    // sweep's squares (`simd::dominated` took it at 3/4), while its partial sums of x - K rounded
    // every later term at the spike's ulp: the mean of tests/fuzz/plausible_shapes_fuzz.ts seed
    // 1139 (a row of 2048 with 1.9e5 at element 0 and 1e4 at 768, a batch average of one batch)
    // came out 116 float32 ulps off, running_mean with it, and the evaluation on it had
    // `mean_weight`'s gradient 1240x its tolerance; below, the same spikes at rows of 2048
    // (chunks of 1024: 154 and 20 ulps) and 1000 (`deviation_sums_f64x2`'s rows: 68 ulps).
    // WASM now weighs a lane against the sweep's squares about its mean (`simd::about_mean`).
    const rows: [number, [number, number][]][] = [
      [2048, [[0, 186819.4375], [768, 10155.97], [1269, -120682.4453125]]],
      [2048, [[0, 186819.4375], [256, 10155.97]]],
      [1000, [[0, 186819.4375], [750, 10155.97], [600, -120682.4453125]]],
    ];
    for (const [m, at] of rows) {
      const call = spikesOnItsOwnStatistics(m, at);
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want, `m ${m}, spikes ${JSON.stringify(at)}`);
      const mean = want.runningMean![0];
      assert.ok(
        Math.abs(got.runningMean![0] - mean) <= 4 * 2 ** -23 * Math.abs(mean),
        `m ${m}: running_mean ${got.runningMean![0]} for ${mean}`,
      );
    }
    // A batch average's call: its steps, finalizeBatchAverage, then the evaluation.
    const call = makeShapes(1139);
    const [got, want] = [await runSteps(call, backend), await runSteps(call, "reference")];
    assert.equal(check(call, got, want), null);
  },
);
