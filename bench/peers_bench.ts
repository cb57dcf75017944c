/**
 * SwitchNorm2d's training forward beside the normalization ops a JavaScript user would otherwise
 * reach for: TensorFlow.js (WASM backend, and the pure-JavaScript CPU backend) and
 * onnxruntime-web (its WASM execution provider). One group per shape of bench/wasm_bench.ts, our
 * Float32Array path as the baseline, so `deno bench` prints each peer as a multiple of it:
 *
 *   deno bench --no-lock --allow-read bench/peers_bench.ts
 *   PEERS_ORT_THREADS=2 deno bench --no-lock --allow-read --allow-env bench/peers_bench.ts
 *
 * `--allow-read` is all the peers need (they load their .wasm files from Deno's npm cache).
 * `--no-lock` keeps Deno from writing a deno.lock for the npm packages; the first run downloads
 * the pinned packages from npm. The second line runs onnxruntime-web with two threads: its thread
 * count is fixed when its WASM module starts, so it takes a run of its own (on the 2-core machine
 * it made no difference: ~6 ms either way at [8,64,56,56]); our layer then runs on as many threads
 * (setNumThreads). A whole run takes about a minute.
 * Before registering anything, the file checks that every peer computes what our layer computes,
 * prints the differences, and throws if one is off.
 *
 * What each entry computes, per (n, c) row of M = H*W values, Float32Array in and out:
 *
 * - "switchnorm wasm ...": `new SwitchNorm2d(C, { backend: "wasm" })` in training mode, loaded
 *   with importance logits [30, -30, -30] for means and variances, so that softmax puts all but
 *   ~1e-26 of the weight on IN: the layer becomes instance normalization plus its affine. It still
 *   computes the IN, LN and BN statistics, mixes them and updates the running buffers, exactly as
 *   with any other weights (the kernel has no IN-only shortcut), so it does more work than the
 *   peers. "into out": `forward(x, shape, { out })`, copying x into WASM memory and y out;
 *   "resident": `forward(xt, { out: yt })` on tensors from `upload`, no copies.
 * - "tfjs-wasm ...", "tfjs-cpu ...": TensorFlow.js has no instance-norm op, and `tf.batchNorm`
 *   broadcasts its statistics along the innermost axis only (it would need NHWC and per-channel
 *   statistics), so the per-(n, c) normalization is written with broadcasting ops:
 *   `tf.moments(x, [2, 3], true)` (mean, then squaredDifference and mean: biased variance), the
 *   [N,C,1,1] scale gamma * rsqrt(var + eps) and shift beta - mean * scale, then
 *   `x * scale + shift`: two full-size ops after the statistics, fewer than `(x - mean) * ...`.
 *   "Float32Array in/out": `tf.tensor4d(x)` (the WASM backend copies x into its heap; the CPU
 *   backend keeps a reference to the array), the ops inside `tf.tidy`, `dataSync()` (a copy)
 *   and `dispose()`. "resident": the input tensor made once, no readback (y disposed). Both
 *   backends compute synchronously.
 * - "onnxruntime-web ...": a model of one ONNX InstanceNormalization node (opset 13; scale and B as
 *   initializers, fixed input shape), built below as protobuf bytes, run by
 *   `InferenceSession.create(bytes, { executionProviders: ["wasm"] })` with
 *   `ort.env.wasm.numThreads = 1`: `session.run({ x: new ort.Tensor("float32", x, shape) })`,
 *   reading `.data` of the output (ORT copies x in and y out). A pre-allocated output tensor
 *   (`run(feeds, { y })`) is not benched: with the WASM EP of 1.30.0 it came back unfilled (zeros).
 *
 * These are the fair counterparts because SN configured as IN computes the same function as
 * InstanceNormalization / moments-and-normalize, and each entry is what a user of that library
 * would write, with the same data movement (Float32Array in and out, or tensors kept resident).
 *
 * Variants that ran (Deno 2.9.6; printed at start): tfjs-core sees Deno as Node.js, so the WASM
 * backend loads tfjs-backend-wasm-simd.wasm from the npm package through `fs` (no
 * `setWasmPaths` needed) and is single-threaded SIMD: tfjs reports multithreading unsupported
 * under Node. Forcing the threaded build (IS_NODE false, WASM_HAS_MULTITHREAD_SUPPORT true,
 * setWasmPaths) fails in Deno: emscripten creates its pthread worker through `worker_threads`
 * from a blob: URL, which Deno rejects (ERR_WORKER_PATH). onnxruntime-web 1.30.0 resolves to its
 * Node build (ort.node.min.mjs) and runs ort-wasm-simd-threaded.wasm, SIMD, with one thread (also
 * its own default here: it picks 1 thread when `self.crossOriginIsolated` is not set).
 * Our layer is single-threaded WASM SIMD. tfjs-node (native TensorFlow) is not tried: it
 * downloads libtensorflow in an install script.
 *
 * Caveats:
 * - SN uses the unbiased per-(n, c) variance (sum / (M - 1)), as the authors' PyTorch code does;
 *   InstanceNormalization and tf.moments use the biased one (sum / M). The outputs then differ by
 *   a factor ~sqrt((M - 1) / M) on (y - beta), about 1% at M = 49; the check corrects the peers'
 *   outputs by sqrt((var_b + eps) / (var_u + eps)) per row (float64 statistics of x) before
 *   comparing, and prints the raw difference too.
 * - SN computes IN, LN and BN statistics, mixes them and updates the running mean and variance:
 *   more work than IN alone, which is all the peers do (little per element: the LN and BN
 *   statistics are derived from the per-(n, c) moments, O(N*C) work).
 * - Our numbers are those of whatever the working tree's WASM module is at the time of the run.
 * - The tensors (<= 6.4 MB) stay in cache between iterations; the machine is shared and noisy:
 *   compare ratios within one run.
 */
// Pinned inline: these are bench-only peers, deliberately not dependencies in deno.json.
// deno-lint-ignore no-import-prefix
import * as tf from "npm:@tensorflow/tfjs-core@4.22.0";
// deno-lint-ignore no-import-prefix
import "npm:@tensorflow/tfjs-backend-cpu@4.22.0";
// deno-lint-ignore no-import-prefix
import { getThreadsCount } from "npm:@tensorflow/tfjs-backend-wasm@4.22.0";
// deno-lint-ignore no-import-prefix
import * as ort from "npm:onnxruntime-web@1.30.0";
import { setNumThreads, SwitchNorm2d } from "../mod.ts";
import type { WasmTensor } from "../backends/wasm.ts";

const SHAPES = [
  [8, 64, 56, 56],
  [32, 256, 14, 14],
  [2, 32, 128, 128],
  [64, 512, 7, 7],
] as const;
const EPS = 1e-5;
/** Importance logits putting all the weight (softmax ~ [1, 1e-26, 1e-26]) on IN. */
const IN_ONLY = [30, -30, -30];

/** Deterministic activations: unit-ish spread around a per-channel offset, as after a conv. */
function activations(shape: readonly number[], seed = 12345): Float32Array {
  const [, c, h, w] = shape, m = h * w;
  let s = seed;
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return ((Math.floor(i / m) % c) % 7) - 3 + s / 2147483648 - 0.5;
  });
}

// --- A minimal ONNX (protobuf) writer: just the fields one InstanceNormalization model needs. ---
// Protobuf wire format: each field is a varint key (field number << 3 | wire type), then a varint
// (type 0), 4 little-endian bytes (type 5), or a varint length and that many bytes (type 2).
type Bytes = number[];
const utf8 = new TextEncoder();
function varint(v: number): Bytes {
  const b: Bytes = [];
  for (; v > 127; v = Math.floor(v / 128)) b.push((v % 128) | 128);
  return [...b, v];
}
const int = (field: number, v: number): Bytes => [...varint(field << 3), ...varint(v)];
const len = (field: number, p: ArrayLike<number>): Bytes => [
  ...varint((field << 3) | 2),
  ...varint(p.length),
  ...Array.from(p),
];
const str = (field: number, s: string): Bytes => len(field, utf8.encode(s));
const f32 = (field: number, v: number): Bytes => [
  ...varint((field << 3) | 5),
  ...new Uint8Array(Float32Array.of(v).buffer),
];
/** ValueInfoProto{name=1, type=2: TypeProto{tensor_type=1: {elem_type=1 (FLOAT), shape=2}}}. */
function valueInfo(name: string, dims: readonly number[]): Bytes {
  const shape = dims.flatMap((d) => len(1, int(1, d))); // TensorShapeProto.dim{dim_value=1}
  return [...str(1, name), ...len(2, len(1, [...int(1, 1), ...len(2, shape)]))];
}
/** TensorProto{dims=1, data_type=2 (1: FLOAT), name=8, raw_data=9 (little-endian floats)}. */
function initializer(name: string, a: Float32Array): Bytes {
  return [
    ...int(1, a.length),
    ...int(2, 1),
    ...str(8, name),
    ...len(9, new Uint8Array(a.buffer, a.byteOffset, a.byteLength)),
  ];
}
/** ModelProto of y = InstanceNormalization(x, scale, B) with a fixed shape [N,C,H,W]. */
function instanceNormModel(
  shape: readonly number[],
  gamma: Float32Array,
  beta: Float32Array,
  eps: number,
): Uint8Array {
  // NodeProto{input=1, output=2, op_type=4, attribute=5: AttributeProto{name=1, f=2, type=20}}
  const epsilon = [...str(1, "epsilon"), ...f32(2, eps), ...int(20, 1)];
  const node = [
    ...["x", "scale", "B"].flatMap((i) => str(1, i)),
    ...str(2, "y"),
    ...str(4, "InstanceNormalization"),
    ...len(5, epsilon),
  ];
  // GraphProto{node=1, name=2, initializer=5, input=11, output=12}
  const graph = [
    ...len(1, node),
    ...str(2, "instance_norm"),
    ...len(5, initializer("scale", gamma)),
    ...len(5, initializer("B", beta)),
    ...len(11, valueInfo("x", shape)),
    ...len(12, valueInfo("y", shape)),
  ];
  // ModelProto{ir_version=1 (8), graph=7, opset_import=8: {domain=1 "", version=2 (13)}}
  return new Uint8Array([
    ...int(1, 8),
    ...len(7, graph),
    ...len(8, [...str(1, ""), ...int(2, 13)]),
  ]);
}

// --- Peers' setup. ---
await tf.setBackend("cpu");
tf.env().set("PROD", true); // no "install tfjs-node" banner; production mode
if (!(await tf.setBackend("wasm"))) throw new Error("peers_bench: tfjs wasm backend failed");
const tfWasmInfo = `tfjs-backend-wasm 4.22.0: SIMD ${tf.env().getBool("WASM_HAS_SIMD_SUPPORT")}, ` +
  `multithread support ${tf.env().getBool("WASM_HAS_MULTITHREAD_SUPPORT")}, ` +
  `threads ${getThreadsCount()}`;
// Read only with --allow-env, so that `deno task bench` (--allow-read alone) can run this file too.
const ortThreadsVar = { name: "env", variable: "PEERS_ORT_THREADS" } as const;
const ortThreads = Deno.permissions.querySync(ortThreadsVar).state === "granted"
  ? Number(Deno.env.get("PEERS_ORT_THREADS") ?? 1)
  : 1;
ort.env.wasm.numThreads = ortThreads;
// Ours on as many threads as onnxruntime-web's, so that the groups compare like with like.
setNumThreads(ortThreads);

/** Switches tfjs's global backend (a no-op when it is already `name`). */
async function useTf(name: "wasm" | "cpu"): Promise<void> {
  if (tf.getBackend() !== name) await tf.setBackend(name);
}

/** Instance norm in tfjs ops, statistics per (n, c) over H, W; biased variance. */
function tfInstanceNorm(x: tf.Tensor4D, gamma: tf.Tensor4D, beta: tf.Tensor4D): tf.Tensor4D {
  const { mean, variance } = tf.moments(x, [2, 3], true);
  const scale = tf.mul(gamma, tf.rsqrt(tf.add(variance, EPS)));
  return tf.add(tf.mul(x, scale), tf.sub(beta, tf.mul(mean, scale)));
}

interface TfPeer {
  /** Float32Array in, Float32Array out. */
  run(x: Float32Array): Float32Array;
  gamma: tf.Tensor4D;
  beta: tf.Tensor4D;
}
/** gamma and beta made as tensors of `backend`, so that no op moves them between backends. */
async function tfPeer(
  backend: "wasm" | "cpu",
  shape: readonly number[],
  gamma: Float32Array,
  beta: Float32Array,
): Promise<TfPeer> {
  await useTf(backend);
  const [n, c, h, w] = shape;
  const g = tf.tensor4d(gamma, [1, c, 1, 1]), b = tf.tensor4d(beta, [1, c, 1, 1]);
  return {
    gamma: g,
    beta: b,
    run(x) {
      const y = tf.tidy(() => tfInstanceNorm(tf.tensor4d(x, [n, c, h, w]), g, b));
      const out = y.dataSync() as Float32Array;
      y.dispose();
      return out;
    },
  };
}

// --- Correctness: every peer against our layer configured as IN. ---

/** Per-row float64 statistics of x: mean, biased and unbiased variance. */
function rowStats(x: Float32Array, rows: number, m: number) {
  const mean = new Float64Array(rows), vb = new Float64Array(rows), vu = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0, q = 0;
    for (let i = r * m; i < (r + 1) * m; i++) s += x[i];
    mean[r] = s / m;
    for (let i = r * m; i < (r + 1) * m; i++) q += (x[i] - mean[r]) ** 2;
    vb[r] = q / m;
    vu[r] = q / (m - 1);
  }
  return { mean, vb, vu };
}

const fmt = (v: number) => v.toExponential(1);
console.log(
  `${tfWasmInfo}; onnxruntime-web ${ort.env.versions.web}: wasm EP, ` +
    `numThreads ${ort.env.wasm.numThreads}`,
);
console.log(
  "check: max |diff| vs our layer as IN (raw: biased variance; corr.: rescaled to unbiased)",
);

interface Setup {
  shape: readonly number[];
  x: Float32Array;
  sn: SwitchNorm2d;
  tfWasm: TfPeer;
  tfCpu: TfPeer;
  session: ort.InferenceSession;
}
const setups: Setup[] = [];
for (const shape of SHAPES) {
  const [n, c, h, w] = shape, m = h * w, rows = n * c;
  const x = activations(shape);
  const gamma = Float32Array.from({ length: c }, (_, i) => 1 + 0.25 * Math.sin(i));
  const beta = Float32Array.from({ length: c }, (_, i) => 0.1 * Math.cos(i));
  const sn = new SwitchNorm2d(c, { backend: "wasm" });
  sn.loadStateDict({
    weight: gamma,
    bias: beta,
    mean_weight: IN_ONLY,
    var_weight: IN_ONLY,
    running_mean: new Float32Array(c),
    running_var: new Float32Array(c).fill(1),
  });
  const ours = await sn.forward(x, shape);

  // The exact function, float64: unbiased IN plus the affine.
  const { mean, vb, vu } = rowStats(x, rows, m);
  const k = vb.map((v, r) => Math.sqrt((v + EPS) / (vu[r] + EPS)));
  let exact = 0;
  for (let i = 0; i < x.length; i++) {
    const r = Math.floor(i / m), ch = r % c;
    const want = (x[i] - mean[r]) / Math.sqrt(vu[r] + EPS) * gamma[ch] + beta[ch];
    exact = Math.max(exact, Math.abs(ours[i] - want));
  }
  /** Max raw and corrected |peer - ours|; corrected: (y - beta) * sqrt((vb+eps)/(vu+eps)). */
  const compare = (y: Float32Array): string => {
    let raw = 0, corr = 0;
    for (let i = 0; i < y.length; i++) {
      const r = Math.floor(i / m), b = beta[r % c];
      raw = Math.max(raw, Math.abs(y[i] - ours[i]));
      corr = Math.max(corr, Math.abs((y[i] - b) * k[r] + b - ours[i]));
    }
    if (!(corr < 5e-4)) throw new Error(`peers_bench: a peer differs by ${corr} (corrected)`);
    return `${fmt(raw)} / ${fmt(corr)}`;
  };

  const tfWasm = await tfPeer("wasm", shape, gamma, beta);
  const tfCpu = await tfPeer("cpu", shape, gamma, beta);
  const session = await ort.InferenceSession.create(instanceNormModel(shape, gamma, beta, EPS), {
    executionProviders: ["wasm"],
  });
  const ortY = (await session.run({ x: new ort.Tensor("float32", x, [...shape]) })).y
    .data as Float32Array;
  await useTf("wasm");
  const wasmY = tfWasm.run(x);
  await useTf("cpu");
  const cpuY = tfCpu.run(x);
  console.log(
    `  [${shape.join(",")}] M=${m}: ours vs float64 ${fmt(exact)}; raw / corr.: ` +
      `tfjs-wasm ${compare(wasmY)}, tfjs-cpu ${compare(cpuY)}, onnxruntime-web ${compare(ortY)}`,
  );
  setups.push({ shape, x, sn, tfWasm, tfCpu, session });
}

// --- Benches. ---
for (const { shape, x, sn, tfWasm, tfCpu, session } of setups) {
  const group = `[${shape.join(",")}]`;
  const y = new Float32Array(x.length);
  const xt = await sn.upload(x, shape) as WasmTensor;
  const yt = await sn.upload(y, shape) as WasmTensor;
  await useTf("wasm");
  const xWasm = tf.tensor4d(x, [...shape] as [number, number, number, number]);
  const dims = [...shape];

  Deno.bench({
    name: "switchnorm wasm, Float32Array into out",
    group,
    baseline: true,
    async fn() {
      await sn.forward(x, shape, { out: y });
    },
  });
  Deno.bench({
    name: "switchnorm wasm, resident",
    group,
    async fn() {
      await sn.forward(xt, { out: yt });
    },
  });
  Deno.bench({
    name: "tfjs-wasm, Float32Array in/out",
    group,
    async fn() {
      await useTf("wasm");
      tfWasm.run(x);
    },
  });
  Deno.bench({
    name: "tfjs-wasm, resident input, no readback",
    group,
    async fn() {
      await useTf("wasm");
      tf.tidy(() => tfInstanceNorm(xWasm, tfWasm.gamma, tfWasm.beta)).dispose();
    },
  });
  Deno.bench({
    name: `onnxruntime-web wasm (${ortThreads} thread${ortThreads > 1 ? "s" : ""}), ` +
      "Float32Array in/out",
    group,
    async fn() {
      const out = await session.run({ x: new ort.Tensor("float32", x, dims) });
      out.y.data;
    },
  });
  Deno.bench({
    name: "tfjs-cpu (pure JS), Float32Array in/out",
    group,
    n: 10,
    warmup: 2,
    async fn() {
      await useTf("cpu");
      tfCpu.run(x);
    },
  });
}
