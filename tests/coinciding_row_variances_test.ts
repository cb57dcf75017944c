/**
 * Issue 10, README's known exception "coinciding statistics" (NUMERICS.md: Coinciding statistics
 * (both backends)): a training step whose rows' variances lie ~1e-5 of themselves from their LN
 * group's, far closer than rows of independent data (~sqrt(2 / M) apart), so that `var_weight`'s
 * gradient, a sum of gv (var_k - var), is a small difference of float32-held variances. Attack
 * fuzzer seed 123846: SwitchNorm2d [1, 2, 1, 1000], every x +-3.4e38 (a row's variance is
 * 3.4e38^2 (1 - d^2) M / (M - 1), d its mean over 3.4e38: 0.004 and -0.008, so that the rows'
 * variances lie 1.2e-5 and 6.0e-5 of themselves from the LN variance), the variance mixed from LN
 * (0.214) and BN (0.786; N = 1: BN's variance is the row's own, exactly). WASM takes such dots
 * again in float64 (`refine_dots`) and passes. WebGPU's rows of one segment keep float32 IN and
 * group variances in training (sn_bwd_rows' pair_dots; only rows of several segments, evaluations
 * with BN, and groups whose members lie within 2^-20 of their variance read pairs), so the
 * difference carries their float32 rounding: `var_weight`'s gradient 2.0242e-5 for 2.0134e-5,
 * 1.05x its term-scaled tolerance (0.54 of a float32 ulp of the variances in var_LN - var_r); the
 * same rows times 2^-128 (unscaled rows, ~+-1) give 2.0041e-5, 0.90x, the gradient of the float32
 * roundings of the IN and LN variances to its sixth digit. The term scale holds a difference of
 * two statistics to a far smaller error than one rounding of either (the backends' differences
 * are meant to be free of cancellation), so this is the documented exception, not a judge issue;
 * the test holds WebGPU's gradient to the exception's size, 2^-22 (four float32 roundings) of
 * each variance the difference takes, and every other result of the call (and WASM's whole call)
 * to the range checks.
 */
import { rangeTests, runBoth } from "./_range_compare.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";
import { softmax } from "./_softmax.ts";
import assert from "node:assert/strict";

const U32 = 2 ** -24;

/**
 * The bound on a backend's `var_weight` gradient of a layout "nd" training call with N = 1 that
 * takes each variance difference var_k - var_j from float32 variances: per logit k,
 * 4 U32 sum_r v_k |gv_r| sum_(j != k) v_j (var_k,r + var_j,r) (2^-22, four float32 roundings, of
 * each variance a difference takes; var_k - var_k is 0), gv_r the row's dL/dvar, all in float64
 * from the call's inputs.
 */
function floatVarianceBound(call: ReturnType<typeof make>): Float64Array {
  const [n, c] = call.shape;
  assert.equal(n, 1);
  const m = call.x.length / c;
  const st = call.state!;
  const w = softmax(st.mean_weight), v = softmax(st.var_weight);
  const mu: number[] = [], vr: number[] = [];
  for (let r = 0; r < c; r++) {
    let s = 0;
    for (let i = 0; i < m; i++) s += call.x[r * m + i];
    const mean = s / m;
    let q = 0;
    for (let i = 0; i < m; i++) q += (call.x[r * m + i] - mean) ** 2;
    mu.push(mean), vr.push(q / (m - 1));
  }
  const muLn = mu.reduce((a, b) => a + b) / c;
  const varLn = vr.reduce((a, b) => a + b) / c + mu.reduce((a, b) => a + (b - muLn) ** 2, 0) / c;
  const eps = call.options?.eps ?? 1e-5;
  const bound = new Float64Array(3);
  for (let r = 0; r < c; r++) {
    // N = 1: the BN statistics are the row's own.
    const means = [mu[r], muLn, mu[r]], vars = [vr[r], varLn, vr[r]];
    const mix = w[0] * means[0] + w[1] * means[1] + w[2] * means[2];
    const variance = v[0] * vars[0] + v[1] * vars[1] + v[2] * vars[2];
    const s = 1 / Math.sqrt(variance + eps);
    let s2 = 0;
    for (let i = 0; i < m; i++) s2 += call.dy![r * m + i] * (call.x[r * m + i] - mix);
    const gv = Math.abs(0.5 * st.weight[r] * s2 * s ** 3);
    for (let k = 0; k < 3; k++) {
      for (let j = 0; j < 3; j++) {
        if (j !== k) bound[k] += 4 * U32 * v[k] * gv * v[j] * (vars[k] + vars[j]);
      }
    }
  }
  return bound;
}

/** Attack fuzzer seed 123846's training step alone, its x times `scale` (no evaluation after). */
function seed123846(scale: number): ReturnType<typeof make> {
  const call = make(123846);
  return { ...call, x: call.x.map((v) => v * scale), xEval: undefined, running: false };
}

/**
 * `call` on `backend` within the range checks but for `var_weight`'s gradient, and that within
 * {@linkcode floatVarianceBound}.
 */
async function assertWithinFloatVariances(
  call: ReturnType<typeof make>,
  backend: "wasm" | "webgpu",
  label: string,
): Promise<void> {
  const { got, want } = await runBoth(call, backend);
  if (backend === "wasm") {
    // WASM forms such dots again in float64: the whole call within the range checks.
    const failure = check(call, got, want);
    if (failure) throw new Error(`${label}: ${failure}`);
  }
  // Every result but var_weight's gradient (y, dx, the other gradients, the running buffers
  // and the evaluation after, where the call has them) within the range checks.
  const rest = { ...got, grads: { ...got.grads!, var_weight: want.grads!.var_weight } };
  const failure = check(call, rest, want);
  if (failure) throw new Error(`${label} (but var_weight): ${failure}`);
  const bound = floatVarianceBound(call);
  for (let k = 0; k < 3; k++) {
    const err = Math.abs(got.grads!.var_weight[k] - want.grads!.var_weight[k]);
    assert.ok(
      err <= bound[k],
      `${label}, var_weight[${k}]: got ${got.grads!.var_weight[k]}, expected ${
        want.grads!.var_weight[k]
      }, error ${err} beyond ${bound[k]}`,
    );
  }
}

rangeTests(
  "a training step on rows whose variances coincide with their LN variance to 1e-5 gives var_weight's gradient within 2^-22 of each variance it differences",
  async (backend) => {
    // The fuzzer's call (the step, then an evaluation): on WebGPU, var_weight's error 1.08e-7
    // for a bound of 8.0e-7 (0.13 of it; the bound is 7.8x the term-scaled tolerance here).
    await assertWithinFloatVariances(make(123846), backend, "attack fuzzer seed 123846");
    // Its rows times 2^-128 (+-1: WebGPU's unscaled rows) and 2^-100: 9.3e-8, 0.12 of it.
    for (const e of [-128, -100]) {
      await assertWithinFloatVariances(seed123846(2 ** e), backend, `seed 123846's x times 2^${e}`);
    }
  },
);
