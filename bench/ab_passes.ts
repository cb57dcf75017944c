/**
 * WebGPU A/B per dispatch, in place: two checkouts of this module in one process, calls
 * interleaved (as bench/ab.ts), and the GPU time of every dispatch of a real training forward and
 * backward, by GPU timestamps. Each dispatch that the backend records into a compute pass is
 * re-recorded into a pass of its own with timestamp writes (same pipeline, bindings and grid, same
 * place in the same submit), so the figures include the data's real flow between passes but not
 * the cost of the one pass the backend really uses (lavapipe: ~0.6 ms per pass, whatever it holds).
 *
 *   deno run --allow-read --allow-env bench/ab_passes.ts OLD_DIR NEW_DIR [calls]
 *
 * Needs an adapter with "timestamp-query" (lavapipe has it). Prints p10 and median per dispatch
 * kind ("switchnorm group", ...) and side. SHAPE='[8,64,56,56]' picks the shape (default
 * [64,512,7,7]); a shape of two ([N, C]) runs a SwitchNorm1d. This patches GPUDevice/GPUCommandEncoder prototypes: a bench tool only.
 */

import { inputs, loadCheckout, quantile } from "./_ab.ts";
import { splitComputePasses, type SplitDispatch } from "./_split_passes.ts";

/** A dispatch's timestamps, waiting to be read. */
interface Pending {
  querySet: GPUQuerySet;
  resolve: GPUBuffer;
  read: GPUBuffer;
  key: string;
}

const pipelineLabels = new WeakMap<GPUComputePipeline, string>();
const pending: Pending[] = [];
const times = new Map<string, number[]>();
let label = "";
let timing = false;

function patchWebGpu(): void {
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = function (d?: GPUDeviceDescriptor) {
    const features = [...(d?.requiredFeatures ?? [])];
    if (this.features.has("timestamp-query")) features.push("timestamp-query");
    return requestDevice.call(this, { ...d, requiredFeatures: features });
  };
  const createPipeline = GPUDevice.prototype.createComputePipeline;
  GPUDevice.prototype.createComputePipeline = function (d: GPUComputePipelineDescriptor) {
    const p = createPipeline.call(this, d);
    pipelineLabels.set(p, d.label ?? "?");
    return p;
  };
  splitComputePasses(
    timed,
    (device, d) => timing && device.features.has("timestamp-query") && !d?.timestampWrites,
  );
}

/** A dispatch recorded into a timed pass of its own (see above). */
function timed(dispatch: SplitDispatch): void {
  const { device, encoder, pipeline } = dispatch;
  const querySet = device.createQuerySet({ type: "timestamp", count: 2 });
  dispatch.record({
    timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 },
  });
  const resolve = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const read = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  encoder.resolveQuerySet(querySet, 0, 2, resolve, 0);
  encoder.copyBufferToBuffer(resolve, 0, read, 0, 16);
  pending.push({ querySet, resolve, read, key: `${label} ${pipelineLabels.get(pipeline)}` });
}

async function drain(): Promise<void> {
  for (const p of pending.splice(0)) {
    await p.read.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(p.read.getMappedRange());
    const list = times.get(p.key) ?? [];
    list.push(Number(t[1] - t[0]) / 1e6);
    times.set(p.key, list);
    p.read.unmap();
    p.read.destroy();
    p.resolve.destroy();
    p.querySet.destroy();
  }
}

if (import.meta.main) {
  const [dirA, dirB, callsArg] = Deno.args;
  if (!dirA || !dirB) {
    console.error("usage: bench/ab_passes.ts OLD_DIR NEW_DIR [calls]");
    Deno.exit(2);
  }
  patchWebGpu();
  const calls = Number(callsArg ?? 30);
  const shape: number[] = JSON.parse(Deno.env.get("SHAPE") ?? "[64,512,7,7]");
  const n = shape.reduce((a, b) => a * b);
  const { x, dy: dyData } = inputs(n);
  const sides = [];
  for (const [name, dir] of [["A", dirA], ["B", dirB]]) {
    const m = await loadCheckout(dir);
    const layer = shape.length === 2
      ? new m.SwitchNorm1d(shape[1], { backend: "webgpu" })
      : new m.SwitchNorm2d(shape[1], { backend: "webgpu" });
    sides.push({
      name,
      layer,
      x: await layer.upload(x, shape),
      dy: await layer.upload(dyData, shape),
    });
  }
  for (let i = 0; i < calls; i++) {
    for (const s of i % 2 ? [sides[1], sides[0]] : sides) {
      timing = i >= 3; // the first calls compile pipelines
      label = `${s.name} forward `;
      const y = await s.layer.forward(s.x);
      await y.read();
      label = `${s.name} backward`;
      const dx = await s.layer.backward(s.dy);
      await dx.read();
      timing = false;
      await drain();
      y.dispose();
      dx.dispose();
    }
  }
  console.log(`A = ${dirA}, B = ${dirB}, ${JSON.stringify(shape)}, GPU ms per dispatch:`);
  for (const [key, v] of [...times].sort(([a], [b]) => a.localeCompare(b))) {
    console.log(
      `  ${key.padEnd(40)} p10 ${quantile(v, 0.1).toFixed(2)}  median ${
        quantile(v, 0.5).toFixed(2)
      }`,
    );
  }
  Deno.exit(0);
}
