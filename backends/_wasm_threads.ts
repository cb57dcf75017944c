/**
 * Threads for the WASM backend: the process-wide thread count ({@linkcode setNumThreads}), the
 * choice between the two builds of the kernels (the shared-memory build where threads can run,
 * else the single-threaded one, with the reason), the pool of worker threads, and the splitting
 * of a kernel's rows across them.
 *
 * Dispatch goes through a control block per worker in the shared linear memory
 * (./_wasm_worker.ts has the layout): the caller writes the job (kernel index and arguments),
 * bumps the block's sequence number and notifies; the worker runs the job and publishes the
 * sequence number as done. The calling thread runs one share of the rows itself and then waits
 * (`Atomics.wait`, bounded) for the others. A message per call would cost 30-200 us, this costs
 * ~8-25 us (THREADS.md).
 *
 * Results do not depend on the thread count, bit for bit: the row kernels compute each row from
 * that row alone, a row is always done by one thread in the same order, and every cross-row
 * reduction (the LN/BN derivation, the backward's combine) runs once, on the calling thread,
 * after all rows are done. Only SwitchNorm2d/3d ("nd") calls are split; SwitchNorm1d ("1d")
 * reduces over the batch per channel and runs on one thread.
 *
 * Lifecycle: the pool starts in the background when the backend loads (the first call does not
 * wait for it; calls run on one thread until workers are ready). Workers are node:worker_threads
 * workers where that module exists (Node, Deno), `unref()`'d so that an idle pool never keeps the
 * process alive; in a browser they are web Workers from a `blob:` URL. Neither needs file access.
 *
 * @module
 */
import type { Heap } from "./_wasm_heap.ts";
import type { WasmKernels as BaseKernels } from "./_wasm_abi.ts";
import {
  CTL_BYTES,
  CTL_DONE,
  CTL_JOB,
  CTL_MSG_AT,
  CTL_MSG_LEN,
  CTL_RAN,
  CTL_RANGE,
  CTL_READY,
  CTL_SEQ,
  CTL_SLEEP,
  CTL_STATE,
  CTL_STATUS,
  CTL_TRAP,
  JOB_ARGS,
  JOB_ARGS_AT,
  JOB_CHUNK,
  JOB_CHUNKS,
  JOB_FN,
  JOB_INTS,
  JOB_M,
  JOB_NEXT,
  JOB_RANGES,
  JOB_ROWS,
  NODE_WORKER_SOURCE,
  type RowArgs,
  runChunks,
  STATE_EXIT,
  WEB_WORKER_SOURCE,
  type WorkerStart,
} from "./_wasm_worker.ts";
import { wasmThreadsBytes } from "../wasm/switchnorm_wasm_threads.ts";
import { describeValue } from "../_validate.ts";

/** The exports of the kernels that split calls by rows use (wasm/src/lib.rs). */
export interface WasmKernels extends BaseKernels {
  /** `sn_backward_reduce_nd`'s sweep over rows row0.. (x, dy at that range's data). */
  sn_backward_rows_nd(
    x: number,
    dy: number,
    row0: number,
    rows: number,
    n: number,
    c: number,
    m: number,
    stats: number,
    work: number,
  ): void;
  /** The rest of `sn_backward_reduce_nd` once every row was swept (x, dy: the whole tensor). */
  sn_backward_combine_nd(
    x: number,
    dy: number,
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    stats: number,
    work: number,
  ): void;
  /** `sn_backward_dx_nd`'s per-row constants, into the work area; 1 if some row is wide. */
  sn_backward_constants_nd(
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    stats: number,
    work: number,
    count: number,
  ): number;
  /** `sn_backward_dx_nd`'s sweep over rows row0.. (x, dy, dx at that range's data). */
  sn_backward_dx_rows_nd(
    x: number,
    dy: number,
    dx: number,
    row0: number,
    rows: number,
    m: number,
    work: number,
    n: number,
    c: number,
    layer: number,
    stats: number,
    wide: number,
  ): void;
}

let requested: number | undefined;

/** The default: the available cores, where the runtime says. */
function defaultThreads(): number {
  const n = (globalThis.navigator as { hardwareConcurrency?: number } | undefined)
    ?.hardwareConcurrency;
  return Number.isSafeInteger(n) && n! >= 1 ? n! : 1;
}

/** Sets the process-wide thread count; documented where mod.ts exports it (../_threads.ts). */
export function setNumThreads(n: number): void {
  if (typeof n !== "number") {
    throw new TypeError(
      `setNumThreads: n must be an integer from 1 to 1024, got ${describeValue(n)}`,
    );
  }
  if (!Number.isInteger(n) || n < 1 || n > 1024) {
    throw new RangeError(`setNumThreads: n must be an integer from 1 to 1024, got ${n}`);
  }
  requested = n;
  for (const ref of pools) ref.deref()?.resize();
}

/** The process-wide thread count; documented where mod.ts exports it (../_threads.ts). */
export function getNumThreads(): number {
  return requested ?? defaultThreads();
}

/**
 * Calls over fewer elements than this run on one thread: waking a worker costs ~8-25 us, which a
 * share of a smaller tensor does not repay (THREADS.md measured the crossover at 0.5-1 MiB).
 */
const MIN_ELEMENTS = 1 << 18;
let minElements = MIN_ELEMENTS;

/** How long a worker may take to start, and to finish its share of one call. */
const START_TIMEOUT_MS = 20_000;
const JOB_TIMEOUT_MS = 120_000;
/**
 * Elements per chunk of rows (at least; chunks are whole groups of 4 rows), the unit a thread
 * claims: 256 KiB, small enough that a thread whose core is busy elsewhere leaves little for the
 * others to wait on, large enough that a claim (an atomic add and a call) costs nothing.
 */
const CHUNK_ELEMENTS = 1 << 16;

/** Bytes of each worker's own shadow stack (the module is linked with -zstack-size=65536). */
const STACK_BYTES = 65536;

/** For tests: fault injection and environment simulation. Not part of the public API. */
export interface ThreadTestHooks {
  /** Pretend that this is missing: "Worker", "SharedArrayBuffer" or "Atomics". */
  missing?: "Worker" | "SharedArrayBuffer" | "Atomics";
  /** Worker source to start instead of the real one (e.g. one that throws). */
  workerSource?: string;
  /** Give the next job of worker 1 an out-of-bounds pointer, so that it traps. */
  trapNextJob?: boolean;
  /** Split calls from this many elements up (default 2^18). */
  minElements?: number;
  /** Chunks of this many elements at least (whole groups of 4 rows; default 2^16). */
  chunkElements?: number;
  /** The calling thread claims chunks only after the workers finished (they then run all). */
  workersFirst?: boolean;
  /** Worker 1 sleeps this many ms after taking each job (a worker whose core is elsewhere). */
  slowWorkerMs?: number;
  /** Keep splitting however late workers are (no back-off). */
  noBackoff?: boolean;
  /** The first back-off, in ms (default 5). */
  backoffStartMs?: number;
  /** Called when a worker is about to be created. */
  onSpawn?: () => void;
  /** Called after each split call with its thread count and the chunks workers ran. */
  onSplit?: (threads: number, workerChunks: number) => void;
  /** Make loadWasmBackend wait until the workers started (so that every call is split). */
  waitForWorkers?: boolean;
}

let hooks: ThreadTestHooks = {};

/** The test hooks in force. */
export function threadTestHooks(): Readonly<ThreadTestHooks> {
  return hooks;
}

/** Sets (or clears, with undefined) the test hooks; affects backends loaded afterwards too. */
export function setThreadTestHooks(h: ThreadTestHooks | undefined): void {
  hooks = h ?? {};
  minElements = hooks.minElements ?? MIN_ELEMENTS;
}

/**
 * The kernels that take a range of rows, by index (a job names its kernel by index), and where
 * each takes it: `ptrs`, the arguments that point at row data (m floats per row), `consts` one
 * that points at 16 bytes per row, `row0` the first row's index, `rows` the row count.
 */
const ROW_KERNELS: readonly RowArgs[] = [
  { name: "sn_stats_rows_nd", ptrs: [0], row0: 1, rows: 2 },
  { name: "sn_normalize_rows_nd", ptrs: [0, 1], consts: 4, rows: 2 },
  { name: "sn_backward_rows_nd", ptrs: [0, 1], row0: 2, rows: 3 },
  { name: "sn_backward_dx_rows_nd", ptrs: [0, 1, 2], row0: 3, rows: 4 },
];
const STATS_ROWS = 0, NORMALIZE_ROWS = 1, BACKWARD_ROWS = 2, DX_ROWS = 3;

type NodeWorker = {
  unref(): void;
  terminate(): unknown;
  on(event: string, f: (v: unknown) => void): void;
};
type NodeWorkerModule = {
  Worker: new (src: string, o: { eval: true; workerData: WorkerStart }) => NodeWorker;
};

/**
 * Whether workers come from node:worker_threads (Deno, Node: they can be `unref()`'d, so that an
 * idle pool never keeps the process alive) rather than web Workers (a browser).
 */
function hasNodeWorkers(): boolean {
  const g = globalThis as { Deno?: unknown; process?: { versions?: { node?: string } } };
  return g.Deno !== undefined || g.process?.versions?.node !== undefined;
}

let nodeModule: Promise<NodeWorkerModule> | undefined;

/** node:worker_threads, imported once, when the first worker starts (10-50 ms in Deno). */
function nodeWorkers(): Promise<NodeWorkerModule> {
  // A computed specifier: bundlers for the browser must not try to resolve it.
  const spec = ["node", "worker_threads"].join(":");
  return nodeModule ??= import(spec) as Promise<NodeWorkerModule>;
}

/** A started worker: how to end it. */
interface Thread {
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
function spawn(
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

/** Whether this thread may block in Atomics.wait (not a browser's main thread). */
function canBlock(): boolean {
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pools, for setNumThreads; weakly, so that a backend dropped without dispose() can go. */
const pools = new Set<WeakRef<ThreadPool>>();

/** Ends a worker (it may be asleep, or about to take a job: both see the exit). */
function stopThread(t: Thread): void {
  Atomics.store(t.ctl, CTL_STATE, STATE_EXIT);
  Atomics.add(t.ctl, CTL_SEQ, 1);
  Atomics.notify(t.ctl, CTL_SEQ);
  t.end();
  // The block stays allocated: a worker that has not yet seen the exit may still read it.
}

/** Ends the workers of a pool that was garbage-collected without close() (its backend's). */
const reaper = new FinalizationRegistry<
  { threads: Thread[]; pending: Thread[]; ref: WeakRef<ThreadPool> }
>(
  (held) => {
    pools.delete(held.ref);
    for (const t of [...held.threads, ...held.pending]) stopThread(t);
  },
);

/**
 * The worker threads of one backend (one shared memory), and the row splitting. Workers start in
 * the background; until they are ready (or when they cannot start) calls run on one thread.
 */
export class ThreadPool {
  readonly #k: WasmKernels;
  readonly #module: WebAssembly.Module;
  readonly #heap: Heap;
  readonly #node: boolean;
  readonly #block = canBlock();
  readonly #threads: Thread[] = [];
  /** Workers created but not yet known to be ready. */
  readonly #pending: Thread[] = [];
  readonly #ref: WeakRef<ThreadPool>;
  #starting = 0;
  /** Why calls run on one thread although more were asked for; undefined while all is well. */
  #failure?: string;
  #ready?: Promise<void>;
  /** The job block (./_wasm_worker.ts), its views, and the calling thread's callers. */
  readonly #jobAt: number;
  readonly #job: Int32Array;
  readonly #jobArgs: Float64Array;
  readonly #calls: ((a: number[]) => void)[];
  readonly #a = new Array<number>(JOB_ARGS).fill(0);

  constructor(
    kernels: WasmKernels,
    module: WebAssembly.Module,
    heap: Heap,
    node: boolean,
  ) {
    this.#k = kernels;
    this.#module = module;
    this.#heap = heap;
    this.#node = node;
    this.#jobAt = heap.alloc(JOB_INTS * 4);
    // Views of a shared memory stay valid when it grows (its buffers never detach).
    this.#job = new Int32Array(kernels.memory.buffer, this.#jobAt, JOB_INTS);
    this.#jobArgs = new Float64Array(kernels.memory.buffer, this.#jobAt + JOB_ARGS_AT, JOB_ARGS);
    this.#calls = ROW_KERNELS.map((spec) => {
      const f = kernels[spec.name as keyof WasmKernels] as (...v: number[]) => void;
      // Every argument slot of a job (JOB_ARGS), as the workers pass them.
      return (v: number[]) =>
        f(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11]);
    });
    this.#ref = new WeakRef(this);
    pools.add(this.#ref);
    reaper.register(this, { threads: this.#threads, pending: this.#pending, ref: this.#ref }, this);
    this.resize();
  }

  /**
   * Starts workers up to getNumThreads() - 1 (in the background). Workers beyond a lowered count
   * stay, asleep: a count that goes down and up again (a benchmark, a test) must not pay the
   * start-up again, and an idle worker costs nothing but its memory.
   */
  resize(): void {
    const want = getNumThreads() - 1;
    if (this.#failure !== undefined) return;
    const more = want - this.#threads.length - this.#starting;
    if (more <= 0) return;
    this.#starting += more;
    // After the current task: creating a worker blocks this thread (Deno: ~20-120 ms each), which
    // the call that loaded the backend must not wait for.
    this.#ready = new Promise<void>((resolve) => setTimeout(resolve, 0)).then(async () => {
      const started: Promise<void>[] = [];
      for (let i = 0; i < more; i++) started.push(this.#startOne());
      await Promise.all(started);
    });
  }

  async #startOne(): Promise<void> {
    if (this.#failure !== undefined) {
      this.#starting--;
      return;
    }
    const block = this.#heap.alloc(CTL_BYTES + STACK_BYTES);
    const ctlAt = block + STACK_BYTES;
    try {
      const ctl = new Int32Array(this.#k.memory.buffer, ctlAt, CTL_MSG_AT / 4);
      ctl.fill(0);
      const start: WorkerStart = {
        module: this.#module,
        memory: this.#k.memory,
        ctl: ctlAt,
        stackTop: ctlAt,
        kernels: [...ROW_KERNELS],
      };
      hooks.onSpawn?.();
      const { end, ready } = spawn(start, this.#node ? await nodeWorkers() : undefined);
      const thread = { ctl, ctlAt, block, seq: 0, end };
      // Usable as soon as it marks itself ready in its control block (#promote), without waiting
      // for its message, which a caller's burst of calls would hold back.
      this.#pending.push(thread);
      try {
        await ready;
      } finally {
        this.#pending.splice(this.#pending.indexOf(thread), 1);
      }
      if (this.#failure !== undefined) {
        stopThread(thread);
        return;
      }
      if (!this.#threads.includes(thread)) this.#threads.push(thread);
    } catch (e) {
      this.#heap.free(block);
      this.#fail(`a worker thread failed to start: ${(e as Error).message}`);
    } finally {
      this.#starting--;
    }
  }

  /** Resolves once the workers asked for so far have started or failed (for tests). */
  async ready(): Promise<void> {
    while (this.#starting > 0) await this.#ready;
  }

  /** Moves the pending workers that marked themselves ready into the pool. */
  #promote(): void {
    for (const t of this.#pending) {
      if (Atomics.load(t.ctl, CTL_READY) === 1 && !this.#threads.includes(t)) {
        this.#threads.push(t);
      }
    }
  }

  /** Threads in use now for a call of `elements` elements, the calling one included. */
  threadsFor(elements: number): number {
    if (elements < minElements) return 1;
    if (this.#pending.length > 0) this.#promote();
    if (this.#backoffMs > 0 && performance.now() < this.#quietUntil) return 1;
    return Math.min(getNumThreads(), this.#threads.length + 1);
  }

  /**
   * Back-off: after a split call in which the calling thread, out of chunks, waited on a worker
   * for longer than a quarter of its own share (and 0.2 ms), calls run on one thread for a while,
   * 5 ms at first, doubling up to 1 s while it keeps happening; a split call without such a wait
   * halves it. A worker whose core is busy elsewhere can hold a chunk for a scheduler time slice
   * (milliseconds): without this, threads would make such calls several times slower than one.
   */
  #backoffMs = 0;
  #quietUntil = 0;

  #judge(own: number, waited: number): void {
    if (hooks.noBackoff) return;
    if (waited > 0.2 && waited > own / 4) {
      const first = hooks.backoffStartMs ?? 5;
      this.#backoffMs = Math.min(Math.max(1000, first), Math.max(first, this.#backoffMs * 2));
      this.#quietUntil = performance.now() + this.#backoffMs;
    } else this.#backoffMs = this.#backoffMs < 5 ? 0 : this.#backoffMs / 2;
  }

  /** How calls run: for backendInfo.reason. */
  get note(): string {
    if (this.#pending.length > 0) this.#promote();
    const n = getNumThreads();
    if (n === 1) return "1 thread (setNumThreads(1))";
    if (this.#failure !== undefined) return `1 thread: ${this.#failure}`;
    const have = Math.min(n, this.#threads.length + 1);
    if (have < n) return `${have} of ${n} threads (workers starting)`;
    const late = this.#backoffMs > 0 ? `; on 1 for ${this.#backoffMs} ms after a late worker` : "";
    return `${n} threads (calls under ${minElements} elements on 1${late})`;
  }

  #fail(reason: string): void {
    this.#failure ??= reason;
    while (this.#threads.length > 0) stopThread(this.#threads.pop()!);
    for (const t of this.#pending) stopThread(t);
  }

  /**
   * Runs row kernel `fn` over `rows` rows of `m` floats, with `args` as for the whole tensor
   * (row0 = 0, rows = all), on up to `threads` threads. The rows go in chunks (whole groups of 4
   * rows) into one contiguous range per thread; each thread claims the chunks of its own range,
   * then any left in the others' (`runChunks`), so a worker that its core does not run soon
   * delays nothing: the others take its chunks. Protocol, per worker taking part: the caller
   * writes the job block, then the worker's state (the job's sequence number) and sequence
   * number, and notifies; the worker takes the job by swapping the state to minus the sequence
   * number, runs chunks, and publishes the sequence number as done. When the caller has no chunk
   * left to claim, it withdraws the job from each worker that has not taken it yet (swapping the
   * state to 0) and waits for the others to be done. Throws, after every thread finished, if one
   * of them trapped.
   */
  #run(fn: number, rows: number, m: number, threads: number, args: readonly number[]): void {
    const chunkElements = hooks.chunkElements ?? CHUNK_ELEMENTS;
    const chunk = Math.max(4, Math.ceil(chunkElements / m / 4) * 4);
    const chunks = Math.ceil(rows / chunk), ranges = Math.min(threads, chunks);
    const job = this.#job;
    job[JOB_FN] = fn;
    job[JOB_M] = m;
    job[JOB_ROWS] = rows;
    job[JOB_CHUNK] = chunk;
    job[JOB_CHUNKS] = chunks;
    job[JOB_RANGES] = ranges;
    job.fill(0, JOB_NEXT, JOB_NEXT + ranges);
    for (let i = 0; i < JOB_ARGS; i++) this.#jobArgs[i] = args[i] ?? 0;
    const trap = hooks.trapNextJob;
    hooks.trapNextJob = false;
    for (let t = 1; t < ranges; t++) {
      const th = this.#threads[t - 1], c = th.ctl;
      th.seq = th.seq >= 0x3fffffff ? 1 : th.seq + 1;
      c[CTL_JOB] = this.#jobAt;
      c[CTL_RANGE] = t;
      c[CTL_RAN] = 0;
      c[CTL_TRAP] = trap && t === 1 ? 1 : 0;
      c[CTL_SLEEP] = t === 1 ? hooks.slowWorkerMs ?? 0 : 0;
      Atomics.store(c, CTL_STATE, th.seq);
      Atomics.store(c, CTL_SEQ, th.seq);
      Atomics.notify(c, CTL_SEQ);
    }
    let error: unknown;
    const own = () => {
      try {
        runChunks(job, this.#jobArgs, 0, ROW_KERNELS[fn], this.#calls[fn], this.#a);
      } catch (e) {
        error ??= e;
      }
    };
    const workersFirst = hooks.workersFirst;
    const t0 = performance.now();
    if (!workersFirst) own();
    const t1 = performance.now();
    const deadline = performance.now() + JOB_TIMEOUT_MS;
    let workerChunks = 0;
    for (let t = 1; t < ranges; t++) {
      const th = this.#threads[t - 1], c = th.ctl;
      // Withdrawn before the worker took it: nothing to wait for (a test's fault must be taken).
      const keep = workersFirst || (t === 1 && (trap || hooks.slowWorkerMs));
      if (!keep && Atomics.compareExchange(c, CTL_STATE, th.seq, 0) === th.seq) {
        continue;
      }
      for (;;) {
        const done = Atomics.load(c, CTL_DONE);
        if (done === th.seq) break;
        if (performance.now() > deadline) {
          this.#fail(`worker thread ${t} did not finish within ${JOB_TIMEOUT_MS / 1000} s`);
          throw new Error(
            `wasm backend: worker thread ${t} did not finish its rows of ` +
              `${ROW_KERNELS[fn].name} within ${JOB_TIMEOUT_MS / 1000} s; calls now run on ` +
              "one thread",
          );
        }
        if (this.#block) Atomics.wait(c, CTL_DONE, done, 1000);
      }
      workerChunks += c[CTL_RAN];
      if (c[CTL_STATUS] !== 0) {
        const u = new Uint16Array(this.#k.memory.buffer, th.ctlAt + CTL_MSG_AT, CTL_MSG_LEN);
        let text = "";
        for (let j = 0; j < CTL_MSG_LEN && u[j] !== 0; j++) text += String.fromCharCode(u[j]);
        error ??= new Error(
          `wasm backend: worker thread ${t} trapped in ${ROW_KERNELS[fn].name}: ${text}`,
        );
      }
    }
    if (workersFirst) own();
    else this.#judge(t1 - t0, performance.now() - t1);
    hooks.onSplit?.(ranges, workerChunks);
    if (error !== undefined) throw error;
  }

  /** sn_stats_nd, split by rows: the IN moments of every row, then the derivation once. */
  statsNd(x: number, n: number, c: number, m: number, mode: number, layer: number, st: number) {
    const threads = this.threadsFor(n * c * m);
    if (threads === 1) return this.#k.sn_stats_nd(x, n, c, m, mode, layer, st);
    this.#run(STATS_ROWS, n * c, m, threads, [x, 0, n * c, n, c, m, st]);
    this.#k.sn_stats_derive_nd(n, c, mode, layer, st);
  }

  /** sn_normalize_nd, split by rows: the per-row constants once, then the sweep. */
  normalizeNd(
    x: number,
    y: number,
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    st: number,
    scratch: number,
  ) {
    const threads = this.threadsFor(n * c * m);
    if (threads === 1) return this.#k.sn_normalize_nd(x, y, n, c, m, mode, layer, st, scratch);
    const wide = this.#k.sn_constants_nd(n, c, mode, layer, st, scratch);
    this.#run(NORMALIZE_ROWS, n * c, m, threads, [x, y, n * c, m, scratch, wide]);
  }

  /** sn_backward_reduce_nd, split by rows: the row sums, then the combine once. */
  backwardReduceNd(
    x: number,
    dy: number,
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    st: number,
    work: number,
  ) {
    const threads = this.threadsFor(n * c * m);
    if (threads === 1) {
      return this.#k.sn_backward_reduce_nd(x, dy, n, c, m, mode, layer, st, work);
    }
    this.#run(BACKWARD_ROWS, n * c, m, threads, [x, dy, 0, n * c, n, c, m, st, work]);
    this.#k.sn_backward_combine_nd(x, dy, n, c, m, mode, layer, st, work);
  }

  /** sn_backward_dx_nd, split by rows: the per-row constants once, then the sweep. */
  backwardDxNd(
    x: number,
    dy: number,
    dx: number,
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    st: number,
    work: number,
    count: number,
  ) {
    const threads = this.threadsFor(n * c * m);
    if (threads === 1) {
      return this.#k.sn_backward_dx_nd(x, dy, dx, n, c, m, mode, layer, st, work, count);
    }
    const wide = this.#k.sn_backward_constants_nd(n, c, m, mode, layer, st, work, count);
    this.#run(DX_ROWS, n * c, m, threads, [x, dy, dx, 0, n * c, m, work, n, c, layer, st, wide]);
  }

  /** Ends the workers (the backend's dispose). */
  close(): void {
    pools.delete(this.#ref);
    reaper.unregister(this);
    this.#fail("the backend was disposed");
  }
}

/** Kernels on one thread: the same methods as {@linkcode ThreadPool}, no splitting. */
export class OneThread {
  readonly #k: WasmKernels;
  /** Why there are no threads, for backendInfo.reason. */
  readonly note: string;

  constructor(kernels: WasmKernels, why: string) {
    this.#k = kernels;
    this.note = `1 thread: ${why}`;
  }

  threadsFor(_elements: number): number {
    return 1;
  }

  statsNd(x: number, n: number, c: number, m: number, mode: number, layer: number, st: number) {
    this.#k.sn_stats_nd(x, n, c, m, mode, layer, st);
  }

  normalizeNd(
    x: number,
    y: number,
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    st: number,
    scratch: number,
  ) {
    this.#k.sn_normalize_nd(x, y, n, c, m, mode, layer, st, scratch);
  }

  backwardReduceNd(
    x: number,
    dy: number,
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    st: number,
    work: number,
  ) {
    this.#k.sn_backward_reduce_nd(x, dy, n, c, m, mode, layer, st, work);
  }

  backwardDxNd(
    x: number,
    dy: number,
    dx: number,
    n: number,
    c: number,
    m: number,
    mode: number,
    layer: number,
    st: number,
    work: number,
    count: number,
  ) {
    this.#k.sn_backward_dx_nd(x, dy, dx, n, c, m, mode, layer, st, work, count);
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {}
}

/** What runs the kernels of a backend: a pool, or one thread. */
export type RowRunner = ThreadPool | OneThread;

/** Why threads cannot run here, or undefined when they can (module bytes not yet checked). */
function missingForThreads(node: boolean): string | undefined {
  if (hooks.missing) return `${hooks.missing} is not available`;
  if (typeof SharedArrayBuffer !== "function") {
    return "SharedArrayBuffer is not available (a browser page needs cross-origin isolation)";
  }
  if (typeof Atomics !== "object") return "Atomics is not available";
  if (!node && typeof Worker !== "function") return "Worker is not available";
  return undefined;
}

let threadsModule: Promise<WebAssembly.Module> | undefined;

/** What to instantiate: the shared-memory build with a memory to import, or why not. */
export type KernelChoice =
  | { module: WebAssembly.Module; memory: WebAssembly.Memory; node: boolean }
  | { why: string };

/**
 * Decides between the builds: the shared-memory one where threads can run (and its memory), else
 * the reason to use the single-threaded one. With getNumThreads() = 1 when the backend loads, the
 * single-threaded one: it is exactly the one-thread path of before threads, and on one thread
 * the shared build measured the same within this machine's noise, not better. A backend loaded
 * so stays on one thread.
 */
export async function chooseKernels(): Promise<KernelChoice> {
  const node = hasNodeWorkers();
  const missing = missingForThreads(node);
  if (missing !== undefined) return { why: missing };
  if (getNumThreads() === 1) return { why: "setNumThreads(1) when the backend loaded" };
  try {
    if (!threadsModule) {
      threadsModule = WebAssembly.compile(wasmThreadsBytes());
      threadsModule.catch(() => threadsModule = undefined);
    }
    const module = await threadsModule;
    // 17 pages: the module's own minimum (stack, data); 65536: 4 GiB, as the other build.
    const memory = new WebAssembly.Memory({ initial: 17, maximum: 65536, shared: true });
    return { module, memory, node };
  } catch (e) {
    return { why: `the shared-memory module does not load here (${(e as Error).message})` };
  }
}
