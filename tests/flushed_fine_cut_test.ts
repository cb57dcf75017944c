/**
 * Attack fuzzer seed 245751 (session 46) and its neighbours: an evaluation of SwitchNorm2d rows of
 * constant values ~+-1e-37 (x - mu ~3e-38) under a BN variance of 1.5e38 (the mix's unit 2^1)
 * and dy ~1e37. sn_bwd_wide_reduce's `cut` (hi and lo cancelling) for rows whose mixed mean
 * (~-1e-38) lies below float32's normal range in that unit: on a GPU that flushes subnormals
 * hi + lo was 0, and the fine mean brought to the unit 2^e was flushed as well, so x - mu was
 * taken as x (dgamma -9.4e-21 for -1.06e-19 on SwiftShader with NVIDIA's division emulated,
 * `--preload tests/_nvidia_division.ts`). x - mu now comes from the fine mean in the near unit
 * there, as the uncut rows take it. Held to the float64 reference with the range tests' checks,
 * on both backends; both signs, a few scales near float32's smallest normal, other row lengths.
 */
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { make } from "./fuzz/attack_fuzz.ts";

function variant(sign: number, scale: number, m: number, n = 8): LayerCall {
  const base = make(245751);
  const c = 3, len = n * c * m;
  const x = new Float32Array(len), dy = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    const row = Math.floor(i / m);
    x[i] = Math.fround(sign * ((row * 7919) % 13 - 6) / 6 * 1e-37 * scale);
    dy[i] = base.dy![(row % 24) * 257 + (i % m) % 257];
  }
  return { ...base, shape: [n, c, 1, m], x, dy };
}

rangeTests(
  "SwitchNorm2d evaluation: a mixed mean below float32's normal range in the mix's unit, cut, keeps x - mu (attack fuzzer seed 245751)",
  async (backend) => {
    const call = make(245751);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);

for (
  const [sign, scale, m, n] of [[-1, 1, 257, 8], [1, 0.3, 257, 8], [1, 30, 33, 4], [-1, 3, 1000, 2]]
) {
  rangeTests(
    `SwitchNorm2d evaluation: rows near float32's smallest normal under a BN std of 1.2e19 (sign ${sign}, x ${scale}e-37, m ${m}, n ${n})`,
    async (backend) => {
      const call = variant(sign, scale, m, n);
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}

// Two more attack fuzzer seeds of the class, found on the main before the fix (session 46) and
// passing after it, with no change of their own: 261743, a SwitchNorm2d [2,3,1,16] evaluation
// (dgamma 2.4e-20 for 1.9e-21), and 269756, a SwitchNorm3d [2,1,2,1,1] evaluation on x of
// -8.4e-38 to 3.3e-38 under a subnormal gamma and dy -2e38 (dgamma 19612.8 for 20557.6).
for (const seed of [261743, 269756]) {
  rangeTests(
    `an evaluation whose mixed mean lies below float32's normal range in the mix's unit keeps its dgamma (attack fuzzer seed ${seed})`,
    async (backend) => {
      const call = make(seed);
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}

/**
 * Attack fuzzer seed 270920 (session 46) and its neighbours: an evaluation of SwitchNorm2d rows of
 * ~1e-37 under a mixed mean of ~2.1e-38 (LN 0.214, BN 0.786 on a running_mean of 0), a BN std of
 * 1.2e19 (the mix's unit 2^1) and dy ~1e37: 245751's class (a cut whose mean and fine mean both
 * flush in the mix's unit), but with the fine mean's anchor (BN's running_mean) 0 and the whole
 * mean in its lo, where `fine_cut` required the anchor nonzero: x - mu was x, dgamma 4.9e-19 for
 * 3.9e-19 (1/0.786) on SwiftShader with NVIDIA's division emulated. Both signs, a few scales,
 * rows that are not constant, longer rows, larger and smaller dy, and rows of ~1e-30 under dy
 * ~1e30 (the fine path, f = 0: passed before too).
 */
function variant270920(
  sign: number,
  scale: number,
  m: number,
  spread: number,
  dyScale: number,
): LayerCall {
  const base = make(270920);
  const n = 8, len = n * m;
  const x = new Float32Array(len), dy = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    x[i] = Math.fround(sign * scale * 1e-37 * (1 + spread * (((i * 7919) % 13) - 6) / 6));
    dy[i] = Math.fround(base.dy![i % base.dy!.length] * dyScale);
  }
  return { ...base, shape: [n, 1, 1, m], x, dy };
}

rangeTests(
  "SwitchNorm2d evaluation: x - mu under a mixed mean near float32's smallest normal, dy ~1e37, keeps the mean (attack fuzzer seed 270920)",
  async (backend) => {
    const call = make(270920);
    const { got, want } = await runBoth(call, backend);
    assertRangeChecks(call, got, want);
  },
);

for (
  const [sign, scale, m, spread, dyScale] of [
    [-1, 1, 4, 0, 1],
    [1, 0.5, 4, 0, 1],
    [1, 3, 33, 0.5, 1],
    [-1, 1, 257, 0.2, 30],
    [1, 1, 4, 0, 0.01],
    [1, 1e7, 4, 0, 1e-7],
    [-1, 1e7, 33, 0.3, 1e-7],
  ]
) {
  rangeTests(
    `SwitchNorm2d evaluation: rows of ~1e-37 under a mixed mean of ~2e-38 and large dy (sign ${sign}, x ${scale}e-37, m ${m}, spread ${spread}, dy x${dyScale})`,
    async (backend) => {
      const call = variant270920(sign, scale, m, spread, dyScale);
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}

// A fine mean one of whose words flushes in the mix's unit (helper-192, session 46): rows of
// constant values ~+-1e-37 under LN and BN mean and variance weights of 1/2 each, a running_mean
// of 0 and running_var of 3e38 (a std of 1.2e19), dy ~1 to 1e3 (products below float32's
// normal range: the near unit). Where the mixed mean (half the LN mean) lies below float32's
// normal range in that unit, hi + lo cancelled to 0 (`cut`, `lost`), and the fine mean brought
// there kept its high word (the LN mean, normal) but flushed its low word (-1/2 of it): mu was
// taken as the LN mean, x - 2 mu for x - mu (var_weight's gradient 0.84x on SwiftShader with
// NVIDIA's division emulated, 89x its tolerance; lavapipe and WASM passed). Layouts "2d" and
// "3d", both signs, x up to 1e-36, rows of 2 to 1000.
function halfLn(
  layer: "2d" | "3d",
  sign: number,
  scale: number,
  m: number,
  n: number,
  dyScale: number,
): LayerCall {
  const base = make(245751);
  const c = 3, len = n * c * m;
  const x = new Float32Array(len), dy = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    const row = Math.floor(i / m);
    x[i] = Math.fround(sign * ((row * 7919) % 13 - 6) / 6 * 1e-37 * scale);
    dy[i] = Math.fround(base.dy![(row % 24) * 257 + (i % m) % 257] * 1e-37 * dyScale);
  }
  const shape = layer === "2d" ? [n, c, 1, m] : [n, c, 2, 1, m / 2];
  return {
    layer,
    shape,
    options: { eps: 1e-30, momentum: 0.1 },
    state: {
      weight: Float32Array.of(1e20, 3e38, 1e20),
      bias: Float32Array.of(1.4e-45, 0, 0),
      mean_weight: Float32Array.of(-1e30, 0, 0),
      var_weight: Float32Array.of(-1e30, 0, 0),
      running_mean: new Float32Array(c),
      running_var: Float32Array.of(3e38, 3e38, 3e38),
    },
    partial: true,
    training: false,
    x,
    dy,
    scales: true,
  };
}

for (
  const [layer, sign, scale, m, n, dyScale] of [
    ["2d", 1, 1, 33, 8, 1],
    ["2d", -1, 1, 33, 8, 1],
    ["2d", 1, 0.3, 257, 8, 1000],
    ["3d", -1, 3, 34, 8, 10],
    ["2d", 1, 10, 2, 8, 1],
    ["2d", -1, 1, 1000, 4, 1],
  ] as const
) {
  rangeTests(
    `SwitchNorm${
      layer[0]
    }d evaluation: a fine mean whose low word flushes in the mix's unit keeps it (sign ${sign}, x ${scale}e-37, m ${m}, n ${n}, dy ${dyScale}e-37 x 1e37)`,
    async (backend) => {
      const call = halfLn(layer, sign, scale, m, n, dyScale);
      const { got, want } = await runBoth(call, backend);
      assertRangeChecks(call, got, want);
    },
  );
}
