/**
 * Issue 10, point 1: the `bias` and `weight` gradients of a channel whose mean dot products
 * (gm (mu_k - mu), the importance-logit gradients' terms) lie far above them. WebGPU's backward
 * records carried dgamma and dbeta in the mean dots' unit (a power of two that puts the largest
 * field near 2^100), so where those dots passed ~2^226 of dbeta (gamma 1e29 over a loaded
 * `running_var` of 1e-22 and a `running_mean` 1e30 from the data), dbeta was flushed to 0, or
 * left to the rounding of a few rows' partial sums: 0 where the float64 reference has 4.8e-9,
 * 3.0e32 where it has -3.1e32 (tests/fuzz/nd_range_fuzz.ts seed 2678). Both layouts, every
 * backend, against the float64 reference backend.
 */
import { SwitchNorm1d, SwitchNorm3d } from "../mod.ts";
import type { BackendName } from "../backends/_backend.ts";
import { testEachBackend } from "./_backends.ts";
import { assertClose, assertCloseToScale, type Tolerance } from "./_close.ts";
import { GRAD } from "./_tolerances.ts";
import { type Case, makeCase, runCase } from "./fuzz/nd_range_fuzz.ts";

const f32 = (...v: number[]) => Float32Array.from(v);

/** dbias where dy's signs differ: float32 sums of dy are accurate to their size, not dbias's. */
const DBIAS_SCALED: Tolerance = {
  atol: 1e-4,
  rtol: 1e-4,
  why: "dbias is a float32 sum of dy over the channel: rounding ~1e-7 of sum |dy| (x sqrt of " +
    "the count), so |got - want| <= 1e-4 sum |dy| + 1e-4 |want| keeps GRAD's margin where the " +
    "terms cancel; a lost or wrong-signed partial sum is of the size of its terms and shows.",
};

/** Sums whose terms share one sign: relative, whatever their size. */
const ONE_SIGN: Tolerance = {
  atol: 0,
  rtol: GRAD.rtol,
  why: "a float32 sum of terms of one sign is accurate to ~1e-7 of itself per term added; " +
    "GRAD's rtol without its atol of 1e-4, which would pass a dbias of 4.8e-9 flushed to 0.",
};

/**
 * An evaluation on loaded running buffers of two channels, eps 0, the variance mixed from BN
 * alone (so s = 1 / sqrt(running_var), exactly): channel 0 has gamma 1e29 over running_var
 * 1e-22 and running_mean 1e30, so its rows' mean dots gm (mu_k - mu) ~ gamma s 1e30 sum(dy)
 * lie ~2^233 above dbeta = sum(dy); channel 1 is ordinary.
 */
async function evaluation(backend: BackendName, layout: "1d" | "nd") {
  const n = 4, m = layout === "1d" ? 1 : 6, k = layout === "1d" ? 2 : 3;
  const shape = layout === "1d" ? [n, 2] : [n, 2, 1, 1, m];
  const len = n * 2 * m;
  const layer = layout === "1d"
    ? new SwitchNorm1d(2, { backend, eps: 0 })
    : new SwitchNorm3d(2, { backend, eps: 0 });
  try {
    layer.loadStateDict({
      weight: f32(1e29, 1),
      bias: f32(0, 0),
      mean_weight: new Float32Array(k),
      // weights exactly 0 and 1 (BN), in float32 and float64 alike
      var_weight: Float32Array.from({ length: k }, (_, i) => i === k - 1 ? 1e30 : -1e30),
      running_mean: f32(1e30, 0),
      running_var: f32(1e-22, 1),
    });
    layer.train(false);
    const x = Float32Array.from({ length: len }, (_, i) => 1 + (i * 7 % 11));
    const dy = Float32Array.from({ length: len }, (_, i) => 1e-10 * (1 + (i % 3)));
    await layer.forward(x, shape, { keepForBackward: true });
    await layer.backward(dy);
    return { dWeight: layer.grads.weight.slice(), dBias: layer.grads.bias.slice() };
  } finally {
    layer.dispose();
  }
}

for (const layout of ["nd", "1d"] as const) {
  await testEachBackend(
    `layout "${layout}": the bias and weight gradients of a channel whose mean dot products ` +
      `are ~2^233 larger match the float64 reference`,
    async (backend) => {
      const got = await evaluation(backend, layout);
      const want = await evaluation("reference", layout);
      // dy > 0 and x - mu < 0 in channel 0: no cancellation in either sum.
      assertClose(got.dBias, want.dBias, ONE_SIGN, "bias gradient");
      assertClose(got.dWeight, want.dWeight, ONE_SIGN, "weight gradient");
    },
  );
}

/** Per channel, the sum of |dy| over its rows (evaluation and training use the same dy). */
function channelDyScale(k: Case): Float64Array {
  const [n, c] = k.shape, m = k.x.length / (n * c);
  const out = new Float64Array(c);
  for (let i = 0; i < k.dy.length; i++) out[Math.floor(i / m) % c] += Math.abs(k.dy[i]);
  return out;
}

// The fuzzer's examples (evaluations on loaded far running buffers, eps 0, SwitchNorm3d):
// 2678 gave dbias 3.0e32 where the reference has -3.1e32, 408 gave 0 for -1781, 1381 0 for 1.2e22.
for (const seed of [2678, 408, 1381]) {
  await testEachBackend(
    `the bias gradient of nd fuzzer seed ${seed} (mean dots far above it) matches the float64 ` +
      `reference to float32 sums of dy`,
    async (backend) => {
      const k = makeCase(seed);
      const got = await runCase(k, backend);
      const want = await runCase(k, "reference");
      const scale = channelDyScale(k);
      assertCloseToScale(got.Edbias, want.Edbias, scale, DBIAS_SCALED, "bias gradient");
      if (got.dbias) {
        assertCloseToScale(got.dbias, want.dbias, scale, DBIAS_SCALED, "bias gradient");
      }
    },
  );
}
