/**
 * SyncSN: BN statistics over the global batch of data-parallel replicas. The user supplies the
 * transport as an all-gather; statistics travel as mergeable (count, mean, M2) triples merged
 * with Chan's formula in rank order, so every replica gets bit-identical results without
 * E[x^2] - E[x]^2 cancellation. A layer's call that fails before its gather still takes part in
 * it, so that the other replicas fail too instead of waiting. Every gathered vector starts with
 * the replica's header (_replica_header.ts: its layer's place on the group, its call and its
 * layer's settings), which every replica checks before using a payload, so that replicas calling
 * different layers of a shared group, making different calls or running differently configured
 * layers fail at once, together, instead of merging what does not match.
 * Depends on the Backend interface's BatchSync type and on the header.
 *
 * @module
 */
import type { BatchSync } from "./backends/_backend.ts";
import { checkBoolean } from "./_validate.ts";
import {
  checkHeaders,
  FAILED,
  HEADER_LENGTH,
  OK,
  type ReplicaCall,
  type ReplicaConfig,
  writeHeader,
} from "./_replica_header.ts";

/**
 * The transport between replicas (workers, processes or machines). `allGather` sends this
 * replica's vector and resolves to every replica's vector in rank order (the same list on every
 * replica, this replica's own included). All replicas call it the same number of times with
 * vectors of the same length, as long as they match (below); replicas that do not match may send
 * vectors of different lengths, which the transport must pass on as they are.
 *
 * Every replica's layer on a group must be made with the same class, numFeatures and options, and
 * every replica must make the same calls in the same order: training-mode forwards, backwards and
 * (with `localEvaluation: false`) evaluation-mode forwards, which exchange a short header only. Each
 * vector carries its replica's call and settings (with Sparse SN's radius and the batch average's
 * count), so that a difference (one replica in evaluation mode, another eps) fails the call at
 * once on every replica, naming it and both values, changing nothing; the group stays usable.
 *
 * Several layers of a replica (a model's) may share one group. Each vector also carries its
 * layer's place on the group, the order in which the layers were made with this group object in
 * this replica (0 for the first made with it, 1 for the second...), so make them in the same
 * order on every replica and call them in the same order: a replica calling the group's layer 1
 * while another calls its layer 0 (say, two branches run in opposite orders) fails both calls at
 * once on every replica, changing nothing, instead of merging one layer's statistics with the
 * other's. Give each replica's layers the same object (one group per replica), not copies.
 *
 * A replica whose call fails before it would gather (bad input, say) still takes part in that
 * gather, with a vector marked as failed, so that the call fails on every replica (naming the
 * replica) instead of leaving the others waiting; the group stays usable. `timeoutMs` and `signal`
 * bound the wait for a replica that never answers (it crashed, or its transport did): the call
 * rejects, changing nothing, and every later call of a layer on this group rejects at once, since
 * a late answer would pair with the wrong gather. Make a new group (and transport) to go on.
 *
 * @example
 * ```ts
 * import type { SyncGroup } from "./mod.ts";
 * // One replica alone: the group of one, where the global batch is the local batch.
 * const solo: SyncGroup = { size: 1, allGather: (v) => Promise.resolve([v]), timeoutMs: 60_000 };
 * console.log(solo.size); // 1
 * ```
 */
export interface SyncGroup {
  /** Number of replicas. */
  readonly size: number;
  /**
   * Sends `local` to every replica; resolves to all replicas' vectors in rank order, every value
   * as sent, NaN and the infinities included (which data with such values give): JSON turns them
   * into null, so send the vectors' bytes (a Float64Array's buffer, or structured clone).
   */
  allGather(local: Float64Array): Promise<Float64Array[]>;
  /**
   * The longest wait for one allGather, in milliseconds (a positive finite number). Default: no
   * limit.
   */
  readonly timeoutMs?: number;
  /** Aborting it rejects a pending wait at once, and every later call on the group. */
  readonly signal?: AbortSignal;
  /**
   * Default true, as PyTorch's SyncBatchNorm: evaluation-mode forwards exchange nothing, so that
   * a replica may evaluate alone (on rank 0 only, say); a replica left in evaluation mode by
   * mistake then leaves the others waiting (until `timeoutMs`). false: every evaluation-mode
   * forward of a layer with BN exchanges a header (one small allGather), so that replicas in
   * different modes fail at once, together, naming the difference.
   */
  readonly localEvaluation?: boolean;
}

/** The error of a call on a group that became unusable (`why`), saying what to do. */
function unusable(why: string): Error {
  return new Error(
    `SyncSN: the group is unusable since ${why}; make a new group and new layers on it (a ` +
      "layer keeps its group for life; carry its state over with stateDict() and loadStateDict())",
  );
}

/** Why each group became unusable (shared by every layer on the group). */
const brokenGroups = new WeakMap<SyncGroup, string>();
/**
 * How many layers each group has been given so far in this replica: a layer's place among them
 * (0 for the first) is its identity in every gather's header, the same on every replica whose
 * model is made the same way.
 */
const layersMade = new WeakMap<SyncGroup, number>();

/** A layer's cross-replica operations, with what the layer needs to report its own failures. */
export interface LayerSync extends BatchSync {
  /** Gathers started so far: a call that failed without starting one must report it. */
  readonly started: number;
  /** The group's `localEvaluation`: evaluation-mode forwards exchange nothing. */
  readonly localEvaluation: boolean;
  /**
   * Gives the layer's settings that every gather's header carries (once, at the end of its
   * construction), and takes the layer's place on the group (the next one in this replica).
   */
  describeWith(config: () => ReplicaConfig): void;
  /** Sets the call that the following gathers (and a `fail`) belong to. */
  begin(call: ReplicaCall): void;
  /** Throws if the group is unusable (a wait on it timed out, was aborted or failed). */
  check(): void;
  /**
   * An evaluation-mode forward's gather: the headers only, so that a replica making another call
   * (a training forward) or with other settings fails at once. Throws as the other gathers do.
   */
  confirm(): Promise<void>;
  /**
   * Takes part, marked as failed, in the gather that this replica's failed call skipped, with a
   * payload of `length` (what that gather would have sent). Never throws; the caller throws its
   * own error.
   */
  fail(length: number): Promise<void>;
}

/**
 * Wraps a user's SyncGroup as the merge/sum operations backends use. Throws a TypeError naming
 * `where` for a malformed `timeoutMs` or `signal`.
 */
export function batchSync(group: SyncGroup, where = "SyncSN"): LayerSync {
  const { timeoutMs, signal } = group;
  if (
    timeoutMs !== undefined &&
    (typeof timeoutMs !== "number" || !Number.isFinite(timeoutMs) || timeoutMs <= 0)
  ) {
    const Err = typeof timeoutMs === "number" ? RangeError : TypeError;
    throw new Err(
      `${where}: sync.timeoutMs must be a positive finite number of milliseconds, got ${
        typeof timeoutMs === "string" ? `"${timeoutMs}" (string)` : String(timeoutMs)
      }`,
    );
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(`${where}: sync.signal must be an AbortSignal`);
  }
  const localEvaluation = checkBoolean(
    `${where}: sync.localEvaluation`,
    group.localEvaluation,
    true,
  );
  let started = 0, call: ReplicaCall = "trainingForward", layer = -1;
  let config = (): ReplicaConfig => {
    throw new Error("SyncSN: internal error: a gather before the layer described itself");
  };
  /**
   * This replica's vector: its header (status, the layer's place on the group, call, settings),
   * then `length` payload slots.
   */
  const vector = (status: typeof OK | typeof FAILED, length: number): Float64Array => {
    const v = new Float64Array(HEADER_LENGTH + length);
    writeHeader(v, status, layer, call, config());
    return v;
  };
  const check = () => {
    const why = brokenGroups.get(group);
    if (why !== undefined) {
      throw unusable(why);
    }
    if (signal?.aborted) {
      const why = `its signal was aborted (${String(signal.reason)})`;
      brokenGroups.set(group, why);
      throw unusable(why);
    }
  };
  /** group.allGather, bounded by timeoutMs and signal; a wait that ends so breaks the group. */
  const bounded = async (v: Float64Array, what: string): Promise<Float64Array[]> => {
    check();
    started++;
    let timer: ReturnType<typeof setTimeout> | undefined, onAbort: (() => void) | undefined;
    const stop = new Promise<never>((_, reject) => {
      const end = (why: string) => {
        if (!brokenGroups.has(group)) brokenGroups.set(group, why);
        reject(new Error(`SyncSN: ${why}; this call changed nothing`));
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(
          () => end(`allGather for ${what} did not answer within ${timeoutMs} ms (timeoutMs)`),
          timeoutMs,
        );
      }
      if (signal) {
        onAbort = () => end(`allGather for ${what} was aborted (${String(signal.reason)})`);
        signal.addEventListener("abort", onAbort, { once: true });
      }
    });
    try {
      return await Promise.race([group.allGather(v), stop]);
    } catch (e) {
      if (!brokenGroups.has(group)) {
        brokenGroups.set(group, `allGather for ${what} failed (${(e as Error)?.message ?? e})`);
      }
      throw e;
    } finally {
      clearTimeout(timer);
      if (onAbort) signal!.removeEventListener("abort", onAbort);
    }
  };
  const gather = async (payload: Float64Array, what: string): Promise<Float64Array[]> => {
    const local = vector(OK, payload.length);
    local.set(payload, HEADER_LENGTH);
    const all = await bounded(local, what);
    if (!Array.isArray(all) || all.length !== group.size) {
      throw new Error(
        `SyncSN: allGather for ${what} returned ${all?.length} vectors for ${group.size} replicas`,
      );
    }
    const wrongLength = () =>
      new Error(`SyncSN: allGather for ${what} returned a vector of the wrong length`);
    for (const [rank, v] of all.entries()) {
      if (!(v instanceof Float64Array) || v.length < HEADER_LENGTH) throw wrongLength();
      if (v[0] !== OK) {
        throw new Error(
          `SyncSN: replica ${rank} (of ${group.size}) failed its call before the allGather for ` +
            `${what}; this call changed nothing`,
        );
      }
    }
    // Another call or other settings make the payloads incomparable (of another length, too):
    // name the difference before looking at them.
    checkHeaders(all);
    if (all.some((v) => v.length !== local.length)) throw wrongLength();
    return all.map((v) => v.subarray(HEADER_LENGTH));
  };
  return {
    replicas: group.size,
    get started() {
      return started;
    },
    localEvaluation,
    describeWith(describe) {
      config = describe;
      layer = layersMade.get(group) ?? 0;
      layersMade.set(group, layer + 1);
    },
    begin(next) {
      call = next;
    },
    check,
    async confirm() {
      await gather(new Float64Array(0), MODE_CHECK);
    },
    async fail(length) {
      const what = call === "backward"
        ? "gradient sums"
        : call === "trainingForward"
        ? "BN statistics"
        : MODE_CHECK;
      try {
        await bounded(vector(FAILED, length), what);
      } catch {
        // The group already says why it is unusable; the caller throws its own error.
      }
    },
    async mergeStats(count, mean, m2) {
      const c = mean.length;
      const packed = new Float64Array(1 + 2 * c);
      packed[0] = count;
      packed.set(mean, 1);
      packed.set(m2, 1 + c);
      const all = await gather(packed, "BN statistics");
      const outMean = new Float64Array(c), outM2 = new Float64Array(c);
      let total = 0;
      for (const v of all) {
        const nB = v[0], nA = total;
        total += nB;
        for (let j = 0; j < c; j++) {
          const delta = v[1 + j] - outMean[j];
          outMean[j] += delta * nB / total;
          outM2[j] += v[1 + c + j] + delta * delta * nA * nB / total;
        }
      }
      return { count: total, mean: outMean, m2: outM2 };
    },
    async sum(local) {
      const all = await gather(local, "gradient sums");
      const out = new Float64Array(local.length);
      for (const v of all) for (let i = 0; i < out.length; i++) out[i] += v[i];
      return out;
    },
  };
}

/** What an evaluation-mode forward's header-only gather is called in messages. */
const MODE_CHECK = "an evaluation forward's check of the replicas' calls";

/** The gather a layer's call takes part in under SyncSN: which call, and its payload's length. */
export interface Exchange {
  readonly call: ReplicaCall;
  readonly length: number;
}

/**
 * Runs a layer's `call`, which under SyncSN takes part in one gather of `exchange` (none when
 * undefined). If it fails before that gather (bad input, say), it still takes part, marked as
 * failed, so that the other replicas' calls fail too instead of waiting; on a group that became
 * unusable it fails first.
 */
export async function reportingToReplicas<T>(
  sync: LayerSync | undefined,
  exchange: Exchange | undefined,
  call: () => Promise<T>,
): Promise<T> {
  if (!sync || !exchange) return await call();
  sync.check();
  sync.begin(exchange.call);
  const before = sync.started;
  try {
    return await call();
  } catch (e) {
    if (sync.started === before) await sync.fail(exchange.length);
    throw e;
  }
}
