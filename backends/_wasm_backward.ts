/**
 * The WASM backward: dx and the parameter gradients of a forward that kept its statistics, by
 * the reduction over (x, dy) (sn_backward_reduce_nd / _1d) and the dx pass (sn_backward_dx_nd /
 * _1d), with SyncSN's sum of the packed gradient sums across replicas between them.
 *
 * Depends on the shared Backend types, the kernels' ABI and the memory regions, and WasmTensor.
 *
 * @module
 */
import type { BackwardResult, LayerParams, ResidentTensor, SavedForward } from "./_backend.ts";
import { layoutOf, modeOf, type WasmRegions, WasmSaved } from "./_wasm_regions.ts";
import { MODE_BN_PARTIALS } from "./_wasm_abi.ts";
import { WasmTensor } from "./_wasm_tensor.ts";
import type { RowRunner } from "./_wasm_pool.ts";

/** The backend's backward (see WasmBackend.backward). */
export async function runBackward(
  mem: WasmRegions,
  rows: RowRunner,
  saved: SavedForward,
  dy: Float32Array | ResidentTensor,
  params: LayerParams,
  out?: Float32Array | ResidentTensor,
): Promise<BackwardResult> {
  mem.live();
  const problem = saved.problem, state = saved.state, x = saved.x;
  if (!problem || !(state instanceof WasmSaved) || x === undefined) {
    throw new TypeError(
      "wasm backend: backward needs a forward run on the wasm backend with save " +
        "(training mode or keepForBackward)",
    );
  }
  const slot = state.slot;
  const fresh = () => {
    if (
      slot.released || slot.epoch !== state.epoch ||
      slot.stats.generation !== state.statsGeneration
    ) {
      throw new Error(
        "wasm backend: the statistics of this forward are gone (a later forward of the layer " +
          "replaced them, or moved them and then failed, or the layer was disposed)",
      );
    }
  };
  fresh();
  const { n, c, m } = problem;
  const length = n * c * m;
  const k = mem.k, layout = layoutOf(problem), mode = modeOf(problem);
  let dxTensor: WasmTensor | undefined;
  let xAt: number, dyAt: number, dxAt: number, ioEpoch = 0;
  if (x instanceof Float32Array) {
    if (!(dy instanceof Float32Array) || dy.length !== length) {
      throw new TypeError(
        `wasm backend: dy must be a Float32Array of ${length} elements, like the forward's x`,
      );
    }
    if (out !== undefined && (!(out instanceof Float32Array) || out.length !== length)) {
      throw new TypeError(`wasm backend: out must be a Float32Array of ${length} elements`);
    }
    xAt = mem.stage(x, dy);
    ioEpoch = mem.ioEpoch;
    dyAt = dxAt = xAt + 4 * length;
  } else {
    const xt = mem.own(x, "the forward's x", length);
    const dyt = mem.own(dy, "dy", length);
    // dx may be written over dy (the kernels allow dx = dy): out = dy needs no temporary.
    dxTensor = out !== undefined
      ? mem.own(out, "out", length)
      : new WasmTensor(mem.heap, mem.heap.alloc(length * 4), xt.shape);
    xAt = xt.byteOffset;
    dyAt = dyt.byteOffset;
    dxAt = dxTensor.byteOffset;
  }
  try {
    const regions = mem.prepare(problem, params, slot);
    const work = slot.work.ensure((k.sn_work_len(layout, n, c) >>> 0) * 8);
    if (problem.layout === "nd") {
      // Under SyncSN the reduction leaves the BN statistics' refinement to no one: they are the
      // replicas' together (wasm/src/lib.rs, after_combine).
      const reduceMode = mode | (problem.sync ? MODE_BN_PARTIALS : 0);
      rows.backwardReduceNd(xAt, dyAt, n, c, m, reduceMode, regions.layer, regions.stats, work);
    } else {
      rows.backwardReduce1d(xAt, dyAt, n, c, mode, regions.layer, regions.stats, work);
    }
    const sumsAt = (work >>> 3) + (k.sn_sums_at(layout, n, c) >>> 0);
    // 4C + 2K sums, then the mean dots' offset (BackwardResult.meanDotsOffset).
    const sumsLen = (k.sn_sums_len(layout, mode, c) >>> 0) - 1, offsetAt = sumsAt + sumsLen;
    const kMix = (sumsLen - 4 * c) / 2;
    if (problem.sync) {
      // The replicas add whole mean dots, as every backend's (each replica's offset differs).
      const local = mem.heap.f64.slice(sumsAt, sumsAt + sumsLen);
      for (let q = 0; q < kMix; q++) local[2 * c + q] += mem.heap.f64[offsetAt];
      const total = await problem.sync.sum(local);
      mem.live();
      fresh();
      mem.heap.f64.set(total, sumsAt);
      mem.heap.f64[offsetAt] = 0;
      if (x instanceof Float32Array) {
        if (mem.ioEpoch !== ioEpoch) xAt = mem.stage(x, dy as Float32Array);
        dyAt = dxAt = xAt + 4 * length;
      } else {
        xAt = mem.own(x, "the forward's x", length).byteOffset;
        dyAt = mem.own(dy, "dy", length).byteOffset;
        dxAt = mem.own(dxTensor!, "out", length).byteOffset;
      }
    }
    // dWeight, dBias, meanDots, varDots lead the sums; the dx pass does not change them.
    const f64 = mem.heap.f64;
    let at = sumsAt;
    const take = (len: number) => f64.slice(at, at += len);
    const dWeight = take(c), dBias = take(c), meanDots = take(kMix), varDots = take(kMix);
    const meanDotsOffset = f64[offsetAt];
    const count = state.count;
    if (problem.layout === "nd") {
      rows.backwardDxNd(
        xAt,
        dyAt,
        dxAt,
        n,
        c,
        m,
        mode,
        regions.layer,
        regions.stats,
        work,
        count,
      );
    } else {
      rows.backwardDx1d(xAt, dyAt, dxAt, n, c, mode, regions.layer, regions.stats, work, count);
    }
    const dxView = () => mem.heap.f32.subarray(dxAt >>> 2, (dxAt >>> 2) + length);
    const dx = dxTensor ??
      (out instanceof Float32Array ? (out.set(dxView()), out) : dxView().slice());
    return { dx, dWeight, dBias, meanDots, meanDotsOffset, varDots };
  } catch (e) {
    if (dxTensor !== out) dxTensor?.dispose();
    throw e;
  }
}
