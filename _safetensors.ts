/**
 * safetensors, the checkpoint format PyTorch users share weights in
 * (`safetensors.torch.save_file(model.state_dict(), path)`): an 8-byte little-endian header
 * length N, N bytes of JSON `{ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?:
 * { string: string } }`, then the raw little-endian tensors, offsets counted from the end of the
 * header. The reader is strict: any malformed file throws an error naming the tensor at fault.
 * Byte order is explicit everywhere (little-endian, whatever the platform). This module holds the
 * dtypes, the header and the reader; the writer is _safetensors_write.ts.
 *
 * @module
 */

/** The element types of safetensors that this module reads and writes. */
export type SafetensorsDtype =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL";

/** One tensor as {@linkcode readSafetensors} returns it. */
export interface SafeTensor {
  /** The element type stored in the file. */
  readonly dtype: SafetensorsDtype;
  /** The tensor's shape (row-major; [] for a scalar). */
  readonly shape: number[];
  /**
   * The values, row-major: F32, F16 and BF16 as a Float32Array (F16 and BF16 widen exactly), F64
   * as a Float64Array, I64 and U64 as BigInt64Array and BigUint64Array (so that no value is
   * rounded), the other integers as the typed array of their kind, BOOL as a Uint8Array of 0/1.
   */
  readonly data:
    | Float32Array
    | Float64Array
    | BigInt64Array
    | BigUint64Array
    | Int32Array
    | Int16Array
    | Int8Array
    | Uint32Array
    | Uint16Array
    | Uint8Array;
}

export const ITEM_SIZE: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

export const METADATA = "__metadata__";

export function isDtype(d: unknown): d is SafetensorsDtype {
  return typeof d === "string" && Object.hasOwn(ITEM_SIZE, d);
}

/** float16 bits to a number (exact). */
function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1024 + frac) * 2 ** (exp - 25);
}

const f32Bits = new DataView(new ArrayBuffer(4));

/** The data region's tensors, as the header lists them. */
interface Entry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * The top-level keys of a JSON object text, in order, duplicates included (JSON.parse keeps only
 * the last of a duplicated key, and the format forbids duplicates).
 */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1) {
        let k = j + 1;
        while (/\s/.test(text[k])) k++;
        if (text[k] === ":") keys.push(JSON.parse(text.slice(i, j + 1)));
      }
      i = j;
    } else if (ch === "{" || ch === "[") depth++;
    else if (ch === "}" || ch === "]") depth--;
  }
  return keys;
}

export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** Parses and checks the header; throws naming the tensor at fault. */
function readHeader(bytes: Uint8Array): { entries: Entry[]; dataStart: number } {
  const where = "readSafetensors";
  if (bytes.length < 8) {
    throw new RangeError(
      `${where}: truncated file: ${bytes.length} bytes, fewer than the 8 of the header length`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(bytes.length - 8)) {
    throw new RangeError(
      `${where}: truncated file: the header length is ${n} bytes but only ${
        bytes.length - 8
      } follow it`,
    );
  }
  const headerLength = Number(n),
    dataStart = 8 + headerLength,
    dataLength = bytes.length - dataStart;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, dataStart));
  } catch {
    throw new TypeError(`${where}: the header is not UTF-8 text`);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new TypeError(`${where}: the header is not JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new TypeError(`${where}: the header is not a JSON object`);
  }
  const seen = new Set<string>();
  for (const key of topLevelKeys(text)) {
    if (seen.has(key)) {
      throw new RangeError(`${where}: tensor "${key}" appears twice in the header`);
    }
    seen.add(key);
  }
  const entries: Entry[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === METADATA) {
      const ok = typeof info === "object" && info !== null && !Array.isArray(info) &&
        Object.values(info).every((v) => typeof v === "string");
      if (!ok) throw new TypeError(`${where}: "${METADATA}" must map strings to strings`);
      continue;
    }
    const t = `${where}: tensor "${name}"`;
    if (typeof info !== "object" || info === null || Array.isArray(info)) {
      throw new TypeError(`${t} is not an object with dtype, shape and data_offsets`);
    }
    const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
    if (!isDtype(dtype)) {
      throw new TypeError(
        `${t} has unknown or unsupported dtype ${JSON.stringify(dtype)} (supported: ${
          Object.keys(ITEM_SIZE).join(", ")
        })`,
      );
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new TypeError(
        `${t}: shape must be an array of non-negative integers of at most 2^53 - 1, got ${
          JSON.stringify(shape)
        }`,
      );
    }
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)
    ) {
      throw new TypeError(
        `${t}: data_offsets must be [begin, end] integers, got ${JSON.stringify(offsets)}`,
      );
    }
    const [begin, end] = offsets as number[];
    if (begin > end || end > dataLength) {
      throw new RangeError(
        `${t}: data_offsets [${begin}, ${end}] out of range (the data region has ${dataLength} bytes)`,
      );
    }
    const bytesNeeded = shape.reduce((a: number, b: number) => a * b, 1) * ITEM_SIZE[dtype];
    if (end - begin !== bytesNeeded) {
      throw new RangeError(
        `${t}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} ${
          shapeText(shape)
        } needs ${bytesNeeded}`,
      );
    }
    entries.push({ name, dtype, shape, begin, end });
  }
  // The format requires the tensors to tile the data region: no overlap, no hole, nothing after.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0, previous = "";
  for (const e of sorted) {
    if (e.begin < covered) {
      throw new RangeError(
        `${where}: tensor "${e.name}" (bytes ${e.begin}..${e.end}) overlaps tensor "${previous}"`,
      );
    }
    if (e.begin > covered) {
      throw new RangeError(
        `${where}: tensor "${e.name}" starts at byte ${e.begin}, leaving bytes ${covered}..${e.begin} ` +
          "of the data region unused (the format allows no holes)",
      );
    }
    covered = e.end;
    previous = e.name;
  }
  if (covered !== dataLength) {
    throw new RangeError(
      `${where}: ${dataLength - covered} bytes after the last tensor${
        previous ? ` ("${previous}")` : ""
      } belong to no tensor (the file is ${bytes.length} bytes)`,
    );
  }
  return { entries, dataStart };
}

function decode(bytes: Uint8Array, e: Entry, where: string): SafeTensor["data"] {
  const raw = bytes.subarray(e.begin, e.end);
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const count = raw.length / ITEM_SIZE[e.dtype];
  switch (e.dtype) {
    case "F16":
    case "BF16": {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) {
        const h = dv.getUint16(2 * i, true);
        out[i] = e.dtype === "F16"
          ? halfToNumber(h)
          : (f32Bits.setUint32(0, h << 16, true), f32Bits.getFloat32(0, true));
      }
      return out;
    }
    case "BOOL": {
      const out = raw.slice();
      const bad = out.findIndex((v) => v > 1);
      if (bad >= 0) {
        throw new RangeError(`${where}: tensor "${e.name}" (BOOL) holds ${out[bad]} at [${bad}]`);
      }
      return out;
    }
  }
  const Kind = {
    F64: Float64Array,
    F32: Float32Array,
    I64: BigInt64Array,
    I32: Int32Array,
    I16: Int16Array,
    I8: Int8Array,
    U64: BigUint64Array,
    U32: Uint32Array,
    U16: Uint16Array,
    U8: Uint8Array,
  }[e.dtype];
  if (LITTLE_ENDIAN) return new Kind(raw.slice().buffer); // the copy is aligned and owned
  const out = new Kind(count);
  const get = {
    F64: (i: number) => dv.getFloat64(8 * i, true),
    F32: (i: number) => dv.getFloat32(4 * i, true),
    I64: (i: number) => dv.getBigInt64(8 * i, true),
    I32: (i: number) => dv.getInt32(4 * i, true),
    I16: (i: number) => dv.getInt16(2 * i, true),
    I8: (i: number) => dv.getInt8(i),
    U64: (i: number) => dv.getBigUint64(8 * i, true),
    U32: (i: number) => dv.getUint32(4 * i, true),
    U16: (i: number) => dv.getUint16(2 * i, true),
    U8: (i: number) => dv.getUint8(i),
  }[e.dtype];
  for (let i = 0; i < count; i++) (out as unknown as unknown[])[i] = get(i);
  return out;
}

/** Whether this platform stores typed arrays little-endian (every platform Deno runs on today). */
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/**
 * Reads a safetensors file. Each tensor comes back with its dtype, shape and values (see
 * {@linkcode SafeTensor}); the result can be passed to `loadStateDict` with a `prefix`. The
 * `__metadata__` entry, if any, is checked and left out.
 *
 * @example
 * ```ts
 * import { readSafetensors, SwitchNorm2d, writeSafetensors } from "./mod.ts";
 * const sn = new SwitchNorm2d(4);
 * const bytes = writeSafetensors(sn.stateDict({ prefix: "bn1.", shapes: "pytorch" }));
 * const tensors = readSafetensors(bytes); // or: readSafetensors(await Deno.readFile("model.safetensors"))
 * console.log(tensors["bn1.weight"].shape); // [1, 4, 1, 1]
 * new SwitchNorm2d(4).loadStateDict(tensors, { prefix: "bn1." });
 * ```
 *
 * @param bytes The whole file.
 * @returns The tensors by name.
 * @throws {RangeError} on a truncated file, a header length beyond the file, offsets out of range,
 *   overlapping, leaving a hole or not matching dtype and shape, a duplicated name, or a BOOL
 *   other than 0/1. {@link TypeError} when the header is not a JSON object or a tensor's dtype,
 *   shape or offsets are malformed or unknown. Each error names the tensor.
 */
export function readSafetensors(bytes: Uint8Array): Record<string, SafeTensor> {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(
      `readSafetensors: expected the file's bytes as a Uint8Array, got ${
        bytes === null ? "null" : typeof bytes
      }`,
    );
  }
  const { entries, dataStart } = readHeader(bytes);
  const data = bytes.subarray(dataStart);
  const out: Record<string, SafeTensor> = {};
  for (const e of entries) {
    out[e.name] = { dtype: e.dtype, shape: e.shape, data: decode(data, e, "readSafetensors") };
  }
  return out;
}
