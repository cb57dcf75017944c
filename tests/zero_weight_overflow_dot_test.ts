/**
 * A mixing weight of exactly 0 in float64 (logits ~745 or more apart) reaches the logits' gradients
 * only as 0 times its dot product, dL/dw_k = sum dL/dvar var_k (or dL/dmu mu_k). Under a mixed
 * variance of ~1e-136 (eps 0: a std of ~1e-68) dL/dvar is ~1e273 per row, and that dot's float64
 * sum overflows (+Infinity - Infinity = NaN beside a `running_var` of 3e38), though it is a finite
 * sum of finite terms: the float64 reference, as PyTorch in float64, multiplied it by the weight
 * of 0 and gave every `var_weight` gradient NaN, where exactly the weight-0 logit's gradient is 0
 * and the others +-Infinity in float32 (attack fuzzer seed 271848, WASM right, WebGPU 0 within
 * GRAD_SCALED). Training calls whose zero-weight LN or BN variance is ~1e76 gave WASM NaN as the
 * reference did. The layer now leaves such a dot out (`dropZeroWeightDots`) where it alone is
 * not finite (README, Numerics), and the judge's term scales leave out a weight (or Jacobian
 * entry) of 0 beside a row's infinite scale.
 */
import assert from "node:assert/strict";
import { dropZeroWeightDots, softmax } from "../_importance.ts";
import { make } from "./fuzz/attack_fuzz.ts";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";

const f32 = (...v: number[]) => Float32Array.from(v);
/** Each value repeated `m` times (constant rows). */
const rows = (values: number[], m: number) =>
  Float32Array.from(values.flatMap((v) => new Array<number>(m).fill(v)));

Deno.test("dropZeroWeightDots leaves out only a weight-0 dot that alone is not finite", () => {
  const w = softmax([1.3, -138.6, -1e30]).weights; // [1, 1.7e-61, 0]
  assert.equal(w[2], 0);
  assert.deepEqual(Array.from(dropZeroWeightDots([0, -1.77e189, NaN], w)), [0, -1.77e189, 0]);
  assert.deepEqual(Array.from(dropZeroWeightDots([0, 1, -Infinity], w)), [0, 1, 0]);
  // A positive weight's non-finite dot (NaN x or dy): every dot stays, NaN propagates.
  assert.equal(dropZeroWeightDots([NaN, 1, Infinity], w)[2], Infinity);
  // Below `zeroBelow` (WebGPU's cut) a weight counts as 0 too.
  assert.deepEqual(Array.from(dropZeroWeightDots([0, Infinity, 1], w, 2 ** -100)), [0, 0, 1]);
  assert.ok(Number.isNaN(softmax([1.3, -138.6, -1e30]).vjp([0, -1.77e189, NaN])[0]));
});

/**
 * Seed 271848's state and data on SwitchNorm3d [2, 3, 2, 1, 8] or SwitchNorm2d [2, 3, 4, 4]
 * (the same rows): constant rows (IN variance 0, IN variance weight ~1) under an LN variance
 * weight of 1.7e-61 and a BN one of 0 beside a `running_var` of 3e38.
 */
function seedCall(layer: "2d" | "3d"): LayerCall {
  const call = make(271848);
  return layer === "3d" ? call : { ...call, layer: "2d", shape: [2, 3, 4, 4] };
}

/**
 * A training step whose LN variance (~1e76: channels 1e38 and -1e-38) has weight 0, the IN one
 * (constant rows, 0) weight ~1 and the BN one (~1e-91 in channel 1) weight 1.7e-61: a std of
 * ~1e-76, LN's mean weight 1 puts x - mu at ~5e37.
 */
function trainingCall(layer: "2d" | "3d"): LayerCall {
  return {
    layer,
    shape: layer === "3d" ? [2, 2, 2, 1, 4] : [2, 2, 2, 4],
    options: { eps: 0 },
    partial: true,
    training: true,
    scales: true,
    state: {
      weight: f32(1, 1),
      bias: f32(0, 0),
      mean_weight: f32(-1e30, 0, -1e30),
      var_weight: f32(0, -1e30, -140),
    },
    x: rows([1e38, -1e-38, 1e38 + 2e31, Math.fround(-1e-38) + 2 ** -149], 8),
    dy: rows([1e37, -1e37, -1e37, 1e37], 8),
  };
}

/** SwitchNorm1d: sample 0's LN variance ~1e-90 at weight 1, BN's ~1e76 at weight 0. */
function training1d(): LayerCall {
  return {
    layer: "1d",
    shape: [2, 2],
    options: { eps: 0 },
    partial: true,
    training: true,
    scales: true,
    state: {
      weight: f32(3e38, 3e38),
      bias: f32(0, 0),
      mean_weight: f32(-1e30, 0),
      var_weight: f32(0, -1e30),
    },
    x: f32(0, 1.4e-45, 2e38, -2e38),
    dy: f32(3e38, -3e38, 1, 1),
  };
}

/**
 * Sparse SN at radius 0 (sparsemax): one-hot weights, IN's variance of 0 under eps 0 (a std of 0),
 * so that the logits' gradients are exactly 0 (sparsemax's Jacobian at a vertex is 0), but the
 * judge's term scales (tests/_term_scales.ts) multiplied that Jacobian's 0 by a row's infinite
 * float64 scale: NaN, which no value passed.
 */
function sparseOneHot(): LayerCall {
  return {
    ...trainingCall("2d"),
    options: { eps: 0, sparse: true },
    state: {
      weight: f32(1, 1),
      bias: f32(0, 0),
      mean_weight: f32(-1e30, 1, -1e30),
      var_weight: f32(1, -1e30, 1.4e-45),
    },
  };
}

// The exact gradients, in float32: the weight-0 logit's is 0 (w_k (a_k - <w, a>) with w_k 0 and
// a_k finite); the others are w_j (a_j - <w, a>), +-~1e128 (seed) and +-~1e151 (training) of
// opposite signs (they sum to 0), where the reference's float64 dots of the positive weights are
// finite and far from 0; 1d: w_LN w_BN (a_LN - a_BN) = 0 with w_BN 0.
const cases: [string, () => LayerCall, number[]][] = [
  ["SwitchNorm3d evaluation (attack seed 271848)", () => seedCall("3d"), [Infinity, -Infinity, 0]],
  ["SwitchNorm2d evaluation", () => seedCall("2d"), [Infinity, -Infinity, 0]],
  ["SwitchNorm3d training", () => trainingCall("3d"), [-Infinity, 0, Infinity]],
  ["SwitchNorm2d training", () => trainingCall("2d"), [-Infinity, 0, Infinity]],
  ["SwitchNorm1d training", training1d, [0, 0]],
  ["SwitchNorm2d sparse (one-hot) training", sparseOneHot, [0, 0, 0]],
];

for (const [name, call, exact] of cases) {
  rangeTests(
    `${name}: a weight-0 variance dot that overflows float64 leaves var_weight's gradients finite or +-Infinity, not NaN`,
    async (backend) => {
      const c = call();
      const { want, got } = await runBoth(c, backend);
      assert.deepEqual([...want.grads.var_weight].map((v) => v + 0), exact, "the reference");
      if (backend === "wasm") {
        assert.deepEqual([...got.grads.var_weight].map((v) => v + 0), exact, "WASM");
      }
      assertRangeChecks(c, got, want);
    },
  );
}
