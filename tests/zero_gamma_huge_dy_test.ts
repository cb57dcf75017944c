/**
 * A gamma of 0 under |dy| of 2^64 or more in layout "1d", attack fuzzer seed 234465: SwitchNorm1d
 * [2, 2] in training, eps 1e-5, every x 1e10, gamma [0, 0], dy [2e38, 6e-39, -2e38, 6.3e-39].
 * dx is exactly 0 (gamma dy = 0), but sn1d_bwd_dx lifted dy by 2^64 wherever dy gamma lies below
 * 2^-64 (its lift for a dy gamma that a GPU flushing subnormals makes 0), which dy gamma = 0 always
 * does: dy 2^64 passed float32's range, and Infinity times gamma 0 gave dx NaN (lavapipe and
 * SwiftShader alike). Only where no sum of the element's row or column carries exponents (the
 * sums are 0 here: gamma 0 makes gm and gv 0, and dy and dy xhat cancel), else
 * sn1d_bwd_wide_dx writes the channel again. The lift now also needs |dy| below 2^63.
 * Layout "nd" (sn_bwd_coef's gs = gamma s, 0 for gamma 0) had no such lift: its calls here pass
 * before and after.
 */
import assert from "node:assert/strict";
import { type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";

type Call = LayerCall & { dy: Float32Array; x: Float32Array; state: Record<string, Float32Array> };

/** The seed's call, changed by `f`. */
function seed(f: (c: Call) => void): () => LayerCall {
  return () => {
    const call = structuredClone(make(234465)) as Call;
    f(call);
    return call;
  };
}

/**
 * A call of `shape` under `gamma` (beta 0, the mixing logits 0, running_var 1) whose sums all
 * cancel to 0: x takes `xs` in turn along the rows (dim 0 of "1d", the last dim of "nd"; times
 * c + 1 in channel c of "1d"), dy D, D, -D, -D in turn.
 */
function cancelling(
  shape: number[],
  training: boolean,
  gamma: number[],
  D: number,
  xs: number[],
  eps = 1e-5,
): () => LayerCall {
  return () => {
    const len = shape.reduce((a, b) => a * b);
    const c = shape[1];
    const layer = shape.length === 2 ? "1d" : shape.length === 4 ? "2d" : "3d";
    const k = layer === "1d" ? 2 : 3;
    const at = (i: number) => layer === "1d" ? Math.floor(i / c) : i;
    return {
      layer,
      shape,
      options: { eps, momentum: 0.1 },
      state: {
        weight: Float32Array.from(gamma),
        bias: new Float32Array(c),
        mean_weight: new Float32Array(k),
        var_weight: new Float32Array(k),
        running_mean: new Float32Array(c),
        running_var: new Float32Array(c).fill(1),
      },
      partial: true,
      training,
      x: Float32Array.from(
        { length: len },
        (_, i) => xs[at(i) % xs.length] * (layer === "1d" ? 1 + i % c : 1),
      ),
      dy: Float32Array.from({ length: len }, (_, i) => [D, D, -D, -D][at(i) % 4]),
      scales: true,
    };
  };
}

const zeros = (n: number, negative = false) => new Array(n).fill(negative ? -0 : 0);

const CASES: [string, () => LayerCall][] = [
  ["attack fuzzer seed 234465", seed(() => {})],
  [
    "seed 234465, dy +-1e20",
    seed((c) => {
      c.dy = c.dy.map((v) => Math.abs(v) > 1 ? Math.sign(v) * 1e20 : v);
    }),
  ],
  [
    "seed 234465, gamma -0",
    seed((c) => {
      c.state.weight = Float32Array.from([-0, -0]);
    }),
  ],
  ["1d [4, 2] training, dy +-3e38", cancelling([4, 2], true, [0, 0], 3e38, [1, 2])],
  ["1d [4, 2] training, dy +-1e20", cancelling([4, 2], true, [0, 0], 1e20, [1, 2])],
  [
    "1d [4, 2] training, dy +-1.5e19 (below 2^64)",
    cancelling([4, 2], true, [0, 0], 1.5e19, [1, 2]),
  ],
  ["1d [4, 2] evaluation, dy +-3e38", cancelling([4, 2], false, [0, 0], 3e38, [1, 2])],
  ["1d [4, 2] evaluation, constant x", cancelling([4, 2], false, [0, 0], 3e38, [5])],
  [
    "1d [4, 3] training, gamma 0, -0, 0, eps 0",
    cancelling([4, 3], true, [0, -0, 0], 3e38, [1, 2], 0),
  ],
  ["1d [4, 2] training, eps 1e-30", cancelling([4, 2], true, [0, 0], 3e38, [1, 2], 1e-30)],
  ["1d [4, 2] training then evaluation", () => {
    const call = cancelling([4, 2], true, [0, 0], 3e38, [1, 2])();
    return { ...call, running: true, xEval: call.x.map((v) => v * 3) };
  }],
  ["1d [64, 40] training, dy +-3e38", cancelling([64, 40], true, zeros(40, true), 3e38, [1, 2])],
  ["1d [64, 40] evaluation, dy +-2e20", cancelling([64, 40], false, zeros(40), 2e20, [1, 2])],
  [
    "1d [4, 2] training, gamma 1.4e-45 (subnormal)",
    cancelling([4, 2], true, [1e-45, 1e-45], 3e38, [1, 2]),
  ],
  ["2d [2, 2, 1, 4] training, dy +-3e38", cancelling([2, 2, 1, 4], true, [0, 0], 3e38, [1, 2])],
  ["2d [2, 2, 1, 4] evaluation, constant x", cancelling([2, 2, 1, 4], false, [0, 0], 3e38, [1e10])],
  [
    "2d [2, 3, 1, 1024] training, dy +-3e38",
    cancelling([2, 3, 1, 1024], true, zeros(3), 3e38, [1, 2]),
  ],
  [
    "3d [2, 2, 2, 2, 2] training, dy +-1e20",
    cancelling([2, 2, 2, 2, 2], true, [0, -0], 1e20, [1, 2]),
  ],
];

for (const [name, make] of CASES) {
  rangeTests(`gamma 0 under huge dy, ${name}`, async (backend) => {
    const call = make();
    const { got, want } = await runBoth(call, backend);
    assert.equal(check(call, got, want), null);
  });
}
