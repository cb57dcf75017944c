/**
 * A seeded sweep of forwards whose y lies near float32's largest value (issue 10): layouts "1d"
 * (SwitchNorm1d) and "nd" (SwitchNorm2d), evaluations on loaded running buffers and training
 * forwards, data of std 10^U(-44, 30) (with `--mixed`, each row, channel or sample its own std and
 * offset), a `running_mean` up to 10^70 of the data's std away, `running_var` 0 to 1e38, logits up
 * to +-90, eps 0 to 1e-5, beta 0 to +-1e38, and gamma set from the reference's xhat so that the
 * largest |y| is 0.3 to 2 times 3.4e38. y is held to the range tests' check (`Y_SCALED` per row of
 * |gamma xhat| + |beta|, as `assertRangeChecks` holds it); each failure is printed with its seed, then the
 * count. Not a test: NUMERICS.md ("y near float32's largest value") says what it found.
 *
 *   deno run -A tests/fuzz/y_near_largest_sweep.ts FIRST LAST [webgpu|wasm] [--mixed] [--train|--eval]
 *
 * @module
 */
import { affineSizes, assertChecked, type LayerCall, runBoth, runCall } from "../_range_compare.ts";
import { Y_SCALED } from "../_tolerances.ts";
import { seededRandom } from "../../examples/_data.ts";

const LARGEST = 3.4028234663852886e38;

/** The seed's call under gamma 1 and beta 0 (its y is then xhat), and how to set them. */
function sweepCall(
  seed: number,
  mixed: boolean,
  mode?: "train" | "eval",
): { call: (gamma: number, beta: number) => LayerCall; target: number; beta: number } {
  const r = seededRandom(seed);
  const u = (a: number, b: number) => a + (b - a) * r();
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
  const sign = () => r() < 0.5 ? -1 : 1;
  const layer = pick(["1d", "2d"] as const);
  const training = mode ? mode === "train" : r() < 0.3;
  const n = pick([2, 3, 5]), c = pick([1, 2, 4, 8]), m = layer === "1d" ? 1 : pick([1, 2, 4, 9]);
  const limit = (v: number) => Math.max(-3e38, Math.min(3e38, v));
  const std = 10 ** u(-44, 30), offset = pick([0, 0, 3, 10 ** u(0, 60)]) * std * sign();
  // Groups of x: layout "1d" a channel (j < c) or a sample (c + i); "nd" a row (n, c).
  const groups = layer === "1d" ? c + n : n * c;
  const own = () => mixed && r() < 0.5;
  const offsets = Array.from(
    { length: groups },
    () => own() ? pick([0, 10 ** u(-40, 38)]) * sign() : offset,
  );
  const stds = Array.from({ length: groups }, () => own() ? 10 ** u(-44, 30) : std);
  const x = Float32Array.from({ length: n * c * m }, (_, i) => {
    const g = layer === "1d" ? (own() ? i % c : c + Math.floor(i / c)) : Math.floor(i / m);
    return limit(u(-1, 1) * stds[g] + offsets[g]);
  });
  const runningMean = limit(sign() * pick([std * 10 ** u(0, 70), 10 ** u(-40, 38)]));
  const runningVar = limit(pick([0, std * std * 10 ** u(-10, 10), 10 ** u(-45, 38)]));
  const k = layer === "1d" ? 2 : 3;
  const logits = (spread: number) => Float32Array.from({ length: k }, () => u(-spread, spread));
  const meanLogits = logits(pick([2, 40, 90])), varLogits = logits(pick([2, 40, 90]));
  const eps = pick([0, 0, 1e-5, 2 ** -126, 1e-30]);
  const target = u(0.3, 2) * LARGEST;
  const beta = pick([0, 0.5, u(-1, 1) * 1e38, u(-1, 1) * 3e37]);
  const call = (gamma: number, beta: number): LayerCall => ({
    layer,
    shape: layer === "1d" ? [n, c] : [n, c, m, 1],
    options: { eps },
    state: {
      weight: new Float32Array(c).fill(gamma),
      bias: new Float32Array(c).fill(beta),
      mean_weight: meanLogits,
      var_weight: varLogits,
      running_mean: new Float32Array(c).fill(runningMean),
      running_var: new Float32Array(c).fill(runningVar),
    },
    partial: true,
    training,
    x,
    dispose: true,
  });
  return { call, target, beta };
}

if (import.meta.main) {
  const args = Deno.args.filter((a) => !a.startsWith("--"));
  const [first, last, backend = "webgpu"] = [Number(args[0]), Number(args[1]), args[2]];
  if (
    !Number.isInteger(first) || !Number.isInteger(last) || !["webgpu", "wasm"].includes(backend)
  ) {
    console.error("usage: FIRST LAST [webgpu|wasm] [--mixed] [--train|--eval]");
    Deno.exit(2);
  }
  const mixed = Deno.args.includes("--mixed");
  const mode = Deno.args.includes("--train")
    ? "train"
    : Deno.args.includes("--eval")
    ? "eval"
    : undefined;
  let fails = 0, near = 0;
  for (let seed = first; seed <= last; seed++) {
    const { call, target, beta } = sweepCall(seed, mixed, mode);
    // gamma from the reference's largest finite |xhat|.
    const probe = await runCall(call(1, 0), "reference");
    let top = 0;
    for (const v of probe.y) if (Number.isFinite(v)) top = Math.max(top, Math.abs(v));
    const gamma = Math.fround(target / top);
    if (!(top > 0) || !Number.isFinite(gamma) || gamma === 0) continue;
    const sized = call(gamma, Math.fround(beta));
    try {
      const { got, want } = await runBoth(sized, backend as "webgpu" | "wasm");
      if (want.y.some((v) => Math.abs(v) > 1e38 && Math.abs(v) <= LARGEST)) near++;
      // As assertRangeChecks holds y (a forward alone: no dx or gradients).
      const rows = sized.shape.slice(sized.layer === "1d" ? 1 : 2).reduce((a, b) => a * b, 1);
      const termScale = affineSizes(sized, want.y);
      assertChecked(got.y, want.y, { tol: Y_SCALED, rows, termScale }, "y");
    } catch (e) {
      fails++;
      console.log(
        "FAIL",
        seed,
        sized.layer,
        `[${sized.shape}]`,
        sized.training ? "train" : "eval",
        `gamma ${gamma}`,
        String(e).replaceAll("\n", " | ").slice(0, 300),
      );
    }
  }
  console.log("DONE", first, last, backend, "failures", fails, "with |y| in (1e38, 3.4e38]", near);
  Deno.exit(0);
}
