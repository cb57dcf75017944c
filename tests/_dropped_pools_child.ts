/**
 * Run by tests/lifetime_test.ts in a subprocess with --v8-flags=--expose-gc: loads WASM backends
 * on 3 threads (2 workers each), splits a call on each, drops them without dispose(), collects
 * garbage, and prints the process's OS threads (Linux: /proc/self/task) before, while the
 * backends live, and after, as JSON on stdout. It ends without Deno.exit: the test checks that the
 * process exits by itself.
 */
import { setNumThreads } from "../mod.ts";
import { loadWasmBackend } from "../backends/wasm.ts";
import { setThreadTestHooks } from "../backends/_wasm_threads.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --v8-flags=--expose-gc");
const count = Number(Deno.args[0]);
const osThreads = () => [...Deno.readDirSync("/proc/self/task")].length;

async function collect(): Promise<void> {
  // Finalizers run as tasks after a collection; workers end after that: give them turns.
  for (let i = 0; i < 20; i++) {
    gc!();
    await new Promise((r) => setTimeout(r, 25));
  }
}

setNumThreads(3);
let splits = 0;
setThreadTestHooks({ minElements: 1, waitForWorkers: true, onSplit: () => splits++ });
const problem = {
  layout: "nd" as const,
  n: 2,
  c: 4,
  m: 64,
  training: false,
  usingBN: false,
  eps: 1e-5,
};
const params = (layerId: number) => ({
  layerId,
  weight: new Float32Array(4).fill(1),
  bias: new Float32Array(4),
  meanMix: new Float64Array([0.5, 0.5, 0]),
  varMix: new Float64Array([0.5, 0.5, 0]),
  runningMean: new Float32Array(0),
  runningVar: new Float32Array(0),
  version: 0,
});
const x = Float32Array.from({ length: 2 * 4 * 64 }, (_, i) => Math.sin(i));

async function load(i: number): Promise<object> {
  const backend = await loadWasmBackend();
  await backend.forward(problem, x, params(i), { kind: "batchAverage" });
  return backend;
}

// One backend first, loaded and collected, so that what the runtime starts once (the
// node:worker_threads module, V8's helpers) is in the baseline.
await load(0);
await collect();
const before = osThreads();
let backends: object[] = [];
for (let i = 0; i < count; i++) backends.push(await load(i + 1));
const live = osThreads();
backends = [];
// Collected, then their workers told to exit: give the threads up to 10 s to end (a busy machine).
const dropped = performance.now();
while (osThreads() > before && performance.now() - dropped < 10_000) await collect();
const after = osThreads();
console.log(JSON.stringify({ before, live, after, splits }));
