/**
 * Where a WebGPU call's NaN first appears (a diagnostic for a GPU that gives NaN where lavapipe
 * does not, such as NVIDIA's Vulkan driver: NUMERICS.md, "WebGPU on NVIDIA's Vulkan driver"). For
 * each attack fuzzer seed (`tests/fuzz/attack_fuzz.ts`'s `make`), it runs the call on WebGPU with
 * every dispatch recorded into a compute pass of its own, the buffers it binds copied out before
 * and after it. It prints each dispatch that raised the count of float32 NaN bit patterns in a
 * buffer it binds (integer buffers can hold such patterns too), and writes every dispatch's
 * label, grid, override constants and the words of the buffers it binds, before and after, with
 * the passes' WGSL, to `DIR/seed-SEED.json`: compare a GPU's file with lavapipe's for the first
 * dispatch whose words part (a NaN that later passes do not mend is the one that matters).
 *
 *   deno run -A tests/fuzz/nan_trace.ts DIR SEED...
 *
 * Not a test: it patches GPUDevice and GPUCommandEncoder prototypes (bench/_split_passes.ts for
 * the pass per dispatch), and gives every buffer not mapped for reading COPY_SRC.
 *
 * @module
 */

import { make } from "./attack_fuzz.ts";
import { runCall } from "../_range_compare.ts";
import { splitComputePasses, type SplitDispatch } from "../../bench/_split_passes.ts";

interface Binding {
  binding: number;
  group: number;
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

interface Snapshot {
  index: number;
  pipeline: GPUComputePipeline;
  grid: string;
  bindings: Binding[];
  before: GPUBuffer[];
  after: GPUBuffer[];
}

const pipelineInfo = new WeakMap<
  GPUComputePipeline,
  { label: string; code: string; constants?: Record<string, number> }
>();
const moduleCode = new WeakMap<GPUShaderModule, string>();
const groupEntries = new WeakMap<GPUBindGroup, Binding[]>();
const snapshots: Snapshot[] = [];

function patch(): void {
  const createBuffer = GPUDevice.prototype.createBuffer;
  GPUDevice.prototype.createBuffer = function (d: GPUBufferDescriptor) {
    const usage = d.usage & GPUBufferUsage.MAP_READ ? d.usage : d.usage | GPUBufferUsage.COPY_SRC;
    return createBuffer.call(this, { ...d, usage });
  };
  const createModule = GPUDevice.prototype.createShaderModule;
  GPUDevice.prototype.createShaderModule = function (d: GPUShaderModuleDescriptor) {
    const m = createModule.call(this, d);
    moduleCode.set(m, d.code);
    return m;
  };
  for (const name of ["createComputePipeline", "createComputePipelineAsync"] as const) {
    // deno-lint-ignore no-explicit-any
    const original = (GPUDevice.prototype as any)[name];
    // deno-lint-ignore no-explicit-any
    (GPUDevice.prototype as any)[name] = function (d: GPUComputePipelineDescriptor) {
      const record = (p: GPUComputePipeline) => {
        pipelineInfo.set(p, {
          label: d.label ?? "?",
          code: moduleCode.get(d.compute.module) ?? "",
          constants: d.compute.constants as Record<string, number> | undefined,
        });
        return p;
      };
      const r = original.call(this, d);
      return r instanceof Promise ? r.then(record) : record(r);
    };
  }
  const createGroup = GPUDevice.prototype.createBindGroup;
  GPUDevice.prototype.createBindGroup = function (d: GPUBindGroupDescriptor) {
    const g = createGroup.call(this, d);
    const list: Binding[] = [];
    for (const e of d.entries) {
      const r = e.resource as GPUBufferBinding;
      if (r && "buffer" in r && r.buffer) {
        const offset = r.offset ?? 0;
        list.push({
          binding: e.binding,
          group: -1,
          buffer: r.buffer,
          offset,
          size: r.size ?? r.buffer.size - offset,
        });
      }
    }
    groupEntries.set(g, list);
    return g;
  };
  splitComputePasses(traced);
}

/** A dispatch in a pass of its own, the buffers it binds copied before and after it. */
function traced(dispatch: SplitDispatch): void {
  const { device, encoder, pipeline, groups } = dispatch;
  const copies = (bindings: Binding[]) =>
    bindings.map((b) => {
      const size = Math.ceil(b.size / 4) * 4;
      const read = device.createBuffer({
        size,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      encoder.copyBufferToBuffer(b.buffer, b.offset, read, 0, size);
      return read;
    });
  const bindings: Binding[] = [];
  for (const [i, [g]] of groups) {
    for (const b of groupEntries.get(g) ?? []) bindings.push({ ...b, group: i });
  }
  const before = copies(bindings);
  dispatch.record();
  const after = copies(bindings);
  snapshots.push({
    index: snapshots.length,
    pipeline,
    grid: dispatch.grid,
    bindings,
    before,
    after,
  });
}

async function words(b: GPUBuffer): Promise<Uint32Array> {
  await b.mapAsync(GPUMapMode.READ);
  const w = new Uint32Array(b.getMappedRange().slice(0));
  b.unmap();
  b.destroy();
  return w;
}

const isNaNBits = (w: number) => (w & 0x7f800000) === 0x7f800000 && (w & 0x7fffff) !== 0;
const nanCount = (ws: Uint32Array) => ws.reduce((n, w) => n + (isNaNBits(w) ? 1 : 0), 0);

if (import.meta.main) {
  const [dir, ...seeds] = Deno.args;
  if (!dir || !seeds.length) {
    console.error("usage: tests/fuzz/nan_trace.ts DIR SEED...");
    Deno.exit(2);
  }
  patch();
  const adapter = await navigator.gpu.requestAdapter();
  const adapterName = adapter?.info?.description ?? "?";
  Deno.mkdirSync(dir, { recursive: true });
  for (const seed of seeds.map(Number)) {
    snapshots.length = 0;
    const call = make(seed);
    let outcome = "ran";
    try {
      const r = await runCall({ ...call, scales: false }, "webgpu");
      const y = Array.from(r.y ?? []);
      outcome = `y NaN ${y.filter(Number.isNaN).length} of ${y.length}`;
    } catch (e) {
      outcome = `threw ${(e as Error).message.slice(0, 200)}`;
    }
    console.log(`seed ${seed}: ${snapshots.length} dispatches, ${outcome}`);
    const dispatches = [];
    const codes: Record<string, string> = {};
    for (const s of snapshots) {
      const before = await Promise.all(s.before.map(words));
      const after = await Promise.all(s.after.map(words));
      const raised = s.bindings.flatMap((b, i) => {
        const [n0, n1] = [nanCount(before[i]), nanCount(after[i])];
        return n1 > n0 ? [`@binding(${b.binding}): NaN ${n0} -> ${n1} of ${after[i].length}`] : [];
      });
      const info = pipelineInfo.get(s.pipeline);
      const label = info?.label ?? "?";
      if (raised.length) console.log(`  #${s.index} ${label} [${s.grid}]: ${raised.join("; ")}`);
      if (info) codes[info.label] = info.code;
      dispatches.push({
        label,
        grid: s.grid,
        constants: info?.constants,
        buffers: s.bindings.map((b, i) => ({
          group: b.group,
          binding: b.binding,
          before: Array.from(before[i]),
          after: Array.from(after[i]),
        })),
      });
    }
    const plain = (v: unknown) => v instanceof Float32Array ? Array.from(v) : v;
    const plainCall = JSON.parse(JSON.stringify(call, (_k, v) => plain(v)));
    const out = { seed, outcome, adapter: adapterName, call: plainCall, dispatches, codes };
    Deno.writeTextFileSync(`${dir}/seed-${seed}.json`, JSON.stringify(out));
  }
  Deno.exit(0);
}
