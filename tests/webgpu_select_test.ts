/**
 * The run-time choice of WebGPU (explicit requests, the auto rule and its record in
 * bench/crossover.json), the generated shader module, and the dispatch plan's binding windows
 * and workgroup grids.
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
import { GRAD_BYTES, grid, makePlan, type PlanLimits } from "../backends/_webgpu_plan.ts";
import { makeBackwardPlan } from "../backends/_webgpu_backward_plan.ts";
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
      // Only per-row arrays too large for the binding, or tensors beyond u32 indices, may be
      // refused.
      assert.match((e as Error).message, /more than one storage binding|32-bit element indices/);
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
    // The backward's gradient records: every window aligned and within one binding.
    let backward;
    try {
      backward = makeBackwardPlan(problem, { meanMix: [1], varMix: [1] }, limits, problem.n);
    } catch (e) {
      assert.match((e as Error).message, /more than one storage binding|too many channels/);
      continue;
    }
    for (const d of backward.dispatches) {
      for (const w of Object.values(d.records ?? {})) {
        assert.equal(w.offset % limits.offsetAlign, 0, `${d.kind}: aligned`);
        assert.ok(w.size <= limits.maxBinding, `${d.kind}: a window of ${w.size} bytes`);
      }
    }
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

/**
 * Poses as a WebGPU implementation that cannot run the backend, by `sabotage` of the real
 * adapter, and checks that auto keeps to the CPU with one warning naming `reason`, and that an
 * explicit webgpu layer rejects with it.
 */
function autoSurvives(what: string, sabotage: (adapter: GPUAdapter) => void, reason: RegExp) {
  webgpuTest(
    `${what}: auto keeps to the CPU with one warning naming the reason, explicit webgpu fails clearly`,
    async () => {
      const gpu = (navigator as { gpu: GPU }).gpu;
      const original = gpu.requestAdapter;
      gpu.requestAdapter = async (options) => {
        const adapter = await original.call(gpu, options);
        if (adapter) sabotage(adapter);
        return adapter;
      };
      const warn = console.warn;
      const warnings: string[] = [];
      console.warn = (...args: unknown[]) => void warnings.push(args.join(" "));
      resetWebGpuForTesting();
      setEnvironmentForTesting({ webgpuAuto: { minElements: 0, allowFallbackAdapter: true } });
      try {
        const x = new Float32Array(2 * 2 * 3 * 3).map((_, i) => Math.sin(i));
        const shape = [2, 2, 3, 3];
        const want = await new SwitchNorm2d(2, { backend: wasmOrReference }).forward(x, shape);
        await assert.rejects(
          () => new SwitchNorm2d(2, { backend: "webgpu" }).forward(x, shape),
          reason,
        );
        const sn = new SwitchNorm2d(2); // auto
        for (let i = 0; i < 2; i++) {
          const y = await sn.forward(x, shape);
          assert.equal(sn.backendInfo?.backend, wasmOrReference);
          assert.match(sn.backendInfo!.reason, reason);
          assert.deepEqual(Array.from(y), Array.from(want));
        }
        assert.equal(warnings.length, 1, warnings.join("\n"));
        assert.match(warnings[0], /^switchnorm: auto: WebGPU could not start, using .+ instead: /);
        assert.match(warnings[0], reason);
      } finally {
        gpu.requestAdapter = original;
        console.warn = warn;
        setEnvironmentForTesting(undefined);
        resetWebGpuForTesting();
      }
    },
  );
}

// As Tint once rejected our WGSL: the real device, with every shader module given text no
// compiler accepts.
autoSurvives("shaders the device does not compile", (adapter) => {
  const requestDevice = adapter.requestDevice.bind(adapter);
  adapter.requestDevice = async (descriptor) => {
    const device = await requestDevice(descriptor);
    const compile = device.createShaderModule.bind(device);
    device.createShaderModule = (d) => compile({ ...d, code: `not WGSL\n${d.code}` });
    return device;
  };
}, /webgpu backend: the shaders did not compile on this device:[^]*not WGSL/);

autoSurvives("an adapter that gives no device", (adapter) => {
  adapter.requestDevice = () => Promise.reject(new Error("simulated: out of devices"));
}, /webgpu backend: the adapter ".+" gave no device: simulated: out of devices/);

Deno.test("the workgroup grid covers every workgroup within the per-dimension limit", () => {
  for (const max of [2, 3, 7, 65535]) {
    for (const count of [1, 2, max - 1, max, max + 1, 2 * max + 1, max * max - 1, max * max]) {
      if (count > max * max) continue;
      const [x, y] = grid(count, max);
      assert.ok(x <= max && y <= max, `${count} on ${max}: [${x}, ${y}]`);
      assert.ok(x * y >= count && x * (y - 1) < count, `${count} on ${max}: [${x}, ${y}]`);
    }
    assert.throws(() => grid(max * max + 1, max), /exceed a \d+ x \d+ grid/);
  }
});

/**
 * Which per-row gradient records each group of a backward plan sums ("nd"), found by running the
 * plan's sn_bwd_groups slots on the CPU: sums[g] counts how often row r was added to group g.
 */
function groupMembers(
  problem: NormProblem,
  limits: PlanLimits,
): { sums: Map<number, number>[]; windows: number } {
  const plan = makeBackwardPlan(problem, { meanMix: [1, 0, 0], varMix: [1, 0, 0] }, limits, 1);
  const { n, c } = problem;
  const slots = new DataView(plan.uniforms);
  const u = (d: { slot: number }, at: number) => slots.getUint32(d.slot * 256 + at, true);
  const sums: Map<number, number>[] = Array.from({ length: n + c }, () => new Map());
  let windows = 0;
  for (const d of plan.dispatches.filter((d) => d.kind === "bwdGroups")) {
    const rows = d.records?.rows, groups = d.records?.groups;
    for (const w of [rows, groups]) {
      if (!w) continue;
      assert.equal(w.offset % limits.offsetAlign, 0);
      assert.ok(w.size <= limits.maxBinding, `a window of ${w.size} bytes`);
    }
    const first = (rows?.offset ?? 0) / GRAD_BYTES;
    const [lnGroups, bnGroups] = [u(d, 80), u(d, 84)];
    const out = (groups?.offset ?? 0) / GRAD_BYTES + u(d, 28);
    const accumulate = (u(d, 44) & 64) !== 0;
    if (accumulate) windows++;
    for (let g = 0; g < lnGroups + bnGroups; g++) {
      const at = g >= lnGroups ? [64, 68, 72, 76] : [48, 52, 56, 60];
      const gg = g >= lnGroups ? g - lnGroups : g;
      const [base, step, stride, count] = at.map((a) => u(d, a));
      assert.ok((u(d, 28) + g + 1) * GRAD_BYTES <= (groups?.size ?? Infinity), "out in window");
      if (!accumulate) sums[out + g].clear(); // a plain write starts the record afresh
      for (let k = 0; k < count; k++) {
        const local = base + gg * step + k * stride;
        assert.ok((local + 1) * GRAD_BYTES <= (rows?.size ?? Infinity), "member in the window");
        const row = first + local;
        sums[out + g].set(row, (sums[out + g].get(row) ?? 0) + 1);
      }
    }
  }
  return { sums, windows };
}

Deno.test(
  "a backward's per-row gradient sums above one binding are summed per sample and channel once each",
  () => {
    const limits: PlanLimits = { maxBinding: 65536, offsetAlign: 256 };
    // 1024 records in a binding, windows of 1020 rows (4 to align the group records) and at
    // most 1020 channels: C dividing the window or not; windows that cut a sample at their
    // start, their end, both, or none; more than 1024 groups; problems in one window.
    const shapes = [[2, 700], [3, 1000], [333, 5], [1000, 3], [40, 64], [7, 500], [5, 205]];
    shapes.push([1020, 4], [3, 341], [4, 256], [4000, 1], [1500, 2], [2, 1020]);
    shapes.push([1, 1000], [3, 7], [1, 1], [1, 1020], [1019, 1]);
    let windowed = 0;
    for (const [n, c] of shapes) {
      const problem: NormProblem = {
        layout: "nd",
        n,
        c,
        m: 3,
        training: true,
        usingBN: true,
        eps: 1e-5,
      };
      const { sums, windows } = groupMembers(problem, limits);
      if (windows > 0) windowed++;
      for (let g = 0; g < n + c; g++) {
        const want = g < n
          ? Array.from({ length: c }, (_, k) => g * c + k)
          : Array.from({ length: n }, (_, k) => k * c + (g - n));
        const got = [...sums[g].entries()].sort((a, b) => a[0] - b[0]);
        assert.deepEqual(got.map(([row]) => row), want, `[${n},${c}] group ${g}: members`);
        assert.ok(got.every(([, times]) => times === 1), `[${n},${c}] group ${g}: once each`);
      }
      const plan = makeBackwardPlan(problem, { meanMix: [1, 0, 0], varMix: [1, 0, 0] }, limits, n);
      for (const kind of ["bwdRows", "bwdCoef"]) {
        let next = 0;
        for (const d of plan.dispatches.filter((d) => d.kind === kind)) {
          const v = new DataView(plan.uniforms, d.slot * 256, 256);
          const [first, end, base] = [28, 32, 36].map((a) => v.getUint32(a, true));
          assert.equal(first, next, `${kind}: rows in order, each once`);
          const rows = d.records!.rows!;
          assert.equal(base * GRAD_BYTES, rows.offset);
          assert.ok((end - base) * GRAD_BYTES <= rows.size);
          assert.ok(rows.size <= limits.maxBinding);
          next = end;
        }
        assert.equal(next, n * c, `${kind}: every row`);
      }
    }
    assert.equal(windowed, 13, "problems that needed several windows");
  },
);

Deno.test("a tensor beyond the shaders' 32-bit element indices is refused by both plans", () => {
  const problem: NormProblem = {
    layout: "nd",
    n: 2,
    c: 2 ** 16,
    m: 2 ** 15,
    training: true,
    usingBN: true,
    eps: 1e-5,
  };
  const limits: PlanLimits = { maxBinding: 2 ** 31, offsetAlign: 256 };
  const mix = { meanMix: [1, 0, 0], varMix: [1, 0, 0] };
  assert.throws(
    () => makePlan(problem, { ...mix, update: { kind: "batchAverage" } }, limits),
    /4294967296 floats is too large for the shaders' 32-bit element indices/,
  );
  assert.throws(() => makeBackwardPlan(problem, mix, limits, 2), /32-bit element indices/);
});

Deno.test("a backward whose record buffers exceed maxBufferSize is refused with a RangeError", () => {
  // Windows lift the binding limit, not the buffer limit: 3000 rows need 192000 bytes of Grads.
  const limits: PlanLimits = { maxBinding: 65536, offsetAlign: 256, maxBuffer: 100_000 };
  const problem: NormProblem = {
    layout: "nd",
    n: 1000,
    c: 3,
    m: 2,
    training: true,
    usingBN: true,
    eps: 1e-5,
  };
  const mix = { meanMix: [1, 0, 0], varMix: [1, 0, 0] };
  assert.throws(
    () => makeBackwardPlan(problem, mix, limits, 1000),
    /the per-row gradient sums need a buffer of 192000 bytes, more than this device's maxBufferSize/,
  );
  makeBackwardPlan(problem, mix, { ...limits, maxBuffer: 192_000 }, 1000);
});
