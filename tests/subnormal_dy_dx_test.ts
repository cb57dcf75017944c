/**
 * Subnormal dy beside normal ones in a row that takes layout "nd"'s wide dx pass
 * (sn_bwd_wide_dx: a variance weight below float32's normal range, scaled statistics, ...),
 * attack fuzzer seed 4893 (issue 10). That pass takes dy in the row's dy unit 2^D by its bits,
 * scale2(dy, -D), which gives 0 below float32's normal range: with D = 0 (dy ~1e-31 beside
 * them) a subnormal dy was 0 before its product with gs' (up to 2^64) brought it back into range.
 * An evaluation of a constant row of 0 under gamma s 1e5 with dy ~5e-42 gave dx 0 where the
 * reference has ~5e-37. Such dy are now taken 2^64 higher, then brought back.
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";
import { make as sweepMake } from "./fuzz/subnormal_dy_sweep.ts";
import { make as partialMake } from "./fuzz/partial_zero_sweep.ts";

/**
 * [2, 2, 1, 8], an evaluation of constant rows on BN's mean (running_mean 0.5, running_var 1)
 * whose variance weights are IN's and BN's halves beside LN's ~8e-39 (logits 87, 0, 87: a
 * weight below float32's normal range takes the wide passes), gamma 1e6 and -3e5: dx = dy gamma
 * s, with dy alternately +-3e-31 and subnormal (-8e-42 .. 8e-42).
 */
function constantRows(): LayerCall {
  const len = 32;
  return {
    layer: "2d",
    shape: [2, 2, 1, 8],
    options: { eps: 1e-5 },
    state: {
      weight: Float32Array.of(1e6, -3e5),
      bias: new Float32Array(2),
      mean_weight: Float32Array.of(-1e30, -1e30, 0),
      var_weight: Float32Array.of(87, 0, 87),
      running_mean: Float32Array.of(0.5, 0.5),
      running_var: Float32Array.of(1, 1),
    },
    partial: true,
    training: false,
    x: Float32Array.from({ length: len }, (_, i) => Math.floor(i / 8) * 0.25),
    dy: Float32Array.from(
      { length: len },
      (_, i) => i % 4 === 1 ? 3e-31 * (i % 8 === 1 ? 1 : -1) : (((i * 7) % 17) - 8) * 1e-42,
    ),
    scales: true,
  };
}

rangeTests(
  "attack fuzzer seed 4893: subnormal dy beside dy ~1e-31 under gamma s 1e5",
  async (backend) => {
    const call = make(4893);
    const { got, want } = await runBoth(call, backend);
    assert.equal(check(call, got, want), null);
  },
);

rangeTests(
  "SwitchNorm2d: a wide row's subnormal dy times gamma s 1e6 stays in dx",
  async (backend) => {
    const call = constantRows();
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);

// Two of the sweep's (tests/fuzz/subnormal_dy_sweep.ts): 127, an evaluation of [1, 2, 1, 8]
// (dx 0 for -2.7e-31 before), and 80, training of a row of 5000 (1327 dx off by up to 9%).
for (const seed of [127, 80]) {
  rangeTests(`subnormal dy sweep seed ${seed}`, async (backend) => {
    const call = sweepMake(seed);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  });
}

/**
 * The sweep's call of `seed` with its subnormal dy set to 0 (normal dy ~1e-37 alone) and each
 * row cut to its first `m` elements (all of them without `m`).
 */
function normalDy(seed: number, m?: number): LayerCall {
  const call = sweepMake(seed);
  const [n, c, h, w] = call.shape;
  const len = m ?? w;
  const rows = n * c * h;
  const x = new Float32Array(rows * len);
  const dy = new Float32Array(rows * len);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < len; i++) {
      x[r * len + i] = call.x[r * w + i];
      const d = call.dy![r * w + i];
      dy[r * len + i] = Math.abs(d) < 2 ** -126 ? 0 : d;
    }
  }
  return { ...call, shape: [n, c, h, len], x, dy };
}

// Sweep seed 324 at [4, 2, 1, 8], an evaluation: a row of 0 beside its sample's row of 1e-30
// under gamma 1e30 (LN's dL/dvar ~1e51), whose mean difference to the LN mean, -5e-31, times
// GvL's mantissa fell below float32's normal range in the row's unit 1 (sn_bwd_coef kept only
// exponents above 0 apart): the row's dx 0 where the reference has 1.5e19.
rangeTests("subnormal dy sweep seed 324: a row of 0 keeps its LN dL/dvar term", async (backend) => {
  const call = normalDy(324, 8);
  const { got, want } = await runBoth(call, backend);
  assertRangeChecks(call, got, want);
});

// Sweep seed 287, an evaluation of [2, 2, 1, 16] (gamma 1e30 over a std of ~4e9, dy ~1e-37):
// the wide dx pass's B' ~2^-131 in a unit set by dy gs's bound was 0 (dx without its dL/dvar
// term), and the pair rows' s^2 S2' ~4e-46 was 0 (`var_weight`'s gradient -4.5e-18 for
// -8.6e-7).
rangeTests("subnormal dy sweep seed 287: dL/dvar under dy ~1e-37 and s ~2e-10", async (backend) => {
  const call = normalDy(287);
  const { got, want } = await runBoth(call, backend);
  assertRangeChecks(call, got, want);
});

// Sweep seed 47, an evaluation of [2, 3, 1, 8] rows of 0 whose mixed mean is a running_mean of
// 1 under a mean weight of 8.2e-39 (subnormal): S2 = sum dy (x - mu) = -mu S1 ~8.7e-39 lay below
// float32's normal range in the row's unit 1, and dgamma = s S2 came out 0 where the reference
// has 8.7e-24 (s 1e15 under eps 1e-30). Such a mix's mean (mean_tiny) is now taken in a unit of
// its own (fine_mean) by the wide reduce.
rangeTests(
  "subnormal dy sweep seed 47: a mean of 8.2e-39 keeps dgamma 8.7e-24",
  async (backend) => {
    const call = sweepMake(47);
    const { got, want } = await runBoth(call, backend);
    assert.ok(Math.abs(want.grads!.weight[0]) > 1e-24);
    assertRangeChecks(call, got, want);
  },
);

/**
 * An evaluation of features of 0 whose mixed mean is BN's running_mean of 1 under a mean weight
 * of ~8.2e-39 (logits 87, 87, 0; SwitchNorm1d's 87, 0: 1.6e-38), gamma -3e20 (factor-wide) and 1 over a
 * std of 1e-15 (eps 1e-30, running_var 0), dy ~0.02: S2 = -mu S1 lies below float32's normal
 * range, dgamma = s S2 does not.
 */
function tinyMean(layer: "2d" | "3d" | "1d", gamma: number): LayerCall {
  const shape = layer === "1d" ? [4, 2] : layer === "3d" ? [2, 2, 1, 1, 8] : [2, 2, 1, 8];
  const len = shape.reduce((a, b) => a * b, 1);
  return {
    layer,
    shape,
    options: { eps: 1e-30 },
    state: {
      weight: Float32Array.of(gamma, 1),
      bias: new Float32Array(2),
      mean_weight: Float32Array.from(layer === "1d" ? [87, 0] : [87, 87, 0]),
      var_weight: Float32Array.from(layer === "1d" ? [1.3, 0] : [1.3, 1.3, 0]),
      running_mean: Float32Array.of(1, 0),
      running_var: Float32Array.of(0, 1),
    },
    partial: true,
    training: false,
    x: new Float32Array(len),
    dy: Float32Array.from({ length: len }, (_, i) => i % 5 === 0 ? -0.02 : 0.02 * (i % 3 + 0.25)),
    scales: true,
  };
}

// Under gamma 1 (not factor-wide) layout "nd"'s rows of 0 took the pair rows, whose S2 = sum dy
// (x - mu) a GPU that flushes subnormals took as 0 (mu ~8.2e-39): dgamma 0 for -2.0e-24 on
// SwiftShader (and the H200); they take wide_row now (zero_s2_tiny).
for (const layer of ["2d", "3d", "1d"] as const) {
  for (const gamma of [-3e20, 1]) {
    rangeTests(
      `a ${layer} mean of ~8e-39 over features of 0 keeps dgamma (gamma ${gamma})`,
      async (backend) => {
        const call = tinyMean(layer, gamma);
        const { got, want } = await runBoth(call, backend);
        assert.ok(Math.abs(want.grads!.weight[0]) > 5e-25);
        assertRangeChecks(call, got, want);
      },
    );
  }
}

type Layer = "1d" | "2d" | "3d";

/** The shape of n samples of c channels (features) of m elements each in `layer`. */
function shapeOf(layer: Layer, n: number, c: number, m: number): number[] {
  return layer === "1d" ? [n * m, c] : layer === "3d" ? [n, c, 1, 1, m] : [n, c, 1, m];
}

function tinyDy(len: number): Float32Array {
  return Float32Array.from({ length: len }, (_, i) => i % 5 === 0 ? -0.02 : 0.02 * (i % 3 + 0.25));
}

/**
 * A training step of [2, 2] samples of 8 whose channel 0 is all 0 and channel 1 ~1 to 2.2, under
 * LN's mean and variance weight e^`logit` beside IN's (SwitchNorm1d: beside BN's), eps 1e-30: the
 * rows of 0 mix a mean w_LN mu_LN of ~1e-38 (e^-87) or ~5e-39 (e^-88, subnormal) over a variance
 * of ~4e-39 + eps (s ~1e15), so that y = -mu s ~1e-23 and dgamma = -mu s S1 ~1e-24.
 */
function tinyLnMean(layer: Layer, gamma: number, logit: number): LayerCall {
  const n = 2, c = 2, m = 8, len = n * c * m;
  const x = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    const channel = layer === "1d" ? i % c : Math.floor(i / m) % c;
    if (channel === 1) x[i] = 1 + ((i * 7) % 5) * 0.3;
  }
  const logits = layer === "1d" ? [logit, 0] : [0, logit, -1e30];
  return {
    layer,
    shape: shapeOf(layer, n, c, m),
    options: { eps: 1e-30 },
    state: {
      weight: Float32Array.of(gamma, 1),
      bias: new Float32Array(2),
      mean_weight: Float32Array.from(logits),
      var_weight: Float32Array.from(logits),
    },
    partial: true,
    training: true,
    x,
    dy: tinyDy(len),
    scales: true,
  };
}

// Layout "nd" under e^-88 (a subnormal mean: the pair rows, as above, dgamma 0 for -1.1e-24 on
// SwiftShader); SwitchNorm1d under e^-87, whose hot per-element passes mixed with the weights'
// float32 values alone (mix_add_hot): w (mu_LN - mu_BN) was subnormal for some samples and
// flushed, dgamma -1.48e-24 for -2.90e-24 on SwiftShader. A call with a mean weight below 2^-100
// takes the wide passes for every element now (hasTinyWeight below 2^-100).
for (const [layer, logit] of [["2d", -88], ["3d", -88], ["1d", -87], ["1d", -88]] as const) {
  for (const gamma of [1, -3e20]) {
    rangeTests(
      `training: ${layer} rows of 0 under an LN mean weight e^${logit} keep dgamma (gamma ${gamma})`,
      async (backend) => {
        const call = tinyLnMean(layer, gamma, logit);
        const { got, want } = await runBoth(call, backend);
        assert.ok(Math.abs(want.grads!.weight[0]) > 5e-25);
        assertRangeChecks(call, got, want);
      },
    );
  }
}

/**
 * An evaluation of rows [1, 0, ..., 0] (SwitchNorm1d: sample 0 [1, 0]) with dy 0 at the 1, whose
 * IN mean of weight e^-87 (SwitchNorm1d: LN's) makes a mixed mean of 2e-39 (8.2e-39) beside a
 * `running_mean` of 0 of weight ~1, variance weights alike over a `running_var` of 0, eps 1e-30
 * (s 1e15): dgamma = -mu s S1 over the 0s, ~-5e-25.
 */
function oneOutlier(layer: Layer, gamma: number): LayerCall {
  const n = 2, c = 2, m = 8, len = n * c * m;
  const x = new Float32Array(len);
  const dy = tinyDy(len);
  for (let i = 0; i < len; i++) {
    if (layer === "1d" ? i === 0 : i % m === 0) {
      x[i] = 1;
      dy[i] = 0;
    }
  }
  const logits = layer === "1d" ? [-87, 0] : [-87, -1e30, 0];
  return {
    layer,
    shape: shapeOf(layer, n, c, m),
    options: { eps: 1e-30 },
    state: {
      weight: Float32Array.of(gamma, 1),
      bias: new Float32Array(2),
      mean_weight: Float32Array.from(logits),
      var_weight: Float32Array.from(logits),
      running_mean: new Float32Array(2),
      running_var: new Float32Array(2),
    },
    partial: true,
    training: false,
    x,
    dy,
    scales: true,
  };
}

// Layout "nd": such a row's mean is lost in the float32 mix (its hi 1 and lo -1 cancel, and the
// rest is subnormal): S2 = -mu S1 was 0, dgamma 0 for -4.9e-25 on lavapipe and SwiftShader alike,
// under gamma 1 (pair rows) and -3e20 (wide_row): wide_row now takes S2 - (mu - mu_f) S1 in the
// fine mean's unit. SwitchNorm1d: dgamma 0 for -2.1e-25 on SwiftShader (hasTinyWeight below 2^-100).
for (const layer of ["2d", "3d", "1d"] as const) {
  for (const gamma of [1, -3e20]) {
    rangeTests(
      `a ${layer} row [1, 0, ..., 0] whose subnormal mean is a share of weight e^-87 keeps dgamma (gamma ${gamma})`,
      async (backend) => {
        const call = oneOutlier(layer, gamma);
        const { got, want } = await runBoth(call, backend);
        assert.ok(Math.abs(want.grads!.weight[layer === "1d" ? 1 : 0]) > 1e-25);
        assertRangeChecks(call, got, want);
      },
    );
  }
}

/**
 * Subnormal data (README, Numerics: every finite float32 input is in the promise): samples of
 * -6e-40 to 1.6e-39, which a GPU's loads keep but its arithmetic flushes; the WebGPU passes take
 * rows whose largest |x| lies below 2^-21 in units of their own, by x's bits (scale2), where
 * they are normal. Training and evaluation (`running_mean` 0 and 1e-39, `running_var` 1e-40 and
 * 0), eps 0, 2^-126 and 1e-5, even and uneven mixing.
 */
function subnormalData(
  layer: "2d" | "1d",
  eps: number,
  training: boolean,
  logits: number[],
): LayerCall {
  const n = 2, c = 2, m = 8, len = n * c * m;
  return {
    layer,
    shape: shapeOf(layer, n, c, m),
    options: { eps },
    state: {
      weight: Float32Array.of(1, 2),
      bias: Float32Array.of(0.5, 0),
      mean_weight: Float32Array.from(logits.slice(0, layer === "1d" ? 2 : 3)),
      var_weight: Float32Array.from(logits.slice(0, layer === "1d" ? 2 : 3)),
      running_mean: Float32Array.of(0, 1e-39),
      running_var: Float32Array.of(1e-40, 0),
    },
    partial: true,
    training,
    x: Float32Array.from(
      { length: len },
      (_, i) => ((i * 7) % 5 - 2) * 3e-40 + (i % 3 === 0 ? 1e-39 : 0),
    ),
    dy: Float32Array.from({ length: len }, (_, i) => i % 5 === 0 ? -0.5 : 0.3 * (i % 3 + 0.25)),
    scales: true,
  };
}

for (const layer of ["2d", "1d"] as const) {
  rangeTests(
    `${layer}: subnormal data give the reference's y, dx and gradients`,
    async (backend) => {
      for (const eps of [0, 2 ** -126, 1e-5]) {
        for (const training of [true, false]) {
          for (const logits of [[0, 0, 0], [5, -3, 1]]) {
            const call = subnormalData(layer, eps, training, logits);
            const { got, want } = await runBoth(call, backend);
            assertRangeChecks(
              call,
              got,
              want,
              `eps ${eps}, ${training ? "training" : "evaluation"}, logits ${logits}`,
            );
          }
        }
      }
    },
  );
}

// Sums of dy whose normal dy lie below 2^-102 beside subnormal ones: sn_bwd_reduce's S1 = sum dy
// in units of 1 read the subnormal dy as 0 on a GPU that flushes them (SwiftShader, NVIDIA; not
// lavapipe), and gamma s S1 / m carries their loss into every dx of the row. Subnormal dy sweep
// seed 5099, an evaluation of [1, 2, 1, 16] rows of 0 (the mean on IN, the variance on LN, eps
// 1, gamma 1e30): dx 9.2359e-8 for 9.2399e-8 (23 of 32 beyond the tolerance); partial zero sweep
// seed 5095, an evaluation of a row of 8 zeros under s 1e15 (eps 1e-30, the mean on LN), dy
// ~1e-37 beside one of 3.4e-39: dx 1.1994e-22 for 1.1951e-22 (8 of 8). Such a segment (its
// largest |dy| below 2^-102) is now listed for sn_bwd_wide_reduce, which sums it in the unit of
// that dy.
rangeTests("subnormal dy sweep seed 5099: sum dy keeps its subnormal dy", async (backend) => {
  const call = sweepMake(5099);
  const { got, want } = await runBoth(call, backend);
  assertRangeChecks(call, got, want);
});

rangeTests(
  "partial zero sweep seed 5095: sum dy keeps a subnormal dy beside ~1e-37",
  async (backend) => {
    const call = partialMake(5095);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);

/**
 * SwitchNorm1d [n, 2], mean and variance on BN beside LN's e^-87, eps 1e-30, gamma 1 and 1e6: dy
 * of every `every`-th element ~+-1e-37 (`normal`; without it, 0), the others `sub` (one sign, 0.5
 * to 1 times it; 0 without it), or with `cancel` each odd row's dy -X + 5e-39 of the even row's X
 * above it (X ~1e-37: their float32 sums in pairs fall below float32's normal range).
 */
function sn1dLowDy(
  n: number,
  training: boolean,
  dyOf: (row: number, col: number, i: number) => number,
): LayerCall {
  const c = 2, len = n * c;
  return {
    layer: "1d",
    shape: [n, c],
    options: { eps: 1e-30 },
    state: {
      weight: Float32Array.of(1, 1e6),
      bias: new Float32Array(c),
      mean_weight: Float32Array.of(-87, 0),
      var_weight: Float32Array.of(-87, 0),
      running_mean: Float32Array.of(0, 1),
      running_var: Float32Array.of(1, 0),
    },
    partial: true,
    training,
    x: Float32Array.from({ length: len }, (_, i) => ((i * 7) % 11) / 5 - 1),
    dy: Float32Array.from({ length: len }, (_, i) => dyOf(Math.floor(i / c), i % c, i)),
    scales: true,
  };
}

// Subnormal dy beside dy ~1e-37 in a column: every subnormal dy took its tile line to
// sn1d_bwd_wide_reduce (its own unit 2^-126), but an element of dy ~1e-37 kept the unit 1, and
// grad_add brought the line's sums to the larger unit, where each later subnormal dy was again
// subnormal: flushed on SwiftShader (and NVIDIA), dbeta 2.69e-37 for 1.89e-36 ([300, 2], 17x
// its tolerance; lavapipe right). And where dy ~1e-37 alone cancel in pairs (X, -X + 5e-39) the
// float32 sums in units of 1 fell below float32's normal range: dbeta 0 for 7.5e-37 (7.6x).
// Every dy below 2^-102 takes the unit 2^-126 now (sn1d_bwd_element.wgsl: dy_is_low).
for (const training of [false, true]) {
  const mode = training ? "training" : "evaluation";
  rangeTests(
    `SwitchNorm1d: subnormal dy beside dy ~1e-37 keep dbeta (${mode})`,
    async (backend) => {
      const call = sn1dLowDy(
        300,
        training,
        (r, col, i) =>
          i % 20 === 0
            ? (r % 4 < 2 ? 1 : -1) * (1 + (i % 7) / 7) * 1e-37
            : (0.5 + ((i * 5 + col) % 11) / 22) * 1e-38,
      );
      const { got, want } = await runBoth(call, backend);
      assert.ok(Math.abs(want.grads!.bias[0]) > 5e-37);
      assertRangeChecks(call, got, want);
    },
  );
  rangeTests(
    `SwitchNorm1d: dy ~1e-37 whose sums cancel below float32's normal range keep dbeta (${mode})`,
    async (backend) => {
      const x = (r: number, col: number) => Math.fround((1 + ((r * 2 + col) * 3 % 7) / 7) * 1e-37);
      const call = sn1dLowDy(
        300,
        training,
        (r, col) => r % 2 === 0 ? x(r, col) : Math.fround(-x(r - 1, col) + 5e-39),
      );
      const { got, want } = await runBoth(call, backend);
      assert.ok(Math.abs(want.grads!.bias[0]) > 5e-37);
      assertRangeChecks(call, got, want);
    },
  );
}
