/**
 * Starting and stopping one worker thread of the WASM backend: node:worker_threads (Deno, Node)
 * or a web Worker from a `blob:` URL (a browser), started on the worker source of
 * ./_wasm_worker.ts, and ended through its control block.
 *
 * Depends on the worker's source and control-block layout (_wasm_worker.ts) and the thread
 * settings (_wasm_threads.ts: test hooks, start timeout) only.
 *
 * @module
 */
import {
  CTL_SEQ,
  CTL_STATE,
  NODE_WORKER_SOURCE,
  STATE_EXIT,
  WEB_WORKER_SOURCE,
  type WorkerStart,
} from "./_wasm_worker.ts";
import { hooks, START_TIMEOUT_MS } from "./_wasm_threads.ts";

type NodeWorker = {
  unref(): void;
  terminate(): unknown;
  on(event: string, f: (v: unknown) => void): void;
};
/** node:worker_threads, as far as it is used. */
export type NodeWorkerModule = {
  Worker: new (src: string, o: { eval: true; workerData: WorkerStart }) => NodeWorker;
};

let nodeModule: Promise<NodeWorkerModule> | undefined;

/** node:worker_threads, imported once, when the first worker starts (10-50 ms in Deno). */
export function nodeWorkers(): Promise<NodeWorkerModule> {
  // A computed specifier: bundlers for the browser must not try to resolve it.
  const spec = ["node", "worker_threads"].join(":");
  return nodeModule ??= import(spec) as Promise<NodeWorkerModule>;
}

/** A started worker: how to end it. */
export interface Thread {
  ctl: Int32Array;
  ctlAt: number;
  block: number;
  seq: number;
  end(): void;
}

/**
 * Starts one worker on `start`: how to end it, and a promise that resolves when it said ready
 * and rejects with the reason when it failed or did not answer within START_TIMEOUT_MS.
 */
export function spawn(
  start: WorkerStart,
  node: NodeWorkerModule | undefined,
): { end(): void; ready: Promise<void> } {
  let end = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (m: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const msg = m as { ready?: boolean; error?: string };
      if (msg?.ready) resolve();
      else {
        end();
        reject(new Error(msg?.error ?? String(m)));
      }
    };
    const timer = setTimeout(
      () => settle({ error: `no answer within ${START_TIMEOUT_MS / 1000} s` }),
      START_TIMEOUT_MS,
    );
    try {
      if (node) {
        const source = hooks.workerSource ?? NODE_WORKER_SOURCE;
        const w = new node.Worker(source, { eval: true, workerData: start });
        // An idle worker must not keep the process alive: a script exits when its work is done.
        w.unref();
        end = () => void w.terminate();
        w.on("message", settle);
        w.on("error", (e) => settle({ error: String((e as Error)?.message ?? e) }));
        // "exit" may come before the "error" that says why: let that one settle first.
        w.on("exit", (code) => {
          setTimeout(() => settle({ error: `the worker exited (code ${code})` }), 50);
        });
      } else {
        const source = hooks.workerSource ?? WEB_WORKER_SOURCE;
        const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
        const w = new Worker(url);
        URL.revokeObjectURL(url);
        end = () => w.terminate();
        w.onmessage = (e) => settle(e.data);
        w.onerror = (e) => {
          e.preventDefault?.();
          settle({ error: e.message ?? "the worker failed" });
        };
        w.postMessage(start);
      }
    } catch (e) {
      settle({ error: String((e as Error)?.message ?? e) });
    }
  });
  return { end: () => end(), ready };
}

/** Ends a worker (it may be asleep, or about to take a job: both see the exit). */
export function stopThread(t: Thread): void {
  Atomics.store(t.ctl, CTL_STATE, STATE_EXIT);
  Atomics.add(t.ctl, CTL_SEQ, 1);
  Atomics.notify(t.ctl, CTL_SEQ);
  t.end();
  // The block stays allocated: a worker that has not yet seen the exit may still read it.
}
