/**
 * The arguments of a layer's forward, backward and upload, and the public types of the per-call
 * options. Checked when the call is made (the call itself may run later, after the layer's
 * earlier calls): per-call options with only known keys of the right types, and an `out` that is
 * like x and does not overlap an x kept for backward. Checked again when it runs: arrays still
 * readable at their length, dy like the x its forward kept. Depends on the validators and the
 * saved forward's overlap test.
 *
 * @module
 */
import type { NormProblem, ResidentTensor } from "./backends/_backend.ts";
import { overlaps } from "./_saved_forward.ts";
import {
  checkBoolean,
  checkFloat32,
  checkInputShape,
  checkKnownKeys,
  describeValue,
} from "./_validate.ts";

/** Per-call options of `forward`. */
export interface ForwardOptions {
  /**
   * Where to write y: same kind and length as x (a resident `out` also of x's shape); a new one is
   * made otherwise.
   */
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
   * Where to write dx: same kind and length as dy (a resident `out` also of its shape); a new one
   * is made otherwise. It may be dy itself (dx replaces dy), not the x being differentiated.
   */
  out?: Float32Array | ResidentTensor;
  /**
   * Keep the forward differentiable after this backward, so that another backward through it is
   * allowed (PyTorch's `retain_graph`). Default false: a second backward through the same
   * forward throws instead of adding its gradients again.
   */
  retainGraph?: boolean;
}

/** A forward's arguments as checked when it was called, and the mode then in force. */
export interface ForwardCall {
  readonly x: Float32Array | ResidentTensor;
  readonly resident: boolean;
  readonly n: number;
  readonly c: number;
  readonly m: number;
  readonly out?: Float32Array | ResidentTensor;
  readonly keep: boolean;
  readonly training: boolean;
}

/** What the checks need to know of the layer. */
export interface LayerShape {
  readonly name: string;
  readonly rank: number;
  readonly rankName: string;
}

/**
 * Checks `forward(x, shape, options)` or `forward(x, options)` (resident x) against the layer;
 * what the forward will run with. `training` is the layer's mode at the call.
 */
export function readForwardCall(
  kind: LayerShape,
  numFeatures: number,
  training: boolean,
  [x, shapeOrOptions, maybeOptions]: [unknown, unknown, unknown],
): ForwardCall {
  const name = kind.name;
  const resident = isResident(x);
  if (!resident) checkFloat32(`${name}.forward: x`, x);
  const input = x as Float32Array | ResidentTensor;
  const shape = resident ? (input as ResidentTensor).shape : shapeOrOptions;
  const rawOptions = resident ? shapeOrOptions : maybeOptions;
  if (resident && Array.isArray(shapeOrOptions)) {
    throw new TypeError(`${name}.forward: a resident tensor carries its own shape`);
  }
  if (resident && maybeOptions !== undefined) {
    throw new TypeError(`${name}.forward: a resident x takes (x, options), got a third argument`);
  }
  const { n, c, m } = checkInputShape(
    `${name}.forward`,
    shape,
    kind.rank,
    kind.rankName,
    numFeatures,
    input.length,
  );
  const options = readOptions(`${name}.forward`, rawOptions, ["out", "keepForBackward"]) as {
    out?: unknown;
    keepForBackward?: unknown;
  };
  const keep = checkBoolean(`${name}.forward: keepForBackward`, options.keepForBackward, training);
  const out = readOut(`${name}.forward`, "x", options.out, input, shape as number[]);
  if (out !== undefined) {
    if (keep && overlaps(out, input)) {
      throw new Error(
        `${name}.forward: out overlaps x, which this forward keeps for backward (training ` +
          "mode or keepForBackward): writing y there would change what backward " +
          "differentiates. Pass { keepForBackward: false } for an in-place forward that " +
          "backward will not follow, or write y elsewhere",
      );
    }
  }
  return { x: input, resident, n, c, m, out, keep, training };
}

/** A backward's arguments as checked when it was called. */
export interface BackwardCall {
  /** Keep the forward differentiable after this backward. */
  readonly retain: boolean;
  /** dy's length when the call was made (dy is read when it runs). */
  readonly dyLength: number;
  readonly out?: Float32Array | ResidentTensor;
}

/** Checks `backward(dy, options)`'s dy type and options. */
export function readBackwardCall(name: string, dy: unknown, options: unknown): BackwardCall {
  const resident = isResident(dy);
  if (!resident) checkFloat32(`${name}.backward: dy`, dy);
  const input = dy as Float32Array | ResidentTensor;
  const o = readOptions(`${name}.backward`, options, ["out", "retainGraph"]) as {
    out?: unknown;
    retainGraph?: unknown;
  };
  const retain = checkBoolean(`${name}.backward: retainGraph`, o.retainGraph, false);
  const shape = resident ? (dy as ResidentTensor).shape : [];
  const out = readOut(`${name}.backward`, "dy", o.out, input, shape);
  return { retain, dyLength: input.length, out };
}

/** Checks `upload(data, shape)` against the layer. */
export function readUploadCall(
  kind: LayerShape,
  numFeatures: number,
  data: unknown,
  shape: unknown,
): void {
  const values = checkFloat32(`${kind.name}.upload: data`, data);
  checkInputShape(
    `${kind.name}.upload`,
    shape,
    kind.rank,
    kind.rankName,
    numFeatures,
    values.length,
  );
}

/**
 * An `out` option: undefined, or a tensor of `input`'s kind and length (named `inputName` in the
 * error), and, resident, of `shape` (a resident tensor carries its shape to the next layer).
 */
function readOut(
  what: string,
  inputName: string,
  out: unknown,
  input: Float32Array | ResidentTensor,
  shape: readonly number[],
): Float32Array | ResidentTensor | undefined {
  if (out === undefined) return undefined;
  const resident = isResident(input);
  const ok = resident ? isResident(out) : out instanceof Float32Array;
  const kind = resident ? "a resident tensor" : "a Float32Array";
  if (!ok) {
    throw new TypeError(
      `${what}: out must be the same kind as ${inputName} (${kind}) with ${input.length} ` +
        `elements, got ${describeValue(out)}`,
    );
  }
  const length = (out as Float32Array | ResidentTensor).length;
  if (length !== input.length) {
    // The right kind, the wrong size: a RangeError, as for dy (realistic-use helper-89).
    throw new RangeError(
      `${what}: out must be the same kind as ${inputName} with ${input.length} elements, got ` +
        `${kind} of ${length} elements`,
    );
  }
  if (resident) checkSameShape(`${what}: out`, out as ResidentTensor, shape);
  return out as Float32Array | ResidentTensor;
}

/** Per-call options: undefined, or an object with only the `known` keys. */
function readOptions(what: string, options: unknown, known: readonly string[]): object {
  if (options === undefined) return {};
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(
      `${what}: options must be an object { ${known.join(", ")} }, got ${describeValue(options)}`,
    );
  }
  checkKnownKeys(what, options, known);
  return options;
}

/** Whether `x` is a resident tensor (not a typed array). */
export function isResident(x: unknown): x is ResidentTensor {
  return typeof x === "object" && x !== null && !ArrayBuffer.isView(x) && "backend" in x &&
    "shape" in x;
}

/**
 * Checks, when a queued call runs, that a Float32Array the call was given is still what it was
 * when checked: x and dy are read when the call runs, not when it is made, and a buffer detached
 * (`buffer.transfer()`, `postMessage` with a transfer list) or resized in between would otherwise
 * be read as 0 elements (NaN statistics, an empty y) or crash a device's upload.
 */
export function checkStillReadable(
  what: string,
  t: Float32Array | ResidentTensor,
  length: number,
): void {
  if (isResident(t)) return;
  const detached = (t.buffer as ArrayBuffer).detached === true;
  if (detached || t.length !== length) {
    throw new TypeError(
      `${what} ${
        detached ? "was detached" : `changed length to ${t.length}`
      } after the call was made (it had ${length} elements); it is read when the call runs ` +
        "(after the layer's earlier calls), not when it is made: do not transfer, resize or " +
        "change it until the promise settles",
    );
  }
}

/**
 * Checks, when a queued backward runs, the x its forward kept and `dy` (of `dyLength` elements
 * when the call was made): both still readable, and dy of x's kind and length.
 */
export function checkBackwardInputs(
  name: string,
  saved: { readonly problem: NormProblem; readonly x: Float32Array | ResidentTensor },
  dy: Float32Array | ResidentTensor,
  dyLength: number,
  out?: Float32Array | ResidentTensor,
): void {
  const { n, c, m } = saved.problem, length = n * c * m;
  checkStillReadable(`${name}.backward: the x its forward kept`, saved.x, length);
  checkStillReadable(`${name}.backward: dy`, dy, dyLength);
  const kind = (v: Float32Array | ResidentTensor) =>
    isResident(v) ? "a resident tensor (layer.upload)" : "a Float32Array";
  if (isResident(dy) !== isResident(saved.x)) {
    // The backend reads dy where the forward's x lies: both in its memory, or both arrays.
    throw new RangeError(
      `${name}.backward: dy must be of the forward's x's kind, ${kind(saved.x)}, got ${kind(dy)}`,
    );
  }
  if (dyLength !== length) {
    throw new RangeError(
      `${name}.backward: dy must have the forward's x's ${length} elements, got ${dyLength}`,
    );
  }
  if (isResident(dy)) {
    checkSameShape(`${name}.backward: dy`, dy, (saved.x as ResidentTensor).shape);
  }
  if (out === undefined) return;
  checkStillReadable(`${name}.backward: out`, out, length);
  // x is read while dx is written (and kept for another backward with retainGraph).
  if (overlaps(out, saved.x)) {
    throw new Error(
      `${name}.backward: out overlaps the x of the forward this backward differentiates, which ` +
        "it reads while writing dx: write dx elsewhere (dy itself may be out)",
    );
  }
  // A resident out is dy itself or apart from it (tensors do not share storage otherwise); a
  // Float32Array out may overlap dy anywhere: every backend reads all of dy before writing dx.
}

/**
 * A resident tensor carries its shape to the next layer, so an `out` or `dy` of the right length
 * but another shape would pass y or dx on with the wrong shape: refused.
 */
function checkSameShape(what: string, t: ResidentTensor, shape: readonly number[]): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new RangeError(
      `${what} must have x's shape [${shape.join(", ")}], got a resident tensor of shape [${
        t.shape.join(", ")
      }]`,
    );
  }
}
