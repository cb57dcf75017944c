/**
 * SwitchNorm2d training forward and backward on the WASM backend, each beside its roofline kernel
 * of the same module (the same bytes moved with no math: forward, read x, then read x again and
 * write y; backward, read x and dy, then read both again and write dx) and the float64
 * reference. One group per shape and direction, the roofline as its baseline, so `deno bench`
 * prints each path's time as a multiple of the memory floor:
 *
 *   deno task bench            (deno bench --allow-read bench/)
 *
 * - "wasm kernel, resident": `layer.forward(t, { out })` on tensors already in WASM memory, the
 *   cost a chain of layers pays per layer (target <= 1.5x roofline).
 * - "wasm Float32Array in/out": `layer.forward(x, shape)`, which also copies x in and y out
 *   (target <= 2.5x roofline); "... into out" reuses the caller's output array.
 * - "the two copies alone": `Float32Array.prototype.set` of x into linear memory and of y out of
 *   it, the least any Float32Array path pays on top of the kernel (V8's copy of a tensor from
 *   one ArrayBuffer to another moves bytes about as fast as the roofline kernel does).
 * - "reference": plain TypeScript, float64; few iterations, it is slow.
 * - backward groups ("... backward"): `layer.backward(dy)` after one training forward kept x and
 *   the statistics; resident (dy a tensor, dx a new tensor freed each time; target <= 1.5x its
 *   roofline) and Float32Array (copies x and dy in and dx out).
 *
 * All of the above runs on one thread (setNumThreads(1)); the "threads" groups at the end compare
 * 1 and 2 threads (SwitchNorm1d too: "1d ... threads").
 */
import { setNumThreads, SwitchNorm1d, SwitchNorm2d } from "../mod.ts";
import { chooseBackend } from "../backends/select.ts";
import { loadWasmBackend, WasmBackend, type WasmTensor } from "../backends/wasm.ts";
import { setThreadTestHooks } from "../backends/_wasm_threads.ts";
import type { SavedForward } from "../backends/_backend.ts";

const SHAPES = [
  [8, 64, 56, 56],
  [32, 256, 14, 14],
  [2, 32, 128, 128],
  [64, 512, 7, 7],
] as const;

/** Deterministic activations: unit-ish spread around a per-channel offset, as after a conv. */
function activations(shape: readonly number[], seed = 12345): Float32Array {
  const [, c, h, w] = shape, m = h * w;
  let s = seed;
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return ((Math.floor(i / m) % c) % 7) - 3 + s / 2147483648 - 0.5;
  });
}

// Loaded at 2 threads, so that the backend is the threads build (the "threads" groups need it);
// then 1 for everything up to those groups.
setNumThreads(2);
const { backend } = await chooseBackend("wasm");
setNumThreads(1);
if (!(backend instanceof WasmBackend)) throw new Error("bench: expected the WASM backend");
const wasm = backend;

for (const shape of SHAPES) {
  const group = `[${shape.join(",")}]`;
  const x = activations(shape);
  const y = new Float32Array(x.length);
  const sn = new SwitchNorm2d(shape[1], { backend: "wasm" });
  const ref = new SwitchNorm2d(shape[1], { backend: "reference" });
  // Upload through the layer, so the tensors live in the backend instance the layer runs on.
  const xt = await sn.upload(x, shape) as WasmTensor;
  const yt = await sn.upload(y, shape) as WasmTensor;

  Deno.bench({
    name: "roofline (read x; read x, write y)",
    group,
    baseline: true,
    fn() {
      wasm.roofline(xt, yt);
    },
  });
  Deno.bench({
    name: "wasm kernel, resident",
    group,
    async fn() {
      await sn.forward(xt, { out: yt });
    },
  });
  Deno.bench({
    name: "wasm Float32Array in/out",
    group,
    async fn() {
      await sn.forward(x, shape);
    },
  });
  Deno.bench({
    name: "wasm Float32Array into out",
    group,
    async fn() {
      await sn.forward(x, shape, { out: y });
    },
  });
  Deno.bench({
    name: "the two copies alone (x in, y out; no kernel)",
    group,
    fn() {
      xt.data.set(x);
      y.set(yt.data);
    },
  });
  Deno.bench({
    name: "reference (float64 TypeScript)",
    group,
    n: 3,
    warmup: 1,
    async fn() {
      await ref.forward(x, shape);
    },
  });
}

for (const shape of SHAPES) {
  const group = `[${shape.join(",")}] backward`;
  const x = activations(shape), dy = activations(shape, 777).map((v) => v * 0.1);
  const sn = new SwitchNorm2d(shape[1], { backend: "wasm" });
  const ref = new SwitchNorm2d(shape[1], { backend: "reference" });
  const xt = await sn.upload(x, shape) as WasmTensor;
  const dyt = await sn.upload(dy, shape) as WasmTensor;
  const dxt = await sn.upload(new Float32Array(x.length), shape) as WasmTensor;
  // One layer per path: backward differentiates that layer's last forward, again and again
  // (retainGraph: a second backward through one forward is refused otherwise).
  const plain = new SwitchNorm2d(shape[1], { backend: "wasm" });
  await sn.forward(xt, { out: await sn.upload(new Float32Array(x.length), shape) });
  await plain.forward(x, shape);
  await ref.forward(x, shape);

  Deno.bench({
    name: "roofline (read x, dy; read x, dy, write dx)",
    group,
    baseline: true,
    fn() {
      wasm.rooflineBackward(xt, dyt, dxt);
    },
  });
  Deno.bench({
    name: "wasm backward, resident",
    group,
    async fn() {
      (await sn.backward(dyt, { retainGraph: true })).dispose();
    },
  });
  Deno.bench({
    name: "wasm backward, Float32Array in/out",
    group,
    async fn() {
      await plain.backward(dy, { retainGraph: true });
    },
  });
  const dxOut = new Float32Array(dy.length);
  Deno.bench({
    name: "wasm backward, Float32Array into out",
    group,
    async fn() {
      await plain.backward(dy, { retainGraph: true, out: dxOut });
    },
  });
  Deno.bench({
    name: "reference backward (float64 TypeScript)",
    group,
    n: 3,
    warmup: 1,
    async fn() {
      await ref.backward(dy, { retainGraph: true });
    },
  });
}

// Threads. Each group interleaves 1 and 2 threads on one layer (setNumThreads before each call,
// process-wide), resident and Float32Array, forward and backward, on the four shapes and on two
// DRAM-sized ones (long rows, short rows). Figures mean something only where the second core is
// free: run a compute-only two-thread control beside them (README, performance).
const THREAD_SHAPES = [...SHAPES, [32, 256, 56, 56], [512, 256, 7, 7]] as const;
setNumThreads(2);
await wasm.threadsReady();
setNumThreads(1);
for (const shape of THREAD_SHAPES) {
  const group = `[${shape.join(",")}] threads`;
  const x = activations(shape), dy = activations(shape, 777).map((v) => v * 0.1);
  const out = new Float32Array(x.length), dxOut = new Float32Array(x.length);
  const sn = new SwitchNorm2d(shape[1], { backend: "wasm" });
  const plain = new SwitchNorm2d(shape[1], { backend: "wasm" });
  const xt = await sn.upload(x, shape) as WasmTensor;
  const yt = await sn.upload(out, shape) as WasmTensor;
  const dyt = await sn.upload(dy, shape) as WasmTensor;
  for (const threads of [1, 2]) {
    Deno.bench({
      name: `${threads} thread${threads > 1 ? "s" : ""}: forward, resident`,
      group,
      baseline: threads === 1,
      async fn() {
        setNumThreads(threads);
        await sn.forward(xt, { out: yt });
      },
    });
    Deno.bench({
      name: `${threads} thread${threads > 1 ? "s" : ""}: forward, Float32Array into out`,
      group,
      async fn() {
        setNumThreads(threads);
        await plain.forward(x, shape, { out });
      },
    });
    Deno.bench({
      name: `${threads} thread${threads > 1 ? "s" : ""}: backward, resident`,
      group,
      async fn(b) {
        setNumThreads(threads);
        await sn.forward(xt, { out: yt });
        b.start();
        (await sn.backward(dyt)).dispose();
        b.end();
      },
    });
    Deno.bench({
      name: `${threads} thread${threads > 1 ? "s" : ""}: backward, Float32Array into out`,
      group,
      async fn(b) {
        setNumThreads(threads);
        await plain.forward(x, shape, { out });
        b.start();
        await plain.backward(dy, { out: dxOut });
        b.end();
      },
    });
  }
}

// SwitchNorm1d on 1 and 2 threads, resident: N large and C small (statistics in blocks of rows,
// backward tiles of rows), C = 1024 (blocks, with more per-block sums to merge), C large and N
// small (column tiles).
for (const shape of [[16384, 64], [4096, 1024], [64, 16384]] as const) {
  const group = `1d [${shape.join(",")}] threads`;
  const [n, c] = shape;
  let s = 99;
  const x = Float32Array.from({ length: n * c }, (_, i) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (i % c % 7) - 3 + s / 2147483648;
  });
  const sn = new SwitchNorm1d(c, { backend: "wasm" });
  const xt = await sn.upload(x, shape) as WasmTensor;
  const yt = await sn.upload(new Float32Array(x.length), shape) as WasmTensor;
  const dyt = await sn.upload(x.map((v) => 0.1 * v), shape) as WasmTensor;
  for (const threads of [1, 2]) {
    Deno.bench({
      name: `1d, ${threads} thread${threads > 1 ? "s" : ""}: forward, resident`,
      group,
      baseline: threads === 1,
      async fn() {
        setNumThreads(threads);
        await sn.forward(xt, { out: yt });
      },
    });
    Deno.bench({
      name: `1d, ${threads} thread${threads > 1 ? "s" : ""}: backward, resident`,
      group,
      async fn(b) {
        setNumThreads(threads);
        await sn.forward(xt, { out: yt });
        b.start();
        (await sn.backward(dyt)).dispose();
        b.end();
      },
    });
  }
}

// The two builds on one thread: the single-threaded module (what runs where threads cannot) and
// the shared-memory one, through the backend API (no layer), resident, training forward + backward.
setThreadTestHooks({ missing: "Worker" });
const single = await loadWasmBackend();
setThreadTestHooks(undefined);
for (const shape of SHAPES) {
  const group = `[${shape.join(",")}] builds, 1 thread`;
  const [n, c, h, w] = shape, m = h * w;
  const x = activations(shape), dy = activations(shape, 777).map((v) => v * 0.1);
  const problem = { layout: "nd" as const, n, c, m, training: true, usingBN: true, eps: 1e-5 };
  const params = {
    layerId: 77,
    weight: new Float32Array(c).fill(1),
    bias: new Float32Array(c),
    meanMix: new Float64Array([1 / 3, 1 / 3, 1 / 3]),
    varMix: new Float64Array([1 / 3, 1 / 3, 1 / 3]),
    runningMean: new Float32Array(c),
    runningVar: new Float32Array(c).fill(1),
    version: 0,
  };
  const builds = [["single-threaded build", single], ["threads build on 1 thread", wasm]] as const;
  for (const [name, b] of builds) {
    const xt = b.upload(x, shape), yt = b.upload(x, shape), dyt = b.upload(dy, shape);
    Deno.bench({
      name: `${name}: forward + backward, resident`,
      group,
      baseline: b === single,
      async fn() {
        setNumThreads(1);
        const save: SavedForward = {};
        await b.forward(problem, xt, params, { kind: "movingAverage", momentum: 0.1 }, yt, save);
        ((await b.backward(save, dyt, params)).dx as WasmTensor).dispose();
      },
    });
  }
}
