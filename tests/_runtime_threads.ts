/**
 * The runtime side of tests/runtime_threads_test.ts: bundled for the browser (one bundle, so that
 * the library and the thread test hooks share one module instance) and run by a page that the
 * test serves cross-origin isolated, or by Node. It reports whether the page is isolated, what
 * the WASM backend says about its threads, how many calls were split and how many chunks workers
 * ran, whether forward and backward on 2 threads give the same bits as on 1 (on a tensor above
 * the threshold under which calls run on one thread), and what a backend whose worker fails to
 * start says. It never throws: every problem goes into the report.
 *
 * @module
 */
import { getNumThreads, setNumThreads, SwitchNorm2d } from "../mod.ts";
import { setThreadTestHooks } from "../backends/_wasm_threads.ts";
import { loadWasmBackend } from "../backends/wasm.ts";

/** What the page found. */
export interface ThreadsReport {
  crossOriginIsolated: boolean;
  hardwareConcurrency: number;
  /** backendInfo.reason of the layer that ran on 2 threads. */
  reason: string;
  /** Calls split across 2 threads, and chunks of rows that the worker ran. */
  splits: number;
  workerChunks: number;
  /** "what: first difference" for each output that differs between 1 and 2 threads. */
  differences: string[];
  /** What a backend says whose worker fails to start (its source throws). */
  failedStart: string;
  /** Elements of the tensor (at least the 2^18 under which calls run on one thread). */
  elements: number;
  failures: string[];
  where: string;
}

const SHAPE = [4, 8, 96, 96]; // 294,912 elements (> 2^18), 32 rows of 9,216

function random(seed: number) {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
}

/** A training forward and backward, and an evaluation forward: the outputs, and the reason. */
async function step(): Promise<{ out: Map<string, Float32Array>; reason: string }> {
  const r = random(7);
  const length = SHAPE.reduce((a, b) => a * b, 1);
  const x = Float32Array.from({ length }, (_, i) => 3 * r() + (i % 11) * 10);
  const dy = Float32Array.from({ length }, r);
  const sn = new SwitchNorm2d(SHAPE[1], { backend: "wasm" });
  const out = new Map<string, Float32Array>();
  sn.train();
  out.set("train y", await sn.forward(x, SHAPE));
  out.set("dx", await sn.backward(dy));
  for (const [name, g] of Object.entries(sn.grads)) out.set(`grad ${name}`, g.slice());
  sn.eval();
  out.set("eval y", await sn.forward(x, SHAPE));
  const reason = sn.backendInfo?.reason ?? "no backend";
  sn.dispose();
  return { out, reason };
}

/** The first index at which a and b differ in bits, or -1. */
function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

/** Runs the checks and returns what they found. */
export async function runThreadsCheck(): Promise<ThreadsReport> {
  const report: ThreadsReport = {
    crossOriginIsolated:
      (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true,
    hardwareConcurrency: globalThis.navigator?.hardwareConcurrency ?? 0,
    reason: "",
    failedStart: "",
    splits: 0,
    workerChunks: 0,
    differences: [],
    elements: SHAPE.reduce((a, b) => a * b, 1),
    failures: [],
    where: globalThis.navigator?.userAgent ??
      `Node ${(globalThis as { process?: { version?: string } }).process?.version}`,
  };
  try {
    // 2 threads when the backend loads; then 1 thread (nothing split) for the expected bits, then
    // 2 again.
    setNumThreads(2);
    let splitting = false;
    const hooks = {
      waitForWorkers: true,
      noBackoff: true,
      onSplit: (threads: number, ran: number) => {
        if (!splitting) report.failures.push(`a call was split ${threads} ways on 1 thread`);
        if (threads === 2) report.splits++;
        report.workerChunks += ran;
      },
    };
    setThreadTestHooks(hooks);
    // Loads the process-wide backend at 2 threads (the threads build), waiting for its worker.
    const first = new SwitchNorm2d(1, { backend: "wasm" });
    await first.forward(new Float32Array(4), [1, 1, 2, 2]);
    first.dispose();
    setNumThreads(1);
    const want = (await step()).out;
    setNumThreads(2);
    splitting = true;
    // Chunks as they come (the calling thread takes what the worker does not), then every chunk
    // on the worker (the calling thread waits): the worker surely runs some.
    for (const workersFirst of [false, true]) {
      setThreadTestHooks({ ...hooks, workersFirst });
      const got = await step();
      report.reason = got.reason;
      for (const [what, w] of want) {
        const g = got.out.get(what)!, at = firstDifference(g, w);
        const how = workersFirst ? "workers first" : "as they come";
        if (at >= 0) report.differences.push(`${what} (${how}) at ${at}: ${g[at]} vs ${w[at]}`);
      }
    }
    if (getNumThreads() !== 2) report.failures.push(`getNumThreads() is ${getNumThreads()}`);
    // A fresh backend whose worker cannot start: one thread, with the reason.
    setThreadTestHooks({ workerSource: 'throw new Error("this worker cannot start");' });
    const backend = await loadWasmBackend();
    try {
      await backend.threadsReady();
      report.failedStart = backend.threadNote;
    } finally {
      backend.dispose();
      setThreadTestHooks(undefined);
    }
  } catch (e) {
    report.failures.push(`the page failed: ${(e as Error)?.stack ?? e}`);
  }
  return report;
}
