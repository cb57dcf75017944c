/**
 * SyncSN with SwitchNorm1d whose merged BN means are subnormal float32 values (~3.75e-39): under
 * SyncSN the CPU rewrites each training BN group record with the replicas' merged statistics
 * (backends/_webgpu_sync.ts syncStats) and wrote its fine word (shaders/common.wgsl Group.fine,
 * the mean in the unit 2^FINE_MEAN_UNIT where its words lie below 2^-100, sn_group_stats'
 * group_fine_1d) as 0, so a GPU that flushes subnormals (NVIDIA; SwiftShader with NVIDIA's division
 * emulated, tests/_nvidia_division.ts) took the mean as 0 in the backward's mean dots:
 * `mean_weight`'s gradient off under gamma 1e20. A [16, 8] batch over 2 replicas of 8 rows: a
 * 14 x 6 checkerboard of +-1 bordered by -3e-38 and 7e-38 (LN means 5e-39, merged BN means
 * 2.5e-39; replica 0's BN means 0, replica 1's 5e-39; dy 0 on the border), where the float64
 * reference sums the small values after the +-1 cancel (exact). Also bordered by -3 and 20 times
 * 2^-149 (merged BN means 17/16 2^-149, replica 1's 17/8 2^-149): the words round them to 2^-149
 * and 2^-148 (6% off), the fine words hold them exactly. Layout "nd" has no BN fine word (group_fine
 * skips channel groups), so the CPU's 0 is the shader's there.
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
  "SyncSN SwitchNorm1d: subnormal merged BN means keep their fine word",
  async (backend) => {
    const n = 8, c = 8;
    const f = Math.fround;
    const tiny = 2 ** -149;
    const borders: [number, number][] = [[-3e-38, 7e-38], [-3 * tiny, 20 * tiny]];
    for (
      const [mw, [a, b]] of borders.flatMap((ab) =>
        [[0, 0], [0.5, -0.5], [-1, 1]].map((mw) => [mw, ab] as const)
      )
    ) {
      const random = seededRandom(5);
      const x = new Float32Array(2 * n * c), dy = new Float32Array(2 * n * c);
      for (let i = 0; i < 2 * n; i++) {
        for (let j = 0; j < c; j++) {
          const inner = i < 14 && j < 6;
          x[i * c + j] = inner ? ((i + j) % 2 ? -1 : 1) : f((i + j) % 2 ? a : b);
          const d = f(random() * 2 - 1);
          dy[i * c + j] = inner ? d : 0;
        }
      }
      const state = {
        weight: new Float32Array(c).fill(1e20),
        bias: new Float32Array(c),
        mean_weight: Float32Array.from(mw),
        var_weight: new Float32Array(2),
        running_mean: new Float32Array(c),
        running_var: new Float32Array(c).fill(1),
      };
      const whole = new SwitchNorm1d(c, { backend: "reference" });
      whole.loadStateDict(state);
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
        weight: state.weight,
        bias: state.bias,
        meanLogits: state.mean_weight,
        varLogits: state.var_weight,
      });
      const groups = replicas(2);
      const got = await Promise.all([0, 1].map(async (rank) => {
        const layer = new SwitchNorm1d(c, { backend, sync: groups[rank] });
        layer.loadStateDict(state);
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
      const what = `border ${a}, ${b}, mean_weight ${mw}`;
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
