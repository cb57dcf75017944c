/**
 * The run-time choice of WebGPU (explicit requests, the auto rule and its record in
 * bench/crossover.json), the generated shader module, and the dispatch plan's binding windows.
 */
import assert from "node:assert/strict";
import { SwitchNorm2d } from "../mod.ts";
import {
  chooseBackend,
  currentEnvironment,
  probeAdapter,
  resetWebGpuForTesting,
  setEnvironmentForTesting,
  WEBGPU_AUTO,
} from "../backends/select.ts";
import { makeBackwardPlan, makePlan, type PlanLimits } from "../backends/_webgpu_plan.ts";
import type { NormProblem } from "../backends/_backend.ts";
import { generate } from "../shaders/_build.ts";
import { rng, webgpuTest } from "./_webgpu.ts";

const wasmOrReference = currentEnvironment().wasmSimd ? "wasm" : "reference";

Deno.test("auto runs a call below the WebGPU crossover on the CPU and says why", async () => {
  const sn = new SwitchNorm2d(2);
  await sn.forward(new Float32Array(2 * 2 * 3 * 3).map((_, i) => i % 5), [2, 2, 3, 3]);
  assert.equal(sn.backendInfo?.backend, wasmOrReference);
  assert.match(
    sn.backendInfo!.reason,
    new RegExp(
      `not WebGPU: 36 elements is below the WebGPU crossover of ${WEBGPU_AUTO.minElements}`,
    ),
  );
});

Deno.test("auto takes WebGPU from exactly the crossover size on, and the CPU one element below it", async () => {
  // A rule of 1000 elements on an environment where any adapter counts: 999 is refused for its
  // size; 1000 is not (it runs on WebGPU where there is an adapter, else is refused for that).
  const env = {
    ...currentEnvironment(),
    webgpuAuto: { minElements: 1000, allowFallbackAdapter: true },
  };
  const below = await chooseBackend("auto", env, { elements: 999 });
  assert.equal(below.backend.name, wasmOrReference);
  assert.match(below.reason, /not WebGPU: 999 elements is below the WebGPU crossover of 1000/);
  const at = await chooseBackend("auto", env, { elements: 1000 });
  assert.doesNotMatch(at.reason, /below the WebGPU crossover/);
  if ((await probeAdapter()).adapter) {
    assert.equal(at.backend.name, "webgpu", at.reason);
    assert.match(at.reason, /^auto: WebGPU, 1000 elements >= the crossover of 1000/);
  } else {
    assert.match(at.reason, /not WebGPU: no WebGPU adapter/);
  }
});

Deno.test("auto keeps a SyncSN call on the CPU at any size, and says why", async () => {
  // The rule of backends/select.ts (an explicit backend: "webgpu" still runs SyncSN): a size and an
  // adapter that would take WebGPU for any other call.
  const env = {
    ...currentEnvironment(),
    webgpuAuto: { minElements: 0, allowFallbackAdapter: true },
  };
  const { backend, reason } = await chooseBackend("auto", env, { elements: 1 << 24, sync: true });
  assert.equal(backend.name, wasmOrReference);
  assert.match(reason, /not WebGPU: SyncSN runs on CPU backends/);
});

webgpuTest("auto keeps to WASM on a fallback adapter at any size, and says so", async () => {
  const probe = await probeAdapter();
  setEnvironmentForTesting({ webgpuAuto: { minElements: 0, allowFallbackAdapter: false } });
  try {
    const { backend, reason } = await chooseBackend("auto", undefined, { elements: 1 << 26 });
    if (probe.adapter && probe.summary.isFallbackAdapter) {
      assert.equal(backend.name, wasmOrReference);
      assert.match(reason, /is a fallback \(software\) adapter/);
      assert.ok(reason.includes(probe.summary.description), reason);
    } else {
      assert.equal(backend.name, "webgpu", reason); // a real GPU: the size rule decides
    }
  } finally {
    setEnvironmentForTesting(undefined);
  }
});

webgpuTest(
  "an explicit webgpu request names the adapter, and auto follows a resident x",
  async () => {
    const { backend, reason } = await chooseBackend("webgpu");
    assert.equal(backend.name, "webgpu");
    assert.match(reason, /^requested: webgpu \(adapter ".+"/);
    const sn = new SwitchNorm2d(2); // auto
    const gpu = new SwitchNorm2d(2, { backend: "webgpu" });
    using x = await gpu.upload(new Float32Array(16).map(Math.sin), [2, 2, 2, 2]);
    using y = await sn.forward(x);
    assert.equal(y.backend, "webgpu");
    assert.equal(sn.backendInfo?.reason, "auto: x is resident in webgpu memory");
  },
);

Deno.test("without an adapter, webgpu fails clearly and auto keeps to the CPU", async () => {
  const gpu = (navigator as { gpu?: GPU }).gpu;
  if (!gpu) {
    await assert.rejects(() => chooseBackend("webgpu"), /navigator\.gpu is undefined/);
    return;
  }
  const original = gpu.requestAdapter;
  gpu.requestAdapter = () => Promise.resolve(null);
  resetWebGpuForTesting();
  setEnvironmentForTesting({ webgpuAuto: { minElements: 0, allowFallbackAdapter: true } });
  try {
    await assert.rejects(
      () => new SwitchNorm2d(1, { backend: "webgpu" }).forward(new Float32Array(2), [1, 1, 2, 1]),
      /backend "webgpu" is not available: navigator\.gpu\.requestAdapter\(\) found no adapter/,
    );
    const { backend, reason } = await chooseBackend("auto", undefined, { elements: 1 << 24 });
    assert.equal(backend.name, wasmOrReference);
    assert.match(reason, /not WebGPU: no WebGPU adapter/);
  } finally {
    gpu.requestAdapter = original;
    setEnvironmentForTesting(undefined);
    resetWebGpuForTesting();
  }
});

Deno.test("the auto rule in force is the one recorded in bench/crossover.json", async () => {
  const record = JSON.parse(
    await Deno.readTextFile(new URL("../bench/crossover.json", import.meta.url)),
  );
  assert.equal(record.rule.minElements, WEBGPU_AUTO.minElements);
  assert.equal(record.rule.fallbackAdapter, "never");
  assert.equal(WEBGPU_AUTO.allowFallbackAdapter, false);
  assert.equal(typeof record.adapter.description, "string");
  assert.ok(record.crossoverElements === null || Number.isInteger(record.crossoverElements));
  // A measured crossover may only make the rule stricter, never take WebGPU earlier.
  if (record.crossoverElements !== null) {
    assert.ok(WEBGPU_AUTO.minElements >= record.crossoverElements);
  }
});

Deno.test("shaders/_wgsl.ts is what `deno task build:shaders` makes of shaders/*.wgsl", async () => {
  const current = await Deno.readTextFile(new URL("../shaders/_wgsl.ts", import.meta.url));
  assert.ok(current.startsWith("// Generated by `deno task build:shaders`"));
  assert.equal(current, await generate(), "stale: run deno task build:shaders");
});

Deno.test("the plan binds every segment and element once, in aligned windows within the limit", () => {
  const r = rng(5);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  for (let i = 0; i < 300; i++) {
    const layout = pick(["1d", "nd"] as const);
    const problem: NormProblem = {
      layout,
      n: pick([1, 3, 33, 100, 1000]),
      c: pick([1, 5, 64, 300]),
      m: layout === "1d" ? 1 : pick([1, 2, 3, 49, 1023, 5001, 70000]),
      training: true,
      usingBN: true,
      eps: 1e-5,
    };
    const limits: PlanLimits = {
      maxBinding: pick([65536, 2 ** 20, 2 ** 27]),
      offsetAlign: pick([32, 256]),
      elementsPerThread: pick([16, 256]),
    };
    const total = problem.n * problem.c * problem.m;
    let plan;
    try {
      plan = makePlan(
        problem,
        { meanMix: [1], varMix: [1], update: { kind: "batchAverage" } },
        limits,
      );
    } catch (e) {
      // Only per-row arrays too large for the binding may be refused.
      assert.match((e as Error).message, /more than one storage binding/);
      continue;
    }
    let covered = 0, lastEnd = 0;
    for (const d of plan.dispatches) {
      if (!d.window) continue;
      assert.equal(d.window.offset % limits.offsetAlign, 0);
      assert.ok(d.window.size <= limits.maxBinding, `window of ${d.window.size} bytes`);
      assert.ok(d.window.offset + d.window.size <= plan.tensorBytes);
      if (d.kind.startsWith("normalize")) {
        assert.equal(d.window.offset, lastEnd, "normalize windows tile the tensor");
        lastEnd = d.window.offset + d.window.size;
        covered += d.window.size / 4;
      }
    }
    assert.ok(covered >= total && covered < total + 4);
    const slots = new DataView(plan.uniforms);
    const stats = plan.dispatches.filter((d) => d.kind === "stats" || d.kind === "stats1d");
    let next = 0;
    for (const d of stats) {
      const first = slots.getUint32(d.slot * 256 + 28, true);
      const end = slots.getUint32(d.slot * 256 + 32, true);
      assert.equal(first, next, "stats windows take the segments in order, each once");
      next = end;
    }
    const chunks = layout === "nd" ? plan.partials / (problem.n * problem.c) : 0;
    assert.equal(
      next,
      layout === "nd" ? problem.n * problem.c * chunks : Math.ceil(problem.n / 32),
    );
  }
});

Deno.test("the plan gives each normalize and dx window the workgroups its vec4s need, rounding up", () => {
  // One thread per vec4, 256 threads per workgroup (sn_normalize, sn1d_normalize, sn_bwd_dx,
  // sn1d_bwd_dx): a window of v vec4s needs ceil(v / 256) workgroups. One fewer leaves the
  // window's tail unwritten; this names that fault where only random comparisons would show it.
  const perWindow = ["normalize", "normalize1d", "bwdDx", "bwdDx1d"];
  // [4, 300, 300] takes two windows of x; layout "1d" refuses tensors above one binding.
  const limits: PlanLimits = { maxBinding: 2 ** 20, offsetAlign: 256 };
  const params = { meanMix: [1], varMix: [1] };
  const shapes = [[1, 1, 1], [2, 3, 1002], [5, 41, 2], [7, 13, 997], [100, 64, 1], [4, 300, 300]];
  let checked = 0;
  for (const layout of ["1d", "nd"] as const) {
    for (const [n, c, m] of shapes) {
      const problem: NormProblem = {
        layout,
        n,
        c,
        m: layout === "1d" ? 1 : m,
        training: true,
        usingBN: true,
        eps: 1e-5,
      };
      const plans = [
        makePlan(problem, { ...params, update: { kind: "batchAverage" } }, limits),
        makeBackwardPlan(problem, params, limits, n),
      ];
      for (const plan of plans) {
        for (const d of plan.dispatches) {
          if (!perWindow.includes(d.kind)) continue;
          const vecs = d.window!.size / 16;
          assert.equal(
            d.workgroups,
            Math.ceil(vecs / 256),
            `${layout} [${n}, ${c}, ${problem.m}] ${d.kind}: ${d.workgroups} workgroups for ` +
              `${vecs} vec4s`,
          );
          checked++;
        }
      }
    }
  }
  assert.ok(checked >= 20, `only ${checked} windows checked`);
});

webgpuTest(
  "an auto layer moving between WASM and WebGPU by size carries its running buffers",
  async () => {
    // Pose as a machine where auto takes WebGPU from 1000 elements on.
    setEnvironmentForTesting({ webgpuAuto: { minElements: 1000, allowFallbackAdapter: true } });
    try {
      const auto = new SwitchNorm2d(3, { momentum: 0.5 });
      const ref = new SwitchNorm2d(3, { momentum: 0.5, backend: "reference" });
      const r = rng(11);
      const small = [2, 3, 4, 4], large = [4, 3, 10, 10];
      const steps = [small, large, small, large, "resident", small, large] as const;
      const ran = [];
      for (const [i, step] of steps.entries()) {
        const shape = step === "resident" ? large : step;
        const x = Float32Array.from({ length: shape.reduce((a, b) => a * b) }, () => i + r());
        if (step === "resident") {
          using t = await auto.upload(x, shape);
          (await auto.forward(t)).dispose(); // running buffers now newer on the GPU
        } else {
          await auto.forward(x, shape);
        }
        await ref.forward(x, shape);
        ran.push(auto.backendInfo!.backend);
      }
      assert.deepEqual(ran, [
        wasmOrReference,
        "webgpu",
        wasmOrReference,
        "webgpu",
        "webgpu",
        wasmOrReference,
        "webgpu",
      ]);
      for (let c = 0; c < 3; c++) {
        assert.ok(Math.abs(auto.running_mean[c] - ref.running_mean[c]) < 1e-5, `mean ${c}`);
        assert.ok(Math.abs(auto.running_var[c] - ref.running_var[c]) < 1e-5, `var ${c}`);
      }
    } finally {
      setEnvironmentForTesting(undefined);
    }
  },
);
