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

/**
 * What a term-scaled comparison adds, unscaled, for results and terms below float32's smallest
 * normal number, with the reason.
 */
export const SUBNORMAL: { readonly floor: number; readonly why: string } = {
  floor: 2 ** -123,
  why: "below 2^-126 float32 values are subnormal: GPUs may flush them to 0 (README, Numerics) " +
    "and elsewhere they carry fewer than 24 significant bits, so a dx or gradient of 4e-40 may " +
    "come out as 0 or a few subnormal units off, and each of dx's chain-rule paths (up to 7) may " +
    "lose a subnormal term; 2^-123 = 8 x 2^-126, far below any normal float32 result.",
};

/**
 * dx and the parameter gradients where the data are scaled (rows of tiny std, huge dy, gamma far
 * from 1): atol times the entry's term scale (tests/_term_scales.ts, `assertCloseToScale`).
 */
export const GRAD_SCALED: Tolerance = {
  atol: 1e-4,
  rtol: 1e-4,
  floor: SUBNORMAL.floor,
  why:
    "a float32 sum is accurate to a few float32 roundings of the SIZE OF ITS TERMS, not of its " +
    "result: dx = dxh*s + Gmu/M + Gvar*2(x-mu)/(M-1) and the logit gradients " +
    "w_k sum Gm (mu_k - mu) are sums whose terms can cancel by orders of magnitude (dy with a " +
    "mean over a row of std 1e-20: terms ~1e32, an element of dx ~1e27). PyTorch float32 itself, " +
    "on such inputs rescaled by exact powers of two to O(1) (its best case: at their own scale " +
    "its squares underflow and it gives NaN), is off from float64 by up to 1.1e-7 of the term " +
    "scale and up to 5.4x the plain GRAD tolerance (mean_weight; dx 4.6x, var_weight 1.4x); " +
    "WebGPU by up to 5.6e-7 of it and 21x GRAD (31 calls, std 1e-20 and 1e-25; README, " +
    "Numerics). The term scale T (tests/_term_scales.ts) is the chain rule " +
    "evaluated with absolute values (|dy| |gamma| s for dx's first path, sums of |terms| for the " +
    "others), so |got - want| <= 1e-4 T + 1e-4 |want| keeps GRAD's ~1000x margin over float32 " +
    "rounding; for O(1) data dx's T is O(1) (GRAD) and a parameter gradient's is the size of " +
    "the gradient where its terms do not cancel; a dropped or wrong term of the chain rule " +
    "is of the size of T's own terms and still shows. Plus SUBNORMAL's floor. An infinity " +
    "stands for the values float32 rounds to it (tests/_close.ts float32Gap): where 1e-4 T " +
    "passes float32's range (T beyond ~3.4e42) it passes for any value, as the finite values " +
    "that far off do, since float64's own rounding of such terms can pass float32's range " +
    "(attack fuzzer seed 968: exact dx 0, terms ~1e73, the reference +Infinity; " +
    "tests/close_judge_test.ts).",
};

/** y = gamma xhat + beta where gamma and beta are scaled: atol times |gamma xhat| + |beta|. */
export const Y_SCALED: Tolerance = {
  atol: 2e-5,
  rtol: 2e-5,
  floor: SUBNORMAL.floor,
  why: "y is the float32 sum of gamma xhat and beta; where they cancel (gamma 1e10, beta " +
    "-1e10) float32 rounding of the terms is the error, so Y's numbers apply with atol times " +
    "|gamma xhat| + |beta| (for O(1) gamma and beta: Y).",
};
