/**
 * dx within a factor 2 of float32's largest value (the float64 reference's dx from 1.7e38 to
 * 3.4e38) is the reference's value on WASM and WebGPU, not the infinity of its sign: the range
 * tests once excused WebGPU there (`dxMayOverflow`: "its three float32 terms can pass the limit on
 * the way"), and these calls are built so that the in-range float32 forms' terms would:
 * - a row whose first element (the shift K of layout "nd"'s dx map, dy gs + (x - K) B + A) lies as
 *   far below the mean as another element lies above it: (x - K) B is twice that element's dx;
 * - an evaluation on a running_mean 2^60 stds away: gv's dots pass float32's range;
 * - SwitchNorm1d's LN variance path, GvL 2 (x - mu_LN) before its division by C - 1;
 * - calls of random data whose gamma or dy is scaled so that the reference's largest |dx| lies in
 *   that window (both layouts, training and evaluation);
 * - and dy of +-3e38 whose running sums pass float32's range while dbias fits (the parameter
 *   gradients, the same class).
 * None of them reaches the in-range forms: every such row or element is routed to the wide
 * forms by the routing conditions that came later (NUMERICS.md, "dx near float32's largest
 * value"), whose terms are bounded in a unit of their own. Each call is held to the reference with
 * the range tests' judge (tests/_range_compare.ts), with no excuse for infinities.
 */
import assert from "node:assert/strict";
import {
  assertRangeChecks,
  type LayerCall,
  rangeTests,
  runBoth,
  runCall,
} from "./_range_compare.ts";
import { normal, rng } from "./_webgpu.ts";

const LOW = 1.7e38, HIGH = 3.4e38;

/** The largest finite |v| of `values` (0 for none). */
function largestFinite(values: ArrayLike<number>): number {
  let top = 0;
  for (let i = 0; i < values.length; i++) {
    const v = Math.abs(values[i]);
    if (Number.isFinite(v) && v > top) top = v;
  }
  return top;
}

/** Runs `call` on the reference and `backend`, checks dx is in the window, and judges. */
async function judgeNearMax(call: LayerCall, backend: "wasm" | "webgpu", what: string) {
  const { want, got } = await runBoth(call, backend);
  const top = largestFinite(want.dx);
  assert.ok(top >= LOW && top <= HIGH, `${what}: the reference's largest |dx| ${top}`);
  assertRangeChecks(call, got, want, what);
}

/**
 * SwitchNorm2d [1, 1, 1, m]: x[0] = -a, x[1] = a (a = sqrt(m / 2) 2^xs, half the variance), the
 * rest +-2^xs; dy +-1e12 by x's sign but 0 at the two outliers; gamma / std just below 2^80.
 * dx[1] = -gs xhat_1 mean(dy xhat) ~ -2.2e38 in training, and (x[1] - K) B, K = x[0], twice that.
 */
function farShiftRow(m: number, xs: number, training: boolean): LayerCall {
  const a = Math.sqrt(m / 2) * 2 ** xs;
  const x = Float32Array.from(
    { length: m },
    (_, j) => j === 0 ? -a : j === 1 ? a : (j % 2 ? 1 : -1) * 2 ** xs,
  );
  const dy = Float32Array.from({ length: m }, (_, j) => j < 2 ? 0 : 1e12 * Math.sign(x[j]));
  const std = 2 ** xs * Math.sqrt((2 * (a / 2 ** xs) ** 2 + m - 2) / m);
  return {
    layer: "2d",
    shape: [1, 1, 1, m],
    training,
    x,
    dy,
    scales: true,
    state: {
      weight: Float32Array.of(2 ** 80 * std * 0.999),
      bias: new Float32Array(1),
      mean_weight: new Float32Array(3),
      var_weight: new Float32Array(3),
      running_mean: new Float32Array(1),
      running_var: Float32Array.of(std * std),
    },
  };
}

rangeTests(
  "SwitchNorm2d: a row of 262144 whose first element lies as far below its mean as another above it gives the reference's dx of +-2.2e38 (training) and +-1.5e38 (evaluation)",
  async (backend) => {
    for (const xs of [0, 35]) {
      const call = farShiftRow(262144, xs, true);
      await judgeNearMax(call, backend, `x scale 2^${xs}, training`);
      // The evaluation's dx is 1.46e38: held to the reference too, below the window.
      const { want, got } = await runBoth({ ...call, training: false }, backend);
      assertRangeChecks(call, got, want, `x scale 2^${xs}, evaluation`);
    }
  },
);

/**
 * An evaluation of SwitchNorm2d [1, 1, 1, 8], IN and BN mixed (BN's mean weight ~0.99), on a
 * running_mean 2^60 stds away (std 2^30), gamma 2^110, dy ~2^18: y is -Infinity, dx -2.9e38 for
 * x[1] (x[0], the row's shift, lies 4 stds from it).
 */
function farRunningMean(): LayerCall {
  const s = 2 ** 30, m = 8;
  return {
    layer: "2d",
    shape: [1, 1, 1, m],
    training: false,
    partial: true,
    x: Float32Array.from(
      { length: m },
      (_, j) => s * (j === 0 ? -2 : j === 1 ? 2 : Math.sin(j * 2.1) * 0.5),
    ),
    dy: Float32Array.from({ length: m }, (_, j) => 2 ** 18 * (j === 0 ? 0 : 1 + 0.3 * Math.cos(j))),
    scales: true,
    state: {
      weight: Float32Array.of(2 ** 110),
      bias: new Float32Array(1),
      mean_weight: Float32Array.of(0, -1e30, 5),
      var_weight: Float32Array.of(0, -1e30, 0),
      running_mean: Float32Array.of(2 ** 60),
      running_var: Float32Array.of(s * s),
    },
  };
}

rangeTests(
  "SwitchNorm2d: an evaluation on a running_mean 2^60 stds from the data gives the reference's dx of -2.9e38",
  (backend) => judgeNearMax(farRunningMean(), backend, "evaluation"),
);

/**
 * SwitchNorm1d [2, 1024] on LN alone: each sample +1 and -1 at channels 0 and 1 beside values of
 * 1e-3, dy 1e12 at (0, 1) beside dy ~1e3, gamma `gamma`: GvL 2 (x - mu_LN) passes float32's range
 * before its division by C - 1.
 */
function lnVariancePath(gamma: number, training: boolean): LayerCall {
  const c = 1024;
  return {
    layer: "1d",
    shape: [2, c],
    training,
    x: Float32Array.from(
      { length: 2 * c },
      (_, i) => i % c === 0 ? 1 : i % c === 1 ? -1 : 1e-3 * Math.sin(i * 1.7),
    ),
    dy: Float32Array.from({ length: 2 * c }, (_, i) => i === 1 ? 1e12 : 1e3 * Math.cos(i)),
    scales: true,
    state: {
      weight: new Float32Array(c).fill(gamma),
      bias: new Float32Array(c),
      mean_weight: Float32Array.of(0, -1e30),
      var_weight: Float32Array.of(0, -1e30),
      running_mean: new Float32Array(c),
      running_var: new Float32Array(c).fill(1),
    },
  };
}

rangeTests(
  "SwitchNorm1d: the LN variance path of 1024 channels gives the reference's dx of 1.7e38 to 3.3e38, in training and evaluation",
  async (backend) => {
    for (const gamma of [1.6e25, 2.5e25, 2.9e25]) {
      for (const training of [true, false]) {
        await judgeNearMax(
          lnVariancePath(gamma, training),
          backend,
          `gamma ${gamma}, ${training ? "training" : "evaluation"}`,
        );
      }
    }
  },
);

/**
 * A call of random data (layout nd or 1d, rows of 4 to 100, x scaled 10^-30 .. 10^30 with an
 * offset or not, logits of either sign, beta 0 or ~1e38) whose gamma, or dy, is then scaled so
 * that the reference's largest |dx| is `target` (1.8e38 .. 3.3e38); undefined where that scale
 * does not fit float32.
 */
async function aimedCall(seed: number): Promise<LayerCall | undefined> {
  const r = rng(seed);
  const f32 = Math.fround;
  const layer = r() < 0.5 ? "1d" : "2d";
  const n = 1 + Math.floor(r() * 4), c = 1 + Math.floor(r() * 3);
  const m = layer === "1d" ? 1 : [4, 5, 8, 33, 100][Math.floor(r() * 5)];
  const len = n * c * m, sx = 10 ** Math.floor(r() * 60 - 30);
  const off = r() < 0.3 ? sx * 10 ** Math.floor(r() * 8) * normal(r) : 0;
  const dyScale = 10 ** Math.floor(r() * 50 - 12), spike = r() < 0.5;
  const x = Float32Array.from({ length: len }, () => off + sx * normal(r));
  const dy = Float32Array.from(
    { length: len },
    (_, i) => dyScale * (spike && i % 3 === 0 ? 5 * normal(r) : normal(r)),
  );
  const logits = () =>
    Float32Array.from({ length: layer === "1d" ? 2 : 3 }, () => r() < 0.2 ? -20 : normal(r) * 2);
  const state: Record<string, Float32Array> = {
    weight: Float32Array.from({ length: c }, () => (r() < 0.5 ? -1 : 1) * (0.5 + r())),
    bias: Float32Array.from(
      { length: c },
      () => r() < 0.5 ? 0 : f32(Math.max(-3e38, Math.min(3e38, 1e38 * normal(r)))),
    ),
    mean_weight: logits(),
    var_weight: logits(),
    running_mean: Float32Array.from({ length: c }, () => f32(off + sx * normal(r))),
    running_var: Float32Array.from(
      { length: c },
      () => Math.min(3e38, sx * sx * (0.1 + r() * 3)),
    ),
  };
  const training = r() < 0.6;
  const call: LayerCall = {
    layer,
    shape: layer === "1d" ? [n, c] : [n, c, 1, m],
    training,
    x,
    dy,
    state,
    scales: true,
  };
  const top = largestFinite((await runCall(call, "reference")).dx);
  if (!(top > 0)) return undefined;
  const target = 1.8e38 + r() * 1.5e38, k = target / top;
  if (r() < 0.5) {
    const scaled = Float32Array.from(dy, (d) => f32(d * k));
    return scaled.every(Number.isFinite) ? { ...call, dy: scaled } : undefined;
  }
  const weight = Float32Array.from(state.weight, (g) => f32(g * k));
  return weight.every((g) => Number.isFinite(g) && g !== 0)
    ? { ...call, state: { ...state, weight } }
    : undefined;
}

rangeTests(
  "calls of random data scaled so that the reference's largest |dx| lies from 1.8e38 to 3.3e38 give the reference's dx and gradients",
  async (backend) => {
    let judged = 0;
    for (let seed = 1; seed <= 90; seed++) {
      const call = await aimedCall(seed);
      if (!call) continue;
      const { want, got } = await runBoth(call, backend);
      const top = largestFinite(want.dx);
      // (WebGPU's reference takes weights below 2^-252 as 0, which can move dx out of the window.)
      if (top < LOW || top > HIGH) continue;
      assertRangeChecks(call, got, want, `seed ${seed} (${call.layer}, ${call.shape})`);
      judged++;
    }
    assert.ok(judged >= 40, `${judged} calls judged`);
  },
);

/**
 * dy of +-3e38 in a pattern whose running sums pass float32's range while each channel's total
 * (dbias) fits: 2.0e38 in layout nd, 5.0e37 in layout 1d.
 */
function cancellingHugeDy(layer: "1d" | "2d", training: boolean): LayerCall {
  const len = layer === "1d" ? 16 : 32;
  const pattern = layer === "1d"
    ? [3e38, 3e38, 3e38, 3e38, -3e38, -3e38, -3e38, -2.5e38]
    : [3e38, 3e38, -3e38, -2.5e38];
  const at = (i: number) => layer === "1d" ? pattern[Math.floor(i / 2) % 8] : pattern[i % 4];
  const k = layer === "1d" ? 2 : 3;
  return {
    layer,
    shape: layer === "1d" ? [8, 2] : [2, 2, 1, 8],
    training,
    x: Float32Array.from({ length: len }, (_, i) => Math.sin(i * 1.3) + 0.1 * i),
    dy: Float32Array.from({ length: len }, (_, i) => at(i)),
    scales: true,
    state: {
      weight: Float32Array.of(1, -0.5),
      bias: new Float32Array(2),
      mean_weight: Float32Array.of(0.3, 0.1, 0.2).subarray(0, k),
      var_weight: Float32Array.of(0, 0.5, 0.1).subarray(0, k),
      running_mean: Float32Array.of(0.5, 1),
      running_var: Float32Array.of(2, 3),
    },
  };
}

rangeTests(
  "dy of +-3e38 whose running sums pass float32's range gives the reference's finite dbias, dgamma and dx",
  async (backend) => {
    for (const layer of ["2d", "1d"] as const) {
      for (const training of [true, false]) {
        const call = cancellingHugeDy(layer, training);
        const { want, got } = await runBoth(call, backend);
        const what = `${layer}, ${training ? "training" : "evaluation"}`;
        assert.ok(
          want.grads.bias.every((v) => Number.isFinite(v) && Math.abs(v) > 4e37),
          `${what}: the reference's dbias ${want.grads.bias}`,
        );
        assertRangeChecks(call, got, want, what);
      }
    }
  },
);
