/**
 * Issue 10: statistics that coincide by shape. With N = 1 a channel's BN group is its one row,
 * and with C = 1 a sample's LN group is its one row, so those statistics are the row's IN ones
 * exactly, and in the float64 reference the logit gradients' differences of them are exactly 0
 * (with N = C = 1 every statistic coincides: `mean_weight`'s and `var_weight`'s gradients are 0).
 * A backend that forms the group's statistic apart from the row's (another float32 split of the
 * same mean, a variance an ulp off) leaves that rounding as the whole gradient. WebGPU's plain
 * rows took the row's statistics for such a group already (sn_bwd_rows' pair_dots); its wide
 * rows (dy beyond 2^40, gamma far from 1, ...) took the group's: attack fuzzer seed 7760
 * (N = C = 1, dy ~9e36, `mean_weight` +-4e-11 where it is 0, 314x its tolerance), and the
 * calls below up to 2600x (mean_weight) and 490x (var_weight). Such rows now take the row's
 * centred mean and variance difference for such a group (shaders/sn_bwd_rows.wgsl `wide_row`).
 * WASM passed every case here before.
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { seededRandom } from "../examples/_data.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";
import assert from "node:assert/strict";

interface Rows {
  /** [N, C, M]: the call is a SwitchNorm2d training call on [N, C, 1, M]. */
  readonly shape: [number, number, number];
  /** Rows are shuffles of one row of M values uniform in (offset - 1, offset + 1) times scale. */
  readonly offset: number;
  readonly dyScale: number;
  readonly gamma: number;
  readonly meanLogits: number[];
  readonly varLogits: number[];
}

/**
 * A training call whose rows are shuffles of one row (with N = 1 or C = 1 the other groups are
 * then alike by their data; with N = C = 1 the one row is every group), dy uniform in
 * (-dyScale, dyScale).
 */
function shuffledRows(seed: number, rows: Rows): LayerCall {
  const r = seededRandom(seed);
  const [n, c, m] = rows.shape;
  const base = Array.from({ length: m }, () => Math.fround(rows.offset + r() * 2 - 1));
  const x = new Float32Array(n * c * m);
  for (let row = 0; row < n * c; row++) {
    const p = base.slice();
    for (let k = m - 1; k > 0; k--) {
      const j = Math.floor(r() * (k + 1));
      [p[k], p[j]] = [p[j], p[k]];
    }
    x.set(p, row * m);
  }
  const dy = Float32Array.from(x, () => (r() * 2 - 1) * rows.dyScale);
  return {
    layer: "2d",
    shape: [n, c, 1, m],
    state: {
      weight: new Float32Array(c).fill(rows.gamma),
      mean_weight: Float32Array.from(rows.meanLogits),
      var_weight: Float32Array.from(rows.varLogits),
    },
    partial: true,
    training: true,
    x,
    dy,
    scales: true,
  };
}

/** Runs each call and lists every one that fails its range checks, after `failed`. */
async function failures(
  backend: "wasm" | "webgpu",
  cases: readonly [string, LayerCall][],
  failed: string[] = [],
): Promise<string[]> {
  for (const [what, call] of cases) {
    const { got, want } = await runBoth(call, backend);
    try {
      assertRangeChecks(call, got, want, what);
    } catch (e) {
      failed.push(String(e));
    }
  }
  return failed;
}

const DROP = -1e30;

rangeTests(
  "training with N = C = 1 (every statistic the row's) gives logit gradients of 0 through the wide rows",
  async (backend) => {
    // The attack fuzzer's call: [1, 1, 2, 1, 2], dy ~9e36, gamma 2e-39, IN's weights below
    // 2^-252 (0 on WebGPU), BN's variance weight 0. Its reference's gradients are 0 exactly.
    const call = make(7760);
    const { got, want } = await runBoth(call, backend);
    assert.ok(want.grads.mean_weight.every((v) => v === 0), "reference mean_weight 0");
    const seed = check(call, got, want);
    const failed = seed === null ? [] : [`attack fuzzer seed 7760: ${seed}`];
    // Before, on WebGPU (mean_weight, in tolerances): seed 7760 314x, then 1600x, 544x, 468x,
    // 17x, 418x and 9.4x.
    const one = (
      m: number,
      dyScale: number,
      gamma: number,
      meanLogits: number[],
      varLogits: number[],
    ) => ({ shape: [1, 1, m], offset: 0, dyScale, gamma, meanLogits, varLogits }) as Rows;
    const cases: [string, LayerCall][] = [
      [
        "dy 1e13, BN's variance alone",
        shuffledRows(8, one(4, 1e13, 1, [DROP, 0, 0], [DROP, DROP, 0])),
      ],
      [
        "gamma 1e30, BN's variance alone",
        shuffledRows(9, one(4, 1, 1e30, [0, 0, 0], [DROP, DROP, 0])),
      ],
      ["dy 1e13 and gamma 1e30", shuffledRows(3, one(4, 1e13, 1e30, [0, 0, 0], [DROP, 0, DROP]))],
      ["rows of 300, dy 1e13", shuffledRows(9, one(300, 1e13, 1, [DROP, 0, 0], [DROP, DROP, 0]))],
      ["rows of 16, dy 1e13", shuffledRows(12, one(16, 1e13, 1, [0.3, -0.2, 1], [DROP, 0, DROP]))],
      [
        "rows of 256, gamma 1e30",
        shuffledRows(5, one(256, 1, 1e30, [0.3, -0.2, 1], [DROP, 0, DROP])),
      ],
    ];
    assert.deepEqual(await failures(backend, cases, failed), []);
  },
);

rangeTests(
  "training with N = 1 or C = 1 takes the row's statistics for its group of one row through the wide rows",
  async (backend) => {
    // Rows that are shuffles of one row (the other groups alike by their data, which the
    // backends sum again), under dy ~1e13 or gamma 1e30. Before, on WebGPU (in tolerances):
    // mean_weight 22x, 32x, 1.7x, and, with the mean dots fixed alone, var_weight 170x and 328x.
    const rows = (
      shape: [number, number, number],
      dyScale: number,
      gamma: number,
      meanLogits: number[],
      varLogits: number[],
    ) => ({ shape, offset: 0, dyScale, gamma, meanLogits, varLogits }) as Rows;
    assert.deepEqual(
      await failures(backend, [
        // mean_weight: IN and BN (N = 1), IN and LN (C = 1) apart.
        [
          "N = 1, gamma 1e30",
          shuffledRows(11, rows([1, 4, 64], 1, 1e30, [0, 0, 0], [0, DROP, DROP])),
        ],
        ["C = 1, gamma 1e30", shuffledRows(12, rows([3, 1, 64], 1, 1e30, [0, 0, 0], [0, 0, 0]))],
        [
          "C = 1, dy 1e13",
          shuffledRows(13, rows([3, 1, 64], 1e13, 1, [0.3, -0.2, 1], [0, DROP, DROP])),
        ],
        // var_weight under a variance weight of 0 on the third term.
        [
          "N = 1, var IN and BN",
          shuffledRows(14, rows([1, 4, 64], 1, 1e30, [0, 0, 0], [0, DROP, 0])),
        ],
        [
          "C = 1, var IN and LN",
          shuffledRows(15, rows([3, 1, 64], 1, 1e30, [0, 0, 0], [0, 0, DROP])),
        ],
      ]),
      [],
    );
  },
);

rangeTests(
  "training on alike rows under a variance weight of 0 takes their variance pairs through the wide rows",
  async (backend) => {
    // N = 1 (BN is the row) beside an LN group of shuffles of one row, C = 1 beside such a BN
    // group: the group's variance was its float32 value under a variance weight of 0 (the wide
    // rows took the pairs sn_group_refine formed only without one). Before, on WebGPU
    // (var_weight, in tolerances, with the row's statistics for the group of one row): 430x,
    // 384x and 224x.
    const rows = (
      shape: [number, number, number],
      dyScale: number,
      varLogits: number[],
    ) => ({ shape, offset: 0, dyScale, gamma: 1e30, meanLogits: [0, 0, 0], varLogits }) as Rows;
    assert.deepEqual(
      await failures(backend, [
        ["N = 1, IN's variance weight 0", shuffledRows(21, rows([1, 4, 64], 1, [DROP, 0, 0]))],
        ["C = 1, IN's variance weight 0", shuffledRows(22, rows([3, 1, 64], 1, [DROP, 0, 0]))],
        ["N = 1, dy 1e13", shuffledRows(23, rows([1, 4, 64], 1e13, [-200, 0, 0]))],
      ]),
      [],
    );
  },
);
