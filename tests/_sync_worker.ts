/**
 * One SyncSN replica for tests/sync_test.ts: a layer on this worker's slice of the batch, with an
 * all-gather that goes through the test's main thread.
 */
/// <reference lib="deno.worker" />
import { SwitchNorm1d, SwitchNorm2d, type SyncGroup } from "../mod.ts";

interface Job {
  layer: "SwitchNorm1d" | "SwitchNorm2d";
  size: number;
  c: number;
  options: Record<string, unknown>;
  state: Record<string, Float32Array>;
  steps: { mode: "train" | "eval"; x: Float32Array; shape: number[]; dy: Float32Array }[];
}

const pending: ((all: Float64Array[]) => void)[] = [];
self.onmessage = async (e: MessageEvent) => {
  if (e.data.type === "gathered") {
    pending.shift()!(e.data.all);
    return;
  }
  const job = e.data.job as Job;
  const group: SyncGroup = {
    size: job.size,
    allGather(local) {
      const p = new Promise<Float64Array[]>((resolve) => pending.push(resolve));
      self.postMessage({ type: "gather", data: local });
      return p;
    },
  };
  const Layer = job.layer === "SwitchNorm1d" ? SwitchNorm1d : SwitchNorm2d;
  const layer = new Layer(job.c, { ...job.options, sync: group });
  layer.loadStateDict(job.state);
  const results = [];
  for (const step of job.steps) {
    layer.train(step.mode === "train");
    // A batch average must be finalized before an evaluation forward (which refuses raw sums).
    if (layer.batchesAccumulated > 0 && step.mode === "eval") layer.finalizeBatchAverage();
    const y = await layer.forward(step.x, step.shape, { keepForBackward: true });
    layer.zeroGrad();
    const dx = await layer.backward(step.dy);
    results.push({
      y,
      dx,
      grads: structuredClone(layer.grads),
      running: [layer.running_mean, layer.running_var],
    });
  }
  self.postMessage({ type: "done", results });
};
