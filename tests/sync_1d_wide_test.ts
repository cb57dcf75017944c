/**
 * Issue 10, point 1, under SyncSN: SwitchNorm1d replicas whose channel is ordinary on one and
 * huge on another, so that only the global batch's BN statistics and gradient sums are wide. On
 * WebGPU the lists of wide channels were made from each replica's own statistics, before the
 * CPU put the global ones in their place: replica 0's y 0.75 for -0.105 (channel ~1e25 on
 * replica 1), its dx 760975 for -1.5e-8 (~1e7). Every backend, two replicas in one process,
 * against the float64 reference on the whole batch.
 */
import { SwitchNorm1d, type SyncGroup } from "../mod.ts";
import { seededRandom } from "../examples/_data.ts";
import { testEachBackend } from "./_backends.ts";
import { assertClose, assertCloseToScale } from "./_close.ts";
import { GRAD_SCALED, RUNNING, Y } from "./_tolerances.ts";
import { termScales } from "./_term_scales.ts";

/** SyncGroups of `size` replicas in this process: each gather waits for every replica's. */
function replicas(size: number): SyncGroup[] {
  const queues: { v: Float64Array; resolve: (all: Float64Array[]) => void }[][] = Array.from(
    { length: size },
    () => [],
  );
  return queues.map((queue) => ({
    size,
    allGather: (v: Float64Array) =>
      new Promise<Float64Array[]>((resolve) => {
        queue.push({ v: v.slice(), resolve });
        if (queues.every((q) => q.length > 0)) {
          const round = queues.map((q) => q.shift()!);
          for (const r of round) r.resolve(round.map((s) => s.v));
        }
      }),
  }));
}

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
      const whole = new SwitchNorm1d(c, { backend: "reference" });
      const want = await whole.forward(x, [2 * n, c], { keepForBackward: true });
      const wantDx = await whole.backward(dy);
      const state = whole.stateDict();
      const scales = termScales({
        layout: "1d",
        n: 2 * n,
        c,
        m: 1,
        eps: whole.eps,
        usingBN: true,
        training: true,
        x,
        dy,
        weight: state.weight,
        bias: state.bias,
        meanLogits: state.mean_weight,
        varLogits: state.var_weight,
      });
      const groups = replicas(2);
      const got = await Promise.all([0, 1].map(async (rank) => {
        const layer = new SwitchNorm1d(c, { backend, sync: groups[rank] });
        const part = (a: Float32Array) => a.slice(rank * n * c, (rank + 1) * n * c);
        const y = await layer.forward(part(x), [n, c], { keepForBackward: true });
        const dx = await layer.backward(part(dy));
        await layer.sync();
        const result = {
          y,
          dx,
          grads: { ...layer.grads },
          mean: layer.running_mean.slice(),
          variance: layer.running_var.slice(),
        };
        layer.dispose();
        return result;
      }));
      const what = `channel 0 at ${scale} on replica 1`;
      assertClose([...got[0].y, ...got[1].y], want, Y, `${what}: y`);
      assertCloseToScale(
        [...got[0].dx, ...got[1].dx],
        wantDx,
        scales.dx,
        GRAD_SCALED,
        `${what}: dx`,
      );
      for (const rank of [0, 1]) {
        assertClose(got[rank].mean, whole.running_mean, RUNNING, `${what}: running_mean`);
        assertClose(got[rank].variance, whole.running_var, RUNNING, `${what}: running_var`);
        for (const k of ["weight", "bias", "mean_weight", "var_weight"] as const) {
          assertCloseToScale(
            got[rank].grads[k],
            whole.grads[k],
            scales[k],
            GRAD_SCALED,
            `${what}: replica ${rank}'s gradient of ${k}`,
          );
        }
      }
      whole.dispose();
    }
  },
);
