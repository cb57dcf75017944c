/**
 * numpy-style closeness for float arrays: |actual - expected| <= atol + rtol * |expected|, with
 * non-finite values required to match in kind (NaN where NaN, the same infinity where infinite).
 *
 * @module
 */

/** Absolute and relative tolerance of one compared quantity, with the reason for the numbers. */
export interface Tolerance {
  readonly atol: number;
  readonly rtol: number;
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
    const ok = Number.isNaN(e)
      ? Number.isNaN(a)
      : !Number.isFinite(e)
      ? a === e
      : Math.abs(a - e) <= tol.atol + tol.rtol * Math.abs(e);
    if (!ok) {
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
