/**
 * A seeded fuzzer of PLAUSIBLE inputs in the shapes and options tests/fuzz/plausible_fuzz.ts does
 * not reach (plausible-shapes helper, issue 10): rows of 1025 to 20000 floats (several WASM
 * chunks of 1024 floats, several WebGPU segments), up to ~300k floats a call and 32 channels;
 * SwitchNorm1d with columns of up to 20000 samples; N = 1 (BN is IN), C = 1 (LN is IN), odd
 * sizes, SwitchNorm3d; the constructor options usingBN false, usingMovingAverage false (the batch
 * average: K training batches, finalizeBatchAverage, then an evaluation on the statistics it
 * left), lastGamma (gamma left at its initial 0), momentum 0 .. 1 and eps 1e-5, 1e-3, 0.1;
 * evaluation-mode forward with keepForBackward and backward. The data reuse plausible_fuzz.ts's
 * ideas (~N(mu, sigma) with channel and row shifts, outliers to 1e7, dy with zeros, of one sign or
 * all 1, learned-looking mixings) and add row-long structure: post-ReLU rows, pixel-like integers,
 * ramps, rows made of blocks of different offsets (chunk merges), binary masks, outliers at a
 * row's first element; dy smooth or constant by blocks.
 *
 * Each call is held to the float64 reference with the range checks (tests/fuzz/attack_fuzz.ts's
 * `check`: y to Y per row, dx and the gradients to GRAD_SCALED of their term scales, running
 * buffers to RUNNING, the evaluation after). A failure is printed as `FAIL seed description
 * [tags] message`; tags: `[eval-alone-passes]`/`[eval-alone-also-fails]` (the evaluation again
 * from the running buffers the backend left; where it passes, a chain of calls within the
 * per-call promise, NUMERICS.md, counted apart as `chains`), `[batchavg-running_var: ...]` (a batch average's
 * `running_var` off by its documented float32 cancellation, README "Batch average"),
 * `[close-stats mean=a var=b]` where a < 64 or b < 64 (the closest distinct IN/LN/BN or running
 * means lie a float32 roundings of their std apart, the closest variances b float32 ulps: the
 * ill-conditioned "coinciding statistics" class of README's known exceptions). Each call is also
 * run on resident tensors (`layer.upload`, forward and backward on tensors): `RESIDENT-FAIL` where
 * only that run fails the checks; each evaluation-mode call again without keepForBackward:
 * `NOKEEP-FAIL` where its y fails y's check (bit differences from the kept forward, which
 * NUMERICS.md allows, are only counted); with `wasm2`, a `BITS` line for each output that differs
 * between 1 and 2 threads. Moving-average training calls take 1 to 3 more training steps
 * (`steps`) now and then.
 *
 * Found (plausible-shapes helper): WASM seeds 1 to 12000 fail 24 (21 close-stats; 3 running_mean,
 * 1.0x to 2.3x, outliers or batch average), `wasm2` 1 to 2000 fail 7 (all close-stats) with no bit
 * difference from 1 thread, WebGPU 1 to 2000 fail 123 (108 batch-average running_var and 2
 * batch-average evaluations that pass alone, 13 close-stats); no RESIDENT-FAIL or NOKEEP-FAIL.
 * Since WebGPU sums evaluation variances near running_var again as pairs: WebGPU 1 to 2000 fail
 * 6 (3 training close-stats, 2 evaluations that pass alone, 1 batch-average running_var); since
 * it sums groups alike in variance again (sn_group_refine), 3 (207, 298, 895: the training calls
 * 351, 773 and 1548 pass). WASM 1 to 3000: 2 (1139, 1548) since `simd::two_dominate` (786, two
 * outliers in different lanes: its mean and running_mean 6 ulps off, passes); 1 (1548) since
 * `simd::about_mean` (1139: spikes at two of the first shift's four samples set it halfway to one,
 * and a third spike's lane held under 3/4 of the squares about that shift: its mean 116 ulps off).
 * WASM 3001 to 12000: 2 (6753, 7396: evaluations of the close-stats kind through the buffers of a
 * batch average of one batch) since `nd::refine_batch_average` (8838, 11216: a batch average's
 * running_var an ulp from the reference's, tagged batchavg-running_var).
 * Beyond the tags: a spike at one of the first chunk's shift samples (elements 0, 256, 512, 768)
 * leaves WASM's IN mean tens to hundreds of float32 ulps off (seed 4989: 251), and variances or
 * means hundreds of ulps apart (not only closer than rounding) fail the logit gradients' checks.
 * Not a test (no assertion, not run by `deno task test`): a tool to find members of a fault class.
 *
 *   deno run -A tests/fuzz/plausible_shapes_fuzz.ts FIRST LAST [wasm|wasm2|webgpu]
 *
 * `wasm2`: the WASM backend on 2 threads with every call split (chunks of 4 rows), checked against
 * the reference and, bit for bit, against the same call on 1 thread.
 *
 * @module
 */
import { Y } from "../_tolerances.ts";
import {
  assertChecked,
  type CallResult,
  forwardBackward,
  type GradKey,
  type LayerCall,
  type Outputs,
  runBoth,
  runCall,
  runningBuffers,
} from "../_range_compare.ts";
import { check, relInfo } from "./attack_fuzz.ts";
import { closeStats } from "./_close_stats.ts";
import { seededRandom } from "../../examples/_data.ts";
import { SwitchNorm1d, SwitchNorm2d, SwitchNorm3d } from "../../mod.ts";
import { setNumThreads } from "../../mod.ts";
import { setThreadTestHooks } from "../../backends/_wasm_threads.ts";

/** A call of the fuzzer: a LayerCall, and for a batch average the batches after the first. */
export interface ShapeCall extends LayerCall {
  /** usingMovingAverage false: training forwards on these after `x`, then a finalize. */
  readonly batches?: readonly Float32Array[];
  readonly tags: readonly string[];
}

export function make(seed: number): ShapeCall {
  const r = seededRandom(seed * 7919 + 1013);
  const pick = <T>(a: readonly T[]) => a[Math.floor(r() * a.length)];
  const gauss = () => {
    const u = Math.max(r(), 1e-12), v = r();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  const tags: string[] = [];
  const layer = pick(["1d", "2d", "2d", "2d", "3d", "3d"] as const);
  const cap = pick([30000, 100000, 300000]);
  let n: number, c: number, m: number;
  let shape: number[];
  if (layer === "1d") {
    n = pick([1, 2, 3, 5, 64, 257, 1025, 4097, 20000]);
    c = pick([1, 1, 2, 3, 5, 17, 32]);
    while (n * c > cap) n = Math.max(1, Math.floor(n / 2));
    m = 1;
    shape = [n, c];
  } else {
    n = pick([1, 1, 2, 3, 4, 5, 8]);
    c = pick([1, 1, 2, 3, 5, 7, 16, 32]);
    m = r() < 0.85
      ? pick([1025, 1031, 2047, 2048, 3000, 4096, 4099, 5000, 8191, 12345, 16384, 20000])
      : pick([2, 3, 17, 255, 1023]);
    while (n * c * m > cap && n > 1) n = Math.floor(n / 2);
    while (n * c * m > cap && c > 1) c = Math.floor(c / 2);
    if (layer === "2d") {
      const h = pick([1, 1, m % 3 === 0 ? 3 : 1]);
      shape = [n, c, h, m / h];
    } else {
      const d = pick([2, 3, 5]);
      m = d * Math.ceil(m / d);
      shape = [n, c, d, 1, m / d];
    }
  }
  const len = n * c * m;
  const usingBN = layer === "1d" ? true : r() < 0.75;
  const batchAverage = usingBN && r() < 0.2;
  const lastGamma = layer !== "1d" && r() < 0.12;
  const momentum = pick([0.1, 0.1, 0.9, 0.997, 0, 1, 0.5]);
  const eps = pick([1e-5, 1e-5, 1e-3, 0.1]);
  if (!usingBN) tags.push("noBN");
  if (batchAverage) tags.push("batchavg");
  if (lastGamma) tags.push("lastGamma");

  const xKind = pick(["normal", "normal", "normal", "relu", "pixels", "ramp", "blocks", "binary"]);
  tags.push(`x=${xKind}`);
  const mu = pick([0, 1, 100, 1e4, -3e3]), sigma = pick([1e-3, 1, 10]);
  const chShift = Array.from({ length: c }, () => r() < 0.3 ? gauss() * pick([1, 10, 100]) : 0);
  const shiftRows = r() < 0.4;
  const rowShift = Array.from(
    { length: n * c },
    () => shiftRows && r() < 0.5 ? gauss() * pick([0.01, 1, 100, 1e3]) : 0,
  );
  const rowScale = Array.from({ length: n * c }, () => r() < 0.2 ? pick([0.01, 0.1, 10]) : 1);
  const blockLen = pick([256, 1000, 1024, 4096]), blockOff = pick([1, 100, 1e3]);
  const rampK = pick([1, 10, 255]);
  const isOut = new Uint8Array(len);
  // Element i's channel: in 1d i % c; otherwise its row's.
  const chOf = (i: number) => layer === "1d" ? i % c : Math.floor(i / m) % c;
  const rowOf = (i: number) => layer === "1d" ? i % c : Math.floor(i / m);
  const draw = (): Float32Array => {
    const x = new Float32Array(len);
    for (let i = 0; i < len; i++) {
      const row = rowOf(i), ch = chOf(i), j = layer === "1d" ? Math.floor(i / c) : i % m;
      const base = mu + chShift[ch] + rowShift[row];
      const s = sigma * rowScale[row];
      switch (xKind) {
        case "relu":
          x[i] = Math.max(0, s * gauss() + (chShift[ch] + rowShift[row]) * 0.01);
          break;
        case "pixels":
          x[i] = Math.min(255, Math.max(0, Math.round(128 + chShift[ch] + 60 * gauss())));
          break;
        case "ramp":
          x[i] = base + s * (rampK * j / (layer === "1d" ? n : m) + 0.05 * gauss());
          break;
        case "blocks":
          x[i] = base + (Math.floor(j / blockLen) % 2 ? blockOff : -blockOff) + s * gauss();
          break;
        case "binary":
          x[i] = r() < 0.3 ? 1 : 0;
          break;
        default:
          x[i] = base + s * gauss();
      }
    }
    return x;
  };
  const x = draw();
  if (r() < 0.35 && xKind !== "binary" && xKind !== "pixels") {
    tags.push("outliers");
    const rows = layer === "1d" ? n : n * c;
    for (let k = 0, K = 1 + Math.floor(r() * 3); k < K; k++) {
      const row = Math.floor(r() * rows);
      for (let q = 0, Q = 1 + Math.floor(r() * 3); q < Q; q++) {
        // A third of them at a row's first element or a quarter of its first chunk (where the
        // WASM statistics pass samples its shift), as a corner or border artefact would be.
        const at = r() < 0.3 ? pick([0, 0, 256, 512, 768]) % m : Math.floor(r() * m);
        const i = layer === "1d" ? row * c + Math.floor(r() * c) : row * m + at;
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
    "smooth",
    "blockConst",
  ]);
  tags.push(`dy=${dyKind}`);
  const dyS = pick([1, 1, 1e-3, 100]);
  let blockG = 0;
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
        return x[i] > (xKind === "normal" ? mu : 0) ? g : 0;
      case "ones":
        return isOut[i] && r() < 0.5 ? 0 : 1;
      case "sparse":
        return r() < 0.9 ? 0 : g;
      case "smooth":
        return dyS * Math.sin(i * 0.001 + rowOf(i)) + 0.01 * g;
      case "blockConst":
        if (i % 1024 === 0) blockG = g;
        return blockG;
      default:
        return rowOf(i) % 2 ? 0 : g;
    }
  });
  const k = layer === "1d" ? 2 : usingBN ? 3 : 2;
  const logits = () => {
    const kind = pick(["learned", "dominant", "equal", "rand", "onlyOne", "default"]);
    if (kind === "learned") {
      return Float32Array.from(pick([[0.3, -1.2, 2.0], [1, 0, -1], [-0.5, 0.2, 0.1]]).slice(0, k));
    }
    if (kind === "dominant") {
      const a = new Float32Array(k);
      a[Math.floor(r() * k)] = 8;
      return a;
    }
    if (kind === "equal") return new Float32Array(k);
    if (kind === "default") return new Float32Array(k).fill(1);
    if (kind === "onlyOne") {
      const a = new Float32Array(k).fill(-1e30);
      a[Math.floor(r() * k)] = 0;
      return a;
    }
    return Float32Array.from({ length: k }, () => gauss() * 2);
  };
  const mean_weight = logits(), var_weight = logits();
  const training = batchAverage || r() < 0.55;
  // Statistics of a channel as drawn (rough: for running buffers near the data).
  const chMean = (ch: number) =>
    xKind === "pixels"
      ? 128 + chShift[ch]
      : xKind === "binary"
      ? 0.3
      : xKind === "relu"
      ? 0.4 * sigma
      : mu + chShift[ch];
  const chVar = () =>
    xKind === "pixels"
      ? 3600
      : xKind === "binary"
      ? 0.21
      : sigma * sigma * (xKind === "ramp"
        ? rampK * rampK / 12
        : xKind === "blocks"
        ? 1 + blockOff * blockOff / (sigma * sigma)
        : 1);
  const rmKind = pick(["near", "off", "default"]);
  const running_mean = Float32Array.from(
    { length: c },
    (_, ch) =>
      rmKind === "default"
        ? 0
        : rmKind === "near"
        ? chMean(ch) + Math.sqrt(chVar()) * 0.1 * gauss()
        : chMean(ch) * (1 + 0.1 * gauss()) + Math.sqrt(chVar()) * gauss(),
  );
  const running_var = Float32Array.from(
    { length: c },
    () =>
      rmKind === "default"
        ? 1
        : rmKind === "near"
        ? chVar() * (1 + 0.1 * gauss()) ** 2
        : chVar() * pick([0.3, 3, 1e2]),
  );
  const weight = Float32Array.from({ length: c }, () => pick([1, 1, 0.5 + r(), -0.3, 2]));
  const bias = Float32Array.from({ length: c }, () => pick([0, 0, gauss() * 0.5, 3]));
  const state: Record<string, Float32Array> = { bias, mean_weight, var_weight };
  if (!lastGamma) state.weight = weight;
  if (usingBN && !batchAverage) {
    state.running_mean = running_mean;
    state.running_var = running_var;
  }
  const evalAfter = batchAverage || (training && usingBN && r() < 0.5);
  const xEval = evalAfter
    ? Float32Array.from(x, (v, i) => isOut[i] ? v : v + Math.fround(sigma * 0.1 * gauss()))
    : undefined;
  let batches = batchAverage
    ? Array.from({ length: Math.floor(r() * 4) }, () => draw())
    : undefined;
  // Moving average over several training steps (the running buffers after K updates).
  if (!batchAverage && training && usingBN && r() < 0.3) {
    batches = Array.from({ length: 1 + Math.floor(r() * 3) }, () => draw());
    tags.push("steps");
  }
  return {
    layer,
    shape,
    options: {
      eps,
      momentum,
      ...(layer === "1d" ? {} : { usingBN, lastGamma }),
      ...(batchAverage ? { usingMovingAverage: false } : {}),
    },
    state,
    partial: true,
    training,
    x,
    dy,
    scales: true,
    running: training && usingBN,
    xEval,
    batches,
    tags,
  };
}

export function describe(call: ShapeCall): string {
  const o = call.options!;
  return `${call.layer} [${call.shape}] ${call.training ? "train" : "eval"}${
    call.xEval ? "+eval" : ""
  } eps=${o.eps} mom=${o.momentum} mw=[${Array.from(call.state!.mean_weight)}] vw=[${
    Array.from(call.state!.var_weight)
  }] {${call.tags.join(",")}${call.batches ? `,K=${call.batches.length + 1}` : ""}}`;
}

/**
 * An evaluation forward without keepForBackward on `backend`: its y, to hold to the kept
 * forward's (the same call) bit for bit.
 */
export async function evalNoKeep(call: ShapeCall, backend: string): Promise<Float32Array> {
  const layer = newLayer(call, backend);
  layer.loadStateDict(call.state!, { strict: false });
  layer.train(false);
  const y = await layer.forward(call.x, [...call.shape]);
  layer.dispose();
  return y;
}

type Layer = SwitchNorm1d | SwitchNorm2d<boolean> | SwitchNorm3d<boolean>;

function newLayer(call: LayerCall, backend: string): Layer {
  const c = call.shape[1], options = { ...call.options, backend } as never;
  return call.layer === "1d"
    ? new SwitchNorm1d(c, options)
    : call.layer === "2d"
    ? new SwitchNorm2d(c, options)
    : new SwitchNorm3d(c, options);
}

/**
 * A call of several training steps: a training forward and backward on x, training forwards on
 * `batches`, finalizeBatchAverage (usingMovingAverage false), the running buffers, then an
 * evaluation forward and backward on xEval where the call has one.
 */
export async function runSteps(call: ShapeCall, backend: string): Promise<CallResult> {
  const layer = newLayer(call, backend);
  layer.loadStateDict(call.state!, { strict: false });
  layer.train(true);
  const scales = backend === "reference";
  const first = await forwardBackward(layer, { ...call, scales }, call.x, true);
  for (const b of call.batches ?? []) await layer.forward(b, [...call.shape]);
  await layer.sync();
  if (call.options?.usingMovingAverage === false) layer.finalizeBatchAverage();
  const runningMean = layer.running_mean.slice(), runningVar = layer.running_var.slice();
  layer.train(false);
  layer.zeroGrad();
  const evaluation = call.xEval
    ? await forwardBackward(layer, { ...call, scales }, call.xEval, false)
    : undefined;
  layer.dispose();
  return { ...first, runningMean, runningVar, evaluation };
}

/**
 * The call with resident tensors (`layer.upload`, forward and backward on the backend's own
 * tensors, read back): y, dx, the gradients, the running buffers after the steps, the evaluation.
 */
export async function runResident(call: ShapeCall, backend: string): Promise<CallResult> {
  const layer = newLayer(call, backend);
  layer.loadStateDict(call.state!, { strict: false });
  layer.train(call.training);
  const fb = async (x: Float32Array): Promise<Outputs> => {
    const xt = await layer.upload(x, [...call.shape]);
    const yt = await layer.forward(xt, { keepForBackward: true });
    const dyt = await layer.upload(call.dy!, [...call.shape]);
    const dxt = await layer.backward(dyt);
    const y = await yt.read(), dx = await dxt.read();
    for (const t of [xt, yt, dyt, dxt]) t.dispose();
    const g = layer.grads;
    const grads = {
      weight: g.weight.slice(),
      bias: g.bias.slice(),
      mean_weight: g.mean_weight.slice(),
      var_weight: g.var_weight.slice(),
    };
    return { y, dx, grads };
  };
  const first = await fb(call.x);
  for (const b of call.batches ?? []) {
    const bt = await layer.upload(b, [...call.shape]);
    (await layer.forward(bt)).dispose();
    bt.dispose();
  }
  let result: CallResult = first;
  if (call.running || call.batches) {
    await layer.sync();
    if (call.options?.usingMovingAverage === false) layer.finalizeBatchAverage();
    result = { ...result, ...await runningBuffers(layer) };
  }
  if (call.xEval) {
    layer.train(false);
    layer.zeroGrad();
    result = { ...result, evaluation: await fb(call.xEval) };
  }
  layer.dispose();
  return result;
}

async function both(call: ShapeCall, backend: "wasm" | "webgpu") {
  if (!call.batches) return await runBoth(call, backend);
  const want = await runSteps(call, "reference");
  return { want, got: await runSteps(call, backend) };
}

function bitsDiffer(a: Outputs, b: Outputs): string[] {
  const out: string[] = [];
  const same = (p?: Float32Array, q?: Float32Array) =>
    p === q || (p !== undefined && q !== undefined && p.length === q.length &&
      new Uint32Array(p.buffer, p.byteOffset, p.length).every((v, i) =>
        v === new Uint32Array(q.buffer, q.byteOffset, q.length)[i]
      ));
  if (!same(a.y, b.y)) out.push("y");
  if (!same(a.dx, b.dx)) out.push("dx");
  for (const k of ["weight", "bias", "mean_weight", "var_weight"] as GradKey[]) {
    if (!same(a.grads[k], b.grads[k])) out.push(`grad ${k}`);
  }
  if (!same(a.runningMean, b.runningMean)) out.push("running_mean");
  if (!same(a.runningVar, b.runningVar)) out.push("running_var");
  return out;
}

if (import.meta.main) {
  const [a, b, mode] = [+Deno.args[0], +Deno.args[1], Deno.args[2] ?? "wasm"];
  const be = mode === "webgpu" ? "webgpu" : "wasm";
  let splits = 0, workerChunks = 0;
  const split = {
    minElements: 1,
    chunkElements: 1,
    waitForWorkers: true,
    noBackoff: true,
    onSplit: (threads: number, ran: number) => {
      if (threads === 2) splits++;
      workerChunks += ran;
    },
  };
  const unsplit = { ...split, minElements: 2 ** 40 };
  if (mode === "wasm2") {
    setNumThreads(2);
    setThreadTestHooks(split);
  }
  let fails = 0, chains = 0, bits = 0, keepBits = 0, residentBits = 0;
  for (let s = a; s <= b; s++) {
    const call = make(s);
    const label = `${s} ${describe(call)}`;
    let res;
    try {
      res = await both(call, be);
    } catch (e) {
      console.log("THROW", label, String(e).slice(0, 300));
      continue;
    }
    if (mode === "wasm2" && !call.batches) {
      setThreadTestHooks(unsplit);
      const one = await runCall({ ...call, scales: false }, "wasm");
      setThreadTestHooks(split);
      const d = bitsDiffer(res.got, one);
      if (one.evaluation && res.got.evaluation) {
        d.push(...bitsDiffer(res.got.evaluation, one.evaluation).map((q) => `eval ${q}`));
      }
      if (d.length) {
        bits++;
        console.log("BITS", label, d.join(", "));
      }
    }
    const err = check(call, res.got, res.want);
    if (!call.training) {
      // An evaluation forward without keepForBackward: its y may differ from the kept one's by
      // the rounding NUMERICS.md describes (counted), but must pass y's check.
      const y = await evalNoKeep(call, be);
      const u = new Uint32Array(y.buffer, y.byteOffset, y.length);
      const v = new Uint32Array(res.got.y.buffer, res.got.y.byteOffset, y.length);
      if (u.some((q, k) => q !== v[k])) keepBits++;
      let e2: string | null = null;
      try {
        const rows = call.shape.slice(call.layer === "1d" ? 1 : 2).reduce((p, q) => p * q, 1);
        assertChecked(y, res.want.y, { tol: Y, rows }, "y without keepForBackward");
      } catch (e) {
        e2 = String(e).replaceAll("\n", " | ");
      }
      if (e2) console.log("NOKEEP-FAIL", label, e2.slice(0, 400));
    }
    {
      // The same call on resident tensors (upload, forward and backward on tensors, read back).
      let e3: string | null;
      let rr: CallResult | undefined;
      try {
        rr = await runResident(call, be);
        e3 = check(call, rr, res.want);
      } catch (e) {
        e3 = `throws ${String(e).slice(0, 200)}`;
      }
      if (rr && bitsDiffer(rr, res.got).length) residentBits++;
      if (e3 && !err) console.log("RESIDENT-FAIL", label, e3.slice(0, 500));
    }
    if (!err) continue;
    fails++;
    let extra = "";
    const avgVar = call.batches !== undefined && err.startsWith("Error: running_var");
    if (avgVar) extra += " [batchavg-running_var: README, Batch average]";
    if (call.xEval && (err.startsWith("Error: evaluation") || avgVar)) {
      // The evaluation again, alone, on the running buffers the backend's training left.
      const st = {
        ...call.state!,
        running_mean: res.got.runningMean!,
        running_var: res.got.runningVar!,
      };
      const ev: LayerCall = {
        ...call,
        options: { ...call.options, usingMovingAverage: true },
        state: st,
        training: false,
        x: call.xEval,
        xEval: undefined,
        running: false,
      };
      const r2 = await runBoth(ev, be);
      const alone = check(ev, r2.got, r2.want);
      extra += alone ? " [eval-alone-also-fails]" : " [eval-alone-passes]";
      if (!alone) chains++;
    }
    const evalFail = err.startsWith("Error: evaluation");
    extra += evalFail
      ? closeStats(call, call.xEval!, false, res.want.runningMean, res.want.runningVar)
      : closeStats(call, call.x, call.training, call.state?.running_mean, call.state?.running_var);
    console.log("FAIL", label + extra + relInfo(err), err.slice(0, 600));
  }
  console.log(
    "DONE",
    a,
    b,
    mode,
    "fails",
    fails,
    "of them chains",
    chains,
    "bits",
    bits,
    "keepBits",
    keepBits,
    "residentBits",
    residentBits,
  );
  if (mode === "wasm2") console.log("split calls", splits, "worker chunks", workerChunks);
  Deno.exit(0);
}
