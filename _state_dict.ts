/**
 * Reading PyTorch-style state dicts: flat arrays, nested arrays in the reference's shapes
 * (`tensor.tolist()`), or `{ data, shape }` objects.
 *
 * @module
 */

/** A value accepted for one state-dict entry. */
export type StateValue =
  | ArrayLike<number>
  | readonly unknown[]
  | { readonly data: ArrayLike<number>; readonly shape: readonly number[] };

/** The entries of a SwitchNorm state dict, with PyTorch's key names. */
export interface StateDict {
  /** The affine scale gamma, length C. */
  weight: Float32Array;
  /** The affine shift beta, length C. */
  bias: Float32Array;
  /** Mean importance logits, order (in,) ln, bn: 3 (2 without BN) for 2d/3d, 2 (1) for 1d. */
  mean_weight: Float32Array;
  /** Variance importance logits, same order and length as mean_weight. */
  var_weight: Float32Array;
  /** Present when the layer uses BN statistics. */
  running_mean?: Float32Array;
  /** Present when the layer uses BN statistics. */
  running_var?: Float32Array;
}

/** What one key must look like: its flat length and the shapes accepted besides [length]. */
export interface KeySpec {
  readonly length: number;
  readonly shapes: readonly (readonly number[])[];
  /** Values must be >= 0 (a running variance). */
  readonly nonNegative?: boolean;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Flattens nested arrays, returning the data and the nested shape; throws on ragged input. */
function flattenNested(
  where: string,
  key: string,
  value: readonly unknown[],
): { data: number[]; shape: number[] } {
  const shape: number[] = [];
  for (let v: unknown = value; Array.isArray(v); v = v[0]) shape.push(v.length);
  const data: number[] = [];
  const walk = (v: unknown, depth: number): void => {
    if (depth === shape.length) {
      if (typeof v !== "number") {
        throw new TypeError(`${where}: "${key}" holds a ${typeof v}, expected numbers`);
      }
      data.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[depth]) {
      throw new RangeError(`${where}: "${key}" is a ragged nested array`);
    }
    for (const e of v) walk(e, depth + 1);
  };
  walk(value, 0);
  return { data, shape };
}

/** Converts one entry to a Float32Array of `spec.length`, or throws naming `where` and the key. */
export function readEntry(
  where: string,
  key: string,
  value: unknown,
  spec: KeySpec,
): Float32Array {
  let data: ArrayLike<number>;
  let shape: readonly number[];
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    if (typeof (value as unknown as ArrayLike<unknown>)[0] === "bigint") {
      throw new TypeError(`${where}: "${key}" is a BigInt array; expected numbers`);
    }
    data = value as unknown as ArrayLike<number>;
    shape = [data.length];
  } else if (Array.isArray(value)) {
    ({ data, shape } = flattenNested(where, key, value));
  } else if (
    typeof value === "object" && value !== null && "data" in value && "shape" in value
  ) {
    const v = value as { data: unknown; shape: unknown };
    if (!Array.isArray(v.shape)) {
      throw new TypeError(`${where}: "${key}".shape must be an array`);
    }
    const nested = Array.isArray(v.data)
      ? flattenNested(where, key, v.data).data
      : v.data as ArrayLike<number>;
    data = nested;
    shape = v.shape;
    const count = shape.reduce((a, b) => a * b, 1);
    if (data?.length !== count) {
      throw new RangeError(
        `${where}: "${key}" has ${data?.length} values but shape [${shape.join(", ")}]`,
      );
    }
  } else {
    throw new TypeError(
      `${where}: "${key}" must be an array, a typed array or { data, shape }, got ${
        value === null ? "null" : typeof value
      }`,
    );
  }
  const accepted = [[spec.length], ...spec.shapes];
  if (!accepted.some((s) => sameShape(s, shape))) {
    throw new RangeError(
      `${where}: "${key}" has shape [${shape.join(", ")}], expected ${
        accepted.map((s) => `[${s.join(", ")}]`).join(" or ")
      }`,
    );
  }
  const out = new Float32Array(spec.length);
  for (let i = 0; i < spec.length; i++) {
    const v = data[i];
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new RangeError(`${where}: "${key}"[${i}] is ${String(v)}; values must be finite`);
    }
    // What is stored is float32: a value finite in float64 may round to Infinity there.
    if (!Number.isFinite(Math.fround(v))) {
      throw new RangeError(
        `${where}: "${key}"[${i}] is ${v}, beyond float32 (largest finite 3.4028234663852886e38)`,
      );
    }
    if (spec.nonNegative && v < 0) {
      throw new RangeError(`${where}: "${key}"[${i}] is ${v}; a variance must not be negative`);
    }
    out[i] = v;
  }
  return out;
}

/**
 * Reads a whole state dict against the expected keys, its own keys only (a key found only on its
 * prototype is missing). Throws on a missing or extra key, a misshapen value or one that float32
 * cannot hold, before returning anything, so that the caller can apply it atomically.
 */
export function readStateDict(
  layer: string,
  dict: unknown,
  specs: Readonly<Record<string, KeySpec>>,
): Record<string, Float32Array> {
  if (typeof dict !== "object" || dict === null) {
    throw new TypeError(`${layer}.loadStateDict: expected an object, got ${String(dict)}`);
  }
  const expected = Object.keys(specs);
  // Own keys only, on both sides: `"constructor" in specs` is true, and JSON.parse makes
  // "__proto__" an own key of its result.
  for (const key of Object.keys(dict)) {
    if (!Object.hasOwn(specs, key)) {
      throw new RangeError(
        `${layer}.loadStateDict: unexpected key "${key}" (expected ${expected.join(", ")})`,
      );
    }
  }
  const out: Record<string, Float32Array> = {};
  for (const key of expected) {
    const value = Object.hasOwn(dict, key) ? (dict as Record<string, unknown>)[key] : undefined;
    if (value === undefined) {
      throw new RangeError(`${layer}.loadStateDict: missing key "${key}"`);
    }
    out[key] = readEntry(`${layer}.loadStateDict`, key, value, specs[key]);
  }
  return out;
}
