/**
 * readSafetensors and writeSafetensors: every dtype PyTorch writes against values PyTorch wrote
 * (tests/vectors/checkpoint/dtypes.*), rounding to F16/BF16 against numpy and PyTorch, and each
 * malformed file refused with an error naming the tensor at fault.
 */
import assert from "node:assert/strict";
import { readSafetensors, type SafeTensor, writeSafetensors } from "../mod.ts";

const DIR = new URL("./vectors/checkpoint/", import.meta.url);
const dtypesFile = await Deno.readFile(new URL("dtypes.safetensors", DIR));
const dtypes = JSON.parse(await Deno.readTextFile(new URL("dtypes.json", DIR))) as {
  tensors: Record<string, { dtype: string; shape: number[]; values: string[] }>;
  rounding: Record<"F16" | "BF16", { inputs: string[]; bits: number[] }>;
};

/** Python's repr of a float or an int, as the exact value the reader must give. */
function parse(text: string): number {
  return { nan: NaN, inf: Infinity, "-inf": -Infinity }[text] ?? Number(text);
}

function assertValues(name: string, t: SafeTensor, expected: string[]): void {
  assert.equal(t.data.length, expected.length, `${name}: length`);
  const bad: string[] = [];
  for (let i = 0; i < expected.length; i++) {
    const got = t.data[i];
    const ok = typeof got === "bigint"
      ? got === BigInt(expected[i])
      : Object.is(got, parse(expected[i]));
    if (!ok) bad.push(`[${i}] got ${String(got)}, expected ${expected[i]}`);
  }
  assert.equal(
    bad.length,
    0,
    `${name}: ${bad.length} values differ: ${bad.slice(0, 3).join("; ")}`,
  );
}

Deno.test("readSafetensors returns every dtype PyTorch writes with its exact values and shape", () => {
  const tensors = readSafetensors(dtypesFile);
  assert.deepEqual(Object.keys(tensors).sort(), Object.keys(dtypes.tensors).sort());
  for (const [name, want] of Object.entries(dtypes.tensors)) {
    const t = tensors[name];
    assert.equal(t.dtype, want.dtype, name);
    assert.deepEqual(t.shape, want.shape, name);
    assertValues(name, t, want.values);
  }
  // I64 beyond 2^53 comes back exactly (as BigInt), never rounded to the nearest double.
  assert.ok(tensors.i64.data instanceof BigInt64Array);
  assert.equal(tensors.i64.data[7], 2n ** 53n + 1n);
  assert.ok(tensors.bool.data instanceof Uint8Array);
});

Deno.test("writeSafetensors then readSafetensors gives back every dtype, value and shape", () => {
  const original = readSafetensors(dtypesFile);
  const again = readSafetensors(writeSafetensors(original, { format: "pt" }));
  for (const [name, want] of Object.entries(dtypes.tensors)) {
    assert.equal(again[name].dtype, want.dtype, name);
    assert.deepEqual(again[name].shape, want.shape, name);
    assertValues(name, again[name], want.values);
  }
});

Deno.test("writeSafetensors rounds to F16 as numpy and to BF16 as PyTorch do (nearest even)", () => {
  for (const dtype of ["F16", "BF16"] as const) {
    const { inputs, bits } = dtypes.rounding[dtype];
    const data = Float64Array.from(inputs, parse);
    const file = writeSafetensors({ t: { data, dtype } });
    const n = Number(new DataView(file.buffer).getBigUint64(0, true));
    const raw = new DataView(file.buffer, 8 + n);
    const got = Array.from(inputs, (_, i) => raw.getUint16(2 * i, true));
    const bad = got.flatMap((g, i) => g === bits[i] ? [] : [`${inputs[i]}: ${g} vs ${bits[i]}`]);
    assert.equal(bad.length, 0, `${dtype}: ${bad.length} differ: ${bad.slice(0, 3).join("; ")}`);
  }
});

Deno.test("writeSafetensors pads the header to 8 bytes with spaces, sorts names, aligns data", () => {
  const file = writeSafetensors({
    "b.x": Uint8Array.of(1, 2, 3),
    "a.y": { data: [1, 2], shape: [2, 1] },
    "c": { data: Float64Array.of(0.5), shape: [] },
  });
  const n = Number(new DataView(file.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0);
  const text = new TextDecoder().decode(file.subarray(8, 8 + n));
  assert.match(text, /^\{.*\} *$/);
  const header = JSON.parse(text);
  assert.deepEqual(Object.keys(header), ["a.y", "b.x", "c"]);
  assert.deepEqual(header.c, { dtype: "F64", shape: [], data_offsets: [0, 8] });
  assert.deepEqual(header["a.y"], { dtype: "F32", shape: [2, 1], data_offsets: [8, 16] });
  assert.deepEqual(header["b.x"], { dtype: "U8", shape: [3], data_offsets: [16, 19] });
  assert.equal(file.length, 8 + n + 19);
});

Deno.test("writeSafetensors refuses values that do not fit the dtype, naming the tensor", () => {
  const cases: [Parameters<typeof writeSafetensors>[0], RegExp][] = [
    [{ w: { data: [1.5], dtype: "I32" } }, /tensor "w"\[0\] is 1.5, not an integer/],
    [{ w: { data: [300], dtype: "U8" } }, /tensor "w"\[0\] is 300, not an integer in \[0, 255\]/],
    [{ w: { data: [2], dtype: "BOOL" } }, /tensor "w"\[0\] is 2/],
    [{ w: { data: [1e39] } }, /tensor "w"\[0\] is 1e\+39, beyond the range of F32/],
    [{ w: { data: [70000], dtype: "F16" } }, /beyond the range of F16/],
    [{ w: { data: [2 ** 64], dtype: "I64" } }, /out of range for I64/],
    [{ w: { data: [1, 2, 3], shape: [2, 2] } }, /tensor "w" has 3 values but shape \[2, 2\]/],
    [
      { w: { data: [], shape: [2 ** 60, 0] } },
      /tensor "w": shape must be an array of non-negative integers of at most 2\^53 - 1/,
    ],
    [{ w: { data: [1], dtype: "F8" as "F32" } }, /tensor "w": unknown dtype "F8"/],
    [{ w: "1,2" as unknown as number[] }, /tensor "w" must be an array/],
    [{ __metadata__: [1] }, /"__metadata__" is not a tensor name/],
  ];
  for (const [tensors, message] of cases) assert.throws(() => writeSafetensors(tensors), message);
  assert.throws(
    () => writeSafetensors({}, { n: 1 as unknown as string }),
    /metadata must map strings to strings/,
  );
});

// ---- malformed files -----------------------------------------------------------------------

/** A file from a header (object or raw text) and a data region of `dataBytes` bytes. */
function file(header: unknown, dataBytes: number, headerLength?: bigint): Uint8Array {
  const text = new TextEncoder().encode(
    typeof header === "string" ? header : JSON.stringify(header),
  );
  const out = new Uint8Array(8 + text.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(text.length), true);
  out.set(text, 8);
  return out;
}

const f32 = (begin: number, end: number, shape = [(end - begin) / 4]) => ({
  dtype: "F32",
  shape,
  data_offsets: [begin, end],
});

Deno.test("readSafetensors refuses each kind of malformed file with an error naming the tensor", () => {
  const good = file({ a: f32(0, 8), b: f32(8, 12) }, 12);
  assert.equal(Object.keys(readSafetensors(good)).length, 2); // the base case is valid
  const cases: [string, Uint8Array, RegExp][] = [
    ["shorter than the header length", new Uint8Array(5), /truncated file: 5 bytes/],
    [
      "header length beyond the file",
      file({}, 0, 100n),
      /truncated file: the header length is 100 bytes but only 2 follow/,
    ],
    [
      "data region cut short",
      good.subarray(0, good.length - 2),
      /tensor "b": data_offsets \[8, 12\] out of range \(the data region has 10 bytes\)/,
    ],
    ["header not JSON", file("{not json", 0), /the header is not JSON/],
    ["header not an object", file("[1, 2]", 0), /the header is not a JSON object/],
    ["header not UTF-8", file("{}", 0).map((b, i) => i === 8 ? 0xff : b), /not UTF-8/],
    [
      "unknown dtype",
      file({ a: { dtype: "F8_E4M3", shape: [4], data_offsets: [0, 4] } }, 4),
      /tensor "a" has unknown or unsupported dtype "F8_E4M3"/,
    ],
    [
      "offsets beyond the data",
      file({ a: f32(0, 64, [16]) }, 8),
      /tensor "a": data_offsets \[0, 64\] out of range/,
    ],
    [
      "begin after end",
      file({ a: f32(8, 4, [1]) }, 8),
      /tensor "a": data_offsets \[8, 4\] out of range/,
    ],
    [
      "offsets that do not match dtype and shape",
      file({ a: f32(0, 8, [3]) }, 8),
      /tensor "a": data_offsets \[0, 8\] hold 8 bytes but F32 \[3\] needs 12/,
    ],
    [
      "overlapping tensors",
      file({ a: f32(0, 8), b: f32(4, 12) }, 12),
      /tensor "b" \(bytes 4\.\.12\) overlaps tensor "a"/,
    ],
    [
      "a hole between tensors",
      file({ a: f32(0, 4), b: f32(8, 12) }, 12),
      /tensor "b" starts at byte 8, leaving bytes 4\.\.8 of the data region unused/,
    ],
    [
      "bytes after the last tensor",
      file({ a: f32(0, 4) }, 8),
      /4 bytes after the last tensor \("a"\)/,
    ],
    [
      "a duplicated name",
      file(
        '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
        4,
      ),
      /tensor "a" appears twice in the header/,
    ],
    [
      "a dimension beyond 2^53 (an integer, but not one a double counts exactly)",
      file({ a: { dtype: "F32", shape: [2 ** 60], data_offsets: [0, 4] } }, 4),
      /tensor "a": shape must be an array of non-negative integers of at most 2\^53 - 1/,
    ],
    [
      "a negative dimension",
      file({ a: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, 4),
      /tensor "a": shape must be an array of non-negative integers of at most 2\^53 - 1, got \[-1\]/,
    ],
    [
      "offsets that are not two integers",
      file({ a: { dtype: "F32", shape: [1], data_offsets: [0] } }, 4),
      /tensor "a": data_offsets must be \[begin, end\] integers, got \[0\]/,
    ],
    ["an entry that is not an object", file({ a: 3 }, 0), /tensor "a" is not an object/],
    [
      "metadata that is not strings",
      file({ __metadata__: { n: 1 } }, 0),
      /"__metadata__" must map strings to strings/,
    ],
    [
      "a BOOL that is not 0 or 1",
      file({ a: { dtype: "BOOL", shape: [2], data_offsets: [0, 2] } }, 2).map((b, i, all) =>
        i === all.length - 1 ? 2 : b
      ),
      /tensor "a" \(BOOL\) holds 2 at \[1\]/,
    ],
  ];
  for (const [what, bytes, message] of cases) {
    assert.throws(() => readSafetensors(bytes), message, what);
  }
  assert.throws(
    () => readSafetensors("abc" as unknown as Uint8Array),
    /expected the file's bytes as a Uint8Array, got string/,
  );
});

Deno.test("readSafetensors accepts an empty file, metadata and a header padded with spaces", () => {
  assert.deepEqual(readSafetensors(file("{}", 0)), {});
  const t = readSafetensors(
    file(`{"__metadata__": {"format": "pt"}, "a": ${JSON.stringify(f32(0, 4))}}   `, 4),
  );
  assert.deepEqual(Object.keys(t), ["a"]);
});
