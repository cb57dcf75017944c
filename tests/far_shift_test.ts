/**
 * Issue 10, point 1: statistics summed about a shift far from the data's mean. WebGPU sums each
 * row segment about its first value K (and an LN or BN group about its first member's) and forms
 * the mean as K + mean(x - K): where K is an outlier, mean(x - K) ~ -K keeps float32 rounding of
 * K's size, which the sum cancels (a row of 1023 zeros after a 1e6: running_mean 97.65 for
 * 97.65625, 6.4e-5 relative; 2e-4 for 1e19 in scaled rows; 4e-5 for a channel whose first
 * sample's row is 1e6 among 4095 rows of ~0.5). WASM and WebGPU against the float64 reference:
 * y, the running buffers, dx and the gradients, rows of one segment and of several, scaled
 * (wide) rows, the LN/BN groups, and SwitchNorm1d's tiles (which pass already: their lines sum
 * about their mean where the first value dominates). Also groups of many members, where lavapipe
 * ends a shader invocation's loops after 65535 iterations in all (groupThreadsFor).
 */
import { seededRandom } from "../examples/_data.ts";
import { RUNNING, Y } from "./_tolerances.ts";
import {
  assertOutputsClose,
  assertRangeChecks,
  gradsToScale,
  type LayerCall,
  rangeTests,
  runBoth,
} from "./_range_compare.ts";

interface FarCase {
  readonly what: string;
  readonly layer: "1d" | "2d";
  readonly shape: readonly number[];
  /** x before the outliers: uniform in [0, noise). */
  readonly noise: number;
  /** Elements set to `outlier`. */
  readonly at: readonly number[];
  readonly outlier: number;
}

/** Every row of `rows` x `len` starts with the outlier. */
function rowStarts(rows: number, len: number): number[] {
  return Array.from({ length: rows }, (_, r) => r * len);
}

const CASES: readonly FarCase[] = [
  {
    what: "rows of 1024: a 1e6, then zeros (the issue's example)",
    layer: "2d",
    shape: [2, 1, 1, 1024],
    noise: 0,
    at: rowStarts(2, 1024),
    outlier: 1e6,
  },
  {
    what: "rows of 256 after a 1e6",
    layer: "2d",
    shape: [2, 2, 1, 256],
    noise: 0,
    at: rowStarts(4, 256),
    outlier: 1e6,
  },
  {
    what: "a row of 255 (not a whole number of vec4s) after a 1e6",
    layer: "2d",
    shape: [1, 1, 255, 1],
    noise: 0,
    at: [0],
    outlier: 1e6,
  },
  {
    what: "rows of 8192 (several segments) after a 1e6",
    layer: "2d",
    shape: [2, 1, 1, 8192],
    noise: 0,
    at: rowStarts(2, 8192),
    outlier: 1e6,
  },
  {
    what: "wide rows: a 1e19, then zeros",
    layer: "2d",
    shape: [2, 1, 1, 1024],
    noise: 0,
    at: rowStarts(2, 1024),
    outlier: 1e19,
  },
  {
    what: "wide rows of 8192: a 1e19, then zeros",
    layer: "2d",
    shape: [2, 1, 1, 8192],
    noise: 0,
    at: rowStarts(2, 8192),
    outlier: 1e19,
  },
  {
    // 512 listed rows of two segments: with a workgroup per listed row, only its first threads
    // working, a thread swept 8 rows x 4096 x 2 sweeps, past llvmpipe's 65535 iterations per
    // loop and invocation: running_mean 14% off, running_var 3% (sn_wide_stats).
    what: "512 wide rows of 4097 (noise below 1e18) each led by a 1e19",
    layer: "2d",
    shape: [128, 4, 1, 4097],
    noise: 1e18,
    at: rowStarts(512, 4097),
    outlier: 1e19,
  },
  {
    what: "a BN group whose first sample's row is 1e6 among 4095 rows of noise",
    layer: "2d",
    shape: [4096, 1, 1, 2],
    noise: 1,
    at: [0, 1],
    outlier: 1e6,
  },
  {
    what: "a BN group whose first sample's row is 1e19 among 4095 rows of noise",
    layer: "2d",
    shape: [4096, 1, 1, 2],
    noise: 1,
    at: [0, 1],
    outlier: 1e19,
  },
  {
    what: "BN groups of 60000 samples whose first sample is at +100 (its mean summed again by " +
      "one thread went past lavapipe's 65535 loop iterations: running_mean 0.8% off)",
    layer: "2d",
    shape: [60000, 3, 2, 2],
    noise: 1,
    at: Array.from({ length: 12 }, (_, i) => i),
    outlier: 100,
  },
  {
    what: "a BN group of 600000 samples (more members than 8 threads per group loop over on " +
      "lavapipe: y 4x off)",
    layer: "2d",
    shape: [600000, 1, 1, 2],
    noise: 1,
    at: [],
    outlier: 0,
  },
  {
    what: "SwitchNorm1d: a column of 4096 led by 1e6",
    layer: "1d",
    shape: [4096, 2],
    noise: 1,
    at: [0, 1],
    outlier: 1e6,
  },
];

/** A training step of `kase` from the layer's defaults. */
function call(kase: FarCase): LayerCall {
  const count = kase.shape.reduce((a, b) => a * b, 1);
  const random = seededRandom(4242);
  const x = new Float32Array(count), dy = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    x[i] = kase.noise * random();
    dy[i] = random() * 2 - 1;
  }
  for (const i of kase.at) x[i] = kase.outlier;
  const { layer, shape } = kase;
  return { layer, shape, training: true, x, dy, scales: true, running: true, dispose: true };
}

rangeTests(
  "rows and groups that start far from their mean match the float64 reference",
  async (backend) => {
    for (const kase of CASES) {
      const { want, got } = await runBoth(call(kase), backend);
      // dx ~ 1 / std (~1e-6 .. 1e-19 here) and the gradients, to float32 rounding of the
      // size of their terms (GRAD_SCALED).
      assertOutputsClose(got, want, {
        what: kase.what,
        y: Y,
        runningMean: RUNNING,
        runningVar: RUNNING,
        ...gradsToScale(want.scales),
      });
    }
  },
);

/**
 * A row of `m` values 1004234.125 but for a few one float32 ulp (0.0625) below: its std, ~2e-3,
 * lies a few ulps of its mean. WebGPU cuts the shift of rows of several segments to 12
 * significant bits (1003520 here), and Welford's M2 about it took deltas to a running mean of
 * ~714 rounded at that mean's ulps: the variance ~1e-3 relative off, y 3.3e-4 (attack
 * helper-78's rows of 1025 at mean 1e6, std 1e-2, quantized by float32).
 */
function quantizedRow(m: number, below: readonly number[], training: boolean): LayerCall {
  const x = new Float32Array(m).fill(1004234.125);
  for (const i of below) x[i] = 1004234.0625;
  return {
    layer: "2d",
    shape: [1, 1, 1, m],
    options: { eps: 0, usingBN: false },
    training,
    x,
    dy: Float32Array.from({ length: m }, (_, i) => Math.sin(i)),
    scales: true,
  };
}

rangeTests(
  "rows whose std lies a few float32 ulps of their mean, over several segments, match the float64 reference",
  async (backend) => {
    for (
      const [m, below] of [[1025, [26, 700]], [2048, [26, 700]], [1025, [26]], [
        1025,
        [1, 26, 100, 200, 300, 400, 500, 600, 700, 800],
      ]] as const
    ) {
      for (const training of [false, true]) {
        const call = quantizedRow(m, below, training);
        const { got, want } = await runBoth(call, backend);
        assertRangeChecks(call, got, want, `m ${m}, ${below.length} below, training ${training}`);
      }
    }
  },
);
