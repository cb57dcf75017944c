/**
 * The SwitchNorm layers: options, parameters, buffers, modes and the path from `forward()` to a
 * backend. The math lives in the backends.
 *
 * @module
 */
import type {
  Backend,
  BackendName,
  BatchSync,
  LayerParams,
  NormProblem,
  ResidentTensor,
  RunningUpdate,
  SavedForward,
} from "./backends/_backend.ts";
import {
  BACKEND_REQUESTS,
  type BackendRequest,
  type CallInfo,
  chooseBackend,
} from "./backends/select.ts";
import { type KeySpec, readStateDict, type StateDict } from "./_state_dict.ts";
import { batchSync, type SyncGroup } from "./_sync.ts";
import { type Importance, softmax, sparsestmax } from "./_importance.ts";
import {
  checkBoolean,
  checkEps,
  checkFiniteIn,
  checkFloat32,
  checkInputShape,
  checkKnownKeys,
  checkPositiveInt,
} from "./_validate.ts";

/** Options shared by every SwitchNorm layer. */
export interface SwitchNormOptions {
  /**
   * Added to the variance before the square root. 0, or finite and at least 2^-126
   * (1.18e-38, float32's smallest normal number: a smaller positive eps would be a subnormal that
   * GPUs may flush to 0). Default 1e-5.
   */
  eps?: number;
  /** Moving-average momentum in [0, 1]: `running = momentum*running + (1-momentum)*batch`. */
  momentum?: number;
  /**
   * true (default): running buffers are a moving average. false: training-mode forwards add the
   * batch statistics up, and {@linkcode SwitchNorm.finalizeBatchAverage} turns the sums into the
   * inference statistics (the paper's batch average).
   */
  usingMovingAverage?: boolean;
  /** Which backend runs the layer: "auto" (default), "wasm", "webgpu" or "reference". */
  backend?: BackendRequest;
  /**
   * SyncSN: the group of data-parallel replicas this layer is one of. In training mode the BN
   * statistics, the running buffers and the gradients are then those of the global batch on
   * every replica (IN and LN statistics stay local). Each replica must call forward and backward
   * in the same order.
   */
  sync?: SyncGroup;
  /**
   * Sparse SN: map the importance logits to mixing weights with sparsestmax (radius
   * {@linkcode SwitchNorm.radius}) instead of softmax, so that training drives each layer to a
   * single normalizer. Default false.
   */
  sparse?: boolean;
}

/** Options of SwitchNorm2d and SwitchNorm3d. */
export interface SwitchNormNdOptions extends SwitchNormOptions {
  /** Mix in batch statistics (default true). false: only IN and LN, no running buffers. */
  usingBN?: boolean;
  /** Initialise gamma to 0 instead of 1 (the last norm of a residual block). Default false. */
  lastGamma?: boolean;
}

/** Per-call options of `forward`. */
export interface ForwardOptions {
  /** Where to write y (same kind and length as x); a new one is made otherwise. */
  out?: Float32Array | ResidentTensor;
  /**
   * Keep what `backward` needs (x by reference, not a copy, and per-(n,c) statistics). Default:
   * true in training mode, false in evaluation mode, so that inference keeps nothing.
   */
  keepForBackward?: boolean;
}

/** Accumulated gradients of the parameters, PyTorch's names (of the raw logits for the weights). */
export interface Gradients {
  /** dL/dweight (gamma), length C. */
  readonly weight: Float32Array;
  /** dL/dbias (beta), length C. */
  readonly bias: Float32Array;
  /** dL/d of the mean importance logits (before softmax or sparsestmax), order (in,) ln, bn. */
  readonly mean_weight: Float32Array;
  /** dL/d of the variance importance logits, order (in,) ln, bn. */
  readonly var_weight: Float32Array;
}

interface LayerKind {
  readonly name: string;
  readonly layout: "1d" | "nd";
  readonly rank: number;
  readonly rankName: string;
  /** The reference's shape for weight/bias and for the running buffers. */
  readonly paramShape: (c: number) => number[];
  readonly bufferShape: (c: number) => number[];
  readonly defaultMomentum: number;
}

let nextLayerId = 1;

/**
 * What SwitchNorm1d/2d/3d have in common. Not constructed directly.
 */
export abstract class SwitchNorm {
  /** Number of channels C. */
  readonly numFeatures: number;
  /** Added to the variance before the square root. */
  readonly eps: number;
  /** Momentum of the moving average of the running buffers. */
  readonly momentum: number;
  /** Whether the running buffers are a moving average (true) or batch-average sums (false). */
  readonly usingMovingAverage: boolean;
  /** Whether BN statistics take part (always true for SwitchNorm1d). */
  readonly usingBN: boolean;
  /** Whether gamma was initialised to 0. */
  readonly lastGamma: boolean;
  /** The backend that was asked for. */
  readonly backendRequest: BackendRequest;
  /** The SyncSN group, if any. */
  readonly syncGroup?: SyncGroup;
  /** Whether the importance weights come from sparsestmax (Sparse SN) rather than softmax. */
  readonly sparse: boolean;
  /** True in training mode (the default), false in evaluation mode. */
  training = true;

  #kind: LayerKind;
  #params: {
    weight: Float32Array;
    bias: Float32Array;
    meanLogits: Float32Array;
    varLogits: Float32Array;
    runningMean: Float32Array;
    runningVar: Float32Array;
    version: number;
    /** Bumped (with version) whenever the CPU writes the running buffers. */
    runningVersion: number;
  };
  #batchesAccumulated = 0;
  #saved?: SavedForward;
  #radius = 0;
  /** Sparse SN: the normalizer index each mixing was frozen to once it became one-hot. */
  #frozen: { mean?: number; var?: number } = {};
  #importance?: { version: number; mean: Importance; var: Importance };
  #sync?: BatchSync;
  #grads: Gradients;
  #view?: LayerParams;
  readonly #layerId = nextLayerId++;
  #ran?: { backend: BackendName; reason: string };

  /** Validates the options and allocates parameters and buffers; see the subclasses. */
  protected constructor(kind: LayerKind, numFeatures: number, options: SwitchNormNdOptions) {
    checkPositiveInt(`${kind.name}: numFeatures`, numFeatures);
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`${kind.name}: options must be an object`);
    }
    const known = ["eps", "momentum", "usingMovingAverage", "backend", "sync", "sparse"];
    if (kind.layout === "nd") known.push("usingBN", "lastGamma");
    checkKnownKeys(kind.name, options, known);
    this.#kind = kind;
    this.numFeatures = numFeatures;
    this.eps = checkEps(`${kind.name}: eps`, options.eps ?? 1e-5);
    this.momentum = checkFiniteIn(
      `${kind.name}: momentum`,
      options.momentum ?? kind.defaultMomentum,
      0,
      1,
    );
    this.usingMovingAverage = checkBoolean(
      `${kind.name}: usingMovingAverage`,
      options.usingMovingAverage,
      true,
    );
    this.usingBN = checkBoolean(`${kind.name}: usingBN`, options.usingBN, true);
    this.lastGamma = checkBoolean(`${kind.name}: lastGamma`, options.lastGamma, false);
    this.sparse = checkBoolean(`${kind.name}: sparse`, options.sparse, false);
    const backend = options.backend ?? "auto";
    if (!BACKEND_REQUESTS.includes(backend)) {
      throw new RangeError(
        `${kind.name}: unknown backend "${String(backend)}" (expected ${
          BACKEND_REQUESTS.join(", ")
        })`,
      );
    }
    this.backendRequest = backend;
    if (options.sync !== undefined) {
      const g = options.sync;
      if (typeof g !== "object" || g === null || typeof g.allGather !== "function") {
        throw new TypeError(`${kind.name}: sync must be a SyncGroup with an allGather function`);
      }
      checkPositiveInt(`${kind.name}: sync.size`, g.size);
      this.syncGroup = g;
      this.#sync = batchSync(g);
    }
    const k = this.#logitCount();
    const buffers = this.usingBN ? numFeatures : 0;
    this.#params = {
      weight: new Float32Array(numFeatures).fill(this.lastGamma ? 0 : 1),
      bias: new Float32Array(numFeatures),
      meanLogits: new Float32Array(k).fill(1),
      varLogits: new Float32Array(k).fill(1),
      runningMean: new Float32Array(buffers),
      runningVar: new Float32Array(buffers),
      version: 0,
      runningVersion: 0,
    };
    this.#grads = {
      weight: new Float32Array(numFeatures),
      bias: new Float32Array(numFeatures),
      mean_weight: new Float32Array(k),
      var_weight: new Float32Array(k),
    };
  }

  #logitCount(): number {
    return this.#kind.layout === "1d" ? 2 : this.usingBN ? 3 : 2;
  }

  /** Sets training mode (default) or evaluation mode; returns the layer, as PyTorch does. */
  train(mode = true): this {
    this.training = checkBoolean(`${this.#kind.name}.train: mode`, mode, true);
    return this;
  }

  /** Sets evaluation mode: BN statistics come from the running buffers, which stay unchanged. */
  eval(): this {
    return this.train(false);
  }

  /** gamma, length C (a copy; change it with loadStateDict). */
  get weight(): Float32Array {
    return this.#params.weight.slice();
  }
  /** beta, length C (a copy). */
  get bias(): Float32Array {
    return this.#params.bias.slice();
  }
  /** Importance logits of the means, order (in,) ln, bn (a copy). */
  get mean_weight(): Float32Array {
    return this.#params.meanLogits.slice();
  }
  /** Importance logits of the variances, order (in,) ln, bn (a copy). */
  get var_weight(): Float32Array {
    return this.#params.varLogits.slice();
  }
  /** Running means, length C, or length 0 without usingBN (a copy). */
  get running_mean(): Float32Array {
    this.#checkRunningFresh("running_mean");
    return this.#params.runningMean.slice();
  }
  /** Running variances, length C, or length 0 without usingBN (a copy). */
  get running_var(): Float32Array {
    this.#checkRunningFresh("running_var");
    return this.#params.runningVar.slice();
  }
  /**
   * The mixing weights of the means, order (in,) ln, bn: softmax(mean_weight), or with `sparse`
   * sparsestmax(mean_weight, radius).
   */
  get meanImportance(): Float64Array {
    return this.#mixing().mean.weights.slice();
  }
  /** The mixing weights of the variances, like {@linkcode meanImportance}. */
  get varImportance(): Float64Array {
    return this.#mixing().var.weights.slice();
  }

  /**
   * Sparse SN's radius r in [0, 1], to be ramped from 0 to 1 over training
   * (`layer.radius = step / totalSteps`). r = 0 gives sparsemax; at r = 1 the weights are
   * one-hot. Once a mixing is one-hot the layer stays frozen to that normalizer (see
   * {@linkcode frozenTo}), whatever the logits do later.
   */
  get radius(): number {
    return this.#radius;
  }
  set radius(r: number) {
    if (!this.sparse) throw new Error(`${this.#kind.name}: radius needs the sparse option`);
    this.#radius = checkFiniteIn(`${this.#kind.name}: radius`, r, 0, 1);
    this.#params.version++;
  }

  /** Sparse SN: the normalizer index (order (in,) ln, bn) each mixing is frozen to, if any. */
  get frozenTo(): { readonly mean?: number; readonly var?: number } {
    this.#mixing();
    return { ...this.#frozen };
  }

  /** The importance maps for the current logits and radius, cached per params version. */
  #mixing(): { mean: Importance; var: Importance } {
    const p = this.#params;
    if (this.#importance?.version !== p.version) {
      const map = (logits: Float32Array, which: "mean" | "var"): Importance => {
        if (!this.sparse) return softmax(logits);
        const frozen = this.#frozen[which];
        const k = logits.length;
        if (frozen !== undefined) {
          const weights = Float64Array.from({ length: k }, (_, i) => +(i === frozen));
          return { weights, vjp: () => new Float64Array(k) };
        }
        const m = sparsestmax(logits, this.#radius);
        const hot = m.weights.indexOf(1);
        if (hot >= 0) this.#frozen[which] = hot;
        return m;
      };
      this.#importance = {
        version: p.version,
        mean: map(p.meanLogits, "mean"),
        var: map(p.varLogits, "var"),
      };
    }
    return this.#importance;
  }
  /** Training batches added into the running buffers since the last reset (batch average). */
  get batchesAccumulated(): number {
    return this.#batchesAccumulated;
  }

  /**
   * The backend that ran the last forward, and why it was chosen; undefined before the first.
   */
  get backendInfo(): { readonly backend: BackendName; readonly reason: string } | undefined {
    return this.#ran;
  }

  #specs(): Record<string, KeySpec> {
    const c = this.numFeatures, k = this.#logitCount();
    const param = { length: c, shapes: [this.#kind.paramShape(c)] };
    const specs: Record<string, KeySpec> = {
      weight: param,
      bias: param,
      mean_weight: { length: k, shapes: [] },
      var_weight: { length: k, shapes: [] },
    };
    if (this.usingBN) {
      const buffer = { length: c, shapes: [this.#kind.bufferShape(c)] };
      specs.running_mean = buffer;
      specs.running_var = buffer;
    }
    return specs;
  }

  /**
   * Loads parameters and buffers with PyTorch's key names. Each value may be flat (length C, or
   * the number of logits), a nested array in the reference's shape ([1,C,1,1] for SwitchNorm2d
   * weight/bias, [1,C,1] for its buffers; [1,C] for SwitchNorm1d; [1,C,1,1,1] for SwitchNorm3d),
   * or `{ data, shape }`. A missing, extra, misshapen or non-finite entry throws an error naming
   * the key, and nothing is changed.
   */
  loadStateDict(dict: Readonly<Record<string, unknown>>): void {
    const read = readStateDict(this.#kind.name, dict, this.#specs());
    const p = this.#params;
    p.weight.set(read.weight);
    p.bias.set(read.bias);
    p.meanLogits.set(read.mean_weight);
    p.varLogits.set(read.var_weight);
    if (this.usingBN) {
      p.runningMean.set(read.running_mean);
      p.runningVar.set(read.running_var);
    }
    p.version++;
    p.runningVersion++;
  }

  /**
   * Copies of the parameters and buffers, flat, with PyTorch's key names. After training-mode
   * forwards on GPU-resident tensors the running buffers live on the GPU: then this throws until
   * `await layer.sync()` has copied them back.
   */
  stateDict(): StateDict {
    this.#checkRunningFresh("stateDict");
    const p = this.#params;
    const dict: StateDict = {
      weight: p.weight.slice(),
      bias: p.bias.slice(),
      mean_weight: p.meanLogits.slice(),
      var_weight: p.varLogits.slice(),
    };
    if (this.usingBN) {
      dict.running_mean = p.runningMean.slice();
      dict.running_var = p.runningVar.slice();
    }
    return dict;
  }

  /** Zeroes the running buffers and the batch-average count (the first step of a batch average). */
  resetRunningStats(): void {
    this.#params.runningMean.fill(0);
    this.#params.runningVar.fill(0);
    this.#batchesAccumulated = 0;
    this.#params.version++;
    this.#params.runningVersion++;
  }

  /**
   * Ends a batch average (usingMovingAverage false): after K training-mode forwards from
   * {@linkcode resetRunningStats}, sets running_mean = sum_mean / K and
   * running_var = sum_sq / K - running_mean^2, the inference statistics of SN_SPEC, and resets K.
   */
  finalizeBatchAverage(): void {
    const name = this.#kind.name;
    if (!this.usingBN) throw new Error(`${name}: no running buffers (usingBN is false)`);
    if (this.usingMovingAverage) {
      throw new Error(`${name}: finalizeBatchAverage needs usingMovingAverage: false`);
    }
    this.#checkRunningFresh("finalizeBatchAverage");
    const k = this.#batchesAccumulated;
    if (k === 0) {
      throw new Error(`${name}: no training batches accumulated since resetRunningStats()`);
    }
    const { runningMean, runningVar } = this.#params;
    for (let c = 0; c < runningMean.length; c++) {
      const mean = runningMean[c] / k;
      runningVar[c] = runningVar[c] / k - mean * mean;
      runningMean[c] = mean;
    }
    this.#batchesAccumulated = 0;
    this.#params.version++;
    this.#params.runningVersion++;
  }

  /** The parameters as backends see them, rebuilt only when the CPU copy changed. */
  #paramsView(): LayerParams {
    const p = this.#params;
    if (this.#view?.version !== p.version) {
      this.#view = {
        layerId: this.#layerId,
        weight: p.weight,
        bias: p.bias,
        meanMix: this.#mixing().mean.weights,
        varMix: this.#mixing().var.weights,
        runningMean: p.runningMean,
        runningVar: p.runningVar,
        version: p.version,
        runningVersion: p.runningVersion,
      };
    }
    return this.#view;
  }

  #settledBackend?: Backend;
  /** Every backend this layer has run on (auto may switch per call): all hold layer state. */
  #usedBackends = new Set<Backend>();

  #checkRunningFresh(what: string): void {
    for (const b of this.#usedBackends) {
      if (b.runningStale?.(this.#paramsView())) {
        throw new Error(
          `${this.#kind.name}.${what}: the running buffers were updated on the ${b.name} device; ` +
            "await layer.sync() first",
        );
      }
    }
  }

  /**
   * Brings device-held running buffers back to the CPU (needed only after training-mode forwards
   * on GPU-resident tensors; a no-op otherwise).
   */
  async sync(): Promise<void> {
    for (const b of this.#usedBackends) await b.syncRunning?.(this.#paramsView());
  }

  /**
   * Frees what the backends keep for this layer (device copies). The layer stays usable.
   * Running buffers that are newer on a GPU are read back first (`await layer.sync()` to wait).
   */
  dispose(): void {
    for (const b of this.#usedBackends) b.releaseLayer?.(this.#paramsView());
  }

  /** Same as {@linkcode dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * Asked per call: "auto" decides by the call's size and where x lives, and an explicit
   * "webgpu" gets a fresh device after a loss. select.ts caches the backends, so this is cheap.
   */
  #backend(call: CallInfo): Promise<{ backend: Backend; reason: string }> {
    return chooseBackend(this.backendRequest, undefined, call);
  }

  /**
   * Normalizes `x`. With a Float32Array and its shape, resolves to a new Float32Array (or fills
   * `options.out`). With a tensor resident in the layer's backend (see {@linkcode upload}),
   * resolves to a resident tensor, so that layers chain without copies. In training mode with
   * BN statistics, the running buffers are updated before the promise resolves.
   */
  forward(
    x: Float32Array,
    shape: readonly number[],
    options?: ForwardOptions,
  ): Promise<Float32Array>;
  /** The same on a tensor resident in the layer's backend; resolves to a resident y. */
  forward(x: ResidentTensor, options?: ForwardOptions): Promise<ResidentTensor>;
  async forward(
    x: Float32Array | ResidentTensor,
    shapeOrOptions?: readonly number[] | ForwardOptions,
    maybeOptions?: ForwardOptions,
  ): Promise<Float32Array | ResidentTensor> {
    const name = this.#kind.name;
    const resident = isResident(x);
    const shape = resident ? x.shape : shapeOrOptions;
    const options = ((resident ? shapeOrOptions : maybeOptions) ?? {}) as ForwardOptions;
    if (!resident) checkFloat32(`${name}.forward: x`, x);
    if (resident && Array.isArray(shapeOrOptions)) {
      throw new TypeError(`${name}.forward: a resident tensor carries its own shape`);
    }
    const { n, c, m } = checkInputShape(
      `${name}.forward`,
      shape,
      this.#kind.rank,
      this.#kind.rankName,
      this.numFeatures,
      x.length,
    );
    if (options.out !== undefined) {
      if (isResident(options.out) !== resident || options.out.length !== x.length) {
        throw new TypeError(
          `${name}.forward: out must be the same kind as x with ${x.length} elements`,
        );
      }
    }
    const { backend, reason } = await this.#backend({
      elements: x.length,
      sync: this.#sync !== undefined,
      resident: resident ? x.backend : undefined,
    });
    if (this.#sync && !backend.supportsSync) {
      throw new Error(
        `${name}.forward: SyncSN (the sync option) is not supported on ${backend.name}`,
      );
    }
    const previous = this.#settledBackend;
    if (previous && previous !== backend && previous.runningStale?.(this.#paramsView())) {
      // The other backend's device holds the newest running buffers: this call must start there.
      await previous.syncRunning!(this.#paramsView());
    }
    this.#settledBackend = backend;
    this.#usedBackends.add(backend);
    if (resident && x.backend !== backend.name) {
      throw new TypeError(
        `${name}.forward: x lives in ${x.backend} memory but this layer runs on ${backend.name}`,
      );
    }
    const problem: NormProblem = {
      layout: this.#kind.layout,
      n,
      c,
      m,
      training: this.training,
      usingBN: this.usingBN,
      eps: this.eps,
      sync: this.#sync,
    };
    const params = this.#paramsView();
    const update: RunningUpdate = this.usingMovingAverage
      ? { kind: "movingAverage", momentum: this.momentum }
      : { kind: "batchAverage" };
    const keep = options.keepForBackward ?? this.training;
    const save: SavedForward | undefined = keep ? {} : undefined;
    this.#saved = undefined; // a failed call leaves nothing stale behind
    const y = await backend.forward(problem, x, params, update, options.out, save);
    this.#saved = save;
    if (this.training && this.usingBN && !backend.runningStale && this.#usedBackends.size > 1) {
      // A CPU backend updated the running buffers in place: a device copy is now behind.
      this.#params.version++;
      this.#params.runningVersion++;
    }
    if (this.training && this.usingBN && !this.usingMovingAverage) this.#batchesAccumulated++;
    this.#ran = { backend: backend.name, reason };
    return y;
  }

  /**
   * Gradients accumulated by {@linkcode backward} since the last {@linkcode zeroGrad} (the live
   * arrays: an optimiser may read them in place).
   */
  get grads(): Gradients {
    return this.#grads;
  }

  /**
   * An optimiser step: calls `update` with each parameter (the live array, to change in place),
   * its accumulated gradient and its name, then makes the new values take effect.
   *
   * @example
   * ```ts
   * import { SwitchNorm1d } from "./mod.ts";
   * const sn = new SwitchNorm1d(2, { backend: "reference" });
   * await sn.forward(new Float32Array([1, 2, 4, 3]), [2, 2]);
   * await sn.backward(new Float32Array([1, 0, 0, 1]));
   * sn.step((param, grad) => param.forEach((_, i) => param[i] -= 0.1 * grad[i])); // plain SGD
   * sn.zeroGrad();
   * ```
   */
  step(update: (param: Float32Array, grad: Float32Array, name: keyof Gradients) => void): void {
    const p = this.#params, g = this.#grads;
    update(p.weight, g.weight, "weight");
    update(p.bias, g.bias, "bias");
    update(p.meanLogits, g.mean_weight, "mean_weight");
    update(p.varLogits, g.var_weight, "var_weight");
    p.version++;
  }

  /** Sets the accumulated gradients to zero. */
  zeroGrad(): void {
    for (const g of Object.values(this.#grads)) g.fill(0);
  }

  /**
   * Back-propagates `dy` = dL/dy through the last forward (which must have kept what backward
   * needs: training mode, or `keepForBackward: true`). Resolves to dx, of the same kind as that
   * forward's x, and adds the parameter gradients into {@linkcode grads}. x must not have been
   * changed since that forward.
   */
  backward(dy: Float32Array): Promise<Float32Array>;
  /** The same for a resident dy (after a forward on a resident x); resolves to a resident dx. */
  backward(dy: ResidentTensor): Promise<ResidentTensor>;
  async backward(dy: Float32Array | ResidentTensor): Promise<Float32Array | ResidentTensor> {
    const name = this.#kind.name;
    const saved = this.#saved;
    if (!saved?.problem || !saved.x) {
      throw new Error(
        `${name}.backward: no forward to differentiate; run forward in training mode or with ` +
          "{ keepForBackward: true } first",
      );
    }
    if (isResident(dy) !== isResident(saved.x) || dy.length !== saved.x.length) {
      throw new RangeError(
        `${name}.backward: dy must be the same kind as the forward's x, with ${saved.x.length} elements, got ${dy.length}`,
      );
    }
    if (!isResident(dy)) checkFloat32(`${name}.backward: dy`, dy);
    const backend = this.#settledBackend!;
    if (!backend.backward) throw new Error(`${name}.backward: not supported on ${backend.name}`);
    const r = await backend.backward(saved, dy, this.#paramsView());
    const g = this.#grads, mixing = this.#mixing();
    for (let c = 0; c < g.weight.length; c++) {
      g.weight[c] += r.dWeight[c];
      g.bias[c] += r.dBias[c];
    }
    // a_k, b_k are dL/dweights; the importance map's Jacobian takes them to the logits.
    const dMean = mixing.mean.vjp(r.meanDots), dVar = mixing.var.vjp(r.varDots);
    for (let k = 0; k < dMean.length; k++) {
      g.mean_weight[k] += dMean[k];
      g.var_weight[k] += dVar[k];
    }
    return r.dx;
  }

  /**
   * Copies data into a tensor resident in this layer's backend, for chaining layers with
   * {@linkcode forward} without copies in and out. Free it with `dispose()` (or `using`).
   */
  async upload(data: Float32Array, shape: readonly number[]): Promise<ResidentTensor> {
    const name = this.#kind.name;
    checkFloat32(`${name}.upload: data`, data);
    checkInputShape(
      `${name}.upload`,
      shape,
      this.#kind.rank,
      this.#kind.rankName,
      this.numFeatures,
      data.length,
    );
    const { backend } = await this.#backend({
      elements: data.length,
      sync: this.#sync !== undefined,
    });
    return backend.upload(data, shape);
  }
}

function isResident(x: unknown): x is ResidentTensor {
  return typeof x === "object" && x !== null && !ArrayBuffer.isView(x) && "backend" in x &&
    "shape" in x;
}

/**
 * Switchable Normalization over [N, C]: LN over the features of a sample and BN over the batch,
 * mixed by learned importance weights (the authors' SwitchNorm1d).
 *
 * @example
 * ```ts
 * import { SwitchNorm1d } from "./mod.ts";
 * const sn = new SwitchNorm1d(3, { backend: "reference" });
 * const y = await sn.forward(new Float32Array([1, 2, 3, 4, 6, 8]), [2, 3]);
 * console.log(y.length); // 6
 * ```
 */
export class SwitchNorm1d extends SwitchNorm {
  /** Makes a layer for `numFeatures` channels. Default momentum 0.997. */
  constructor(numFeatures: number, options: SwitchNormOptions = {}) {
    super(
      {
        name: "SwitchNorm1d",
        layout: "1d",
        rank: 2,
        rankName: "[N, C]",
        paramShape: (c) => [1, c],
        bufferShape: (c) => [1, c],
        defaultMomentum: 0.997,
      },
      numFeatures,
      options,
    );
  }
}

/**
 * Switchable Normalization over [N, C, H, W]: IN, LN and BN statistics mixed by learned
 * importance weights (the authors' SwitchNorm2d).
 *
 * @example
 * ```ts
 * import { SwitchNorm2d } from "./mod.ts";
 * const sn = new SwitchNorm2d(2, { backend: "reference" });
 * const x = Float32Array.from({ length: 2 * 2 * 3 * 3 }, (_, i) => Math.sin(i));
 * const y = await sn.forward(x, [2, 2, 3, 3]);
 * console.log(y.length, sn.stateDict().running_mean); // 36 Float32Array(2) [...]
 * ```
 */
export class SwitchNorm2d extends SwitchNorm {
  /** Makes a layer for `numFeatures` channels. Default momentum 0.9. */
  constructor(numFeatures: number, options: SwitchNormNdOptions = {}) {
    super(
      {
        name: "SwitchNorm2d",
        layout: "nd",
        rank: 4,
        rankName: "[N, C, H, W]",
        paramShape: (c) => [1, c, 1, 1],
        bufferShape: (c) => [1, c, 1],
        defaultMomentum: 0.9,
      },
      numFeatures,
      options,
    );
  }
}

/**
 * Switchable Normalization over [N, C, D, H, W] (the authors' SwitchNorm3d).
 *
 * @example
 * ```ts
 * import { SwitchNorm3d } from "./mod.ts";
 * const sn = new SwitchNorm3d(1, { backend: "reference" }).eval();
 * const y = await sn.forward(new Float32Array(8).map((_, i) => i), [1, 1, 2, 2, 2]);
 * console.log(y.length); // 8
 * ```
 */
export class SwitchNorm3d extends SwitchNorm {
  /** Makes a layer for `numFeatures` channels. Default momentum 0.997. */
  constructor(numFeatures: number, options: SwitchNormNdOptions = {}) {
    super(
      {
        name: "SwitchNorm3d",
        layout: "nd",
        rank: 5,
        rankName: "[N, C, D, H, W]",
        paramShape: (c) => [1, c, 1, 1, 1],
        bufferShape: (c) => [1, c, 1],
        defaultMomentum: 0.997,
      },
      numFeatures,
      options,
    );
  }
}
