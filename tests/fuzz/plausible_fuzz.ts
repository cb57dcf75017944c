/**
 * A seeded fuzzer of PLAUSIBLE inputs (not float32 extremes): data ~N(mu, sigma), mu in
 * {0, 1, 100, 1e4, -3e3}, sigma in {1e-3, 1, 10}, some rows shifted, a few outliers (1e3..1e7),
 * dy ~N(0,1) / of one sign / with many zeros (at the outliers, ReLU-like masks) / all 1, learned-
 * looking mixing logits, training and evaluation on plausible or somewhat-off running buffers
 * (plausible-input helper-72, issue 10). Each failure is printed with its seed and tags:
 * `[eval-alone-passes]` where an evaluation after training fails only through the running
 * buffers' float32 rounding (which an evaluation over a tiny running_var amplifies: a chain of
 * calls, within the per-call promise, NUMERICS.md; counted apart as `chains`), and
 * `[as-softmax-passes]` for a sparse call that passes as the softmax call of the same weights
 * (a failure of the sparse map's own terms, not of the normalization). Not a test (no
 * assertion, not run by `deno task test`): a tool to find members of a fault class.
 *
 *   deno run -A tests/fuzz/plausible_fuzz.ts FIRST LAST [webgpu|wasm]
 *
 * @module
 */
import { type LayerCall, runBoth } from "../_range_compare.ts";
import { check, fuzzCall, relInfo } from "./attack_fuzz.ts";
import { seededRandom } from "../../examples/_data.ts";
import { sparsestmax } from "../../_importance.ts";

export function make(seed: number): LayerCall {
  const r = seededRandom(seed * 15485863 + 29);
  const pick = <T>(a: readonly T[]) => a[Math.floor(r() * a.length)];
  const gauss = () => {
    const u = Math.max(r(), 1e-12), v = r();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  const layer = pick(["1d", "2d", "2d", "3d"] as const);
  const n = pick([1, 2, 3, 4, 8]), c = pick([1, 2, 3, 4, 6]);
  let m = layer === "1d" ? 1 : pick([1, 2, 3, 7, 16, 49, 100, 256, 1000, 2000]);
  while (n * c * m > 48000) m = Math.max(1, Math.floor(m / 2));
  if (layer === "3d" && m % 2) m += 1;
  const shape = layer === "1d" ? [n, c] : layer === "2d" ? [n, c, 1, m] : [n, c, 2, 1, m / 2];
  const len = n * c * m;
  const mu = pick([0, 1, 100, 1e4, -3e3]), sigma = pick([1e-3, 1, 10]);
  // Per-channel and per-row shifts.
  const chShift = Array.from({ length: c }, () => r() < 0.3 ? gauss() * pick([1, 10, 100]) : 0);
  const shiftRows = r() < 0.4;
  const rowShift = Array.from(
    { length: n * c },
    () => shiftRows && r() < 0.5 ? gauss() * pick([0.01, 1, 100, 1e3]) : 0,
  );
  const rowScale = Array.from({ length: n * c }, () => r() < 0.2 ? pick([0.01, 0.1, 10]) : 1);
  const outliers = r() < 0.4;
  const outRows = new Set<number>();
  if (outliers) {
    for (let k = 0, K = 1 + Math.floor(r() * 3); k < K; k++) outRows.add(Math.floor(r() * n * c));
  }
  const isOut = new Uint8Array(len);
  const x = new Float32Array(len);
  // In 1d, a "row" (sample) is C floats; for statistics, the channel is i % c.
  for (let i = 0; i < len; i++) {
    const row = Math.floor(i / m), ch = layer === "1d" ? i % c : row % c;
    x[i] = mu + chShift[ch] + rowShift[row] + sigma * rowScale[row] * gauss();
  }
  if (outliers) {
    for (const row of outRows) {
      const K = 1 + Math.floor(r() * Math.min(3, m));
      for (let k = 0; k < K; k++) {
        const i = row * m + Math.floor(r() * m);
        x[i] = (r() < 0.5 ? -1 : 1) * pick([1e3, 1e4, 1e5, 1e6, 1e7]) * (1 + r());
        isOut[i] = 1;
      }
    }
  }
  const dyKind = pick([
    "normal",
    "normal",
    "pos",
    "neg",
    "zeroOut",
    "relu",
    "ones",
    "sparse",
    "rowZero",
  ]);
  const dyS = pick([1, 1, 1e-3, 100]);
  const dy = Float32Array.from({ length: len }, (_, i) => {
    const g = gauss() * dyS;
    switch (dyKind) {
      case "normal":
        return g;
      case "pos":
        return Math.abs(g);
      case "neg":
        return -Math.abs(g);
      case "zeroOut":
        return isOut[i] ? 0 : g;
      case "relu":
        return x[i] > mu ? g : 0;
      case "ones":
        return isOut[i] && r() < 0.5 ? 0 : 1;
      case "sparse":
        return r() < 0.9 ? 0 : g;
      default:
        return Math.floor(i / m) % 2 ? 0 : g;
    }
  });
  const k = layer === "1d" ? 2 : 3;
  const logits = () => {
    const kind = pick(["learned", "dominant", "equal", "rand", "onlyOne"]);
    if (kind === "learned") {
      return Float32Array.from(pick([[0.3, -1.2, 2.0], [1, 0, -1], [-0.5, 0.2, 0.1]]).slice(0, k));
    }
    if (kind === "dominant") {
      const a = new Float32Array(k);
      a[Math.floor(r() * k)] = 8;
      return a;
    }
    if (kind === "equal") return new Float32Array(k);
    if (kind === "onlyOne") {
      const a = new Float32Array(k).fill(-1e30);
      a[Math.floor(r() * k)] = 0;
      return a;
    }
    return Float32Array.from({ length: k }, () => gauss() * 2);
  };
  const mean_weight = logits(), var_weight = logits();
  const training = r() < 0.5;
  // Running buffers: plausible (near the data), somewhat off, or default.
  const rmKind = pick(["near", "off", "default"]);
  const running_mean = Float32Array.from(
    { length: c },
    (_, ch) =>
      rmKind === "default"
        ? 0
        : rmKind === "near"
        ? mu + chShift[ch] + sigma * 0.1 * gauss()
        : (mu + chShift[ch]) * (1 + 0.1 * gauss()) + sigma * gauss(),
  );
  const running_var = Float32Array.from(
    { length: c },
    () =>
      rmKind === "default"
        ? 1
        : rmKind === "near"
        ? sigma * sigma * (1 + 0.1 * gauss()) ** 2
        : sigma * sigma * pick([0.3, 3, 1e2]),
  );
  const weight = Float32Array.from({ length: c }, () => pick([1, 1, 0.5 + r(), -0.3, 2]));
  const bias = Float32Array.from({ length: c }, () => pick([0, 0, gauss() * 0.5, 3]));
  const evalAfter = training && r() < 0.5;
  const xEval = evalAfter
    ? Float32Array.from(x, (v, i) => isOut[i] ? v : v + sigma * 0.1 * gauss())
    : undefined;
  const sparse = layer === "2d" && r() < 0.08;
  return {
    layer,
    shape,
    options: { eps: pick([1e-5, 1e-3]), momentum: 0.1, ...(sparse ? { sparse: true } : {}) },
    state: { weight, bias, mean_weight, var_weight, running_mean, running_var },
    partial: true,
    training,
    x,
    dy,
    scales: true,
    running: training,
    xEval,
  };
}
export function describe(call: LayerCall): string {
  return `${call.layer} [${call.shape}] ${call.training ? "train" : "eval"}${
    call.xEval ? "+eval" : ""
  }${call.options?.sparse ? " sparse" : ""} eps=${call.options?.eps} mw=[${
    Array.from(call.state!.mean_weight)
  }] vw=[${Array.from(call.state!.var_weight)}]`;
}
if (import.meta.main) {
  const [a, b, be] = [+Deno.args[0], +Deno.args[1], Deno.args[2] ?? "webgpu"];
  let fails = 0, chains = 0;
  for (let s = a; s <= b; s++) {
    const call = make(s);
    const f = await fuzzCall(call, be as "webgpu", `${s} ${describe(call)}`);
    if (f === null || f === "throw") continue;
    const { err } = f;
    fails++;
    let raw = f.raw;
    if (call.xEval && err.startsWith("Error: evaluation")) {
      // The evaluation again, alone, from the running buffers the BACKEND's training left: does
      // the evaluation itself fail, or only the (within-RUNNING) buffer differences amplified?
      const st = {
        ...call.state!,
        running_mean: f.got.runningMean!,
        running_var: f.got.runningVar!,
      };
      const ev: LayerCall = {
        ...call,
        state: st,
        training: false,
        x: call.xEval,
        xEval: undefined,
        running: false,
      };
      const r2 = await runBoth(ev, be as "webgpu");
      const alone = check(ev, r2.got, r2.want);
      raw += alone ? " [eval-alone-also-fails]" : " [eval-alone-passes]";
      if (!alone) chains++;
    }
    if (call.options?.sparse) {
      // The sparse map's own terms, or the normalization? Redo as a non-sparse call whose
      // softmax weights are sparsestmax's (radius 0): does it still fail?
      const eq = (l: Float32Array) =>
        Float32Array.from(
          Array.from(sparsestmax(l, 0).weights),
          (w) => w > 0 ? Math.log(w) : -1e30,
        );
      const st = {
        ...call.state!,
        mean_weight: eq(call.state!.mean_weight),
        var_weight: eq(call.state!.var_weight),
      };
      const c2: LayerCall = {
        ...call,
        options: { eps: call.options.eps, momentum: 0.1 },
        state: st,
      };
      const r2 = await runBoth(c2, be as "webgpu");
      raw += check(c2, r2.got, r2.want) ? " [as-softmax-also-fails]" : " [as-softmax-passes]";
    }
    console.log(`FAIL`, s, describe(call) + raw + relInfo(err), err.slice(0, 600));
  }
  console.log("DONE", a, b, be, "fails", fails, "of them chains", chains);
  Deno.exit(0);
}
