/**
 * What a Deno test file needs to run in a browser page (tests/swiftshader_range_test.ts): a
 * `Deno` global whose `test` collects the tests instead of running them, and whose `env` is
 * empty (so `CI` is unset and every environment switch is at its default), and, as the default
 * export, the part of `node:assert/strict` that the test files use. The page maps `node:assert`
 * and `node:assert/strict` to this module's bundle with an import map: a browser has no node:
 * modules, and `deno bundle --platform browser` leaves them as imports.
 *
 * The assertions compare as `node:assert/strict` does where the test files rely on it (Object.is
 * for primitives, element by element for arrays and typed arrays, key by key for objects), so a
 * test that passes here passes for the same reason it passes under `deno test`.
 *
 * @module
 */

/** A test as Deno.test registers it, collected by {@linkcode installDenoShim}. */
export interface CollectedTest {
  readonly name: string;
  readonly fn: (t: unknown) => unknown;
  readonly ignore: boolean;
  /** The label of the file that registered it (the `file` argument of the collector). */
  readonly file: string;
}

/** Collects the tests registered while a file loads; `file` names the file now loading. */
export interface TestCollector {
  file: string;
  readonly tests: CollectedTest[];
}

type TestDefinition = { name: string; fn: (t: unknown) => unknown; ignore?: boolean };

/**
 * Installs `globalThis.Deno` with `test` (collecting into the returned collector), an empty
 * `env`, empty `args` and `build.os`. Deno.test's three forms are accepted: (name, fn),
 * (definition) and (name, options, fn).
 */
export function installDenoShim(): TestCollector {
  const collector: TestCollector = { file: "", tests: [] };
  const test = (a: string | TestDefinition, b?: unknown, c?: unknown) => {
    const def: TestDefinition = typeof a === "string"
      ? typeof b === "function"
        ? { name: a, fn: b as TestDefinition["fn"] }
        : { ...(b as Omit<TestDefinition, "name">), name: a, fn: c as TestDefinition["fn"] }
      : a;
    collector.tests.push({
      name: def.name,
      fn: def.fn,
      ignore: def.ignore ?? false,
      file: collector.file,
    });
  };
  const env = { get: (_: string) => undefined, has: (_: string) => false, toObject: () => ({}) };
  Object.defineProperty(globalThis, "Deno", {
    value: { test, env, args: [], build: { os: "linux" }, noColor: true },
    configurable: true,
  });
  return collector;
}

/** node:assert's AssertionError, as far as the test files see it: an Error with this name. */
export class AssertionError extends Error {
  override name = "AssertionError";
}

function fail(message: string | Error | undefined, fallback: string): never {
  if (message instanceof Error) throw message;
  throw new AssertionError(message ?? fallback);
}

function show(v: unknown): string {
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
    const a = Array.from(v as unknown as ArrayLike<number>);
    return `${v.constructor.name}(${a.length}) [${a.slice(0, 8).join(", ")}${
      a.length > 8 ? ", ..." : ""
    }]`;
  }
  try {
    const s = typeof v === "string" ? JSON.stringify(v) : String(JSON.stringify(v) ?? v);
    return s.length > 300 ? s.slice(0, 300) + "..." : s;
  } catch {
    return String(v);
  }
}

/** Strict deep equality as node:assert's deepStrictEqual has it, for the values tests compare. */
function deepStrictEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (ArrayBuffer.isView(a)) {
    const x = a as unknown as ArrayLike<unknown>, y = b as unknown as ArrayLike<unknown>;
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return false;
    return true;
  }
  if (a instanceof Map || a instanceof Set) {
    return deepStrictEqual([...a], [...(b as Iterable<unknown>)]);
  }
  if (a instanceof Date || a instanceof RegExp) return String(a) === String(b);
  const ka = Object.keys(a), kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) =>
    Object.hasOwn(b, k) &&
    deepStrictEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])
  );
}

type ErrorMatcher = RegExp | (new (...args: never[]) => Error) | Record<string, unknown>;

/** Whether `e` is what `expected` (as assert.throws takes it) asks for. */
function matches(e: unknown, expected: ErrorMatcher | string | undefined): boolean {
  if (expected === undefined || typeof expected === "string") return true;
  if (expected instanceof RegExp) return expected.test(String((e as Error)?.message ?? e));
  if (typeof expected === "function") return e instanceof expected;
  return Object.entries(expected).every(([k, v]) => {
    const got = (e as Record<string, unknown>)?.[k];
    return v instanceof RegExp ? v.test(String(got)) : deepStrictEqual(got, v);
  });
}

/** `node:assert/strict`: assert(value, message) and the methods the test files call. */
function assert(value: unknown, message?: string | Error): asserts value {
  if (!value) fail(message, `${show(value)} is not truthy`);
}
assert.ok = assert;
assert.equal = (a: unknown, b: unknown, message?: string | Error) => {
  if (!Object.is(a, b)) fail(message, `${show(a)} !== ${show(b)}`);
};
assert.strictEqual = assert.equal;
assert.notEqual = (a: unknown, b: unknown, message?: string | Error) => {
  if (Object.is(a, b)) fail(message, `${show(a)} === ${show(b)}`);
};
assert.notStrictEqual = assert.notEqual;
assert.deepEqual = (a: unknown, b: unknown, message?: string | Error) => {
  if (!deepStrictEqual(a, b)) fail(message, `${show(a)} is not deeply equal to ${show(b)}`);
};
assert.deepStrictEqual = assert.deepEqual;
assert.notDeepEqual = (a: unknown, b: unknown, message?: string | Error) => {
  if (deepStrictEqual(a, b)) fail(message, `${show(a)} is deeply equal to ${show(b)}`);
};
assert.notDeepStrictEqual = assert.notDeepEqual;
assert.match = (s: string, re: RegExp, message?: string | Error) => {
  if (!re.test(s)) fail(message, `${show(s)} does not match ${re}`);
};
assert.doesNotMatch = (s: string, re: RegExp, message?: string | Error) => {
  if (re.test(s)) fail(message, `${show(s)} matches ${re}`);
};
assert.throws = (fn: () => unknown, expected?: ErrorMatcher | string, message?: string) => {
  try {
    fn();
  } catch (e) {
    if (!matches(e, expected)) throw e;
    return;
  }
  fail(typeof expected === "string" ? expected : message, "Missing expected exception.");
};
assert.rejects = async (
  p: Promise<unknown> | (() => Promise<unknown>),
  expected?: ErrorMatcher | string,
  message?: string,
) => {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    if (!matches(e, expected)) throw e;
    return;
  }
  fail(typeof expected === "string" ? expected : message, "Missing expected rejection.");
};
assert.fail = (message?: string | Error): never => fail(message, "Failed");
assert.strict = assert;
assert.AssertionError = AssertionError;

export default assert;
export { assert };
