/**
 * The worker threads of one WASM backend (one shared memory) and the splitting of a kernel's rows
 * across them (the protocol is described in ./_wasm_threads.ts): jobs written to each worker's
 * control block, chunks of rows claimed by every thread, the calling thread's wait, back-off from
 * late workers, workers that end (their blocks freed, replaced), and the pool's end.
 *
 * Depends on the heap (_wasm_heap.ts), the worker's control-block layout (_wasm_worker.ts), the
 * thread settings (_wasm_threads.ts), the spawner (_wasm_spawn.ts) and OneThread.
 *
 * @module
 */
import type { Heap } from "./_wasm_heap.ts";
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
  type RowArgs,
  runChunks,
  type WorkerStart,
} from "./_wasm_worker.ts";
import {
  CHUNK_ELEMENTS,
  getNumThreads,
  hooks,
  JOB_TIMEOUT_MS,
  minElements,
  pools,
  STACK_BYTES,
  type WasmKernels,
} from "./_wasm_threads.ts";
import { nodeWorkers, spawn, stopThread, type Thread } from "./_wasm_spawn.ts";
import type { OneThread } from "./_wasm_one_thread.ts";

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
  // SwitchNorm1d: every pointer is the whole tensor's; "rows" are tiles for two of them.
  { name: "sn_stats_tile_1d", ptrs: [], row0: 1, rows: 2 },
  { name: "sn_normalize_rows_1d", ptrs: [], row0: 2, rows: 3 },
  { name: "sn_backward_tile_1d", ptrs: [], row0: 2, rows: 3 },
  { name: "sn_backward_dx_rows_1d", ptrs: [], row0: 3, rows: 4 },
];
const STATS_ROWS = 0, NORMALIZE_ROWS = 1, BACKWARD_ROWS = 2, DX_ROWS = 3;
const STATS_TILES_1D = 4, NORMALIZE_ROWS_1D = 5, BACKWARD_TILES_1D = 6, DX_ROWS_1D = 7;

/** Whether this thread may block in Atomics.wait (not a browser's main thread). */
function canBlock(): boolean {
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * How many times a pool replaces a worker whose thread ended between calls before it gives up
 * and runs on one thread (a runtime that keeps killing workers must not make every call start
 * one: in Deno that blocks the calling thread for 30-110 ms).
 */
const MAX_REPLACED = 100;

/**
 * A start of workers still waiting for the current task to end after this long (ms) is begun by
 * the next split call: a burst of awaited calls never ends its task. Longer than a short burst
 * (which would wait on the worker's creation for more than it gains), short beside a training
 * loop.
 */
const START_OVERDUE_MS = 50;

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
  /** Workers replaced after their thread ended (MAX_REPLACED); set once the backend is closed. */
  #replaced = 0;
  #closed = false;
  /** Why calls run on one thread although more were asked for; undefined while all is well. */
  #failure?: string;
  #ready?: Promise<void>;
  /** Worker starts that wait for the current task to end (`resize`), and when each was asked. */
  readonly #waiting: { begin: () => void; at: number }[] = [];
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
    // the call that loaded the backend must not wait for. A loop of awaited calls never ends its
    // task (it runs on microtasks), so a split call that finds the start waiting for longer than
    // START_OVERDUE_MS begins it (`threadsFor`): a training loop that never yielded ran on one
    // thread throughout (150 calls, 1.25 s; realistic-use helper-83).
    let begin!: () => void;
    const asked = new Promise<void>((resolve) => (begin = resolve));
    const entry = { begin, at: performance.now() };
    this.#waiting.push(entry);
    setTimeout(() => this.#begin(entry), 0);
    this.#ready = asked.then(async () => {
      const started: Promise<void>[] = [];
      for (let i = 0; i < more; i++) started.push(this.#startOne());
      await Promise.all(started);
    });
  }

  /** Begins a waiting start of workers (`resize`), once. */
  #begin(entry: { begin: () => void; at: number }): void {
    const i = this.#waiting.indexOf(entry);
    if (i < 0) return;
    this.#waiting.splice(i, 1);
    entry.begin();
  }

  async #startOne(): Promise<void> {
    if (this.#failure !== undefined) {
      this.#starting--;
      return;
    }
    // The worker's shadow stack, then its control block: its own until its thread has ended.
    const block = this.#heap.alloc(CTL_BYTES + STACK_BYTES);
    const ctlAt = block + STACK_BYTES;
    const ctl = new Int32Array(this.#k.memory.buffer, ctlAt, CTL_MSG_AT / 4);
    ctl.fill(0);
    const thread: Thread = { ctl, ctlAt, block, seq: 0, stopped: false };
    let spawned = false;
    try {
      const start: WorkerStart = {
        module: this.#module,
        memory: this.#k.memory,
        ctl: ctlAt,
        stackTop: ctlAt,
        kernels: [...ROW_KERNELS],
      };
      const workers = this.#node ? await nodeWorkers() : undefined;
      hooks.onSpawn?.();
      spawned = true;
      const { ready, exited, terminate } = spawn(start, workers);
      thread.terminate = terminate;
      // The pool weakly: a worker's listeners must not keep a dropped backend alive.
      const ref = this.#ref;
      exited.then(() => {
        const pool = ref.deref();
        if (pool) pool.#ended(thread);
      });
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
      if (spawned) {
        // Told to exit in case it is only late; its block is freed once its thread has ended.
        const i = this.#threads.indexOf(thread);
        if (i >= 0) this.#threads.splice(i, 1);
        stopThread(thread);
      } else this.#heap.free(block); // no worker ever had it
      this.#fail(`a worker thread failed to start: ${(e as Error).message}`);
    } finally {
      this.#starting--;
    }
  }

  /**
   * A worker's thread has ended (told to, failed, or crashed): it touches its block no more, so
   * the block goes back to the heap; a worker that was serving calls is replaced.
   */
  #ended(thread: Thread): void {
    // Nothing may write its control block from now on (stopThread would).
    thread.stopped = true;
    if (this.#closed) return; // the memory goes with the backend
    this.#heap.free(thread.block);
    const i = this.#threads.indexOf(thread);
    if (i < 0) return;
    this.#threads.splice(i, 1);
    if (++this.#replaced > MAX_REPLACED) {
      this.#fail(`worker threads ended ${MAX_REPLACED} times`);
    } else this.resize();
  }

  /** Resolves once the workers asked for so far have started or failed (for tests). */
  async ready(): Promise<void> {
    while (this.#starting > 0) await this.#ready;
  }

  /** Moves the pending workers that marked themselves ready into the pool. */
  #promote(): void {
    for (const t of this.#pending) {
      // Not one that ended: its block may be another's by now.
      if (!t.stopped && Atomics.load(t.ctl, CTL_READY) === 1 && !this.#threads.includes(t)) {
        this.#threads.push(t);
      }
    }
  }

  /** Threads in use now for a call of `elements` elements, the calling one included. */
  threadsFor(elements: number): number {
    if (elements < minElements) return 1;
    const waiting = this.#waiting;
    if (waiting.length > 0 && performance.now() - waiting[0].at > START_OVERDUE_MS) {
      for (const entry of [...waiting]) this.#begin(entry);
    }
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
  #run(
    fn: number,
    rows: number,
    m: number,
    threads: number,
    args: readonly number[],
    tiles = false,
  ): void {
    const chunkElements = hooks.chunkElements ?? CHUNK_ELEMENTS;
    // Tiles (whose size the kernel fixes) go one per chunk.
    const chunk = tiles ? 1 : Math.max(4, Math.ceil(chunkElements / m / 4) * 4);
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
    const trap = hooks.trapNextJob, end = hooks.endNextJob;
    hooks.trapNextJob = hooks.endNextJob = false;
    for (let t = 1; t < ranges; t++) {
      const th = this.#threads[t - 1], c = th.ctl;
      th.seq = th.seq >= 0x3fffffff ? 1 : th.seq + 1;
      c[CTL_JOB] = this.#jobAt;
      c[CTL_RANGE] = t;
      c[CTL_RAN] = 0;
      c[CTL_TRAP] = t === 1 && trap ? 1 : t === 1 && end ? 2 : 0;
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
      const keep = workersFirst || (t === 1 && (trap || end || hooks.slowWorkerMs));
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
    hooks.onSplit?.(ranges, workerChunks, ROW_KERNELS[fn].name);
    if (error !== undefined) throw error;
  }

  /** sn_stats_nd, split by rows: the IN moments of every row, then the derivation once. */
  statsNd(x: number, n: number, c: number, m: number, mode: number, layer: number, st: number) {
    const threads = this.threadsFor(n * c * m);
    if (threads === 1) return this.#k.sn_stats_nd(x, n, c, m, mode, layer, st);
    this.#run(STATS_ROWS, n * c, m, threads, [x, 0, n * c, n, c, m, st, mode]);
    this.#k.sn_stats_derive_nd(x, n, c, m, mode, layer, st);
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
    const wide = this.#k.sn_constants_nd(n, c, m, mode, layer, st, scratch);
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

  /**
   * sn_stats_1d, split into its tiles (fixed by n, c and the mode), then the merge of their
   * partials once, in tile order.
   */
  stats1d(x: number, n: number, c: number, mode: number, layer: number, st: number, sc: number) {
    const k = this.#k, threads = this.threadsFor(n * c);
    const tiles = threads === 1 ? 1 : k.sn_stats_tiles_1d(n, c, mode);
    if (tiles <= 1) return k.sn_stats_1d(x, n, c, mode, layer, st, sc);
    this.#run(STATS_TILES_1D, tiles, 0, threads, [x, 0, tiles, n, c, mode, st, sc], true);
    k.sn_stats_finish_1d(x, n, c, mode, layer, st, sc);
  }

  /** sn_normalize_1d, split by rows. */
  normalize1d(x: number, y: number, n: number, c: number, mode: number, layer: number, st: number) {
    const threads = this.threadsFor(n * c);
    if (threads === 1) return this.#k.sn_normalize_1d(x, y, n, c, mode, layer, st);
    this.#run(NORMALIZE_ROWS_1D, n, c, threads, [x, y, 0, n, n, c, mode, layer, st]);
  }

  /** sn_backward_reduce_1d, split into its tiles (fixed by n, c), then the combine once. */
  backwardReduce1d(
    x: number,
    dy: number,
    n: number,
    c: number,
    mode: number,
    layer: number,
    st: number,
    work: number,
  ) {
    const k = this.#k, threads = this.threadsFor(n * c);
    const tiles = threads === 1 ? 1 : k.sn_backward_tiles_1d(n, c);
    if (tiles <= 1) return k.sn_backward_reduce_1d(x, dy, n, c, mode, layer, st, work);
    const args = [x, dy, 0, tiles, n, c, mode, layer, st, work];
    this.#run(BACKWARD_TILES_1D, tiles, 0, threads, args, true);
    k.sn_backward_combine_1d(n, c, mode, st, work);
  }

  /** sn_backward_dx_1d, split by rows after the per-column constants. */
  backwardDx1d(
    x: number,
    dy: number,
    dx: number,
    n: number,
    c: number,
    mode: number,
    layer: number,
    st: number,
    work: number,
    count: number,
  ) {
    const threads = this.threadsFor(n * c);
    if (threads === 1) {
      return this.#k.sn_backward_dx_1d(x, dy, dx, n, c, mode, layer, st, work, count);
    }
    this.#k.sn_backward_dx_constants_1d(n, c, mode, layer, work, count);
    const args = [x, dy, dx, 0, n, n, c, mode, layer, st, work];
    this.#run(DX_ROWS_1D, n, c, threads, args);
  }

  /** Ends the workers (the backend's dispose). */
  close(): void {
    this.#closed = true;
    pools.delete(this.#ref);
    reaper.unregister(this);
    this.#fail("the backend was disposed");
  }
}

/** What runs the kernels of a backend: a pool, or one thread. */
export type RowRunner = ThreadPool | OneThread;
