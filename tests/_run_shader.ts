/**
 * One dispatch of a test's own WGSL on a device, for the tests that probe how an adapter (or an
 * emulation of another's compiler) computes a few float32 values: its buffers written, its
 * `main` run, one of them read back. Validation errors are thrown, not left to the console.
 *
 * @module
 */

/** A buffer of the shader's bind group 0. */
export interface ShaderBuffer {
  /** Its binding number in group 0. */
  binding: number;
  /** Its contents before the dispatch. */
  data: ArrayBufferView<ArrayBuffer>;
  /** A uniform buffer (var<uniform>), else a storage buffer. */
  uniform?: boolean;
}

/**
 * Runs `code`'s entry point `main` over `workgroups` workgroups with `buffers` bound in group 0,
 * and returns the contents of the storage buffer at binding `read` afterwards as float32 values.
 *
 * @example
 * ```ts ignore
 * const out = await runShader(device, code, [{ binding: 0, data: new Float32Array(8) }], 1, 0);
 * ```
 */
export async function runShader(
  device: GPUDevice,
  code: string,
  buffers: ShaderBuffer[],
  workgroups: number,
  read: number,
): Promise<Float32Array> {
  device.pushErrorScope("validation");
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
  });
  const gpuBuffers = buffers.map((b) => {
    const buffer = device.createBuffer({
      size: Math.max(16, Math.ceil(b.data.byteLength / 16) * 16),
      usage: b.uniform
        ? GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST
        : GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    device.queue.writeBuffer(buffer, 0, b.data);
    return buffer;
  });
  const at = buffers.findIndex((b) => b.binding === read);
  if (at < 0 || buffers[at].uniform) throw new Error(`no storage buffer at binding ${read}`);
  const size = gpuBuffers[at].size;
  const readBack = device.createBuffer({
    size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(
    0,
    device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((b, i) => ({ binding: b.binding, resource: { buffer: gpuBuffers[i] } })),
    }),
  );
  pass.dispatchWorkgroups(workgroups);
  pass.end();
  encoder.copyBufferToBuffer(gpuBuffers[at], 0, readBack, 0, size);
  device.queue.submit([encoder.finish()]);
  const err = await device.popErrorScope();
  if (err) throw new Error(err.message);
  await readBack.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(readBack.getMappedRange().slice(0));
  readBack.unmap();
  for (const b of [...gpuBuffers, readBack]) b.destroy();
  return out;
}

/**
 * Runs `fn` with a device of its own on the default adapter, and destroys the device after it
 * however `fn` ends. Throws where there is no adapter.
 */
export async function withDevice<T>(fn: (device: GPUDevice) => Promise<T>): Promise<T> {
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("no WebGPU adapter");
  const device = await adapter.requestDevice();
  try {
    return await fn(device);
  } finally {
    device.destroy();
  }
}
