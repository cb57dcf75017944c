/**
 * Device loss and resource release on the webgpu backend. device.destroy() stands in for a lost
 * device (a driver reset, a removed GPU): WebGPU reports both through device.lost. Every wait is
 * bounded, so a hang fails the test instead of stalling the suite.
 */
import assert from "node:assert/strict";
import { SwitchNorm2d } from "../mod.ts";
import type { NormProblem, SavedForward } from "../backends/_backend.ts";
import {
  chooseBackend,
  resetWebGpuForTesting,
  setEnvironmentForTesting,
  webgpuBackend,
} from "../backends/select.ts";
import { loadWebGpuBackend, type WebGpuBackend } from "../backends/webgpu.ts";
import { DeviceLostError } from "../backends/_webgpu_device.ts";
import { normal, randomParams, rng, webgpuTest } from "./_webgpu.ts";
import { assertSameValues } from "./_close.ts";

/** Rejects if `p` has not settled within `ms`: a hang is a failure, not a stalled suite. */
function within<T>(p: Promise<T>, ms = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

const problem: NormProblem = {
  layout: "nd",
  n: 4,
  c: 8,
  m: 1000,
  training: true,
  usingBN: true,
  eps: 1e-5,
};
const r = rng(7);
const x = Float32Array.from({ length: 32000 }, () => normal(r));

webgpuTest(
  "a lost device fails the call in flight and the next call clearly, without hanging",
  async () => {
    await using backend = await loadWebGpuBackend();
    const params = randomParams(r, 8, 3, true);
    const before = params.runningMean.slice();
    const inFlight = backend.forward(problem, x, params, { kind: "batchAverage" });
    backend.device.destroy();
    await assert.rejects(() => within(inFlight), DeviceLostError);
    await assert.rejects(() => within(inFlight), /GPU device was lost \(destroyed/);
    assertSameValues(params.runningMean, before, "a failed call leaves the running buffers alone");
    await assert.rejects(
      () => within(backend.forward(problem, x, params, { kind: "batchAverage" })),
      DeviceLostError,
    );
    assert.throws(() => backend.upload(x, [4, 8, 1000]), DeviceLostError);
  },
);

webgpuTest(
  "a device lost during a backward fails it and the next backward clearly, without hanging",
  async () => {
    await using backend = await loadWebGpuBackend();
    const params = randomParams(r, 8, 3, true);
    const save: SavedForward = {};
    await backend.forward(problem, x, params, { kind: "batchAverage" }, undefined, save);
    const dy = x.map((v) => 0.5 * v);
    const inFlight = backend.backward(save, dy, params);
    backend.device.destroy();
    await assert.rejects(() => within(inFlight), DeviceLostError);
    await assert.rejects(() => within(backend.backward(save, dy, params)), DeviceLostError);
  },
);

webgpuTest("a resident tensor's read fails clearly once its device is lost", async () => {
  await using backend = await loadWebGpuBackend();
  using t = backend.upload(x, [4, 8, 1000]);
  const reading = t.read();
  backend.device.destroy();
  await assert.rejects(() => within(reading), DeviceLostError);
  await assert.rejects(() => within(t.read()), DeviceLostError);
});

webgpuTest(
  "an auto layer on WebGPU falls back to WASM after device loss, and says why",
  async () => {
    // Pose as a machine where auto takes WebGPU: lavapipe allowed, no size threshold.
    setEnvironmentForTesting({ webgpuAuto: { minElements: 0, allowFallbackAdapter: true } });
    resetWebGpuForTesting();
    try {
      const sn = new SwitchNorm2d(8);
      const shape = [4, 8, 25, 40];
      const y0 = await within(sn.forward(x, shape));
      assert.equal(sn.backendInfo?.backend, "webgpu", sn.backendInfo?.reason);
      assert.match(sn.backendInfo!.reason, /auto: WebGPU, 32000 elements >= the crossover of 0/);
      const shared = await webgpuBackend();
      const inFlight = sn.forward(x, shape);
      shared.device.destroy();
      await assert.rejects(() => within(inFlight), DeviceLostError);
      const y1 = await within(sn.forward(x, shape));
      assert.notEqual(sn.backendInfo?.backend, "webgpu");
      assert.match(sn.backendInfo!.reason, /the WebGPU device was lost earlier \(destroyed/);
      assert.equal(y1.length, y0.length);
      // An explicit request is not barred: it gets a fresh device.
      const { backend } = await chooseBackend("webgpu");
      assert.notEqual(backend, shared);
      assert.equal((backend as WebGpuBackend).lost, undefined);
      backend.dispose();
    } finally {
      setEnvironmentForTesting(undefined);
      resetWebGpuForTesting();
    }
  },
);

webgpuTest(
  "dispose frees a layer's device buffers, reading newer running buffers back first",
  async () => {
    const backend = await webgpuBackend();
    const base = backend.layerCount;
    const shape = [4, 8, 25, 40];
    const kept = new SwitchNorm2d(8, { backend: "webgpu" });
    {
      using sn = new SwitchNorm2d(8, { backend: "webgpu" }).eval();
      await sn.forward(x, shape);
      assert.equal(backend.layerCount, base + 1);
    } // `using`: disposed here
    assert.equal(backend.layerCount, base);
    using xt = await kept.upload(x, shape);
    (await kept.forward(xt)).dispose(); // training: running buffers now newer on the GPU
    kept.dispose();
    await kept.sync(); // the read-back that dispose started
    assert.equal(backend.layerCount, base);
    const want = new SwitchNorm2d(8, { backend: "reference" });
    await want.forward(x, shape);
    assert.ok(Math.abs(kept.running_mean[3] - want.running_mean[3]) < 1e-6);
  },
);

webgpuTest("a disposed backend releases its pool and device and refuses later calls", async () => {
  const params = randomParams(r, 8, 3, true);
  let pooled: number;
  {
    await using backend = await loadWebGpuBackend();
    await backend.forward(problem, x, params, { kind: "batchAverage" });
    pooled = backend.ctx.pooledBytes;
    assert.ok(pooled > 0, "buffers are pooled between calls");
    // A second call of the same shape reuses them rather than allocating more.
    await backend.forward(problem, x, params, { kind: "batchAverage" });
    assert.equal(backend.ctx.pooledBytes, pooled);
    await backend.disposeAsync();
    assert.equal(backend.ctx.pooledBytes, 0);
    await assert.rejects(
      () => backend.forward(problem, x, params, { kind: "batchAverage" }),
      /used after dispose\(\)/,
    );
  }
  const sync = await loadWebGpuBackend();
  {
    using b = sync; // Symbol.dispose works too
    assert.equal(b.lost, undefined);
  }
  assert.equal(sync.lost, "the backend was disposed");
});
