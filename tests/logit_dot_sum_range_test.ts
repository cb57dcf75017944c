/**
 * Layout "nd" rows whose importance-logit dot products a_k = gm (mu_k - mu), b_k = gv (var_k - var)
 * each fit float32 but whose float32 sums over rows do not (WebGPU: shaders/sn_bwd_rows.wgsl
 * `dots_lg`, `sums_lg`). WebGPU kept a row on its plain path while each dot, estimated from its
 * factors' exponents, lay below ~2^124, and then summed a workgroup's 64 pair rows' dots
 * (dot_sum8), and a sample's C rows' gm mu and gv var (sn_bwd_groups), in float32: the sums
 * were infinities and the logit gradients NaN where the reference has finite values, in
 * evaluations on running buffers far from the data (README's known exceptions: "NaN for an
 * infinity") and in training steps alike. A sample's GvL, the sum of its 512 rows' gv, was an
 * infinity too: every dx -Infinity or NaN. Such rows now take wide_row, whose dots keep
 * exponents of their own, where the sums could pass float32's range. The calls run on WASM and
 * WebGPU (ignored without an adapter, a failure under CI=true) and are held to the float64
 * reference with the range tests' tolerances (tests/_range_compare.ts).
 */
import assert from "node:assert/strict";
import { seededRandom } from "../examples/_data.ts";
import { assertRangeChecks, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";

const f32 = (...v: number[]) => Float32Array.from(v);

/** One SwitchNorm2d call on [n, c, 1, m] with the same gamma, running buffers and logits in every channel. */
interface Spec {
  readonly what: string;
  readonly n: number;
  readonly c: number;
  readonly m: number;
  readonly training: boolean;
  /** x of sample `s`, `u` uniform in [-1, 1). */
  readonly x: (s: number, u: number) => number;
  /** dy from x and `u` uniform in [-1, 1). */
  readonly dy: (x: number, u: number) => number;
  readonly gamma: number;
  readonly runningMean: number;
  readonly runningVar: number;
  readonly meanLogits: [number, number, number];
  readonly varLogits: [number, number, number];
}

function layerCall(k: Spec, seed: number): LayerCall {
  const random = seededRandom(seed), len = k.n * k.c * k.m, perSample = k.c * k.m;
  const x = Float32Array.from(
    { length: len },
    (_, i) => k.x(Math.floor(i / perSample), random() * 2 - 1),
  );
  const dy = x.map((v) => k.dy(v, random() * 2 - 1));
  return {
    layer: "2d",
    shape: [k.n, k.c, 1, k.m],
    options: { eps: 0 },
    training: k.training,
    x,
    dy,
    state: {
      weight: new Float32Array(k.c).fill(k.gamma),
      bias: new Float32Array(k.c).fill(0.1),
      mean_weight: f32(...k.meanLogits),
      var_weight: f32(...k.varLogits),
      running_mean: new Float32Array(k.c).fill(k.runningMean),
      running_var: new Float32Array(k.c).fill(k.runningVar),
    },
    scales: true,
  };
}

const SPECS: readonly Spec[] = [
  {
    // mean_weight's gradient Infinity, Infinity, NaN for 7.6e35, 3.8e34, -8e35: gm ~2^84 times
    // mu_in - mu ~ -5e11 is ~8e36 per row, 64 rows of one sign past float32's largest value.
    what: "evaluation on a running_mean of 5.2e11 beside rows of std 1e5, mean dots ~8e36 a row",
    n: 2,
    c: 64,
    m: 8,
    training: false,
    x: (_s, u) => 1.7e5 * u,
    dy: (_x, u) => 6.8e10 * (1 + 0.01 * u),
    gamma: 2.29e18,
    runningMean: 5.2e11,
    runningVar: 1e10,
    meanLogits: [-7, -10, 0],
    varLogits: [0, 0, 0],
  },
  {
    // var_weight's gradient NaN and Infinity for -6.6e21, -7.9e21, 1.4e22: s ~5e4 over a running_var of 1e-10 (the IN weight
    // e^-40 brings the rows' variance of ~1e8 in at 4e-10), gv ~1e29 times var_in - var ~1e8.
    what:
      "evaluation on a running_var of 1e-10 beside rows of variance ~1e8, variance dots ~1e37 a row",
    n: 2,
    c: 64,
    m: 8,
    training: false,
    x: (_s, u) => 3e4 + 1.7e4 * u,
    dy: () => 8000,
    gamma: 4.1e6,
    runningMean: 0,
    runningVar: 1e-10,
    meanLogits: [-30, -30, 10],
    varLogits: [-30, -30, 10],
  },
  {
    // The same in training: samples at +-30 make the BN variance ~900 beside IN variances of
    // 1/3, gv ~1e34 of one sign over a sample's rows: var_weight's gradient NaN for 4.1e21, -1.5e18,
    // -4.1e21.
    what: "training, samples at +30 and -30 of std 0.6, variance dots ~1e37 a row",
    n: 2,
    c: 64,
    m: 8,
    training: true,
    x: (s, u) => (s === 0 ? 30 : -30) + u,
    dy: (_x, u) => 3.3e7 * (1 + 0.01 * u),
    gamma: 6e23,
    runningMean: 0,
    runningVar: 1,
    meanLogits: [-30, -30, 10],
    varLogits: [10, -30, -30],
  },
  {
    // A sample of 512 rows: their dots fit a workgroup's sum, but the sample's sums of gv var
    // (the variance dots' common part) and of gv (GvL) did not: var_weight's gradient NaN, dx
    // -Infinity and NaN where the reference has ~1e35.
    what: "evaluation of 512 channels, dy = 4.3e11 x under gamma 6e23, gv ~2e36 a row",
    n: 2,
    c: 512,
    m: 8,
    training: false,
    x: (_s, u) => 1.7 * u,
    dy: (x) => 4.3e11 * x,
    gamma: 6e23,
    runningMean: 0,
    runningVar: 1,
    meanLogits: [0, 0, 0],
    varLogits: [0, 0, 0],
  },
];

rangeTests(
  "logit dot products whose sums over rows pass float32's range give the reference's gradients",
  async (backend) => {
    const failures: string[] = [];
    for (const [i, spec] of SPECS.entries()) {
      const call = layerCall(spec, 7 + i);
      const { got, want } = await runBoth(call, backend);
      // The reference's logit gradients are finite: an infinity or NaN of a backend fails.
      for (const key of ["mean_weight", "var_weight"] as const) {
        assert.ok(want.grads[key].every(Number.isFinite), `${spec.what}: the reference's ${key}`);
      }
      try {
        assertRangeChecks(call, got, want);
      } catch (e) {
        failures.push(`${spec.what}: ${String(e).slice(0, 300)}`);
      }
    }
    assert.deepEqual(failures, []);
  },
);
