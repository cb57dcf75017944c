/**
 * A probe of attack fuzzer seed 245751's class (helper-192, session 46): SwitchNorm calls on data
 * of ~1e-38 to 1e-35 (constant rows, noisy or spread; in training optionally a sample of 1e19 to
 * 1e37 beside them) under running variances of 1e30 to 3e38 and mean / variance weights on one or
 * two terms, dy ~1e37, ~1, or 1e-37 to 1e-34 (low_products), layouts "1d", "2d" and "3d",
 * evaluations and training steps (with an evaluation after some), checked against the float64
 * reference as the attack fuzzer checks its calls. `deno run -A tests/fuzz/flushed_mean_probe.ts
 * FIRST LAST [webgpu|wasm]` prints FAIL lines and DONE.
 *
 * @module
 */
import { type LayerCall, runBoth } from "../_range_compare.ts";
import { check, make } from "./attack_fuzz.ts";
import { seededRandom } from "../../examples/_data.ts";

export function probe(seed: number): { call: LayerCall; desc: string } {
  const r = seededRandom(seed * 7919 + 13);
  const pick = <T>(a: readonly T[]) => a[Math.floor(r() * a.length)];
  const base = make(245751);
  const layer = pick(["2d", "2d", "3d", "1d"] as const);
  const training = r() < 0.5;
  const sign = pick([1, -1]);
  const xs = pick([1e-38, 3e-38, 1e-37, 3e-37, 1e-36, 1e-35]);
  let m = layer === "1d" ? 1 : pick([2, 4, 33, 257, 1000]);
  if (layer === "3d" && m % 2) m += 1;
  const n = layer === "1d" ? pick([2, 4, 8, 33]) : pick([2, 4, 8]);
  const c = pick([1, 3]);
  const shape = layer === "1d" ? [n, c] : layer === "2d" ? [n, c, 1, m] : [n, c, 2, 1, m / 2];
  const len = n * c * m;
  const xKind = pick(["constrow", "constrow", "noisy", "spread"]);
  const bigSample = training && r() < 0.6; // sample 0 huge: BN batch var ~1e38+
  const big = pick([1e19, 1e30, 1e37]);
  const x = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    const row = Math.floor(i / m);
    const smp = Math.floor(row / c);
    const cv = sign * ((row * 7919) % 13 - 6) / 6 * xs;
    let v = xKind === "constrow"
      ? cv
      : xKind === "noisy"
      ? cv * (1 + (r() - 0.5) * 1e-3)
      : (r() * 2 - 1) * xs + sign * xs * 0.3;
    if (layer === "1d") {
      v = xKind === "spread" ? (r() * 2 - 1) * xs : sign * (((i * 7919) % 13) - 6) / 6 * xs;
    }
    if (bigSample && smp === 0) v = (r() * 2 - 1) * big;
    x[i] = Math.fround(v);
  }
  const dyKind = pick(["seed", "small", "tiny", "unit"]);
  const dy = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    const row = Math.floor(i / m);
    const b = base.dy![(row % 24) * 257 + (i % m) % 257];
    dy[i] = dyKind === "seed"
      ? b
      : dyKind === "small"
      ? Math.fround(b * 1e-37 * pick([1, 10, 1000]))
      : dyKind === "tiny"
      ? Math.fround((r() * 2 - 1) * pick([1e-3, 1e-1, 1]))
      : Math.fround(r() * 2 - 1);
  }
  const k = layer === "1d" ? 2 : 3;
  const mwPat = pick(
    layer === "1d" ? ["ln", "bn", "eq"] : ["ln", "in", "bn", "eq", "lnbn", "inln"],
  );
  const vwPat = pick(layer === "1d" ? ["bn", "eq", "ln"] : ["bn", "lnbn", "eq", "seed"]);
  const lg = (p: string): number[] => {
    const Z = -1e30;
    const m3: Record<string, number[]> = {
      ln: [Z, 0, Z],
      in: [0, Z, Z],
      bn: [Z, Z, 0],
      eq: [0, 0, 0],
      lnbn: [Z, 0, 0],
      inln: [0, 0, Z],
      seed: [-87, 0, 0],
    };
    const m2: Record<string, number[]> = { ln: [0, Z], bn: [Z, 0], eq: [0, 0] };
    return k === 3 ? m3[p] : m2[p];
  };
  const rv = pick([1.5e38, 3e38, 1e38, 1e36, 1e30]);
  const rm = pick([0, 0, sign * xs * 0.5, -sign * xs]);
  const weight = Float32Array.from({ length: c }, () => pick([3e38, 1, 1e20, -1e30]));
  const bias = Float32Array.from({ length: c }, () => pick([0, 1.4e-45, 0, 1e-30]));
  const state = {
    weight,
    bias,
    mean_weight: Float32Array.from(lg(mwPat)),
    var_weight: Float32Array.from(lg(vwPat)),
    running_mean: Float32Array.from({ length: c }, () => rm),
    running_var: Float32Array.from({ length: c }, () => rv),
  };
  const eps = pick([1e-5, 0, 1e-30, 1e10]);
  const evalAfter = training && r() < 0.5;
  const call: LayerCall = {
    layer,
    shape,
    options: { eps, momentum: pick([0.1, 1, 0.9]) },
    state,
    partial: true,
    training,
    x,
    dy,
    scales: true,
    running: evalAfter,
    xEval: evalAfter ? x.slice() : undefined,
  };
  const desc = `${layer} [${shape}] ${training ? "train" : "eval"}${
    evalAfter ? "+eval" : ""
  } sign=${sign} xs=${xs} x=${xKind} big=${
    bigSample ? big : 0
  } dy=${dyKind} mw=${mwPat} vw=${vwPat} rv=${rv} rm=${rm} eps=${eps}`;
  return { call, desc };
}

if (import.meta.main) {
  const [a, b, be] = [+Deno.args[0], +Deno.args[1], Deno.args[2] ?? "webgpu"];
  for (let s = a; s <= b; s++) {
    const { call, desc } = probe(s);
    try {
      const res = await runBoth(call, be as "webgpu");
      const err = check(call, res.got, res.want);
      if (err) console.log("FAIL", s, desc, err.slice(0, 400));
    } catch (e) {
      console.log("THROW", s, desc, String(e).slice(0, 200));
    }
  }
  console.log("DONE", a, b, be);
  Deno.exit(0);
}
