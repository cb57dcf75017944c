/**
 * Threads for the WASM backend, the settings and the choice: the process-wide thread count
 * ({@linkcode setNumThreads}), the choice between the two builds of the kernels (the
 * shared-memory build where threads can run, else the single-threaded one, with the reason), the
 * limits and timeouts of splitting, and the test hooks. The pool of worker threads and the
 * splitting of a kernel's rows across them are in ./_wasm_pool.ts (workers started and stopped by
 * ./_wasm_spawn.ts; their side in ./_wasm_worker.ts); one thread without a pool, in
 * ./_wasm_one_thread.ts.
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
 * after all rows are done. SwitchNorm1d ("1d") calls reduce over the batch per channel too: their
 * statistics pass and backward reduction run in tiles fixed by N and C alone (blocks of rows, or
 * ranges of columns), each by one thread, and the tiles' partial sums are added up once, on the
 * calling thread, in tile order; their normalize and dx sweeps split by rows.
 *
 * Lifecycle: the pool starts in the background when the backend loads (the first call does not
 * wait for it; calls run on one thread until workers are ready). Workers are node:worker_threads
 * workers where that module exists (Node, Deno), `unref()`'d so that an idle pool never keeps the
 * process alive; in a browser they are web Workers from a `blob:` URL. Neither needs file access.
 * A worker is ended through its control block: a node:worker_threads worker then ends its thread
 * by itself (it is never terminated), a web Worker is terminated once. Each worker's block of the
 * memory (shadow stack and control block) is freed only once its thread has ended (its "exit"),
 * and a worker whose thread ends between calls is replaced (./_wasm_pool.ts).
 *
 * Depends on the kernels' ABI (_wasm_abi.ts), the threads build's bytes and _validate.ts only.
 *
 * @module
 */
import type { WasmKernels as BaseKernels } from "./_wasm_abi.ts";
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
  /** Tiles of the split `sn_stats_1d` (fixed by n, c, mode). */
  sn_stats_tiles_1d(n: number, c: number, mode: number): number;
  /** Tiles tile0.. of the split `sn_stats_1d` (x: the whole tensor). */
  sn_stats_tile_1d(
    x: number,
    tile0: number,
    tiles: number,
    n: number,
    c: number,
    mode: number,
    stats: number,
    scratch: number,
  ): void;
  /** The rest of `sn_stats_1d` once every tile ran. */
  sn_stats_finish_1d(
    x: number,
    n: number,
    c: number,
    mode: number,
    layer: number,
    stats: number,
    scratch: number,
  ): void;
  /** `sn_normalize_1d` over rows row0.. (x, y: the whole tensor's). */
  sn_normalize_rows_1d(
    x: number,
    y: number,
    row0: number,
    rows: number,
    n: number,
    c: number,
    mode: number,
    layer: number,
    stats: number,
  ): void;
  /** Tiles of the split `sn_backward_reduce_1d` (fixed by n, c). */
  sn_backward_tiles_1d(n: number, c: number): number;
  /** Tiles tile0.. of the split `sn_backward_reduce_1d` (x, dy: the whole tensor's). */
  sn_backward_tile_1d(
    x: number,
    dy: number,
    tile0: number,
    tiles: number,
    n: number,
    c: number,
    mode: number,
    layer: number,
    stats: number,
    work: number,
  ): void;
  /** The rest of `sn_backward_reduce_1d` once every tile ran. */
  sn_backward_combine_1d(n: number, c: number, mode: number, stats: number, work: number): void;
  /** `sn_backward_dx_1d`'s per-column constants, into the work area. */
  sn_backward_dx_constants_1d(
    n: number,
    c: number,
    mode: number,
    layer: number,
    work: number,
    count: number,
  ): void;
  /** `sn_backward_dx_1d`'s sweep over rows row0.. (x, dy, dx: the whole tensor's). */
  sn_backward_dx_rows_1d(
    x: number,
    dy: number,
    dx: number,
    row0: number,
    rows: number,
    n: number,
    c: number,
    mode: number,
    layer: number,
    stats: number,
    work: number,
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
export let minElements = MIN_ELEMENTS;

/** How long a worker may take to start, and to finish its share of one call. */
export const START_TIMEOUT_MS = 20_000;
export const JOB_TIMEOUT_MS = 120_000;
/**
 * Elements per chunk of rows (at least; chunks are whole groups of 4 rows), the unit a thread
 * claims: 256 KiB, small enough that a thread whose core is busy elsewhere leaves little for the
 * others to wait on, large enough that a claim (an atomic add and a call) costs nothing.
 */
export const CHUNK_ELEMENTS = 1 << 16;

/** Bytes of each worker's own shadow stack (the module is linked with -zstack-size=65536). */
export const STACK_BYTES = 65536;

/** For tests: fault injection and environment simulation. Not part of the public API. */
export interface ThreadTestHooks {
  /** Pretend that this is missing: "Worker", "SharedArrayBuffer" or "Atomics". */
  missing?: "Worker" | "SharedArrayBuffer" | "Atomics";
  /** Worker source to start instead of the real one (e.g. one that throws). */
  workerSource?: string;
  /** Give the next job of worker 1 an out-of-bounds pointer, so that it traps. */
  trapNextJob?: boolean;
  /** Worker 1's thread ends after its next job, as if it crashed. */
  endNextJob?: boolean;
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
  /** Called after each split pass with its thread count, the chunks workers ran, its kernel. */
  onSplit?: (threads: number, workerChunks: number, kernel: string) => void;
  /** Make loadWasmBackend wait until the workers started (so that every call is split). */
  waitForWorkers?: boolean;
}

/** The test hooks in force (a live binding: the pool and the spawner read it at each use). */
export let hooks: ThreadTestHooks = {};

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
 * The pools, for setNumThreads (./_wasm_pool.ts adds each); weakly, so that a backend dropped
 * without dispose() can go.
 */
export const pools = new Set<WeakRef<{ resize(): void }>>();

/**
 * Whether workers come from node:worker_threads (Deno, Node: they can be `unref()`'d, so that an
 * idle pool never keeps the process alive) rather than web Workers (a browser).
 */
export function hasNodeWorkers(): boolean {
  const g = globalThis as { Deno?: unknown; process?: { versions?: { node?: string } } };
  return g.Deno !== undefined || g.process?.versions?.node !== undefined;
}

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
