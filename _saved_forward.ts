/**
 * What a layer keeps of a forward for its backward, beyond what the backend keeps: the parameter
 * values that forward used (so that a backward differentiates the forward that ran, whatever
 * step() or loadStateDict() did in between), whether a backward has used it, and a registry of
 * the inputs every layer keeps, so that a backward whose x an `out` overwrote is refused; and
 * whether a backward may differentiate it. Depends only on types (the Backend interface's, the
 * importance maps').
 *
 * @module
 */
import type {
  Backend,
  LayerParams,
  NormProblem,
  ResidentTensor,
  SavedForward,
} from "./backends/_backend.ts";
import type { Importance } from "./_importance.ts";
import { memoryKey } from "./backends/_memory_keys.ts";

type Tensor = Float32Array | ResidentTensor;

/**
 * How the layer's latest forward ended, for a backward that finds nothing kept: it kept nothing
 * by its mode or options (`"evaluation"`: evaluation mode without keepForBackward; `"notKept"`:
 * `keepForBackward: false`), or it failed after the previous forward's kept state was replaced.
 */
export type LatestForward = "evaluation" | "notKept" | "failed";

/** Why there is no forward to differentiate, as the rest of a backward's error message. */
function nothingKept(latest: LatestForward | undefined): string {
  const remedy = "run forward in training mode or with { keepForBackward: true } before backward";
  // Each forward replaces what the one before it kept: an earlier training forward is gone.
  const replaced = "which keeps nothing for backward and replaced what any earlier forward kept";
  switch (latest) {
    case undefined:
      return `no forward to differentiate; ${remedy}`;
    case "evaluation":
      return `the latest forward ran in evaluation mode without { keepForBackward: true }, ` +
        `${replaced}; ${remedy}`;
    case "notKept":
      return `the latest forward ran with { keepForBackward: false }, ${replaced}; ${remedy}`;
    case "failed":
      return "the latest forward failed, which ended the differentiability of the forward " +
        `before it; ${remedy}`;
  }
}

/** One forward kept for backward. */
export class KeptForward {
  /** The parameters the forward used: the layer's live view until {@linkcode detach} copies it. */
  #params: LayerParams;
  /** Set once a backward has used it (a second one is refused unless it retained the graph). */
  used = false;
  /** Which call wrote its `out` over this forward's x (its backward is then refused). */
  overwrittenBy?: string;
  /** Set when the layer was disposed after this forward: what its backward needs is freed. */
  disposed = false;

  /**
   * @param layerName the layer's class name, for messages
   * @param save what the backend kept (problem, x, its statistics)
   * @param backend the backend that ran the forward and must run its backward
   * @param params the layer's parameter view the forward ran with
   * @param mixing the importance maps the forward mixed with (their Jacobians give the logits'
   *   gradients)
   */
  constructor(
    readonly layerName: string,
    readonly save: SavedForward,
    readonly backend: Backend,
    params: LayerParams,
    readonly mixing: { readonly mean: Importance; readonly var: Importance },
  ) {
    this.#params = params;
  }

  /** The parameter values the forward ran with. */
  get params(): LayerParams {
    return this.#params;
  }

  /**
   * Throws unless a backward may differentiate `kept`: a forward kept what backward needs, was
   * not differentiated already, the layer was not disposed since, and its x was not overwritten.
   */
  static checkDifferentiable(
    layerName: string,
    kept: KeptForward | undefined,
    latestForward?: LatestForward,
  ): asserts kept is KeptForward & { save: { problem: NormProblem; x: Tensor } } {
    const name = layerName, saved = kept?.save;
    if (!kept || !saved?.problem || !saved.x) {
      throw new Error(`${name}.backward: ${nothingKept(latestForward)}`);
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
  }

  /**
   * Called before the layer writes its parameter or buffer arrays in place: if this forward still
   * reads the live arrays, it gets copies of them (O(C), once per change, never per call). The
   * mixing weights need no copy: they are new arrays at every change of the logits.
   */
  detach(live: LayerParams): void {
    const p = this.#params;
    if (p.weight !== live.weight && p.runningMean !== live.runningMean) return;
    this.#params = {
      ...p,
      weight: p.weight.slice(),
      bias: p.bias.slice(),
      runningMean: p.runningMean.slice(),
      runningVar: p.runningVar.slice(),
    };
  }
}

/** Where a tensor's memory is, for overlap tests: a key object and a byte range in it. */
function storage(t: Tensor): { key: object; start: number; end: number } {
  if (t instanceof Float32Array) {
    // A view of a WASM backend's memory (a resident tensor's `data`) is keyed by that memory.
    const key = memoryKey(t.buffer);
    return { key, start: t.byteOffset, end: t.byteOffset + t.byteLength };
  }
  // A WASM tensor: its block of the heap's memory.
  const range = (t as { memoryRange?: { key: object; start: number; end: number } }).memoryRange;
  if (range !== undefined) return range;
  // A GpuTensor's GPUBuffer (two tensors may wrap one).
  let key: object = t;
  try {
    const buffer = (t as { buffer?: unknown }).buffer;
    if (typeof buffer === "object" && buffer !== null) key = buffer;
  } catch {
    // disposed: it cannot alias anything live
  }
  return { key, start: 0, end: Infinity };
}

/**
 * A layer's entry in the registry of kept inputs: made once per layer (not per call), held by the
 * registry weakly, so that a dropped layer's entry goes with it.
 */
export class KeptInput {
  /** The layer's forward whose x is kept, while its backward has not run. */
  kept?: KeptForward;
  /** The memory `kept`'s x lives in: the registry's key this entry is filed under. */
  #key?: object;
  readonly #ref = new WeakRef(this);

  /** Files `kept`'s x as one that must stay unchanged until its backward. */
  set(kept: KeptForward): void {
    this.kept = kept;
    const key = storage(kept.save.x!).key;
    if (key === this.#key) return; // the usual case: the same memory as the last call
    if (this.#key !== undefined) keptInputs.get(this.#key)?.delete(this.#ref);
    let set = keptInputs.get(key);
    if (!set) keptInputs.set(key, set = new Set());
    set.add(this.#ref);
    this.#key = key;
  }

  /** The x is free again (its backward ran, or the layer dropped that forward). */
  clear(): void {
    this.kept = undefined;
  }
}

/**
 * The layers' entries by the memory their kept x lives in. Both ends are weak: an entry goes with
 * its memory or with its layer.
 */
const keptInputs = new WeakMap<object, Set<WeakRef<KeptInput>>>();

/** Whether two tensors share memory. */
export function overlaps(a: Tensor, b: Tensor): boolean {
  const sa = storage(a), sb = storage(b);
  return sa.key === sb.key && sa.start < sb.end && sb.start < sa.end;
}

/**
 * Records that a call wrote `out`: a forward whose kept x it overlaps can no longer be
 * differentiated (PyTorch likewise refuses, at backward, a saved tensor changed in place), so its
 * backward throws rather than differentiate other data. Nothing is refused before then: a forward
 * that is never differentiated may have its x overwritten freely.
 */
export function markOverwritten(by: string, out: Tensor): void {
  const set = keptInputs.get(storage(out).key);
  if (!set) return;
  for (const ref of set) {
    const entry = ref.deref();
    if (entry === undefined) {
      set.delete(ref); // its layer was collected
      continue;
    }
    const kept = entry.kept;
    if (kept && !kept.used && overlaps(out, kept.save.x!)) kept.overwrittenBy ??= by;
  }
}
