/**
 * The SwitchNorm layer: its public members (the API and its documentation), its state, and the
 * path from `forward()` and `backward()` to a backend. The other concerns live beside it: the
 * options (_options.ts), the parameters and their versions (_params.ts), the batch average
 * (_batch_average.ts), the backends a layer used (_layer_backends.ts), the saved forward
 * (_saved_forward.ts), the call order (_call_queue.ts), argument checks (_call_args.ts), state
 * dicts (_state_dict.ts), SyncSN (_sync.ts); the layer classes are in _layers.ts, the math in the
 * backends. Depends on those and on the backends' interface and selection, never on a backend.
 *
 * @module
 */
import type {
  BackendName,
  NormProblem,
  ResidentTensor,
  RunningUpdate,
  SavedForward,
} from "./backends/_backend.ts";
import { type BackendRequest, chooseBackend } from "./backends/select.ts";
import {
  type LoadStateDictOptions,
  type LoadStateDictResult,
  readStateDict,
  type ShapedTensor,
  shapeStateDict,
  type StateDict,
  type StateDictOptions,
} from "./_state_dict.ts";
import { type LayerSync, reportingToReplicas, type SyncGroup } from "./_sync.ts";
import { type LayerKind, readLayerOptions, type SwitchNormNdOptions } from "./_options.ts";
import { type Gradients, ParamStore } from "./_params.ts";
import { BatchAverage } from "./_batch_average.ts";
import { LayerBackends } from "./_layer_backends.ts";
import { checkBoolean, checkFiniteIn, describeValue } from "./_validate.ts";
import { CallQueue } from "./_call_queue.ts";
import { KeptForward, KeptInput, markOverwritten } from "./_saved_forward.ts";
import {
  type BackwardOptions,
  checkBackwardInputs,
  checkStillReadable,
  type ForwardCall,
  type ForwardOptions,
  readBackwardCall,
  readForwardCall,
  readUploadCall,
} from "./_call_args.ts";

let nextLayerId = 1;

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

  readonly #kind: LayerKind;
  readonly #params: ParamStore;
  readonly #batch: BatchAverage;
  /** The latest forward that kept what backward needs, with the parameter values it used. */
  #saved?: KeptForward;
  /** Files #saved's x where `out` of any layer's forward is checked against it. */
  readonly #keptInput = new KeptInput();
  /** Serialises forward, backward and sync: each takes effect in call order, as if awaited. */
  readonly #calls = new CallQueue();
  readonly #sync?: LayerSync;
  readonly #backends: LayerBackends;
  /** Counts dispose() calls: a call that fails while one happened says so. */
  #disposals = 0;
  #ran?: { backend: BackendName; reason: string };

  /**
   * Internal: validates the options and allocates parameters and buffers; see the subclasses.
   * @ignore
   */
  protected constructor(kind: LayerKind, numFeatures: number, options: SwitchNormNdOptions) {
    const o = readLayerOptions(kind, numFeatures, options);
    this.#kind = kind;
    this.numFeatures = numFeatures;
    this.eps = o.eps;
    this.momentum = o.momentum;
    this.usingMovingAverage = o.usingMovingAverage;
    this.usingBN = o.usingBN as UsingBN;
    this.lastGamma = o.lastGamma;
    this.backendRequest = o.backendRequest;
    this.sparse = o.sparse;
    this.syncGroup = o.syncGroup;
    this.#sync = o.sync;
    const layerId = nextLayerId++;
    this.#backends = new LayerBackends(kind.name, this, layerId);
    const logits = kind.layout === "1d" ? 2 : this.usingBN ? 3 : 2;
    this.#params = new ParamStore(
      layerId,
      numFeatures,
      logits,
      this.usingBN,
      this.lastGamma,
      this.sparse,
    );
    this.#batch = new BatchAverage(kind.name);
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
    return this.#params.mixing().mean.weights.slice();
  }
  /** The mixing weights of the variances, like {@linkcode meanImportance}. */
  get varImportance(): Float64Array {
    return this.#params.mixing().var.weights.slice();
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
    return this.#params.sparse?.radius ?? 0;
  }
  set radius(r: number) {
    const sparse = this.#params.sparse;
    if (!sparse) throw new Error(`${this.#kind.name}: radius needs the sparse option`);
    const radius = checkFiniteIn(`${this.#kind.name}: radius`, r, 0, 1);
    this.#checkIdle("radius");
    sparse.radius = radius;
    this.#params.changed();
  }

  /**
   * Sparse SN: the normalizer index (order (in,) ln, bn) each fixed mixing uses (its largest
   * logit). A mixing becomes fixed after a forward whose weights were one-hot: its logits become
   * that one-hot vector, get no gradient (and {@linkcode step} no longer passes them to the
   * optimiser), and are the weights from then on (SSN2d's `mean_fixed`/`var_fixed`).
   */
  get frozenTo(): { readonly mean?: number; readonly var?: number } {
    return this.#params.frozenTo();
  }

  /** Training batches added into the running buffers since the last reset (batch average). */
  get batchesAccumulated(): number {
    return this.#batch.count;
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
    const name = this.#kind.name, p = this.#params;
    const { read, missingKeys, unexpectedKeys } = readStateDict(
      name,
      dict,
      p.keySpecs(this.#kind),
      options,
    );
    this.#checkIdle("loadStateDict");
    // A lone running buffer must not be uploaded beside a stale CPU copy of the other one.
    const running = +!!read.running_mean + +!!read.running_var;
    if (running === 1) this.#checkRunningFresh("loadStateDict");
    // Everything is checked (readStateDict, then the sparse flags and radius) before any change.
    const load = p.prepareLoad(`${name}.loadStateDict`, read);
    this.#detachSaved();
    load();
    // Loaded buffers are statistics, not a batch average's sums.
    if (running > 0) this.#batch.count = 0;
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
    const all = this.#params.entries(this.usingBN);
    if (options === undefined) return all as StateDict<UsingBN>;
    return shapeStateDict(
      `${this.#kind.name}.stateDict`,
      all as unknown as Record<string, Float32Array>,
      this.#params.keySpecs(this.#kind),
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
    this.#detachSaved();
    this.#batch.reset(this.#params);
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
    this.#batch.checkOptions(this.usingBN, this.usingMovingAverage);
    this.#checkIdle("finalizeBatchAverage");
    this.#checkRunningFresh("finalizeBatchAverage");
    this.#detachSaved();
    this.#batch.finalize(this.#params);
  }

  /**
   * Called before the layer writes its parameter or buffer arrays in place: the kept forward
   * must go on seeing the values it ran with.
   */
  #detachSaved(): void {
    this.#saved?.detach(this.#params.view());
  }

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
    this.#backends.checkRunningFresh(what, this.#params.view());
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
    return this.#calls.run(() => this.#backends.syncRunning(this.#params.view()));
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
    this.#backends.release(this.#params, this.#calls);
  }

  /** Same as {@linkcode dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
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
    return this.#queue(
      // The arguments and mode as they are when the call is made.
      () =>
        readForwardCall(this.#kind, this.numFeatures, this.training, [
          x,
          shapeOrOptions,
          maybeOptions,
        ]),
      { kind: "stats", length: this.numFeatures },
      (call) => (call?.training ?? this.training) && this.usingBN,
      (call) => this.#forward(call),
    );
  }

  /**
   * Queues a call (forward or backward) in call order. `read` checks its arguments now; under
   * SyncSN the call takes part in one gather of `exchange` when `gathers`. Without SyncSN bad
   * input rejects at once; with it, the failure still takes this call's place in the replicas'
   * gathers (in call order), so that they fail too instead of waiting.
   */
  #queue<A, T>(
    read: () => A,
    exchange: { kind: "stats" | "sums"; length: number },
    gathers: (args: A | undefined) => boolean,
    run: (args: A) => Promise<T>,
  ): Promise<T> {
    let args: A | undefined, error: unknown;
    try {
      args = read();
    } catch (e) {
      error = e;
    }
    if (args === undefined && !this.#sync) return Promise.reject(error);
    const { kind, length } = exchange, ok = args;
    return this.#calls.run(() =>
      reportingToReplicas(
        this.#sync,
        kind,
        length,
        gathers(ok),
        () => ok === undefined ? Promise.reject(error) : run(ok),
      )
    );
  }

  async #forward(call: ForwardCall): Promise<Float32Array | ResidentTensor> {
    const name = this.#kind.name;
    const { x, resident, n, c, m, out, keep, training } = call;
    if (!training) this.#batch.checkFinalized();
    const { backend, reason } = await this.#backends.forForward(
      this.backendRequest,
      x,
      resident,
      this.#sync !== undefined,
      this.#params.view(),
    );
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
    const p = this.#params, params = p.view(), mixing = p.mixing();
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
    if (p.sparse) p.fixOneHotMixings();
    if (save) {
      this.#saved = new KeptForward(name, save, backend, params, p.sparse ? p.mixing() : mixing);
      this.#keptInput.set(this.#saved);
    }
    if (training && this.usingBN && !backend.runningStale && this.#backends.count > 1) {
      // A CPU backend updated the running buffers in place: a device copy is now behind.
      p.changed(true);
    }
    if (training && this.usingBN && !this.usingMovingAverage) this.#batch.count++;
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
    return this.#params.grads;
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
    this.#detachSaved();
    this.#params.step(update);
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
    for (const g of Object.values(this.#params.grads)) g.fill(0);
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
    // The gradient sums: dWeight, dBias, gmB, gvB (C each) and meanDots, varDots (K each).
    const sums = 4 * this.numFeatures + 2 * this.#params.meanLogits.length;
    return this.#queue(
      // dy's length as given: dy is read when the call runs.
      () => ({ retain: readBackwardCall(this.#kind.name, dy, options), dyLength: dy.length }),
      { kind: "sums", length: sums },
      () => true,
      ({ retain, dyLength }) => this.#backward(dy, dyLength, retain),
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
    const kept = this.#saved;
    KeptForward.checkDifferentiable(name, kept);
    checkBackwardInputs(name, kept.save, dy, dyLength);
    const backend = kept.backend;
    if (!backend.backward) throw new Error(`${name}.backward: not supported on ${backend.name}`);
    const disposals = this.#disposals;
    const r = await backend.backward(kept.save, dy, kept.params).catch((e) => {
      throw this.#disposedDuring(`${name}.backward`, disposals, e);
    });
    this.#params.addGradients(r, kept.mixing);
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
    readUploadCall(this.#kind, this.numFeatures, data, shape);
    const length = data.length, sync = this.#sync !== undefined;
    const { backend } = await chooseBackend(this.backendRequest, undefined, {
      elements: length,
      sync,
    });
    checkStillReadable(`${this.#kind.name}.upload: data`, data, length);
    return backend.upload(data, shape);
  }
}
