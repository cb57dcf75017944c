/**
 * The SwitchNorm layer: the path from `forward()` and `backward()` to a backend, `upload`, `sync`
 * and `dispose`, and the mode (`train`, `eval`). Its options, parameters, buffers and their public
 * accessors (state dicts, the batch average, the optimiser step) are SwitchNormState's
 * (_layer_state.ts). The other concerns live beside it: the options (_options.ts), the parameters
 * and their versions (_params.ts), the batch average (_batch_average.ts), the backends a layer
 * used (_layer_backends.ts), the saved forward (_saved_forward.ts), the call order
 * (_call_queue.ts), argument checks (_call_args.ts), state dicts (_state_dict.ts), SyncSN
 * (_sync.ts); the layer classes are in _layers.ts, the math in the backends. Depends on those and
 * on the backends' interface and selection, never on a backend.
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
import { chooseBackend } from "./backends/select.ts";
import { type Exchange, reportingToReplicas } from "./_sync.ts";
import { checkBoolean } from "./_validate.ts";
import { KeptForward, KeptInput, type LatestForward, markOverwritten } from "./_saved_forward.ts";
import {
  type BackwardCall,
  type BackwardOptions,
  checkBackwardInputs,
  checkStillReadable,
  type ForwardCall,
  type ForwardOptions,
  readBackwardCall,
  readForwardCall,
  readUploadCall,
} from "./_call_args.ts";
import { SwitchNormState } from "./_layer_state.ts";

/**
 * What SwitchNorm1d/2d/3d have in common. Not constructed directly. `UsingBN` is whether the layer
 * has BN statistics and running buffers, as far as TypeScript knows (`boolean`: either).
 */
export abstract class SwitchNorm<UsingBN extends boolean = boolean>
  extends SwitchNormState<UsingBN> {
  /** Files `saved`'s x where `out` of any layer's forward is checked against it. */
  readonly #keptInput = new KeptInput();
  /** Counts dispose() calls: a call that fails while one happened says so. */
  #disposals = 0;
  /** How the latest forward that reached the backend ended, when it kept nothing. */
  #latestForward?: LatestForward;
  #ran?: { backend: BackendName; reason: string };

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
    this.training = checkBoolean(`${this.kind.name}.train: mode`, mode, true);
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
    return this.calls.run(() => this.backends.syncRunning(this.params.view()));
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
    if (this.saved) this.saved.disposed = true;
    this.backends.release(this.params, this.calls);
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
   * resolves); with the batch average, on finalized or loaded statistics, a training forward
   * begins a new average (see `finalizeBatchAverage`). Under SyncSN every replica must make the
   * same call (a forward in the same mode) with a layer of the same options; otherwise the call
   * fails at once on every replica (see `SyncGroup`). Calls on one layer take effect in the order
   * they were made (each waits for the layer's earlier calls); the mode (training or evaluation)
   * is the one in force when forward is called, but x (and `out`) are read when the call runs: do
   * not change, transfer or resize them until the promise settles. A failed call leaves
   * parameters and buffers as they were.
   *
   * @param x the input, row-major float32.
   * @param shape `[N, C]` for SwitchNorm1d, `[N, C, H, W]` for 2d, `[N, C, D, H, W]` for 3d; C
   * must be the layer's `numFeatures`.
   * @param options `out` to write y into, `keepForBackward` (default: the training mode).
   * @throws {TypeError} (rejects) if x is not a Float32Array or resident tensor, `shape` is not
   * an array of numbers, an option is unknown or of the wrong type, `out` is not of x's kind, a
   * resident x lives in another backend, or x or `out` was detached or resized after the call was
   * made.
   * @throws {RangeError} (rejects) for a wrong rank, a non-integer or zero dimension, a channel
   * count other than `numFeatures`, a length that does not match the shape, or an `out` of
   * another length than x's.
   * @throws {Error} (rejects) when `out` overlaps x while this forward keeps x for backward
   * (training mode or keepForBackward); in evaluation mode with an unfinalized batch average;
   * where the requested backend cannot run here (no WebAssembly SIMD, WebAssembly compilation
   * refused: a `WasmRefusedError`, no WebGPU adapter); on a lost GPU device; for SyncSN on a
   * backend without it, or when the replicas' layers or calls differ (naming the difference);
   * when the layer is disposed while the call runs.
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
   * @throws {RangeError} (rejects) if a resident `out` has x's length but not its shape.
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
        readForwardCall(this.kind, this.numFeatures, this.training, [
          x,
          shapeOrOptions,
          maybeOptions,
        ]),
      (call) => this.#forwardExchange(call?.training ?? this.training),
      (call) => this.#forward(call),
    );
  }

  /**
   * The gather a forward takes part in under SyncSN: a training forward's BN statistics
   * ((count, mean, M2) of C channels), an evaluation forward's header only (where the group's
   * `localEvaluation` is false), none without BN statistics.
   */
  #forwardExchange(training: boolean): Exchange | undefined {
    if (!this.layerSync || !this.usingBN) return undefined;
    if (training) return { call: "trainingForward", length: 1 + 2 * this.numFeatures };
    return this.layerSync?.localEvaluation ? undefined : { call: "evaluationForward", length: 0 };
  }

  /**
   * Queues a call (forward or backward) in call order. `read` checks its arguments now; under
   * SyncSN the call takes part in the gather `exchange` gives (none: undefined). Without SyncSN
   * bad input rejects at once; with it, the failure still takes this call's place in the
   * replicas' gathers (in call order), so that they fail too instead of waiting.
   */
  #queue<A, T>(
    read: () => A,
    exchange: (args: A | undefined) => Exchange | undefined,
    run: (args: A) => Promise<T>,
  ): Promise<T> {
    let args: A | undefined, error: unknown;
    try {
      args = read();
    } catch (e) {
      error = e;
    }
    if (args === undefined && !this.layerSync) return Promise.reject(error);
    const ok = args;
    return this.calls.run(() =>
      reportingToReplicas(
        this.layerSync,
        exchange(ok),
        () => ok === undefined ? Promise.reject(error) : run(ok),
      )
    );
  }

  async #forward(call: ForwardCall): Promise<Float32Array | ResidentTensor> {
    const name = this.kind.name;
    const { x, resident, n, c, m, out, keep, training } = call;
    this.batch.checkForward(training);
    const { backend, reason } = await this.backends.forForward(
      this.backendRequest,
      x,
      resident,
      this.layerSync !== undefined,
      this.params.view(),
    );
    const problem: NormProblem = {
      layout: this.kind.layout,
      n,
      c,
      m,
      training,
      usingBN: this.usingBN,
      eps: this.eps,
      sync: this.layerSync,
    };
    const p = this.params;
    const update: RunningUpdate = this.usingMovingAverage
      ? { kind: "movingAverage", momentum: this.momentum }
      : { kind: "batchAverage" };
    const save: SavedForward | undefined = keep ? {} : undefined;
    checkStillReadable(`${name}.forward: x`, x, n * c * m);
    if (out !== undefined) checkStillReadable(`${name}.forward: out`, out, n * c * m);
    // SyncSN: an evaluation forward checks that every replica makes one too (with the same
    // settings) before it changes anything; a training forward's exchange checks it.
    if (!training && this.#forwardExchange(false)) await this.layerSync?.confirm();
    // The backend replaces the statistics a previous forward kept: that one is gone either way.
    this.#keptInput.clear();
    this.saved = undefined;
    this.#latestForward = keep ? "failed" : training ? "notKept" : "evaluation";
    let y: Float32Array | ResidentTensor;
    const disposals = this.#disposals;
    const averaging = training && this.usingBN && !this.usingMovingAverage;
    // On finalized or loaded statistics, a batch-average training forward begins a new average.
    const undoBegin = averaging ? this.batch.beginBatch(p) : undefined;
    // The view after that: its running version tells a device copy that the buffers changed.
    const params = p.view(), mixing = p.mixing();
    try {
      y = await backend.forward(problem, x, params, update, out, save);
    } catch (e) {
      undoBegin?.();
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
      this.saved = new KeptForward(name, save, backend, params, p.sparse ? p.mixing() : mixing);
      this.#keptInput.set(this.saved);
    }
    if (training && this.usingBN && !backend.runningStale && this.backends.count > 1) {
      // A CPU backend updated the running buffers in place: a device copy is now behind.
      p.changed(true);
    }
    if (averaging) this.batch.count++;
    this.#ran = { backend: backend.name, reason };
    return y;
  }

  /**
   * Back-propagates `dy` = dL/dy through the latest forward called before it (which must have
   * kept what backward needs: training mode, or `keepForBackward: true`), with the parameter
   * values that forward used. Resolves to dx, of the same kind as that forward's x, and adds the
   * parameter gradients into {@linkcode grads}. x must not have been changed since that forward.
   * dy is read when the call runs (after the layer's earlier calls), not when it is made: do not
   * change, transfer or resize it until the promise settles.
   * One backward per forward, unless `{ retainGraph: true }` keeps it for another. With
   * `{ out }` dx is written there (dy's kind, length and, resident, shape; dy itself is allowed,
   * the forward's x is not) and no dx is allocated: the training loop's hot path.
   *
   * @throws {Error} the latest forward kept nothing for backward (the message says why: none
   * ran, it ran in evaluation mode without keepForBackward or with `keepForBackward: false`, or it
   * failed; each forward replaces what the one before it kept), it was already differentiated,
   * its x was overwritten since as another forward's `out`, or the layer was disposed since that
   * forward; under SyncSN, when the replicas' layers or calls differ; `out` overlaps that
   * forward's x.
   * @throws {RangeError} dy is not of the kind and length of that forward's x (and, resident, of
   * its shape), or `out` not of dy's length (resident: its shape).
   * @throws {TypeError} an option is unknown or of the wrong type (`out` not of dy's kind); dy,
   * `out` or that forward's x was detached or resized after the call was made.
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
    const sums = 4 * this.numFeatures + 2 * this.params.meanLogits.length;
    return this.#queue(
      // dy's length as given: dy is read when the call runs.
      () => readBackwardCall(this.kind.name, dy, options),
      () => ({ call: "backward", length: sums }),
      (call) => this.#backward(dy, call),
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
    { retain, dyLength, out }: BackwardCall,
  ): Promise<Float32Array | ResidentTensor> {
    const name = this.kind.name;
    const kept = this.saved;
    KeptForward.checkDifferentiable(name, kept, this.#latestForward);
    checkBackwardInputs(name, kept.save, dy, dyLength, out);
    const backend = kept.backend;
    if (!backend.backward) throw new Error(`${name}.backward: not supported on ${backend.name}`);
    const disposals = this.#disposals;
    const r = await backend.backward(kept.save, dy, kept.params, out).catch((e) => {
      throw this.#disposedDuring(`${name}.backward`, disposals, e);
    }).finally(() => {
      // Another layer's forward may have kept `out` as its x: its backward must not differentiate
      // what this call wrote there.
      if (out !== undefined) markOverwritten(`a ${name} backward`, out);
    });
    this.params.addGradients(r, kept.mixing);
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
    readUploadCall(this.kind, this.numFeatures, data, shape);
    const length = data.length, sync = this.layerSync !== undefined;
    const { backend } = await chooseBackend(this.backendRequest, undefined, {
      elements: length,
      sync,
    });
    checkStillReadable(`${this.kind.name}.upload: data`, data, length);
    return backend.upload(data, shape);
  }
}
