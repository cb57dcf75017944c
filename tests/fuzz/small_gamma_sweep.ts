/**
 * A sweep of the neighbours of attack fuzzer seed 2002 (helper-103, issue 10): rows of one spike
 * among values ~1e-31 under dy ~1e-30 (beside subnormal ones) or all ~1e-30, over a small or
 * subnormal gamma, the spike, N, C, row length, training and evaluation, eps 1e10 and 1e-5, the
 * seed's mixing logits and plain ones, layouts "nd" (SwitchNorm2d) and "1d". Each call is held to
 * the float64 reference by the attack fuzzer's checks; failures are printed, then the count. Not a
 * test (no assertion, not run by `deno task test`); NUMERICS.md says what it found.
 *
 *   deno run -A tests/fuzz/small_gamma_sweep.ts [webgpu|wasm] [all|2d|1d]
 *
 * @module
 */
import { check } from "./attack_fuzz.ts";
import { type LayerCall, runBoth } from "../_range_compare.ts";
import { seededRandom } from "../../examples/_data.ts";

interface SweepCase {
  readonly layer: "1d" | "2d";
  readonly gamma: number;
  readonly spike: number;
  readonly n: number;
  readonly c: number;
  readonly m: number;
  readonly training: boolean;
  readonly eps: number;
  readonly logits: "seed" | "plain";
  readonly dy: "mix" | "small";
  readonly seed: number;
}

/** Layout "nd": a spike at each row's start; layout "1d": the first sample is the spike. */
function sweepCall(o: SweepCase): LayerCall {
  const r = seededRandom(o.seed);
  const m = o.layer === "1d" ? 1 : o.m;
  const len = o.n * o.c * m;
  const first = (i: number) => o.layer === "1d" ? i < o.c : i % m === 0;
  const x = Float32Array.from(
    { length: len },
    (_, i) => first(i) ? o.spike : (r() * 2 - 1) * 1e-31,
  );
  const dy = Float32Array.from({ length: len }, () => {
    const v = r() * 2 - 1;
    return o.dy === "mix" ? v * (r() < 0.2 ? 1e-30 : 1e-41) : v * 1e-30;
  });
  const k = o.layer === "1d" ? 2 : 3;
  const seedLogits = o.logits === "seed";
  const mean = seedLogits ? [-175.36624145507812, 0, 50] : [1, 1, 1];
  const vars = seedLogits ? [0, 0, 1.3] : [1, 1, 1];
  return {
    layer: o.layer,
    shape: o.layer === "1d" ? [o.n, o.c] : [o.n, o.c, 1, m],
    options: { eps: o.eps, momentum: 0.9 },
    state: {
      weight: new Float32Array(o.c).fill(o.gamma),
      bias: new Float32Array(o.c),
      mean_weight: Float32Array.from(mean.slice(3 - k)),
      var_weight: Float32Array.from(vars.slice(3 - k)),
      running_mean: new Float32Array(o.c).fill(1e-4),
      running_var: new Float32Array(o.c).fill(1),
    },
    partial: true,
    training: o.training,
    x,
    dy,
    scales: true,
  };
}

if (import.meta.main) {
  const backend = (Deno.args[0] ?? "webgpu") as "webgpu" | "wasm";
  const which = Deno.args[1] ?? "all";
  let fails = 0, total = 0, seed = 1;
  for (const layer of ["2d", "1d"] as const) {
    for (const gamma of [-1e-40, 1e-45, 2e-39, -1e-30, 1e-20, 1]) {
      for (const spike of [1, 1e-10, 1e10, 1e-31]) {
        for (
          const [n, c, m] of [[2, 2, 5000], [1, 1, 5000], [4, 1, 257], [2, 3, 1000], [8, 2, 33]]
        ) {
          for (const training of [true, false]) {
            for (const eps of [1e10, 1e-5]) {
              for (const logits of ["seed", "plain"] as const) {
                for (const dy of ["mix", "small"] as const) {
                  if (layer === "1d" && m !== 5000 && m !== 257) continue;
                  if (which !== "all" && which !== layer) continue;
                  const o: SweepCase = {
                    layer,
                    gamma,
                    spike,
                    n: layer === "1d" ? n * 16 : n,
                    c,
                    m,
                    training,
                    eps,
                    logits,
                    dy,
                    seed: seed++,
                  };
                  const call = sweepCall(o);
                  total++;
                  let err: string | null;
                  try {
                    const res = await runBoth(call, backend);
                    err = check(call, res.got, res.want);
                  } catch (e) {
                    err = "THROW " + String(e).slice(0, 200);
                  }
                  if (err) {
                    fails++;
                    console.log("FAIL", JSON.stringify(o), err.slice(0, 260));
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  console.log("total", total, "fails", fails);
  Deno.exit(0);
}
