/**
 * Layout "nd" statistics whose variances coincide in exact arithmetic, under NVIDIA's division
 * (a / b as a times an approximate reciprocal of b, tests/_nvidia_division.ts), where IEEE
 * division gives them the same float32 and the backward's differences of them are exactly 0, as
 * the reference's. Under the reciprocal's rounding a quotient by a count whose float32 reciprocal
 * lies far from 1 / k (k = 7: 0.75 of 2^-24 above) comes out an ulp above f32(M2 / k) for a
 * variance of a large mantissa, and `var_weight`'s gradient, a sum of gv (var_k - var), carried
 * that ulp times gv:
 * - a row of 8 values (IN variance M2 / 7) whose LN variance equals its own: 538x its tolerance on
 *   SwiftShader under the emulation (`sn_mix`, `sn_group_stats` and the backward formed M2 / 7 by
 *   `fdiv_n`);
 * - BN groups merged over blocks of samples (P_BN_MERGE: var = M2 / K, K = 2016 rows per
 *   channel), whose rows all have the BN group's variance (blocks list no BN group for
 *   `sn_group_refine`): 9.6x on SwiftShader and on lavapipe under the emulation.
 * The row variances are now `row_variance` and the groups' quotients `fdiv_count`
 * (shaders/common.wgsl): f32(M2 / k) from the first quotient's exact remainder, IEEE's bits.
 * These calls pass with IEEE division before and after; tests/nvidia_division_range_test.ts runs
 * them under the emulation, where each failed before.
 */
import { check } from "./fuzz/attack_fuzz.ts";
import assert from "node:assert/strict";
import {
  assertOutputsClose,
  gradsToScale,
  type LayerCall,
  rangeTests,
  runBoth,
} from "./_range_compare.ts";
import { termScales } from "./_term_scales.ts";
import { Y } from "./_tolerances.ts";
import { softmax } from "./_softmax.ts";
import { backendStep } from "./_backend_step.ts";
import { webgpuTest } from "./_webgpu.ts";
import { seededRandom } from "../examples/_data.ts";
import type { NormProblem } from "../backends/_backend.ts";
import { loadWebGpuBackend } from "../backends/webgpu.ts";
import { ReferenceBackend } from "../backends/reference.ts";
import { makePlan } from "../backends/_webgpu_plan.ts";

/** A row of 8 values: mu + 7t once, mu - t seven times (mean mu, variance 8 t^2 = 56 t^2 / 7). */
function row8(mu: number, t: number): number[] {
  return [mu + 7 * t, ...Array(7).fill(mu - t)];
}

/**
 * [1, 3, 1, 8] about 1000: rows of means -2.5, 0 and 2.5 and variances 8 (45/32)^2 = 15.8203125,
 * 8 (7/32)^2 and 8 (49/32)^2, so that the LN variance (15.8203125 + 0.3828125 + 18.7578125 +
 * 12.5) / 3 equals row 0's; dy on row 0 alone (the others' variances differ from LN's and would
 * set the term scale); BN is each row itself (N = 1).
 */
export const IN_EQUALS_LN: LayerCall = {
  layer: "2d",
  shape: [1, 3, 1, 8],
  options: { eps: 1e-5 },
  training: true,
  x: Float32Array.from([...row8(997.5, 45 / 32), ...row8(1000, 7 / 32), ...row8(1002.5, 49 / 32)]),
  dy: Float32Array.from(
    { length: 24 },
    (_, i) => i < 8 ? [1, -0.5, 0.25, 2, -1, 0.75, -2, 0.5][i] : 0,
  ),
  scales: true,
};

rangeTests("SwitchNorm2d: a row's IN variance M2 / 7 equal to its LN variance", async (backend) => {
  const { got, want } = await runBoth(IN_EQUALS_LN, backend);
  assert.equal(check(IN_EQUALS_LN, got, want), null);
});

const LOGITS = { mean: [0, 0, 0], var: [0, 0, 0] };
const UPDATE = { kind: "movingAverage", momentum: 0.9 } as const;
webgpuTest(
  "WebGPU: BN variances merged over blocks of samples equal to their rows' (M2 / K, K = 2016)",
  async () => {
    // [2016, 2, 1, 2]: every row [1 + a, 1 - a] in either order, a = 1.40625 (variance 2 a^2 =
    // 3.955078125, 12 significant bits: every sum of the merge exact); 64 KiB bindings, two
    // blocks of samples.
    const [n, c, m] = [2016, 2, 2];
    const r = seededRandom(5);
    const x = new Float32Array(n * c * m), dy = new Float32Array(n * c * m);
    for (let row = 0; row < n * c; row++) {
      const s = r() < 0.5 ? 1 : -1;
      x.set([1 + s * 1.40625, 1 - s * 1.40625], row * m);
      dy.set([r() * 2 - 1, r() * 2 - 1], row * m);
    }
    const problem: NormProblem = {
      layout: "nd",
      n,
      c,
      m,
      training: true,
      usingBN: true,
      eps: 1e-5,
    };
    const maxBinding = 65536;
    const mixes = { meanMix: softmax(LOGITS.mean), varMix: softmax(LOGITS.var) };
    const plan = makePlan(problem, { ...mixes, update: UPDATE }, { maxBinding, offsetAlign: 256 });
    assert.ok(plan.statsListOffsets.length > 1, "several blocks");
    await using gpu = await loadWebGpuBackend({ maxBindingBytes: maxBinding });
    const got = await backendStep(gpu, problem, x, dy, LOGITS, UPDATE);
    const want = await backendStep(new ReferenceBackend(), problem, x, dy, LOGITS, UPDATE);
    const weight = new Float32Array(c).fill(1), bias = new Float32Array(c);
    const scales = termScales({
      ...problem,
      x,
      dy,
      weight,
      bias,
      meanLogits: LOGITS.mean,
      varLogits: LOGITS.var,
    });
    assertOutputsClose(got, want, { y: { tol: Y, rows: m }, ...gradsToScale(scales) });
  },
);
