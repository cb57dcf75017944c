/**
 * How one SN forward is cut into WebGPU dispatches: segment sizes, binding windows, workgroup
 * counts and the uniform slot of each dispatch. Pure arithmetic, no GPU objects, so that it can
 * be tested anywhere and so that the backend's encoding code stays a plain loop over the plan.
 * Also the pieces the backward plan (_webgpu_backward_plan.ts) shares: slots, segments, windows
 * and the uniform fields common to every dispatch.
 *
 * Statistics above one binding run in blocks of samples (_webgpu_row_blocks.ts), each block's
 * records bound as windows, the BN statistics summed per block, then over the blocks.
 *
 * Depends on the shared Backend types, the gradient-record windows (_webgpu_records.ts) and the
 * blocks of samples (_webgpu_row_blocks.ts).
 *
 * @module
 */
import type { NormProblem, RunningUpdate } from "./_backend.ts";
import { GRAD_BYTES, type RecordLimits, type RecordWindows } from "./_webgpu_records.ts";
import { gcd, rowBlocks, tileBlocks } from "./_webgpu_row_blocks.ts";
import { hasTinyWeight, writeWeights, zeroWeightBits } from "./_webgpu_weights.ts";

export { GRAD_BYTES, type RecordWindows };

/** Bytes of one uniform slot: the Params struct of shaders/common.wgsl (PARAMS_BYTES) rounded
 * up to the 256-byte uniform offset alignment that WebGPU guarantees. */
export const SLOT_BYTES = 512;
/** Bytes of the Params struct of shaders/common.wgsl. */
export const PARAMS_BYTES = 304;
/** Bytes of a Partial (shaders/common.wgsl, padded to a power of two for block alignment). */
export const PARTIAL_BYTES = 32;
/** Bytes of a Group (shaders/common.wgsl, padded to a power of two for block alignment). */
export const GROUP_BYTES = 32;
/** Bytes of a row's affine map (sn_mix.wgsl: a vec4). */
export const MIXED_BYTES = 16;
/** Threads of the sn_stats and sn_normalize workgroups. */
export const WG = 256;
/** Side of the 1d stats tile (sn1d_stats.wgsl). */
export const TILE = 32;
/** Largest segment of a row that one group of threads summarizes. */
const MAX_SEG = 4096;
/** Below this many segments in all, long rows are cut finer so that more workgroups run. */
const MIN_SEGMENTS = 1024;

/** The device limits a plan must respect. */
export interface PlanLimits {
  /** Largest storage binding in bytes; a multiple of 256. */
  readonly maxBinding: number;
  /** minStorageBufferOffsetAlignment in bytes. */
  readonly offsetAlign: number;
  /**
   * Elements of a row segment per stats thread (default 16). A GPU wants many threads in flight
   * to hide memory latency (16 is the usual choice); a CPU implementation such as lavapipe runs
   * a workgroup's invocations as loops and pays for every workgroup barrier, so fewer threads
   * with more work each (256) run it about 4x faster there.
   */
  readonly elementsPerThread?: number;
  /** maxBufferSize in bytes: the backward's record buffers, bound in windows, must fit one. */
  readonly maxBuffer?: number;
  /** Threads of the group passes' workgroups (sn_group_stats, sn_bwd_groups); default 64. */
  readonly groupThreads?: number;
  /**
   * The adapter ends a shader invocation's loops after 65535 iterations in all, as llvmpipe
   * (lavapipe) does: the group passes then take more threads, or the call is refused, where
   * their loops would pass it (see groupThreadsFor).
   */
  readonly loopLimit?: boolean;
}

/** Iterations an invocation's loops may run in all where the adapter limits them (llvmpipe). */
const LOOP_LIMIT = 65535;

/**
 * The threads of a call's group passes: limits.groupThreads (default 64), or 64 where the
 * adapter limits loops (loopLimit) and the groups' members would take a thread past
 * LOOP_LIMIT. A group has at most max(N, C) members (layout "1d": tiles, a TILE-th of that);
 * an sn_group_stats thread runs up to four loops of ceil(members / threads) iterations (units,
 * summaries, variance pairs, the far mean's pairs) and trees of log2(threads), sn_bwd_groups
 * one. 8 threads gave a channel of 600000 samples y 4 times off on lavapipe, with no error.
 *
 * @throws {RangeError} loopLimit and more members than 64 threads can loop over.
 */
export function groupThreadsFor(problem: NormProblem, limits: PlanLimits): number {
  const threads = limits.groupThreads ?? 64;
  if (!limits.loopLimit) return threads;
  const widest = Math.max(problem.n, problem.c);
  const members = problem.layout === "1d" ? Math.ceil(widest / TILE) : widest;
  // The most members t threads loop over: 4 ceil(members / t) + 2 log2(t) + 8 <= LOOP_LIMIT.
  const most = (t: number) => Math.floor((LOOP_LIMIT - 2 * Math.log2(t) - 8) / 4) * t;
  if (members <= most(threads)) return threads;
  if (members <= most(64)) return 64;
  throw new RangeError(
    `webgpu backend: N = ${problem.n} and C = ${problem.c} are more than this adapter's ` +
      `shaders can loop over (it ends an invocation's loops after ${LOOP_LIMIT} iterations, ` +
      `as lavapipe does): at most ${
        most(64) * (problem.layout === "1d" ? TILE : 1)
      } each; the wasm backend has no such limit`,
  );
}

/**
 * The threads per group of layout "1d"'s LN group pass (sn_group_stats' GROUP_SPAN, over rows of
 * `members` tile summaries, ceil(C / TILE)): the least power of two at least `members`, at most
 * `groupThreads`; a workgroup of groupThreads makes groupThreads / span rows. Where it is
 * `members` or more, each thread holds at most one member, as at groupThreads, and the tree
 * merges the same pairs in the same order: the threads past it hold no member, and merging none
 * (Acc n 0: merge returns the other; pair sums of (0, 0) with a pair that two_sum made, which
 * are exact; +0, OR and max of 0) leaves the statistics' bits as they are, so the groups come
 * out bit for bit as at groupThreads. A SwitchNorm1d of C = 64 (two members per row) took a
 * workgroup of 64 threads per row on a GPU, of 8 on lavapipe.
 */
export function lnGroupSpan(members: number, groupThreads: number): number {
  let t = 1;
  while (t < members && t < groupThreads) t *= 2;
  return Math.min(t, groupThreads);
}

/**
 * The most samples (rows of x) one binding window of layout "1d" may hold where the adapter
 * limits loops (loopLimit): the wide passes of layout 1d (sn1d_wide_normalize, sn1d_bwd_wide_dx,
 * sn1d_zero_std_y) sweep a listed BN group's samples in the window with the 64 threads of one
 * workgroup, beside up to 255 other listed groups, within LOOP_LIMIT.
 */
export const MAX_LOOPED_WINDOW_SAMPLES: number = 2 ** 21;

/**
 * Refuses a call of layout "1d" whose binding windows of x hold more than
 * MAX_LOOPED_WINDOW_SAMPLES samples where the adapter limits loops (a batch of more than ~2M
 * samples of at most ~16 features on lavapipe): a wide BN group there would pass the limit, and
 * part of y or dx would be left unwritten, with no error. Nothing else is refused.
 *
 * @throws {RangeError} loopLimit, layout "1d" and such windows.
 */
export function checkLoopedWindows(problem: NormProblem, limits: PlanLimits): void {
  if (!limits.loopLimit || problem.layout !== "1d") return;
  const samples = Math.max(
    ...tileWindows(problem, limits).map(([first, end]) =>
      Math.min(end * TILE, problem.n) - first * TILE
    ),
  );
  if (samples <= MAX_LOOPED_WINDOW_SAMPLES) return;
  throw new RangeError(
    `webgpu backend: N = ${problem.n} samples of C = ${problem.c} features put ${samples} ` +
      `samples in one binding of x, more than this adapter's shaders can loop over (it ends an ` +
      `invocation's loops after ${LOOP_LIMIT} iterations, as lavapipe does): at most ` +
      `${MAX_LOOPED_WINDOW_SAMPLES} there; the wasm backend has no such limit`,
  );
}

/** A range of a buffer bound as one storage binding. */
export interface Window {
  readonly offset: number;
  readonly size: number;
}

/**
 * The kinds of the passes of calls with eps 0 alone (shaders/zero_std.wgsl), whose pipelines are
 * compiled on first use (_webgpu_pipelines.ts).
 */
export type LazyKind =
  | "bwdZeroStd"
  | "bwdZeroStd1d"
  | "bwdZeroStdFix"
  | "wideZeroStdY"
  | "wideZeroStdY1d";

/**
 * Whether a call runs the passes of eps 0 (LazyKind): rows of mixed std 0 exist only where the
 * GPU's eps, eps's float32 rounding, is 0.
 */
export function zeroStdPasses(problem: NormProblem): boolean {
  return Math.fround(problem.eps) === 0;
}

/** The forward's wide passes of y, then those of eps 0 (after them: they write y again). */
const wideKinds = ["wideNormalize", "wideZeroStdY"] as const;
const wideKinds1d = ["wideNormalize1d", "wideZeroStdY1d"] as const;

/** One dispatch of the plan. */
export interface PlannedDispatch {
  readonly kind:
    | "stats"
    | "rowMerge"
    | "wideStats"
    | "stats1d"
    | "wideStats1d"
    | "group"
    | "groupRefine"
    | "mix"
    | "normalize"
    | "wideNormalize"
    | "normalize1d"
    | "wideNormalize1d"
    | "bwdReduce"
    | "bwdWideReduce"
    | "bwdRows"
    | "bwdReduce1d"
    | "bwdWideReduce1d"
    | "bwdGroups"
    | "bwdCoef"
    | "bwdDx"
    | "bwdWideDx"
    | "bwdDx1d"
    | "bwdWideDx1d"
    | LazyKind;
  /** Index of its uniform slot. */
  readonly slot: number;
  /** Workgroups in all (the backend lays them out on a 2D grid). */
  readonly workgroups: number;
  /** The window of x (and, for normalize, of y) it binds; absent when it does not read x. */
  readonly window?: Window;
  /** Backward: the windows of its gradient-record buffers it binds (absent: the whole buffer). */
  readonly records?: RecordWindows;
  /** Forward: the windows of its per-row record buffers it binds (absent: the whole buffer). */
  readonly forward?: ForwardRecords;
  /**
   * sn_group_stats' and sn_bwd_groups' threads per group (GROUP_SPAN) where fewer than the
   * plan's groupThreads: layout "1d"'s LN groups, of few members each, groupThreads / span of
   * them per workgroup (lnGroupSpan).
   */
  readonly span?: number;
}

/**
 * The windows of the forward's statistics buffers when they exceed one binding: blocks of whole
 * samples ("nd") or of row tiles ("1d"), _webgpu_row_blocks.ts; "nd" windows start at the
 * block's first row.
 */
export interface ForwardRecords {
  /** Segment summaries (sn_stats). */
  readonly parts?: Window;
  /** Row summaries (sn_row_merge; the parts when rows are one segment; "1d": the block's tile
   * summaries); sn_group_stats' members. */
  readonly rows?: Window;
  /** Per-row affine maps (sn_mix). */
  readonly mixed?: Window;
  /** The block's region of each list of wide rows. */
  readonly list?: Window;
  /** Group statistics: the block's LN groups, or (sn_group_stats over channels) the BN groups. */
  readonly groups?: Window;
  /** The BN groups that sn_mix, sn_wide_normalize and the 1d normalize passes read. */
  readonly chanGroups?: Window;
  /** "1d": the list of scaled groups that sn_group_stats fills (the block's samples or the
   * channels) and sn1d_wide_normalize reads. */
  readonly groupList?: Window;
  /** sn_group_stats: writes the BN parts of a block ("parts") or merges them ("merge"). */
  readonly bn?: "parts" | "merge";
}

/** Everything the backend needs to encode one forward. */
export interface Plan {
  readonly dispatches: readonly PlannedDispatch[];
  /** Threads of its group passes' workgroups (groupThreadsFor). */
  readonly groupThreads: number;
  /** The uniform slots, SLOT_BYTES each, in slot order. */
  readonly uniforms: ArrayBuffer;
  /** Partial summaries written by the stats pass. */
  readonly partials: number;
  /** Merged row summaries (0 when each row is one segment and the partials are the rows). */
  readonly mergedRows: number;
  /** Group statistics: N for LN, then C for BN when usingBN. */
  readonly groups: number;
  /** Per-row affine maps of layout "nd" (N*C), 0 for "1d". */
  readonly mixedRows: number;
  /** Partials of the blocks' BN parts ("nd" in blocks, training with BN; else 0). */
  readonly bnParts: number;
  /**
   * Bytes of each list of wide items (a count, then the items): layout "nd" has one of rows for
   * sn_wide_stats and one for sn_wide_normalize (N*C each), "1d" one of scaled groups for
   * sn1d_wide_normalize (N + C).
   */
  readonly wideListBytes: number;
  /** Bytes of the list sn_wide_stats ("nd": rows) or sn1d_wide_stats ("1d": tile lines) reads. */
  readonly wideStatsListBytes: number;
  /** Where each list of the wideList buffer starts (a count word 0 at each when a call
   * starts): one per block of samples, and ("1d" in blocks) the channels' one first. */
  readonly listOffsets: readonly number[];
  /** Likewise for the wideRows buffer: one list per block. */
  readonly statsListOffsets: readonly number[];
  /** Bytes a tensor buffer of this problem has: N*C*M floats rounded up to whole vec4s. */
  readonly tensorBytes: number;
}

/** The mixing weights and running update, as the plan needs them. */
export interface PlanParams {
  readonly meanMix: ArrayLike<number>;
  readonly varMix: ArrayLike<number>;
  readonly update: RunningUpdate;
  /**
   * Whether a backward may follow (training, or an evaluation with keepForBackward): only then
   * are rows whose float32 mean is too coarse for the gradients summed again (refine_mean,
   * common.wgsl), a second sweep over their x that y itself does not need. Default true.
   */
  readonly refineMeans?: boolean;
}

/**
 * Sn_group_stats' WIDE_GROUP (WASM's in wasm/src/nd.rs): a group's mean weight above this times
 * the square root of its variance weight lets the mix take its mean far more than its spread.
 */
const WIDE_GROUP = 64;

/**
 * Whether a layout "nd" mix (weights in, LN, BN) may take an LN or BN mean with far more weight
 * than its variance (mean weight above WIDE_GROUP times the square root of the variance weight),
 * where y of a member far narrower than the group carries the group mean's float32 rounding
 * (sn_group_stats' `wide_mix`): BN only over the batch (`batchBN`: training with usingBN).
 */
function mayMixWideGroups(params: PlanParams, batchBN: boolean): boolean {
  const wide = (k: number) => params.meanMix[k] > WIDE_GROUP * Math.sqrt(params.varMix[k]);
  return wide(1) || (batchBN && wide(2));
}

const F_HAS_IN = 1, F_USING_BN = 2, F_TRAINING = 4, F_BATCH_AVERAGE = 8, F_CHAN_GROUPS = 16;
const F_NO_RUNNING_UPDATE = 32, F_WIDE_ONLY = 128, F_BN_PARTS = 256, F_BN_MERGE = 512;
const F_PAIRS = 1024, F_TINY_WEIGHTS = 2048, F_REFINE_MEANS = 4096, F_GROUP_REFINE = 8192;
const F_REFINE_ROWS = 16384, F_MERGE_ROWS = 32768, F_REFINE_GROUPS = 65536;
const F_OVERFLOW_ONLY = 131072;
/**
 * First bits of the weights the shaders take as 0, below 2^-252 too (common.wgsl: P_ZERO_WMEAN,
 * P_ZERO_WVAR).
 */
const F_ZERO_WMEAN = 20, F_ZERO_WVAR = 24;

/** Bytes of a buffer holding `elements` floats for vec4 access. */
export function paddedBytes(elements: number): number {
  return Math.ceil(elements / 4) * 16;
}

function nextPow2(v: number): number {
  let p = 1;
  while (p < v) p *= 2;
  return p;
}

/** Largest s in [lo, hi] with ok(s), given ok(lo) and ok monotone (true then false). */
function lastTrue(lo: number, hi: number, ok: (s: number) => boolean): number {
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (ok(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * Cuts `count` consecutive items, item i covering elements [start(i), end(i)) with both
 * non-decreasing in i, into runs whose elements fit one binding window starting at an aligned
 * offset. Returns [first, end, baseElement] per run.
 */
function windows(
  count: number,
  start: (i: number) => number,
  end: (i: number) => number,
  limits: PlanLimits,
  what: string,
  from = 0,
): [number, number, number][] {
  const alignElems = limits.offsetAlign / 4, maxElems = limits.maxBinding / 4;
  const out: [number, number, number][] = [];
  for (let first = from; first < count;) {
    const base = Math.floor(start(first) / alignElems) * alignElems;
    if (end(first) - base > maxElems) {
      throw new RangeError(
        `webgpu backend: one ${what} (${end(first) - start(first)} floats) does not fit a ` +
          `storage binding of ${limits.maxBinding} bytes`,
      );
    }
    const last = lastTrue(first, count - 1, (i) => end(i) - base <= maxElems);
    out.push([first, last + 1, base]);
    first = last + 1;
  }
  return out;
}

export function checkFits(bytes: number, what: string, limits: PlanLimits): void {
  if (bytes > limits.maxBinding) {
    throw new RangeError(
      `webgpu backend: ${what} need ${bytes} bytes, more than one storage binding ` +
        `(${limits.maxBinding} bytes) holds; the tensor has too many rows for this device`,
    );
  }
}

/** Largest tensor the shaders index: element indices are u32, with headroom for a vec4. */
export const MAX_ELEMENTS = 2 ** 32 - 256;

export function checkIndexable(total: number): void {
  if (total > MAX_ELEMENTS) {
    throw new RangeError(
      `webgpu backend: a tensor of ${total} floats is too large for the shaders' 32-bit ` +
        `element indices (at most ${MAX_ELEMENTS})`,
    );
  }
}

/**
 * Bytes of a list of up to `items` wide rows or segments: a u32 count, the wide pass's indirect
 * dispatch arguments (3 u32), then the items (common.wgsl, LIST_FIRST).
 */
export function listBytes(items: number): number {
  return 16 + Math.ceil(items / 4) * 16;
}

/**
 * What every list holds when a call starts (written over its first 16 bytes): a count of 0 and
 * dispatch arguments (0, 1, 1), which each entry listed raises to the grid its reader needs for
 * the entries so far (common.wgsl: list_grid; 64 workgroups or more).
 */
export const EMPTY_LIST: Uint32Array<ArrayBuffer> = Uint32Array.of(0, 0, 1, 1);

/** Writes the fields every dispatch's uniform slot shares (shapes, flags, eps, mixing weights). */
export function writeCommon(v: DataView, problem: NormProblem, params: PlanParams): void {
  const { n, c, m, layout } = problem;
  const usingBN = layout === "1d" || problem.usingBN;
  v.setUint32(0, n, true);
  v.setUint32(4, c, true);
  v.setUint32(8, m, true);
  v.setUint32(12, n * c * m, true);
  let flags = 0;
  if (layout === "nd") flags |= F_HAS_IN;
  if (usingBN) flags |= F_USING_BN;
  if (problem.training) flags |= F_TRAINING;
  if (params.update.kind === "batchAverage") flags |= F_BATCH_AVERAGE;
  if (layout === "1d") flags |= F_CHAN_GROUPS;
  // SyncSN: the running buffers follow the global batch, which only the CPU sees.
  if (problem.sync) flags |= F_NO_RUNNING_UPDATE;
  if (hasTinyWeight(params.meanMix) || hasTinyWeight(params.varMix)) flags |= F_TINY_WEIGHTS;
  if (layout === "1d" && hasTinyWeight(params.meanMix, 2 ** -100)) flags |= F_TINY_WEIGHTS;
  if (params.refineMeans !== false) flags |= F_REFINE_MEANS;
  // An evaluation with BN that a backward may follow: IN variances near running_var are summed
  // again as pairs (shaders/common.wgsl refine_variance), so the groups' variances are pairs too.
  if (
    layout === "nd" && usingBN && !problem.training && params.refineMeans !== false
  ) flags |= F_PAIRS;
  flags |= zeroWeightBits(params.meanMix, F_ZERO_WMEAN) |
    zeroWeightBits(params.varMix, F_ZERO_WVAR);
  v.setUint32(44, flags, true);
  v.setUint32(80, n, true);
  v.setUint32(84, usingBN ? c : 0, true);
  v.setFloat32(88, problem.eps, true);
  const momentum = params.update.kind === "movingAverage" ? params.update.momentum : 0;
  v.setFloat32(92, momentum, true);
  v.setFloat32(96, 1 - momentum, true);
  // Their rest beyond float32 (momentum_lo, one_minus_momentum_lo): the running update rounds once.
  v.setFloat32(296, momentum - Math.fround(momentum), true);
  v.setFloat32(300, 1 - momentum - Math.fround(1 - momentum), true);
  // +Inf's bits, from which the shaders make NaN and the infinities at run time (WGSL forbids
  // them as constants; see qnan() in shaders/common.wgsl).
  v.setUint32(144, 0x7f800000, true);
  // floor(log2(eps) / 2): a scaled mix (wide rows, shaders/common.wgsl wide_map) keeps its unit
  // at least 2^eps_exp so that eps in that unit stays below 4.
  v.setInt32(148, problem.eps > 0 ? Math.floor(Math.log2(problem.eps) / 2) : -1000, true);
  // Weights below float32's normal range as mantissas and exponent factors (_webgpu_weights).
  // The mean weights' rests sum with them to 1, as the reference's mixed mean takes them.
  writeWeights(v, params.meanMix, { weights: 112, f1: 160, f2: 176, exp: 224, lo: 256 }, true);
  writeWeights(v, params.varMix, { weights: 128, f1: 192, f2: 208, exp: 240, lo: 272 });
  v.setFloat32(288, problem.eps - Math.fround(problem.eps), true);
}

/**
 * Writes where the members of each LN group (per n) and BN group (per c) are, for the group
 * passes of the forward (sn_group_stats) and the backward (sn_bwd_groups), whose member arrays
 * share a layout: "nd" one record per row, "1d" one per tile line.
 */
export function writeGroupMembers(v: DataView, problem: NormProblem): void {
  const { n, c } = problem;
  if (problem.layout === "nd") {
    // Members are the rows: LN group n = rows n*C .. n*C+C-1, BN group c = rows c, C+c, ..
    v.setUint32(48, 0, true), v.setUint32(52, c, true), v.setUint32(56, 1, true);
    v.setUint32(60, c, true);
    v.setUint32(64, 0, true), v.setUint32(68, 1, true), v.setUint32(72, c, true);
    v.setUint32(76, n, true);
  } else {
    // Members are tile summaries: LN group n = parts[ct*N + n], BN group c =
    // parts[CT*N + rt*C + c].
    const ct = Math.ceil(c / TILE), rt = Math.ceil(n / TILE);
    v.setUint32(48, 0, true), v.setUint32(52, 1, true), v.setUint32(56, n, true);
    v.setUint32(60, ct, true);
    v.setUint32(64, ct * n, true), v.setUint32(68, 1, true), v.setUint32(72, c, true);
    v.setUint32(76, rt, true);
  }
}

/** How the rows of layout "nd" are cut into segments for the passes that reduce over them. */
export interface Segments {
  readonly len: number;
  readonly chunks: number;
  readonly threads: number;
  readonly count: number;
  /** [first, end, baseElement] per binding window of x. */
  readonly windows: [number, number, number][];
  readonly end: (s: number) => number;
  /** The windows of x of segments from .. end - 1 only. */
  readonly windowsOf: (from: number, end: number) => [number, number, number][];
}

/**
 * The most segments a row may span where the adapter limits loops (loopLimit): a thread of
 * sn_bwd_rows loops over its row's segments up to four times (sn_row_merge twice), beside a few
 * short loops, within LOOP_LIMIT.
 */
export const MAX_LOOPED_SEGMENTS: number = Math.floor((LOOP_LIMIT - 1024) / 4);

/**
 * How rows of layout "nd" are cut into segments.
 *
 * @throws {RangeError} loopLimit and rows of more than MAX_LOOPED_SEGMENTS segments.
 */
export function segments(problem: NormProblem, limits: PlanLimits): Segments {
  const { n, c, m } = problem;
  const rows = n * c;
  let len = Math.min(m, MAX_SEG);
  while (len > 1024 && rows * Math.ceil(m / len) < MIN_SEGMENTS) len = Math.ceil(len / 8) * 4;
  const chunks = Math.ceil(m / len);
  if (limits.loopLimit && chunks > MAX_LOOPED_SEGMENTS) {
    throw new RangeError(
      `webgpu backend: rows of ${m} elements (H x W x ...) are more than this adapter's ` +
        `shaders can loop over (it ends an invocation's loops after ${LOOP_LIMIT} iterations, ` +
        `as lavapipe does): at most ${MAX_LOOPED_SEGMENTS * len} elements per row; the wasm ` +
        `backend has no such limit`,
    );
  }
  const threads = Math.min(WG, nextPow2(Math.ceil(len / (limits.elementsPerThread ?? 16))));
  const count = rows * chunks;
  const start = (s: number) => Math.floor(s / chunks) * m + (s % chunks) * len;
  const end = (s: number) => Math.floor(s / chunks) * m + Math.min((s % chunks + 1) * len, m);
  const windowsOf = (from: number, to: number) =>
    windows(to, start, end, limits, "row segment", from);
  return { len, chunks, threads, count, windows: windowsOf(0, count), end, windowsOf };
}

/** Writes the slot fields of one segment dispatch (sn_stats, sn_bwd_reduce). */
export function writeSegments(
  v: DataView,
  seg: Segments,
  first: number,
  last: number,
  base: number,
) {
  v.setUint32(16, seg.threads, true);
  v.setUint32(20, seg.len, true);
  v.setUint32(24, seg.chunks, true);
  v.setUint32(28, first, true);
  v.setUint32(32, last, true);
  v.setUint32(36, base, true);
}

/**
 * The row tiles of layout "1d" cut into binding windows of x: [first, end, baseElement]. With
 * `rec` (the backward), each window's tile-line records (N * CT for the rows, RT * C for the
 * columns) and the group records of its rows fit one binding too.
 */
export function tileWindows(
  problem: NormProblem,
  limits: PlanLimits,
  rec?: RecordLimits,
  from = 0,
  to = Math.ceil(problem.n / TILE),
): [number, number, number][] {
  const { n, c } = problem;
  const ct = Math.ceil(c / TILE);
  const start = (t: number) => t * TILE * c, end = (t: number) => Math.min((t + 1) * TILE, n) * c;
  if (!rec) return windows(to, start, end, limits, "tile of 32 rows", from);
  const fits = (first: number, last: number) => {
    const rows = Math.min(last * TILE, n) - first * TILE;
    return Math.max(rows * ct, (last - first) * c, rows) + rec.align <= rec.max;
  };
  if (!fits(0, 1)) {
    throw new RangeError(
      `webgpu backend: the gradient sums of one tile of 32 rows (${TILE * ct + c} records of ` +
        `${GRAD_BYTES} bytes) do not fit a storage binding of ${limits.maxBinding} bytes`,
    );
  }
  const out: [number, number, number][] = [];
  for (const [first, last] of windows(to, start, end, limits, "tile of 32 rows", from)) {
    // Cut the windows of x further where the records need it.
    for (let t = first; t < last;) {
      const stop = lastTrue(t + 1, last, (e) => fits(t, e));
      const base = Math.floor(start(t) / (limits.offsetAlign / 4)) * (limits.offsetAlign / 4);
      out.push([t, stop, base]);
      t = stop;
    }
  }
  return out;
}

/**
 * The vec4 windows of the elementwise passes (normalize, dx): [firstVec, vecCount]. With `rec`
 * (the 1d backward's dx), the group records of each window's rows (of `c` elements) fit one
 * binding too.
 */
export function vecWindows(
  total: number,
  limits: PlanLimits,
  rec?: RecordLimits,
  c = 1,
): [number, number][] {
  const vecs = Math.ceil(total / 4);
  const alignVecs = limits.offsetAlign / 16;
  let perWindow = Math.floor(limits.maxBinding / 16 / alignVecs) * alignVecs;
  if (rec) {
    // A window of E elements touches at most E / c + 2 rows.
    const rows = rec.max - rec.align - 2;
    perWindow = Math.min(perWindow, Math.max(1, Math.floor(rows * c / 4 / alignVecs)) * alignVecs);
  }
  const out: [number, number][] = [];
  for (let first = 0; first < vecs; first += perWindow) {
    out.push([first, Math.min(perWindow, vecs - first)]);
  }
  return out;
}

/** Collects dispatches and their uniform slots. */
export class Slots {
  readonly dispatches: PlannedDispatch[] = [];
  readonly #fills: ((v: DataView) => void)[] = [];
  add(
    kind: PlannedDispatch["kind"],
    workgroups: number,
    fill: (v: DataView) => void,
    window?: Window,
    records?: RecordWindows,
    forward?: ForwardRecords,
    span?: number,
  ): void {
    this.dispatches.push({
      kind,
      slot: this.#fills.length,
      workgroups,
      window,
      records,
      forward,
      ...(span === undefined ? {} : { span }),
    });
    this.#fills.push(fill);
  }
  /** The uniform buffer: every slot starts from `base`, then its own fields. */
  uniforms(base: (v: DataView) => void): ArrayBuffer {
    const out = new ArrayBuffer(this.#fills.length * SLOT_BYTES);
    this.#fills.forEach((fill, i) => {
      const v = new DataView(out, i * SLOT_BYTES, SLOT_BYTES);
      base(v);
      fill(v);
    });
    return out;
  }
}

/** Makes the plan of one forward. Throws a RangeError when a per-row array exceeds a binding. */
export function makePlan(problem: NormProblem, params: PlanParams, limits: PlanLimits): Plan {
  const { n, c, m, layout } = problem;
  const total = n * c * m;
  checkIndexable(total);
  const groupThreads = groupThreadsFor(problem, limits);
  checkLoopedWindows(problem, limits);
  const usingBN = layout === "1d" || problem.usingBN;
  const slots = new Slots();
  const add = slots.add.bind(slots);

  let partials: number, mergedRows = 0, bnParts = 0, listBytesND = 0;
  let listBytes1d = 0, statsListBytes1d = 0;
  let listOffsets = [0], statsListOffsets = [0];
  let groupListBytes = 0;
  /** Adds the group, mix and normalize stages of layout "nd" (after the statistics). */
  let addRowStages = () => {};
  if (layout === "nd") {
    const rows = n * c;
    const seg = segments(problem, limits);
    const chunks = seg.chunks;
    partials = seg.count;
    if (chunks > 1) mergedRows = rows;
    // Rows of several segments: the groups' variances as pairs too (shaders/pair.wgsl; and
    // evaluations with BN, writeCommon).
    const pairs = chunks > 1 ? F_PAIRS : 0;
    const withPairs = (v: DataView) => v.setUint32(44, v.getUint32(44, true) | pairs, true);
    // More rows than one binding holds: blocks of whole samples, each bound from its first row
    // (Params.rec_base). One block is the whole problem: every buffer bound whole, as ever.
    const groups = n + (usingBN ? c : 0);
    const blocked = rowBlocks(
      n,
      c,
      [chunks * PARTIAL_BYTES, PARTIAL_BYTES, MIXED_BYTES],
      [GROUP_BYTES],
      m * 4,
      listBytes,
      groups * GROUP_BYTES,
      limits,
    );
    // In blocks, the BN groups (after the N LN ones) are bound as a window of their own, from
    // the aligned group bnBase on.
    const groupAlign = limits.offsetAlign / gcd(GROUP_BYTES, limits.offsetAlign);
    const bnBase = blocked.single ? 0 : Math.floor(n / groupAlign) * groupAlign;
    const bnWindow = {
      offset: bnBase * GROUP_BYTES,
      size: Math.max(1, groups - bnBase) * GROUP_BYTES,
    };
    checkFits(bnWindow.size, "the BN statistics", limits);
    listBytesND = blocked.listBytes;
    listOffsets = statsListOffsets = blocked.blocks.map((b) => b.list.offset);
    // The lists of sn_group_refine: the flagged groups, after the wideList's lists of rows (one
    // block: one list of every group; in blocks, one per block of its LN groups, in block-relative
    // indices). Every group it may take in a forward that a backward may follow, and in any
    // forward whose mix may take a far wider group's mean beside a narrow member
    // (`mayMixWideGroups`), which y needs; elsewhere (an inference forward) only the groups of
    // rows whose y may overflow (F_OVERFLOW_ONLY: sn_group_stats' may_overflow), which y needs too.
    const overflowOnly = !(params.refineMeans !== false ||
      mayMixWideGroups(params, usingBN && problem.training));
    const up = (bytes: number) => Math.ceil(bytes / limits.offsetAlign) * limits.offsetAlign;
    const groupLists: Window[] = [];
    for (const b of blocked.blocks) {
      const at = up(groupLists.length ? groupListBytes : listBytesND);
      groupLists.push({ offset: at, size: listBytes(blocked.single ? groups : b.s1 - b.s0) });
      groupListBytes = at + groupLists[groupLists.length - 1].size;
    }
    const groupList = groupLists[0];
    listOffsets = [...listOffsets, ...groupLists.map((l) => l.offset)];
    const blocks = blocked.blocks.map((b, i) => {
      const span = (bytes: number) => ({ offset: b.r0 * bytes, size: (b.r1 - b.r0) * bytes });
      const lnWindow = { offset: b.s0 * GROUP_BYTES, size: (b.s1 - b.s0) * GROUP_BYTES };
      const rec: ForwardRecords | undefined = blocked.single ? undefined : {
        parts: span(chunks * PARTIAL_BYTES),
        rows: span(PARTIAL_BYTES),
        mixed: span(MIXED_BYTES),
        list: b.list,
        groups: lnWindow,
        chanGroups: usingBN ? bnWindow : lnWindow,
      };
      const inBlock = blocked.single ? seg.windows : seg.windowsOf(b.r0 * chunks, b.r1 * chunks);
      const xWindows = inBlock.map(([first, last, base]) => ({
        fill: (v: DataView) => {
          writeSegments(v, seg, first, last, base);
          v.setUint32(104, b.r0, true);
          v.setUint32(108, bnBase, true);
        },
        window: { offset: base * 4, size: paddedBytes(seg.end(last - 1) - base) },
        segments: last - first,
      }));
      /** Rows r0 .. r1 - 1 (sn_row_merge, sn_mix), their records from row r0 on. */
      const rowRange = (v: DataView) => {
        v.setUint32(24, chunks, true);
        v.setUint32(28, b.r0, true);
        v.setUint32(32, b.r1, true);
        v.setUint32(104, b.r0, true);
        v.setUint32(108, bnBase, true);
      };
      return { ...b, rec, xWindows, rowRange, groupList: groupLists[i] };
    });
    for (const b of blocks) {
      for (const w of b.xWindows) {
        add(
          "stats",
          Math.ceil(w.segments / (WG / seg.threads)),
          w.fill,
          w.window,
          undefined,
          b.rec,
        );
      }
    }
    if (chunks > 1) {
      for (const b of blocks) {
        add("rowMerge", Math.ceil((b.r1 - b.r0) / 64), b.rowRange, undefined, undefined, b.rec);
      }
    }
    // Wide rows (|x| beyond (2^-21, 2^40]) summarized again in scaled units; every other row
    // costs these dispatches one load (sn_wide_stats.wgsl).
    // A workgroup per listed wide row, at most 64 taking them in turn (sn_wide_stats.wgsl).
    for (const b of blocks) {
      for (const w of b.xWindows) {
        add("wideStats", Math.min(64, rows), w.fill, w.window, undefined, b.rec);
      }
    }
    if (chunks > 1) {
      for (const b of blocks) {
        add(
          "rowMerge",
          Math.ceil((b.r1 - b.r0) / 64),
          (v) => {
            b.rowRange(v);
            v.setUint32(44, v.getUint32(44, true) | F_WIDE_ONLY, true);
          },
          undefined,
          undefined,
          b.rec,
        );
      }
    }
    /** sn_group_refine's flag `flag` (and, in blocks, the block's LN groups alone). */
    const refineStep = (b: typeof blocks[number], flag: number) => (v: DataView) => {
      v.setUint32(24, chunks, true);
      v.setUint32(44, v.getUint32(44, true) | flag, true);
      if (!blocked.single) {
        // The block's groups binding holds its LN groups (samples s0 .. s1 - 1) alone: the BN
        // groups, whose members span the blocks, are not listed there (NUMERICS.md).
        [48, 52, 56, 60, 80, 84].forEach((at, i) =>
          v.setUint32(at, [0, c, 1, c, b.s1 - b.s0, 0][i], true)
        );
        v.setUint32(44, v.getUint32(44, true) & ~F_USING_BN, true);
        v.setUint32(104, b.r0, true);
      }
    };
    /**
     * Sn_group_refine's passes over block b's rows (one block: every row), dispatched indirectly
     * from the block's list of groups: without such groups, two or three empty dispatches (and
     * one more per further window of x).
     */
    const addRefine = (b: typeof blocks[number]) => {
      const forward = { ...b.rec, groupList: b.groupList };
      for (const w of b.xWindows) {
        add(
          "groupRefine",
          1,
          (v) => {
            w.fill(v);
            refineStep(b, F_REFINE_ROWS)(v);
          },
          w.window,
          undefined,
          forward,
        );
      }
      // Rows of several segments merged again, each by one thread, before the groups read them
      // (sn_group_refine.wgsl: every row and group has one writer).
      if (chunks > 1) {
        add(
          "groupRefine",
          1,
          (v) => {
            b.rowRange(v);
            refineStep(b, F_MERGE_ROWS)(v);
          },
          undefined,
          undefined,
          forward,
        );
      }
      add("groupRefine", 1, refineStep(b, F_REFINE_GROUPS), undefined, undefined, forward);
    };
    addRowStages = () => {
      if (blocked.single) {
        // LN and BN groups whose mean cancels to ~0 beside a far narrower member: listed by
        // sn_group_stats, their members summed again (sn_group_refine, per window of x) and
        // their means formed again (sn_group_refine), each dispatched indirectly from that list.
        add(
          "group",
          groups,
          (v) => {
            writeGroupMembers(v, problem);
            withPairs(v);
            const only = overflowOnly ? F_OVERFLOW_ONLY : 0;
            v.setUint32(44, v.getUint32(44, true) | F_GROUP_REFINE | only, true);
            // The segments per row: the refine's grid has a thread per segment.
            v.setUint32(24, chunks, true);
          },
          undefined,
          undefined,
          { groupList },
        );
        addRefine(blocks[0]);
      } else {
        // Each block's LN groups (its samples' C rows), in the block's window of groups, listed
        // for sn_group_refine in the block's list (block-relative indices), which sums them
        // again over the block's rows.
        for (const b of blocks) {
          add(
            "group",
            b.s1 - b.s0,
            (v) => {
              [48, 52, 56, 60, 80, 84].forEach((at, i) =>
                v.setUint32(at, [0, c, 1, c, b.s1 - b.s0, 0][i], true)
              );
              v.setUint32(108, 0, true);
              withPairs(v);
              const only = overflowOnly ? F_OVERFLOW_ONLY : 0;
              v.setUint32(44, v.getUint32(44, true) | F_GROUP_REFINE | only, true);
              v.setUint32(24, chunks, true);
            },
            undefined,
            undefined,
            { ...b.rec, groupList: b.groupList },
          );
        }
        const bnGroups = (v: DataView, base: number, count: number, out: number) => {
          [64, 68, 72, 76, 80, 84].forEach((at, i) =>
            v.setUint32(at, [0, 1, c, count, 0, c][i], true)
          );
          v.setUint32(108, out, true);
          v.setUint32(44, v.getUint32(44, true) | base, true);
          withPairs(v);
        };
        if (usingBN && problem.training) {
          // Two levels: each block's part of each channel, then the parts of each channel merged.
          bnParts = blocks.length * c;
          checkFits(bnParts * PARTIAL_BYTES, "the blocks' BN statistics", limits);
          for (const [i, b] of blocks.entries()) {
            add(
              "group",
              c,
              (v) => bnGroups(v, F_BN_PARTS, b.s1 - b.s0, i * c),
              undefined,
              undefined,
              {
                ...b.rec,
                bn: "parts",
              },
            );
          }
          add(
            "group",
            c,
            (v) => bnGroups(v, F_BN_MERGE, blocks.length, n - bnBase),
            undefined,
            undefined,
            { groups: bnWindow, bn: "merge" },
          );
        } else if (usingBN) {
          // Evaluation: BN groups from the running buffers (no members are read).
          add("group", c, (v) => bnGroups(v, 0, 0, n - bnBase), undefined, undefined, {
            ...blocks[0].rec,
            groups: bnWindow,
          });
        }
        // The blocks' listed LN groups summed again, each over its block's rows (after the BN
        // groups, which took the rows' first sums, as in one block).
        for (const b of blocks) addRefine(b);
      }
      for (const b of blocks) {
        add("mix", Math.ceil((b.r1 - b.r0) / 64), b.rowRange, undefined, undefined, b.rec);
      }
      for (const b of blocks) {
        // The block's elements: r0 * M is a multiple of 4 (rowBlocks aligns r0).
        const firstVec = b.r0 * m / 4;
        for (const [first, count] of vecWindows(Math.min(b.r1 * m, total) - b.r0 * m, limits)) {
          add(
            "normalize",
            Math.ceil(count / WG),
            (v) => {
              v.setUint32(36, (firstVec + first) * 4, true);
              v.setUint32(40, count, true);
              v.setUint32(104, b.r0, true);
            },
            { offset: (firstVec + first) * 16, size: count * 16 },
            undefined,
            b.rec,
          );
        }
      }
      // The elements of wide rows written again in scaled units (sn_wide_normalize.wgsl):
      // in-range rows cost these dispatches a few loads per segment. A workgroup per listed
      // wide row, at most 64 taking them in turn.
      // eps 0: then y of the listed rows of std 0 whose mixed mean is 0 (sn_zero_std_y.wgsl).
      for (const kind of zeroStdPasses(problem) ? wideKinds : ["wideNormalize"] as const) {
        for (const b of blocks) {
          for (const w of b.xWindows) {
            add(kind, Math.min(64, rows), w.fill, w.window, undefined, b.rec);
          }
        }
      }
    };
  } else {
    const rt = Math.ceil(n / TILE), ct = Math.ceil(c / TILE);
    partials = ct * n + rt * c;
    // More summaries than one binding holds: blocks of whole row tiles, each laid out and bound
    // on its own (sn1d_stats.wgsl); the BN groups as a window of their own.
    const tb = tileBlocks(n, c, PARTIAL_BYTES, GROUP_BYTES, listBytes, limits);
    partials = Math.ceil(tb.partsBytes / PARTIAL_BYTES);
    statsListOffsets = tb.blocks.map((b) => b.lines.offset);
    listOffsets = tb.single
      ? [0]
      : [tb.chanList.offset, ...tb.blocks.map((b) => b.groupList.offset)];
    statsListBytes1d = tb.linesBytes;
    listBytes1d = tb.groupListBytes;
    const groupAlign = limits.offsetAlign / gcd(GROUP_BYTES, limits.offsetAlign);
    const bnBase = tb.single ? 0 : Math.floor(n / groupAlign) * groupAlign;
    const bnWindow = { offset: bnBase * GROUP_BYTES, size: (n + c - bnBase) * GROUP_BYTES };
    checkFits(bnWindow.size, "the BN statistics", limits);
    const blocks = tb.blocks.map((b) => {
      const nb = b.n1 - b.n0;
      const lnWindow = { offset: b.n0 * GROUP_BYTES, size: nb * GROUP_BYTES };
      const rec: ForwardRecords | undefined = tb.single ? undefined : {
        rows: b.parts,
        list: b.lines,
        groups: lnWindow,
        chanGroups: bnWindow,
        groupList: b.groupList,
      };
      return { ...b, nb, rec, lnWindow };
    });
    for (const kind of ["stats1d", "wideStats1d"] as const) {
      // wideStats1d: the tile lines of wide values summarized again (sn1d_wide_stats.wgsl).
      for (const b of blocks) {
        for (const [first, last, base] of tileWindows(problem, limits, undefined, b.rt0, b.rt1)) {
          const size = (Math.min(last * TILE, n) * c - base) * 4;
          const tiles = (last - first) * ct;
          add(
            kind,
            kind === "stats1d" ? tiles : Math.min(64, tiles),
            (v) => {
              v.setUint32(24, ct, true);
              v.setUint32(28, first, true);
              v.setUint32(32, last, true);
              v.setUint32(36, base, true);
              v.setUint32(56, b.nb, true); // row summaries: ct * nb + n - n0 in the block
              v.setUint32(64, ct * b.nb, true); // then the column summaries
              v.setUint32(104, b.n0, true);
            },
            { offset: base * 4, size },
            undefined,
            b.rec,
          );
        }
      }
    }
    addRowStages = () => {
      // The LN groups (ct tile summaries each) on `span` threads each, groupThreads / span per
      // workgroup, the BN groups (channels, rt each) on groupThreads, in dispatches of their own.
      const lnSpan = lnGroupSpan(ct, groupThreads);
      const span = lnSpan < groupThreads ? lnSpan : undefined;
      const lnWorkgroups = (rows: number) => Math.ceil(rows / (groupThreads / lnSpan));
      if (tb.single) {
        const lnGroups = (v: DataView) => v.setUint32(84, 0, true);
        add("group", lnWorkgroups(n), lnGroups, undefined, undefined, undefined, span);
        // BN group c is this dispatch's group c, written to groups[n + c] (chan_base).
        add("group", c, (v) => {
          v.setUint32(80, 0, true);
          v.setUint32(108, n, true);
        });
      } else {
        // Each block's LN groups, from its row summaries, in its window of groups; the BN
        // groups in two levels (each block's part of each channel, then the parts merged).
        for (const b of blocks) {
          add(
            "group",
            lnWorkgroups(b.nb),
            (v) => {
              [48, 52, 56, 60, 80, 84].forEach((at, i) =>
                v.setUint32(at, [0, 1, b.nb, ct, b.nb, 0][i], true)
              );
              v.setUint32(104, b.n0, true);
              v.setUint32(108, 0, true);
            },
            undefined,
            undefined,
            b.rec,
            span,
          );
        }
        const bnGroups = (v: DataView, flag: number, members: number[], out: number) => {
          [64, 68, 72, 76, 80, 84].forEach((at, i) => v.setUint32(at, [...members, 0, c][i], true));
          v.setUint32(104, bnBase, true);
          v.setUint32(108, out, true);
          v.setUint32(44, v.getUint32(44, true) | flag, true);
        };
        const chan = { groups: bnWindow, groupList: tb.chanList };
        if (problem.training) {
          bnParts = blocks.length * c;
          checkFits(bnParts * PARTIAL_BYTES, "the blocks' BN statistics", limits);
          for (const [i, b] of blocks.entries()) {
            add(
              "group",
              c,
              (v) => {
                bnGroups(v, F_BN_PARTS, [ct * b.nb, 1, c, b.rt1 - b.rt0], i * c);
                v.setUint32(104, 0, true);
              },
              undefined,
              undefined,
              { ...b.rec, bn: "parts" },
            );
          }
          add(
            "group",
            c,
            (v) => bnGroups(v, 0, [0, 1, c, blocks.length], n - bnBase),
            undefined,
            undefined,
            {
              ...chan,
              bn: "merge",
            },
          );
        } else {
          // Evaluation: BN groups from the running buffers (no members are read).
          add("group", c, (v) => bnGroups(v, 0, [0, 1, c, 0], n - bnBase), undefined, undefined, {
            ...blocks[0].rec,
            ...chan,
          });
        }
      }
      const elementWindows = blocks.map((b) => {
        // The block's elements: n0 * C is a multiple of 4 (tileBlocks aligns n0).
        const firstVec = b.n0 * c / 4;
        return vecWindows(b.n1 * c - b.n0 * c, limits).map(([first, count]) => ({
          b,
          count,
          fill: (v: DataView) => {
            v.setUint32(36, (firstVec + first) * 4, true);
            v.setUint32(40, count, true);
            v.setUint32(104, b.n0, true);
            v.setUint32(108, bnBase, true);
          },
          window: { offset: (firstVec + first) * 16, size: count * 16 },
        }));
      }).flat();
      for (const w of elementWindows) {
        add("normalize1d", Math.ceil(w.count / WG), w.fill, w.window, undefined, w.b.rec);
      }
      // Elements of scaled groups written again (sn1d_wide_normalize.wgsl): a workgroup per
      // listed group, at most 64; in blocks, once for the block's samples and once for the
      // channels.
      // eps 0: then y of the listed groups' elements of std 0 whose mixed mean is 0
      // (sn1d_zero_std_y.wgsl).
      for (const kind of zeroStdPasses(problem) ? wideKinds1d : ["wideNormalize1d"] as const) {
        for (const w of elementWindows) {
          const lists = tb.single ? [undefined] : [w.b.groupList, tb.chanList];
          for (const list of lists) {
            add(
              kind,
              Math.min(64, n + c),
              w.fill,
              w.window,
              undefined,
              w.b.rec && {
                ...w.b.rec,
                groupList: list,
              },
            );
          }
        }
      }
    };
  }
  checkFits(2 * c * 4, "gamma and beta", limits);
  addRowStages();
  const groups = n + (usingBN ? c : 0);
  const mixedRows = layout === "nd" ? n * c : 0;

  const uniforms = slots.uniforms((v) => {
    writeCommon(v, problem, params);
    writeGroupMembers(v, problem);
  });
  return {
    dispatches: slots.dispatches,
    groupThreads,
    uniforms,
    partials,
    mergedRows,
    groups,
    mixedRows,
    bnParts,
    listOffsets,
    statsListOffsets,
    wideListBytes: layout === "nd" ? Math.max(listBytesND, groupListBytes) : listBytes1d,
    wideStatsListBytes: layout === "nd" ? listBytesND : statsListBytes1d,
    tensorBytes: paddedBytes(total),
  };
}

/** Lays `count` workgroups out on a grid of at most `max` per dimension: [x, y]. */
export function grid(count: number, max = 65535): [number, number] {
  const x = Math.min(count, max);
  const y = Math.ceil(count / x);
  if (y > max) {
    throw new RangeError(`webgpu backend: ${count} workgroups exceed a ${max} x ${max} grid`);
  }
  return [x, y];
}
