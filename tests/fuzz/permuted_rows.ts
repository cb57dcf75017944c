/**
 * A known exception of issue 10 (README, Numerics), fixed on both backends: SwitchNorm2d rows
 * that are shuffles of one row (equal means and variances, far from 0), so that the IN, LN and BN
 * statistics coincide and `mean_weight`'s and `var_weight`'s gradients are ~0 in the float64
 * reference; float32-accurate row statistics leave those gradients a float32 rounding of their
 * terms' size, beyond the tolerance where dy is large. WASM takes such training calls' dot
 * products again from float64 IN statistics (wasm/src/nd_grad_means.rs `refine_dots`); WebGPU sums
 * the members of groups whose variances lie within 2^-20 of the group's again as exact pairs
 * (shaders/sn_group_refine.wgsl; tests/close_stats_training_test.ts). Prints the nd fuzzer's verdict
 * (tests/fuzz/nd_range_fuzz.ts, `compare`). Not a test: a repro to measure the exception, and to
 * check a fix against.
 *
 *   deno run --allow-read --allow-env tests/fuzz/permuted_rows.ts BACKEND [seed] [m] [c] [n]
 *     [offset] [dy scale] [usingBN 1|0]
 *
 * `deno run -A tests/fuzz/permuted_rows.ts wasm 6 300 8 3 0.5 1e3 1` gave `mean_weight`'s gradient
 * 4.8e-4 and `var_weight`'s 1.9e-4 where they are 0 (tolerance 1e-4) before `refine_dots`, and
 * with `webgpu` `var_weight`'s 2.4e-4; `ok` now on both.
 *
 * @module
 */
import { seededRandom } from "../../examples/_data.ts";
import { type Case, compare, runCase } from "./nd_range_fuzz.ts";

const [backend = "wasm", seed = "6", m = "300", c = "8", n = "3", offset = "0.5", dy = "1e3"] =
  Deno.args;
const usingBN = (Deno.args[7] ?? "1") === "1";
if (backend !== "wasm" && backend !== "webgpu") throw new Error(`unknown backend ${backend}`);
const r = seededRandom(Number(seed)), M = Number(m), C = Number(c), N = Number(n);
const base = Array.from({ length: M }, () => Math.fround(r() * 2 - 1 + Number(offset)));
const x: number[] = [], dys: number[] = [];
for (let row = 0; row < N * C; row++) {
  const p = base.slice();
  for (let k = M - 1; k > 0; k--) {
    const j = Math.floor(r() * (k + 1));
    [p[k], p[j]] = [p[j], p[k]];
  }
  x.push(...p);
  for (let k = 0; k < M; k++) dys.push(Math.fround((r() * 2 - 1) * Number(dy)));
}
const k: Case = {
  kind: "2d",
  shape: [N, C, 1, M],
  eps: 1e-5,
  usingBN,
  mode: "train",
  weight: new Array(C).fill(1),
  bias: new Array(C).fill(0),
  mw: usingBN ? [0.3, 0.5, -0.2] : [0.3, 0.5],
  vw: usingBN ? [0.1, 1.2, 0.4] : [0.1, 1.2],
  rm: new Array(C).fill(0),
  rv: new Array(C).fill(1),
  x,
  dy: dys,
  xEval: x,
};
const want = await runCase(k, "reference");
const got = await runCase(k, backend);
const real = compare(k, want, got).filter((line) => line.startsWith("REAL"));
console.log(real.length ? real.join("\n") : "ok");
