/**
 * Ordinary data under a dy with a mean (the standard probe y.sum().backward(), dy = 1; a loss with
 * a sum or mean term): every row's dL/dmu and sum dy (x - mu) then have one sign, so the
 * backward's sums over rows carry each row mean's own error times M instead of cancelling it.
 * WebGPU's float32 row means (Welford, rounding at every update) were ~1e-6 of the std off:
 * `mean_weight`'s gradient at [8, 256, 28, 28] came out 7% off (91x its tolerance) and dgamma
 * 2.5x; with x offset by 1e5 over rows of 262144 floats, dgamma 13.6x (attack helper-61). The
 * plain tolerances (tests/_tolerances.ts) hold here: the data are not scaled.
 */
import { seededRandom } from "../examples/_data.ts";
import { assertOutputsClose, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";
import { GRAD, Y } from "./_tolerances.ts";

/** Standard-normal draws of `seed` (Box-Muller). */
function normal(seed: number): () => number {
  const r = seededRandom(seed);
  return () => Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r());
}

/**
 * A SwitchNorm2d's training step on x = offset + N(0, 1), then dy, drawn from one stream of
 * `seed`; `state` (drawn from the stream after them) is loaded over the defaults.
 */
function step(
  shape: number[],
  offset: number,
  dy: (g: () => number) => number,
  seed: number,
  state?: (g: () => number) => Record<string, Float32Array>,
): LayerCall {
  const g = normal(seed), size = shape.reduce((a, b) => a * b);
  const x = Float32Array.from({ length: size }, () => offset + g());
  const dyValues = Float32Array.from({ length: size }, () => dy(g));
  return {
    layer: "2d",
    shape,
    training: true,
    x,
    dy: dyValues,
    state: state?.(g),
    partial: true,
  };
}

rangeTests(
  "y.sum()'s gradients (dy = 1) on standard-normal data match the reference",
  async (backend) => {
    for (const shape of [[8, 256, 28, 28], [64, 16, 32, 32]]) {
      const { want, got } = await runBoth(step(shape, 0, () => 1, 1), backend);
      assertOutputsClose(got, want, { what: `[${shape}]`, y: Y, dx: GRAD, grads: GRAD });
    }
  },
);

rangeTests(
  "SwitchNorm1d's y.sum() gradients on standard-normal data match the reference",
  async (backend) => {
    // WebGPU's tile lines of 32 values took their means as float32 sums beside K, ~3e-8 of the
    // std off each: mean_weight's gradient 2.9x its tolerance at [4096, 256].
    const g = normal(7), shape = [4096, 256], size = 4096 * 256;
    const call: LayerCall = {
      layer: "1d",
      shape,
      training: true,
      x: Float32Array.from({ length: size }, g),
      dy: new Float32Array(size).fill(1),
    };
    const { want, got } = await runBoth(call, backend);
    assertOutputsClose(got, want, { y: Y, dx: GRAD, grads: GRAD });
  },
);

rangeTests(
  "gradients under dy with a mean of 1 match the reference on ordinary trained parameters",
  async (backend) => {
    const c = 16;
    // The attack's seeds whose gradients were 2.2x and 2.0x their tolerance off on WebGPU.
    for (const seed of [16, 18]) {
      const state = (g: () => number) => ({
        weight: Float32Array.from({ length: c }, () => 1 + 0.2 * g()),
        bias: Float32Array.from({ length: c }, () => 0.2 * g()),
        mean_weight: Float32Array.from({ length: 3 }, g),
        var_weight: Float32Array.from({ length: 3 }, g),
      });
      const call = step([8, c, 32, 32], 0.5, (g) => 1 + g(), seed, state);
      const { want, got } = await runBoth(call, backend);
      assertOutputsClose(got, want, { what: `seed ${seed}`, y: Y, dx: GRAD, grads: GRAD });
    }
  },
);

rangeTests(
  "dgamma under dy of one sign matches the reference on channels of 2^20 floats with an offset",
  async (backend) => {
    // Rows of 262144 floats: several segments each on WebGPU (sn_row_merge, and the backward's
    // sums about the 12-bit cut of the mean).
    for (const offset of [1000, 1e5]) {
      const call = step([4, 1, 512, 512], offset, (g) => 1 + 0.3 * g(), 3);
      const { want, got } = await runBoth(call, backend);
      assertOutputsClose(got, want, { what: `offset ${offset}`, y: Y, dx: GRAD, grads: GRAD });
    }
  },
);

rangeTests(
  "dgamma under dy = 1 is ~0 where the mean mixing converged to IN, on rows of 2^20 with an offset",
  async (backend) => {
    // sum_i (x - mu_in) is 0 per row: WebGPU's long rows took (mu - c) S1 with mu - c rounded to
    // one float32 (~0.1, 4e-9 off; S1 = 2^20), dgamma 5e-3 where it is ~1e-7 (52x; attack
    // helper-62).
    const state = () => ({ mean_weight: Float32Array.of(30, 0, 0) });
    const call = { ...step([1, 2, 16, 256, 256], 1000, () => 1, 1, state), layer: "3d" as const };
    const { want, got } = await runBoth(call, backend);
    assertOutputsClose(got, want, { y: Y, dx: GRAD, grads: GRAD });
    // The same with gamma 1e36 over a std of 1e-3 (gamma / std beyond float32: WebGPU's wide rows,
    // which took (mu - c) S1 off in float32 too): x = 1 + 1e-3 N(0, 1).
    const g = normal(2), size = 2 ** 21;
    const wide: LayerCall = {
      layer: "3d",
      shape: [1, 2, 16, 256, 256],
      training: true,
      x: Float32Array.from({ length: size }, () => 1 + 1e-3 * g()),
      dy: new Float32Array(size).fill(1),
      state: { mean_weight: Float32Array.of(30, 0, 0), weight: Float32Array.of(1e36, 1e36) },
      partial: true,
      scales: true,
    };
    const w = await runBoth(wide, backend);
    assertOutputsClose(w.got, w.want, { what: "gamma 1e36", grads: GRAD, gradKeys: ["weight"] });
  },
);
