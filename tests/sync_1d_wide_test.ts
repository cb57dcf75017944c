/**
 * Issue 10, point 1, under SyncSN: SwitchNorm1d replicas whose channel is ordinary on one and
 * huge on another, so that only the global batch's BN statistics and gradient sums are wide. On
 * WebGPU the lists of wide channels were made from each replica's own statistics, before the
 * CPU put the global ones in their place: replica 0's y 0.75 for -0.105 (channel ~1e25 on
 * replica 1), its dx 760975 for -1.5e-8 (~1e7). Every backend, two replicas in one process,
 * against the float64 reference on the whole batch.
 */
import { seededRandom } from "../examples/_data.ts";
import { testEachBackend } from "./_backends.ts";
import { assertSync1dMatchesWhole } from "./_sync_1d.ts";

await testEachBackend(
  "SyncSN SwitchNorm1d: a channel wide only across replicas gets the whole batch's y, dx and gradients",
  async (backend) => {
    const n = 4, c = 3;
    for (const scale of [1e7, 1e25]) {
      // Channel 0 is ~1 on replica 0 and ~scale on replica 1.
      const random = seededRandom(3);
      const x = Float32Array.from(
        { length: 2 * n * c },
        (_, i) => (i >= n * c && i % c === 0 ? scale : 1) * (random() * 2 - 1),
      );
      const dy = Float32Array.from({ length: 2 * n * c }, () => random() * 2 - 1);
      await assertSync1dMatchesWhole(
        backend,
        { x, dy, n, c },
        `channel 0 at ${scale} on replica 1`,
      );
    }
  },
);
