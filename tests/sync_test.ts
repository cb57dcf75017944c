/**
 * SyncSN: Deno Workers as data-parallel replicas over a split batch must get the outputs,
 * running buffers and gradients of one layer run on the whole batch.
 */
import assert from "node:assert/strict";
import { SwitchNorm1d, SwitchNorm2d } from "../mod.ts";
import type { BackendName } from "../backends/_backend.ts";
import { assertClose } from "./_close.ts";
import { testEachBackend } from "./_backends.ts";
import { startReplicas } from "./_replicas.ts";

// Replicas merge the same numbers in another order than one layer does (Chan merges of float64
// partials, then float32 outputs): agreement to a few float32 ulps.
const SAME = { atol: 1e-5, rtol: 1e-5, why: "float64 merge order, float32 outputs" };

function random(seed: number) {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
}

/** What one step leaves to compare. */
interface StepResult {
  y: Float32Array;
  dx: Float32Array;
  grads: Record<"weight" | "bias" | "mean_weight" | "var_weight", Float32Array>;
  running: [Float32Array, Float32Array];
}

interface Setup {
  layer: "SwitchNorm1d" | "SwitchNorm2d";
  c: number;
  inner: number[]; // shape after [N, C]
  split: number[]; // batch size of each replica
  options: Record<string, unknown>;
}

async function runReplicas(setup: Setup, backend: BackendName) {
  const r = random(setup.split.length * 31 + setup.c);
  const n = setup.split.reduce((a, b) => a + b), c = setup.c;
  const m = setup.inner.reduce((a, b) => a * b, 1);
  const k = setup.layer === "SwitchNorm1d" || setup.options.usingBN === false ? 2 : 3;
  const state = {
    weight: Float32Array.from({ length: c }, () => 1 + 0.3 * r()),
    bias: Float32Array.from({ length: c }, r),
    mean_weight: Float32Array.from({ length: k }, r),
    var_weight: Float32Array.from({ length: k }, r),
    ...(setup.options.usingBN === false ? {} : {
      running_mean: Float32Array.from({ length: c }, r),
      running_var: Float32Array.from({ length: c }, () => 1 + 0.5 * r()),
    }),
  };
  const modes = ["train", "train", "eval"] as const;
  const steps = modes.map((mode, i) => ({
    mode,
    x: Float32Array.from({ length: n * c * m }, () => 3 * r() + i),
    dy: Float32Array.from({ length: n * c * m }, r),
  }));
  // One layer on the whole batch.
  const Layer = setup.layer === "SwitchNorm1d" ? SwitchNorm1d : SwitchNorm2d;
  const whole = new Layer(c, { ...setup.options, backend });
  whole.loadStateDict(state);
  const expected: StepResult[] = [];
  for (const step of steps) {
    whole.train(step.mode === "train");
    // A batch average must be finalized before an evaluation forward (which refuses raw sums).
    if (whole.batchesAccumulated > 0 && step.mode === "eval") whole.finalizeBatchAverage();
    const y = await whole.forward(step.x, [n, c, ...setup.inner], { keepForBackward: true });
    whole.zeroGrad();
    const dx = await whole.backward(step.dy);
    expected.push({
      y,
      dx,
      grads: structuredClone(whole.grads),
      running: [whole.running_mean, whole.running_var],
    });
  }
  // Replicas, each on its slice, gathering through this thread.
  const size = setup.split.length;
  const { workers, done } = startReplicas<{ results: StepResult[] }>(
    new URL("./_sync_worker.ts", import.meta.url),
    size,
  );
  let start = 0;
  setup.split.forEach((nLocal, rank) => {
    const slice = (a: Float32Array) => a.slice(start * c * m, (start + nLocal) * c * m);
    workers[rank].postMessage({
      job: {
        layer: setup.layer,
        size,
        c,
        options: { ...setup.options, backend },
        state,
        steps: steps.map((s) => ({
          mode: s.mode,
          x: slice(s.x),
          dy: slice(s.dy),
          shape: [nLocal, c, ...setup.inner],
        })),
      },
    });
    start += nLocal;
  });
  try {
    return { expected, replicas: await Promise.all(done), state, steps };
  } finally {
    for (const w of workers) w.terminate();
  }
}

const SETUPS: [string, Setup][] = [
  ["2 replicas of SwitchNorm2d", {
    layer: "SwitchNorm2d",
    c: 3,
    inner: [3, 5],
    split: [4, 4],
    options: {},
  }],
  ["3 replicas of unequal batches, batch average", {
    layer: "SwitchNorm2d",
    c: 2,
    inner: [1, 7],
    split: [3, 1, 2],
    options: { usingMovingAverage: false },
  }],
  ["4 replicas of SwitchNorm1d", {
    layer: "SwitchNorm1d",
    c: 5,
    inner: [],
    split: [2, 3, 2, 2],
    options: {},
  }],
];

for (const [name, setup] of SETUPS) {
  await testEachBackend(
    `SyncSN with ${name} matches one layer on the whole batch`,
    async (backend) => {
      const { expected, replicas, state, steps } = await runReplicas(setup, backend);
      const m = setup.inner.reduce((a, b) => a * b, 1) * setup.c;
      expected.forEach((want, i) => {
        let start = 0;
        replicas.forEach(({ results }, rank) => {
          const got = results[i], len = setup.split[rank] * m;
          const at = `step ${i}, replica ${rank}`;
          assertClose(got.y, want.y.subarray(start, start + len), SAME, `${at}: y`);
          assertClose(got.dx, want.dx.subarray(start, start + len), SAME, `${at}: dx`);
          for (const [key, g] of Object.entries(want.grads)) {
            assertClose(got.grads[key as "weight"], g, SAME, `${at}: grad of ${key}`);
          }
          assertClose(got.running[0], want.running[0], SAME, `${at}: running_mean`);
          assertClose(got.running[1], want.running[1], SAME, `${at}: running_var`);
          start += len;
        });
      });
      // The split must matter: without SyncSN the first replica's own batch statistics differ.
      const alone = new (setup.layer === "SwitchNorm1d" ? SwitchNorm1d : SwitchNorm2d)(setup.c, {
        ...setup.options,
        backend,
      });
      alone.loadStateDict(state);
      const len = setup.split[0] * m;
      const yAlone = await alone.forward(steps[0].x.slice(0, len), [
        setup.split[0],
        setup.c,
        ...setup.inner,
      ]);
      assert.ok(yAlone.some((v, i) => Math.abs(v - expected[0].y[i]) > 1e-3));
    },
  );
}
