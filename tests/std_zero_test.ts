/**
 * Issue 10, point 1: rows whose mixed std is 0 (eps 0 with variance 0 in every term of variance
 * weight: an evaluation on a loaded `running_var` of 0, a constant row under IN's variance, a
 * constant batch column in training). The float64 reference divides by that 0: y is the
 * infinity of the sign of gamma (x - mu), and dgamma = sum dy ((x - mu) s) with s = +Infinity is
 * an infinity where every term of a channel's rows of std 0 is an infinity of one sign, NaN where
 * one term is 0 * Inf (dy = 0, x = mu) or infinities of both signs meet. dx and the logit
 * gradients of such samples are NaN (0 * Inf in their chain rule), dbeta and the other channels
 * stay finite. Every backend must give the reference's values: the same kind (NaN, +-Infinity)
 * where not finite, the shared tolerances where finite. Cases avoid x equal to the mixed mean
 * in exact arithmetic where the reference's mean is formed from rounded mixing weights (0 / 0:
 * undefined, README, Numerics): their mixing weights are 0 and 1 (logits +-1e30), or means lie
 * apart.
 */
import assert from "node:assert/strict";
import { SwitchNorm1d, SwitchNorm2d, SwitchNorm3d } from "../mod.ts";
import type {
  BatchSync,
  LayerParams,
  NormProblem,
  RunningUpdate,
  SavedForward,
} from "../backends/_backend.ts";
import { loadWebGpuBackend } from "../backends/webgpu.ts";
import { makeBackwardPlan } from "../backends/_webgpu_backward_plan.ts";
import { ReferenceBackend } from "../backends/reference.ts";
import { makeCase, runCase } from "./fuzz/nd_range_fuzz.ts";
import { check, make } from "./fuzz/attack_fuzz.ts";
import { rangeTests, runBoth } from "./_range_compare.ts";
import { assertClose, type Tolerance } from "./_close.ts";
import { webgpuTest } from "./_webgpu.ts";
import { GRAD, Y } from "./_tolerances.ts";

type Backend = "reference" | "wasm" | "webgpu";

interface Case {
  readonly what: string;
  readonly layer: "1d" | "2d" | "3d";
  readonly state: Record<string, Float32Array>;
  readonly x: Float32Array;
  readonly shape: number[];
  readonly dy: Float32Array;
  readonly training: boolean;
}

const f32 = (...v: number[]) => Float32Array.from(v);
/** Logits that give weights exactly 1 at `at` and 0 elsewhere, in float32 and float64 alike. */
function only(at: number, k: number): Float32Array {
  return Float32Array.from({ length: k }, (_, i) => i === at ? 1e30 : -1e30);
}
/** n copies of v. */
function fill(n: number, v: number): number[] {
  return Array.from({ length: n }, () => v);
}
/** A long row (several of WebGPU's segments of 1024 or 4096 floats): 1, 2, 3, ... cycled. */
function ramp(n: number): number[] {
  return Array.from({ length: n }, (_, i) => 1 + (i % 7));
}

/** The float32 `ulps` steps of its bits from v (v > 0). */
function nextUlps(v: number, ulps: number): number {
  const u = new Uint32Array(Float32Array.of(v).buffer);
  u[0] += ulps;
  return new Float32Array(u.buffer)[0];
}

const LONG = 9000;

const CASES: readonly Case[] = [
  {
    what: "evaluation on running_mean 0 and running_var 0 under BN alone",
    layer: "2d",
    state: {
      weight: f32(1),
      bias: f32(0),
      mean_weight: only(2, 3),
      var_weight: only(2, 3),
      running_mean: f32(0),
      running_var: f32(0),
    },
    x: f32(1, 2, 3, 4),
    shape: [1, 1, 2, 2],
    dy: f32(1, 1, 1, 1),
    training: false,
  },
  {
    what: "evaluation on running_var 0 in one channel of two, dy of one sign",
    layer: "2d",
    state: {
      weight: f32(1, 1),
      bias: f32(0, 0),
      mean_weight: only(2, 3),
      var_weight: only(2, 3),
      running_mean: f32(0.5, 0),
      running_var: f32(0, 1),
    },
    x: f32(1, 2, 3, 4, 1, 2, 3, 4),
    shape: [1, 2, 2, 2],
    dy: f32(1, 1, 1, 1, 1, 2, 3, 4),
    training: false,
  },
  {
    what: "evaluation on running_var 0 over constant rows of two samples, gamma 2",
    layer: "2d",
    state: {
      weight: f32(2),
      bias: f32(0),
      mean_weight: only(2, 3),
      var_weight: only(2, 3),
      running_mean: f32(1),
      running_var: f32(0),
    },
    x: f32(3, 3, 3, 3, 5, 5, 5, 5),
    shape: [2, 1, 2, 2],
    dy: f32(1, 2, 3, 4, 1, 1, 1, 1),
    training: false,
  },
  {
    what: "evaluation on running_var 0 with gamma 0 and with gamma -1 (dgamma does not see gamma)",
    layer: "2d",
    state: {
      weight: f32(0, -1),
      bias: f32(1, 0),
      mean_weight: only(2, 3),
      var_weight: only(2, 3),
      running_mean: f32(5, 5),
      running_var: f32(0, 0),
    },
    x: f32(1, 2, 3, 4, 1, 2, 3, 4),
    shape: [1, 2, 2, 2],
    dy: f32(1, 2, 3, 4, 1, 1, 1, 1),
    training: false,
  },
  {
    what: "evaluation on running_var 0 with equal mean weights, the mean away from every x",
    layer: "2d",
    state: {
      weight: f32(1),
      bias: f32(0),
      mean_weight: f32(0, 0, 0),
      var_weight: only(2, 3),
      running_mean: f32(-3),
      running_var: f32(0),
    },
    x: f32(1, 2, 3, 4),
    shape: [1, 1, 2, 2],
    dy: f32(-1, -2, -3, -0.5),
    training: false,
  },
  {
    what: "evaluation on running_var 0 with a dy of 0 in one channel (NaN) and not in the other",
    layer: "2d",
    state: {
      weight: f32(1, 1),
      bias: f32(0, 0),
      mean_weight: only(2, 3),
      var_weight: only(2, 3),
      running_mean: f32(0, 0),
      running_var: f32(0, 0),
    },
    x: f32(1, 2, 3, 4, 1, 2, 3, 4),
    shape: [1, 2, 2, 2],
    dy: f32(1, 0, 1, 1, 1, 1, 1, 1),
    training: false,
  },
  {
    what: "a channel with a row of std 0 in one sample and a NaN in the other sample's row",
    layer: "2d",
    state: {
      weight: f32(1),
      bias: f32(0),
      mean_weight: only(2, 3),
      var_weight: only(2, 3),
      running_mean: f32(0),
      running_var: f32(0),
    },
    x: f32(1, 2, 3, 4, 1, NaN, 3, 4),
    shape: [2, 1, 2, 2],
    dy: f32(1, 1, 1, 1, 1, 1, 1, 1),
    training: false,
  },
  {
    what: "training: a constant row under IN's variance and LN's mean, dy of one sign",
    layer: "2d",
    state: {
      weight: f32(1, 1),
      bias: f32(0, 0),
      mean_weight: only(1, 3),
      var_weight: only(0, 3),
    },
    x: f32(3, 3, 3, 3, 1, 2, 9, 4),
    shape: [1, 2, 2, 2],
    dy: f32(1, 1, 1, 1, 1, 2, 3, 4),
    training: true,
  },
  {
    what: "training: a constant batch column under BN's variance and LN's mean",
    layer: "2d",
    state: {
      weight: f32(1, 1),
      bias: f32(0, 0),
      mean_weight: only(1, 3),
      var_weight: only(2, 3),
    },
    x: f32(3, 3, 3, 3, 1, 2, 9, 4, 3, 3, 3, 3, 2, 5, 7, 4),
    shape: [2, 2, 2, 2],
    dy: f32(-1, -1, -2, -1, 1, 2, 3, 4, -1, -3, -1, -1, 4, 3, 2, 1),
    training: true,
  },
  // SwitchNorm1d under LN's variance alone: a sample of one value has std 0 whatever BN's
  // (WebGPU listed only BN channels of variance 0 for its std-0 pass: y NaN for +-Infinity,
  // attack helper-88). The means mix LN's and BN's half and half, away from every x.
  {
    what: "SwitchNorm1d evaluation: samples of one value under LN's variance alone",
    layer: "1d",
    state: {
      mean_weight: f32(0, 0),
      var_weight: only(0, 2),
      running_mean: f32(5, 0, 0),
      running_var: f32(1e-6, 1, 1),
    },
    x: f32(...fill(12, 1)),
    shape: [4, 3],
    dy: f32(1, -1, 2, 0.5, 1, -2, 3, 1, 1, -1, -1, 2),
    training: false,
  },
  {
    what: "SwitchNorm1d training: samples of one value each under LN's variance alone",
    layer: "1d",
    state: { mean_weight: f32(0, 0), var_weight: only(0, 2) },
    x: f32(...fill(3, 1), ...fill(3, 2), ...fill(3, 4), ...fill(3, 8)),
    shape: [4, 3],
    dy: f32(1, -1, 2, 0.5, 1, -2, 3, 1, 1, -1, -1, 2),
    training: true,
  },
  {
    what: "evaluation on running_var 0 over rows longer than one segment",
    layer: "3d",
    state: {
      weight: f32(1, 1),
      bias: f32(0, 0),
      mean_weight: only(2, 3),
      var_weight: only(2, 3),
      running_mean: f32(0, 0),
      running_var: f32(0, 0),
    },
    x: f32(...ramp(LONG), ...ramp(LONG)),
    shape: [1, 2, 1, 1, LONG],
    // Channel 1: one dy of 0 in a late segment (NaN).
    dy: f32(...fill(LONG, 1), ...fill(LONG - 10, 1), 0, ...fill(9, 1)),
    training: false,
  },
  {
    what: "evaluation on running_var 0 with dy beyond 2^40 (dy in units)",
    layer: "2d",
    state: {
      weight: f32(1),
      bias: f32(0),
      mean_weight: only(2, 3),
      var_weight: only(2, 3),
      running_mean: f32(0),
      running_var: f32(0),
    },
    x: f32(1, 2, 3, 4),
    shape: [1, 1, 2, 2],
    dy: f32(1e20, 3e20, 1e20, 2e20),
    training: false,
  },
  {
    what: "evaluation on running_var 0 over data of 1e30 and of 1e-30 (scaled rows)",
    layer: "2d",
    state: {
      weight: f32(1, 1),
      bias: f32(0, 0),
      mean_weight: only(2, 3),
      var_weight: only(2, 3),
      running_mean: f32(0, 0),
      running_var: f32(0, 0),
    },
    // (Each sample's other row ordinary: a sample spanning 1e30 and 1e-30 is another matter,
    // see NUMERICS.md.)
    x: f32(1e30, 2e30, -3e30, 4e30, 1, 2, 3, 4, 1, 2, 3, 4, 1e-30, 2e-30, 3e-30, 4e-30),
    shape: [2, 2, 2, 2],
    dy: f32(1, 1, -1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -2, -3, -4),
    training: false,
  },
  {
    what: "evaluation on running_var 0 and a running_mean of 3e38 far from the data",
    layer: "2d",
    state: {
      weight: f32(1),
      bias: f32(0),
      mean_weight: only(2, 3),
      var_weight: only(2, 3),
      running_mean: f32(3e38),
      running_var: f32(0),
    },
    x: f32(1, 2, 3, 4),
    shape: [1, 1, 2, 2],
    dy: f32(1, 1, 1, 1),
    training: false,
  },
  {
    what: "evaluation on running_var 0 with an infinite dy",
    layer: "2d",
    state: {
      weight: f32(1),
      bias: f32(0),
      mean_weight: only(2, 3),
      var_weight: only(2, 3),
      running_mean: f32(0),
      running_var: f32(0),
    },
    x: f32(1, 2, 3, 4),
    shape: [1, 1, 2, 2],
    dy: f32(1, Infinity, 1, 1),
    training: false,
  },
  {
    what: "SwitchNorm1d: evaluation on running_mean 0 and running_var 0 under BN alone",
    layer: "1d",
    state: {
      weight: f32(1, 1),
      bias: f32(0, 0),
      mean_weight: only(1, 2),
      var_weight: only(1, 2),
      running_mean: f32(0, 0),
      running_var: f32(0, 0),
    },
    x: f32(1, 2, 3, 4),
    shape: [2, 2],
    dy: f32(1, 1, 1, 1),
    training: false,
  },
  {
    what: "SwitchNorm1d: evaluation on running_var 0 with a dy of 0 in one channel",
    layer: "1d",
    state: {
      weight: f32(1, -2),
      bias: f32(0, 0),
      mean_weight: only(1, 2),
      var_weight: only(1, 2),
      running_mean: f32(0.5, 0.5),
      running_var: f32(0, 0),
    },
    x: f32(1, 2, 3, 4),
    shape: [2, 2],
    dy: f32(1, 1, 0, 1),
    training: false,
  },
  {
    what: "SwitchNorm1d: training, a constant batch column under BN's variance and LN's mean",
    layer: "1d",
    state: {
      weight: f32(1, 1),
      bias: f32(0, 0),
      mean_weight: only(0, 2),
      var_weight: only(1, 2),
    },
    x: f32(2, 3, 2, 6, 2, 5),
    shape: [3, 2],
    dy: f32(1, 1, 1, 2, 1, 1),
    training: true,
  },
  {
    what: "SwitchNorm1d: evaluation on running_var 0 with dy beyond 2^40 and data of 1e30",
    layer: "1d",
    state: {
      weight: f32(1, 1),
      bias: f32(0, 0),
      mean_weight: only(1, 2),
      var_weight: only(1, 2),
      running_mean: f32(0, 0),
      running_var: f32(0, 0),
    },
    x: f32(1, 2e30, 3, 4e30),
    shape: [2, 2],
    dy: f32(1e20, -1, 3e20, -1),
    training: false,
  },
  {
    // BN's share of the mean, 2^-201 (1e30 - 2e20) = 3.1e-31, is all of x - mu: WebGPU's mix adds
    // it in the unit 2^100 of the data, where it is below float32's range (y NaN for -Infinity,
    // attack fuzzer seed 901; dgamma NaN for -Infinity).
    what: "evaluation of rows equal to their IN and LN means, BN's mean of weight 2^-201 off them",
    layer: "2d",
    state: {
      weight: f32(1e-20),
      bias: f32(1),
      mean_weight: f32(0, 0, -138.6294403076172), // ln 2^-200
      var_weight: only(1, 3),
      running_mean: f32(-2e20),
      running_var: f32(0),
    },
    x: f32(...fill(4, -1e30)),
    shape: [1, 1, 1, 4],
    dy: f32(1, 2, 3, 4),
    training: false,
  },
  {
    what: "SwitchNorm1d: samples equal to their LN mean, BN's mean of weight 2^-200 off them",
    layer: "1d",
    state: {
      weight: f32(1, -1),
      bias: f32(0, 0),
      mean_weight: f32(0, -138.6294403076172),
      var_weight: only(0, 2),
      running_mean: f32(-2e20, 3e20),
      running_var: f32(0, 0),
    },
    x: f32(-1e30, -1e30, -3e30, -3e30),
    shape: [2, 2],
    dy: f32(1, 2, 3, 4),
    training: false,
  },
  {
    what: "SwitchNorm1d: samples equal to their BN mean, LN's mean of weight 2^-200 off them",
    layer: "1d",
    state: {
      weight: f32(1, 1),
      bias: f32(0, 0),
      mean_weight: f32(-138.6294403076172, 0),
      var_weight: only(1, 2),
      running_mean: f32(1e30, -1e30),
      running_var: f32(0, 0),
    },
    x: f32(1e30, -1e30, 1e30, -1e30),
    shape: [2, 2],
    dy: f32(1, 2, 3, 4),
    training: false,
  },
  ...[4, 1000].flatMap((m) =>
    (["2d", "3d"] as const).map((layer): Case => ({
      // LN's mean of the sample, -6.67e29, is twice row 2's x, -3.33e29: under equal LN and BN mean
      // weights x - mu of row 2 is minus half the running_mean of -2e20, +1e20, 6e-10 of the
      // parts of the mean about WebGPU's anchor (1.7e29 each), which its words rounded to 0, and
      // so did the eps-0 passes (y NaN for -Infinity under gamma -1e-40 or -1, dgamma NaN for
      // +Infinity: attack fuzzer seed 79106), where sn_wide_normalize had it from its exact pair.
      what: `${layer} evaluation of rows [-1e30, -6.7e29, -3.3e29] x ${m}, LN and BN means half ` +
        `and half, running_mean -2e20, gamma -1e-40`,
      layer,
      state: {
        weight: f32(1, -1, -1e-40),
        bias: f32(0, 1, 1e30),
        mean_weight: f32(-1e30, 0, 0),
        var_weight: only(0, 3),
        running_mean: f32(-2e20, -2e20, -2e20),
        running_var: f32(1, 1, 1),
      },
      x: f32(...fill(m, -1e30), ...fill(m, -2e30 / 3), ...fill(m, -1e30 / 3)),
      shape: layer === "2d" ? [1, 3, 1, m] : [1, 3, 2, 1, m / 2],
      dy: f32(...fill(3 * m, 1)),
      training: false,
    }))
  ),
  ...[4, 1000].flatMap((m) =>
    (["2d", "3d"] as const).map((layer): Case => ({
      // As above under IN's mean weight ~1, LN's and BN's e^-48.7 each (logits 50, 1.3, 1.3):
      // about the heaviest term, IN's mean -3.3e29, their parts w (m_k - a) of row 2 are
      // -2.3e8 and +2.3e8, and x - mu = +0.14 their rest, which WebGPU's parts (fine_low) lost
      // in one float32 each (y NaN for +Infinity under IN and BN variance weights on a
      // running_var of 0, gamma 1e-20; dgamma NaN: attack fuzzer seed 146340).
      what: `${layer} evaluation of rows [-1e30, -6.7e29, -3.3e29] x ${m}, IN mean weight ~1, ` +
        `LN and BN e^-49 each, running_mean -2e20, gamma 1e-20`,
      layer,
      state: {
        weight: f32(1e-20, -1, 1e-20),
        bias: f32(3e38, 0, 0),
        mean_weight: f32(50, 1.3, 1.3),
        var_weight: f32(-87.3365478515625, -1e30, -87.3365478515625),
        running_mean: f32(3e38, 3e38, -2e20),
        running_var: f32(1e30, 1e-39, 0),
      },
      x: f32(...fill(m, -1e30), ...fill(m, -2e30 / 3), ...fill(m, -1e30 / 3)),
      shape: layer === "2d" ? [1, 3, 1, m] : [1, 3, 2, 1, m / 2],
      dy: f32(...fill(3 * m, 1)),
      training: false,
    }))
  ),
  ...[-1, 1].map((ulps): Case => ({
    // The same parts in training: sample 1's row 2 one float32 ulp from -x of sample 0's puts
    // BN's mean of channel 2 at +-1.9e22, and x - mu of sample 0's row 2 at -+13 beside parts
    // of 2.3e8 (y NaN for the infinity, dgamma NaN for +Infinity on WebGPU before).
    what: `3d training of rows [-1e30, -6.7e29, -3.3e29], [1, 2, 3.3e29 ${
      ulps < 0 ? "-" : "+"
    } 1 ulp], IN mean weight ~1, LN and BN e^-49 each, IN variances alone`,
    layer: "3d",
    state: {
      weight: f32(1, 1, 1),
      bias: f32(0, 0, 0),
      mean_weight: f32(50, 1.3, 1.3),
      var_weight: only(0, 3),
    },
    x: f32(
      ...fill(4, -1e30),
      ...fill(4, -2e30 / 3),
      ...fill(4, -1e30 / 3),
      ...fill(4, 1),
      ...fill(4, 2),
      ...fill(4, nextUlps(-Math.fround(-1e30 / 3), ulps)),
    ),
    shape: [2, 3, 2, 1, 2],
    dy: f32(...fill(24, 1)),
    training: true,
  })),
  ...[-2e20, 2e20].map((rm): Case => ({
    // As above in layout "1d": x - mu of column 1 is -rm / 2, which WebGPU's backward pass of eps
    // 0 took from the words of the mean alone (0: dgamma NaN for -+Infinity).
    what:
      `SwitchNorm1d: samples [-1e30, -3.3e29], LN and BN means half and half, running_mean ${rm}`,
    layer: "1d",
    state: {
      weight: f32(1, -1),
      bias: f32(0, 0),
      mean_weight: f32(0, 0),
      var_weight: only(1, 2),
      running_mean: f32(rm, rm),
      running_var: f32(0, 0),
    },
    x: f32(-1e30, -1e30 / 3, -1e30, -1e30 / 3),
    shape: [2, 2],
    dy: f32(1, 1, 1, 1),
    training: false,
  })),
  {
    // Column 2 has BN variance 0 and x = 3 = its mean in two samples: y 0 / 0 there and dWeight
    // NaN (dy times 0 times +Infinity); WASM gave +Infinity (attack helper-90).
    what: "SwitchNorm1d training: a column of variance 0 equal to its mixed mean in two samples",
    layer: "1d",
    state: { mean_weight: f32(0, -2), var_weight: f32(0, 0) },
    x: f32(3, 3, 3, 3, 3, 3, 3, 3, 1, 2, 3, 4),
    shape: [3, 4],
    dy: f32(1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4),
    training: true,
  },
];

async function run(backend: Backend, k: Case) {
  const c = k.shape[1];
  const options = { backend, eps: 0 };
  const layer = k.layer === "1d"
    ? new SwitchNorm1d(c, options)
    : k.layer === "2d"
    ? new SwitchNorm2d(c, options)
    : new SwitchNorm3d(c, options);
  try {
    layer.loadStateDict(k.state, { strict: false });
    layer.train(k.training);
    const y = await layer.forward(k.x, k.shape, { keepForBackward: true });
    const dx = await layer.backward(k.dy);
    const g = layer.grads;
    return {
      y,
      dx,
      weight: g.weight,
      bias: g.bias,
      mean_weight: g.mean_weight,
      var_weight: g.var_weight,
    };
  } finally {
    layer.dispose();
  }
}

// WebGPU forms these in passes of their own, run for calls with eps 0 alone and compiled on the
// first (shaders/zero_std.wgsl): a fix inside the hot passes (commits a2763f2 and 41e1aef,
// reverted) made headless Chromium's WebGPU suite (Dawn on SwiftShader) ~3x slower to compile.
for (const backend of ["wasm", "webgpu"] as const) {
  const name = `${
    backend === "wasm" ? "WASM" : "WebGPU"
  }: rows of mixed std 0 under eps 0 give the reference's y, dx and gradients, infinities included`;
  const fn = async () => {
    const failures: string[] = [];
    for (const k of CASES) {
      const want = await run("reference", k), got = await run(backend, k);
      for (const field of Object.keys(want) as (keyof typeof want)[]) {
        try {
          assertClose(got[field], want[field], field === "y" ? Y : GRAD, `${k.what}: ${field}`);
        } catch (e) {
          failures.push((e as Error).message);
        }
      }
    }
    if (failures.length) throw new Error(failures.join("\n"));
  };
  Deno.test(name, fn);
}

/** Every output of the nd fuzzer's case `seed` on `backend` (tests/fuzz/nd_range_fuzz.ts). */
async function fuzzed(backend: Backend, seed: number) {
  return await runCase(makeCase(seed), backend);
}

for (const backend of ["wasm", "webgpu"] as const) {
  Deno.test(
    `${backend === "wasm" ? "WASM" : "WebGPU"}: an evaluation on the running_var of 0 that a ` +
      `training step on a constant row left gives the reference's weight gradient of +Infinity ` +
      `(nd fuzzer seed 463)`,
    async () => {
      // SwitchNorm3d [1, 1, 1, 1, 116], eps 0, usingBN: the constant row leaves running_var 0,
      // so the evaluation's mix of constant rows has std 0 and dy > 0 times (x - mu) Inf > 0.
      const want = await fuzzed("reference", 463), got = await fuzzed(backend, 463);
      assert.equal(want.Edweight[0], Infinity, "the reference's evaluation weight gradient");
      const failures: string[] = [];
      for (const key of Object.keys(want)) {
        try {
          assertClose(got[key], want[key], /^y/.test(key) ? Y : GRAD, key);
        } catch (e) {
          failures.push((e as Error).message);
        }
      }
      if (failures.length) throw new Error(failures.join("\n"));
    },
  );
}

/** Labels of the block cases, whose positions give their layers distinct ids. */
const BLOCK_IDS: string[] = [];

/** Evaluations of eps 0 on running_var 0 in some channels, at the backend's interface. */
interface BlockCase {
  readonly label: string;
  readonly problem: NormProblem;
  readonly x: Float32Array;
  readonly dy: Float32Array;
  readonly params: LayerParams;
}

/**
 * An evaluation [n, c, m] (m = 1: layout "1d") under BN alone (weights exactly 0 and 1) with
 * eps 0, channel j on running_mean means[j] and running_var vars[j], x uniform in (lo_j, lo_j + 2)
 * and dy of sign dySign (0: either).
 */
function blockCase(
  label: string,
  [n, c, m]: [number, number, number],
  ch: { mean: number; variance: number; lo: number; dySign: number }[],
): BlockCase {
  const layout = m === 1 ? "1d" : "nd";
  const k = layout === "nd" ? 3 : 2;
  const only = Float64Array.from({ length: k }, (_, i) => i === k - 1 ? 1 : 0);
  let seed = 7;
  const r = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
  const x = new Float32Array(n * c * m), dy = new Float32Array(n * c * m);
  for (let i = 0; i < x.length; i++) {
    const j = Math.floor(i / m) % c;
    x[i] = ch[j].lo + 2 * r();
    dy[i] = ch[j].dySign === 0 ? r() - 0.5 : ch[j].dySign * (0.5 + r());
  }
  return {
    label,
    problem: { layout, n, c, m, eps: 0, training: false, usingBN: true },
    x,
    dy,
    params: {
      layerId: 1000 + BLOCK_IDS.length + (BLOCK_IDS.push(label), 0),
      weight: Float32Array.from(ch, (_, j) => 1 + j / 4),
      bias: new Float32Array(c),
      meanMix: only,
      varMix: only,
      runningMean: Float32Array.from(ch, (h) => h.mean),
      runningVar: Float32Array.from(ch, (h) => h.variance),
      version: 0,
    },
  };
}

const BLOCK_CASES: readonly BlockCase[] = [
  // 4800 rows: several blocks of samples. Channels 0 and 5 on running_mean 0 (a mix of zero
  // terms: y by x's sign), 2 with every x above its mean and dy < 0 (-Infinity), 4 with dy of
  // both signs (NaN), 1 and 3 ordinary.
  blockCase("[800,6,3]", [800, 6, 3], [
    { mean: 0, variance: 0, lo: 1, dySign: 1 },
    { mean: 0.5, variance: 1, lo: -1, dySign: 0 },
    { mean: 3, variance: 0, lo: 3.5, dySign: -1 },
    { mean: 0, variance: 0.5, lo: -1, dySign: 0 },
    { mean: -2, variance: 0, lo: 0, dySign: 0 },
    { mean: 0, variance: 0, lo: 1, dySign: 1 },
  ]),
  // Rows of two segments, x in many windows.
  blockCase("[40,3,4097]", [40, 3, 4097], [
    { mean: -1, variance: 0, lo: 0, dySign: 1 },
    { mean: 0.5, variance: 1, lo: -1, dySign: 0 },
    { mean: 0, variance: 0, lo: -3, dySign: 1 },
  ]),
  // Layout "1d": the group statistics in windows (9002 and 2004 groups), x in windows.
  blockCase("1d [9000,2]", [9000, 2, 1], [
    { mean: 0, variance: 0, lo: 1, dySign: -1 },
    { mean: 0.5, variance: 1, lo: -1, dySign: 0 },
  ]),
  blockCase("1d [2000,4]", [2000, 4, 1], [
    { mean: 0, variance: 0, lo: -3, dySign: 1 },
    { mean: 0.5, variance: 1, lo: -1, dySign: 0 },
    { mean: 1, variance: 0, lo: 1.5, dySign: 1 },
    { mean: 1, variance: 0, lo: 0, dySign: 1 },
  ]),
];

webgpuTest(
  "WebGPU: rows of mixed std 0 in blocks of samples and windows of x give the reference's y and weight gradient",
  async () => {
    await using backend = await loadWebGpuBackend({ maxBindingBytes: 65536 });
    const reference = new ReferenceBackend();
    const update: RunningUpdate = { kind: "movingAverage", momentum: 0.1 };
    const failures: string[] = [];
    for (const k of BLOCK_CASES) {
      // Several windows of x (and, in "1d", of the group statistics) for the passes of std 0.
      const plan = makeBackwardPlan(
        k.problem,
        k.params,
        { maxBinding: 65536, offsetAlign: 256 },
        1,
      );
      const passes = plan.dispatches.filter((d) => /^bwdZeroStd(1d)?$/.test(d.kind)).length;
      assert.ok(passes > 1, `${k.label}: ${passes} dispatch(es) of the passes of std 0`);
      const out = [];
      for (const b of [backend, reference]) {
        const params = { ...k.params, runningMean: k.params.runningMean.slice() };
        const save: SavedForward = {};
        const y = await b.forward(k.problem, k.x, params, update, undefined, save);
        out.push({ y: y as Float32Array, g: await b.backward(save, k.dy, params) });
      }
      const [got, want] = out;
      assert.ok(
        want.g.dWeight.some((v) => Math.abs(v) === Infinity),
        `${k.label}: no infinity in ${want.g.dWeight}`,
      );
      const checks: [string, ArrayLike<number>, ArrayLike<number>, Tolerance][] = [
        ["y", got.y, want.y, Y],
        ["dx", got.g.dx as Float32Array, want.g.dx as Float32Array, GRAD],
        ["weight", got.g.dWeight, want.g.dWeight, GRAD],
        ["bias", got.g.dBias, want.g.dBias, GRAD],
      ];
      for (const [what, g, w, tol] of checks) {
        try {
          assertClose(g, w, tol, `${k.label}: ${what}`);
        } catch (e) {
          failures.push((e as Error).message);
        }
      }
    }
    if (failures.length) throw new Error(failures.join("\n"));
  },
);

webgpuTest(
  "WebGPU under SyncSN: a constant batch column under BN's variance gives the reference's weight gradient of -Infinity",
  async () => {
    // SyncSN reads the gradient sums back between the reduction and dx (backends/_webgpu_sync.ts),
    // with the channel records the passes of std 0 wrote. One replica: its sums are the global.
    const sync: BatchSync = {
      replicas: 1,
      mergeStats: (count, mean, m2) => Promise.resolve({ count, mean, m2 }),
      sum: (local) => Promise.resolve(local),
    };
    const [n, c, m] = [4, 2, 3];
    // Channel 0 constant (3) in every sample, channel 1 above it: x - mu_ln < 0 there, dy > 0.
    const x = Float32Array.from(
      { length: n * c * m },
      (_, i) => Math.floor(i / m) % c === 0 ? 3 : 4 + (i % 5),
    );
    const dy = Float32Array.from({ length: n * c * m }, (_, i) => 1 + (i % 3));
    await using backend = await loadWebGpuBackend();
    const out = [];
    for (const [i, b] of [backend, new ReferenceBackend()].entries()) {
      const params: LayerParams = {
        layerId: 2000 + i,
        weight: f32(1, 1),
        bias: f32(0, 0),
        meanMix: Float64Array.from([0, 1, 0]), // LN's mean
        varMix: Float64Array.from([0, 0, 1]), // BN's variance
        runningMean: f32(0, 0),
        runningVar: f32(1, 1),
        version: 0,
      };
      const problem: NormProblem = {
        layout: "nd",
        n,
        c,
        m,
        eps: 0,
        training: true,
        usingBN: true,
        sync,
      };
      const save: SavedForward = {};
      const update: RunningUpdate = { kind: "movingAverage", momentum: 0.1 };
      const y = await b.forward(problem, x, params, update, undefined, save) as Float32Array;
      out.push({ y, g: await b.backward(save, dy, params) });
    }
    const [got, want] = out;
    assert.equal(want.g.dWeight[0], -Infinity, "the reference's weight gradient of channel 0");
    assertClose(got.y, want.y, Y, "y");
    assertClose(got.g.dWeight, want.g.dWeight, GRAD, "weight");
    assertClose(got.g.dBias, want.g.dBias, GRAD, "bias");
    assertClose(got.g.dx as Float32Array, want.g.dx as Float32Array, GRAD, "dx");
  },
);

rangeTests(
  "the attack fuzzer's seed 79106 (an evaluation of eps 0 whose x - mu lies 6e-10 below the " +
    "parts of the mean about the anchor) passes the range checks",
  async (backend) => {
    const call = make(79106);
    const { got, want } = await runBoth(call, backend);
    assert.equal(check(call, got, want), null);
  },
);

rangeTests(
  "the attack fuzzer's seed 146340 (an evaluation of eps 0 whose x - mu is the rest of two " +
    "cancelling parts of the mean about its heaviest term) passes the range checks",
  async (backend) => {
    const call = make(146340);
    const { got, want } = await runBoth(call, backend);
    assert.equal(check(call, got, want), null);
  },
);
