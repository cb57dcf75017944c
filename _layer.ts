/**
 * The SwitchNorm layers: options, parameters, buffers, modes and the path from `forward()` to a
 * backend. The math lives in the backends.
 *
 * @module
 */
import type {
  Backend,
  BackendName,
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
import {
  type KeySpec,
  type LoadStateDictOptions,
  type LoadStateDictResult,
  readStateDict,
  type ShapedTensor,
  shapeStateDict,
  type StateDict,
  type StateDictOptions,
} from "./_state_dict.ts";
import { batchSync, type LayerSync, type SyncGroup } from "./_sync.ts";
import { type Importance, softmax } from "./_importance.ts";
import { type Mixing, SPARSE_DEFAULT_MOMENTUM, SPARSE_KEYS, SparseState } from "./_sparse.ts";
import {
  checkBoolean,
  checkEps,
  checkFiniteIn,
  checkFloat32,
  checkInputShape,
  checkKnownKeys,
  checkPositiveInt,
  describeValue,
} from "./_validate.ts";
import { CallQueue } from "./_call_queue.ts";
import { KeptForward, KeptInput, markOverwritten } from "./_saved_forward.ts";
import {
  checkStillReadable,
  type ForwardCall,
  isResident,
  readBackwardCall,
  readForwardCall,
} from "./_call_args.ts";

/**
 * The most channels a layer may have. Parameters, buffers and gradients take 32 bytes per
 * channel (8 GiB at this bound) before any input, WebGPU holds 8 bytes per channel of running
 * buffers in one buffer (maxBufferSize is about 2^31 on common adapters) and WASM's 4 GiB memory
 * holds its layer block and a sample's statistics: beyond it no backend could run the layer, and
 * the arrays would exhaust memory rather than fail.
 */
const MAX_FEATURES = 2 ** 28;

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
   * Sparse SN (the authors' SSN2d): map the importance logits to mixing weights with sparsestmax
   * (radius {@linkcode SwitchNorm.radius}) instead of softmax, so that training drives each layer
   * to a single normalizer. The state dict gains SSN2d's `mean_fixed`, `var_fixed` and `radius`,
   * and the default momentum becomes SSN2d's 0.997 (for SwitchNorm2d too). Default false.
   */
  sparse?: boolean;
}

/**
 * Options of SwitchNorm2d and SwitchNorm3d. `UsingBN` is inferred from `usingBN`, so that
 * {@linkcode SwitchNorm.stateDict} has the running buffers exactly when the layer does.
 */
export interface SwitchNormNdOptions<UsingBN extends boolean = boolean> extends SwitchNormOptions {
  /** Mix in batch statistics (default true). false: only IN and LN, no running buffers. */
  usingBN?: UsingBN;
  /** Initialise gamma to 0 instead of 1 (the last norm of a residual block). Default false. */
  lastGamma?: boolean;
}

/** Per-call options of `forward`. */
export interface ForwardOptions {
  /** Where to write y (same kind and length as x); a new one is made otherwise. */
  out?: Float32Array | ResidentTensor;
  /**
   * Keep what `backward` needs (x by reference, not a copy, and per-(n,c) statistics). Default:
   * true in training mode, false in evaluation mode, so that inference keeps nothing. While a
   * forward is kept, `out` may not overlap its x (in place needs `keepForBackward: false`).
   */
  keepForBackward?: boolean;
}

/** Per-call options of `backward`. */
export interface BackwardOptions {
  /**
   * Keep the forward differentiable after this backward, so that another backward through it is
   * allowed (PyTorch's `retain_graph`). Default false: a second backward through the same
   * forward throws instead of adding its gradients again.
   */
  retainGraph?: boolean;
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
 * What a garbage-collected layer held in its backends (WASM regions, GPU buffers) is freed here:
 * users of a garbage-collected language drop objects. The held value is the layer's id and its
 * set of backends, never the layer itself. dispose() still frees at once.
 */
const dropped = new FinalizationRegistry<{ id: number; backends: Set<Backend> }>(
  ({ id, backends }) => {
    for (const b of backends) b.forgetLayer?.(id);
  },
);

/**
 * What SwitchNorm1d/2d/3d have in common. Not constructed directly. `UsingBN` is whether the layer
 * has BN statistics and running buffers, as far as TypeScript knows (`boolean`: either).
 */
export abstract class SwitchNorm<UsingBN extends boolean = boolean> {
  /** Number of channels C. */
  readonly numFeatures: number;
  /** Added to the variance before the square root. */
  readonly eps: number;
  /** Momentum of the moving average of the running buffers. */
  readonly momentum: number;
  /** Whether the running buffers are a moving average (true) or batch-average sums (false). */
  readonly usingMovingAverage: boolean;
  /** Whether BN statistics take part (always true for SwitchNorm1d). */
  readonly usingBN: UsingBN;
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
  /** The latest forward that kept what backward needs, with the parameter values it used. */
  #saved?: KeptForward;
  /** Files #saved's x where `out` of any layer's forward is checked against it. */
  readonly #keptInput = new KeptInput();
  /** Serialises forward, backward and sync: each takes effect in call order, as if awaited. */
  readonly #calls = new CallQueue();
  /** Sparse SN's radius and fixed flags; undefined without the sparse option. */
  #sparse?: SparseState;
  #importance?: { version: number; mean: Importance; var: Importance };
  #sync?: LayerSync;
  #grads: Gradients;
  #view?: LayerParams;
  readonly #layerId = nextLayerId++;
  #ran?: { backend: BackendName; reason: string };

  /**
   * Internal: validates the options and allocates parameters and buffers; see the subclasses.
   * @ignore
   */
  protected constructor(kind: LayerKind, numFeatures: number, options: SwitchNormNdOptions) {
    checkPositiveInt(`${kind.name}: numFeatures`, numFeatures);
    if (numFeatures > MAX_FEATURES) {
      throw new RangeError(
        `${kind.name}: numFeatures must be at most 2^28 (${MAX_FEATURES}), got ${numFeatures}: ` +
          `its parameters, buffers and gradients alone would need ${32 * numFeatures} bytes`,
      );
    }
    if (typeof options !== "object" || options === null || Array.isArray(options)) {
      throw new TypeError(`${kind.name}: options must be an object, got ${describeValue(options)}`);
    }
    const known = ["eps", "momentum", "usingMovingAverage", "backend", "sync", "sparse"];
    if (kind.layout === "nd") known.push("usingBN", "lastGamma");
    checkKnownKeys(kind.name, options, known);
    this.#kind = kind;
    this.numFeatures = numFeatures;
    // undefined means "the default"; null is a mistake, as for the boolean options.
    this.eps = options.eps === undefined ? 1e-5 : checkEps(`${kind.name}: eps`, options.eps);
    this.sparse = checkBoolean(`${kind.name}: sparse`, options.sparse, false);
    if (this.sparse) this.#sparse = new SparseState();
    this.momentum = options.momentum === undefined
      ? (this.sparse ? SPARSE_DEFAULT_MOMENTUM : kind.defaultMomentum)
      : checkFiniteIn(`${kind.name}: momentum`, options.momentum, 0, 1);
    this.usingMovingAverage = checkBoolean(
      `${kind.name}: usingMovingAverage`,
      options.usingMovingAverage,
      true,
    );
    this.usingBN = checkBoolean(`${kind.name}: usingBN`, options.usingBN, true) as UsingBN;
    this.lastGamma = checkBoolean(`${kind.name}: lastGamma`, options.lastGamma, false);
    const backend = options.backend === undefined ? "auto" : options.backend;
    if (!BACKEND_REQUESTS.includes(backend)) {
      throw new RangeError(
        `${kind.name}: unknown backend ${describeValue(backend)} (expected ${
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
      this.#sync = batchSync(g, kind.name);
    }
    dropped.register(this, { id: this.#layerId, backends: this.#usedBackends });
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

  /**
   * Sets training mode (`mode` true, the default: batch BN statistics, running buffers updated)
   * or evaluation mode (false); returns the layer, as PyTorch does.
   *
   * @throws {TypeError} if `mode` is not a boolean.
   * @example
   * ```ts
   * import { SwitchNorm2d } from "./mod.ts";
   * const sn = new SwitchNorm2d(4).train(false);
   * console.log(sn.training); // false
   * ```
   */
  train(mode = true): this {
    this.training = checkBoolean(`${this.#kind.name}.train: mode`, mode, true);
    return this;
  }

  /**
   * Sets evaluation mode: BN statistics come from the running buffers, which stay unchanged.
   * Returns the layer.
   *
   * @example
   * ```ts
   * import { SwitchNorm1d } from "./mod.ts";
   * const sn = new SwitchNorm1d(2, { backend: "reference" }).eval();
   * const y = await sn.forward(new Float32Array([1, 2, 3, 4]), [2, 2]); // running_mean untouched
   * console.log(y.length, sn.running_mean); // 4 Float32Array(2) [ 0, 0 ]
   * ```
   */
  eval(): this {
    return this.train(false);
  }

  /**
   * gamma, length C. A COPY: `layer.weight[0] = 5` changes nothing. To change parameters, edit
   * the copy and load it back: `layer.loadStateDict({ weight: w }, { strict: false })`. The same
   * holds for every getter below.
   */
  get weight(): Float32Array {
    return this.#params.weight.slice();
  }
  /** beta, length C (a copy; see {@linkcode weight}). */
  get bias(): Float32Array {
    return this.#params.bias.slice();
  }
  /** Importance logits of the means, order (in,) ln, bn (a copy; see {@linkcode weight}). */
  get mean_weight(): Float32Array {
    return this.#params.meanLogits.slice();
  }
  /** Importance logits of the variances, order (in,) ln, bn (a copy). */
  get var_weight(): Float32Array {
    return this.#params.varLogits.slice();
  }
  /**
   * Running means, length C, or length 0 without usingBN (a copy).
   *
   * @throws {Error} after training-mode forwards on GPU-resident tensors, until
   * `await layer.sync()` has copied the buffers back (rather than return stale values).
   */
  get running_mean(): Float32Array {
    this.#checkIdle("running_mean");
    this.#checkRunningFresh("running_mean");
    return this.#params.runningMean.slice();
  }
  /**
   * Running variances, length C, or length 0 without usingBN (a copy).
   *
   * @throws {Error} like {@linkcode running_mean}, until `await layer.sync()`.
   */
  get running_var(): Float32Array {
    this.#checkIdle("running_var");
    this.#checkRunningFresh("running_var");
    return this.#params.runningVar.slice();
  }
  /**
   * The mixing weights of the means, order (in,) ln, bn: softmax(mean_weight), or with `sparse`
   * sparsestmax(mean_weight, radius), or mean_weight itself once that mixing is fixed.
   *
   * @example
   * ```ts
   * import { SwitchNorm2d } from "./mod.ts";
   * const sn = new SwitchNorm2d(4);
   * sn.loadStateDict({ ...sn.stateDict(), mean_weight: [2, 0, 0] });
   * console.log(sn.meanImportance); // Float64Array(3) [ 0.787..., 0.106..., 0.106... ]: mostly IN
   * ```
   */
  get meanImportance(): Float64Array {
    return this.#mixing().mean.weights.slice();
  }
  /** The mixing weights of the variances, like {@linkcode meanImportance}. */
  get varImportance(): Float64Array {
    return this.#mixing().var.weights.slice();
  }

  /**
   * Sparse SN's radius r in [0, 1] (SSN2d's `radius` buffer), to be ramped from 0 to 1 over
   * training (`layer.radius = step / totalSteps`). r = 0 gives sparsemax; from r ~ 0.82 (3
   * logits) or ~ 0.71 (2 logits) on the weights are one-hot. A forward whose weights are one-hot
   * freezes that mixing (see {@linkcode frozenTo}). The state dict holds it as float32: a radius
   * loaded by {@linkcode loadStateDict} reads back so (0.9 as 0.8999999761581421).
   *
   * @throws {Error} without the sparse option; {@link TypeError} for a non-number;
   * {@link RangeError} outside [0, 1].
   * @example
   * ```ts
   * import { SwitchNorm2d } from "./mod.ts";
   * const sn = new SwitchNorm2d(4, { sparse: true });
   * const totalSteps = 100;
   * for (let step = 0; step <= totalSteps; step++) sn.radius = step / totalSteps;
   * console.log(sn.radius, sn.meanImportance); // 1, still uniform: the logits are equal
   * ```
   */
  get radius(): number {
    return this.#sparse?.radius ?? 0;
  }
  set radius(r: number) {
    if (!this.#sparse) throw new Error(`${this.#kind.name}: radius needs the sparse option`);
    const radius = checkFiniteIn(`${this.#kind.name}: radius`, r, 0, 1);
    this.#checkIdle("radius");
    this.#sparse.radius = radius;
    this.#params.version++;
  }

  /**
   * Sparse SN: the normalizer index (order (in,) ln, bn) each fixed mixing uses (its largest
   * logit). A mixing becomes fixed after a forward whose weights were one-hot: its logits become
   * that one-hot vector, get no gradient (and {@linkcode step} no longer passes them to the
   * optimiser), and are the weights from then on (SSN2d's `mean_fixed`/`var_fixed`).
   */
  get frozenTo(): { readonly mean?: number; readonly var?: number } {
    const s = this.#sparse, p = this.#params, out: { mean?: number; var?: number } = {};
    const mean = s?.fixedTo("mean", p.meanLogits), variance = s?.fixedTo("var", p.varLogits);
    if (mean !== undefined) out.mean = mean;
    if (variance !== undefined) out.var = variance;
    return out;
  }

  /** Sparse SN, after a forward: fixes each mixing whose weights were one-hot (SSN2d). */
  #fixOneHotMixings(): void {
    const s = this.#sparse!, p = this.#params, m = this.#mixing();
    const fixedMean = s.fixIfOneHot("mean", m.mean.weights, p.meanLogits, this.#grads.mean_weight);
    const fixedVar = s.fixIfOneHot("var", m.var.weights, p.varLogits, this.#grads.var_weight);
    if (fixedMean || fixedVar) p.version++;
  }

  /** The importance maps for the current logits and radius, cached per params version. */
  #mixing(): { mean: Importance; var: Importance } {
    const p = this.#params;
    if (this.#importance?.version !== p.version) {
      const map = (logits: Float32Array, which: Mixing): Importance =>
        this.#sparse ? this.#sparse.importance(logits, which) : softmax(logits);
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
   * The backend that ran the last forward, and why it was chosen (a sentence naming the rule that
   * decided, e.g. why not WebGPU); undefined before the first forward.
   *
   * @example
   * ```ts
   * import { SwitchNorm1d } from "./mod.ts";
   * const sn = new SwitchNorm1d(2);
   * await sn.forward(new Float32Array([1, 2, 3, 5]), [2, 2]);
   * console.log(sn.backendInfo?.backend, sn.backendInfo?.reason); // e.g. "wasm", "auto: ..."
   * ```
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
      specs.running_var = { ...buffer, nonNegative: true };
    }
    return this.sparse ? { ...specs, ...SPARSE_KEYS } : specs;
  }

  /**
   * Loads parameters and buffers with PyTorch's key names. Each value may be flat (length C, or
   * the number of logits), a nested array in the reference's shape ([1,C,1,1] for SwitchNorm2d
   * weight/bias, [1,C,1] for its buffers; [1,C] for SwitchNorm1d; [1,C,1,1,1] for SwitchNorm3d),
   * `{ data, shape }`, or a tensor of {@linkcode readSafetensors} (any float or integer dtype;
   * values are converted to float32 and must fit). A sparse layer also reads SSN2d's
   * `mean_fixed`, `var_fixed` (0 or 1) and `radius` ([0, 1]), each of length 1. Only the dict's
   * own keys count; a negative running_var is refused.
   *
   * `prefix` picks one layer's keys out of a whole model's checkpoint (a leading "module." from
   * `nn.DataParallel` is accepted); `strict: false` loads a subset and leaves the rest as it is,
   * which is also how to change one parameter:
   * `layer.loadStateDict({ weight: w }, { strict: false })` (the getters return copies).
   *
   * Ends a batch average in progress when it loads running buffers (they are statistics).
   *
   * @example
   * ```ts
   * import { SwitchNorm2d } from "./mod.ts";
   * const sn = new SwitchNorm2d(3);
   * const weight = sn.weight; // a copy: writing to it changes nothing
   * weight[0] = 5;
   * const { missingKeys } = sn.loadStateDict({ weight }, { strict: false });
   * console.log(sn.weight[0], missingKeys); // 5 [ "bias", "mean_weight", ... ]
   * ```
   *
   * @returns The keys of the layer that were missing and the keys under the prefix that are not
   *   the layer's (both empty with strict: true), with the prefix, as PyTorch reports them.
   * @throws {RangeError} on a missing or unexpected key (strict only), a misshapen, non-finite or
   *   out-of-float32-range value; {@link TypeError} on a value of the wrong kind or bad options.
   *   Nothing is changed when it throws.
   */
  loadStateDict(
    dict: Readonly<Record<string, unknown>>,
    options: LoadStateDictOptions = {},
  ): LoadStateDictResult {
    const { read, missingKeys, unexpectedKeys } = readStateDict(
      this.#kind.name,
      dict,
      this.#specs(),
      options,
    );
    this.#checkIdle("loadStateDict");
    // A lone running buffer must not be uploaded beside a stale CPU copy of the other one.
    const running = +!!read.running_mean + +!!read.running_var;
    if (running === 1) this.#checkRunningFresh("loadStateDict");
    // Everything is checked (readStateDict, then the sparse flags and radius) before any change.
    const applySparse = this.#sparse?.prepareLoad(`${this.#kind.name}.loadStateDict`, read);
    const p = this.#params;
    this.#saved?.detach(this.#paramsView());
    applySparse?.();
    if (read.weight) p.weight.set(read.weight);
    if (read.bias) p.bias.set(read.bias);
    if (read.mean_weight) p.meanLogits.set(read.mean_weight);
    if (read.var_weight) p.varLogits.set(read.var_weight);
    if (read.running_mean) p.runningMean.set(read.running_mean);
    if (read.running_var) p.runningVar.set(read.running_var);
    // Loaded buffers are statistics, not a batch average's sums.
    if (read.running_mean || read.running_var) this.#batchesAccumulated = 0;
    // The version bump makes every backend (WebGPU's device copies too) take the new values.
    p.version++;
    if (running > 0) p.runningVersion++;
    return { missingKeys, unexpectedKeys };
  }

  /**
   * Copies of the parameters and buffers, flat, with PyTorch's key names; `running_mean` and
   * `running_var` only with usingBN (and then the type says so: no `!` needed).
   *
   * @throws {Error} after training-mode forwards on GPU-resident tensors, until
   * `await layer.sync()` has copied the running buffers back from the GPU.
   * @example
   * ```ts
   * import { SwitchNorm2d } from "./mod.ts";
   * const sn = new SwitchNorm2d(2);
   * const { weight, running_mean } = sn.stateDict();
   * new SwitchNorm2d(2).loadStateDict(sn.stateDict()); // the same keys load back
   * console.log(weight, running_mean); // Float32Array(2) [ 1, 1 ] Float32Array(2) [ 0, 0 ]
   * ```
   */
  stateDict(): StateDict<UsingBN>;
  /**
   * The same entries with `options.prefix` before each key and, with `shapes: "pytorch"`, as
   * `{ data, shape }` in the authors' shapes: what {@linkcode writeSafetensors} writes and the
   * authors' module loads with `load_state_dict(strict=True)`.
   *
   * @example
   * ```ts
   * import { SwitchNorm2d, writeSafetensors } from "./mod.ts";
   * const sn = new SwitchNorm2d(4);
   * const dict = sn.stateDict({ prefix: "layer1.0.bn1.", shapes: "pytorch" });
   * console.log(dict["layer1.0.bn1.weight"].shape); // [1, 4, 1, 1]
   * const bytes = writeSafetensors(dict);
   * console.log(bytes.length);
   * ```
   *
   * @throws {TypeError} on unknown options or a prefix that is not a string; {@link RangeError}
   *   on an unknown `shapes`; the same as `stateDict()` for running buffers held on the GPU.
   */
  stateDict(options: StateDictOptions & { shapes: "pytorch" }): Record<string, ShapedTensor>;
  /** The flat entries with `options.prefix` before each key. */
  stateDict(options: StateDictOptions): Record<string, Float32Array>;
  stateDict(
    options?: StateDictOptions,
  ): StateDict<UsingBN> | Record<string, Float32Array | ShapedTensor> {
    this.#checkIdle("stateDict");
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
    const all = this.#sparse ? { ...dict, ...this.#sparse.entries() } : dict;
    if (options === undefined) return all as StateDict<UsingBN>;
    return shapeStateDict(
      `${this.#kind.name}.stateDict`,
      all as unknown as Record<string, Float32Array>,
      this.#specs(),
      options,
    );
  }

  /**
   * Zeroes the running buffers and the batch-average count {@linkcode batchesAccumulated} (the
   * first step of a batch average).
   *
   * @example
   * ```ts
   * import { SwitchNorm1d } from "./mod.ts";
   * const sn = new SwitchNorm1d(2, { backend: "reference", usingMovingAverage: false });
   * await sn.forward(new Float32Array([1, 2, 3, 5]), [2, 2]);
   * sn.resetRunningStats();
   * console.log(sn.batchesAccumulated, sn.running_mean); // 0 Float32Array(2) [ 0, 0 ]
   * ```
   */
  resetRunningStats(): void {
    this.#checkIdle("resetRunningStats");
    this.#saved?.detach(this.#paramsView());
    this.#params.runningMean.fill(0);
    this.#params.runningVar.fill(0);
    this.#batchesAccumulated = 0;
    this.#params.version++;
    this.#params.runningVersion++;
  }

  /**
   * Ends a batch average (usingMovingAverage false): after K training-mode forwards from
   * {@linkcode resetRunningStats}, sets running_mean = sum_mean / K and
   * running_var = sum_sq / K - running_mean^2, the paper's inference statistics, and resets K.
   * Until then an evaluation-mode forward refuses to run on the sums.
   *
   * @throws {Error} without usingBN, with usingMovingAverage, with no training batch accumulated
   * since {@linkcode resetRunningStats}, or while the running buffers are on the GPU (call
   * `await layer.sync()` first). Nothing is changed.
   * @example
   * ```ts
   * import { SwitchNorm2d } from "./mod.ts";
   * const sn = new SwitchNorm2d(2, { backend: "reference", usingMovingAverage: false });
   * sn.resetRunningStats();
   * for (let k = 0; k < 3; k++) {
   *   await sn.forward(new Float32Array(16).map((_, i) => i % 5 + k), [2, 2, 2, 2]);
   * }
   * sn.finalizeBatchAverage();
   * const y = await sn.eval().forward(new Float32Array(16).map(Math.sqrt), [2, 2, 2, 2]);
   * console.log(sn.running_mean, y.length);
   * ```
   */
  finalizeBatchAverage(): void {
    const name = this.#kind.name;
    if (!this.usingBN) throw new Error(`${name}: no running buffers (usingBN is false)`);
    if (this.usingMovingAverage) {
      throw new Error(`${name}: finalizeBatchAverage needs usingMovingAverage: false`);
    }
    this.#checkIdle("finalizeBatchAverage");
    this.#checkRunningFresh("finalizeBatchAverage");
    const k = this.#batchesAccumulated;
    if (k === 0) {
      throw new Error(`${name}: no training batches accumulated since resetRunningStats()`);
    }
    this.#saved?.detach(this.#paramsView());
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
  /** Counts dispose() calls: a call that fails while one happened says so. */
  #disposals = 0;
  /** Every backend this layer has run on (auto may switch per call): all hold layer state. */
  readonly #usedBackends = new Set<Backend>();

  /**
   * Synchronous methods that read or write what a pending forward or backward changes cannot
   * wait for it: they refuse, rather than act before a call made earlier.
   */
  #checkIdle(what: string): void {
    if (this.#calls.busy) {
      throw new Error(
        `${this.#kind.name}.${what}: a forward, backward or sync of this layer is still running; ` +
          "await it first (calls take effect in the order they were made)",
      );
    }
  }

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
   * on GPU-resident tensors; resolves at once otherwise).
   *
   * @throws {Error} (rejects) if the GPU device was lost before the buffers could be read.
   * @example
   * ```ts
   * import { SwitchNorm2d } from "./mod.ts";
   * const sn = new SwitchNorm2d(2, { backend: "reference" });
   * await sn.forward(new Float32Array(16).map(Math.sqrt), [2, 2, 2, 2]);
   * await sn.sync(); // nothing to do on a CPU backend; on WebGPU it reads the buffers back
   * console.log(sn.stateDict().running_var);
   * ```
   */
  sync(): Promise<void> {
    return this.#calls.run(async () => {
      for (const b of this.#usedBackends) await b.syncRunning?.(this.#paramsView());
    });
  }

  /**
   * Frees what the backends keep for this layer (device copies) now; a layer dropped without it is
   * reclaimed once garbage-collected, later. The layer stays usable.
   * Running buffers that are newer on a GPU are read back first, so dispose() loses nothing: the
   * read-back is ordered with the layer's calls (later ones wait for it; `await layer.sync()` to
   * wait), and running buffers written after dispose() (loadStateDict, resetRunningStats) win.
   * It acts at once: a forward or backward still running may then fail, saying so and changing
   * nothing, and the latest forward can no longer be differentiated (run forward again).
   *
   * @example
   * ```ts
   * import { SwitchNorm2d } from "./mod.ts";
   * {
   *   using sn = new SwitchNorm2d(2, { backend: "wasm" });
   *   await sn.forward(new Float32Array(16).map(Math.sqrt), [2, 2, 2, 2]);
   * } // disposed here
   * ```
   */
  dispose(): void {
    this.#disposals++;
    // What backward needs is freed (on every backend alike): its backward is refused, by name.
    if (this.#saved) this.#saved.disposed = true;
    for (const b of this.#usedBackends) {
      if (!b.runningStale?.(this.#paramsView())) {
        b.releaseLayer?.(this.#paramsView());
        continue;
      }
      // The device holds the newest running buffers: read them back in call order (later calls
      // wait for it, so none runs on state about to be freed), then free. They are read into
      // copies, kept only if the CPU wrote no running buffers meanwhile (loadStateDict and
      // resetRunningStats are not refused by it: what they write after dispose wins).
      void this.#calls.run(async () => {
        const p = this.#params, version = p.runningVersion, view = this.#paramsView();
        const copy = {
          ...view,
          runningMean: p.runningMean.slice(),
          runningVar: p.runningVar.slice(),
        };
        try {
          await b.syncRunning!(copy);
          if (p.runningVersion === version) {
            p.runningMean.set(copy.runningMean);
            p.runningVar.set(copy.runningVar);
          }
        } catch {
          // The device was lost: its newer buffers with it; the layer keeps its CPU copy.
        } finally {
          b.releaseLayer?.(this.#paramsView());
        }
      }, true);
    }
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
   * BN statistics, the running buffers are updated before the promise resolves (and only if it
   * resolves). Calls on one layer take effect in the order they were made (each waits for the
   * layer's earlier calls); the mode (training or evaluation) is the one in force when forward is
   * called, but x (and `out`) are read when the call runs: do not change, transfer or resize them
   * until the promise settles. A failed call leaves parameters and buffers as they were.
   *
   * @param x the input, row-major float32.
   * @param shape `[N, C]` for SwitchNorm1d, `[N, C, H, W]` for 2d, `[N, C, D, H, W]` for 3d; C
   * must be the layer's `numFeatures`.
   * @param options `out` to write y into, `keepForBackward` (default: the training mode).
   * @throws {TypeError} (rejects) if x is not a Float32Array or resident tensor, `shape` is not
   * an array of numbers, an option is unknown or of the wrong type, `out` is not of x's kind and length, a
   * resident x lives in another backend, or x or `out` was detached or resized after the call was
   * made.
   * @throws {RangeError} (rejects) for a wrong rank, a non-integer or zero dimension, a channel
   * count other than `numFeatures`, or a length that does not match the shape.
   * @throws {Error} (rejects) when `out` overlaps x while this forward keeps x for backward
   * (training mode or keepForBackward); in evaluation mode with an unfinalized batch average;
   * where the requested backend cannot run here (no WebAssembly SIMD, WebAssembly compilation
   * refused: a `WasmRefusedError`, no WebGPU adapter); on a lost GPU device; for SyncSN on a
   * backend without it; when the layer is disposed while the call runs.
   * @example
   * ```ts
   * import { SwitchNorm2d } from "./mod.ts";
   * const sn = new SwitchNorm2d(3);
   * const x = new Float32Array(2 * 3 * 4 * 4).map(Math.random);
   * const y = await sn.forward(x, [2, 3, 4, 4]); // a new Float32Array
   * await sn.forward(x, [2, 3, 4, 4], { out: y }); // or into one of yours
   * console.log(y.length); // 96
   * ```
   */
  forward(
    x: Float32Array,
    shape: readonly number[],
    options?: ForwardOptions,
  ): Promise<Float32Array>;
  /**
   * The same on a tensor resident in the layer's backend (its shape travels with it); resolves
   * to a resident y.
   *
   * @throws {TypeError} (rejects) as above, and if a shape is passed with a resident tensor.
   * @example
   * ```ts
   * import { SwitchNorm2d } from "./mod.ts";
   * const sn = new SwitchNorm2d(3, { backend: "wasm" });
   * using x = await sn.upload(new Float32Array(96).map(Math.random), [2, 3, 4, 4]);
   * using y = await sn.forward(x); // stays in WASM memory
   * console.log((await y.read()).length); // 96
   * ```
   */
  forward(x: ResidentTensor, options?: ForwardOptions): Promise<ResidentTensor>;
  forward(
    x: Float32Array | ResidentTensor,
    shapeOrOptions?: readonly number[] | ForwardOptions,
    maybeOptions?: ForwardOptions,
  ): Promise<Float32Array | ResidentTensor> {
    let call: ForwardCall | undefined, error: unknown;
    try {
      // Read now: the arguments and mode as they are when the call is made.
      call = readForwardCall(this.#kind, this.numFeatures, this.training, [
        x,
        shapeOrOptions,
        maybeOptions,
      ]);
    } catch (e) {
      error = e;
    }
    // Without SyncSN bad input rejects at once; with it, the failure still takes this call's
    // place in the replicas' gathers (in call order), so that they fail too instead of waiting.
    if (call === undefined && !this.#sync) return Promise.reject(error);
    const gathers = (call?.training ?? this.training) && this.usingBN;
    return this.#calls.run(() =>
      this.#reportingToReplicas(
        "stats",
        this.numFeatures,
        gathers,
        () => call ? this.#forward(call) : Promise.reject(error),
      )
    );
  }

  /**
   * Runs `call`, which under SyncSN takes part in one gather when `gathers`. If it fails before
   * that gather (bad input, say), it still takes part, marked as failed, so that the other
   * replicas' calls fail too instead of waiting; on a group that became unusable it fails first.
   */
  async #reportingToReplicas<T>(
    kind: "stats" | "sums",
    length: number,
    gathers: boolean,
    call: () => Promise<T>,
  ): Promise<T> {
    const sync = this.#sync;
    if (!sync || !gathers) return await call();
    sync.check();
    const before = sync.started;
    try {
      return await call();
    } catch (e) {
      if (sync.started === before) await sync.fail(kind, length);
      throw e;
    }
  }

  async #forward(call: ForwardCall): Promise<Float32Array | ResidentTensor> {
    const name = this.#kind.name;
    const { x, resident, n, c, m, out, keep, training } = call;
    if (!training && this.#batchesAccumulated > 0) {
      // The buffers hold the batch average's sums: normalizing with them is silently wrong.
      throw new Error(
        `${name}.forward: evaluation mode, but ${this.#batchesAccumulated} training batches were ` +
          "accumulated for the batch average and not finalized (the running buffers hold sums, " +
          "not statistics); call finalizeBatchAverage() first, or resetRunningStats() to discard them",
      );
    }
    const { backend, reason } = await this.#backend({
      elements: x.length,
      sync: this.#sync !== undefined,
      resident: resident ? (x as ResidentTensor).backend : undefined,
    });
    if (this.#sync && !backend.supportsSync) {
      throw new Error(
        `${name}.forward: SyncSN (the sync option) is not supported on ${backend.name}`,
      );
    }
    if (resident && (x as ResidentTensor).backend !== backend.name) {
      throw new TypeError(
        `${name}.forward: x lives in ${
          (x as ResidentTensor).backend
        } memory but this layer runs on ${backend.name}`,
      );
    }
    const previous = this.#settledBackend;
    if (previous && previous !== backend && previous.runningStale?.(this.#paramsView())) {
      // The other backend's device holds the newest running buffers: this call must start there.
      await previous.syncRunning!(this.#paramsView());
    }
    this.#settledBackend = backend;
    this.#usedBackends.add(backend);
    const problem: NormProblem = {
      layout: this.#kind.layout,
      n,
      c,
      m,
      training,
      usingBN: this.usingBN,
      eps: this.eps,
      sync: this.#sync,
    };
    const params = this.#paramsView(), mixing = this.#mixing();
    const update: RunningUpdate = this.usingMovingAverage
      ? { kind: "movingAverage", momentum: this.momentum }
      : { kind: "batchAverage" };
    const save: SavedForward | undefined = keep ? {} : undefined;
    checkStillReadable(`${name}.forward: x`, x, n * c * m);
    if (out !== undefined) checkStillReadable(`${name}.forward: out`, out, n * c * m);
    // The backend replaces the statistics a previous forward kept: that one is gone either way.
    this.#keptInput.clear();
    this.#saved = undefined;
    let y: Float32Array | ResidentTensor;
    const disposals = this.#disposals;
    try {
      y = await backend.forward(problem, x, params, update, out, save);
    } catch (e) {
      throw this.#disposedDuring(`${name}.forward`, disposals, e);
    } finally {
      // Another layer's forward may have kept `out` as its x: its backward must not differentiate
      // what this call wrote there (even a failed call may have written some of it).
      if (out !== undefined) markOverwritten(`a ${name} forward`, out);
    }
    // Sparse SN: a mixing whose weights were one-hot is fixed now (its weights, the same one-hot
    // vector, become its logits, and it has no gradient): its backward uses the fixed map.
    if (this.#sparse) this.#fixOneHotMixings();
    if (save) {
      this.#saved = new KeptForward(
        name,
        save,
        backend,
        params,
        this.#sparse ? this.#mixing() : mixing,
      );
      this.#keptInput.set(this.#saved);
    }
    if (training && this.usingBN && !backend.runningStale && this.#usedBackends.size > 1) {
      // A CPU backend updated the running buffers in place: a device copy is now behind.
      this.#params.version++;
      this.#params.runningVersion++;
    }
    if (training && this.usingBN && !this.usingMovingAverage) this.#batchesAccumulated++;
    this.#ran = { backend: backend.name, reason };
    return y;
  }

  /**
   * Gradients accumulated by {@linkcode backward} since the last {@linkcode zeroGrad} (the live
   * arrays: an optimiser may read them in place), with PyTorch's parameter names.
   *
   * @example
   * ```ts
   * import { SwitchNorm1d } from "./mod.ts";
   * const sn = new SwitchNorm1d(2, { backend: "reference" });
   * await sn.forward(new Float32Array([1, 2, 4, 3]), [2, 2]);
   * await sn.backward(new Float32Array([1, 0, 0, 1]));
   * console.log(sn.grads.weight, sn.grads.mean_weight);
   * ```
   */
  get grads(): Gradients {
    return this.#grads;
  }

  /**
   * An optimiser step: calls `update` with each parameter (the live array, to change in place),
   * its accumulated gradient and its name, then makes the new values take effect. The logits of a
   * fixed Sparse SN mixing are skipped, as PyTorch's optimisers skip a parameter without gradient.
   * A forward already run keeps the values it used, so its backward is unaffected. If `update`
   * throws, every parameter is put back as it was before the step and the error is rethrown.
   *
   * @throws {Error} a forward, backward or sync of this layer is still running; whatever `update`
   * throws.
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
    if (typeof update !== "function") {
      throw new TypeError(
        `${this.#kind.name}.step: update must be a function, got ${describeValue(update)}`,
      );
    }
    this.#checkIdle("step");
    const p = this.#params, g = this.#grads, fixed = this.#sparse?.fixed;
    this.#saved?.detach(this.#paramsView());
    // An update that throws part-way must leave every parameter as it was: the O(C) values are
    // snapshotted first and put back (else some would be written without the version bump that
    // makes backends and importance weights see them).
    const before = [p.weight, p.bias, p.meanLogits, p.varLogits].map((a) => a.slice());
    try {
      update(p.weight, g.weight, "weight");
      update(p.bias, g.bias, "bias");
      // Sparse SN: a fixed mixing's logits have no gradient (None in PyTorch): the optimiser skips them.
      if (!fixed?.mean) update(p.meanLogits, g.mean_weight, "mean_weight");
      if (!fixed?.var) update(p.varLogits, g.var_weight, "var_weight");
    } catch (e) {
      [p.weight, p.bias, p.meanLogits, p.varLogits].forEach((a, i) => a.set(before[i]));
      throw e;
    }
    p.version++;
  }

  /**
   * Sets the accumulated gradients to zero.
   *
   * @throws {Error} a forward, backward or sync of this layer is still running.
   * @example
   * ```ts
   * import { SwitchNorm1d } from "./mod.ts";
   * const sn = new SwitchNorm1d(2, { backend: "reference" });
   * await sn.forward(new Float32Array([1, 2, 4, 3]), [2, 2]);
   * await sn.backward(new Float32Array([1, 0, 0, 1]));
   * sn.zeroGrad();
   * console.log(sn.grads.bias); // Float32Array(2) [ 0, 0 ]
   * ```
   */
  zeroGrad(): void {
    this.#checkIdle("zeroGrad");
    for (const g of Object.values(this.#grads)) g.fill(0);
  }

  /**
   * Back-propagates `dy` = dL/dy through the latest forward called before it (which must have
   * kept what backward needs: training mode, or `keepForBackward: true`), with the parameter
   * values that forward used. Resolves to dx, of the same kind as that forward's x, and adds the
   * parameter gradients into {@linkcode grads}. x must not have been changed since that forward.
   * dy is read when the call runs (after the layer's earlier calls), not when it is made: do not
   * change, transfer or resize it until the promise settles.
   * One backward per forward, unless `{ retainGraph: true }` keeps it for another.
   *
   * @throws {Error} no forward kept for backward, it was already differentiated, its x was
   * overwritten since as another forward's `out`, or the layer was disposed since that forward.
   * @throws {RangeError} dy is not of the kind and length of that forward's x.
   * @throws {TypeError} an option is unknown or of the wrong type; dy or that forward's x was
   * detached or resized after the call was made.
   * @example
   * ```ts
   * import { SwitchNorm2d } from "./mod.ts";
   * const sn = new SwitchNorm2d(2, { backend: "reference" });
   * const y = await sn.forward(new Float32Array(16).map(Math.sqrt), [2, 2, 2, 2]);
   * const dx = await sn.backward(y.map((v) => 2 * v)); // dL/dy of L = sum(y^2)
   * console.log(dx.length, sn.grads.var_weight);
   * ```
   */
  backward(dy: Float32Array, options?: BackwardOptions): Promise<Float32Array>;
  /** The same for a resident dy (after a forward on a resident x); resolves to a resident dx. */
  backward(dy: ResidentTensor, options?: BackwardOptions): Promise<ResidentTensor>;
  backward(
    dy: Float32Array | ResidentTensor,
    options?: BackwardOptions,
  ): Promise<Float32Array | ResidentTensor> {
    const name = this.#kind.name;
    let retain: boolean | undefined, error: unknown;
    try {
      retain = readBackwardCall(name, dy, options);
    } catch (e) {
      error = e;
    }
    if (retain === undefined && !this.#sync) return Promise.reject(error);
    const dyLength = retain === undefined ? 0 : dy.length; // as given: it is read when the call runs
    // The gradient sums: dWeight, dBias, gmB, gvB (C each) and meanDots, varDots (K each).
    const sums = 4 * this.numFeatures + 2 * this.#logitCount();
    return this.#calls.run(() =>
      this.#reportingToReplicas(
        "sums",
        sums,
        true,
        () => retain === undefined ? Promise.reject(error) : this.#backward(dy, dyLength, retain),
      )
    );
  }

  /**
   * A backend call that failed while the layer was disposed failed because of it (its regions or
   * buffers were freed under it): say so, rather than what the backend saw.
   */
  #disposedDuring(what: string, disposalsBefore: number, error: unknown): unknown {
    if (this.#disposals === disposalsBefore) return error;
    return new Error(
      `${what}: the layer was disposed while this call ran, which freed what it used; nothing changed`,
      { cause: error },
    );
  }

  async #backward(
    dy: Float32Array | ResidentTensor,
    dyLength: number,
    retain: boolean,
  ): Promise<Float32Array | ResidentTensor> {
    const name = this.#kind.name;
    const kept = this.#saved, saved = kept?.save;
    if (!kept || !saved?.problem || !saved.x) {
      throw new Error(
        `${name}.backward: no forward to differentiate; run forward in training mode or with ` +
          "{ keepForBackward: true } first",
      );
    }
    if (kept.used) {
      throw new Error(
        `${name}.backward: the latest forward was already differentiated; a second backward ` +
          "would add its gradients again. Run forward again, or pass { retainGraph: true } to " +
          "the backward that should leave it differentiable",
      );
    }
    if (kept.disposed) {
      throw new Error(
        `${name}.backward: the layer was disposed after its latest forward, which freed what ` +
          "backward needs; run forward again",
      );
    }
    if (kept.overwrittenBy !== undefined) {
      throw new Error(
        `${name}.backward: the x this forward kept was overwritten since, as the out of ` +
          `${kept.overwrittenBy}; backward would differentiate other data. Write that out ` +
          "elsewhere, or run this backward first",
      );
    }
    const { n, c, m } = saved.problem, length = n * c * m;
    checkStillReadable(`${name}.backward: the x its forward kept`, saved.x, length);
    checkStillReadable(`${name}.backward: dy`, dy, dyLength);
    if (isResident(dy) !== isResident(saved.x) || dyLength !== length) {
      throw new RangeError(
        `${name}.backward: dy must be the same kind as the forward's x, with ${length} elements, got ${dyLength}`,
      );
    }
    const backend = kept.backend;
    if (!backend.backward) throw new Error(`${name}.backward: not supported on ${backend.name}`);
    const disposals = this.#disposals;
    const r = await backend.backward(saved, dy, kept.params).catch((e) => {
      throw this.#disposedDuring(`${name}.backward`, disposals, e);
    });
    const g = this.#grads, mixing = kept.mixing;
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
    if (!retain) {
      kept.used = true;
      this.#keptInput.clear();
    }
    return r.dx;
  }

  /**
   * Copies data into a tensor resident in this layer's backend, for chaining layers with
   * {@linkcode forward} without copies in and out. Free it with `dispose()` (or `using`).
   *
   * @param data row-major float32 values.
   * @param shape checked as for {@linkcode forward}.
   * @throws {TypeError} (rejects) if data is not a Float32Array or shape not an array, and on
   * the reference backend, which keeps no tensors.
   * @throws {RangeError} (rejects) if the shape does not fit the layer or the data.
   * @throws {Error} (rejects) where the layer's backend cannot run here.
   * @example
   * ```ts
   * import { SwitchNorm2d } from "./mod.ts";
   * const sn = new SwitchNorm2d(3, { backend: "wasm" });
   * using t = await sn.upload(new Float32Array(48).fill(1), [1, 3, 4, 4]);
   * console.log(t.backend, t.shape); // wasm [ 1, 3, 4, 4 ]
   * ```
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
    const length = data.length;
    const { backend } = await this.#backend({ elements: length, sync: this.#sync !== undefined });
    checkStillReadable(`${name}.upload: data`, data, length);
    return backend.upload(data, shape);
  }
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
export class SwitchNorm1d extends SwitchNorm<true> {
  /**
   * Makes a layer for `numFeatures` channels. Default momentum 0.997.
   *
   * @param numFeatures the number of channels C, a positive integer.
   * @param options see {@linkcode SwitchNormOptions}; every option is optional.
   * @throws {RangeError} if numFeatures is not a positive integer, eps or momentum is out of
   * range or not finite, or `backend` is not one of "auto", "wasm", "webgpu", "reference".
   * @throws {TypeError} for an unknown option, a non-boolean flag, options that are not an
   * object, or a `sync` that is not a SyncGroup.
   */
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
export class SwitchNorm2d<UsingBN extends boolean = true> extends SwitchNorm<UsingBN> {
  /**
   * Makes a layer for `numFeatures` channels. Default momentum 0.9.
   *
   * @param numFeatures the number of channels C, a positive integer.
   * @param options see {@linkcode SwitchNormNdOptions}; every option is optional.
   * @throws {RangeError} if numFeatures is not a positive integer, eps or momentum is out of
   * range or not finite, or `backend` is not one of "auto", "wasm", "webgpu", "reference".
   * @throws {TypeError} for an unknown option, a non-boolean flag, options that are not an
   * object, or a `sync` that is not a SyncGroup.
   */
  constructor(numFeatures: number, options: SwitchNormNdOptions<UsingBN> = {}) {
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
export class SwitchNorm3d<UsingBN extends boolean = true> extends SwitchNorm<UsingBN> {
  /**
   * Makes a layer for `numFeatures` channels. Default momentum 0.997.
   *
   * @param numFeatures the number of channels C, a positive integer.
   * @param options see {@linkcode SwitchNormNdOptions}; every option is optional.
   * @throws {RangeError} if numFeatures is not a positive integer, eps or momentum is out of
   * range or not finite, or `backend` is not one of "auto", "wasm", "webgpu", "reference".
   * @throws {TypeError} for an unknown option, a non-boolean flag, options that are not an
   * object, or a `sync` that is not a SyncGroup.
   */
  constructor(numFeatures: number, options: SwitchNormNdOptions<UsingBN> = {}) {
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
