/**
 * Issue 10: an LN or BN mean that cancels to ~0 beside far narrower members (rows of std 1.7e7
 * with means 1e6 + 5 and -1e6 beside a row of std 0.3) consists of its members' float32 rounding,
 * which a narrow row mixed on it takes as its x - mu. Both backends sum such groups' members again
 * (WASM in float64, `nd::refine_near_zero_groups`; WebGPU in exact float32 pairs,
 * shaders/sn_group_refine.wgsl). WebGPU summed one group per workgroup, 1/64 of its floats per
 * thread, so it took only groups of at most 2^21 floats (llvmpipe ends an invocation's loops after
 * 65535 iterations): groups of three rows of 2.5M floats kept dgamma and `mean_weight`'s gradient
 * 2.5e-5 relative off (within GRAD's 1e-4, which tests/wasm_range_fuzz_cases_test.ts holds them
 * to). It now sums a segment per thread, any group size: 1.1e-7 and 0.
 */
import { assertClose } from "./_close.ts";
import { type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { seededRandom } from "../examples/_data.ts";

/**
 * Three rows of `m` floats, [1, 3, 1, m] (LN: the sample's rows) or [3, 1, 1, m] (BN: the
 * channel's samples): one of std 0.3, two of values +-3e7 mirrored (mean exactly 1e6 + 5 and
 * -1e6), so that the group's mean cancels to ~0; the narrow row's dy O(1), the others' 1e-3.
 */
function cancellingGroup(group: "ln" | "bn", m: number): LayerCall {
  const r = seededRandom(3);
  const x = new Float32Array(3 * m), dy = new Float32Array(3 * m);
  for (let k = 0; k < m; k++) x[k] = r() - 0.5;
  const mirrored = (at: number, mean: number) => {
    for (let k = 0; k < m / 2; k++) {
      const v = (r() * 2 - 1) * 3e7;
      x[at + 2 * k] = v + mean;
      x[at + 2 * k + 1] = -v + mean;
    }
  };
  mirrored(m, 1e6 + 5);
  mirrored(2 * m, -1e6);
  for (let k = 0; k < m; k++) dy[k] = r() * 2 - 1;
  for (let k = m; k < 3 * m; k++) dy[k] = (r() * 2 - 1) * 1e-3;
  return {
    layer: "2d",
    shape: group === "ln" ? [1, 3, 1, m] : [3, 1, 1, m],
    options: { eps: 1e-5, usingBN: group === "bn" },
    // The narrow row's mean mixed from LN (or BN), its variance from IN.
    state: group === "ln"
      ? { mean_weight: Float32Array.of(0, 0), var_weight: Float32Array.of(2, -30) }
      : { mean_weight: Float32Array.of(-30, -30, 2), var_weight: Float32Array.of(2, -30, -30) },
    partial: true,
    training: true,
    x,
    dy,
  };
}

/** The group's mean summed again leaves float32 rounding of the gradient sums (~1e-7). */
const REFINED = {
  atol: 0,
  rtol: 1e-6,
  why: "with the group's mean summed again exactly, dgamma and the logit gradients carry only " +
    "their own float32 sums' rounding (~1e-7 relative here); the group's float32 mean left 2.5e-5",
};

rangeTests(
  "a group of 7.5M floats whose mean cancels to ~0 beside a narrow member is summed again",
  async (backend) => {
    for (const group of ["ln", "bn"] as const) {
      const { want, got } = await runBoth(cancellingGroup(group, 2_500_000), backend);
      assertClose(got.grads.weight, want.grads.weight, REFINED, `${group}: dgamma`);
      assertClose(got.grads.mean_weight, want.grads.mean_weight, REFINED, `${group}: mean_weight`);
    }
  },
);
