/**
 * GPU-resident tensors through the layer API: chains without readback, `out`, buffers of the
 * caller's own, running buffers that live on the GPU until `sync()`, and backward on them.
 */
import assert from "node:assert/strict";
import {
  GpuTensor,
  SwitchNorm1d,
  SwitchNorm2d,
  SwitchNorm3d,
  webgpuDevice,
  wrapGpuBuffer,
} from "../mod.ts";
import { assertClose, assertSameRecords, assertSameValues } from "./_close.ts";
import { GRAD, RUNNING, Y } from "./_tolerances.ts";
import { normal, ORACLE, rng, webgpuTest } from "./_webgpu.ts";

function data(seed: number, length: number, offset = 0): Float32Array<ArrayBuffer> {
  const r = rng(seed);
  return Float32Array.from({ length }, () => offset + normal(r));
}

/** A layer's state as loadStateDict takes it (StateDict has no index signature). */
function dict(layer: { stateDict(): object }): Record<string, unknown> {
  return { ...layer.stateDict() };
}

webgpuTest(
  "a chain of resident layers gives what Float32Array calls give, reading back once",
  async () => {
    const shape = [3, 6, 9, 7];
    const x = data(1, 3 * 6 * 9 * 7, 2);
    const gpu = [
      new SwitchNorm2d(6, { backend: "webgpu" }),
      new SwitchNorm2d(6, { backend: "webgpu" }),
    ];
    const cpu = [
      new SwitchNorm2d(6, { backend: ORACLE }),
      new SwitchNorm2d(6, { backend: ORACLE }),
    ];
    gpu[1].loadStateDict({ ...gpu[1].stateDict(), mean_weight: [0.3, -1, 2] });
    cpu[1].loadStateDict(dict(gpu[1]));
    // Two training steps, then one in eval: the second step must see the first's running buffers,
    // which never left the GPU.
    for (const mode of ["train", "train", "eval"] as const) {
      for (const l of [...gpu, ...cpu]) l.train(mode === "train");
      using xt = await gpu[0].upload(x, shape);
      using h = await gpu[0].forward(xt);
      using yt = await gpu[1].forward(h);
      assert.ok(yt instanceof GpuTensor && h instanceof GpuTensor);
      assert.deepEqual(yt.shape, shape);
      const want = await cpu[1].forward(await cpu[0].forward(x, shape), shape);
      assertClose(await yt.read(), want, Y, `${mode}: y`);
      assert.equal(gpu[0].backendInfo?.backend, "webgpu");
    }
    for (const [i, l] of gpu.entries()) {
      assert.throws(() => l.stateDict(), /await layer\.sync\(\)/);
      assert.throws(() => l.running_mean, /await layer\.sync\(\)/);
      await l.sync();
      assertClose(l.running_mean, cpu[i].running_mean, RUNNING, `layer ${i}: running_mean`);
      assertClose(l.running_var, cpu[i].running_var, RUNNING, `layer ${i}: running_var`);
    }
  },
);

webgpuTest("an optimiser step between resident calls keeps the GPU's running buffers", async () => {
  const shape = [4, 3, 5, 5];
  const x = data(2, 300);
  const gpu = new SwitchNorm2d(3, { backend: "webgpu" });
  const cpu = new SwitchNorm2d(3, { backend: ORACLE });
  for (const l of [gpu, cpu]) {
    l.step((p) => p.fill(0.5)); // bumps the parameter version, not the running buffers
  }
  using xt = await gpu.upload(x, shape);
  (await gpu.forward(xt)).dispose();
  await cpu.forward(x, shape);
  gpu.step((p) => p.fill(0.25));
  cpu.step((p) => p.fill(0.25));
  (await gpu.forward(xt)).dispose();
  await cpu.forward(x, shape);
  await gpu.sync();
  assertClose(gpu.running_mean, cpu.running_mean, RUNNING, "running_mean");
  assertClose(gpu.running_var, cpu.running_var, RUNNING, "running_var");
  // A load replaces the device's newer buffers: the CPU's write wins.
  gpu.loadStateDict(dict(cpu));
  (await gpu.forward(xt)).dispose();
  await cpu.forward(x, shape);
  await gpu.sync();
  assertClose(gpu.running_var, cpu.running_var, RUNNING, "after load");
});

webgpuTest("forward fills out: a Float32Array, another tensor, and x itself", async () => {
  const shape = [2, 5, 3, 3, 3];
  const x = data(3, 270, -7);
  const sn = new SwitchNorm3d(5, { backend: "webgpu" }).eval();
  sn.loadStateDict({ ...sn.stateDict(), running_mean: [-7, -7, -7, -7, -7] });
  const want = await sn.forward(x, shape);
  const out = new Float32Array(270);
  assert.equal(await sn.forward(x, shape, { out }), out);
  assertSameValues(out, want, "out");
  using xt = await sn.upload(x, shape);
  using yt = await sn.upload(new Float32Array(270), shape);
  assert.equal(await sn.forward(xt, { out: yt }), yt);
  assertSameValues(await yt.read(), want, "resident out");
  assert.equal(await sn.forward(xt, { out: xt }), xt); // in place
  assertSameValues(await xt.read(), want, "in place");
});

webgpuTest(
  "a GPUBuffer of the caller's own is wrapped, used and left alone on dispose",
  async () => {
    const device = await webgpuDevice();
    const shape = [7, 3]; // 21 floats: 84 bytes, a buffer must have 96
    const x = data(4, 21, 100);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const small = device.createBuffer({ size: 84, usage });
    await assert.rejects(() => wrapGpuBuffer(small, shape), /at least 96 bytes/);
    const mine = device.createBuffer({ size: 96, usage });
    device.queue.writeBuffer(mine, 0, x);
    const sn = new SwitchNorm1d(3, { backend: "webgpu" });
    const ref = new SwitchNorm1d(3, { backend: ORACLE });
    {
      using xt = await wrapGpuBuffer(mine, shape);
      assert.equal(xt.buffer, mine);
      assert.equal(xt.device, device);
      using yt = await sn.forward(xt);
      assertClose(await yt.read(), await ref.forward(x, shape), Y, "y");
    }
    // The wrapper's dispose did not destroy the buffer: it still reads.
    using again = await wrapGpuBuffer(mine, shape);
    assertSameValues(await again.read(), x, "the wrapped buffer after dispose");
    small.destroy();
  },
);

webgpuTest("a Float32Array forward reads back once, a resident forward not at all", async () => {
  const proto = GPUBuffer.prototype as { mapAsync: GPUBuffer["mapAsync"] };
  const original = proto.mapAsync;
  let maps = 0;
  proto.mapAsync = function (this: GPUBuffer, ...args: Parameters<GPUBuffer["mapAsync"]>) {
    maps++;
    return original.apply(this, args);
  };
  try {
    const sn = new SwitchNorm2d(4, { backend: "webgpu" }); // training: running buffers update
    const x = data(5, 4 * 4 * 6 * 6);
    await sn.forward(x, [4, 4, 6, 6]);
    assert.equal(maps, 1, "y and the running buffers share one mapAsync");
    using xt = await sn.upload(x, [4, 4, 6, 6]);
    maps = 0;
    (await sn.forward(xt)).dispose();
    assert.equal(maps, 0, "a resident call reads nothing back");
    await sn.sync();
    assert.equal(maps, 1, "sync() reads the running buffers back");
  } finally {
    proto.mapAsync = original;
  }
});

webgpuTest(
  "backward with a resident dy gives what a Float32Array dy gives, with one readback per call",
  async () => {
    const proto = GPUBuffer.prototype as { mapAsync: GPUBuffer["mapAsync"] };
    const original = proto.mapAsync;
    let maps = 0;
    proto.mapAsync = function (this: GPUBuffer, ...args: Parameters<GPUBuffer["mapAsync"]>) {
      maps++;
      return original.apply(this, args);
    };
    try {
      for (
        const [Layer, shape] of [[SwitchNorm2d, [3, 4, 7, 5]], [SwitchNorm1d, [37, 4]]] as const
      ) {
        const length = shape.reduce((a: number, b: number) => a * b, 1);
        const x = data(6, length, 3), dy = data(7, length);
        const plain = new Layer(4, { backend: "webgpu" });
        const resident = new Layer(4, { backend: "webgpu" });
        await plain.forward(x, [...shape]);
        maps = 0;
        const want = await plain.backward(dy);
        assert.equal(maps, 1, `${Layer.name}: dx and the gradient sums share one mapAsync`);
        using xt = await resident.upload(x, [...shape]);
        using yt = await resident.forward(xt);
        using dyt = await resident.upload(dy, [...shape]);
        maps = 0;
        using dxt = await resident.backward(dyt);
        assert.equal(maps, 1, `${Layer.name}: only the gradient sums are read back`);
        assert.ok(dxt instanceof GpuTensor && yt instanceof GpuTensor);
        assert.deepEqual(dxt.shape, [...shape]);
        assertSameValues(await dxt.read(), want, `${Layer.name}: dx`);
        assertSameRecords(resident.grads, plain.grads, `${Layer.name}: grads`);
      }
    } finally {
      proto.mapAsync = original;
    }
  },
);

webgpuTest(
  "two layers run forward and then backward in reverse order agree with the reference",
  async () => {
    const shape = [4, 6, 5, 3]; // M = 15: rows straddle vec4s
    const x = data(8, 4 * 6 * 5 * 3, 10), dy = data(9, 4 * 6 * 5 * 3);
    const make = (backend: "webgpu" | "reference") => {
      const layers = [new SwitchNorm2d(6, { backend }), new SwitchNorm2d(6, { backend })];
      layers[1].loadStateDict({ ...layers[1].stateDict(), mean_weight: [0.3, -1, 2] });
      return layers;
    };
    const cpu = make("reference");
    await cpu[1].forward(await cpu[0].forward(x, shape), shape);
    const wantDx = await cpu[0].backward(await cpu[1].backward(dy));
    for (const resident of [false, true]) {
      const gpu = make("webgpu");
      let dx: Float32Array;
      if (resident) {
        using xt = await gpu[0].upload(x, shape);
        using h = await gpu[0].forward(xt);
        using y = await gpu[1].forward(h);
        using dyt = await gpu[1].upload(dy, shape);
        using dh = await gpu[1].backward(dyt);
        using dxt = await gpu[0].backward(dh);
        assert.ok(y instanceof GpuTensor);
        dx = await dxt.read();
      } else {
        await gpu[1].forward(await gpu[0].forward(x, shape), shape);
        dx = await gpu[0].backward(await gpu[1].backward(dy));
      }
      const at = resident ? "resident" : "Float32Array";
      assertClose(dx, wantDx, GRAD, `${at}: dx`);
      for (const [i, layer] of gpu.entries()) {
        for (const [name, g] of Object.entries(cpu[i].grads)) {
          assertClose(layer.grads[name as keyof typeof layer.grads], g, GRAD, `${at}: ${name}`);
        }
      }
    }
  },
);
