/**
 * Reading PyTorch-style state dicts: flat arrays, nested arrays in the reference's shapes
 * (`tensor.tolist()`), or `{ data, shape }` objects; and shaping a layer's entries for writing.
 * Knows keys, lengths and shapes (KeySpec), not layers. Depends only on the validators' messages.
 *
 * @module
 */
import { describeShape, describeValue } from "./_validate.ts";

/** A value accepted for one state-dict entry. */
export type StateValue =
  | ArrayLike<number>
  | readonly unknown[]
  | { readonly data: ArrayLike<number>; readonly shape: readonly number[] };

/**
 * The parameters in every SwitchNorm state dict, with PyTorch's key names. (A type, not an
 * interface, so that a state dict passes where `Record<string, unknown>` is expected.)
 */
export type StateDictParams = {
  /** The affine scale gamma, length C. */
  weight: Float32Array;
  /** The affine shift beta, length C. */
  bias: Float32Array;
  /** Mean importance logits, order (in,) ln, bn: 3 (2 without BN) for 2d/3d, 2 (1) for 1d. */
  mean_weight: Float32Array;
  /** Variance importance logits, same order and length as mean_weight. */
  var_weight: Float32Array;
  /** Sparse SN only (SSN2d's buffer): 1 once the mean mixing is fixed to its logits, else 0. */
  mean_fixed?: Float32Array;
  /** Sparse SN only: the same flag for the variance mixing. */
  var_fixed?: Float32Array;
  /** Sparse SN only: the sparsestmax radius, length 1. */
  radius?: Float32Array;
};

/** The running buffers of a layer that uses BN statistics (`usingBN`, the default). */
export type RunningBuffers = {
  /** Running means, length C (the batch average's sums until it is finalized). */
  running_mean: Float32Array;
  /** Running variances, length C (likewise). */
  running_var: Float32Array;
};

/**
 * A SwitchNorm state dict. `UsingBN` is the layer's `usingBN` as TypeScript knows it: `true`
 * (the default, and SwitchNorm1d) gives the running buffers, `false` gives none, and a `boolean`
 * not known until run time makes them optional.
 */
export type StateDict<UsingBN extends boolean = boolean> =
  & StateDictParams
  & ([UsingBN] extends [true] ? RunningBuffers
    : [UsingBN] extends [false] ? Record<never, never>
    : Partial<RunningBuffers>);

/** Options of `loadStateDict`. */
export interface LoadStateDictOptions {
  /**
   * Read the keys `prefix + name` (PyTorch's key of a submodule, e.g. "layer1.0.bn1.") and
   * ignore every key outside the prefix, so that a whole model's checkpoint can be passed as is.
   * When no key of the layer is found under the prefix but some are under "module." + prefix
   * (a checkpoint saved from `nn.DataParallel`), those are read. Default "" with no keys ignored.
   */
  prefix?: string;
  /**
   * true (default): every key of the layer must be present and no other key may be under the
   * prefix. false (PyTorch's meaning): load the keys present, leave the others as they are, and
   * report the missing and unexpected keys. A present key with a bad value throws either way.
   */
  strict?: boolean;
}

/** What `loadStateDict` reports, with full key names (prefix included), like PyTorch. */
export interface LoadStateDictResult {
  /** Keys of the layer that the dict lacks (always empty with strict: true). */
  readonly missingKeys: string[];
  /** Keys under the prefix that are not the layer's (always empty with strict: true). */
  readonly unexpectedKeys: string[];
}

/** Options of `stateDict`. */
export interface StateDictOptions {
  /** Put this before every key (e.g. "layer1.0.bn1."). Default "". */
  prefix?: string;
  /**
   * "flat" (default): each value is a Float32Array. "pytorch": each value is `{ data, shape }` in
   * the authors' shapes ([1, C, 1, 1] for SwitchNorm2d's weight, [1, C, 1] for its buffers, ...),
   * ready for `writeSafetensors` and a strict `load_state_dict` in PyTorch.
   */
  shapes?: "flat" | "pytorch";
}

/** A state-dict value with its PyTorch shape. */
export interface ShapedTensor {
  /** The values, row-major. */
  data: Float32Array;
  /** The shape in the authors' module. */
  shape: number[];
}

/** What one key must look like: its flat length and the shapes accepted besides [length]. */
export interface KeySpec {
  readonly length: number;
  readonly shapes: readonly (readonly number[])[];
  /** Values must be >= 0 (a running variance). */
  readonly nonNegative?: boolean;
  /**
   * NaN and the infinities are taken (the running buffers: a NaN or infinite input, or a batch
   * variance beyond float32, puts them there, and the layer's own checkpoint must load again, as
   * PyTorch's does); finite values beyond float32's range are still refused.
   */
  readonly nonFinite?: boolean;
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
        throw new TypeError(`${where}: "${key}" holds ${describeValue(v)}, expected numbers`);
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

/**
 * The values of a typed array as numbers: BigInt arrays (readSafetensors' I64 and U64) only where
 * every value is an integer of at most 2^53 in magnitude, so that none is silently rounded.
 */
function numbersOf(
  where: string,
  key: string,
  data: ArrayLike<number | bigint>,
): ArrayLike<number> {
  if (!(data instanceof BigInt64Array || data instanceof BigUint64Array)) {
    return data as ArrayLike<number>;
  }
  return Array.from(data, (v, i) => {
    if (v > 2n ** 53n || v < -(2n ** 53n)) {
      throw new RangeError(`${where}: "${key}"[${i}] is ${v}, beyond 2^53 (not exactly a number)`);
    }
    return Number(v);
  });
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
    data = numbersOf(where, key, value as unknown as ArrayLike<number | bigint>);
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
      : numbersOf(where, key, v.data as ArrayLike<number | bigint>);
    data = nested;
    shape = v.shape;
    const count = shape.reduce((a, b) => a * b, 1);
    if (data?.length !== count) {
      throw new RangeError(
        `${where}: "${key}" has ${data?.length} values but shape [${describeShape(shape)}]`,
      );
    }
  } else {
    throw new TypeError(
      `${where}: "${key}" must be an array, a typed array or { data, shape }, got ${
        describeValue(value)
      }`,
    );
  }
  const accepted = [[spec.length], ...spec.shapes];
  if (!accepted.some((s) => sameShape(s, shape))) {
    throw new RangeError(
      `${where}: "${key}" has shape [${describeShape(shape)}], expected ${
        accepted.map((s) => `[${s.join(", ")}]`).join(" or ")
      }`,
    );
  }
  const out = new Float32Array(spec.length);
  for (let i = 0; i < spec.length; i++) {
    const v = data[i];
    const taken = typeof v === "number" && (Number.isFinite(v) || spec.nonFinite === true);
    if (!taken) {
      const Err = typeof v === "number" ? RangeError : TypeError;
      throw new Err(
        `${where}: "${key}"[${i}] is ${describeValue(v)}; values must be finite`,
      );
    }
    // What is stored is float32: a value finite in float64 may round to Infinity there.
    if (Number.isFinite(v) && !Number.isFinite(Math.fround(v))) {
      throw new RangeError(
        `${where}: "${key}"[${i}] is ${v}, beyond float32's range (largest finite ` +
          "3.4028234663852886e38)",
      );
    }
    if (spec.nonNegative && v < 0) {
      throw new RangeError(`${where}: "${key}"[${i}] is ${v}; a variance must not be negative`);
    }
    out[i] = v;
  }
  return out;
}

/** Checks `loadStateDict`'s options, naming `where` in the error. */
function loadOptions(where: string, options: unknown): { prefix?: string; strict: boolean } {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
  }
  for (const k of Object.keys(options)) {
    if (k !== "prefix" && k !== "strict") {
      throw new TypeError(`${where}: unknown option "${k}" (expected prefix, strict)`);
    }
  }
  const { prefix, strict = true } = options as LoadStateDictOptions;
  if (prefix !== undefined && typeof prefix !== "string") {
    throw new TypeError(`${where}: prefix must be a string, got ${typeof prefix}`);
  }
  if (typeof strict !== "boolean") {
    throw new TypeError(`${where}: strict must be true or false, got ${typeof strict}`);
  }
  return { prefix, strict };
}

/**
 * Reads a state dict against the expected keys (see {@linkcode LoadStateDictOptions}), its own
 * keys only (a key found only on its prototype is absent; `"constructor" in specs` is true). Throws on
 * a misshapen value, and with strict on a missing or extra key, before returning anything, so
 * that the caller can apply what it returns atomically. `read` holds the keys found, unprefixed.
 */
export function readStateDict(
  layer: string,
  dict: unknown,
  specs: Readonly<Record<string, KeySpec>>,
  options: LoadStateDictOptions = {},
): LoadStateDictResult & { read: Partial<Record<string, Float32Array>> } {
  const where = `${layer}.loadStateDict`;
  if (typeof dict !== "object" || dict === null) {
    throw new TypeError(`${where}: expected an object, got ${describeValue(dict)}`);
  }
  // Its entries are not its keys: a Map read as { } reported every key missing (misuse helper-93).
  if (dict instanceof Map) {
    throw new TypeError(
      `${where}: expected a plain object of key -> values, got a Map (pass ` +
        "Object.fromEntries(map))",
    );
  }
  const { prefix, strict } = loadOptions(where, options);
  const expected = Object.keys(specs);
  // A key whose value is undefined counts as absent (as when spreading `{ ...dict, k: undefined }`).
  const keys = Object.keys(dict).filter((k) => (dict as Record<string, unknown>)[k] !== undefined);
  const present = new Set(keys);
  const has = (base: string) => expected.some((k) => present.has(base + k));
  // DataParallel saves every key under "module.": read those when the plain prefix has none.
  const base = !has(prefix ?? "") && has(`module.${prefix ?? ""}`)
    ? `module.${prefix ?? ""}`
    : prefix ?? "";
  const unexpectedKeys = keys.filter((k) =>
    k.startsWith(base) ? !Object.hasOwn(specs, k.slice(base.length)) : prefix === undefined
  );
  const missingKeys = expected.filter((k) => !present.has(base + k)).map((k) => base + k);
  if (strict && unexpectedKeys.length > 0) {
    const under = base === "" ? "" : ` under prefix "${base}"`;
    throw new RangeError(
      `${where}: unexpected key "${unexpectedKeys[0]}"${under} (expected ${
        expected.join(", ")
      }; strict: false loads a subset)`,
    );
  }
  if (strict && missingKeys.length > 0) {
    throw new RangeError(
      `${where}: missing key "${missingKeys[0]}"${
        missingKeys.length > 1 ? ` (and ${missingKeys.length - 1} more)` : ""
      }; strict: false loads a subset`,
    );
  }
  const read: Partial<Record<string, Float32Array>> = {};
  for (const key of expected) {
    const value = (dict as Record<string, unknown>)[base + key];
    if (!present.has(base + key)) continue;
    read[key] = readEntry(where, base + key, value, specs[key]);
  }
  return { read, missingKeys, unexpectedKeys };
}

/** A layer's flat entries with `options.prefix` on each key, in PyTorch's shapes if asked. */
export function shapeStateDict(
  where: string,
  entries: Readonly<Record<string, Float32Array>>,
  specs: Readonly<Record<string, KeySpec>>,
  options: StateDictOptions,
): Record<string, Float32Array | ShapedTensor> {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
  }
  for (const k of Object.keys(options)) {
    if (k !== "prefix" && k !== "shapes") {
      throw new TypeError(`${where}: unknown option "${k}" (expected prefix, shapes)`);
    }
  }
  const { prefix = "", shapes = "flat" } = options;
  if (typeof prefix !== "string") {
    throw new TypeError(`${where}: prefix must be a string, got ${typeof prefix}`);
  }
  if (shapes !== "flat" && shapes !== "pytorch") {
    throw new RangeError(
      `${where}: shapes must be "flat" or "pytorch", got ${JSON.stringify(shapes)}`,
    );
  }
  const out: Record<string, Float32Array | ShapedTensor> = {};
  for (const [key, data] of Object.entries(entries)) {
    // The first accepted shape besides [length] is the authors' (see the layer's specs).
    const shape = [...(specs[key].shapes[0] ?? [data.length])];
    out[prefix + key] = shapes === "pytorch" ? { data, shape } : data;
  }
  return out;
}
