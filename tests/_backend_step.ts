/**
 * A layer's call made on a backend directly (backends/_backend.ts), for tests that bind a backend
 * of their own, for example one with lowered binding limits: a forward (with its saved state in
 * training), the running buffers' sync, then in training the backward, as `Outputs`.
 *
 * @module
 */
import type { Outputs } from "./_range_compare.ts";
import { logitGrads, softmax } from "./_softmax.ts";
import type {
  Backend,
  LayerParams,
  NormProblem,
  RunningUpdate,
  SavedForward,
} from "../backends/_backend.ts";

/** The mixing logits of a step: mean and variance, IN, LN (and BN) as the problem has them. */
export interface StepLogits {
  readonly mean: readonly number[];
  readonly var: readonly number[];
}

// Layer ids of their own (a backend keys a layer's state by it), above the layers' own.
let layerId = 1 << 24;

/**
 * A step of `problem` on `backend` with gamma 1, beta 0, running_mean 0 and running_var 1 (over C
 * channels where `problem.usingBN`): a training forward and backward, or (`problem.training`
 * false) a forward alone, whose dx and gradients are empty.
 */
export async function backendStep(
  backend: Backend,
  problem: NormProblem,
  x: Float32Array,
  dy: Float32Array,
  logits: StepLogits,
  update: RunningUpdate,
): Promise<Outputs> {
  const channels = problem.usingBN ? problem.c : 0;
  const p: LayerParams = {
    layerId: layerId++,
    weight: new Float32Array(problem.c).fill(1),
    bias: new Float32Array(problem.c),
    meanMix: softmax(logits.mean),
    varMix: softmax(logits.var),
    runningMean: new Float32Array(channels),
    runningVar: new Float32Array(channels).fill(1),
    version: 0,
  };
  const save: SavedForward | undefined = problem.training ? {} : undefined;
  const y = await backend.forward(problem, x, p, update, undefined, save) as Float32Array;
  await backend.syncRunning?.(p);
  const running = { runningMean: p.runningMean.slice(), runningVar: p.runningVar.slice() };
  if (!save) {
    const none = new Float32Array();
    const grads = { weight: none, bias: none, mean_weight: none, var_weight: none };
    return { y, dx: none, grads, ...running };
  }
  const r = await backend.backward!(save, dy, p);
  return {
    y,
    dx: r.dx as Float32Array,
    grads: {
      weight: Float32Array.from(r.dWeight),
      bias: Float32Array.from(r.dBias),
      mean_weight: Float32Array.from(logitGrads(p.meanMix, r.meanDots)),
      var_weight: Float32Array.from(logitGrads(p.varMix, r.varDots)),
    },
    ...running,
  };
}
