/**
 * WebGPU: SwitchNorm1d elements whose mixed variance lies below float32's range without being 0
 * (issue 10, tests/fuzz/sn1d_quantized_dx_sweep.ts seed 3).
 *
 * Under a variance weight of e^-85 (1.2e-37, normal) on LN beside BN's of ~1, with eps 0 and a
 * channel's BN variance exactly 0 (an evaluation on a running_var of 0, or a constant column in
 * training), the element's mixed variance is the LN term alone, 1.2e-37 x ~2.5e-13 ~ 3e-50: the
 * hot passes' float32 product flushed it to 0, took the std for 0 and made every dx NaN where
 * the float64 reference's std is ~1.7e-25 (y was right: the forward lists channels of variance 0
 * for its wide pass). So too with the roles swapped (a constant sample under LN's weight ~1
 * beside a tiny BN variance weight). The backward now sends such elements to its wide passes
 * (term_var_below_normal, common.wgsl), whose map keeps the variance in a unit of its own.
 *
 * A second member (eps 2^-126 or 2^-125 in place of 0, the lighter term's weight e^-58 to e^-59:
 * its weighted variance ~2^-127, a subnormal beside eps): var + eps is normal, so the test of
 * float32's normal range kept the elements on the hot passes, where a GPU that flushes
 * subnormals (NVIDIA, SwiftShader; not lavapipe) dropped the term from the sum: y 3.30e12 for
 * 2.62e12 and dx with it. Channels and elements whose var + eps lies below 2^-102 take the wide
 * passes now (term_var_near_subnormal, mix_var_near_subnormal), as layout "nd"'s rows do.
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { makeCase } from "./fuzz/sn1d_quantized_dx_sweep.ts";

const ulp = (v: number) => 2 ** (Math.floor(Math.log2(v)) - 23);

interface Shape {
  readonly n: number;
  readonly c: number;
  /** The data's size: values a few float32 spacings apart at X. */
  readonly X: number;
  /** The lighter term's variance logit (the other's is 0). */
  readonly L: number;
  readonly training: boolean;
  /** LN the heavier term: every sample constant (LN variance 0), BN's variance weight e^L. */
  readonly lnHeavy?: boolean;
  /** eps (0 without it). */
  readonly eps?: number;
}

/**
 * eps 0; channel 0's BN variance 0 (running_var 0, and in training a constant column), or with
 * lnHeavy every sample constant over running_var 1e-13.
 */
function tinyMix(o: Shape): LayerCall {
  const { n, c, X, L, training } = o;
  const x = new Float32Array(n * c);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) {
      const k = o.lnHeavy ? (i * 5) % 7 : j === 0 && training ? 0 : (i * 3 + j * 7) % 13;
      x[i * c + j] = X + k * ulp(X);
    }
  }
  const logits = o.lnHeavy ? Float32Array.of(0, L) : Float32Array.of(L, 0);
  return {
    layer: "1d",
    shape: [n, c],
    options: { eps: o.eps ?? 0, momentum: 0.1 },
    state: {
      weight: Float32Array.from({ length: c }, (_, j) => [1e-30, -1, 3][j % 3]),
      bias: Float32Array.from({ length: c }, (_, j) => j % 2),
      mean_weight: logits,
      var_weight: logits,
      running_mean: Float32Array.from({ length: c }, (_, j) => j === 0 ? X : -X),
      running_var: Float32Array.from(
        { length: c },
        (_, j) => o.lnHeavy ? 1e-13 : j === 0 ? 0 : 1,
      ),
    },
    partial: true,
    training,
    x,
    dy: Float32Array.from({ length: n * c }, (_, i) => ((i * 7) % 5 - 2) * 0.3 + 0.1),
    scales: true,
  };
}

rangeTests(
  "SwitchNorm1d: sn1d_quantized_dx_sweep seed 3 (mixed variance ~3e-50, eps 0)",
  async (backend) => {
    const call = makeCase(3);
    const { got, want } = await runBoth(call, backend);
    // The reference's dx is finite and large (~1e23 to 3e24: s ~ 6e24), not NaN.
    for (const v of want.dx) {
      assert.ok(
        Number.isFinite(v) && Math.abs(v) > 1e22,
        `reference dx ${v}`,
      );
    }
    assertRangeChecks(call, got, want);
  },
);

const cases: Shape[] = [
  { n: 4, c: 3, X: 1, L: -85, training: false },
  { n: 4, c: 3, X: 1, L: -80, training: true },
  { n: 4, c: 3, X: 1e-3, L: -87, training: false },
  { n: 4, c: 3, X: 1e-3, L: -85, training: true },
  { n: 8, c: 5, X: 1, L: -85, training: false },
  { n: 3, c: 33, X: 1, L: -85, training: false },
  { n: 4, c: 3, X: 1, L: -85, training: false, lnHeavy: true },
  { n: 4, c: 3, X: 1, L: -85, training: true, lnHeavy: true },
  { n: 4, c: 3, X: 1, L: -59, training: false, eps: 2 ** -126 },
  { n: 40, c: 3, X: 1, L: -58.5, training: false, eps: 2 ** -125 },
  { n: 4, c: 3, X: 1, L: -58, training: false, eps: 2 ** -126, lnHeavy: true },
  { n: 4, c: 3, X: 1, L: -58, training: true, eps: 2 ** -126, lnHeavy: true },
];
for (const o of cases) {
  const kind = o.lnHeavy ? "LN variance 0, BN's weight" : "BN variance 0, LN's weight";
  rangeTests(
    `SwitchNorm1d: ${kind} e^${o.L} (eps ${
      o.eps ? `2^${Math.log2(o.eps)}` : 0
    }, x ~${o.X}, [${o.n}, ${o.c}], ${o.training ? "training" : "evaluation"})`,
    async (backend) => {
      const call = tinyMix(o);
      const { got, want } = await runBoth(call, backend);
      for (const v of want.dx) assert.ok(Number.isFinite(v), `reference dx ${v}`);
      assertRangeChecks(call, got, want);
    },
  );
}

/**
 * An evaluation of samples [1 + k d, 1 - k d] (d 3e-7, k 1 to 3: LN variance ~1e-13 to 1e-12)
 * under LN's variance weight e^-58.7 beside BN's on a running_var of 0, eps 2^-126, the mean on
 * BN's running_mean of 1, gamma 1 and 2: the LN term ~2^-127 to 2^-124 beside eps. The forward
 * listed only channels of variance 0 under eps 0 for its wide pass; sn1d_normalize's hot mix
 * dropped the subnormal terms on SwiftShader: y 3.30e12 for 2.62e12 (6500x its tolerance).
 */
rangeTests(
  "SwitchNorm1d: y of a weighted LN variance below float32's normal range beside eps 2^-126",
  async (backend) => {
    const n = 8, c = 2;
    const call: LayerCall = {
      layer: "1d",
      shape: [n, c],
      options: { eps: 2 ** -126 },
      state: {
        weight: Float32Array.of(1, 2),
        bias: Float32Array.of(0, 0.5),
        mean_weight: Float32Array.of(-1e30, 0),
        var_weight: Float32Array.of(-58.7, 0),
        running_mean: Float32Array.of(1, 1),
        running_var: Float32Array.of(0, 0),
      },
      partial: true,
      training: false,
      x: Float32Array.from(
        { length: n * c },
        (_, i) => Math.fround(1 + (i % 2 === 0 ? 1 : -1) * 3e-7 * (1 + (Math.floor(i / 2) % 3))),
      ),
      dy: Float32Array.from({ length: n * c }, (_, i) => ((i * 7) % 5 - 2) * 0.3 + 0.1),
      scales: true,
    };
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);
