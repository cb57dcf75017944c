/**
 * A seeded fuzzer of SwitchNorm2d/3d (layout "nd") on WebGPU against the float64 reference
 * backend, over the edges of float32 (issue 10): shapes N 1..4, C 1..6, rows of 2..300 floats,
 * per-row scales 10^U(-30, 30) and offsets far from the data, eps 0 or 1e-5, gamma and beta up to
 * 1e33, dy scales up to 1e38, usingBN on and off, training forward + backward then an evaluation
 * forward + backward on the running buffers, or an evaluation on loaded far running buffers.
 *
 *   deno run -A tests/fuzz/nd_range_fuzz.ts FIRST_SEED LAST_SEED
 *   FUZZ_BACKEND=wasm deno run -A tests/fuzz/nd_range_fuzz.ts FIRST_SEED LAST_SEED
 *   FUZZ_ZERO_WEIGHTS=1 deno run -A tests/fuzz/nd_range_fuzz.ts FIRST_SEED LAST_SEED
 *   FUZZ_INJECT=1 deno run -A tests/fuzz/nd_range_fuzz.ts FIRST_SEED LAST_SEED
 *
 * prints each seed whose results differ from the reference beyond the tolerances of
 * tests/_tolerances.ts (y and dx with atol times their channel's scale) AND beyond a
 * scale-relative bound of the terms each result sums (dx: 1e-4 times the absolute terms of SN_SPEC's
 * chain rule; dweight, the logit gradients: 1e-4 times their summed absolute terms), as REAL,
 * an infinity taken as the values float32 rounds to it (float32Gap, as the range tests' judge);
 * differences within that bound (float32 terms that cancel by orders of magnitude) as cancel;
 * NaN where the reference's y is an infinity of float64 rounding, or an infinity where it is NaN,
 * on a row whose y is 0 / 0 in exact arithmetic (zeroOverZeroRows) as undefined.
 * Not a test (no assertion, not run by `deno task test`): a tool to find members of a fault class.
 *
 * @module
 */
import { SwitchNorm2d, SwitchNorm3d } from "../../mod.ts";
import { seededRandom } from "../../examples/_data.ts";
import { webgpuLogits } from "../_range_compare.ts";
import { FLOAT32_OVERFLOW, float32Gap } from "../_close.ts";
import { softmax } from "../_softmax.ts";

type B = "reference" | "webgpu" | "wasm";
const f32 = (v: number) => Math.fround(v);
export interface Case {
  kind: "2d" | "3d";
  shape: number[];
  eps: number;
  usingBN: boolean;
  mode: "train" | "load";
  weight: number[];
  bias: number[];
  mw: number[];
  vw: number[];
  rm: number[];
  rv: number[];
  x: number[];
  dy: number[];
  xEval: number[];
}
function clampF(v: number) {
  const m = 3.4e38;
  return f32(Math.max(-m, Math.min(m, v)));
}
export function makeCase(seed: number): Case {
  const r = seededRandom(seed);
  const U = (a: number, b: number) => a + (b - a) * r();
  const kind = r() < 0.5 ? "2d" : "3d";
  const n = 1 + Math.floor(r() * 4), c = 1 + Math.floor(r() * 6), m = 2 + Math.floor(r() * 299);
  const shape = kind === "2d" ? [n, c, 1, m] : [n, c, 1, 1, m];
  const usingBN = r() < 0.7, eps = r() < 0.5 ? 0 : 1e-5, k = usingBN ? 3 : 2;
  const mode = r() < 0.5 ? "train" : "load";
  const big = () => (r() < 0.5 ? -1 : 1) * 10 ** U(-3, 33);
  const weight = Array.from({ length: c }, () => f32(r() < 0.5 ? 0.5 + r() : big()));
  const bias = Array.from({ length: c }, () => f32(r() < 0.6 ? r() - 0.5 : big()));
  const mw = Array.from({ length: k }, () => f32((r() * 2 - 1) * (r() < 0.2 ? 40 : 3)));
  const vw = Array.from({ length: k }, () => f32((r() * 2 - 1) * (r() < 0.2 ? 40 : 3)));
  const rm = Array.from({ length: c }, () => clampF((r() < 0.5 ? -1 : 1) * 10 ** U(-5, 38.5)));
  const rv = Array.from({ length: c }, () => clampF(10 ** U(-45, 38.5)));
  const len = shape.reduce((a, b) => a * b);
  const x: number[] = [], dy: number[] = [], xEval: number[] = [];
  const rows = n * c;
  const rs = Array.from({ length: rows }, () => ({
    s: 10 ** U(-30, 30),
    off: r() < 0.5 ? 0 : (r() < 0.5 ? -1 : 1) * 10 ** U(0, 12),
    d: 10 ** U(-10, 38),
    dsign: r() < 0.2,
  }));
  for (let i = 0; i < len; i++) {
    const p = rs[Math.floor(i / m)];
    x.push(clampF((r() * 2 - 1 + p.off) * p.s));
    dy.push(clampF((p.dsign ? 1 + 0.3 * r() : r() * 2 - 1) * p.d));
    xEval.push(clampF((r() * 2 - 1 + p.off * 0.5) * p.s));
  }
  return { kind, shape, eps, usingBN, mode, weight, bias, mw, vw, rm, rv, x, dy, xEval };
}
export async function runCase(k: Case, backend: B) {
  const c = k.shape[1];
  const L = k.kind === "2d" ? SwitchNorm2d : SwitchNorm3d;
  const layer = new L(c, { backend, eps: k.eps, usingBN: k.usingBN });
  const sd: Record<string, Float32Array> = {
    weight: new Float32Array(k.weight),
    bias: new Float32Array(k.bias),
    mean_weight: new Float32Array(k.mw),
    var_weight: new Float32Array(k.vw),
  };
  if (k.usingBN && k.mode === "load") {
    sd.running_mean = new Float32Array(k.rm);
    sd.running_var = new Float32Array(k.rv);
  }
  layer.loadStateDict(sd, { strict: false });
  const x = new Float32Array(k.x), dy = new Float32Array(k.dy), xEval = new Float32Array(k.xEval);
  const out: Record<string, Float32Array> = {};
  const grab = (p: string) => {
    const g = layer.grads;
    for (const q of ["weight", "bias", "mean_weight", "var_weight"] as const) {
      out[`${p}d${q}`] = g[q].slice();
    }
  };
  if (k.mode === "train") {
    layer.train(true);
    out.y = await layer.forward(x, k.shape, { keepForBackward: true });
    out.dx = await layer.backward(dy);
    grab("");
    if (k.usingBN) {
      await layer.sync();
      out.rm = layer.running_mean.slice();
      out.rv = layer.running_var.slice();
    }
    layer.zeroGrad();
  }
  layer.train(false);
  out.yE = await layer.forward(xEval, k.shape, { keepForBackward: true });
  out.dxE = await layer.backward(dy);
  grab("E");
  return out;
}
// per-row scale tolerances for y and dx: 1e-4 * (|gamma| / std) * max|dy| (dx), channel scale (y)
/** float64 per-row mixed statistics, for the scale-relative bounds. */
function rowBounds(k: Case, mode: "train" | "eval", x: number[], rm: number[], rv: number[]) {
  const [n, c] = k.shape, m = k.shape.slice(2).reduce((a, b) => a * b);
  // The reference's float64 weights, not their float32 rounding: a weight below float32's range
  // (~1e-78) rounded to 0 left a row's mixed variance 0 and its bound NaN, which counted the
  // WASM backend's right answers as failures (FUZZ_ZERO_WEIGHTS=1 seeds 305 and 581).
  const w = softmax(k.mw), v = softmax(k.vw);
  const mi: number[] = [], vi: number[] = [];
  for (let r = 0; r < n * c; r++) {
    let s = 0;
    for (let i = 0; i < m; i++) s += x[r * m + i];
    const mu = s / m;
    let q = 0;
    for (let i = 0; i < m; i++) q += (x[r * m + i] - mu) ** 2;
    mi.push(mu);
    vi.push(q / (m - 1));
  }
  const mln: number[] = [], vln: number[] = [], mbn: number[] = [], vbn: number[] = [];
  for (let a = 0; a < n; a++) {
    let s = 0, q = 0;
    for (let b = 0; b < c; b++) s += mi[a * c + b];
    s /= c;
    for (let b = 0; b < c; b++) q += vi[a * c + b] + (mi[a * c + b] - s) ** 2;
    mln.push(s);
    vln.push(q / c);
  }
  for (let b = 0; b < c; b++) {
    if (mode === "eval") {
      mbn.push(rm[b]);
      vbn.push(rv[b]);
      continue;
    }
    let s = 0, q = 0;
    for (let a = 0; a < n; a++) s += mi[a * c + b];
    s /= n;
    for (let a = 0; a < n; a++) q += vi[a * c + b] + (mi[a * c + b] - s) ** 2;
    mbn.push(s);
    vbn.push(q / n);
  }
  const rows = [];
  for (let r = 0; r < n * c; r++) {
    const a = Math.floor(r / c), b = r % c;
    const mus = [mi[r], mln[a], mbn[b]], vars = [vi[r], vln[a], vbn[b]];
    let mu = 0, va = 0;
    for (let j = 0; j < w.length; j++) {
      mu += w[j] * mus[j];
      va += v[j] * vars[j];
    }
    const s = 1 / Math.sqrt(va + k.eps);
    // the largest |mean| the mixed mean's float64 sums add (the LN and BN means average IN means
    // that may cancel: rows of 3.4e38 and -3.4e38 beside one of -6.5e22), for their rounding;
    // only the means the mix takes (without BN, a NaN in another sample of the channel made every
    // row's bound NaN: FUZZ_INJECT=1 seeds 349 and 448 counted right dx as failures)
    let muTerms = Math.max(...mus.slice(0, w.length).map(Math.abs));
    for (let j = 0; j < c; j++) muTerms = Math.max(muTerms, Math.abs(mi[a * c + j]));
    if (mode === "train" && w.length > 2) {
      for (let i = 0; i < n; i++) muTerms = Math.max(muTerms, Math.abs(mi[i * c + b]));
    }
    rows.push({ s, mu, mus, vars, va, muTerms });
  }
  return { rows, w, v, m };
}
export function scaledTol(
  k: Case,
  want: Record<string, Float32Array>,
  key: string,
): (i: number) => number {
  const ev = key.startsWith("E") || key.endsWith("E");
  const x = ev ? k.xEval : k.x;
  const rm = k.mode === "load" ? k.rm : want.rm ? Array.from(want.rm) : k.rm;
  const rv = k.mode === "load" ? k.rv : want.rv ? Array.from(want.rv) : k.rv;
  const { rows, w, v, m } = rowBounds(k, ev ? "eval" : "train", x, rm, rv);
  const c = k.shape[1];
  const dyMax = rows.map((_, r) => {
    let q = 0;
    for (let i = 0; i < m; i++) q = Math.max(q, Math.abs(k.dy[r * m + i]));
    return q;
  });
  const dyAbs = rows.map((_, r) => {
    let q = 0;
    for (let i = 0; i < m; i++) q += Math.abs(k.dy[r * m + i]);
    return q;
  });
  const dyx = rows.map((R, r) => {
    let q = 0;
    for (let i = 0; i < m; i++) q += Math.abs(k.dy[r * m + i] * (x[r * m + i] - R.mu));
    // plus the reference's own rounding of mu (see y below), in units of the 1e-4 bound
    return q + dyAbs[r] * 4e-12 * R.muTerms;
  });
  if (key.endsWith("dbias")) {
    // float32 sums of dy: ~1e-7 of sum |dy| over the channel
    return (ch) => {
      let q = 0;
      rows.forEach((_, r) => {
        if (r % c === ch) q += dyAbs[r];
      });
      return 1e-4 * q;
    };
  }
  if (key === "rm") {
    // float32 sums of a channel's rows: error ~1e-7 of their spread, whatever the mean; plus the
    // reference's own float64 rounding of the BN mean it sums (2^-52 of its largest |mu_in|: rows
    // of 3.4e38 and -3.4e38 cancel, and its sum of the others ~1e23 is off by 4e21)
    return (ch) => {
      let q = 0, mu = 0;
      rows.forEach((R, r) => {
        if (r % c === ch) {
          q = Math.max(q, Math.sqrt(R.vars[0]));
          mu = Math.max(mu, Math.abs(R.mus[0]));
        }
      });
      return 1e-5 * q + 4e-16 * mu;
    };
  }
  if (key === "y" || key === "yE") {
    // float64's own rounding of the mixed mean (the reference's mu is w_k mu_k summed in
    // float64: 2^-52 of the largest |mu_k| it mixes), through gamma / std.
    return (i) => {
      const r = Math.floor(i / m), R = rows[r];
      // and float32 statistics' error on means whose terms spread far wider (Y's 2e-5 of the
      // widest std it mixes).
      const spread = Math.max(...R.vars.map((v) => Math.sqrt(Math.abs(v))));
      return Math.abs(k.weight[r % c]) * R.s *
        (4e-16 * R.muTerms + 2e-5 * spread);
    };
  }
  if (key === "dx" || key === "dxE") {
    // magnitudes of every term dx adds (SN_SPEC's backward with absolute values)
    const n = k.shape[0];
    const gmA = rows.map((R, r) => Math.abs(k.weight[r % c]) * R.s * dyAbs[r]);
    const gvA = rows.map((R, r) => 0.5 * Math.abs(k.weight[r % c]) * R.s ** 3 * dyx[r]);
    const GmL = new Array(n).fill(0),
      GvL = new Array(n).fill(0),
      GmB = new Array(c).fill(0),
      GvB = new Array(c).fill(0);
    rows.forEach((_, r) => {
      const a = Math.floor(r / c), b = r % c;
      GmL[a] += gmA[r];
      GvL[a] += gvA[r];
      GmB[b] += gmA[r];
      GvB[b] += gvA[r];
    });
    const bnx = !ev && k.usingBN;
    const T = rows.map((R, r) => {
      const a = Math.floor(r / c), b = r % c;
      let xm = 0;
      for (let i = 0; i < m; i++) xm = Math.max(xm, Math.abs(x[r * m + i] - R.mus[0]));
      const gvar = v[0] * gvA[r] + v[1] * GvL[a] / c + (bnx ? v[2] * GvB[b] / n : 0);
      const gmu = w[0] * gmA[r] + w[1] * GmL[a] / c +
        v[1] * 2 / c * Math.abs(R.mus[0] - R.mus[1]) * GvL[a] +
        (bnx ? w[2] * GmB[b] / n + v[2] * 2 / n * Math.abs(R.mus[0] - R.mus[2]) * GvB[b] : 0);
      return Math.abs(k.weight[b]) * R.s * dyMax[r] + gmu / m + gvar * 2 * xm / (m - 1);
    });
    return (i) => 1e-4 * T[Math.floor(i / m)];
  }
  if (key.endsWith("dweight")) {
    return (ch) => {
      let q = 0;
      rows.forEach((R, r) => {
        if (r % c === ch) q += R.s * dyx[r];
      });
      return 1e-4 * q;
    };
  }
  if (key.endsWith("dmean_weight") || key.endsWith("dvar_weight")) {
    let qa = 0, qb = 0;
    rows.forEach((R, r) => {
      const g = Math.abs(k.weight[r % c]);
      // the centred terms, and the reference's own float64 rounding of the uncentred dots it
      // sums (a_k = sum gm mu_k: 2^-52 of them, in units of the 1e-4 bound)
      qa += g * R.s * dyAbs[r] *
        (Math.max(...R.mus.slice(0, w.length).map((u) => Math.abs(u - R.mu))) +
          4e-12 * R.muTerms);
      qb += 0.5 * g * R.s ** 3 * dyx[r] *
        (Math.max(...R.vars.slice(0, v.length).map((u) => Math.abs(u - R.va))) +
          4e-12 * Math.max(...R.vars.map(Math.abs)));
    });
    return () => 1e-4 * (key.endsWith("dmean_weight") ? qa : qb);
  }
  return () => 0;
}
/**
 * Rows whose y is 0 / 0 in exact arithmetic: the mix's variance + eps is 0 and every element
 * equals every mean the mix takes (a constant row in every term of variance weight, in training
 * or without BN). The float64 reference forms mu from rounded mixing weights, so its y there is
 * NaN or +-Infinity by that rounding (README, Numerics), and NaN where it works about a centre
 * (every x within 2^-10 of its mean: x - K is then 0 in every term); WASM forms mu as the
 * reference did before that (+-Infinity: seeds 159, 210), WebGPU gives NaN. Such results are
 * counted apart (undefined), not as failures.
 */
function zeroOverZeroRows(k: Case, want: Record<string, Float32Array>, ev: boolean): boolean[] {
  const x = ev ? k.xEval : k.x;
  const rm = k.mode === "load" ? k.rm : want.rm ? Array.from(want.rm) : k.rm;
  const rv = k.mode === "load" ? k.rv : want.rv ? Array.from(want.rv) : k.rv;
  const { rows, w, m } = rowBounds(k, ev ? "eval" : "train", x, rm, rv);
  return rows.map((R, r) =>
    R.va + k.eps === 0 &&
    x.slice(r * m, (r + 1) * m).every((v) =>
      R.mus.slice(0, w.length).every((mu) => Math.fround(v) === mu)
    )
  );
}
export function compare(
  k: Case,
  want: Record<string, Float32Array>,
  got: Record<string, Float32Array>,
) {
  const c = k.shape[1], m = k.shape.slice(2).reduce((a, b) => a * b);
  const fails: string[] = [];
  const zz = [zeroOverZeroRows(k, want, false), zeroOverZeroRows(k, want, true)];
  for (const key of Object.keys(want)) {
    const w = want[key], g = got[key];
    const ev = key.startsWith("E") || key.endsWith("E");
    const zRows = zz[ev ? 1 : 0];
    // y of such a row, and dweight of a channel with one (sums of dy times +-Infinity or NaN)
    const undefinedAt = (i: number) =>
      key === "y" || key === "yE"
        ? zRows[Math.floor(i / m)]
        : key.endsWith("dweight") && zRows.some((z, r) => z && r % c === i);
    let undef = 0;
    const perRow = key === "y" || key === "yE" || key === "dx" || key === "dxE";
    const rtol = perRow && key.startsWith("y") ? 2e-5 : key === "rm" || key === "rv" ? 1e-5 : 1e-4;
    const atol0 = key.startsWith("y") ? 2e-5 : key === "rm" || key === "rv" ? 1e-6 : 1e-4;
    // scale: per channel for y/dx the max finite |want| in that channel
    let scale: number[] = [];
    if (perRow) {
      scale = new Array(c).fill(1);
      for (let i = 0; i < w.length; i++) {
        const ch = Math.floor(i / m) % c;
        if (Number.isFinite(w[i])) scale[ch] = Math.max(scale[ch], Math.abs(w[i]));
      }
    }
    const st = scaledTol(k, want, key);
    let bad = 0, first = "", worst = 0, wrongInf = 0, beyondScaled = 0;
    for (let i = 0; i < w.length; i++) {
      const e = w[i], a = g[i];
      const nanOrInfinity = (v: number) => !Number.isFinite(v);
      if (
        nanOrInfinity(a) && nanOrInfinity(e) && (Number.isNaN(a) !== Number.isNaN(e)) &&
        undefinedAt(i)
      ) {
        undef++;
        continue;
      }
      const atol = perRow ? atol0 * scale[Math.floor(i / m) % c] : atol0;
      // An infinity is judged as tests/_close.ts judges it (float32Gap): as the values float32
      // rounds to it, so a bound that spans the gap to float32's range accepts it, as the range
      // tests' judge does. (An excuse for dx of |expected| >= 2^127 given as the infinity of its
      // sign, and one for any result whose terms' float32 rounding, 6e-8 of them, passed float32's
      // range, stood here: seed 3446, whose dx of -1e37 to -3.4e38 come out -Infinity under terms
      // of ~1.4e45 that cancel, needed them; float32Gap holds those to the bound, and refuses a
      // NaN for a finite value, which the second excuse let pass, and a finite value far from an
      // expected infinity, which |a - e| <= st + rtol |e| took, both sides infinite.)
      const gap = float32Gap(a, e), size = Number.isFinite(e) ? Math.abs(e) : FLOAT32_OVERFLOW;
      let ok: boolean;
      if (Number.isNaN(e)) ok = Number.isNaN(a);
      else {
        const err = gap / (atol + rtol * size);
        ok = err <= 1;
        if (Number.isFinite(err)) worst = Math.max(worst, err);
        else worst = Infinity;
      }
      if (!ok && !(gap <= st(i) + atol + rtol * size)) beyondScaled++;
      if (!ok) {
        bad++;
        if (!first) first = `[${i}] got ${a} want ${e}`;
        if (Math.abs(a) === Infinity && Number.isFinite(e)) wrongInf++;
        if (Math.abs(a) === Infinity && Math.abs(e) === Infinity && a !== e) wrongInf++;
      }
    }
    if (undef) fails.push(`undefined ${key}: ${undef}/${w.length} (0 / 0 in exact arithmetic)`);
    if (bad) {
      fails.push(
        `${beyondScaled ? "REAL " : "cancel "}${key}: ${bad}/${w.length} ${first} worst ${
          worst.toPrecision(3)
        }${wrongInf ? " INF" + wrongInf : ""} beyondScaled ${beyondScaled}`,
      );
    }
  }
  return fails;
}
/**
 * The case of `seed` with mixing weights of 0 (FUZZ_ZERO_WEIGHTS=1): in each of mean_weight and
 * var_weight one term keeps its logit and each other term, by a second stream of the seed,
 * keeps its own, lies 175 to 300 below (a float64 weight ~1e-76 to 1e-130, 0 on WebGPU) or is
 * -1e30 (0 in float64 too), as sparse SN's dropped terms are. The rest of the case is seed's.
 */
export function withZeroWeights(k: Case, seed: number): Case {
  const r = seededRandom(seed * 7919 + 17);
  const drop = (logits: number[]) => {
    const keep = Math.floor(r() * logits.length);
    return logits.map((v, j) => {
      if (j === keep) return v;
      const u = r();
      return u < 0.2 ? v : u < 0.6 ? f32(logits[keep] - 175 - 125 * r()) : -1e30;
    });
  };
  return { ...k, mw: drop(k.mw), vw: drop(k.vw) };
}
/**
 * The case with its weights below 2^-252 but above 0 at 0 (their logits -1e30), as WebGPU takes
 * them (README, Numerics): WebGPU is held to the reference of that case. Undefined where it has
 * none.
 */
export function withShaderZeroWeights(k: Case): Case | undefined {
  const mw = webgpuLogits(k.mw), vw = webgpuLogits(k.vw);
  if (mw.every((v, j) => v === k.mw[j]) && vw.every((v, j) => v === k.vw[j])) return undefined;
  return { ...k, mw, vw };
}
/**
 * The case with one NaN, +Infinity or -Infinity (FUZZ_INJECT=1) in x, the evaluation's x or dy,
 * at a place a third stream of the seed picks: the reference propagates it as PyTorch does.
 */
export function withInjection(k: Case, seed: number): Case {
  const r = seededRandom(seed * 31 + 5);
  const which = (["x", "xEval", "dy"] as const)[Math.floor(r() * 3)];
  const value = [NaN, Infinity, -Infinity][Math.floor(r() * 3)];
  const values = [...k[which]];
  values[Math.floor(r() * values.length)] = value;
  return { ...k, [which]: values };
}
if (import.meta.main) {
  const from = Number(Deno.args[0] ?? 1), to = Number(Deno.args[1] ?? 100);
  const zeroWeights = Deno.env.get("FUZZ_ZERO_WEIGHTS") === "1";
  const inject = Deno.env.get("FUZZ_INJECT") === "1";
  const backend = (Deno.env.get("FUZZ_BACKEND") ?? "webgpu") as B;
  let nf = 0;
  for (let seed = from; seed <= to; seed++) {
    let k = zeroWeights ? withZeroWeights(makeCase(seed), seed) : makeCase(seed);
    if (inject) k = withInjection(k, seed);
    // WebGPU takes a weight below 2^-252 as 0 (README, Numerics): its reference is the case
    // with those weights at 0.
    const held = backend === "webgpu" ? withShaderZeroWeights(k) ?? k : k;
    let want, got;
    try {
      want = await runCase(held, "reference");
    } catch (e) {
      console.log(seed, "ref throws", String(e).slice(0, 100));
      continue;
    }
    try {
      got = await runCase(k, backend);
    } catch (e) {
      console.log(seed, "GPU THROWS", String(e).slice(0, 200));
      continue;
    }
    const f = compare(held, want, got);
    if (f.some((l) => l.startsWith("REAL")) || Deno.env.get("ALL")) {
      nf++;
      console.log(
        seed,
        k.kind,
        JSON.stringify(k.shape),
        k.mode,
        `bn=${k.usingBN} eps=${k.eps}`,
        "\n   " + f.join("\n   "),
      );
    }
  }
  console.log("failing", nf, "of", to - from + 1);
}
