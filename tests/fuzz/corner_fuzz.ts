/**
 * A seeded fuzzer of evaluations and training steps at float32's corners (attack helper-70,
 * issue 10): running_mean +-3e38 or 1e30 over running_var 1.4e-45 .. 1e30, mixing logits of
 * ln 2^-60 .. ln 2^-200 beside 0 and 1.3, gamma down to subnormal (1e-45, 2e-39), dy subnormal,
 * mixed, ~1e37 or +-2e38 beside 1e-38, x from 1e-37 to 1e10; SwitchNorm2d and SwitchNorm1d. Each
 * case is held to the float64 reference with the range tests' checks (tests/_range_compare.ts:
 * y to Y per row, dx and the gradients to GRAD_SCALED of their term scales), and a failure is
 * printed with its seed. Not a test (no assertion, not run by `deno task test`): a tool to find
 * members of a fault class. NUMERICS.md says what it finds.
 *
 *   deno run -A tests/fuzz/corner_fuzz.ts FIRST LAST [webgpu|wasm]
 *
 * @module
 */
import { assertRangeChecks, type LayerCall, runBoth } from "../_range_compare.ts";
import { seededRandom } from "../../examples/_data.ts";
/**
 * Element i's dy of kind `kind` (rows of m floats, samples of c rows), drawing from r (one value,
 * and one more for "mix"): subnormal, mixed 1e-30 / 1e-41, ~1, ~1e37, +-2e38 on each sample's
 * first row beside 1e-38 ("tinyhuge"), 0, `dq` everywhere ("equal") or by row of alternating sign
 * ("equalrow"). Shared with tests/fuzz/attack_fuzz.ts.
 */
export function cornerDy(
  kind: string,
  r: () => number,
  i: number,
  m: number,
  c: number,
  dq = 0,
): number {
  const v = r() * 2 - 1;
  return kind === "sub"
    ? v * 1e-40
    : kind === "mix"
    ? v * (r() < 0.2 ? 1e-30 : 1e-41)
    : kind === "normal"
    ? v
    : kind === "huge"
    ? v * 1e37
    : kind === "tinyhuge"
    ? (i % (m * c) < m ? Math.sign(v) * 2e38 : v * 1e-38)
    : kind === "zero"
    ? 0
    : kind === "equal"
    ? dq
    : (Math.floor(i / m) % 2 ? dq : -dq);
}

export function make(seed: number): LayerCall {
  const r = seededRandom(seed * 7919 + 13);
  const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)];
  const nd = r() < 0.5;
  const n = pick([2, 4, 8]), c = pick([1, 2, 3]), m = nd ? pick([4, 16, 33]) : 1;
  const len = n * c * m;
  const xs = pick([1e-37, 1e-30, 1e-20, 1, 1e10]);
  const x = Float32Array.from({ length: len }, () => (r() * 2 - 1) * xs * (r() < 0.1 ? 100 : 1));
  const dyKind = pick(["sub", "mix", "normal", "huge", "tinyhuge"]);
  const dy = Float32Array.from({ length: len }, (_, i) => cornerDy(dyKind, r, i, m, c));
  const k = nd ? 3 : 2;
  const lw = () => pick([0, 0, -1e30, Math.log(2 ** -pick([60, 100, 120, 140, 200])), 1.3]);
  const mean_weight = Float32Array.from({ length: k }, lw),
    var_weight = Float32Array.from({ length: k }, lw);
  if (mean_weight.every((v) => v === -1e30)) mean_weight[0] = 0;
  if (var_weight.every((v) => v === -1e30)) var_weight[0] = 0;
  const running_mean = Float32Array.from(
    { length: c },
    () => pick([3e38, -3e38, 1e30, 0.5, -2e20]),
  );
  const running_var = Float32Array.from({ length: c }, () => pick([1, 1.4e-45, 1e-30, 1e30]));
  const weight = Float32Array.from(
    { length: c },
    () => pick([1, -1e-40, 1e-45, 1e-20, 2e-39, 1e-10]),
  );
  return {
    layer: nd ? "2d" : "1d",
    shape: nd ? [n, c, 1, m] : [n, c],
    options: { eps: pick([0, 1e-5]) },
    state: { weight, mean_weight, var_weight, running_mean, running_var },
    partial: true,
    training: r() < 0.5,
    x,
    dy,
    scales: true,
  };
}
/**
 * Runs the calls of `seeds` on `backend` and the reference with the range tests' checks, and
 * throws one error naming every seed that fails (the tests of fixed fuzzer seeds).
 */
export async function assertSeedsMatch(
  seeds: readonly number[],
  backend: "wasm" | "webgpu",
): Promise<void> {
  const failures: string[] = [];
  for (const seed of seeds) {
    const call = make(seed);
    const { want, got } = await runBoth(call, backend);
    try {
      assertRangeChecks(call, got, want, `seed ${seed}`);
    } catch (e) {
      failures.push(String(e).slice(0, 400));
    }
  }
  if (failures.length > 0) throw new Error(failures.join("\n"));
}

if (import.meta.main) {
  const [a, b, be] = [+Deno.args[0], +Deno.args[1], Deno.args[2] ?? "webgpu"];
  for (let s = a; s <= b; s++) {
    const call = make(s);
    let res;
    try {
      res = await runBoth(call, be as "webgpu");
    } catch (e) {
      console.log("THROW", s, String(e).slice(0, 200));
      continue;
    }
    const { want, got } = res;
    try {
      assertRangeChecks(call, got, want);
    } catch (e) {
      console.log("FAIL", s, call.layer, call.training ? "train" : "eval", String(e).slice(0, 400));
    }
  }
  Deno.exit(0);
}
