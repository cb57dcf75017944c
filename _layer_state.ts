/**
 * A layer's parameters, buffers and their public accessors: the options it was made with, the
 * parameter and buffer getters, state-dict reading and writing, the batch-average workflow and the
 * optimiser step, with the state SwitchNorm (_layer.ts) shares with them (protected). Depends on
 * the options (_options.ts), the parameter store (_params.ts), the batch average
 * (_batch_average.ts), state dicts (_state_dict.ts), the layer's backends (_layer_backends.ts),
 * the saved forward (_saved_forward.ts) and the call order (_call_queue.ts); never on a backend.
 *
 * @module
 */
import type { BackendRequest } from "./backends/select.ts";
import {
  type LoadStateDictOptions,
  type LoadStateDictResult,
  readStateDict,
  type ShapedTensor,
  shapeStateDict,
  type StateDict,
  type StateDictOptions,
} from "./_state_dict.ts";
import type { LayerSync, SyncGroup } from "./_sync.ts";
import { type LayerKind, readLayerOptions, type SwitchNormNdOptions } from "./_options.ts";
import { type Gradients, ParamStore } from "./_params.ts";
import { BatchAverage } from "./_batch_average.ts";
import { LayerBackends } from "./_layer_backends.ts";
import { checkFiniteIn, describeValue } from "./_validate.ts";
import { CallQueue } from "./_call_queue.ts";
import type { KeptForward } from "./_saved_forward.ts";

let nextLayerId = 1;

/** The options a layer is made with, fixed for its life (readonly at run time too). */
const FIXED_OPTIONS = [
  "numFeatures",
  "eps",
  "momentum",
  "usingMovingAverage",
  "usingBN",
  "lastGamma",
  "backendRequest",
  "syncGroup",
  "sparse",
] as const;

/**
 * The options, parameters and buffers of a {@linkcode SwitchNorm} layer and their public
 * accessors (state dicts, the batch average, the optimiser step). Not constructed directly: see
 * SwitchNorm1d/2d/3d. `UsingBN` is whether the layer has BN statistics and running buffers.
 */
export abstract class SwitchNormState<UsingBN extends boolean = boolean> {
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
  #training = true;
  /** Whether step()'s update is running (checkMutable). */
  #stepping = false;
  /**
   * True in training mode (the default), false in evaluation mode; `train(mode)` and `eval()`
   * set it, and so does an assignment.
   *
   * @throws {TypeError} an assigned value that is not a boolean.
   */
  get training(): boolean {
    return this.#training;
  }
  set training(mode: boolean) {
    if (typeof mode !== "boolean") {
      throw new TypeError(
        `${this.kind.name}.training must be a boolean, got ${describeValue(mode)}`,
      );
    }
    this.#training = mode;
  }
  /** @ignore */
  protected readonly kind: LayerKind;
  /** @ignore */
  protected readonly params: ParamStore;
  /** @ignore */
  protected readonly batch: BatchAverage;
  /**
   * The latest forward that kept what backward needs, with the parameter values it used.
   * @ignore
   */
  protected saved?: KeptForward;
  /**
   * Serialises forward, backward and sync: each takes effect in call order, as if awaited.
   * @ignore
   */
  protected readonly calls: CallQueue = new CallQueue();
  /** @ignore */
  protected readonly layerSync?: LayerSync;
  /** @ignore */
  protected readonly backends: LayerBackends;

  /**
   * Internal: validates the options and allocates parameters and buffers; see the subclasses.
   * @ignore
   */
  protected constructor(kind: LayerKind, numFeatures: number, options: SwitchNormNdOptions) {
    // From plain JavaScript the abstract base can be called as new SwitchNorm(3), which got
    // "undefined: numFeatures must be a positive integer, got undefined" (misuse helper-93).
    if (typeof (kind as Partial<LayerKind> | undefined)?.name !== "string") {
      throw new TypeError(
        `${new.target.name} is abstract: make a SwitchNorm1d, SwitchNorm2d or SwitchNorm3d`,
      );
    }
    const o = readLayerOptions(kind, numFeatures, options);
    this.kind = kind;
    this.numFeatures = numFeatures;
    this.eps = o.eps;
    this.momentum = o.momentum;
    this.usingMovingAverage = o.usingMovingAverage;
    this.usingBN = o.usingBN as UsingBN;
    this.lastGamma = o.lastGamma;
    this.backendRequest = o.backendRequest;
    this.sparse = o.sparse;
    this.syncGroup = o.syncGroup;
    this.layerSync = o.sync;
    const layerId = nextLayerId++;
    this.backends = new LayerBackends(kind.name, this, layerId);
    const logits = kind.layout === "1d" ? 2 : this.usingBN ? 3 : 2;
    this.params = new ParamStore(
      layerId,
      numFeatures,
      logits,
      this.usingBN,
      this.lastGamma,
      this.sparse,
    );
    this.batch = new BatchAverage(kind.name);
    // The options are readonly to TypeScript only: from plain JavaScript (the npm bundle) an
    // assignment took an eps of -1 or NaN, a momentum of 7 or usingBN false on a layer of three
    // logits unchecked on every backend (misuse helper-93). Strict-mode code now gets a TypeError
    // ("Cannot assign to read only property"), sloppy code a no-op; the layer keeps its options.
    for (const name of FIXED_OPTIONS) Object.defineProperty(this, name, { writable: false });
    // What SyncSN replicas compare with every gather (read then: radius and K change).
    this.layerSync?.describeWith(() => ({
      rank: kind.rank,
      numFeatures,
      usingBN: this.usingBN,
      eps: this.eps,
      momentum: this.momentum,
      usingMovingAverage: this.usingMovingAverage,
      sparse: this.sparse,
      radius: this.radius,
      batchesAccumulated: this.batch.count,
    }));
  }
  /**
   * gamma, length C. A COPY: `layer.weight[0] = 5` changes nothing. To change parameters, edit
   * the copy and load it back: `layer.loadStateDict({ weight: w }, { strict: false })`. The same
   * holds for every getter below.
   */
  get weight(): Float32Array {
    return this.params.weight.slice();
  }
  /** beta, length C (a copy; see {@linkcode weight}). */
  get bias(): Float32Array {
    return this.params.bias.slice();
  }
  /** Importance logits of the means, order (in,) ln, bn (a copy; see {@linkcode weight}). */
  get mean_weight(): Float32Array {
    return this.params.meanLogits.slice();
  }
  /** Importance logits of the variances, order (in,) ln, bn (a copy). */
  get var_weight(): Float32Array {
    return this.params.varLogits.slice();
  }
  /**
   * Running means, length C, or length 0 without usingBN (a copy).
   *
   * @throws {Error} after training-mode forwards on GPU-resident tensors, until
   * `await layer.sync()` has copied the buffers back (rather than return stale values).
   */
  get running_mean(): Float32Array {
    this.checkIdle("running_mean");
    this.checkRunningFresh("running_mean");
    return this.params.runningMean.slice();
  }
  /**
   * Running variances, length C, or length 0 without usingBN (a copy).
   *
   * @throws {Error} like {@linkcode running_mean}, until `await layer.sync()`.
   */
  get running_var(): Float32Array {
    this.checkIdle("running_var");
    this.checkRunningFresh("running_var");
    return this.params.runningVar.slice();
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
    return this.params.mixing().mean.weights.slice();
  }
  /** The mixing weights of the variances, like {@linkcode meanImportance}. */
  get varImportance(): Float64Array {
    return this.params.mixing().var.weights.slice();
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
    return this.params.sparse?.radius ?? 0;
  }
  set radius(r: number) {
    const sparse = this.params.sparse;
    if (!sparse) throw new Error(`${this.kind.name}: radius needs the sparse option`);
    const radius = checkFiniteIn(`${this.kind.name}: radius`, r, 0, 1);
    this.checkMutable("radius");
    sparse.radius = radius;
    this.params.changed();
  }

  /**
   * Sparse SN: the normalizer index (order (in,) ln, bn) each fixed mixing uses (its largest
   * logit). A mixing becomes fixed after a forward whose weights were one-hot: its logits become
   * that one-hot vector, get no gradient (and {@linkcode step} no longer passes them to the
   * optimiser), and are the weights from then on (SSN2d's `mean_fixed`/`var_fixed`).
   */
  get frozenTo(): { readonly mean?: number; readonly var?: number } {
    return this.params.frozenTo();
  }

  /** Training batches added into the running buffers since the last reset (batch average). */
  get batchesAccumulated(): number {
    return this.batch.count;
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
   * Ends a batch average in progress when it loads running buffers (they are statistics); a
   * later batch-average training forward begins a new average from zero rather than adding its
   * sums onto them.
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
   * @throws {RangeError} on a missing or unexpected key (strict only), a misshapen or
   *   out-of-float32-range value, a parameter that is not finite (the running buffers may hold
   *   NaN and the infinities, as the layer's own may), a negative `running_var`, or (Sparse SN)
   *   logits of a fixed mixing that are not weights in [0, 1] summing to 1; {@link TypeError} on a value of the wrong kind or bad options;
   *   {@link Error} on one running buffer alone while a batch average has batches accumulated (the
   *   other would stay a sum). Nothing is changed when it throws.
   */
  loadStateDict(
    dict: Readonly<Record<string, unknown>>,
    options: LoadStateDictOptions = {},
  ): LoadStateDictResult {
    const name = this.kind.name, p = this.params;
    const { read, missingKeys, unexpectedKeys } = readStateDict(
      name,
      dict,
      p.keySpecs(this.kind),
      options,
    );
    this.checkMutable("loadStateDict");
    // A lone running buffer must not be uploaded beside a stale CPU copy of the other one.
    const running = +!!read.running_mean + +!!read.running_var;
    if (running === 1) {
      this.checkRunningFresh("loadStateDict");
      this.batch.checkLoadOne(read.running_mean ? "running_mean" : "running_var");
    }
    // Everything is checked (readStateDict, then the sparse flags and radius) before any change.
    const load = p.prepareLoad(`${name}.loadStateDict`, read);
    this.detachSaved();
    load();
    // Loaded buffers are statistics, not a batch average's sums.
    if (running > 0) this.batch.loaded();
    return { missingKeys, unexpectedKeys };
  }

  /**
   * Copies of the parameters and buffers, flat, with PyTorch's key names; `running_mean` and
   * `running_var` only with usingBN (and then the type says so: no `!` needed).
   *
   * @throws {Error} after training-mode forwards on GPU-resident tensors, until
   * `await layer.sync()` has copied the running buffers back from the GPU; while a batch average
   * has batches accumulated and not finalized (the running buffers hold sums, which
   * `loadStateDict` would take as statistics): call `finalizeBatchAverage()` first.
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
   *   on an unknown `shapes`; the same Errors as `stateDict()` (running buffers held on the GPU,
   *   a batch average not finalized).
   */
  stateDict(options: StateDictOptions & { shapes: "pytorch" }): Record<string, ShapedTensor>;
  /** The flat entries with `options.prefix` before each key. */
  stateDict(options: StateDictOptions): Record<string, Float32Array>;
  stateDict(
    options?: StateDictOptions,
  ): StateDict<UsingBN> | Record<string, Float32Array | ShapedTensor> {
    this.checkIdle("stateDict");
    this.checkRunningFresh("stateDict");
    this.batch.checkStateDict();
    const all = this.params.entries(this.usingBN);
    if (options === undefined) return all as StateDict<UsingBN>;
    return shapeStateDict(
      `${this.kind.name}.stateDict`,
      all as unknown as Record<string, Float32Array>,
      this.params.keySpecs(this.kind),
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
    this.checkMutable("resetRunningStats");
    this.detachSaved();
    this.batch.reset(this.params);
  }

  /**
   * Ends a batch average (usingMovingAverage false): after K training-mode forwards from
   * {@linkcode resetRunningStats}, sets running_mean = sum_mean / K and
   * running_var = max(0, sum_sq / K - running_mean^2), the paper's inference statistics, and resets K.
   * Until then an evaluation-mode forward refuses to run on the sums. A training-mode forward
   * after it (or after a {@linkcode loadStateDict} of the running buffers) begins a new average:
   * it zeroes the buffers before adding its batch, as {@linkcode resetRunningStats} would, rather
   * than add sums onto the statistics (which the next finalize would turn into meaningless
   * numbers); the statistics are then gone, and evaluation waits for the next finalize.
   *
   * @throws {Error} without usingBN, with usingMovingAverage, with no training batch accumulated
   * since {@linkcode resetRunningStats} or since the last finalize, or while the running buffers
   * are on the GPU (call `await layer.sync()` first). Nothing is changed.
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
    this.batch.checkOptions(this.usingBN, this.usingMovingAverage);
    this.checkMutable("finalizeBatchAverage");
    this.checkRunningFresh("finalizeBatchAverage");
    this.detachSaved();
    this.batch.finalize(this.params);
  }

  /**
   * Called before the layer writes its parameter or buffer arrays in place: the kept forward
   * must go on seeing the values it ran with.
   * @ignore
   */
  protected detachSaved(): void {
    this.saved?.detach(this.params.view());
  }

  /**
   * checkIdle, and not from inside step()'s update: for the synchronous methods that change the
   * parameters or buffers.
   * @ignore
   */
  protected checkMutable(what: string): void {
    // step() takes in what its update wrote when the update returns: a state change made from
    // inside the update (a loadStateDict, a nested step) would be overwritten by it.
    if (this.#stepping) {
      throw new Error(
        `${this.kind.name}.${what}: called from inside step()'s update, whose values replace ` +
          "the parameters when it returns; call it before or after the step",
      );
    }
    this.checkIdle(what);
  }

  /**
   * Synchronous methods that read or write what a pending forward or backward changes cannot
   * wait for it: they refuse, rather than act before a call made earlier.
   * @ignore
   */
  protected checkIdle(what: string): void {
    if (this.calls.busy) {
      throw new Error(
        `${this.kind.name}.${what}: a forward, backward or sync of this layer is still running; ` +
          "await it first (calls take effect in the order they were made)",
      );
    }
  }

  /**
   * Refuses a CPU read of running buffers that a GPU holds newer.
   * @ignore
   */
  protected checkRunningFresh(what: string): void {
    this.backends.checkRunningFresh(what, this.params.view());
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
    return this.params.grads;
  }

  /**
   * An optimiser step: calls `update` with each parameter (a working copy holding its values, to
   * change in place), its accumulated gradient (the live array of `grads`) and its name, then,
   * when `update` has returned, puts the new values into the layer. The copies are the layer's
   * own, reused by every step: writing into one after `step` returns changes nothing (keep
   * nothing of it for later; read the parameters through the getters). The logits of a fixed
   * Sparse SN mixing are skipped, as PyTorch's optimisers skip a parameter without gradient. A
   * forward already run keeps the values it used, so its backward is unaffected. If `update`
   * throws, returns a Promise, or writes a NaN or infinite value, no parameter changes and the
   * error is (or a TypeError or a RangeError naming the value is) thrown.
   *
   * @throws {Error} a forward, backward or sync of this layer is still running; called from
   * inside a step's `update` (so are loadStateDict, the radius setter, resetRunningStats and
   * finalizeBatchAverage, whose changes the step would overwrite); whatever `update` throws.
   * @throws {TypeError} `update` is not a function, or returned a Promise (an async function,
   * whose writes would land after the step).
   * @throws {RangeError} `update` wrote a NaN or infinite value into a parameter (as
   * loadStateDict, the layer keeps finite parameters only).
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
        `${this.kind.name}.step: update must be a function, got ${describeValue(update)}`,
      );
    }
    this.checkMutable("step");
    this.detachSaved();
    this.#stepping = true;
    try {
      this.params.step(update, `${this.kind.name}.step`);
    } finally {
      this.#stepping = false;
    }
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
    this.checkIdle("zeroGrad");
    for (const g of Object.values(this.params.grads)) g.fill(0);
  }
}
