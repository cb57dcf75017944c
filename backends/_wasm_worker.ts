/**
 * The source of a WASM backend worker thread, as a string: a worker must start without file
 * access and without fetching (so that no permission flag is needed and an import by URL works),
 * so it runs from this text (node:worker_threads `eval`, or a `blob:` URL in a browser).
 *
 * A worker instantiates the shared-memory build of the kernels on the backend's memory, moves its
 * shadow stack to a block of its own (every instance starts with the same `__stack_pointer`),
 * says "ready", then serves jobs through its control block in the shared memory (the protocol is
 * described in ./_wasm_threads.ts): it spins briefly, then sleeps in `Atomics.wait`, for a new
 * sequence number; takes the job unless the caller already withdrew it; claims chunks of rows
 * (its own range first, then the others') and runs the job's kernel on each; records whether it
 * trapped (and the message); and publishes the sequence number as done.
 *
 * @module
 */

/** Int32 slots of a worker's control block. */
export const CTL_SEQ = 0, CTL_DONE = 1, CTL_STATE = 2, CTL_STATUS = 3, CTL_JOB = 4;
/**
 * More slots: the worker's range in the job, chunks it ran, and a test's requests: to trap
 * (`CTL_TRAP` = 1) or to end its thread after the job (2), and to sleep this many ms after taking
 * the job (a worker whose core is busy elsewhere).
 */
export const CTL_RANGE = 5, CTL_RAN = 6, CTL_TRAP = 7, CTL_SLEEP = 8;
/** Set to 1 by the worker once it can take jobs (before its "ready" message). */
export const CTL_READY = 9;
/**
 * Byte offset and length (u16 units) of the trap message in a control block; the int32 slots
 * before it are the views' length (the last one is never written: a test's sleep waits on it).
 */
export const CTL_MSG_AT = 64, CTL_MSG_LEN = 200;
/** Bytes per control block. */
export const CTL_BYTES = 512;
/** `CTL_STATE` value that ends the worker. */
export const STATE_EXIT = 0x7fffffff;

/**
 * Int32 slots of the job block (one per pool, shared by the workers of a job): the kernel's
 * index, floats per row, rows, rows per chunk, chunks, ranges (threads); then the job's 12
 * arguments as f64 at `JOB_ARGS_AT`; then one claim counter per range at `JOB_NEXT`.
 */
export const JOB_FN = 0, JOB_M = 1, JOB_ROWS = 2, JOB_CHUNK = 3, JOB_CHUNKS = 4, JOB_RANGES = 5;
export const JOB_ARGS_AT = 32, JOB_ARGS = 12, JOB_NEXT = (32 + 12 * 8) / 4;

/** Where a row kernel takes its row range (see ./_wasm_threads.ts). */
export interface RowArgs {
  name: string;
  ptrs: readonly number[];
  consts?: number;
  row0?: number;
  rows: number;
}

/** What the worker gets first: everything it needs, nothing that needs a file. */
export interface WorkerStart {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** Byte offset of this worker's control block. */
  ctl: number;
  /** The top (end) of this worker's shadow stack block. */
  stackTop: number;
  /** The row kernels, by the index a job gives in `JOB_FN`. */
  kernels: RowArgs[];
}

/** Int32 length of a job block: up to 1024 ranges (setNumThreads' limit). */
export const JOB_INTS = JOB_NEXT + 1024;

/**
 * Claims and runs chunks of the job at `job` (Int32Array over the job block) until none is left:
 * range `first` first (the thread's own, so that every call gives a thread the same rows while
 * all threads run), then the others in order. A claim is an `Atomics.add` on the range's counter,
 * so every chunk runs exactly once, on whichever thread gets there first. The worker's source
 * (below) has the same loop as text: keep the two alike.
 */
export function runChunks(
  job: Int32Array,
  args: Float64Array,
  first: number,
  kernel: RowArgs,
  call: (a: number[]) => void,
  a: number[],
): void {
  const m = job[JOB_M], rows = job[JOB_ROWS], chunk = job[JOB_CHUNK];
  const chunks = job[JOB_CHUNKS], ranges = job[JOB_RANGES];
  for (let k = 0; k < ranges; k++) {
    const r = (first + k) % ranges;
    const lo = Math.floor(r * chunks / ranges), hi = Math.floor((r + 1) * chunks / ranges);
    for (;;) {
      const j = lo + Atomics.add(job, JOB_NEXT + r, 1);
      if (j >= hi) break;
      const row0 = j * chunk, count = Math.min(chunk, rows - row0);
      for (let i = 0; i < JOB_ARGS; i++) a[i] = args[i];
      for (const p of kernel.ptrs) a[p] += row0 * m * 4;
      if (kernel.consts !== undefined) a[kernel.consts] += row0 * 16;
      if (kernel.row0 !== undefined) a[kernel.row0] = row0;
      a[kernel.rows] = count;
      call(a);
    }
  }
}

/**
 * The worker's body. `post` sends a message to the owner, `leave` ends the worker's thread (a
 * test's fault); the first message in is a {@linkcode WorkerStart}. Spins ~20 us of loads before
 * sleeping: a sleeping worker takes ~25 us to wake, a spinning one ~8 us (THREADS.md).
 */
const body = `
const SEQ = ${CTL_SEQ}, DONE = ${CTL_DONE}, STATE = ${CTL_STATE}, STATUS = ${CTL_STATUS};
const RANGE = ${CTL_RANGE}, RAN = ${CTL_RAN}, TRAP = ${CTL_TRAP}, SLEEP = ${CTL_SLEEP};
const READY = ${CTL_READY};
const JOB = ${CTL_JOB}, MSG_AT = ${CTL_MSG_AT}, MSG_LEN = ${CTL_MSG_LEN}, EXIT = ${STATE_EXIT};
const JOB_FN = ${JOB_FN}, JOB_M = ${JOB_M}, JOB_ROWS = ${JOB_ROWS}, JOB_CHUNK = ${JOB_CHUNK};
const JOB_CHUNKS = ${JOB_CHUNKS}, JOB_RANGES = ${JOB_RANGES}, JOB_ARGS_AT = ${JOB_ARGS_AT};
const JOB_ARGS = ${JOB_ARGS}, JOB_NEXT = ${JOB_NEXT};
function runChunks(job, args, first, kernel, call, a) {
  const m = job[JOB_M], rows = job[JOB_ROWS], chunk = job[JOB_CHUNK];
  const chunks = job[JOB_CHUNKS], ranges = job[JOB_RANGES];
  for (let k = 0; k < ranges; k++) {
    const r = (first + k) % ranges;
    const lo = Math.floor(r * chunks / ranges), hi = Math.floor((r + 1) * chunks / ranges);
    for (;;) {
      const j = lo + Atomics.add(job, JOB_NEXT + r, 1);
      if (j >= hi) break;
      const row0 = j * chunk, count = Math.min(chunk, rows - row0);
      for (let i = 0; i < JOB_ARGS; i++) a[i] = args[i];
      for (const p of kernel.ptrs) a[p] += row0 * m * 4;
      if (kernel.consts !== undefined) a[kernel.consts] += row0 * 16;
      if (kernel.row0 !== undefined) a[kernel.row0] = row0;
      a[kernel.rows] = count;
      call(a);
    }
  }
}
function start(data, post, leave) {
  let c, fns, k;
  try {
    const inst = new WebAssembly.Instance(data.module, { env: { memory: data.memory } });
    k = inst.exports;
    k.__stack_pointer.value = data.stackTop;
    fns = data.kernels.map((d) => k[d.name]);
    c = new Int32Array(data.memory.buffer, data.ctl, MSG_AT / 4);
  } catch (e) {
    post({ error: String(e && e.message || e) });
    return;
  }
  // The block starts zeroed: a job posted as soon as "ready" arrives must not be taken as seen.
  let seen = 0;
  Atomics.store(c, READY, 1);
  post({ ready: true });
  const a = new Array(JOB_ARGS).fill(0);
  let jobAt = -1, job, args, quit = false;
  for (;;) {
    let spins = 0;
    while (Atomics.load(c, SEQ) === seen) {
      if (++spins > 2000) Atomics.wait(c, SEQ, seen);
    }
    seen = Atomics.load(c, SEQ);
    if (Atomics.load(c, STATE) === EXIT) return;
    // Take the job unless the caller withdrew it (it ran every chunk itself meanwhile).
    if (Atomics.compareExchange(c, STATE, seen, -seen) !== seen) continue;
    const at = Atomics.load(c, JOB);
    if (at !== jobAt) {
      jobAt = at;
      job = new Int32Array(data.memory.buffer, at, ${JOB_INTS});
      args = new Float64Array(data.memory.buffer, at + JOB_ARGS_AT, JOB_ARGS);
    }
    const f = job[JOB_FN], fn = fns[f];
    try {
      const call = (v) => {
        c[RAN]++;
        fn(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11]);
      };
      if (c[SLEEP] > 0) Atomics.wait(c, MSG_AT / 4 - 1, 0, c[SLEEP]);
      if (c[TRAP] === 2) {
        // A test's fault: the thread ends after this job, as a crash would.
        c[TRAP] = 0;
        quit = true;
      }
      if (c[TRAP] === 1) {
        // A test's fault: the kernel on an address past the end of memory, a real trap.
        c[TRAP] = 0;
        for (let i = 0; i < JOB_ARGS; i++) a[i] = args[i];
        a[data.kernels[f].ptrs[0] ?? 0] = 0xfffffff0;
        call(a);
      }
      runChunks(job, args, c[RANGE], data.kernels[f], call, a);
      c[STATUS] = 0;
    } catch (e) {
      k.__stack_pointer.value = data.stackTop;
      const text = String(e && e.message || e).slice(0, MSG_LEN - 1);
      const u = new Uint16Array(data.memory.buffer, data.ctl + MSG_AT, MSG_LEN);
      for (let i = 0; i < text.length; i++) u[i] = text.charCodeAt(i);
      u[text.length] = 0;
      c[STATUS] = 1;
    }
    Atomics.store(c, DONE, seen);
    Atomics.notify(c, DONE);
    if (quit) return leave();
  }
}
`;

/**
 * The worker for node:worker_threads (Node, Deno): started with `eval`, data in `workerData`. A
 * dynamic import, not `require`: the text runs as an ES module where the process was started so
 * (Node passes `--input-type=module` on to a worker), and as a script elsewhere.
 */
export const NODE_WORKER_SOURCE = `${body}
import("node:worker_threads").then(({ parentPort, workerData }) =>
  start(workerData, (m) => parentPort.postMessage(m), () => process.exit(1))
);
`;

/** The worker for web Workers (a classic worker from a blob: URL): data in the first message. */
export const WEB_WORKER_SOURCE = `${body}
self.onmessage = (e) => {
  self.onmessage = null;
  start(e.data, (m) => self.postMessage(m), () => self.close());
};
`;
