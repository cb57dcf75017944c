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
import { seededRandom } from "../examples/_data.ts";
import { testEachBackend } from "./_backends.ts";
import { assertSync1dMatchesWhole } from "./_sync_1d.ts";

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
      await assertSync1dMatchesWhole(
        backend,
        { x, dy, n, c, state },
        `border ${a}, ${b}, mean_weight ${mw}`,
      );
    }
  },
);
