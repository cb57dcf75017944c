/**
 * SyncSN: BN statistics over the global batch of data-parallel replicas. The user supplies the
 * transport as an all-gather; statistics travel as mergeable (count, mean, M2) triples merged
 * with Chan's formula in rank order, so every replica gets bit-identical results without
 * E[x^2] - E[x]^2 cancellation.
 *
 * @module
 */
import type { BatchSync } from "./backends/_backend.ts";

/**
 * The transport between replicas (workers, processes or machines). `allGather` sends this
 * replica's vector and resolves to every replica's vector in rank order (the same list on every
 * replica, this replica's own included). All replicas call it the same number of times with
 * vectors of the same length.
 *
 * @example
 * ```ts
 * import type { SyncGroup } from "./mod.ts";
 * // One replica alone: the group of one, where the global batch is the local batch.
 * const solo: SyncGroup = { size: 1, allGather: (v) => Promise.resolve([v]) };
 * console.log(solo.size); // 1
 * ```
 */
export interface SyncGroup {
  /** Number of replicas. */
  readonly size: number;
  /** Sends `local` to every replica; resolves to all replicas' vectors in rank order. */
  allGather(local: Float64Array): Promise<Float64Array[]>;
}

/** Wraps a user's SyncGroup as the merge/sum operations backends use. */
export function batchSync(group: SyncGroup): BatchSync {
  const gather = async (local: Float64Array, what: string): Promise<Float64Array[]> => {
    const all = await group.allGather(local);
    if (!Array.isArray(all) || all.length !== group.size) {
      throw new Error(
        `SyncSN: allGather for ${what} returned ${all?.length} vectors for ${group.size} replicas`,
      );
    }
    for (const v of all) {
      if (!(v instanceof Float64Array) || v.length !== local.length) {
        throw new Error(`SyncSN: allGather for ${what} returned a vector of the wrong length`);
      }
    }
    return all;
  };
  return {
    replicas: group.size,
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
