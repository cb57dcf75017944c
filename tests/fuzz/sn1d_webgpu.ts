/**
 * A seeded fuzzer of SwitchNorm1d on WebGPU against the float64 reference backend (issue 10):
 * random shapes (N in 2..300, C in 1..40), per-row and per-column scales 10^U(-30, 30) (with
 * `--wide`: 10^U(-44, 38), gamma and beta over 10^U(-38, 38), eps down to 2^-126, logits up to
 * +-40, constant and near-constant samples and columns), a few dominating entries, eps 0 or 1e-5;
 * a training forward and backward, then an evaluation forward and backward. Each mismatch beyond
 * the tests' tolerances (tests/_tolerances.ts) is printed with its seed, and again against an atol
 * scaled by the size of the float32 terms summed into it (for sums whose terms cancel, which
 * float32 cannot resolve: "scaled-ok"), an infinity judged as the values float32 rounds to it
 * (float32Gap, as the range tests' judge); y that is 0 / 0 in exact arithmetic (eps 0, x equal to
 * every mean it is mixed from) is counted apart ("undefined"). Not a test: a tool to look for
 * members of a fault class.
 *
 *   deno run --allow-read --allow-env tests/fuzz/sn1d_webgpu.ts [first seed] [count] [--wide] [--all]
 *
 * `--all` also prints the cases whose every mismatch is scaled-ok.
 *
 * @module
 */
import { SwitchNorm1d } from "../../mod.ts";
import { seededRandom } from "../../examples/_data.ts";
import { FLOAT32_OVERFLOW, float32Gap, type Tolerance } from "../_close.ts";
import { GRAD, RUNNING, Y } from "../_tolerances.ts";
import { softmax } from "../_softmax.ts";

const args = Deno.args.filter((a) => !a.startsWith("--"));
const WIDE = Deno.args.includes("--wide"), ALL = Deno.args.includes("--all");

/** One random problem. */
interface Case {
  n: number;
  c: number;
  eps: number;
  x: Float32Array;
  xEval: Float32Array;
  dy: Float32Array;
  weight: Float32Array;
  bias: Float32Array;
  meanLogits: Float32Array;
  varLogits: Float32Array;
  about: Record<string, number | boolean>;
}

function makeCase(seed: number): Case {
  const r = seededRandom(seed);
  const uniform = (a: number, b: number) => a + (b - a) * r();
  const int = (a: number, b: number) => Math.floor(uniform(a, b + 1));
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const n = pick([2, 3, int(2, 40), int(2, 300)]), c = pick([1, 2, int(1, 40), int(1, 40)]);
  const scale = () => WIDE ? 10 ** uniform(-44, 38) : 10 ** uniform(-30, 30);
  const rowScale = Float64Array.from({ length: n }, () => r() < 0.3 ? scale() : 1);
  const colScale = Float64Array.from({ length: c }, () => r() < 0.3 ? scale() : 1);
  const mode = int(0, 3); // scales of rows (1), columns (2), both (3) or none
  const offset = pick([0, 0, 0.3, 1, 1e3, -1e4]);
  const dominating = pick([0, 0, 0.01, 0.05]);
  const dyScale = pick([1, 1, 10 ** uniform(-30, 38)]), dyByRow = r() < 0.2;
  const x = new Float32Array(n * c), xEval = new Float32Array(n * c), dy = new Float32Array(n * c);
  const limit = (v: number) => Math.abs(v) > 3e38 ? Math.sign(v) * 3e38 * uniform(0.5, 1) : v;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) {
      const s = Math.min((mode & 1 ? rowScale[i] : 1) * (mode & 2 ? colScale[j] : 1), 3e38);
      const big = r() < dominating ? 10 ** uniform(1, 8) : 1;
      x[i * c + j] = limit((uniform(-1, 1) + offset) * s * big);
      xEval[i * c + j] = limit((uniform(-1, 1) + offset) * s);
      dy[i * c + j] = uniform(-1, 1) * Math.min(3e38, dyScale * (dyByRow ? rowScale[i] : 1));
    }
  }
  if (WIDE && r() < 0.3) {
    // Constant (variance exactly 0; powers of two, so that the reference's mean is exact) and
    // near-constant samples and columns.
    const p2 = (v: number) => v === 0 ? 0 : Math.sign(v) * 2 ** Math.round(Math.log2(Math.abs(v)));
    const near = (v: number) => Math.fround(v * (1 + 1e-6 * (r() - 0.5)));
    for (let i = 0; i < n; i++) {
      if (r() >= 0.3) continue;
      const v = p2(x[i * c]), jitter = r() < 0.5;
      for (let j = 0; j < c; j++) x[i * c + j] = jitter ? near(v) : v;
    }
    for (let j = 0; j < c; j++) {
      if (r() >= 0.3) continue;
      const v = p2(x[j]), jitter = r() < 0.5;
      for (let i = 0; i < n; i++) x[i * c + j] = jitter ? near(v) : v;
    }
  }
  const wide = () => 10 ** uniform(-38, 38);
  const gammaScale = pick([1, 1, WIDE ? wide() : scale()]);
  const betaScale = pick([1, 1, WIDE ? wide() : scale()]);
  const weight = Float32Array.from(
    { length: c },
    () => uniform(0.5, 1.5) * gammaScale * (r() < 0.1 ? -1 : 1),
  );
  const bias = Float32Array.from({ length: c }, () => uniform(-1, 1) * betaScale);
  const spread = WIDE && r() < 0.3 ? 40 : 2;
  const meanLogits = Float32Array.from({ length: 2 }, () => uniform(-spread, spread));
  const varLogits = Float32Array.from({ length: 2 }, () => uniform(-spread, spread));
  const eps = pick([0, 1e-5, ...(WIDE ? [0, 2 ** -126, 1e-30] : [])]);
  return {
    n,
    c,
    eps,
    x,
    xEval,
    dy,
    weight,
    bias,
    meanLogits,
    varLogits,
    about: { n, c, mode, offset, dominating, dyScale, dyByRow, gammaScale, betaScale, eps, spread },
  };
}

type Outputs = Record<string, Float32Array>;
const GRADS = ["weight", "bias", "mean_weight", "var_weight"] as const;

async function run(k: Case, backend: "reference" | "webgpu"): Promise<Outputs> {
  const layer = new SwitchNorm1d(k.c, { backend, eps: k.eps });
  layer.loadStateDict({
    weight: k.weight,
    bias: k.bias,
    mean_weight: k.meanLogits,
    var_weight: k.varLogits,
  }, { strict: false });
  layer.train(true);
  const out: Outputs = {};
  out.y = await layer.forward(k.x, [k.n, k.c], { keepForBackward: true });
  out.dx = await layer.backward(k.dy);
  await layer.sync();
  out.running_mean = layer.running_mean.slice();
  out.running_var = layer.running_var.slice();
  for (const g of GRADS) out[g] = layer.grads[g].slice();
  layer.train(false);
  layer.zeroGrad();
  out["y (eval)"] = await layer.forward(k.xEval, [k.n, k.c], { keepForBackward: true });
  out["dx (eval)"] = await layer.backward(k.dy);
  for (const g of GRADS) out[`${g} (eval)`] = layer.grads[g].slice();
  layer.dispose();
  return out;
}

/**
 * 1e-4 (1e-5, 2e-5) times the size of the float32 terms summed into each output, in float64:
 * |dy gamma s| and the LN / BN terms' absolute sums for dx, |dy xhat| and |dy| summed for the
 * parameter gradients, |gm (mu_k - mu)| and |gv (var_k - var)| for the logits, |gamma| for y;
 * plus, for y, dgamma and mean_weight, the reference's own float64 rounding of the mixed mean.
 */
function termScales(k: Case, x: Float32Array, training: boolean, running: Outputs) {
  const { n, c, dy, weight } = k;
  const w = softmax(k.meanLogits), v = softmax(k.varLogits);
  const muL = new Float64Array(n), varL = new Float64Array(n);
  const muB = new Float64Array(c), varB = new Float64Array(c);
  const at = (i: number, j: number) => x[i * c + j];
  // Means as sums divided once, as the reference forms them (a sum of x / n rounds every term: a
  // constant column's variance came out ~1e-21, not 0).
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) muL[i] += at(i, j);
    muL[i] /= c;
    for (let j = 0; j < c; j++) varL[i] += (at(i, j) - muL[i]) ** 2 / (c - 1);
  }
  for (let j = 0; j < c; j++) {
    if (!training) {
      muB[j] = running.running_mean[j], varB[j] = running.running_var[j];
      continue;
    }
    for (let i = 0; i < n; i++) muB[j] += at(i, j);
    muB[j] /= n;
    for (let i = 0; i < n; i++) varB[j] += (at(i, j) - muB[j]) ** 2 / (n - 1);
  }
  const s = new Float64Array(n * c), yRound = new Float64Array(n * c);
  const xhAbs = new Float64Array(n * c);
  const gmL = new Float64Array(n), gvL = new Float64Array(n);
  const gmB = new Float64Array(c), gvB = new Float64Array(c);
  const dWeight = new Float64Array(c), dBias = new Float64Array(c);
  let dMean = 0, dVar = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) {
      const e = i * c + j, mu = w[0] * muL[i] + w[1] * muB[j];
      const variance = v[0] * varL[i] + v[1] * varB[j];
      s[e] = variance === Infinity ? 0 : 1 / Math.sqrt(variance + k.eps);
      const xh = (at(i, j) - mu) * s[e] || 0;
      xhAbs[e] = Math.abs(xh);
      // The reference's own float64 rounding of mu (w_ln mu_ln + w_bn mu_bn, as torch forms it),
      // absolute: where x - mu is far smaller than the means (a constant column under a mix of
      // weight ~1e-16 on its other term) it is the reference's error, which backends that form
      // mu about the heavier term (WebGPU) do not share (seeds 303, 370, 491 with --wide).
      const muRound = 2 ** -51 * (w[0] * Math.abs(muL[i]) + w[1] * Math.abs(muB[j]));
      const xhRound = muRound * s[e] || 0;
      const gm = s[e] * Math.abs(weight[j] * dy[e]), gv = 0.5 * s[e] * gm * Math.abs(xh);
      gmL[i] += gm, gvL[i] += gv, gmB[j] += gm, gvB[j] += gv;
      dWeight[j] += 1e-4 * Math.abs(dy[e] * xh) + Math.abs(dy[e]) * xhRound;
      dBias[j] += 1e-4 * Math.abs(dy[e]);
      dMean += 1e-4 * gm * (Math.abs(muL[i] - mu) + Math.abs(muB[j] - mu)) + 2 * gm * muRound;
      yRound[e] = Math.abs(weight[j]) * xhRound;
      dVar += 1e-4 * gv * (Math.abs(varL[i] - variance) + Math.abs(varB[j] - variance));
    }
  }
  const dx = new Float64Array(n * c),
    y = new Float64Array(n * c),
    runningMean = new Float64Array(c);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) {
      const e = i * c + j;
      let t = Math.abs(dy[e] * weight[j] * s[e]) + w[0] * gmL[i] / c +
        v[0] * gvL[i] * 2 * Math.abs(at(i, j) - muL[i]) / Math.max(c - 1, 1);
      if (training) {
        t += w[1] * gmB[j] / n +
          v[1] * gvB[j] * 2 * Math.abs(at(i, j) - muB[j]) / Math.max(n - 1, 1);
      }
      // y's terms gamma xhat and beta as the range tests' judge takes them (tests/_close.ts: the
      // term scale): where beta ~7.7e10 all but cancels gamma xhat (y 2.4e7), float32 rounds each
      // term ~4e3 off, as PyTorch's float32 forward would (seed 52607 with --wide, y 10x Y).
      dx[e] = 1e-4 * t,
        y[e] = 2e-5 * (Math.abs(weight[j]) * (1 + xhAbs[e]) + Math.abs(k.bias[j])) + yRound[e];
      runningMean[j] += 1e-5 * 0.003 * Math.abs(at(i, j)) / n;
    }
  }
  const both = (a: number) => Float64Array.of(a, a);
  return {
    y,
    dx,
    running_mean: runningMean,
    weight: dWeight,
    bias: dBias,
    mean_weight: both(dMean),
    var_weight: both(dVar),
  } as Record<string, Float64Array>;
}

/**
 * Elements whose y is 0 / 0 in exact arithmetic: the mix's variance + eps is 0 and x equals every
 * mean of nonzero weight (a constant sample and column with eps 0). The float64 reference forms mu
 * from rounded mixing weights, so its y there is NaN or +-Infinity by that rounding (README,
 * Numerics: not defined); WebGPU gives NaN. Such y, and the dgamma of their columns (sums of dy
 * times them), are counted apart, as tests/fuzz/nd_range_fuzz.ts does.
 */
function zeroOverZero(k: Case, x: Float32Array, training: boolean, running: Outputs): boolean[] {
  const { n, c, eps } = k;
  const w = softmax(k.meanLogits), v = softmax(k.varLogits);
  const at = (i: number, j: number) => x[i * c + j];
  const out: boolean[] = new Array(n * c).fill(false);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) {
      // Every term of nonzero weight is a constant equal to x: its variance is 0 and its mean x.
      const row = Array.from({ length: c }, (_, q) => at(i, q));
      const column = training
        ? Array.from({ length: n }, (_, q) => at(q, j))
        : [running.running_mean[j]];
      const flat = (vs: number[]) => vs.every((u) => u === at(i, j));
      const bnVar = training ? 0 : running.running_var[j];
      out[i * c + j] = eps === 0 && (w[0] === 0 || flat(row)) && (w[1] === 0 || flat(column)) &&
        (v[0] === 0 || flat(row)) && (v[1] === 0 || (flat(column) && bnVar === 0));
    }
  }
  return out;
}

/**
 * Worst float32Gap(got, want) / (atol + rtol |want|) (atol raised to `scale` where given; an
 * infinity judged as the values float32 rounds to it, |want| of an infinity FLOAT32_OVERFLOW, as
 * tests/_close.ts and tests/fuzz/nd_range_fuzz.ts judge it), the count of entries whose
 * non-finite kind differs beyond that bound (NaN for a number or a number for NaN, an infinity far
 * from the value expected), and of those that are 0 / 0 in exact arithmetic (`undefinedAt`: got
 * NaN, want an infinity), counted apart. (An excuse for every non-NaN result whose terms' float32
 * rounding, 6e-4 of the scale, passed 3.4e38, and a skip of every non-finite value, stood here:
 * float32Gap holds an infinity to the bound as a finite value, and a finite value for an
 * infinity too.)
 */
function compare(
  got: Float32Array,
  want: Float32Array,
  tol: Tolerance,
  scale?: Float64Array,
  undefinedAt: (i: number) => boolean = () => false,
) {
  let worst = 0, at = -1, kinds = 0, undefinedCount = 0;
  for (let i = 0; i < want.length; i++) {
    const e = want[i], a = got[i];
    if (Number.isNaN(a) && Math.abs(e) === Infinity && undefinedAt(i)) {
      undefinedCount++;
      continue;
    }
    if (Number.isNaN(a) || Number.isNaN(e)) {
      if (!(Number.isNaN(a) && Number.isNaN(e))) kinds++;
      continue;
    }
    const atol = scale ? Math.max(tol.atol, scale[i]) : tol.atol;
    const size = Number.isFinite(e) ? Math.abs(e) : FLOAT32_OVERFLOW;
    const ratio = float32Gap(a, e) / (atol + tol.rtol * size);
    if (ratio > 1 && (!Number.isFinite(a) || !Number.isFinite(e))) kinds++;
    if (ratio > worst) worst = ratio, at = i;
  }
  return { worst, at, kinds, undefinedCount };
}

const tolerance = (key: string) =>
  key.startsWith("y") ? Y : key.startsWith("running") ? RUNNING : GRAD;

const first = Number(args[0] ?? 1), count = Number(args[1] ?? 100);
let failing = 0;
for (let seed = first; seed < first + count; seed++) {
  const k = makeCase(seed);
  const want = await run(k, "reference"), got = await run(k, "webgpu");
  const scales = {
    training: termScales(k, k.x, true, want),
    evaluation: termScales(k, k.xEval, false, want),
  };
  const zeroOverZeros = {
    training: zeroOverZero(k, k.x, true, want),
    evaluation: zeroOverZero(k, k.xEval, false, want),
  };
  const lines: string[] = [];
  let hard = false;
  for (const key of Object.keys(want)) {
    const evaluation = key.endsWith("(eval)");
    const zz = zeroOverZeros[evaluation ? "evaluation" : "training"];
    const base = key.replace(" (eval)", "");
    // y of such an element, and dgamma of a column with one.
    const undefinedAt = base === "y"
      ? (i: number) => zz[i]
      : base === "weight"
      ? (j: number) => zz.some((z, e) => z && e % k.c === j)
      : () => false;
    const plain = compare(got[key], want[key], tolerance(key), undefined, undefinedAt);
    if (plain.undefinedCount) {
      lines.push(`  undefined ${key}: ${plain.undefinedCount} (0 / 0 in exact arithmetic)`);
    }
    if (plain.worst <= 1 && plain.kinds === 0) continue;
    const scale = scales[evaluation ? "evaluation" : "training"][base];
    const scaled = scale ? compare(got[key], want[key], tolerance(key), scale, undefinedAt) : plain;
    const bad = scaled.worst > 1 || scaled.kinds > 0;
    hard ||= bad;
    const where = plain.at >= 0
      ? ` [${plain.at}] ${got[key][plain.at]} vs ${want[key][plain.at]}`
      : "";
    lines.push(
      `  ${bad ? "HARD" : "scaled-ok"} ${key}: x${plain.worst.toPrecision(3)} ` +
        `(scaled x${scaled.worst.toPrecision(3)})${where}` +
        (plain.kinds ? `, ${plain.kinds} non-finite mismatches` : ""),
    );
  }
  if (hard || (ALL && lines.length > 0)) {
    if (hard) failing++;
    console.log(`seed ${seed} ${JSON.stringify(k.about)}\n${lines.join("\n")}`);
  }
}
console.log(`${failing} of ${count} cases differ beyond the scaled tolerance`);
