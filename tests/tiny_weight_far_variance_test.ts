/**
 * A mixing weight just above WebGPU's cut of 2^-252 (~1e-74, logits ~170 apart) on a term whose
 * variance lies far beyond the others' (an LN variance of ~1e40 to ~1e59 from one channel of
 * data spanning +-1e20 or +-1e30, beside channels of ~1): the logit gradients' variance dot
 * products b_k = sum gv (var_k - var) of the terms the mix weighs then span far more than one
 * float32 unit holds, while the tiny weight brings the far term's back to their size in
 * `var_weight`'s gradient, w_k (b_k - sum_j w_j b_j). On WebGPU the variance dots of a wide row
 * (shaders/sn_bwd_rows.wgsl `wide_row`) shared one unit, which the far term's dot set, and the
 * other terms' dots were flushed: `var_weight`'s gradient -2.4e33 for -1.8e35, 406x its
 * tolerance (dy 1e25, gamma 1e12), -2.4e-4 for -1.8e-2 under dy ~1, and 1.2x under a weight just
 * above 2^-126 (six of these calls failed). Each dot now keeps a unit of its own
 * (backward_common.wgsl `grad_units`, `grad_finish`, Grad.low: 5-bit offsets of 8 binades below
 * the record's unit), and a variance difference far below the largest variance its own unit too
 * (sn_bwd_rows.wgsl `far_var_lanes`: a channel spanning +-3e38 was 1.2x its tolerance with the
 * per-dot units alone). The class's other members ride along: the mean dots of the same calls
 * (`mean_weight` takes the same logits over means ~1e29 and ~1 apart), SwitchNorm3d, weights just
 * above 2^-126 and 2^-149, and SwitchNorm1d's layout (whose pair elements were never flushed).
 * And WASM's member (wasm/src/lib.rs `after_combine`): in a training step of one sample, BN's
 * groups are its rows and the BN dots the IN dots exactly, as in the reference, but WASM summed
 * the two apart (about a centre K, the sample's LN mean) and their roundings, 2^-53 of terms
 * gm (mu - K) ~1e30, were all of their difference, which is 0: where a small LN weight leaves
 * mu_in - mu tiny (LN far from the rows) `mean_weight`'s IN and BN gradients came out
 * -2.2e21 for 9.3e19 and 4.0e-25 for 4.2e-35 (the two one-sample calls; found by
 * tests/fuzz/tiny_weight_far_variance_sweep.ts, 3 of 5000 seeds).
 * Held to the float64 reference with the range tests' term-scaled tolerances
 * (tests/_range_compare.ts); WebGPU is ignored without an adapter (a failure under CI=true).
 */
import assert from "node:assert/strict";
import {
  assertOutputsClose,
  gradsToScale,
  type LayerCall,
  rangeTests,
  runBoth,
} from "./_range_compare.ts";
import { Y_SCALED } from "./_tolerances.ts";

/** The logits of a mix whose term `tiny` lies `gap` below the largest (0.4; the others -0.3, 0.1). */
function logits(count: number, tiny: number, gap: number): Float32Array {
  return Float32Array.from(
    { length: count },
    (_, k) => k === tiny ? 0.4 - gap : [0.4, -0.3, 0.1][k],
  );
}

interface Far {
  readonly layer: "1d" | "2d" | "3d";
  /** The logit gap of the LN term below the largest (171: a weight ~2^-248). */
  readonly gap: number;
  /** The far channel's data: (sin + 0.3) times this (LN variances of ~spread^2 / 3). */
  readonly spread: number;
  readonly dy: number;
  readonly gamma: number;
  readonly training: boolean;
  /** Samples (2d and 3d; 2 without it). */
  readonly n?: number;
  /** The scale of the channels of ~1 (1 without it). */
  readonly small?: number;
}

/**
 * A call whose first channel (SwitchNorm1d: its first two features) spans +-`spread` beside
 * channels of ~1, under LN mean and variance weights `gap` below the others'; an evaluation
 * loads running buffers of which channel 1's lie far too (BN's `running_var` 3e38).
 */
function farCall({ layer, gap, spread, dy, gamma, training, n = 2, small = 1 }: Far): LayerCall {
  const shape = layer === "1d" ? [4, 6] : layer === "2d" ? [n, 3, 1, 6] : [n, 3, 1, 2, 3];
  const len = shape.reduce((a, b) => a * b), c = shape[1];
  const m = layer === "1d" ? 1 : len / (shape[0] * c);
  const channel = (i: number) => layer === "1d" ? i % c : Math.floor(i / m) % c;
  const far = layer === "1d" ? 2 : 1;
  const terms = layer === "1d" ? 2 : 3, ln = layer === "1d" ? 0 : 1;
  const state: Record<string, Float32Array> = {
    weight: Float32Array.from({ length: c }, (_, j) => gamma * (1 + 0.1 * j)),
    bias: Float32Array.from({ length: c }, (_, j) => 0.1 * j),
    mean_weight: logits(terms, ln, gap),
    var_weight: logits(terms, ln, gap),
  };
  if (!training) {
    state.running_mean = Float32Array.from(
      { length: c },
      (_, j) => j === 1 ? Math.min(3e38, spread) : 0.2 * j,
    );
    state.running_var = Float32Array.from(
      { length: c },
      (_, j) => j === 1 ? Math.min(3e38, spread * spread) : 0.5 + j,
    );
  }
  return {
    layer,
    shape,
    options: { eps: 1e-5 },
    partial: true,
    state,
    training,
    scales: true,
    x: Float32Array.from(
      { length: len },
      (_, i) =>
        channel(i) < far
          ? (Math.sin(i + 1) + 0.3) * spread
          : (Math.sin(2 * i + 0.5) + 0.2 * channel(i)) * small,
    ),
    dy: Float32Array.from({ length: len }, (_, i) => Math.cos(3 * i + 1) * dy),
    dispose: true,
  };
}

const CASES: readonly [string, Far][] = [
  [
    "a training step, one channel spanning +-1e30 (LN variance ~1e59) under an LN weight ~1e-74, dy 1e25, gamma 1e12",
    { layer: "2d", gap: 171, spread: 1e30, dy: 1e25, gamma: 1e12, training: true },
  ],
  [
    "a training step, one channel spanning +-1e20 under an LN weight ~1e-74",
    { layer: "2d", gap: 171, spread: 1e20, dy: 1, gamma: 1, training: true },
  ],
  [
    "an evaluation on loaded running buffers (running_var 3e38) under an LN weight ~2^-251, dy 1e-25",
    { layer: "2d", gap: 173.5, spread: 1e20, dy: 1e-25, gamma: 1, training: false },
  ],
  [
    "a training step, one channel spanning +-3e38 (an LN variance beyond float32's range) under an LN weight ~1e-75",
    { layer: "2d", gap: 172.5, spread: 2.5e38, dy: 1, gamma: 1, training: true },
  ],
  [
    "an evaluation, one channel spanning +-3e38 under an LN weight ~1e-75",
    { layer: "2d", gap: 172.5, spread: 2.5e38, dy: 1, gamma: 1, training: false },
  ],
  [
    "SwitchNorm3d, a training step under an LN weight ~1e-74, gamma 1e12",
    { layer: "3d", gap: 171, spread: 1e20, dy: 1, gamma: 1e12, training: true },
  ],
  [
    "an evaluation under an LN weight just above 2^-126",
    { layer: "2d", gap: 87.3, spread: 1e20, dy: 1, gamma: 1, training: false },
  ],
  [
    "a training step under an LN weight just above 2^-149",
    { layer: "2d", gap: 103.2, spread: 1e30, dy: 1, gamma: 1, training: true },
  ],
  [
    "a training step of one sample (BN's groups its rows) under an LN weight ~e^-40, rows ~1e-15 beside one of ~1e30, dy 1e30",
    { layer: "2d", gap: 40, spread: 1e30, dy: 1e30, gamma: 1, training: true, n: 1, small: 1e-15 },
  ],
  [
    "a training step of one sample under an LN weight ~e^-60, gamma 1e-20",
    { layer: "2d", gap: 60, spread: 1e30, dy: 1, gamma: 1e-20, training: true, n: 1 },
  ],
  [
    "SwitchNorm1d, a training step, two features spanning +-1e30 under an LN weight ~1e-74",
    { layer: "1d", gap: 171, spread: 1e30, dy: 1e25, gamma: 1, training: true },
  ],
  [
    "SwitchNorm1d, an evaluation on loaded running buffers under an LN weight ~1e-74",
    { layer: "1d", gap: 171, spread: 1e20, dy: 1, gamma: 1, training: false },
  ],
];

rangeTests(
  "a weight just above 2^-252 on a far variance leaves the other terms' logit dot products",
  async (backend) => {
    const failures: string[] = [];
    for (const [what, far] of CASES) {
      const call = farCall(far);
      const { got, want } = await runBoth(call, backend);
      // The reference's logit gradients lie far above the tolerances' floor (~1e-37): a
      // backend that flushes the other terms' dots fails them.
      const top = Math.max(
        ...Array.from(want.grads.var_weight, Math.abs),
        ...Array.from(want.grads.mean_weight, Math.abs),
      );
      assert.ok(top > 1e-36, `${what}: the reference's logit gradients are ${top}`);
      try {
        assertOutputsClose(got, want, {
          what,
          y: { tol: Y_SCALED, scale: want.scales!.y },
          ...gradsToScale(want.scales),
        });
      } catch (e) {
        failures.push(String(e).slice(0, 400));
      }
    }
    assert.deepEqual(failures, []);
  },
);
