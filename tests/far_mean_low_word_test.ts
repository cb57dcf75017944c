/**
 * Issue 10: mean differences far below the mix's unit whose size lies in a mean's low word.
 * Constant rows x0, x1, x2 (~1e-37) in one sample under eps 1e10: the LN mean is x1 + 9.3e-46
 * exactly, its float32 high word x1 itself and that rest its low word (rows of their own unit
 * ~2^-123). WebGPU's far lanes (sn_bwd_rows, far_mean_lane) took each mean as the float32 sum of
 * its words in the lane's unit, where that rest lies below the high word's last bit: mu_LN -
 * mu_IN was 0 in that row, and `mean_weight`'s gradient lost its share, w_LN gm (mu_LN - mu_IN)
 * ~-4.6e-8 (attack fuzzer seed 81166, a training step: -5.5e-9 for 4.06e-8, 952x its tolerance;
 * seed 80235, an evaluation: 1.1e-43 for 1.6e-31, 500x). WASM passed both. Both backends against
 * the float64 reference, with the seeds' own checks and on constructed members of the kind.
 */
import assert from "node:assert/strict";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";

for (const seed of [81166, 80235]) {
  rangeTests(
    `constant rows whose LN mean differs from a row's below its high word's last bit give the logit gradients as the reference (attack fuzzer seed ${seed})`,
    async (backend) => {
      const call = make(seed);
      const { got, want } = await runBoth(call, backend);
      assert.equal(check(call, got, want), null);
    },
  );
}

/**
 * Seed 81166's call with constant rows of -3a, -2a and -a (float32) in its one sample, a on a
 * scale of its own: the middle row's LN mean rounds to that row in float32, with a rest of
 * its own (asserted). Training or evaluation, 2d ([1, 3, 1, 5000]) or 3d (the seed's shape).
 */
function constantRows(scale: number, layer: "2d" | "3d", training: boolean): LayerCall {
  const base = make(81166);
  const m = 5000;
  const rows = [-3, -2, -1].map((k) => Math.fround(k * scale));
  const mean = (rows[0] + rows[1] + rows[2]) / 3;
  assert.ok(Math.fround(mean) === rows[1] && mean !== rows[1]);
  const x = new Float32Array(3 * m);
  for (let c = 0; c < 3; c++) x.fill(rows[c], c * m, (c + 1) * m);
  return {
    ...base,
    layer,
    shape: layer === "2d" ? [1, 3, 1, m] : base.shape,
    training,
    running: training,
    x,
  };
}

for (const scale of [1.4e-37, 1e-35, 1.1e-30]) {
  for (const layer of ["2d", "3d"] as const) {
    for (const training of [true, false]) {
      rangeTests(
        `${layer}: constant rows of -3a, -2a and -a (a = ${scale}) give the logit gradients as the reference (${
          training ? "training" : "evaluation"
        })`,
        async (backend) => {
          const call = constantRows(scale, layer, training);
          const { got, want } = await runBoth(call, backend);
          assertRangeChecks(call, got, want);
        },
      );
    }
  }
}

/**
 * The evaluations above lost their mixed mean's low bits on GPUs that flush subnormal operands
 * (SwiftShader here, NVIDIA's): the exact products of a mean weight with a mean difference
 * (pair_times) cut the weight into 12-bit parts, and a weight below ~2^-102 (here e^-87 =
 * 1.6e-38, the BN term's, times `running_mean` 1e30) leaves a low part below float32's normal
 * range, flushed to 0: the product up to 2^-12 of itself off (y 1.4e-4 relative off, 3.56x its
 * tolerance). Two more passes take that product: layout "nd"'s wide rows whose words cancel
 * (a constant row at -w `running_mean`, mu ~0 beside it: sn_wide_normalize's exact pair of lo)
 * and layout "1d"'s elements near the mix's mean (d_pairs_1d: a sample [0, -2 w
 * `running_mean`], its LN mean 0's distance from mu). Both failed on SwiftShader before
 * (weight_times, shaders/common.wgsl); lavapipe keeps the subnormal part.
 */
function farTermCall(layer: "1d" | "2d", rm: number, gamma: number): LayerCall {
  const terms = layer === "1d" ? 2 : 3;
  const logits = Float32Array.from({ length: terms }, (_, k) => k === 0 ? 87 : 0);
  // The lighter weights (float64, as the reference takes them): e^-87 / (1 + (terms - 1) e^-87).
  const w = Math.exp(-87) / (1 + (terms - 1) * Math.exp(-87));
  const c = layer === "1d" ? 2 : 1;
  const x = layer === "1d"
    ? Float32Array.of(0, Math.fround(-2 * w * rm), 0, Math.fround(-2 * w * rm))
    : new Float32Array(8).fill(Math.fround(-w * rm));
  return {
    layer,
    shape: layer === "1d" ? [2, 2] : [1, 1, 1, 8],
    options: { eps: 1 },
    state: {
      weight: new Float32Array(c).fill(gamma),
      bias: new Float32Array(c),
      mean_weight: logits,
      var_weight: new Float32Array(terms),
      running_mean: new Float32Array(c).fill(rm),
      running_var: new Float32Array(c).fill(1),
    },
    partial: true,
    training: false,
    x,
    dy: new Float32Array(x.length).fill(1),
    scales: true,
  };
}

for (const layer of ["2d", "1d"] as const) {
  for (const [rm, gamma] of [[-1e30, 1e20], [3e38, 1]]) {
    rangeTests(
      `${layer}: a mean weight of e^-87 on a running_mean of ${rm} whose product cancels beside the data keeps its low bits (evaluation, gamma ${gamma})`,
      async (backend) => {
        const call = farTermCall(layer, rm, gamma);
        const { got, want } = await runBoth(call, backend);
        assertRangeChecks(call, got, want);
      },
    );
  }
}

/**
 * The same kind where the LN mean is held in its fine word (below 2^-100 of its group's unit,
 * which a row of +-v pairs, v = 1 or 2^66, sets): rows 0 (the pairs), x1, x1 and 2 x1 - ulp
 * (x1 = -6.7e-38), whose LN mean x1 - 2.8e-45 lies half an ulp of x1 from the row x1, below the
 * fine word's 24 bits (Group.fine_rest keeps it now): `mean_weight`'s gradient 2x the reference's
 * on WebGPU before, 2070x its tolerance.
 */
function constantRowsBesidePairs(v: number, layer: "2d" | "3d", training: boolean): LayerCall {
  const base = make(81166);
  const m = 5000;
  const x1 = Math.fround(-6.666666794156988e-38);
  const ulp2 = 2 ** (Math.floor(Math.log2(Math.abs(2 * x1))) - 23);
  const rows = [0, x1, x1, Math.fround(2 * x1 - ulp2)];
  const x = new Float32Array(4 * m);
  for (let c = 1; c < 4; c++) x.fill(rows[c], c * m, (c + 1) * m);
  for (let k = 0; k < m; k += 2) [x[k], x[k + 1]] = [v, -v];
  return {
    ...base,
    layer,
    shape: layer === "2d" ? [1, 4, 1, m] : [1, 4, 2, 1, m / 2],
    state: {
      ...base.state,
      weight: Float32Array.of(1e-30, 3e38, 3e38, 1e-10),
      bias: new Float32Array(4),
      running_mean: new Float32Array(4),
      running_var: Float32Array.of(1, 1, 1, 1),
    },
    training,
    running: false,
    x,
    xEval: undefined,
    dy: new Float32Array(4 * m).fill(-2e38),
  };
}

for (const [v, name] of [[1, "1"], [2 ** 66, "2^66"]] as const) {
  for (const layer of ["2d", "3d"] as const) {
    for (const training of [true, false]) {
      rangeTests(
        `${layer}: constant rows whose LN mean, held in its fine word beside a row of +-${name} pairs, lies half an ulp from a row give the logit gradients as the reference (${
          training ? "training" : "evaluation"
        })`,
        async (backend) => {
          const call = constantRowsBesidePairs(v, layer, training);
          const { got, want } = await runBoth(call, backend);
          assert.equal(check(call, got, want), null);
        },
      );
    }
  }
}
