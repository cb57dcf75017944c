/**
 * The run-time choice of WebGPU (explicit requests; the auto rule in force, which keeps to the CPU,
 * and its record in bench/crossover.json; auto's WebGPU path under a posed threshold; auto's
 * survival of an adapter that cannot run the backend) and the generated shader module. The
 * dispatch plan's binding windows and workgroup grids: webgpu_plan_test.ts.
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
import { generate } from "../shaders/_build.ts";
import { autoRuleFrom, crossoverOf } from "../bench/_auto_rule.ts";
import { rng, webgpuTest } from "./_webgpu.ts";

const wasmOrReference = currentEnvironment().wasmSimd ? "wasm" : "reference";

Deno.test("auto keeps a call of any size on the CPU by itself, and says WebGPU measured slower", async () => {
  // The rule in force (backends/select.ts): no size takes WebGPU; a real GPU (NVIDIA H200,
  // 2026-12-04) was slower end to end than WASM at every size measured.
  const never = /not WebGPU: auto keeps to the CPU: WebGPU measured slower end to end/;
  const sn = new SwitchNorm2d(2);
  await sn.forward(new Float32Array(2 * 2 * 3 * 3).map((_, i) => i % 5), [2, 2, 3, 3]);
  assert.equal(sn.backendInfo?.backend, wasmOrReference);
  assert.match(sn.backendInfo!.reason, never);
  const { backend, reason } = await chooseBackend("auto", undefined, { elements: 2 ** 28 });
  assert.equal(backend.name, wasmOrReference);
  assert.match(reason, never);
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

Deno.test("the auto rule in force is the one bench/crossover.json's measurement gives", async () => {
  const record = JSON.parse(
    await Deno.readTextFile(new URL("../bench/crossover.json", import.meta.url)),
  );
  assert.equal(typeof record.adapter.description, "string");
  assert.equal(typeof record.adapter.isFallbackAdapter, "boolean");
  // The record holds what the bench derives from its own sweep (bench/_auto_rule.ts), ...
  assert.equal(record.crossoverElements, crossoverOf(record.endToEnd.sweep));
  assert.deepEqual(record.rule, autoRuleFrom(record.adapter, record.crossoverElements));
  // ... and the rule in force is that rule: no threshold the measurement did not give.
  assert.equal(WEBGPU_AUTO.minElements, record.rule.minElements);
  assert.equal(record.rule.fallbackAdapter, "never");
  assert.equal(WEBGPU_AUTO.allowFallbackAdapter, false);
});

Deno.test("shaders/_wgsl.ts is what `deno task build:shaders` makes of shaders/*.wgsl", async () => {
  const current = await Deno.readTextFile(new URL("../shaders/_wgsl.ts", import.meta.url));
  assert.ok(current.startsWith("// Generated by `deno task build:shaders`"));
  assert.equal(current, await generate(), "stale: run deno task build:shaders");
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
