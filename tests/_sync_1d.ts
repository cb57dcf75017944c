/**
 * SyncSN SwitchNorm1d against the float64 reference on the whole batch: two replicas in one
 * process, each taking its half of the samples, checked on y, dx, the running buffers and every
 * gradient (shared by the SyncSN range tests).
 *
 * @module
 */
import { type StateDict, SwitchNorm1d, type SyncGroup } from "../mod.ts";
import type { BackendName } from "../backends/_backend.ts";
import { assertClose, assertCloseToScale } from "./_close.ts";
import { GRAD_SCALED, RUNNING, Y } from "./_tolerances.ts";
import { termScales } from "./_term_scales.ts";

/** SyncGroups of `size` replicas in this process: each gather waits for every replica's. */
export function replicas(size: number): SyncGroup[] {
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

/**
 * A training step of SwitchNorm1d(c) on x, dy of shape [2n, c] split over two SyncSN replicas of
 * `backend` (samples 0 .. n - 1 on replica 0) against the reference on the whole batch: y within
 * `Y`, dx and each replica's gradients within `GRAD_SCALED` of their term scales, each replica's
 * running buffers within `RUNNING`. `state` (if given) is loaded into every layer first.
 */
export async function assertSync1dMatchesWhole(
  backend: BackendName,
  call: { x: Float32Array; dy: Float32Array; n: number; c: number; state?: StateDict },
  what: string,
): Promise<void> {
  const { x, dy, n, c, state } = call;
  const whole = new SwitchNorm1d(c, { backend: "reference" });
  if (state) whole.loadStateDict(state);
  const params = whole.stateDict();
  const want = await whole.forward(x, [2 * n, c], { keepForBackward: true });
  const wantDx = await whole.backward(dy);
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
    weight: params.weight,
    bias: params.bias,
    meanLogits: params.mean_weight,
    varLogits: params.var_weight,
  });
  const groups = replicas(2);
  const got = await Promise.all([0, 1].map(async (rank) => {
    const layer = new SwitchNorm1d(c, { backend, sync: groups[rank] });
    if (state) layer.loadStateDict(state);
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
  try {
    assertClose([...got[0].y, ...got[1].y], want, Y, `${what}: y`);
    assertCloseToScale([...got[0].dx, ...got[1].dx], wantDx, scales.dx, GRAD_SCALED, `${what}: dx`);
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
  } finally {
    whole.dispose();
  }
}
