/**
 * Issue 10: a narrow row mixed on LN and BN means ~2^35 to 2^38 times its std that cancel in its
 * mix (a row of std 5e-8 beside a row of std 1e5 in its sample and that row negated and shuffled
 * in its channel, variance weights on IN alone, eps 0). WebGPU kept those means, and summed the
 * mix, in float32 pairs: ~2^-48 of the means, 1.1x to 34x y's tolerance over the narrow row's
 * std (NUMERICS.md, "Groups that cancel, and groups far wider than a member"). Three kinds:
 * narrow rows of values below 2^-21 (scaled rows: sn_wide_normalize's `wide_lo_pair` rounded its
 * parts' rest to one float32), narrow rows above it (sn_mix's `mix_add` pairs), and wide rows of
 * |x| beyond 2^40 (groups in a scaled unit, which sn_group_stats did not list for the refine).
 * sn_group_refine now forms those groups' means in float32 triples (Group.mean_rest, from the
 * members' means with their quotient's rest, Partial.mean_rest), and the mixes that take them
 * add their terms in triples (`mix_lo_triple`, `wide_lo_triple`). WASM passed those (f64), but
 * not where the wide rows' length is not a power of two (the last test): it summed them again
 * about their f64 means, rounding each x - mu.
 *
 * The ratios stay where the float64 reference itself resolves y: its LN and BN means round to
 * 2^-53 of themselves, which from ~2^38 stds on is of y's tolerance (at 2^42, rows of std 1e-8
 * beside rows of 1e6, the reference is 2x to 9x that tolerance from the exact value, which
 * WebGPU now gives).
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { seededRandom, shuffle } from "../examples/_data.ts";
import { normal } from "./_webgpu.ts";

/** Variance weights on IN alone (softmax of [0, -1e30, -1e30]), equal mean weights. */
const IN_VARIANCE = {
  mean_weight: new Float32Array(3),
  var_weight: Float32Array.of(0, -1e30, -1e30),
};

/**
 * [2, 2, 1, m] under eps 0: rows (0, 0) and (1, 1) ~N(0, narrow^2); row (0, 1) ~N(0, wide^2)
 * and row (1, 0) that row negated and shuffled, so that sample 0's LN mean and channel 0's BN
 * mean cancel in row (0, 0)'s mix (and sample 1's and channel 1's in row (1, 1)'s).
 */
function narrowOnCancellingRows(m: number, wide: number, narrow: number, seed: number): LayerCall {
  const r = seededRandom(seed);
  const x = Float32Array.from({ length: 4 * m }, () => narrow * normal(r));
  const w = Float32Array.from({ length: m }, () => wide * normal(r));
  const order = shuffle([...Array(m).keys()], seededRandom(seed + 100));
  for (let i = 0; i < m; i++) {
    x[m + i] = w[i];
    x[2 * m + i] = -w[order[i]];
  }
  return {
    layer: "2d",
    shape: [2, 2, 1, m],
    training: true,
    options: { eps: 0 },
    x,
    dy: Float32Array.from({ length: 4 * m }, () => normal(r)),
    state: IN_VARIANCE,
    partial: true,
    scales: true,
  };
}

/** Each call's [m, wide, narrow, seed], checked on `backend`. */
async function checkAll(
  backend: "wasm" | "webgpu",
  cases: readonly (readonly [number, number, number, number])[],
): Promise<void> {
  for (const [m, wide, narrow, seed] of cases) {
    const call = narrowOnCancellingRows(m, wide, narrow, seed);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want, `m ${m}, wide ${wide}, narrow ${narrow}, seed ${seed}`);
  }
}

rangeTests(
  "a narrow row of values below 2^-21 mixed on the cancelling means of far wider rows keeps y the reference's",
  // Before: WebGPU's y 1.4x to 7.7x its tolerance (rows of 63 and 100: the wide rows' means
  // carry their quotient's rest too, Partial.mean_rest).
  (backend) =>
    checkAll(backend, [
      [64, 1e5, 5e-8, 2],
      [64, 1e5, 5e-8, 7],
      [128, 1e5, 5e-8, 2],
      [100, 1e5, 5e-8, 4],
      [63, 1e5, 5e-8, 7],
    ]),
);

rangeTests(
  "a narrow row above 2^-21 mixed on the cancelling means of rows 2^36 times wider keeps y the reference's",
  // Before: WebGPU's y 1.1x to 2.6x its tolerance.
  (backend) => checkAll(backend, [[64, 1e6, 5e-7, 1], [256, 1e6, 5e-7, 2], [100, 1e6, 5e-7, 4]]),
);

rangeTests(
  "a row mixed on the cancelling means of rows beyond 2^40 keeps y the reference's",
  // Groups in a scaled unit. Before: WebGPU's y 2.1x to 34x its tolerance.
  (backend) =>
    checkAll(backend, [
      [64, 1e13, 5, 1],
      [64, 1e13, 5, 2],
      [64, 1e12, 0.5, 3],
      [63, 1e13, 5, 2],
      [100, 1e13, 2, 4],
    ]),
);

rangeTests(
  "a narrow row mixed on the cancelling means of wide rows of several segments keeps y the reference's",
  // Rows beyond one segment (4096 floats): sn_group_refine merges them again from their segments
  // in triples (`row_mean_triple`), scaled ones (|x| beyond 2^40) too. Before: WebGPU's y 1.5x to
  // 4x its tolerance (3.4x, 2.7x and 1.4x with the other words in triples but these rows' merge
  // in pairs).
  (backend) => checkAll(backend, [[5000, 1e6, 5e-8, 1], [4100, 1e5, 5e-9, 1], [5000, 1e13, 5, 1]]),
);

rangeTests(
  "a narrow row mixed on the cancelling means of wide rows whose length is not a power of two keeps y the reference's",
  // WASM summed such members again about their f64 means (53 significant bits: each x - mu
  // rounded), now about the means' float32 rounding (wasm/src/nd.rs `sum_member_again`).
  // Before: WASM's y 1.1x to 1.9x its tolerance.
  (backend) => checkAll(backend, [[100, 1e6, 1e-7, 2], [100, 1e5, 1e-8, 2], [100, 1e6, 2e-7, 4]]),
);

rangeTests(
  "under SyncSN a narrow row mixed on the cancelling means of far wider rows keeps y the reference's",
  // One replica: the CPU merges the BN groups in float64 and writes them back; it wrote the
  // pair alone, not the third word the replica's group held (backends/_webgpu_sync.ts). Before:
  // WebGPU's y 1.1x and 1.2x its tolerance with the shaders' triples, more without.
  async (backend) => {
    const solo = { size: 1, allGather: (v: Float64Array) => Promise.resolve([v]) };
    for (const [m, wide, narrow, seed] of [[128, 1e5, 5e-8, 2], [63, 1e13, 5, 2]]) {
      const call = narrowOnCancellingRows(m, wide, narrow, seed);
      const synced: LayerCall = { ...call, options: { eps: 0, sync: solo } };
      const { got, want } = await runBoth(synced, backend);
      assertRangeChecks(synced, got, want, `m ${m}, wide ${wide}, narrow ${narrow}, seed ${seed}`);
    }
  },
);
