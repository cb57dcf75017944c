/**
 * One SyncSN replica for tests/sync_failure_test.ts: like _sync_worker.ts, but a step may make
 * this replica fail (a wrong channel count in its forward, a wrong dy length in its backward) or
 * stop answering, and each step reports its error and the layer's state instead of crashing.
 */
/// <reference lib="deno.worker" />
import { SwitchNorm2d, type SyncGroup } from "../mod.ts";

/** What this replica does at a step. */
export type Act = "run" | "badForward" | "badBackward" | "hang";

interface Job {
  size: number;
  c: number;
  backend: string;
  timeoutMs?: number;
  state: Record<string, Float32Array>;
  steps: { act: Act; x: Float32Array; shape: number[]; dy: Float32Array }[];
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
    timeoutMs: job.timeoutMs,
    allGather(local) {
      const p = new Promise<Float64Array[]>((resolve) => pending.push(resolve));
      self.postMessage({ type: "gather", data: local });
      return p;
    },
  };
  // deno-lint-ignore no-explicit-any
  const layer = new SwitchNorm2d(job.c, { backend: job.backend as any, sync: group });
  layer.loadStateDict(job.state);
  const results = [];
  for (const step of job.steps) {
    if (step.act === "hang") break; // this replica stops answering
    layer.zeroGrad();
    const shape = step.act === "badForward"
      ? [step.shape[0], job.c + 1, ...step.shape.slice(2)].slice(0, 4)
      : step.shape;
    let y, dx, error;
    try {
      const x = step.act === "badForward"
        ? new Float32Array(step.x.length / job.c * (job.c + 1))
        : step.x;
      y = await layer.forward(x, shape, { keepForBackward: true });
      dx = await layer.backward(step.act === "badBackward" ? step.dy.subarray(1) : step.dy);
    } catch (err) {
      error = (err as Error).message;
    }
    results.push({ y, dx, error, grads: structuredClone(layer.grads), state: layer.stateDict() });
  }
  self.postMessage({ type: "done", results });
};
