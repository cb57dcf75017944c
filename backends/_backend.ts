/**
 * The one interface every backend implements, and the small pieces of math that all of them
 * share at O(C) cost (running-buffer updates). Private to the package.
 *
 * Depends on nothing of the package: every backend and the layer depend on it.
 *
 * @module
 */

/** Names of the backends a layer can run on. */
export type BackendName = "reference" | "wasm" | "webgpu";

/**
 * One forward call, as a backend sees it. The tensor is viewed as [N, C, M]:
 * - layout "nd" (SwitchNorm2d/3d): M = H*W or D*H*W; statistics IN per (n, c), LN per n, BN per c,
 *   mixed in the order in, ln, bn (bn absent without usingBN).
 * - layout "1d" (SwitchNorm1d): M = 1; LN over c per n, BN over n per c, mixed in the order ln, bn.
 */
export interface NormProblem {
  readonly layout: "1d" | "nd";
  readonly n: number;
  readonly c: number;
  readonly m: number;
  /** Training: BN statistics come from the batch. Evaluation: from the running buffers. */
  readonly training: boolean;
  readonly usingBN: boolean;
  readonly eps: number;
  /**
   * SyncSN: in training mode the BN statistics (forward) and the BN gradient sums (backward) are
   * those of the global batch across replicas. Absent: the local batch is the batch.
   */
  readonly sync?: BatchSync;
}

/**
 * Cross-replica operations for SyncSN, each resolving identically on every replica.
 * BN statistics travel per channel as (count, mean, M2): for layout "nd" over the per-(n,c) IN
 * statistics, M2 = sum_n var_in + sum_n (mu_in - mean)^2, so var_bn = M2 / count; for "1d" over
 * x[:, c], var_bn = M2 / (count - 1).
 */
export interface BatchSync {
  readonly replicas: number;
  mergeStats(
    count: number,
    mean: Float64Array,
    m2: Float64Array,
  ): Promise<{ count: number; mean: Float64Array; m2: Float64Array }>;
  /** Elementwise sum over replicas. */
  sum(local: Float64Array): Promise<Float64Array>;
}

/** How training mode folds the batch's BN statistics into the running buffers. */
export type RunningUpdate =
  | { readonly kind: "movingAverage"; readonly momentum: number }
  | { readonly kind: "batchAverage" };

/**
 * The layer's parameters and buffers, owned by the layer and shared with its backend. Backends
 * read the parameters and, in training mode with usingBN, update `runningMean`/`runningVar` in
 * place. `version` goes up whenever the layer writes any of these arrays from the CPU, so that a
 * backend keeping device copies knows when to upload them again.
 */
export interface LayerParams {
  /** Stable for the life of the layer: a key for per-layer device state. */
  readonly layerId: number;
  readonly weight: Float32Array;
  readonly bias: Float32Array;
  /** softmax(mean_weight), float64, order (in,) ln, bn. */
  readonly meanMix: Float64Array;
  /** softmax(var_weight), float64, order (in,) ln, bn. */
  readonly varMix: Float64Array;
  /** Length C with usingBN, else 0. */
  readonly runningMean: Float32Array;
  readonly runningVar: Float32Array;
  readonly version: number;
  /**
   * Goes up (with `version`) whenever the CPU writes `runningMean`/`runningVar` (a load, a reset,
   * a CPU backend's update), and only then, so that a backend holding newer running buffers on
   * a device re-uploads them only when the CPU's copy replaced them, not after an optimiser step.
   */
  readonly runningVersion?: number;
}

/**
 * A tensor that lives in a backend's memory (WASM linear memory, a GPUBuffer) so that layers can
 * chain without copies. Made by that backend's `upload`/`alloc`; freed by `dispose()`.
 */
export interface ResidentTensor {
  /** The backend whose memory holds the data. */
  readonly backend: BackendName;
  /** Row-major shape. */
  readonly shape: readonly number[];
  /** Number of float32 elements. */
  readonly length: number;
  /** Copies the data out into a new Float32Array. */
  read(): Promise<Float32Array>;
  /** Frees the memory; the tensor must not be used afterwards. Idempotent. */
  dispose(): void;
  /** Same as dispose(), for `using`. */
  [Symbol.dispose](): void;
}

/**
 * What a training forward leaves for the backward pass. The layer owns one per layer and hands it
 * to each forward that may be followed by a backward; the backend fills it (x is kept by
 * reference, never copied: the caller must not change x before backward).
 */
export interface SavedForward {
  problem?: NormProblem;
  x?: Float32Array | ResidentTensor;
  /** Whatever else the backend keeps (per-(n,c) statistics), opaque to the layer. */
  state?: unknown;
}

/**
 * The backward pass's results: dx, and the parameter gradients of this call (the layer
 * accumulates them). The gradients of the importance logits are formed by the layer from the dot
 * products a_k = sum Gm * mu_k and b_k = sum Gv * var_k (SN_SPEC), which the backend returns.
 */
export interface BackwardResult {
  dx: Float32Array | ResidentTensor;
  dWeight: Float64Array;
  dBias: Float64Array;
  /**
   * a_k less `meanDotsOffset`: a_k = meanDots[k] + meanDotsOffset. The logits' gradients take
   * the differences a_k - a_j, which a float64 a_k keeps only to its ulp: under a common offset K
   * of the data (|mean| ~1e6) a_k ~ K sum Gm ~ 1e13 rounds at ~1e-3 where the gradients are
   * ~0.08 (helper-82); a backend that forms sum Gm (mu_k - K) returns K sum Gm apart.
   */
  meanDots: Float64Array;
  /** See `meanDots`; default 0. */
  meanDotsOffset?: number;
  varDots: Float64Array;
  /**
   * The backend computed with the mixing weights below this as 0 (WebGPU: 2^-252, README
   * Numerics): the layer's Jacobian takes them as 0 too. Default 0 (every weight as it is).
   */
  zeroWeightsBelow?: number;
}

/** What a backend does. One instance per backend kind is shared by all layers using it. */
export interface Backend {
  readonly name: BackendName;
  /** Whether forward/backward honour `problem.sync` (SyncSN). Layers refuse sync otherwise. */
  readonly supportsSync?: boolean;
  /**
   * y = SN(x). `x` is a Float32Array of N*C*M elements, or a tensor resident in this backend; the
   * result is of the same kind. Validation is done by the caller: sizes are consistent and
   * non-zero, params have the right lengths. With `problem.training && problem.usingBN` the
   * backend applies `update` to `params.runningMean`/`runningVar` before resolving.
   */
  forward(
    problem: NormProblem,
    x: Float32Array | ResidentTensor,
    params: LayerParams,
    update: RunningUpdate,
    out?: Float32Array | ResidentTensor,
    save?: SavedForward,
  ): Promise<Float32Array | ResidentTensor>;
  /**
   * dx and parameter gradients for `dy` = dL/dy of the forward recorded in `saved`. In training
   * mode BN statistics depend on x; in evaluation mode they are constants (the running buffers).
   * With `out` (dy's kind and length; checked by the caller not to overlap x), dx is written
   * there and returned; it may be dy itself, or overlap a Float32Array dy anywhere: dx is written
   * only after every read of dy.
   */
  backward?(
    saved: SavedForward,
    dy: Float32Array | ResidentTensor,
    params: LayerParams,
    out?: Float32Array | ResidentTensor,
  ): Promise<BackwardResult>;
  /** Copies a Float32Array into a tensor resident in this backend. */
  upload(data: Float32Array, shape: readonly number[]): ResidentTensor;
  /**
   * For backends that update the running buffers on a device without reading them back (calls
   * with resident tensors): true while the device holds newer values than `params`' arrays.
   */
  runningStale?(params: LayerParams): boolean;
  /** Copies device-held running buffers back into `params.runningMean`/`runningVar`. */
  syncRunning?(params: LayerParams): Promise<void>;
  /** Frees what the backend keeps for one layer (device copies of its parameters). */
  releaseLayer?(params: LayerParams): void;
  /**
   * Frees what the backend keeps for a layer that was garbage-collected (its `layerId`): like
   * releaseLayer, with nothing to read back, since no one can read it any more.
   */
  forgetLayer?(layerId: number): void;
  /** Releases what the backend holds (memory, pipelines). */
  dispose(): void;
}

/**
 * Folds a batch's BN statistics into the running buffers, as the reference does:
 * moving average `r = momentum*r + (1-momentum)*batch`; batch average `r_mean += mean`,
 * `r_var += mean^2 + var` (finalized later by the layer).
 */
export function applyRunningUpdate(
  runningMean: Float32Array,
  runningVar: Float32Array,
  batchMean: ArrayLike<number>,
  batchVar: ArrayLike<number>,
  update: RunningUpdate,
): void {
  for (let c = 0; c < runningMean.length; c++) {
    const mean = batchMean[c], variance = batchVar[c];
    if (update.kind === "movingAverage") {
      const m = update.momentum;
      runningMean[c] = m * runningMean[c] + (1 - m) * mean;
      runningVar[c] = m * runningVar[c] + (1 - m) * variance;
    } else {
      runningMean[c] += mean;
      runningVar[c] += mean * mean + variance;
    }
  }
}
