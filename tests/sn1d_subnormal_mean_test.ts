/**
 * SwitchNorm1d (layout "1d") with LN or BN means that are themselves subnormal float32 values
 * (below 2^-126, ~1.18e-38), which a GPU that flushes subnormals (NVIDIA; SwiftShader here) lost
 * in the forward's statistics, before the backward ran (helper-195's open item (1), NUMERICS.md):
 * sn1d_stats' quotient of a cancelling line's exact sum (rows [1, -1, 1.5e-38]: 5e-39) was flushed
 * and the backward's mean dots took the mean as 0: `mean_weight`'s gradient 0 for -+2.3e-19 under
 * a running_mean of 0 and gamma 1e20 (2.4e3x its tolerance). Such lines and groups now carry the
 * mean in a fine word in the unit 2^FINE_MEAN_UNIT (sn1d_stats, sn_group_stats' group_fine_1d over
 * tiles weighted by their counts), and wide_element forms the centred means there
 * (sn1d_bwd_element.wgsl centred_1d_fine). Evaluations and training steps, rows of 3 and of 40
 * (two column tiles), columns of 40 (two row tiles), checkerboards of +-1 bordered by 2e-38 to
 * 7e-38; each call sums its values in an order where the float64 reference is exact (the small
 * values after the large ones cancel). Before the fix 7 of the 11 calls failed on SwiftShader (with
 * NVIDIA's division emulated, tests/_nvidia_division.ts); all pass after there and on lavapipe
 * and WASM (before too).
 */
import assert from "node:assert/strict";
import { check } from "./fuzz/attack_fuzz.ts";
import { type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { seededRandom } from "../examples/_data.ts";

const f = Math.fround;

/**
 * A SwitchNorm1d call on x, dy of `shape` [n, c] under gamma 1e20 (so that the mean dots' terms
 * stand out), beta 0, the variance logits 0, `running_mean` 0 and `running_var` 1.
 */
function gammaHugeCall(
  x: Float32Array,
  dy: Float32Array,
  shape: [number, number],
  training: boolean,
  mw: number[],
): LayerCall {
  const c = shape[1];
  return {
    layer: "1d",
    shape,
    options: { eps: 1e-5, momentum: 0.1 },
    state: {
      weight: new Float32Array(c).fill(1e20),
      bias: new Float32Array(c),
      mean_weight: Float32Array.from(mw),
      var_weight: new Float32Array(2),
      running_mean: new Float32Array(c),
      running_var: new Float32Array(c).fill(1),
    },
    partial: true,
    training,
    x,
    dy,
  };
}

/** Rows [1, -1, t] (plus rows like it), evaluation or training, running_mean 0, gamma 1e20. */
function tripleCall(t: number, training: boolean, mw: number[]): LayerCall {
  const n = 4, c = 3;
  const r = seededRandom(7);
  const x = new Float32Array(n * c), dy = new Float32Array(n * c);
  for (let i = 0; i < n; i++) {
    const s = i % 2 ? -1 : 1;
    x[i * c] = s, x[i * c + 1] = -s, x[i * c + 2] = f(t);
    for (let j = 0; j < c; j++) dy[i * c + j] = f(r() * 2 - 1);
  }
  return gammaHugeCall(x, dy, [n, c], training, mw);
}

/** [8, 8]: a 6 x 6 checkerboard of +-1 bordered by `border(i, j)`; dy 0 on the border. */
function boardCall(border: (i: number, j: number) => number, mw: number[]): LayerCall {
  const r = seededRandom(5);
  const x = new Float32Array(64), dy = new Float32Array(64);
  for (let i = 0; i < 8; i++) {
    for (let j = 0; j < 8; j++) {
      const inner = i < 6 && j < 6;
      x[i * 8 + j] = inner ? ((i + j) % 2 ? -1 : 1) : f(border(i, j));
      const d = f(r() * 2 - 1);
      dy[i * 8 + j] = inner ? d : 0;
    }
  }
  return gammaHugeCall(x, dy, [8, 8], true, mw);
}

/**
 * [n, c] from `value(i, j)`, dy uniform in (-1, 1): lines over several tiles (32 x 32), whose
 * groups' fine words sn_group_stats forms from the tiles' (weighted by their counts).
 */
function gridCall(
  n: number,
  c: number,
  value: (i: number, j: number) => number,
  training: boolean,
  mw: number[],
): LayerCall {
  const r = seededRandom(11);
  const x = new Float32Array(n * c), dy = new Float32Array(n * c);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) {
      x[i * c + j] = f(value(i, j));
      dy[i * c + j] = f(r() * 2 - 1);
    }
  }
  return gammaHugeCall(x, dy, [n, c], training, mw);
}

/**
 * Rows of 40 over two column tiles: +-1 pairs, then 1.5e-37 at columns 38 and 39 (LN means
 * 7.5e-39; the float64 reference sums them after the pairs cancel, where it is exact).
 */
const twoTileRow = (i: number, j: number) => j >= 38 ? 1.5e-37 : (i + j) % 2 ? -1 : 1;
/** Columns of 40 over two row tiles: +-1, row 38 1.5e-37, row 39 0 (BN means 3.75e-39). */
const twoTileColumn = (i: number, j: number) =>
  i === 38 ? 1.5e-37 : i === 39 ? 0 : (i % 2 ? -1 : 1) * (j % 2 ? -1 : 1);

const CALLS: Record<string, LayerCall> = {
  "evaluation, rows [1, -1, 1.5e-38]": tripleCall(1.5e-38, false, [0, 0]),
  "evaluation, rows [1, -1, 3e-38]": tripleCall(3e-38, false, [0, 0]),
  "evaluation, rows [1, -1, -1.5e-38], LN weighted": tripleCall(-1.5e-38, false, [1, 0]),
  "training, rows [1, -1, 1.5e-38]": tripleCall(1.5e-38, true, [0, 0]),
  "training, board bordered by 3e-38": boardCall(() => 3e-38, [0, 0]),
  "training, board bordered by -3e-38 and 7e-38": boardCall(
    (i, j) => (i + j) % 2 ? -3e-38 : 7e-38,
    [0, 0],
  ),
  "training, board bordered by 2e-38 and 4e-38, LN weighted": boardCall(
    (i) => i % 2 ? 2e-38 : 4e-38,
    [0.5, -0.5],
  ),
  "evaluation, [4, 40]: LN means 7.5e-39 over two tiles": gridCall(4, 40, twoTileRow, false, [
    0,
    0,
  ]),
  "training, [4, 40]: LN means 7.5e-39 over two tiles": gridCall(4, 40, twoTileRow, true, [0, 0]),
  "training, [40, 3]: BN means 3.75e-39 over two tiles": gridCall(40, 3, twoTileColumn, true, [
    0,
    0,
  ]),
  "training, [40, 3]: BN means 3.75e-39, BN weighted": gridCall(40, 3, twoTileColumn, true, [
    -1,
    1,
  ]),
};

rangeTests(
  "SwitchNorm1d mean_weight gradients of subnormal LN and BN means",
  async (backend) => {
    const failed: string[] = [];
    for (const [name, c] of Object.entries(CALLS)) {
      const layerCall = { ...c, scales: true };
      const { got, want } = await runBoth(layerCall, backend);
      const err = check(layerCall, got, want);
      if (err) failed.push(`${name}: ${err}`);
    }
    assert.deepEqual(failed, []);
  },
);
