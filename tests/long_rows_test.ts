/**
 * Issue 10, point 2: statistics of long rows. SwitchNorm3d on [1, 3, 1, 1, 4e6] (one sample, so
 * the IN, LN and BN means differ only by ~std / sqrt(M) = 6e-4 and their variances by
 * ~std^2 sqrt(2 / M) = 7e-4 relative), one training forward and backward on every backend,
 * against PyTorch float64 (tests/vectors/summaries/sn3d_long_rows.json, `deno task gen:vectors`).
 * The importance-logit gradients are differences of IN, LN and BN means and variances, so
 * statistics that are only float32-accurate (6e-8 relative) miss them by 1e-3 or more. A second
 * backward takes dy of one sign: sum(dy) ~ M then multiplies any error of the mean, or any
 * rounding of x - mu that goes the same way for many elements, into dgamma and var_weight.
 * x and dy (12M floats each) are drawn here from the generator's seeded stream.
 */
import { SwitchNorm1d, SwitchNorm2d, SwitchNorm3d } from "../mod.ts";
import type { BackendName } from "../backends/_backend.ts";
import { seededRandom } from "../examples/_data.ts";
import { assertClose } from "./_close.ts";
import { testEachBackend } from "./_backends.ts";
import type { Tolerance } from "./_close.ts";
import { GRAD, RUNNING, Y } from "./_tolerances.ts";

const summary = JSON.parse(
  Deno.readTextFileSync(new URL("./vectors/summaries/sn3d_long_rows.json", import.meta.url)),
);
const shape: number[] = summary.shape;
const count = shape.reduce((a, b) => a * b, 1);

function draw(seed: number, lo: number, width: number): Float32Array {
  const random = seededRandom(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = lo + width * random();
  return out;
}

const x = draw(summary.x_seed, -1, 4);
const dy = draw(summary.dy_seed, -1, 2);
const dyOneSign = draw(summary.dy_seed, 0, 1);
const head: number = summary.x_head.length;

Deno.test("the long-row test draws the same x and dy as the PyTorch summary", () => {
  assertClose(x.subarray(0, head), summary.x_head, { atol: 0, rtol: 0, why: "same floats" }, "x");
  assertClose(dy.subarray(0, head), summary.dy_head, { atol: 0, rtol: 0, why: "same" }, "dy");
});

/**
 * The logit and gamma gradients at the accuracy of float64 statistics: WASM's (float64 row
 * statistics) is 7e-7 on var_weight here. Float32 variances (6e-8 relative) leave var_weight's
 * gradient, a difference of variances 7e-4 apart, ~1e-3 off; WebGPU keeps long rows' variances
 * as float32 pairs. 1e-5 relative is ~10x the worst seen (WebGPU 7e-7 on var_weight, 4e-7 on
 * dgamma; mean_weight 4e-6 through row means accurate to ~3e-9, below).
 */
const LONG_GRAD: Tolerance = {
  atol: 0,
  rtol: 1e-5,
  why: "statistics of float64 accuracy: differences of variances 7e-4 apart keep ~1e-6",
};

/**
 * dy of one sign: dgamma = s sum dy (x - mu) with sum |dy (x - mu)| ~ 2000 |dgamma| here, so an
 * error e in mu costs 2e6 e s, and a per-element rounding of x - mu that goes one way for a
 * binade (a centre with bits finer than x's) ~3e-5 relative; var_weight takes dgamma's error
 * through dL/dvar. Seen: WASM 2e-7 on dgamma, 3e-7 on var_weight (8e-5 and 3.5e-5 with the fine
 * centre); WebGPU 1.6e-5 and 7.8e-6 (9e-5 and 1.5e-3 before its long-row pairs), its row means'
 * float32 segment sums leaving ~3e-9 of mu (the smallest dgamma, 2.5x below this bound).
 */
const ONE_SIGN_GRAD: Tolerance = {
  atol: 0,
  rtol: 4e-5,
  why: "sum(dy) ~ 2e6 multiplies a row mean's 3e-9 into dgamma; float64 statistics give 1e-7",
};

async function longRows(backend: BackendName): Promise<void> {
  const e = summary.expect;
  const layer = new SwitchNorm3d(3, { backend });
  layer.train(true);
  const y = await layer.forward(x, shape, { keepForBackward: true });
  assertClose(y.subarray(0, head), e.y_head, Y, "y, first values");
  assertClose(y.subarray(count - head), e.y_tail, Y, "y, last values");
  assertClose(layer.running_mean, e.running_mean, RUNNING, "running_mean");
  assertClose(layer.running_var, e.running_var, RUNNING, "running_var");
  const dx = await layer.backward(dy);
  assertClose(dx.subarray(0, head), e.dx_head, GRAD, "dx, first values");
  assertClose(dx.subarray(count - head), e.dx_tail, GRAD, "dx, last values");
  for (const [name, want] of Object.entries(e.grads)) {
    const got = layer.grads[name as keyof typeof layer.grads];
    assertClose(got, want as number[], GRAD, `grad of ${name}`);
  }
  assertClose(layer.grads.var_weight, e.grads.var_weight, LONG_GRAD, "var_weight, tightly");
  assertClose(layer.grads.weight, e.grads.weight, LONG_GRAD, "dgamma, tightly");
  layer.dispose();
}

async function longRowsOneSign(backend: BackendName): Promise<void> {
  const e = summary.expect_dy_one_sign;
  const layer = new SwitchNorm3d(3, { backend });
  layer.train(true);
  await layer.forward(x, shape, { keepForBackward: true });
  await layer.backward(dyOneSign);
  for (const [name, want] of Object.entries(e.grads)) {
    const got = layer.grads[name as keyof typeof layer.grads];
    assertClose(got, want as number[], GRAD, `grad of ${name}`);
  }
  assertClose(layer.grads.var_weight, e.grads.var_weight, ONE_SIGN_GRAD, "var_weight, tightly");
  assertClose(layer.grads.weight, e.grads.weight, ONE_SIGN_GRAD, "dgamma, tightly");
  layer.dispose();
}

await testEachBackend(
  "SwitchNorm3d on rows of 4e6 floats matches PyTorch in y, buffers, dx and every gradient",
  longRows,
);

await testEachBackend(
  "SwitchNorm3d on rows of 4e6 floats with dy of one sign keeps dgamma and var_weight to 4e-5",
  longRowsOneSign,
);

/**
 * Rows of 2e5 and 1e5 floats on a common offset of 8e6 and 1.6e7 (spread +-1, channels 1e-3
 * apart), dy of one sign, against the same call on x less the offset (exact in float32 here; SN
 * is shift-invariant): the logit gradients are differences a_k - a_j of dot products
 * a_k = sum gm mu_k ~ offset sum gm ~ 1e13, which a float64 a_k holds only to ~1e-3, where they
 * are ~0.1 (attack helper-82, at [1, 3, 1, 1, 1.5e6] on 1e6: WASM 2x, the float64 reference
 * itself 4x `mean_weight`'s tolerance, WebGPU, which took its dot products about the mixed mean,
 * 0.05x). Every backend now forms them about a centre near the data and returns the common part
 * apart (BackwardResult.meanDotsOffset); the reference works on x less a float32 centre where the
 * data's offset is over 1024 times their spread.
 */
await testEachBackend(
  "long rows on a common offset of 8e6 or 1.6e7 give every parameter gradient of the data without it",
  async (backend) => {
    for (const [m, offset, oneD] of [[200000, 8e6, 0], [100000, 1.6e7, 0], [100000, 1.6e7, 1]]) {
      const random = seededRandom(4242);
      const x = new Float32Array(3 * m), dy = new Float32Array(3 * m);
      for (let c = 0; c < 3; c++) {
        for (let i = 0; i < m; i++) {
          x[c * m + i] = offset + c * 1e-3 + (random() * 2 - 1);
          dy[c * m + i] = 0.5 + random();
        }
      }
      // SwitchNorm1d: the same floats as [m, 3] (columns 1e-3 apart; the reference 7.3x, WASM
      // 2.5x before).
      const grads = async (b: BackendName, data: Float32Array) => {
        const layer = oneD
          ? new SwitchNorm1d(3, { backend: b })
          : new SwitchNorm3d(3, { backend: b });
        layer.train(true);
        const dims = oneD ? [m, 3] : [1, 3, 1, 1, m];
        await layer.forward(oneD ? transposed(data, m) : data, dims, { keepForBackward: true });
        await layer.backward(oneD ? transposed(dy, m) : dy);
        const g = { ...layer.grads };
        layer.dispose();
        return g;
      };
      const want = await grads("reference", x.map((v) => v - offset));
      const got = await grads(backend, x);
      const what = `${oneD ? "SwitchNorm1d " : ""}m ${m}, offset ${offset}`;
      // SwitchNorm1d's dgamma on WASM was 1.6x its tolerance at 1.6e7: its BN means, merged
      // over blocks of 64 rows as themselves, were ~3 float64 ulps (1e-8) off, and dgamma sums
      // dy xhat over 1e5 such elements of a column (they are merged about a centre now).
      for (const name of ["mean_weight", "var_weight", "weight", "bias"] as const) {
        assertClose(got[name], want[name], GRAD, `${what}: grad of ${name}`);
      }
      // The reference, in float64 about its centre, is the shifted call's to float64 rounding.
      const FLOAT64: Tolerance = { atol: 1e-9, rtol: 1e-9, why: "float64 sums of 6e5 terms" };
      if (backend === "reference") {
        assertClose(got.mean_weight, want.mean_weight, FLOAT64, `${what}: mean_weight, tightly`);
      }
    }
  },
);

/** [3, m] rows as [m, 3] columns. */
function transposed(v: Float32Array, m: number): Float32Array {
  return Float32Array.from({ length: v.length }, (_, i) => v[(i % 3) * m + Math.floor(i / 3)]);
}

await testEachBackend(
  "a sparse layer on a common offset of 1e6 gives the logit gradients of the data without it",
  async (backend) => {
    // The layer took the offset of the mean dots (~1e13) times sparsestmax's Jacobian of a vector
    // of ones, 0 in exact arithmetic (its weights sum to 1) but ~1e-16 by rounding:
    // `mean_weight`'s gradient 6.7x its tolerance on every backend (attack helper-84; 6x before
    // the centred dots). Data 1e6 + N(0, 0.12), dy of one sign, radius 0.2 (inside the sphere).
    const random = seededRandom(5), shape = [2, 3, 128, 128], length = 2 * 3 * 128 * 128;
    const normal = () =>
      Math.sqrt(-2 * Math.log(Math.max(random(), 1e-12))) * Math.cos(2 * Math.PI * random());
    const x = new Float32Array(length), dy = new Float32Array(length);
    for (let i = 0; i < length; i++) {
      x[i] = 1e6 + 0.12 * normal();
      dy[i] = 1 + 0.3 * random();
    }
    const state = {
      mean_weight: Float32Array.of(0.1, 0, -0.05),
      var_weight: Float32Array.of(0.02, 0.1, -0.03),
    };
    const grads = async (b: BackendName, data: Float32Array) => {
      const layer = new SwitchNorm2d(3, { backend: b, sparse: true });
      layer.loadStateDict(state, { strict: false });
      layer.radius = 0.2;
      layer.train(true);
      await layer.forward(data, shape, { keepForBackward: true });
      await layer.backward(dy);
      const g = { ...layer.grads };
      layer.dispose();
      return g;
    };
    const want = await grads("reference", x.map((v) => v - 1e6));
    const got = await grads(backend, x);
    for (const name of ["mean_weight", "var_weight", "weight", "bias"] as const) {
      assertClose(got[name], want[name], GRAD, `grad of ${name}`);
    }
  },
);
