/**
 * The shape the range tests share (tests/range_test.ts, range_1d_test.ts, far_shift_test.ts,
 * range_running_test.ts): run one SwitchNorm call, or a training step and an evaluation after it,
 * on the float64 reference and on a backend ({@linkcode runCall}), then hold the backend's y, dx,
 * parameter gradients and running buffers to the reference's ({@linkcode assertOutputsClose}),
 * each with its own kind of tolerance. A failure names the field (and row or channel), the index,
 * and the value got and expected (tests/_close.ts).
 *
 * @module
 */
import { SwitchNorm1d, SwitchNorm2d, SwitchNorm3d } from "../mod.ts";
import type { SwitchNormNdOptions } from "../mod.ts";
import { assertClose, assertCloseToScale, type Tolerance } from "./_close.ts";
import { GRAD_SCALED, Y_SCALED } from "./_tolerances.ts";
import { type TermMixing, type TermScales, termScales } from "./_term_scales.ts";
import { sparsestmax } from "../_importance.ts";
import { webgpuTest } from "./_webgpu.ts";

export type Backend = "reference" | "wasm" | "webgpu";
export type GradKey = "weight" | "bias" | "mean_weight" | "var_weight";
export const GRAD_KEYS: readonly GradKey[] = ["weight", "bias", "mean_weight", "var_weight"];

/** Registers a test of a backend as "WASM: name" or "WebGPU: name" (no adapter: ignored). */
export function rangeTest(backend: "wasm" | "webgpu", name: string, fn: () => Promise<void>): void {
  const full = `${backend === "wasm" ? "WASM" : "WebGPU"}: ${name}`;
  if (backend === "webgpu") webgpuTest(full, fn);
  else Deno.test(full, fn);
}

/** {@linkcode rangeTest} for WASM and for WebGPU, `fn` given the backend. */
export function rangeTests(name: string, fn: (backend: "wasm" | "webgpu") => Promise<void>): void {
  for (const backend of ["wasm", "webgpu"] as const) rangeTest(backend, name, () => fn(backend));
}

/** One call of a SwitchNorm layer, as {@linkcode runCall} makes it. */
export interface LayerCall {
  readonly layer: "1d" | "2d" | "3d";
  readonly shape: readonly number[];
  /** Constructor options besides the backend. */
  readonly options?: Omit<SwitchNormNdOptions, "backend">;
  /** Loaded before the call; without it, the layer's defaults. */
  readonly state?: Readonly<Record<string, Float32Array>>;
  /** Load `state` with `{ strict: false }` (the other entries at their defaults). */
  readonly partial?: boolean;
  readonly training: boolean;
  readonly x: Float32Array;
  /** The backward's dy; without it, a forward alone (dx and the gradients empty). */
  readonly dy?: Float32Array;
  /** Compute the call's term scales (tests/_term_scales.ts) from its inputs and loaded state. */
  readonly scales?: boolean;
  /** After the call, `sync()` and read the running buffers (empty without BN). */
  readonly running?: boolean;
  /**
   * After the (training) call, an evaluation forward and backward (the same dy) on this x with
   * the gradients zeroed, over the running buffers the call left: `evaluation` of the result.
   */
  readonly xEval?: Float32Array;
  /** Dispose of the layer at the end. */
  readonly dispose?: boolean;
}

/** What a call gives: y, dx and copies of the parameter gradients (and what was asked for). */
export interface Outputs {
  readonly y: Float32Array;
  readonly dx: Float32Array;
  readonly grads: Readonly<Record<GradKey, Float32Array>>;
  readonly runningMean?: Float32Array;
  readonly runningVar?: Float32Array;
  readonly scales?: TermScales;
}

export interface CallResult extends Outputs {
  readonly evaluation?: Outputs;
}

type Layer = SwitchNorm1d | SwitchNorm2d<boolean> | SwitchNorm3d<boolean>;

function copyGrads(layer: Layer): Record<GradKey, Float32Array> {
  const g = layer.grads;
  return {
    weight: g.weight.slice(),
    bias: g.bias.slice(),
    mean_weight: g.mean_weight.slice(),
    var_weight: g.var_weight.slice(),
  };
}

/**
 * A sparse layer's mixings for the term scales: its weights, and sparsestmax's Jacobian at its
 * logits and radius (0 for a fixed mixing, whose logits get no gradient).
 */
function sparseMixing(layer: SwitchNorm2d<boolean>): { mean: TermMixing; var: TermMixing } {
  const frozen = layer.frozenTo;
  const mixing = (logits: Float32Array, weights: Float64Array, fixed: boolean): TermMixing => {
    const map = sparsestmax(logits, layer.radius);
    const jacobian = Array.from(
      weights,
      (_, k) =>
        fixed
          ? new Float64Array(weights.length)
          : map.vjp(Float64Array.from(weights, (_, j) => j === k ? 1 : 0)),
    );
    return { weights, jacobian };
  };
  return {
    mean: mixing(layer.mean_weight, layer.meanImportance, frozen.mean !== undefined),
    var: mixing(layer.var_weight, layer.varImportance, frozen.var !== undefined),
  };
}

/**
 * A forward (keeping it for the backward) and backward of `layer` in its current mode, on `x`
 * (`call.x` or `call.xEval`), with the call's term scales where `call.scales` asks for them.
 */
export async function forwardBackward(
  layer: Layer,
  call: LayerCall,
  x: Float32Array,
  training: boolean,
): Promise<Outputs> {
  const [n, c] = call.shape;
  let scales: TermScales | undefined;
  if (call.scales) {
    const s = layer.stateDict();
    scales = termScales({
      layout: call.layer === "1d" ? "1d" : "nd",
      n,
      c,
      m: x.length / (n * c),
      eps: layer.eps,
      usingBN: layer.usingBN,
      training,
      x,
      dy: call.dy ?? new Float32Array(x.length),
      weight: s.weight,
      bias: s.bias,
      meanLogits: s.mean_weight,
      varLogits: s.var_weight,
      mixing: call.options?.sparse ? sparseMixing(layer as SwitchNorm2d<boolean>) : undefined,
      runningMean: s.running_mean,
      runningVar: s.running_var,
    });
  }
  if (!call.dy) {
    const y = await layer.forward(x, [...call.shape]), none = new Float32Array();
    const grads = { weight: none, bias: none, mean_weight: none, var_weight: none };
    return { y, dx: none, grads, scales };
  }
  const y = await layer.forward(x, [...call.shape], { keepForBackward: true });
  const dx = await layer.backward(call.dy);
  return { y, dx, grads: copyGrads(layer), scales };
}

/** The layer's running buffers after `sync()` (empty without BN). */
export async function runningBuffers(
  layer: Layer,
): Promise<{ runningMean: Float32Array; runningVar: Float32Array }> {
  await layer.sync();
  return {
    runningMean: layer.usingBN ? layer.running_mean.slice() : new Float32Array(),
    runningVar: layer.usingBN ? layer.running_var.slice() : new Float32Array(),
  };
}

/**
 * Runs `call` on `backend`: a layer of `call.layer` with `call.options`, `call.state` loaded, in
 * training or evaluation mode, one forward and backward (and, with `xEval`, an evaluation after).
 */
export async function runCall(call: LayerCall, backend: Backend): Promise<CallResult> {
  const c = call.shape[1], options = { ...call.options, backend };
  const layer = call.layer === "1d"
    ? new SwitchNorm1d(c, options)
    : call.layer === "2d"
    ? new SwitchNorm2d(c, options)
    : new SwitchNorm3d(c, options);
  if (call.state) layer.loadStateDict(call.state, { strict: !call.partial });
  layer.train(call.training);
  let result: CallResult = await forwardBackward(layer, call, call.x, call.training);
  if (call.running) result = { ...result, ...await runningBuffers(layer) };
  if (call.xEval) {
    layer.train(false);
    layer.zeroGrad();
    result = { ...result, evaluation: await forwardBackward(layer, call, call.xEval, false) };
  }
  if (call.dispose) layer.dispose();
  return result;
}

/**
 * Softmax logits with those whose float64 weight lies below 2^-252 but above 0 at -1e30 (a
 * weight of 0), as the WebGPU backend takes them (README, Numerics).
 */
export function webgpuLogits(logits: readonly number[]): number[] {
  const top = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - top));
  const sum = e.reduce((a, b) => a + b);
  return logits.map((v, k) => e[k] / sum > 0 && e[k] / sum < 2 ** -252 ? -1e30 : v);
}

/**
 * `call` with the mixing weights below 2^-252 but above 0 at 0 ({@linkcode webgpuLogits}), as
 * the WebGPU backend takes them (README, Numerics: its promise is the reference's results for
 * those weights at 0); `call` itself where it has none.
 */
export function asWebGPUTakesIt(call: LayerCall): LayerCall {
  const state = call.state;
  if (!state || call.options?.sparse) return call;
  const zeroed = (logits: Float32Array | undefined) =>
    logits && Float32Array.from(webgpuLogits(Array.from(logits)));
  const mean_weight = zeroed(state.mean_weight), var_weight = zeroed(state.var_weight);
  const same = (a?: Float32Array, b?: Float32Array) => !a || a.every((v, k) => v === b![k]);
  if (same(mean_weight, state.mean_weight) && same(var_weight, state.var_weight)) return call;
  const zeroedState: Record<string, Float32Array> = { ...state };
  if (mean_weight) zeroedState.mean_weight = mean_weight;
  if (var_weight) zeroedState.var_weight = var_weight;
  return { ...call, state: zeroedState };
}

/**
 * The reference's and the backend's results of the same call (on WebGPU, of the call as WebGPU
 * takes it: {@linkcode asWebGPUTakesIt}); the term scales (the tolerances' scale) only of the
 * reference's.
 */
export async function runBoth(
  call: LayerCall,
  backend: Backend,
): Promise<{ want: CallResult; got: CallResult }> {
  const want = await runCall(backend === "webgpu" ? asWebGPUTakesIt(call) : call, "reference");
  return { want, got: await runCall({ ...call, scales: false }, backend) };
}

/**
 * How one array is held to the reference's:
 * - a Tolerance: {@linkcode assertClose};
 * - `scale`: {@linkcode assertCloseToScale} with these per-entry term scales;
 * - `rows`: per row of that many floats, atol times the row's largest finite |expected| (with
 *   `termScale`, per entry atol times the larger of that and the entry's term scale: y where
 *   gamma xhat and beta cancel, Y_SCALED);
 * - `channels` of `inner` floats each per sample: per channel, atol times the channel's largest
 *   finite |expected| (y and dx are accurate to float32 rounding of their row's or channel's
 *   scale, gamma (x - mu) / std, not of each element: an element near the mean is a difference
 *   of that scale; the tolerances' atol is for a scale of 1).
 */
export type Check =
  | Tolerance
  | { readonly tol: Tolerance; readonly scale: ArrayLike<number> }
  | { readonly tol: Tolerance; readonly rows: number; readonly termScale?: ArrayLike<number> }
  | { readonly tol: Tolerance; readonly channels: number; readonly inner: number };

/** Which outputs to compare, and how; a field left out is not compared. */
export interface Checks {
  readonly y?: Check;
  readonly dx?: Check;
  /** All of `gradKeys`: to a Tolerance, or to GRAD_SCALED-like `tol` of their term scales. */
  readonly grads?: Tolerance | { readonly tol: Tolerance; readonly scales: TermScales };
  /** The gradients compared (default all four). */
  readonly gradKeys?: readonly GradKey[];
  readonly runningMean?: Tolerance;
  readonly runningVar?: Tolerance;
  /** Failure messages read "`what`: field`suffix`". */
  readonly what?: string;
  readonly suffix?: string;
}

/** dx and the gradients to GRAD_SCALED of the reference call's term scales. */
export function gradsToScale(scales: TermScales | undefined): Pick<Checks, "dx" | "grads"> {
  if (!scales) throw new Error("the reference call has no term scales (scales: true)");
  return { dx: { tol: GRAD_SCALED, scale: scales.dx }, grads: { tol: GRAD_SCALED, scales } };
}

function isTolerance(check: Check): check is Tolerance {
  return "atol" in check;
}

/**
 * assertClose per row of `inner` floats, atol times the row's largest finite |expected|; with
 * `termScale`, assertCloseToScale per entry at the larger of that and the entry's term scale.
 */
function assertRowsClose(
  got: Float32Array,
  want: Float32Array | Float64Array,
  tol: Tolerance,
  inner: number,
  what: string,
  termScale?: ArrayLike<number>,
): void {
  for (let r = 0; r * inner < want.length; r++) {
    const g = got.subarray(r * inner, (r + 1) * inner),
      w = want.subarray(r * inner, (r + 1) * inner);
    const scale = largestFiniteAbs(w);
    if (!termScale) {
      assertClose(g, w, { ...tol, atol: tol.atol * scale }, `${what}, row ${r}`);
      continue;
    }
    const scales = Float64Array.from(w, (_, i) => Math.max(scale, termScale[r * inner + i]));
    assertCloseToScale(g, w, scales, tol, `${what}, row ${r}`);
  }
}

/**
 * The largest finite |v| of `values`, at least 1: a loop, not `Math.max(...values)`, whose spread
 * of a row of ~150k floats or more overflowed the call stack (RangeError).
 */
function largestFiniteAbs(values: ArrayLike<number>): number {
  let top = 1;
  for (let i = 0; i < values.length; i++) {
    const v = Math.abs(values[i]);
    if (Number.isFinite(v) && v > top) top = v;
  }
  return top;
}

/** assertClose per channel (`inner` elements each per sample), atol times its scale. */
function assertChannelsClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: Tolerance,
  channels: number,
  inner: number,
  what: string,
): void {
  for (let c = 0; c < channels; c++) {
    const g: number[] = [], w: number[] = [];
    for (let i = 0; i < want.length; i++) {
      if (Math.floor(i / inner) % channels === c) {
        g.push(got[i]);
        w.push(want[i]);
      }
    }
    const scale = largestFiniteAbs(w);
    const scaled = {
      ...tol,
      atol: tol.atol * scale,
      why: `${tol.why}, atol times the channel's scale`,
    };
    assertClose(g, w, scaled, `${what}, channel ${c}`);
  }
}

/** Holds `got` to `want` as `check` says. */
export function assertChecked(
  got: Float32Array,
  want: Float32Array | Float64Array,
  check: Check,
  what: string,
): void {
  if (isTolerance(check)) assertClose(got, want, check, what);
  else if ("scale" in check) assertCloseToScale(got, want, check.scale, check.tol, what);
  else if ("rows" in check) {
    assertRowsClose(got, want, check.tol, check.rows, what, check.termScale);
  } else assertChannelsClose(got, want, check.tol, check.channels, check.inner, what);
}

function present<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what}: not in the call's results`);
  return value;
}

/**
 * Holds the backend's outputs `got` to the reference's `want` as `checks` says: y, the running
 * buffers, dx, then each gradient of `gradKeys`.
 */
export function assertOutputsClose(got: Outputs, want: Outputs, checks: Checks): void {
  const label = (field: string) =>
    `${checks.what === undefined ? "" : `${checks.what}: `}${field}${checks.suffix ?? ""}`;
  if (checks.y) assertChecked(got.y, want.y, checks.y, label("y"));
  for (
    const [field, tol, g, w] of [
      ["running_mean", checks.runningMean, got.runningMean, want.runningMean],
      ["running_var", checks.runningVar, got.runningVar, want.runningVar],
    ] as const
  ) {
    if (tol) assertClose(present(g, label(field)), present(w, label(field)), tol, label(field));
  }
  if (checks.dx) assertChecked(got.dx, want.dx, checks.dx, label("dx"));
  const grads = checks.grads;
  if (grads) {
    for (const k of checks.gradKeys ?? GRAD_KEYS) {
      const what = label(`grad of ${k}`);
      if ("atol" in grads) assertClose(got.grads[k], want.grads[k], grads, what);
      else assertCloseToScale(got.grads[k], want.grads[k], grads.scales[k], grads.tol, what);
    }
  }
}

/**
 * Per element of y, |gamma xhat| + |beta| (gamma xhat = y - beta of the reference's y): the size
 * of the two terms y sums, which Y_SCALED holds it to where they cancel (beta 3e38 beside gamma
 * xhat -3e38: y 0 is accurate to float32's rounding of 3e38, ~2e31).
 */
export function affineSizes(call: LayerCall, y: ArrayLike<number>): Float64Array {
  const [, c] = call.shape, m = call.layer === "1d" ? 1 : y.length / (call.shape[0] * c);
  const bias = call.state?.bias;
  return Float64Array.from(y, (v, i) => {
    const beta = bias ? bias[Math.floor(i / m) % c] : 0;
    // (An infinite y has no size to lend: the row's scale holds it, as before.)
    return Number.isFinite(v) ? Math.abs(v - beta) + Math.abs(beta) : 0;
  });
}

/**
 * The range tests' checks of a call made with `scales: true`: y to Y per row (per sample of C in
 * layout 1d; Y_SCALED of {@linkcode affineSizes} where gamma xhat and beta cancel), dx and the
 * gradients to GRAD_SCALED of their term scales (dx within a factor 2 of float32's largest value
 * too: tests/dx_near_float32_max_test.ts).
 */
export function assertRangeChecks(
  call: LayerCall,
  got: Outputs,
  want: Outputs,
  what?: string,
): void {
  const rows = call.shape.slice(call.layer === "1d" ? 1 : 2).reduce((a, b) => a * b, 1);
  assertOutputsClose(got, want, {
    what,
    // Where gamma xhat and beta cancel, y is only as accurate as float32's rounding of them:
    // Y_SCALED of |gamma xhat| + |beta| (README, Numerics), gamma xhat the reference's y - beta.
    y: { tol: Y_SCALED, rows, termScale: affineSizes(call, want.y) },
    ...gradsToScale(want.scales),
  });
}
