/**
 * numpy-style closeness for float arrays: |actual - expected| <= atol + rtol * |expected|, with
 * NaN required where NaN is expected, and an infinity judged as the values float32 rounds to it
 * ({@linkcode float32Gap}).
 *
 * @module
 */

/**
 * The least |v| that float32 rounds to an infinity: halfway from its largest value (2^128 -
 * 2^104) to 2^128, where round-to-nearest-even goes up (the largest value's mantissa is odd).
 */
export const FLOAT32_OVERFLOW = 2 ** 128 - 2 ** 103;

/**
 * The least distance between the reals that float32 holds as `actual` and those it holds as
 * `expected` (either may also be a float64 value beyond float32's range, which stands for
 * itself): +-Infinity stands for every value of its sign from {@linkcode FLOAT32_OVERFLOW} on,
 * a finite value for itself. So +Infinity is 2^103 from float32's largest value, and
 * 2 * FLOAT32_OVERFLOW from -Infinity. NaN where either is NaN.
 *
 * Why: a result whose float64 value passes float32's range is an infinity in float32, and a
 * tolerance that spans that range (GRAD_SCALED's 1e-4 T for terms T beyond 3.4e42, 6.8e42 from
 * one infinity to the other) accepts an infinity as it accepts any finite value that far off.
 * Every such case the fuzzers found had terms beyond 4.7e54, where float64's own rounding of
 * them can pass float32's range (tests/close_judge_test.ts).
 */
export function float32Gap(actual: number, expected: number): number {
  if (actual === expected) return 0; // the same infinity too
  const low = (v: number) => v === Infinity ? FLOAT32_OVERFLOW : v;
  const high = (v: number) => v === -Infinity ? -FLOAT32_OVERFLOW : v;
  return Math.max(0, low(actual) - high(expected), low(expected) - high(actual));
}

/** |expected| for the relative tolerance: an infinity counts as FLOAT32_OVERFLOW. */
function relativeSize(expected: number): number {
  return Number.isFinite(expected) ? Math.abs(expected) : FLOAT32_OVERFLOW;
}

/** Whether `actual` passes for `expected` within `allowed` + rtol |expected| (float32Gap). */
function within(actual: number, expected: number, allowed: number, rtol: number): boolean {
  if (Number.isNaN(expected)) return Number.isNaN(actual);
  // The expected value itself passes whatever the tolerance: a term scale of NaN (0 times an
  // infinite term in tests/_term_scales.ts) failed WASM's dx of exactly the reference's
  // +-Infinity and 0 (attack fuzzer seeds 131652 and 253055).
  if (actual === expected) return true;
  return float32Gap(actual, expected) <= allowed + rtol * relativeSize(expected);
}

/** Absolute and relative tolerance of one compared quantity, with the reason for the numbers. */
export interface Tolerance {
  readonly atol: number;
  readonly rtol: number;
  /** An absolute allowance that {@linkcode assertCloseToScale} adds unscaled (default 0). */
  readonly floor?: number;
  readonly why: string;
}

/** Largest |actual - expected| / (atol + rtol |expected|) over the finite entries, for reports. */
export function worstRatio(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance,
): number {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i], a = actual[i];
    if (!Number.isFinite(e)) continue;
    worst = Math.max(worst, Math.abs(a - e) / (tol.atol + tol.rtol * Math.abs(e)));
  }
  return worst;
}

/** Throws an AssertionError-like Error naming the first offending index unless all entries are close. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance,
  what: string,
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${what}: length ${actual.length}, expected ${expected.length}`);
  }
  let bad = 0, first = -1;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i], a = actual[i];
    if (!within(a, e, tol.atol, tol.rtol)) {
      bad++;
      if (first < 0) first = i;
    }
  }
  if (bad > 0) {
    throw new Error(
      `${what}: ${bad} of ${expected.length} entries differ beyond atol ${tol.atol}, rtol ${tol.rtol}; ` +
        `first at [${first}]: got ${actual[first]}, expected ${expected[first]} ` +
        `(worst finite error ${worstRatio(actual, expected, tol).toPrecision(3)} x tolerance)`,
    );
  }
}

/** How many mismatches a failing comparison lists by index before it only counts them. */
const LISTED_MISMATCHES = 5;

/**
 * Throws unless `actual` and `expected` hold the same values, entry by entry (`Object.is`: NaN
 * equals NaN, 0 differs from -0), for results that must be bit-identical. The failure message
 * gives the count and the first few mismatching indices, so that it stays a few lines long for
 * arrays of any size (a full diff of a large array can take gigabytes).
 */
export function assertSameValues(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${what}: length ${actual.length}, expected ${expected.length}`);
  }
  let bad = 0;
  const listed: string[] = [];
  for (let i = 0; i < expected.length; i++) {
    if (Object.is(actual[i], expected[i])) continue;
    if (++bad <= LISTED_MISMATCHES) {
      listed.push(`[${i}]: got ${actual[i]}, expected ${expected[i]}`);
    }
  }
  if (bad > 0) {
    throw new Error(
      `${what}: ${bad} of ${expected.length} entries differ; first ${listed.join("; ")}`,
    );
  }
}

/**
 * {@linkcode assertSameValues} for each array of two records of named arrays (state dicts,
 * gradients), which must have the same names; an undefined entry must be undefined in both.
 */
export function assertSameRecords<K extends string>(
  actual: Readonly<Partial<Record<K, ArrayLike<number>>>>,
  expected: Readonly<Partial<Record<K, ArrayLike<number>>>>,
  what: string,
): void {
  const names = (r: object) => Object.keys(r).sort().join(", ");
  if (names(actual) !== names(expected)) {
    throw new Error(`${what}: names ${names(actual)}, expected ${names(expected)}`);
  }
  for (const name of Object.keys(expected) as K[]) {
    const a = actual[name], e = expected[name];
    if (a === undefined || e === undefined) {
      if (a !== e) throw new Error(`${what}: ${name} is ${a === undefined ? "" : "not "}undefined`);
      continue;
    }
    assertSameValues(a, e, `${what}: ${name}`);
  }
}

/**
 * Largest |actual - expected| / (atol * scale + rtol |expected|) over the finite expected entries,
 * for reports ({@linkcode assertCloseToScale}).
 */
export function worstScaledRatio(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  scale: ArrayLike<number>,
  tol: Tolerance,
): number {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i];
    if (!Number.isFinite(e)) continue;
    worst = Math.max(
      worst,
      Math.abs(actual[i] - e) / (tol.atol * scale[i] + tol.rtol * Math.abs(e) + (tol.floor ?? 0)),
    );
  }
  return worst;
}

/**
 * {@linkcode assertClose} with the absolute tolerance scaled per entry:
 * |actual - expected| <= atol * scale + rtol * |expected| (+ `floor`), where `scale` is the size of the float32
 * terms the entry is a sum of (tests/_term_scales.ts); for O(1) data the scale is O(1) and this is
 * assertClose's test. NaN must match NaN, and an infinity is judged by {@linkcode float32Gap}: it
 * passes for a finite value (or the other infinity) only where the scaled tolerance spans the gap
 * to float32's range, terms beyond 3.4e42 under GRAD_SCALED. One pass, no allocation: the failure
 * message gives the count and the first few mismatches with their scales.
 */
export function assertCloseToScale(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  scale: ArrayLike<number>,
  tol: Tolerance,
  what: string,
): void {
  if (actual.length !== expected.length || scale.length !== expected.length) {
    throw new Error(
      `${what}: length ${actual.length}, expected ${expected.length}, scales ${scale.length}`,
    );
  }
  let bad = 0;
  const listed: string[] = [];
  const floor = tol.floor ?? 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i], a = actual[i];
    if (!within(a, e, tol.atol * scale[i] + floor, tol.rtol) && ++bad <= LISTED_MISMATCHES) {
      listed.push(`[${i}]: got ${a}, expected ${e}, term scale ${scale[i].toPrecision(3)}`);
    }
  }
  if (bad > 0) {
    throw new Error(
      `${what}: ${bad} of ${expected.length} entries differ beyond atol ${tol.atol} x term scale + ` +
        `rtol ${tol.rtol}${floor ? ` + ${floor}` : ""}; first ${
          listed.join("; ")
        } (worst finite error ` +
        `${worstScaledRatio(actual, expected, scale, tol).toPrecision(3)} x tolerance)`,
    );
  }
}
