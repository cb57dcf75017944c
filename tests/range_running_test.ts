/**
 * Issue 10, point 1: the running update of statistics in a scaled unit (WebGPU's wide groups,
 * shaders/common.wgsl add_scaled) keeps momentum times the old buffers where the batch's term is
 * exactly 0: a channel of one repeated value of 1e19 or 4e23 (batch variance 0, unit ~2^126 for
 * running_var) or of +-2e38 (batch mean 0) left running_var or running_mean 0 on WebGPU, where
 * the reference keeps 0.9 times the loaded values. WASM and WebGPU against the float64 reference,
 * SwitchNorm2d and SwitchNorm1d, rows of one segment and of several.
 */
import { RUNNING } from "./_tolerances.ts";
import { assertOutputsClose, type LayerCall, rangeTests, runBoth } from "./_range_compare.ts";

interface RunningCase {
  readonly layer: "1d" | "2d";
  /** Elements per (n, c) row (1 for 1d). */
  readonly m: number;
  /** x[n, c, i] for the case. */
  readonly value: (n: number, c: number, i: number) => number;
  readonly what: string;
}

const CASES: readonly RunningCase[] = [
  { layer: "2d", m: 8, value: () => 1e19, what: "SwitchNorm2d, every x 1e19" },
  { layer: "2d", m: 4100, value: () => 4e23, what: "SwitchNorm2d, rows of 4100 x 4e23" },
  { layer: "1d", m: 1, value: () => 4e23, what: "SwitchNorm1d, every x 4e23" },
  {
    layer: "2d",
    m: 4,
    value: (_n, _c, i) => i % 2 ? 2e38 : -2e38,
    what: "SwitchNorm2d, x +-2e38 (batch mean 0)",
  },
  {
    layer: "1d",
    m: 1,
    value: (n) => n % 2 ? 2e38 : -2e38,
    what: "SwitchNorm1d, x +-2e38 (batch mean 0)",
  },
];

/** A training step (a forward alone) from running_mean 0.5, -3 and running_var 1.5, 2. */
function step(kase: RunningCase): LayerCall {
  const n = 2, c = 2, m = kase.m;
  const x = new Float32Array(n * c * m);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) {
      for (let k = 0; k < m; k++) x[(i * c + j) * m + k] = kase.value(i, j, k);
    }
  }
  return {
    layer: kase.layer,
    shape: kase.layer === "1d" ? [n, c] : [n, c, 1, m],
    options: { eps: 1e-5 },
    state: { running_mean: Float32Array.of(0.5, -3), running_var: Float32Array.of(1.5, 2) },
    partial: true,
    training: true,
    x,
    running: true,
    dispose: true,
  };
}

rangeTests(
  "a training step whose batch mean or variance is exactly 0 in a huge unit keeps momentum times the old running buffers",
  async (backend) => {
    for (const kase of CASES) {
      const { want, got } = await runBoth(step(kase), backend);
      const what = kase.what;
      assertOutputsClose(got, want, { what, runningMean: RUNNING, runningVar: RUNNING });
    }
  },
);

interface SingleValueCase {
  readonly layer: "1d" | "2d" | "3d";
  readonly shape: readonly number[];
  readonly x: readonly number[];
  readonly usingMovingAverage: boolean;
  readonly what: string;
}

/**
 * Rows of one value (H*W = 1, or one sample in SwitchNorm1d) make every batch variance NaN (0/0,
 * as in torch), but the batch mean is finite: running_mean must still take it. WebGPU's update of
 * a group in a scaled unit (x beyond 2^40 or below 2^-21) read such a mean in units of 1 (x of
 * 1e19, 2, 3 gave running_mean 0.018 for 3.3e17). Held relatively (RUNNING's absolute floor
 * would pass any value near 1e-27).
 */
const SINGLE_VALUE_CASES: readonly SingleValueCase[] = [
  {
    layer: "2d",
    shape: [3, 1, 1, 1],
    x: [1e19, 2, 3],
    usingMovingAverage: true,
    what: "SwitchNorm2d [3, 1, 1, 1], x 1e19, 2, 3",
  },
  {
    layer: "3d",
    shape: [3, 1, 1, 1, 1],
    x: [1e16, 2, 3],
    usingMovingAverage: true,
    what: "SwitchNorm3d [3, 1, 1, 1, 1], x 1e16, 2, 3",
  },
  {
    layer: "2d",
    shape: [3, 1, 1, 1],
    x: [1e-25, 2e-25, 3e-26],
    usingMovingAverage: true,
    what: "SwitchNorm2d [3, 1, 1, 1], x ~1e-25",
  },
  {
    layer: "2d",
    shape: [1, 2, 1, 1],
    x: [1e19, 2],
    usingMovingAverage: false,
    what: "SwitchNorm2d [1, 2, 1, 1], batch average, x 1e19, 2",
  },
  {
    layer: "1d",
    shape: [1, 2],
    x: [1e19, 2],
    usingMovingAverage: true,
    what: "SwitchNorm1d [1, 2], x 1e19, 2",
  },
];

rangeTests(
  "rows of one huge or tiny value update running_mean as the reference, running_var to NaN",
  async (backend) => {
    for (const kase of SINGLE_VALUE_CASES) {
      const { layer, shape, usingMovingAverage } = kase, x = Float32Array.from(kase.x);
      const { want, got } = await runBoth({
        layer,
        shape,
        options: { usingMovingAverage },
        training: true,
        x,
        running: true,
        dispose: true,
      }, backend);
      assertOutputsClose(got, want, {
        what: kase.what,
        runningMean: { ...RUNNING, atol: 0 },
        runningVar: RUNNING,
      });
    }
  },
);
