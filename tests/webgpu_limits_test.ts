/**
 * What exceeds the WebGPU device's limits fails with a RangeError where it is asked for, not
 * later as a bare "validation error": upload, wrapping a buffer, and any buffer the backend
 * would make. The device here asks for a maxBufferSize of WebGPU's default (256 MiB) instead of
 * the adapter's, so that the tensors above it are cheap (their pages are never written).
 */
import assert from "node:assert/strict";
import { loadWebGpuBackend } from "../backends/webgpu.ts";
import { webgpuTest } from "./_webgpu.ts";

const MiB = 2 ** 20;

webgpuTest(
  "an upload above the device's maxBufferSize throws a RangeError naming the limit, and the " +
    "backend stays usable",
  async () => {
    await using backend = await loadWebGpuBackend({ maxBufferBytes: 256 * MiB });
    const max = backend.device.limits.maxBufferSize;
    assert.equal(max, 256 * MiB);
    const floats = max / 4 + 1;
    backend.device.pushErrorScope("validation");
    assert.throws(
      () => backend.upload(new Float32Array(floats), [floats]),
      (e: Error) => {
        assert.ok(e instanceof RangeError, String(e));
        assert.match(e.message, new RegExp(`${floats} floats .* maxBufferSize \\(${max}\\)`));
        return true;
      },
    );
    assert.equal(await backend.device.popErrorScope(), null, "no invalid buffer was made");
    // Exactly at the limit is fine, and so is the backend afterwards.
    using t = backend.upload(new Float32Array(max / 4), [max / 4]);
    assert.equal(t.length, max / 4);
    using small = backend.upload(Float32Array.of(1, 2, 3), [3]);
    assert.deepEqual([...await small.read()], [1, 2, 3]);
  },
);

webgpuTest("an upload whose shape does not describe the data throws a RangeError", async () => {
  await using backend = await loadWebGpuBackend();
  assert.throws(() => backend.upload(new Float32Array(6), [2, 2]), /shape \[2,2\] does not/);
  assert.throws(() => backend.upload(new Float32Array(6), [2, -3]), /shape \[2,-3\] does not/);
});

webgpuTest(
  "wrapping a buffer above the device's maxBufferSize (an invalid buffer) throws a RangeError",
  async () => {
    await using backend = await loadWebGpuBackend({ maxBufferBytes: 256 * MiB });
    const device = backend.device;
    device.pushErrorScope("validation");
    const buffer = device.createBuffer({ size: 256 * MiB + 16, usage: 0x80 | 0x04 | 0x08 });
    assert.notEqual(await device.popErrorScope(), null, "WebGPU made an invalid buffer");
    assert.throws(() => backend.wrap(buffer, [64 * MiB + 4]), /exceed this device's maxBufferSize/);
  },
);

webgpuTest(
  "a buffer the backend would make above maxBufferSize is refused when asked for",
  async () => {
    await using backend = await loadWebGpuBackend({ maxBufferBytes: 256 * MiB });
    assert.throws(
      () => backend.ctx.acquire("storage", 256 * MiB + 1),
      /a buffer of 268435472 bytes is more than this device's maxBufferSize \(268435456\)/,
    );
  },
);
