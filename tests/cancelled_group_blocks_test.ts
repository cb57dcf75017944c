/**
 * Issue 10: an LN or BN mean that cancels to ~0 beside the std of its members (rows of std 1.7e7
 * with means 1e6 + 5 and -1e6), where a row of std 0.3 is mixed on it, consists of the members'
 * rounding, which the narrow row takes as its x - mu. In unit 0 WebGPU lists such groups for
 * sn_group_refine, which sums their members again (tests/group_refine_test.ts). In groups of |x|
 * beyond 2^40 the members are scaled rows, which sn_wide_stats sums again about a shift, and
 * sn_group_stats has formed the LN and BN means from them in exact pairs since aed1251: before it,
 * this data times 2^24 had y 104x `Y` on WebGPU (README listed it as a known exception until
 * now). Here the data of tests/group_refine_test.ts in samples (LN) or channels (BN) of 64
 * floats, times 1, 2^24 and 2^40, on both backends; and, in calls of several blocks of samples
 * on WebGPU, LN groups of |x| beyond 2^40, and in unit 0 (each block's listed for sn_group_refine
 * since session 41; BN groups there are not, NUMERICS.md).
 */
import assert from "node:assert/strict";
import {
  assertOutputsClose,
  assertRangeChecks,
  gradsToScale,
  type LayerCall,
  rangeTests,
  runBoth,
} from "./_range_compare.ts";
import { termScales } from "./_term_scales.ts";
import { backendStep } from "./_backend_step.ts";
import { Y } from "./_tolerances.ts";
import { softmax } from "./_softmax.ts";
import { assertClose } from "./_close.ts";
import { webgpuTest } from "./_webgpu.ts";
import { seededRandom } from "../examples/_data.ts";
import type { Backend, NormProblem } from "../backends/_backend.ts";
import { loadWebGpuBackend } from "../backends/webgpu.ts";
import { ReferenceBackend } from "../backends/reference.ts";
import { makePlan } from "../backends/_webgpu_plan.ts";

/**
 * [n, 3, 1, m] times `scale`: under LN (`group` "ln") each sample's channel 0 a row of std 0.3,
 * channels 1 and 2 values +-3e7 mirrored about 1e6 + 5 and -1e6, so that the sample's mean
 * cancels to ~0; under BN each channel's samples 0, 1, 2 (mod 3) so. The narrow rows' dy O(1),
 * the others' 1e-3.
 */
function cancellingGroups(group: "ln" | "bn", n: number, m: number, scale: number) {
  const r = seededRandom(3), c = 3;
  const x = new Float32Array(n * c * m), dy = new Float32Array(n * c * m);
  for (let s = 0; s < n; s++) {
    for (let ch = 0; ch < c; ch++) {
      const kind = group === "ln" ? ch : s % 3, at = (s * c + ch) * m;
      if (kind === 0) {
        for (let k = 0; k < m; k++) {
          x[at + k] = (r() - 0.5) * scale;
          dy[at + k] = r() * 2 - 1;
        }
        continue;
      }
      const mean = kind === 1 ? 1e6 + 5 : -1e6;
      for (let k = 0; k < m / 2; k++) {
        const v = (r() * 2 - 1) * 3e7;
        x[at + 2 * k] = (v + mean) * scale;
        x[at + 2 * k + 1] = (-v + mean) * scale;
      }
      for (let k = 0; k < m; k++) dy[at + k] = (r() * 2 - 1) * 1e-3;
    }
  }
  return { x, dy, shape: [n, c, 1, m], eps: 1e-5 * scale * scale };
}

/** The narrow rows' mean mixed from LN (or BN), their variance from IN (logits). */
const LOGITS = {
  ln: { mean: [0, 0], var: [2, -30] },
  bn: { mean: [-30, -30, 2], var: [2, -30, -30] },
} as const;

/** A training step of `cancellingGroups` on a SwitchNorm2d, with its term scales. */
function layerCall(group: "ln" | "bn", n: number, m: number, scale: number): LayerCall {
  const { x, dy, shape, eps } = cancellingGroups(group, n, m, scale);
  return {
    layer: "2d",
    shape,
    options: { eps, usingBN: group === "bn" },
    state: {
      mean_weight: Float32Array.from(LOGITS[group].mean),
      var_weight: Float32Array.from(LOGITS[group].var),
    },
    partial: true,
    training: true,
    x,
    dy,
    scales: true,
  };
}

rangeTests(
  "groups of |x| beyond 2^40 whose mean cancels beside a narrow member keep the reference's gradients",
  async (backend) => {
    for (const group of ["ln", "bn"] as const) {
      for (const e of [0, 24, 40]) {
        const call = layerCall(group, 6, 64, 2 ** e);
        const { got, want } = await runBoth(call, backend);
        assertRangeChecks(call, got, want, `${group}, x times 2^${e}`);
      }
    }
  },
);

/** The term scales of an LN step of `problem` under LOGITS.ln, gamma 1 and beta 0. */
function lnScales(problem: NormProblem, x: Float32Array, dy: Float32Array) {
  return termScales({
    ...problem,
    x,
    dy,
    weight: new Float32Array(problem.c).fill(1),
    bias: new Float32Array(problem.c),
    meanLogits: LOGITS.ln.mean,
    varLogits: LOGITS.ln.var,
  });
}

/** A step of `problem` (LN or BN, with IN) on `backend`: `backendStep` under LOGITS' mixing. */
function step(backend: Backend, problem: NormProblem, x: Float32Array, dy: Float32Array) {
  return backendStep(backend, problem, x, dy, LOGITS[problem.usingBN ? "bn" : "ln"], UPDATE);
}

const UPDATE = { kind: "movingAverage", momentum: 0.9 } as const;

// In blocks of samples LN groups of |x| beyond 2^40 need no sn_group_refine: their members,
// scaled rows, are summed again by sn_wide_stats about a shift with the quotient's rest. Not held
// here (a known exception, NUMERICS.md): BN groups of such rows, merged from the blocks' parts in
// pairs (y up to 3.2x `Y`); groups in unit 0: the test below.
webgpuTest(
  "WebGPU: LN groups of |x| beyond 2^40 that cancel beside a narrow member keep the reference's gradients in calls of several blocks of samples",
  async () => {
    // 64 KiB bindings (tests/webgpu_row_blocks_test.ts): 3600 rows run in two blocks.
    const maxBinding = 65536;
    await using gpu = await loadWebGpuBackend({ maxBindingBytes: maxBinding });
    const reference = new ReferenceBackend();
    for (const e of [24, 40]) {
      const { x, dy, eps } = cancellingGroups("ln", 1200, 64, 2 ** e);
      const problem: NormProblem = {
        layout: "nd",
        n: 1200,
        c: 3,
        m: 64,
        training: true,
        usingBN: false,
        eps,
      };
      const mixes = { meanMix: softmax(LOGITS.ln.mean), varMix: softmax(LOGITS.ln.var) };
      const plan = makePlan(problem, { ...mixes, update: UPDATE }, {
        maxBinding,
        offsetAlign: 256,
      });
      assert.ok(plan.statsListOffsets.length > 1, "several blocks");
      const want = await step(reference, problem, x, dy);
      const got = await step(gpu, problem, x, dy);
      const scales = lnScales(problem, x, dy);
      assertOutputsClose(got, want, {
        what: `x times 2^${e}`,
        y: { tol: Y, rows: problem.m },
        ...gradsToScale(scales),
      });
    }
  },
);

/** The outputs of `step` on WebGPU in blocks of samples (64 KiB bindings) and on the reference. */
async function inBlocks(problem: NormProblem, x: Float32Array, dy: Float32Array) {
  const maxBinding = 65536;
  const group = problem.usingBN ? "bn" : "ln";
  const mixes = { meanMix: softmax(LOGITS[group].mean), varMix: softmax(LOGITS[group].var) };
  const plan = makePlan(problem, { ...mixes, update: UPDATE }, { maxBinding, offsetAlign: 256 });
  assert.ok(plan.statsListOffsets.length > 1, "several blocks");
  await using gpu = await loadWebGpuBackend({ maxBindingBytes: maxBinding });
  return {
    got: await step(gpu, problem, x, dy),
    want: await step(new ReferenceBackend(), problem, x, dy),
  };
}

/** LN's mean summed again leaves float32 rounding of the gradient sums. */
const REFINED = {
  atol: 0,
  rtol: 1e-5,
  why: "with each block's cancelling LN means summed again, dgamma and the logit gradients carry " +
    "only their float32 sums' rounding (8e-8 relative here); the groups' float32 means left " +
    "dgamma and var_weight's gradient 8e-3, mean_weight's 1.8e-2 relative off",
};

// LN groups in unit 0 in calls of several blocks of samples: each block's groups are listed in a
// list of the block's and summed again by sn_group_refine over the block's rows. Before, no group
// was listed in blocks: the narrow rows' y 79x `Y` here (training and evaluation). Not held
// (NUMERICS.md): BN groups, whose members span the blocks (y 12.9x `Y`, running_mean 189x
// `RUNNING` on this data under BN; 1.34x and 5.9x times 2^24 and 2^40).
webgpuTest(
  "WebGPU: LN groups whose mean cancels beside a narrow member keep the reference's y and gradients in calls of several blocks of samples",
  async () => {
    const { x, dy, eps } = cancellingGroups("ln", 1200, 64, 1);
    for (const training of [true, false]) {
      const problem: NormProblem = {
        layout: "nd",
        n: 1200,
        c: 3,
        m: 64,
        training,
        usingBN: false,
        eps,
      };
      const { got, want } = await inBlocks(problem, x, dy);
      const what = training ? "training" : "evaluation";
      if (!training) {
        assertOutputsClose(got, want, { what, y: { tol: Y, rows: problem.m } });
        continue;
      }
      const scales = lnScales(problem, x, dy);
      assertOutputsClose(got, want, {
        what,
        y: { tol: Y, rows: problem.m },
        ...gradsToScale(scales),
      });
      assertClose(got.grads.weight, want.grads.weight, REFINED, `${what}: dgamma`);
      assertClose(got.grads.mean_weight, want.grads.mean_weight, REFINED, `${what}: mean_weight`);
      assertClose(got.grads.var_weight, want.grads.var_weight, REFINED, `${what}: var_weight`);
    }
  },
);
