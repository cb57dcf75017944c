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

/** A started worker, and its block (control block and shadow stack) in the shared memory. */
export interface Thread {
  ctl: Int32Array;
  ctlAt: number;
  block: number;
  seq: number;
  /**
   * Set by stopThread (a worker is told to exit, and terminated, at most once), and once its
   * thread has ended (its block may be another's by then).
   */
  stopped: boolean;
  /** Ends a web Worker; undefined for node:worker_threads workers, which end by themselves. */
  terminate?: () => void;
}

/** A worker being started (see {@linkcode spawn}). */
export interface Spawned {
  /** Resolves when it said ready; rejects with the reason when it failed or did not answer. */
  ready: Promise<void>;
  /**
   * Resolves when its thread has ended, after which it touches the shared memory no more
   * (node:worker_threads: its "exit" event); never, for a web Worker (no such event).
   */
  exited: Promise<void>;
  /** See {@linkcode Thread.terminate}. */
  terminate?: () => void;
}

/**
 * Starts one worker on `start`. A node:worker_threads worker is never terminated: told to exit
 * (stopThread), or failing, it ends by itself, so that none is terminated twice or while its
 * thread is ending, nor freed while it may still write its block. A web Worker is terminated by
 * stopThread.
 */
export function spawn(start: WorkerStart, node: NodeWorkerModule | undefined): Spawned {
  let terminate: (() => void) | undefined;
  // Not Promise.withResolvers: Node 20 has none.
  let exit = () => {};
  const exited = new Promise<void>((resolve) => exit = resolve);
  const ready = new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (m: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const msg = m as { ready?: boolean; error?: string };
      if (msg?.ready) resolve();
      else reject(new Error(msg?.error ?? String(m)));
    };
    const timer = setTimeout(
      () => settle({ error: `no answer within ${START_TIMEOUT_MS / 1000} s` }),
      START_TIMEOUT_MS,
    );
    try {
      if (node) {
        const source = hooks.workerSource ?? NODE_WORKER_SOURCE;
        const w = new node.Worker(source, { eval: true, workerData: start });
        w.on("message", settle);
        w.on("error", (e) => settle({ error: String((e as Error)?.message ?? e) }));
        // "exit" may come before the "error" that says why: let that one settle first.
        w.on("exit", (code) => {
          setTimeout(() => settle({ error: `the worker exited (code ${code})` }), 50);
          exit();
        });
        // An idle worker must not keep the process alive: a script exits when its work is done.
        // After the listeners: in Node, adding a "message" listener refs the worker again.
        w.unref();
      } else {
        const source = hooks.workerSource ?? WEB_WORKER_SOURCE;
        const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
        const w = new Worker(url);
        URL.revokeObjectURL(url);
        terminate = () => w.terminate();
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
  return { ready, exited, terminate };
}

/**
 * Tells a worker to exit, once (it may be asleep, about to take a job, or still starting: each
 * sees the exit). A node:worker_threads worker then leaves its loop and its thread ends by itself
 * (its "exit" event says when: only then may its block be freed); a web Worker is terminated.
 */
export function stopThread(t: Thread): void {
  if (t.stopped) return;
  t.stopped = true;
  Atomics.store(t.ctl, CTL_STATE, STATE_EXIT);
  Atomics.add(t.ctl, CTL_SEQ, 1);
  Atomics.notify(t.ctl, CTL_SEQ);
  t.terminate?.();
}
