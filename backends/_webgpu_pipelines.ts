/**
 * The WebGPU backend's compute pipelines: one per WGSL entry (shaders/_wgsl.ts), compiled once
 * per backend instance, and the one way a planned dispatch is bound and recorded.
 *
 * Depends on the device (_webgpu_device.ts), the plan's dispatch kinds and grid
 * (_webgpu_plan.ts), the per-layer buffers (_webgpu_buffers.ts, types) and the shader sources.
 *
 * @module
 */
import type { GpuContext } from "./_webgpu_device.ts";
import type { DeviceLayers } from "./_webgpu_buffers.ts";
import {
  grid,
  type LazyKind,
  PARAMS_BYTES,
  type PlannedDispatch,
  SLOT_BYTES,
} from "./_webgpu_plan.ts";
import * as WGSL from "../shaders/_wgsl.ts";

/** A dispatch's kind: one pipeline each. */
export type PipelineKind = PlannedDispatch["kind"];

/** The backward's dispatch kinds. */
export type BackwardKind = Extract<PipelineKind, `bwd${string}`>;

/** The forward's dispatch kinds. */
export type ForwardKind = Exclude<PipelineKind, BackwardKind>;

/** The kinds compiled with the backend (every one but the passes of eps 0). */
export type EagerKind = Exclude<PipelineKind, LazyKind>;

/** The compiled pipelines of one backend instance. */
export type Pipelines = Readonly<Record<EagerKind, GPUComputePipeline>>;

/** What a forward or backward runs on: the device, its pipelines and the layers' buffers. */
export interface Engine {
  readonly ctx: GpuContext;
  readonly pipelines: Pipelines;
  readonly layers: DeviceLayers;
}

/** The WGSL of each pipeline kind compiled with the backend (shaders/_wgsl.ts). */
export const SOURCES: Record<EagerKind, string> = {
  stats: WGSL.SN_STATS,
  rowMerge: WGSL.SN_ROW_MERGE,
  wideStats: WGSL.SN_WIDE_STATS,
  stats1d: WGSL.SN1D_STATS,
  wideStats1d: WGSL.SN1D_WIDE_STATS,
  group: WGSL.SN_GROUP_STATS,
  groupRefine: WGSL.SN_GROUP_REFINE,
  mix: WGSL.SN_MIX,
  normalize: WGSL.SN_NORMALIZE,
  normalize1d: WGSL.SN1D_NORMALIZE,
  wideNormalize1d: WGSL.SN1D_WIDE_NORMALIZE,
  wideNormalize: WGSL.SN_WIDE_NORMALIZE,
  bwdReduce: WGSL.SN_BWD_REDUCE,
  bwdWideReduce: WGSL.SN_BWD_WIDE_REDUCE,
  bwdRows: WGSL.SN_BWD_ROWS,
  bwdReduce1d: WGSL.SN1D_BWD_REDUCE,
  bwdWideReduce1d: WGSL.SN1D_BWD_WIDE_REDUCE,
  bwdGroups: WGSL.SN_BWD_GROUPS,
  bwdCoef: WGSL.SN_BWD_COEF,
  bwdDx: WGSL.SN_BWD_DX,
  bwdWideDx: WGSL.SN_BWD_WIDE_DX,
  bwdDx1d: WGSL.SN1D_BWD_DX,
  bwdWideDx1d: WGSL.SN1D_BWD_WIDE_DX,
};

/**
 * The WGSL of the passes of calls with eps 0 (shaders/zero_std.wgsl): compiled on their first
 * dispatch, so that SwiftShader's compile time, which grows with what a backend compiles, stays
 * that of the other passes for every backend that never sees eps 0.
 */
export const LAZY_SOURCES: Record<LazyKind, string> = {
  bwdZeroStd: WGSL.SN_BWD_ZERO_STD,
  bwdZeroStd1d: WGSL.SN1D_BWD_ZERO_STD,
  bwdZeroStdFix: WGSL.SN_BWD_ZERO_STD_FIX,
  wideZeroStdY: WGSL.SN_ZERO_STD_Y,
  wideZeroStdY1d: WGSL.SN1D_ZERO_STD_Y,
};

/** The kinds whose workgroup size is an override constant, GROUP_THREADS. */
const GROUP_KINDS: ReadonlySet<PipelineKind> = new Set(["group", "bwdGroups"]);

/**
 * The pipeline-overridable constants of each kind that has any: the group passes' workgroup size
 * (GROUP_THREADS in sn_group_stats.wgsl and sn_bwd_groups.wgsl), chosen per device.
 */
function constantsOf(
  kind: PipelineKind,
  threads: number,
  span?: number,
): Record<string, number> | undefined {
  if (!GROUP_KINDS.has(kind)) return undefined;
  // GROUP_SPAN: threads per group, where a workgroup makes several.
  return span === undefined
    ? { GROUP_THREADS: threads }
    : { GROUP_THREADS: threads, GROUP_SPAN: span };
}

/**
 * The group passes compiled for another thread count than the device's, and the passes of eps 0,
 * on first use.
 */
const otherThreads = new WeakMap<Pipelines, Map<string, GPUComputePipeline>>();

/**
 * `kind`'s pipeline; the group kinds at `threads` threads (the plan's groupThreads: the
 * device's count, or 64 where a call's groups have more members than the device's count loops
 * over on lavapipe), sn_group_stats with `span` threads per group where given (PlannedDispatch).
 */
function pipelineOf(
  engine: Engine,
  kind: PipelineKind,
  threads: number,
  span?: number,
): GPUComputePipeline {
  const lazy = kind in LAZY_SOURCES;
  const own = threads === engine.ctx.groupWorkgroupSize && span === undefined;
  if (!lazy && (!GROUP_KINDS.has(kind) || own)) {
    return engine.pipelines[kind as EagerKind];
  }
  let cache = otherThreads.get(engine.pipelines);
  if (!cache) otherThreads.set(engine.pipelines, cache = new Map());
  const key = lazy ? kind : `${kind}:${threads}:${span ?? threads}`;
  let pipeline = cache.get(key);
  if (!pipeline) {
    const device = engine.ctx.device;
    const per = span === undefined ? "" : `, ${span} per group`;
    const label = lazy ? `switchnorm ${kind}` : `switchnorm ${kind} (${threads} threads${per})`;
    const code = lazy ? LAZY_SOURCES[kind as LazyKind] : SOURCES[kind as EagerKind];
    pipeline = device.createComputePipeline({
      label,
      layout: "auto",
      compute: {
        module: device.createShaderModule({ code, label }),
        entryPoint: "main",
        constants: constantsOf(kind, threads, span),
      },
    });
    cache.set(key, pipeline);
  }
  return pipeline;
}

/**
 * Compiles every pipeline (once per backend instance: shapes travel in uniforms). On a compile
 * error the device is destroyed and the error says so.
 */
export async function compilePipelines(ctx: GpuContext): Promise<Pipelines> {
  const device = ctx.device;
  device.pushErrorScope("validation");
  const pipelines = {} as Record<PipelineKind, GPUComputePipeline>;
  for (const [kind, code] of Object.entries(SOURCES) as [EagerKind, string][]) {
    const module = device.createShaderModule({ code, label: `switchnorm ${kind}` });
    pipelines[kind] = device.createComputePipeline({
      label: `switchnorm ${kind}`,
      layout: "auto",
      compute: { module, entryPoint: "main", constants: constantsOf(kind, ctx.groupWorkgroupSize) },
    });
  }
  const err = await ctx.guard(device.popErrorScope());
  if (err) {
    await ctx.destroy();
    throw new Error(`webgpu backend: the shaders did not compile on this device: ${err.message}`);
  }
  return pipelines;
}

/** The uniform slot of dispatch `d` inside `uniforms`. */
export function slotOf(uniforms: GPUBuffer, d: PlannedDispatch): GPUBufferBinding {
  return { buffer: uniforms, offset: d.slot * SLOT_BYTES, size: PARAMS_BYTES };
}

/**
 * The binding of each wide pass's list (its one read-only `wide_*: array<u32>`), read from the
 * WGSL: the list holds the pass's indirect dispatch arguments (common.wgsl, LIST_FIRST).
 */
export const LIST_BINDING: Partial<Record<PipelineKind, number>> = Object.fromEntries(
  Object.entries({ ...SOURCES, ...LAZY_SOURCES }).flatMap(([kind, code]) => {
    const m = /@binding\((\d+)\) var<storage, read> wide_\w+: array<u32>;/.exec(code);
    return m ? [[kind, Number(m[1])]] : [];
  }),
);

/**
 * Binds `entries` (binding 0, 1, ... in order) to `d`'s pipeline (a group pass's at the plan's
 * `groupThreads`) and records its dispatch: a wide pass indirectly, with the arguments its list
 * holds (no workgroup while it is empty).
 */
export function dispatch(
  engine: Engine,
  pass: GPUComputePassEncoder,
  d: PlannedDispatch,
  entries: GPUBufferBinding[],
  groupThreads: number,
): void {
  const pipeline = pipelineOf(engine, d.kind, groupThreads, d.span);
  pass.setPipeline(pipeline);
  pass.setBindGroup(
    0,
    engine.ctx.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: entries.map((resource, binding) => ({ binding, resource })),
    }),
  );
  const list = LIST_BINDING[d.kind];
  if (list !== undefined) {
    pass.dispatchWorkgroupsIndirect(entries[list].buffer, (entries[list].offset ?? 0) + 4);
    return;
  }
  const [gx, gy] = grid(d.workgroups, engine.ctx.maxWorkgroups);
  pass.dispatchWorkgroups(gx, gy);
}
