/**
 * The main-thread side of the SyncSN Worker tests: starts one Worker per replica from `url` and
 * relays their gathers (each replica posts its vector; once every replica has posted one, all of
 * them get the vectors in rank order), as an allGather over any transport would. Shared by
 * tests/sync_test.ts and tests/sync_failure_test.ts.
 *
 * @module
 */

/** The replicas' Workers and, per rank, a promise of its final "done" message. */
export function startReplicas<Done>(
  url: URL,
  count: number,
): { workers: Worker[]; done: Promise<Done>[] } {
  const workers = Array.from({ length: count }, () => new Worker(url, { type: "module" }));
  const queues: Float64Array[][] = workers.map(() => []);
  const done = workers.map((w, rank) =>
    new Promise<Done>((resolve, reject) => {
      w.onerror = (e) => {
        e.preventDefault();
        reject(new Error(`replica ${rank}: ${e.message}`));
      };
      w.onmessage = (e) => {
        if (e.data.type === "done") return resolve(e.data);
        queues[rank].push(e.data.data);
        if (queues.every((q) => q.length > 0)) {
          const all = queues.map((q) => q.shift()!);
          for (const other of workers) other.postMessage({ type: "gathered", all });
        }
      };
    })
  );
  return { workers, done };
}
