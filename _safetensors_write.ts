/**
 * Writing safetensors (the format is described in _safetensors.ts, whose dtypes, header key and
 * shape text it uses): the tensors by name to a file's bytes that PyTorch reads, every value
 * converted to its dtype or refused naming the tensor, float16/bfloat16 rounded to nearest even.
 *
 * @module
 */
import { isDtype, ITEM_SIZE, METADATA, type SafetensorsDtype, shapeText } from "./_safetensors.ts";
import { describeValue } from "./_validate.ts";

/** One tensor to write: its values and shape, and optionally the dtype to store them as. */
export interface TensorToWrite {
  /** The values, row-major. A typed array, or plain numbers (stored as F32 unless `dtype` says). */
  readonly data: ArrayLike<number> | BigInt64Array | BigUint64Array;
  /** The shape; its product must equal data.length. Default [data.length]. */
  readonly shape?: readonly number[];
  /**
   * The dtype to store: default from the typed array (Float32Array: F32, Float64Array: F64,
   * Int32Array: I32, BigInt64Array: I64, Uint8Array: U8, ...; plain arrays: F32). Values are
   * converted and must fit (integers in range, finite floats within the target's range).
   */
  readonly dtype?: SafetensorsDtype;
}

/**
 * A number to the bits of a small binary float with `m` mantissa and `e` exponent bits (float16:
 * 10, 5; bfloat16: 7, 8), rounding to nearest even straight from the float64 value (no double
 * rounding through float32); overflow gives an infinity.
 */
function toSmallFloat(v: number, m: number, e: number): number {
  const bias = 2 ** (e - 1) - 1, inf = (2 ** e - 1) * 2 ** m;
  if (Number.isNaN(v)) return inf + 2 ** (m - 1);
  const sign = v < 0 || Object.is(v, -0) ? 2 ** (m + e) : 0;
  const a = Math.abs(v);
  if (a === Infinity) return sign + inf;
  const minExp = 1 - bias;
  // Subnormal; a result of 2^m is the smallest normal number, which the bits express as well.
  if (a < 2 ** minExp) return sign + roundEven(a * 2 ** (m - minExp));
  let exp = Math.floor(Math.log2(a));
  if (a < 2 ** exp) exp--; // Math.log2 may round across a power of two
  if (a >= 2 ** (exp + 1)) exp++;
  let mant = roundEven((a / 2 ** exp - 1) * 2 ** m);
  if (mant === 2 ** m) {
    mant = 0;
    exp++;
  }
  if (exp > bias) return sign + inf;
  return sign + (exp + bias) * 2 ** m + mant;
}

function roundEven(x: number): number {
  const f = Math.floor(x), d = x - f;
  return d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
}

function defaultDtype(data: unknown): SafetensorsDtype {
  if (data instanceof Float64Array) return "F64";
  if (data instanceof BigInt64Array) return "I64";
  if (data instanceof BigUint64Array) return "U64";
  if (data instanceof Int32Array) return "I32";
  if (data instanceof Int16Array) return "I16";
  if (data instanceof Int8Array) return "I8";
  if (data instanceof Uint32Array) return "U32";
  if (data instanceof Uint16Array) return "U16";
  if (data instanceof Uint8Array || data instanceof Uint8ClampedArray) return "U8";
  return "F32";
}

const INT_RANGE: Partial<Record<SafetensorsDtype, [number, number]>> = {
  I32: [-(2 ** 31), 2 ** 31 - 1],
  I16: [-32768, 32767],
  I8: [-128, 127],
  U32: [0, 2 ** 32 - 1],
  U16: [0, 65535],
  U8: [0, 255],
  BOOL: [0, 1],
};

/** Writes element `i` of `value` at `at` as `dtype`, or throws naming the tensor. */
function encode(
  dv: DataView,
  at: number,
  dtype: SafetensorsDtype,
  value: number | bigint,
  what: string,
): void {
  const fail = (why: string): never => {
    throw new RangeError(`writeSafetensors: ${what} is ${String(value)}, ${why}`);
  };
  if (dtype === "I64" || dtype === "U64") {
    let b: bigint;
    if (typeof value === "bigint") b = value;
    else if (Number.isInteger(value)) b = BigInt(value);
    else return fail(`not an integer (${dtype})`);
    if (dtype === "I64" ? BigInt.asIntN(64, b) !== b : BigInt.asUintN(64, b) !== b) {
      fail(`out of range for ${dtype}`);
    }
    if (dtype === "I64") dv.setBigInt64(at, b, true);
    else dv.setBigUint64(at, b, true);
    return;
  }
  if (typeof value === "bigint") {
    if (value < -(2n ** 53n) || value > 2n ** 53n) fail(`not exactly representable as ${dtype}`);
    value = Number(value);
  }
  if (typeof value !== "number") return fail("not a number");
  const range = INT_RANGE[dtype];
  if (range) {
    if (!Number.isInteger(value) || value < range[0] || value > range[1]) {
      fail(`not an integer in [${range[0]}, ${range[1]}] (${dtype})`);
    }
    const set = {
      I32: () => dv.setInt32(at, value as number, true),
      I16: () => dv.setInt16(at, value as number, true),
      I8: () => dv.setInt8(at, value as number),
      U32: () => dv.setUint32(at, value as number, true),
      U16: () => dv.setUint16(at, value as number, true),
      U8: () => dv.setUint8(at, value as number),
      BOOL: () => dv.setUint8(at, value as number),
    }[dtype as "I32"];
    set();
    return;
  }
  if (dtype === "F64") return dv.setFloat64(at, value, true);
  // A finite value that rounds to an infinity does not fit the narrower float.
  const max = { F32: 3.4028235677973366e38, F16: 65520, BF16: 3.3961775292304846e38 }[
    dtype as "F32"
  ];
  if (Number.isFinite(value) && Math.abs(value) >= max) fail(`beyond the range of ${dtype}`);
  if (dtype === "F32") dv.setFloat32(at, value, true);
  else {dv.setUint16(
      at,
      dtype === "F16" ? toSmallFloat(value, 10, 5) : toSmallFloat(value, 7, 8),
      true,
    );}
}

/**
 * Writes tensors as a safetensors file that PyTorch's `safetensors.torch.load_file` reads: names
 * sorted in the header, the header padded with spaces to a multiple of 8 bytes (as the reference
 * implementation does), tensors stored largest element type first so that each is aligned.
 *
 * @example
 * ```ts
 * import { SwitchNorm2d, writeSafetensors } from "./mod.ts";
 * const sn = new SwitchNorm2d(8);
 * const bytes = writeSafetensors(sn.stateDict({ prefix: "bn1.", shapes: "pytorch" }));
 * // await Deno.writeFile("sn.safetensors", bytes);
 * // PyTorch: model.load_state_dict(safetensors.torch.load_file("sn.safetensors"), strict=False)
 * console.log(bytes.length > 8);
 * ```
 *
 * @param tensors The tensors by name: `{ data, shape?, dtype? }` or a bare array (shape [length]).
 * @param metadata Optional string-to-string metadata (the `__metadata__` entry).
 * @returns The file's bytes.
 * @throws {TypeError} on a value that is not an array or `{ data }`, a bad shape, an unknown dtype,
 *   or metadata that is not strings; {@link RangeError} when shape and length disagree or a value
 *   does not fit the dtype (a fractional or out-of-range integer, a float beyond F16's range).
 */
export function writeSafetensors(
  tensors: Readonly<Record<string, TensorToWrite | ArrayLike<number>>>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const where = "writeSafetensors";
  if (typeof tensors !== "object" || tensors === null) {
    throw new TypeError(`${where}: expected an object of tensors, got ${String(tensors)}`);
  }
  const plan = Object.keys(tensors).sort().map((name) => {
    if (name === METADATA) throw new RangeError(`${where}: "${METADATA}" is not a tensor name`);
    const value = tensors[name] as unknown;
    const t = `${where}: tensor "${name}"`;
    const isArray = ArrayBuffer.isView(value) || Array.isArray(value);
    if (!isArray && (typeof value !== "object" || value === null || !("data" in value))) {
      throw new TypeError(`${t} must be an array, a typed array or { data, shape?, dtype? }`);
    }
    const spec = (isArray ? { data: value } : value) as TensorToWrite;
    const data = spec.data as ArrayLike<number | bigint>;
    if (data === null || typeof data !== "object" || typeof data.length !== "number") {
      throw new TypeError(`${t}: data must be an array or a typed array`);
    }
    const shape = spec.shape ?? [data.length];
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new TypeError(
        `${t}: shape must be an array of non-negative integers of at most 2^53 - 1, got ${
          describeValue(shape)
        }`,
      );
    }
    if (shape.reduce((a, b) => a * b, 1) !== data.length) {
      throw new RangeError(`${t} has ${data.length} values but shape ${shapeText(shape)}`);
    }
    const dtype = spec.dtype ?? defaultDtype(data);
    if (!isDtype(dtype)) {
      throw new TypeError(`${t}: unknown dtype ${JSON.stringify(dtype)}`);
    }
    return { name, data, shape: [...shape], dtype };
  });
  if (metadata !== undefined) {
    const ok = typeof metadata === "object" && metadata !== null &&
      Object.values(metadata).every((v) => typeof v === "string");
    if (!ok) throw new TypeError(`${where}: metadata must map strings to strings`);
  }
  // Largest element first (then by name): with the data start aligned to 8, every tensor is
  // aligned to its element size.
  const order = [...plan].sort((a, b) =>
    ITEM_SIZE[b.dtype] - ITEM_SIZE[a.dtype] || (a.name < b.name ? -1 : 1)
  );
  let offset = 0;
  const offsets = new Map<string, [number, number]>();
  for (const p of order) {
    const size = p.data.length * ITEM_SIZE[p.dtype];
    offsets.set(p.name, [offset, offset + size]);
    offset += size;
  }
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header[METADATA] = { ...metadata };
  for (const p of plan) {
    header[p.name] = { dtype: p.dtype, shape: p.shape, data_offsets: offsets.get(p.name) };
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const withSpaces = new Uint8Array(padded).fill(0x20);
    withSpaces.set(json);
    json = withSpaces;
  }
  const out = new Uint8Array(8 + json.length + offset);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  const dataStart = 8 + json.length;
  for (const p of order) {
    const [begin] = offsets.get(p.name)!;
    const size = ITEM_SIZE[p.dtype];
    for (let i = 0; i < p.data.length; i++) {
      encode(dv, dataStart + begin + i * size, p.dtype, p.data[i], `tensor "${p.name}"[${i}]`);
    }
  }
  return out;
}
