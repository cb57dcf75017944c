/**
 * WebGPU benchmark: SN forward GPU time beside a WGSL kernel that moves the same bytes (read the
 * tensor twice, write it once; shaders/bench_copy.wgsl), their ratio per shape; the same for the
 * backward (x and dy read twice, dx written once; shaders/bench_copy_backward.wgsl); and the end-to-end
 * crossover size against WASM (Float32Array in, Float32Array out, upload and readback included):
 *
 *   deno task bench:webgpu            print the figures
 *   deno task bench:webgpu --write    also record them, and the rule they give, in crossover.json
 *
 * GPU times come from timestamp queries where the adapter offers timestamp-query (a pass's begin
 * and end), else from wall time to onSubmittedWorkDone. The rule a run gives (bench/_auto_rule.ts):
 * the crossover, where one was measured on a real GPU; otherwise auto never takes WebGPU by itself.
 * backends/select.ts's WEBGPU_AUTO must equal the recorded rule (tests/webgpu_select_test.ts
 * checks), so a run that gives another one says so, and after `--write` WEBGPU_AUTO is updated by
 * hand.
 * `deno bench` loads this file but runs nothing (import.meta.main).
 */
import type {
  LayerParams,
  NormProblem,
  ResidentTensor,
  RunningUpdate,
  SavedForward,
} from "../backends/_backend.ts";
import { loadWebGpuBackend, type WebGpuBackend } from "../backends/webgpu.ts";
import { grid } from "../backends/_webgpu_plan.ts";
import { WEBGPU_AUTO } from "../backends/select.ts";
import { autoRuleFrom, crossoverOf } from "./_auto_rule.ts";
import { SwitchNorm2d } from "../mod.ts";
import { BENCH_COPY, BENCH_COPY_BACKWARD } from "../shaders/_wgsl.ts";

/** The shapes of the issue: [N, C, H, W]. */
const SHAPES = [
  [8, 64, 56, 56],
  [32, 256, 14, 14],
  [2, 32, 128, 128],
  [64, 512, 7, 7],
] as const;

/** Spatial sides of [4, 16, s, s] for the end-to-end crossover sweep (4Ki .. 4Mi elements). */
const SWEEP_SIDES = [16, 32, 64, 128, 256, 512];

function activations(length: number, seed = 1): Float32Array<ArrayBuffer> {
  let s = seed;
  return Float32Array.from({ length }, (_, i) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (i % 7) - 3 + s / 2147483648 - 0.5;
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** GPU time in ms of each of `reps` passes recorded by `record`, one submit for all. */
async function gpuTimes(
  b: WebGpuBackend,
  reps: number,
  record: (pass: GPUComputePassEncoder) => () => void,
): Promise<{ ms: number[]; clock: "timestamps" | "wall" }> {
  const device = b.device;
  if (device.features.has("timestamp-query")) {
    const querySet = device.createQuerySet({ type: "timestamp", count: 2 * reps });
    const resolve = device.createBuffer({
      size: 16 * reps,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const read = device.createBuffer({
      size: 16 * reps,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = device.createCommandEncoder();
    const cleanups = [];
    for (let i = 0; i < reps; i++) {
      const pass = enc.beginComputePass({
        timestampWrites: {
          querySet,
          beginningOfPassWriteIndex: 2 * i,
          endOfPassWriteIndex: 2 * i + 1,
        },
      });
      cleanups.push(record(pass));
      pass.end();
    }
    enc.resolveQuerySet(querySet, 0, 2 * reps, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, read, 0, 16 * reps);
    device.queue.submit([enc.finish()]);
    cleanups.forEach((f) => f());
    await b.ctx.guard(read.mapAsync(GPUMapMode.READ));
    const t = new BigUint64Array(read.getMappedRange());
    const ms = Array.from({ length: reps }, (_, i) => Number(t[2 * i + 1] - t[2 * i]) / 1e6);
    read.unmap();
    for (const x of [read, resolve]) x.destroy();
    querySet.destroy();
    return { ms, clock: "timestamps" };
  }
  const ms = [];
  for (let i = 0; i < reps; i++) {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    const cleanup = record(pass);
    pass.end();
    const t0 = performance.now();
    device.queue.submit([enc.finish()]);
    cleanup();
    await b.ctx.guard(device.queue.onSubmittedWorkDone());
    ms.push(performance.now() - t0);
  }
  return { ms, clock: "wall" };
}

function params(c: number): LayerParams {
  return {
    layerId: -1,
    weight: new Float32Array(c).fill(1),
    bias: new Float32Array(c),
    meanMix: Float64Array.of(1 / 3, 1 / 3, 1 / 3),
    varMix: Float64Array.of(1 / 3, 1 / 3, 1 / 3),
    runningMean: new Float32Array(c),
    runningVar: new Float32Array(c).fill(1),
    version: 0,
    runningVersion: 0,
  };
}

/** SN (training, moving average) vs the copy kernel on one shape. */
async function kernelRow(b: WebGpuBackend, shape: readonly number[], reps: number) {
  const [n, c, h, w] = shape, total = n * c * h * w, device = b.device;
  const problem: NormProblem = {
    layout: "nd",
    n,
    c,
    m: h * w,
    training: true,
    usingBN: true,
    eps: 1e-5,
  };
  const update: RunningUpdate = { kind: "movingAverage", momentum: 0.9 };
  const p = params(c);
  using x = b.upload(activations(total), shape);
  using y = b.upload(new Float32Array(total), shape);
  using x2 = b.upload(activations(total, 2), shape);
  const copy = device.createComputePipeline({
    layout: "auto",
    compute: { module: device.createShaderModule({ code: BENCH_COPY }), entryPoint: "main" },
  });
  const copyGroup = device.createBindGroup({
    layout: copy.getBindGroupLayout(0),
    entries: [x, x2, y].map((t, binding) => ({ binding, resource: { buffer: t.buffer } })),
  });
  const sn = (pass: GPUComputePassEncoder) =>
    b.encodeForward(pass, problem, x.buffer, y.buffer, p, update);
  const cp = (pass: GPUComputePassEncoder) => {
    pass.setPipeline(copy);
    pass.setBindGroup(0, copyGroup);
    pass.dispatchWorkgroups(...grid(Math.ceil(total / 4 / 256)));
    return () => {};
  };
  await gpuTimes(b, 1, sn); // warm-up: first-use costs out of the figures
  await gpuTimes(b, 1, cp);
  const s = await gpuTimes(b, reps, sn), k = await gpuTimes(b, reps, cp);
  const snMs = median(s.ms), copyMs = median(k.ms);
  return {
    shape: `[${shape.join(",")}]`,
    mb: (total * 4) / 2 ** 20,
    snMs,
    copyMs,
    ratio: snMs / copyMs,
    clock: s.clock,
  };
}

/**
 * SN backward (training: the BN sums flow back into dx) vs the backward's copy kernel on one
 * shape: every backward dispatch (the pass over x and dy, the combine, the dx maps and the dx
 * pass) in one timed compute pass, against one kernel that reads x, dy and copies of both and
 * writes dx, the least traffic any backward has.
 */
async function backwardRow(b: WebGpuBackend, shape: readonly number[], reps: number) {
  const [n, c, h, w] = shape, total = n * c * h * w, device = b.device;
  const problem: NormProblem = {
    layout: "nd",
    n,
    c,
    m: h * w,
    training: true,
    usingBN: true,
    eps: 1e-5,
  };
  const p = params(c);
  using x = b.upload(activations(total), shape);
  using dy = b.upload(activations(total, 3), shape);
  using dx = b.upload(new Float32Array(total), shape);
  using x2 = b.upload(activations(total, 2), shape);
  using dy2 = b.upload(activations(total, 4), shape);
  const save: SavedForward = {};
  const y = await b.forward(
    problem,
    x,
    p,
    { kind: "movingAverage", momentum: 0.9 },
    undefined,
    save,
  );
  (y as ResidentTensor).dispose();
  const copy = device.createComputePipeline({
    layout: "auto",
    compute: {
      module: device.createShaderModule({ code: BENCH_COPY_BACKWARD }),
      entryPoint: "main",
    },
  });
  const copyGroup = device.createBindGroup({
    layout: copy.getBindGroupLayout(0),
    entries: [x, dy, x2, dy2, dx].map((t, binding) => ({
      binding,
      resource: { buffer: t.buffer },
    })),
  });
  const sn = (pass: GPUComputePassEncoder) => {
    const { plan, buffers, release } = b.prepareBackward(save, p, x.buffer, dy.buffer, dx.buffer);
    b.encodeBackward(pass, plan, buffers);
    return release;
  };
  const cp = (pass: GPUComputePassEncoder) => {
    pass.setPipeline(copy);
    pass.setBindGroup(0, copyGroup);
    pass.dispatchWorkgroups(...grid(Math.ceil(total / 4 / 256)));
    return () => {};
  };
  await gpuTimes(b, 1, sn);
  await gpuTimes(b, 1, cp);
  const s = await gpuTimes(b, reps, sn), k = await gpuTimes(b, reps, cp);
  const snMs = median(s.ms), copyMs = median(k.ms);
  return {
    shape: `[${shape.join(",")}]`,
    mb: (total * 4) / 2 ** 20,
    snMs,
    copyMs,
    ratio: snMs / copyMs,
    clock: s.clock,
  };
}

/** Median wall time of Float32Array forwards on `backend`. */
async function endToEnd(backend: "webgpu" | "wasm", side: number, reps: number): Promise<number> {
  const shape = [4, 16, side, side];
  const x = activations(shape.reduce((a, v) => a * v, 1));
  const out = new Float32Array(x.length);
  const layer = new SwitchNorm2d(16, { backend });
  await layer.forward(x, shape, { out });
  const ms = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await layer.forward(x, shape, { out });
    ms.push(performance.now() - t0);
  }
  layer.dispose();
  return median(ms);
}

if (import.meta.main) {
  const write = Deno.args.includes("--write");
  const backend = await loadWebGpuBackend({ timestamps: true });
  const adapter = backend.ctx.adapter;
  console.log(
    `adapter: ${adapter.description}${adapter.isFallbackAdapter ? " (fallback adapter)" : ""}`,
  );
  const reps = adapter.isFallbackAdapter ? 5 : 30;
  const rows = [];
  for (const shape of SHAPES) rows.push(await kernelRow(backend, shape, reps));
  console.log(
    `\nSN forward (training) vs copy kernel, GPU time (${rows[0].clock}), median of ${reps}`,
  );
  console.log("shape              MiB    SN ms   copy ms   SN/copy");
  for (const r of rows) {
    console.log(
      `${r.shape.padEnd(17)} ${r.mb.toFixed(1).padStart(5)} ${r.snMs.toFixed(3).padStart(8)} ` +
        `${r.copyMs.toFixed(3).padStart(9)} ${r.ratio.toFixed(2).padStart(9)}`,
    );
  }
  const backwardRows = [];
  for (const shape of SHAPES) backwardRows.push(await backwardRow(backend, shape, reps));
  console.log(
    `\nSN backward (training) vs backward copy kernel (reads x, dy twice, writes dx), GPU time ` +
      `(${backwardRows[0].clock}), median of ${reps}`,
  );
  console.log("shape              MiB    SN ms   copy ms   SN/copy");
  for (const r of backwardRows) {
    console.log(
      `${r.shape.padEnd(17)} ${r.mb.toFixed(1).padStart(5)} ${r.snMs.toFixed(3).padStart(8)} ` +
        `${r.copyMs.toFixed(3).padStart(9)} ${r.ratio.toFixed(2).padStart(9)}`,
    );
  }
  await backend.disposeAsync();

  console.log("\nend to end, Float32Array in and out, [4,16,s,s], median wall ms");
  console.log("elements     webgpu      wasm");
  const sweep = [];
  for (const side of SWEEP_SIDES) {
    const elements = 4 * 16 * side * side;
    const r = elements >= 2 ** 20 ? 3 : 7;
    const gpu = await endToEnd("webgpu", side, r), wasm = await endToEnd("wasm", side, r);
    sweep.push({ elements, webgpuMs: gpu, wasmMs: wasm });
    console.log(
      `${String(elements).padStart(8)} ${gpu.toFixed(2).padStart(10)} ${
        wasm.toFixed(2).padStart(9)
      }`,
    );
  }
  const crossover = crossoverOf(sweep);
  const rule = autoRuleFrom(adapter, crossover);
  const ruleText = (min: number | null) =>
    min === null
      ? "never takes WebGPU by itself"
      : `>= ${min} elements, never on a fallback adapter`;
  console.log(
    `\ncrossover vs WASM: ${
      crossover === null ? "none (WebGPU never faster)" : `${crossover} elements`
    }; the rule this run gives: ${ruleText(rule.minElements)} (${rule.why}); ` +
      `auto rule in force: ${ruleText(WEBGPU_AUTO.minElements)}`,
  );
  if (rule.minElements !== WEBGPU_AUTO.minElements) {
    console.log(
      "the rule in force is not this run's: after --write, set WEBGPU_AUTO in " +
        "backends/select.ts to it (tests/webgpu_select_test.ts checks that they agree)",
    );
  }
  if (write) {
    const record = {
      measuredWith: "deno task bench:webgpu --write",
      date: new Date().toISOString().slice(0, 10),
      adapter,
      kernels: rows,
      backwardKernels: backwardRows,
      endToEnd: { shape: "[4,16,s,s]", sweep },
      crossoverElements: crossover,
      rule,
    };
    const target = new URL("./crossover.json", import.meta.url);
    await Deno.writeTextFile(target, JSON.stringify(record, null, 2) + "\n");
    console.log(`wrote ${target.pathname}`);
  }
}
