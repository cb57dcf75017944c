/**
 * Which inputs an attack fuzzer log's failures share: every seed FIRST..LAST of
 * tests/fuzz/attack_fuzz.ts is made again and put in a class by its input alone (layout, whether
 * every row is constant, whether some row is all zeros, and the largest |x| to a power of 10),
 * and each class is printed with its failing and total seed counts. A class failing at a high
 * rate, beside neighbours that never fail, is what a fix or a device trace should look at. Not a
 * test (a tool; NUMERICS.md says what it found on an H100's log).
 *
 *   deno run -A tests/fuzz/fuzz_log_classes.ts LOG FIRST LAST
 *
 * @module
 */
import { make } from "./attack_fuzz.ts";

/** An input's class: "2d const+zero 1e-20" and the like. */
export function inputClass(seed: number): string {
  const call = make(seed);
  const m = call.shape.slice(2).reduce((a, b) => a * b, 1);
  const x = call.x;
  let constant = true;
  let zeroRow = false;
  let largest = 0;
  for (let r = 0; r < x.length / m; r++) {
    const row = x.subarray(r * m, r * m + m);
    if (!row.every((v) => v === row[0])) constant = false;
    if (row.every((v) => v === 0)) zeroRow = true;
    for (const v of row) largest = Math.max(largest, Math.abs(v));
  }
  const rows = constant ? (zeroRow ? "const+zero" : "const") : "varying";
  const mag = largest === 0 ? "0" : `1e${Math.floor(Math.log10(largest))}`;
  return `${call.layer} ${rows} ${mag}`;
}

if (import.meta.main) {
  const [log, first, last] = [Deno.args[0], +Deno.args[1], +Deno.args[2]];
  const failing = new Set(
    [...Deno.readTextFileSync(log).matchAll(/FAIL\(\w\) (\d+)/g)].map((m) => +m[1]),
  );
  const table = new Map<string, [number, number]>();
  for (let seed = first; seed <= last; seed++) {
    const k = inputClass(seed);
    const t = table.get(k) ?? [0, 0];
    t[0] += failing.has(seed) ? 1 : 0;
    t[1]++;
    table.set(k, t);
  }
  console.log("class (layout, rows, largest |x|)     failing / seeds");
  for (const [k, [f, n]] of [...table].sort()) {
    if (f > 0 || Deno.env.get("ALL")) console.log(`${k.padEnd(36)} ${f} / ${n}`);
  }
  const failingClasses = new Set([...table].filter(([, t]) => t[0] > 0).map(([k]) => k));
  const passingInThem = [...table].filter(([k]) => !failingClasses.has(k))
    .reduce((a, [, t]) => a + t[1], 0);
  console.log(
    `${failing.size} failing seeds in ${failingClasses.size} classes; ` +
      `${passingInThem} seeds in classes with no failure (ALL=1 lists them)`,
  );
}
