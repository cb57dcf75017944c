/**
 * A layer's parameters, running buffers and gradients: the arrays, the version numbers that tell
 * backends (and the cached importance maps) when the CPU copy changed, the mixing weights the
 * logits map to (softmax, or Sparse SN's sparsestmax and fixing), the view backends read, and the
 * arrays as state-dict entries. Depends on the importance maps, Sparse SN's state and the
 * state-dict key specs; knows nothing of backends beyond the LayerParams view it hands them.
 *
 * @module
 */
import type { BackwardResult, LayerParams } from "./backends/_backend.ts";
import type { KeySpec, StateDict } from "./_state_dict.ts";
import type { LayerKind } from "./_options.ts";
import { dropZeroWeightDots, type Importance, softmax } from "./_importance.ts";
import { type Mixing, SPARSE_KEYS, SparseState } from "./_sparse.ts";

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

/** The two importance maps a forward mixes with. */
export interface Mixings {
  readonly mean: Importance;
  readonly var: Importance;
}

/** One layer's parameters, buffers and gradients. */
export class ParamStore {
  readonly weight: Float32Array;
  readonly bias: Float32Array;
  readonly meanLogits: Float32Array;
  readonly varLogits: Float32Array;
  /** Length C with usingBN, else 0. */
  readonly runningMean: Float32Array;
  readonly runningVar: Float32Array;
  /** Bumped whenever the CPU writes any of the arrays above (or the radius). */
  version = 0;
  /** Bumped (with version) whenever the CPU writes the running buffers. */
  runningVersion = 0;
  readonly grads: Gradients;
  /** Sparse SN's radius and fixed flags; undefined without the sparse option. */
  readonly sparse?: SparseState;
  #importance?: { version: number } & Mixings;
  #view?: LayerParams;
  /** step's working copies of weight, bias and the two logit arrays (made at the first step). */
  #stepWork?: Float32Array[];

  /**
   * @param layerId the layer's id, the backends' key for its device state
   * @param c the number of channels
   * @param k the number of importance logits per mixing
   * @param usingBN whether there are running buffers
   * @param lastGamma whether gamma starts at 0 (else 1)
   * @param sparse whether the logits map through sparsestmax (Sparse SN)
   */
  constructor(
    readonly layerId: number,
    c: number,
    k: number,
    usingBN: boolean,
    lastGamma: boolean,
    sparse: boolean,
  ) {
    const buffers = usingBN ? c : 0;
    this.weight = new Float32Array(c).fill(lastGamma ? 0 : 1);
    this.bias = new Float32Array(c);
    this.meanLogits = new Float32Array(k).fill(1);
    this.varLogits = new Float32Array(k).fill(1);
    this.runningMean = new Float32Array(buffers);
    this.runningVar = new Float32Array(buffers);
    this.grads = {
      weight: new Float32Array(c),
      bias: new Float32Array(c),
      mean_weight: new Float32Array(k),
      var_weight: new Float32Array(k),
    };
    if (sparse) this.sparse = new SparseState();
  }

  /** Marks the CPU copy changed (`running`: the running buffers too), for every backend. */
  changed(running = false): void {
    this.version++;
    if (running) this.runningVersion++;
  }

  /** The importance maps for the current logits and radius, cached per version. */
  mixing(): Mixings {
    if (this.#importance?.version !== this.version) {
      const map = (logits: Float32Array, which: Mixing): Importance =>
        this.sparse ? this.sparse.importance(logits, which) : softmax(logits);
      this.#importance = {
        version: this.version,
        mean: map(this.meanLogits, "mean"),
        var: map(this.varLogits, "var"),
      };
    }
    return this.#importance;
  }

  /** The parameters as backends see them, rebuilt only when the CPU copy changed. */
  view(): LayerParams {
    if (this.#view?.version !== this.version) {
      this.#view = {
        layerId: this.layerId,
        weight: this.weight,
        bias: this.bias,
        meanMix: this.mixing().mean.weights,
        varMix: this.mixing().var.weights,
        runningMean: this.runningMean,
        runningVar: this.runningVar,
        version: this.version,
        runningVersion: this.runningVersion,
      };
    }
    return this.#view;
  }

  /** Sparse SN: the normalizer index each fixed mixing uses. */
  frozenTo(): { readonly mean?: number; readonly var?: number } {
    const s = this.sparse, out: { mean?: number; var?: number } = {};
    const mean = s?.fixedTo("mean", this.meanLogits), variance = s?.fixedTo("var", this.varLogits);
    if (mean !== undefined) out.mean = mean;
    if (variance !== undefined) out.var = variance;
    return out;
  }

  /** Sparse SN, after a forward: fixes each mixing whose weights were one-hot (SSN2d). */
  fixOneHotMixings(): void {
    const s = this.sparse!, m = this.mixing(), g = this.grads;
    const fixedMean = s.fixIfOneHot("mean", m.mean.weights, this.meanLogits, g.mean_weight);
    const fixedVar = s.fixIfOneHot("var", m.var.weights, this.varLogits, g.var_weight);
    if (fixedMean || fixedVar) this.version++;
  }

  /**
   * The optimiser step: `update` changes a working copy of each parameter in place; see
   * SwitchNorm.step. The copies (one per parameter, made once and reused by every step) go into
   * the parameters when `update` has returned and every value is finite. If it throws, returns a
   * Promise (its writes would land after the step, unchecked) or writes a NaN or infinite value (a
   * RangeError, `caller` naming the call), no parameter changes and the error is thrown.
   */
  step(
    update: (param: Float32Array, grad: Float32Array, name: keyof Gradients) => void,
    caller = "step",
  ): void {
    const g = this.grads, fixed = this.sparse?.fixed;
    // Copies, not the live arrays: a reference kept past the step (an optimiser that holds its
    // parameters) wrote into the layer later, which WASM used at once and WebGPU not at all (its
    // device copy follows the version, bumped here only): y 7x apart (misuse helper-93).
    const params = [this.weight, this.bias, this.meanLogits, this.varLogits];
    const work = this.#stepWork ??= params.map((a) => new Float32Array(a.length));
    params.forEach((a, i) => work[i].set(a));
    const names = ["weight", "bias", "mean_weight", "var_weight"] as const;
    const grads = [g.weight, g.bias, g.mean_weight, g.var_weight];
    // Sparse SN: a fixed mixing's logits have no gradient (None in PyTorch): the optimiser skips them.
    const skip = [false, false, !!fixed?.mean, !!fixed?.var];
    for (let k = 0; k < 4; k++) {
      if (skip[k]) continue;
      const r: unknown = update(work[k], grads[k], names[k]);
      if (typeof (r as PromiseLike<unknown> | undefined)?.then === "function") {
        throw new TypeError(
          `${caller}: update returned a Promise (an async function?); step applies what update ` +
            `wrote when it returns, so update must be synchronous (no parameter changed)`,
        );
      }
    }
    // A non-finite parameter would make every later forward NaN (and its state dict one that
    // loadStateDict refuses): refused here, as loadStateDict refuses it.
    work.forEach((a, k) => {
      const i = a.findIndex((v) => !Number.isFinite(v));
      if (i >= 0) {
        throw new RangeError(
          `${caller}: the update wrote ${a[i]} into "${names[k]}"[${i}]; parameters must be ` +
            `finite (no parameter changed)`,
        );
      }
    });
    params.forEach((a, i) => a.set(work[i]));
    this.version++;
  }

  /** Adds one backward's gradients, through the Jacobians of the maps its forward mixed with. */
  addGradients(r: BackwardResult, mixing: Mixings): void {
    const g = this.grads;
    for (let c = 0; c < g.weight.length; c++) {
      g.weight[c] += r.dWeight[c];
      g.bias[c] += r.dBias[c];
    }
    // a_k, b_k are dL/dweights; the importance map's Jacobian takes them to the logits. The
    // offset common to every a_k (BackwardResult.meanDotsOffset) is left out: both maps' weights
    // sum to 1, so their Jacobians take a vector of ones to 0 (softmax's formula exactly;
    // sparsestmax's to ~1e-16, which times an offset of ~1e13 left `mean_weight`'s gradient 7x
    // its tolerance off, attack helper-84). A non-finite offset stays in, as the sum would be.
    // A weight of 0 (or cut) leaves its dot out where only that dot is not finite
    // (dropZeroWeightDots: float64's overflow of a finite sum, times a weight of 0).
    const below = r.zeroWeightsBelow, offset = r.meanDotsOffset ?? 0;
    const meanDots = dropZeroWeightDots(r.meanDots, mixing.mean.weights, below);
    const dMean = Number.isFinite(offset)
      ? mixing.mean.vjp(meanDots, below)
      : mixing.mean.vjp(Float64Array.from(meanDots, (v) => v + offset), below);
    const dVar = mixing.var.vjp(dropZeroWeightDots(r.varDots, mixing.var.weights, below), below);
    for (let k = 0; k < dMean.length; k++) {
      g.mean_weight[k] += dMean[k];
      g.var_weight[k] += dVar[k];
    }
  }

  /** The state-dict keys of a `kind` layer and their lengths and shapes. */
  keySpecs(kind: LayerKind): Record<string, KeySpec> {
    const c = this.weight.length, k = this.meanLogits.length;
    const param = { length: c, shapes: [kind.paramShape(c)] };
    const specs: Record<string, KeySpec> = {
      weight: param,
      bias: param,
      mean_weight: { length: k, shapes: [] },
      var_weight: { length: k, shapes: [] },
    };
    if (this.runningMean.length > 0) {
      const buffer = { length: c, shapes: [kind.bufferShape(c)], nonFinite: true };
      specs.running_mean = buffer;
      specs.running_var = { ...buffer, nonNegative: true };
    }
    return this.sparse ? { ...specs, ...SPARSE_KEYS } : specs;
  }

  /** Copies of the arrays (and Sparse SN's entries), with PyTorch's key names. */
  entries(usingBN: boolean): StateDict {
    const dict: StateDict = {
      weight: this.weight.slice(),
      bias: this.bias.slice(),
      mean_weight: this.meanLogits.slice(),
      var_weight: this.varLogits.slice(),
    };
    if (usingBN) {
      dict.running_mean = this.runningMean.slice();
      dict.running_var = this.runningVar.slice();
    }
    return this.sparse ? { ...dict, ...this.sparse.entries() } : dict;
  }

  /**
   * Checks what remains to check of entries read by readStateDict (Sparse SN's flags and radius)
   * and returns the function that loads them, so that nothing changes unless all is well.
   */
  prepareLoad(where: string, read: Readonly<Partial<Record<string, Float32Array>>>): () => void {
    const applySparse = this.sparse?.prepareLoad(where, read);
    // Sparse SN: a fixed mixing's logits are its weights (SSN2d, which fixes only one-hot ones),
    // so they must be weights: each in [0, 1], summing to 1 exactly. Other values are no SSN2d
    // state, and made WebGPU's y differ from the reference's (its mix anchors on the first
    // term's mean, taking the weights to sum to 1: y -0.97 for 0.03, attack helper-62).
    if (this.sparse) {
      const mixings = [
        ["mean", "mean_weight", "mean_fixed"],
        ["var", "var_weight", "var_fixed"],
      ] as const;
      for (const [which, key, flag] of mixings) {
        const fixed = read[flag] ? read[flag][0] === 1 : this.sparse.fixed[which];
        const logits = read[key] ?? (which === "mean" ? this.meanLogits : this.varLogits);
        const sum = logits.reduce((a, b) => a + b, 0);
        if (fixed && !(logits.every((v) => v >= 0 && v <= 1) && sum === 1)) {
          throw new RangeError(
            `${where}: "${key}" of a fixed mixing ("${flag}" 1) are its weights and must lie in ` +
              `[0, 1] and sum to 1 (SSN2d fixes one-hot weights), got [${
                Array.from(logits).join(", ")
              }]`,
          );
        }
      }
    }
    return () => {
      applySparse?.();
      if (read.weight) this.weight.set(read.weight);
      if (read.bias) this.bias.set(read.bias);
      if (read.mean_weight) this.meanLogits.set(read.mean_weight);
      if (read.var_weight) this.varLogits.set(read.var_weight);
      if (read.running_mean) this.runningMean.set(read.running_mean);
      if (read.running_var) this.runningVar.set(read.running_var);
      // The version bump makes every backend (WebGPU's device copies too) take the new values.
      this.changed(!!read.running_mean || !!read.running_var);
    };
  }
}
