/**
 * Checks of what callers pass in. Every check throws before any state changes, with a message that
 * names the layer, the argument and what was wrong with it, and shows the value with its type
 * when the type is the problem (`got "64" (string)`, never a bare `got 64` for a string).
 *
 * @module
 */

/**
 * A caller's value as an error message shows it: numbers as they are (`64`, `NaN`), strings
 * quoted with their type (`"64" (string)`), other values with their type or class.
 */
export function describeValue(value: unknown): string {
  switch (typeof value) {
    case "number":
      return Object.is(value, -0) ? "-0" : String(value);
    case "string": {
      const quoted = JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
      return `${quoted} (string)`;
    }
    case "bigint":
      return `${value}n (bigint)`;
    case "boolean":
      return `${value} (boolean)`;
    case "undefined":
      return "undefined";
    case "symbol":
      return `${String(value)} (symbol)`;
    case "function":
      return "a function";
    default:
      if (value === null) return "null";
      if (Array.isArray(value)) return `an array [${describeShape(value)}]`;
      return `an object (${(value as object).constructor?.name ?? "no prototype"})`;
  }
}

/** An integer as a message shows it: exactly, also beyond 2^53 (`2 ** 60` as 1152921504606846976). */
export function describeInteger(value: number): string {
  return Number.isInteger(value) && !Number.isSafeInteger(value)
    ? String(BigInt(value))
    : describeValue(value);
}

/** The entries of a shape (or any short list) for a message: `2, 3, "4" (string)`. */
export function describeShape(shape: readonly unknown[]): string {
  const shown = shape.slice(0, 8).map((d) => Array.isArray(d) ? "[...]" : describeValue(d));
  return shape.length > 8 ? `${shown.join(", ")}, ...` : shown.join(", ");
}

/**
 * Why `value` is not a positive safe integer, as the end of a message (`must be a positive
 * integer, got 2.5`), or undefined when it is one. An integer beyond 2^53 is an integer: it is
 * refused as too large (shown exactly), not as "not a positive integer".
 */
function notPositiveInt(value: number): string | undefined {
  if (Number.isSafeInteger(value) && value > 0) return undefined;
  if (Number.isInteger(value) && value > Number.MAX_SAFE_INTEGER) {
    return `must be at most 2^53 - 1 (Number.MAX_SAFE_INTEGER), got ${describeInteger(value)} (2^${
      Math.log2(value).toFixed(1).replace(/\.0$/, "")
    }), too large to count exactly`;
  }
  return `must be a positive integer, got ${describeValue(value)}`;
}

/** Throws unless `value` is a positive safe integer (TypeError for a non-number). */
export function checkPositiveInt(what: string, value: unknown): number {
  if (typeof value !== "number") {
    throw new TypeError(`${what} must be a positive integer, got ${describeValue(value)}`);
  }
  const why = notPositiveInt(value);
  if (why !== undefined) throw new RangeError(`${what} ${why}`);
  return value;
}

/**
 * Throws unless `value` is a finite number in [min, max] (TypeError for a non-number). Returns it
 * with -0 made 0: a setting reads back as the number it means, never as `-0`.
 */
export function checkFiniteIn(what: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number") {
    throw new TypeError(`${what} must be a finite number, got ${describeValue(value)}`);
  }
  if (!Number.isFinite(value)) {
    throw new RangeError(`${what} must be a finite number, got ${describeValue(value)}`);
  }
  if (value < min || value > max) {
    throw new RangeError(`${what} must be in [${min}, ${max}], got ${value}`);
  }
  return value + 0; // -0 + 0 is 0
}

/** float32's smallest normal number, 2^-126. */
export const FLOAT32_MIN_NORMAL = 2 ** -126;

/** float32's largest finite number, (2 - 2^-23) 2^127. */
export const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * Throws unless `value` is a valid eps: 0, or a number from float32's smallest normal number
 * (2^-126, about 1.18e-38) to its largest (about 3.4e38). Every backend adds eps to a variance; a positive eps
 * below that would be a float32 subnormal, which GPUs may flush to 0 (WGSL allows it), so the
 * same layer would silently mean eps = 0 on one backend and eps > 0 on another.
 */
export function checkEps(what: string, value: unknown): number {
  const eps = checkFiniteIn(what, value, 0, Infinity);
  if (eps > 0 && eps < FLOAT32_MIN_NORMAL) {
    throw new RangeError(
      `${what} must be 0 or at least 2^-126 (1.1754943508222875e-38, float32's smallest normal ` +
        `number; a smaller eps is a subnormal that GPUs may flush to 0), got ${eps}`,
    );
  }
  if (eps > FLOAT32_MAX) {
    throw new RangeError(
      `${what} must be at most float32's largest number (3.4028234663852886e38; a larger eps is ` +
        `+Infinity in float32, which made WebGPU's y 0), got ${eps}`,
    );
  }
  return eps;
}

/** Throws unless `value` is a boolean (or undefined, which gives `fallback`). */
export function checkBoolean(what: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") {
    throw new TypeError(`${what} must be a boolean, got ${describeValue(value)}`);
  }
  return value;
}

/** Throws if `options` has a key not in `known` (a typo would otherwise be ignored silently). */
export function checkKnownKeys(what: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new TypeError(`${what}: unknown option "${key}" (known: ${known.join(", ")})`);
    }
  }
}

/**
 * Checks an input tensor's shape against the layer and its data length, and returns the
 * [N, C, M] view of it. `rankName` is e.g. "[N, C, H, W]".
 */
export function checkInputShape(
  layer: string,
  shape: unknown,
  rank: number,
  rankName: string,
  numFeatures: number,
  length: number,
): { n: number; c: number; m: number } {
  if (!Array.isArray(shape)) {
    throw new TypeError(
      `${layer}: shape must be an array ${rankName}, got ${describeValue(shape)}`,
    );
  }
  if (shape.length !== rank) {
    throw new RangeError(
      `${layer}: expected a rank-${rank} input ${rankName}, got rank ${shape.length} [${
        describeShape(shape)
      }]`,
    );
  }
  for (let i = 0; i < rank; i++) {
    const d = shape[i];
    if (typeof d !== "number") {
      throw new TypeError(
        `${layer}: shape[${i}] must be a positive integer, got ${describeValue(d)}`,
      );
    }
    if (d !== 0) {
      const why = notPositiveInt(d);
      if (why !== undefined) throw new RangeError(`${layer}: shape[${i}] ${why}`);
    } else {
      throw new RangeError(
        `${layer}: zero-size dimension ${i} in shape [${
          describeShape(shape)
        }]; nothing to normalize`,
      );
    }
  }
  if (shape[1] !== numFeatures) {
    throw new RangeError(
      `${layer}: channel count mismatch: shape[1] is ${
        shape[1]
      } but the layer has ${numFeatures} features`,
    );
  }
  const n = shape[0] as number;
  let m = 1;
  for (let i = 2; i < rank; i++) m *= shape[i] as number;
  const expected = n * numFeatures * m;
  if (!Number.isSafeInteger(expected)) {
    throw new RangeError(
      `${layer}: shape [${describeShape(shape)}] has about ${
        expected.toPrecision(3)
      } elements, beyond 2^53 - 1 (Number.MAX_SAFE_INTEGER); data of length ${length} cannot have it`,
    );
  }
  if (expected !== length) {
    throw new RangeError(
      `${layer}: data length ${length} does not match shape [${
        describeShape(shape)
      }] (${expected} elements)`,
    );
  }
  return { n, c: numFeatures, m };
}

/** Throws unless `x` is a Float32Array, naming the type that came instead. */
export function checkFloat32(what: string, x: unknown): Float32Array {
  if (x instanceof Float32Array) return x;
  const got = x === null
    ? "null"
    : typeof x === "object"
    ? (x as object).constructor?.name ?? "object"
    : typeof x;
  throw new TypeError(`${what} must be a Float32Array (dtype float32), got ${got}`);
}
