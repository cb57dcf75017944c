/**
 * The source of a WASM backend worker thread, as a string: a worker must start without file
 * access and without fetching (so that no permission flag is needed and an import by URL works),
 * so it runs from this text (node:worker_threads `eval`, or a `blob:` URL in a browser).
 *
 * A worker instantiates the shared-memory build of the kernels on the backend's memory, moves its
 * shadow stack to a block of its own (every instance starts with the same `__stack_pointer`),
 * says "ready", then serves jobs through its control block in the shared memory (the protocol is
 * in ./_wasm_threads.ts): it spins briefly, then sleeps in `Atomics.wait`, for a new sequence
 * number; runs the kernel named by the job with the job's arguments; records whether it trapped
 * (and the message); and publishes the sequence number as done.
 *
 * @module
 */

/** Int32 slots of a control block (see ./_wasm_threads.ts). */
export const CTL_SEQ = 0, CTL_DONE = 1, CTL_FN = 2, CTL_STATUS = 3;
/** Byte offset of the job's arguments (f64) in a control block, and how many there are. */
export const CTL_ARGS_AT = 16, CTL_ARGS = 12;
/** Byte offset and length of the trap message (UTF-16 code units as u16) in a control block. */
export const CTL_MSG_AT = 112, CTL_MSG_LEN = 200;
/** Bytes per control block. */
export const CTL_BYTES = 512;
/** `CTL_FN` value that ends the worker. */
export const FN_EXIT = -1;

/** What the worker gets first: everything it needs, nothing that needs a file. */
export interface WorkerStart {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** Byte offset of this worker's control block. */
  ctl: number;
  /** The top (end) of this worker's shadow stack block. */
  stackTop: number;
  /** Kernel export names, by the index a job gives in `CTL_FN`. */
  names: string[];
}

/**
 * The worker's body. `post` sends a message to the owner; the first message in is a
 * {@linkcode WorkerStart}. Spins ~20 us of loads before sleeping: a sleeping worker takes ~25 us
 * to wake, a spinning one ~8 us (THREADS.md).
 */
const body = `
const SEQ = ${CTL_SEQ}, DONE = ${CTL_DONE}, FN = ${CTL_FN}, STATUS = ${CTL_STATUS};
const ARGS_AT = ${CTL_ARGS_AT}, MSG_AT = ${CTL_MSG_AT}, MSG_LEN = ${CTL_MSG_LEN};
function start(data, post) {
  let c, fns, k, a;
  try {
    const inst = new WebAssembly.Instance(data.module, { env: { memory: data.memory } });
    k = inst.exports;
    k.__stack_pointer.value = data.stackTop;
    fns = data.names.map((n) => k[n]);
    const buf = data.memory.buffer;
    c = new Int32Array(buf, data.ctl, ARGS_AT / 4);
    a = new Float64Array(buf, data.ctl + ARGS_AT, ${CTL_ARGS});
  } catch (e) {
    post({ error: String(e && e.message || e) });
    return;
  }
  // The block starts zeroed: a job posted as soon as "ready" arrives must not be taken as seen.
  let seen = 0;
  post({ ready: true });
  for (;;) {
    let spins = 0;
    while (Atomics.load(c, SEQ) === seen) {
      if (++spins > 2000) Atomics.wait(c, SEQ, seen);
    }
    seen = Atomics.load(c, SEQ);
    const f = Atomics.load(c, FN);
    if (f < 0) return;
    try {
      fns[f](a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11]);
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
  }
}
`;

/** The worker for node:worker_threads (Node, Deno): started with `eval`, data in `workerData`. */
export const NODE_WORKER_SOURCE = `${body}
const { parentPort, workerData } = require("node:worker_threads");
start(workerData, (m) => parentPort.postMessage(m));
`;

/** The worker for web Workers (a module worker from a blob: URL): data in the first message. */
export const WEB_WORKER_SOURCE = `${body}
self.onmessage = (e) => { self.onmessage = null; start(e.data, (m) => self.postMessage(m)); };
`;
