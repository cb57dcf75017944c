/**
 * The tolerances every backend is held to against the shared PyTorch vectors, per quantity, with
 * the reason for each. One table for all backends: a backend that cannot meet it is wrong, not
 * excused.
 *
 * @module
 */
import type { Tolerance } from "./_close.ts";

/** y = SN(x), float32 output of float64 truth. */
export const Y: Tolerance = {
  atol: 2e-5,
  rtol: 2e-5,
  why: "y is float32 (rounding 6e-8 relative); backends without float64 (WebGPU) compute the " +
    "statistics in float32 with compensated sums, whose relative error in the variance is about " +
    "1e-6 and reaches y as |xhat| * 1e-6 for |xhat| up to ~4 in these vectors; the mean is kept " +
    "as a float32 hi/lo pair so |mean| ~ 1e4 costs no more. 2e-5 is ~10x the worst seen.",
};

/** Running buffers after training steps, kept in float32 like PyTorch's buffers. */
export const RUNNING: Tolerance = {
  atol: 1e-6,
  rtol: 1e-5,
  why: "buffers are float32 (rounding 6e-8 relative per update, a few updates per case) and are " +
    "fed by float32-accurate batch statistics; |running_mean| reaches ~1e4 in the offset cases, " +
    "so the bound is relative with a small absolute floor for values near 0.",
};

/** dx and the parameter gradients, float32 results of float64 truth. */
export const GRAD: Tolerance = {
  atol: 1e-4,
  rtol: 1e-4,
  why: "gradients are sums of products over a row, a sample or a channel: dx = dxh*s + " +
    "Gmu/M + Gvar*2(x-mu)/(M-1), where the last two terms are differences of sums of size M*C or " +
    "M*N; in float32 those sums carry relative error ~sqrt(len)*6e-8 of their largest term, " +
    "a few 1e-6 at these sizes, and the logit gradients are differences a_k - sum w_j a_j of " +
    "sums over N*C. 1e-4 is ~10x that, far below the size of any real mistake (a dropped term " +
    "changes results at 1e-2 or more).",
};

/** Values that both sides hold exactly (flags, logits set to 0/1, float32 logits copied). */
export const EXACT: Tolerance = {
  atol: 0,
  rtol: 0,
  why: "Sparse SN's fixed flags and the logits a freeze sets are exactly 0 or 1, and logits " +
    "that no freeze touched are the float32 values loaded: nothing is computed.",
};
