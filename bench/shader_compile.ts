/**
 * Compile time of each WGSL compute shader: the time `createComputePipelineAsync` (layout "auto")
 * takes per shader of `shaders/_wgsl.ts` on this machine's WebGPU adapter, which every new device
 * pays once per pipeline it uses (tests create many; lavapipe's and SwiftShader's compiles are
 * slow). A heavy WGSL function with several call sites is inlined at each: session 40's
 * sn1d_bwd_wide_reduce grew from ~0.8 s to 4.6 s so, and CI's main pass with it. Prints one line
 * per shader, slowest first, in milliseconds, and the total; with a second checkout, both and
 * their ratio (for example `git archive REV | tar -x -C DIR`).
 *
 *   deno run --allow-read bench/shader_compile.ts [OLD_DIR]
 */

/** Milliseconds per shader name (NaN where it did not compile), the shaders of `dir`. */
async function compileTimes(device: GPUDevice, dir: string): Promise<Map<string, number>> {
  const shaders: Record<string, unknown> = await import(`${dir}/shaders/_wgsl.ts`);
  const times = new Map<string, number>();
  for (const [name, code] of Object.entries(shaders)) {
    if (typeof code !== "string" || !code.includes("@compute")) continue;
    device.pushErrorScope("validation");
    const t0 = performance.now();
    const module = device.createShaderModule({ code });
    const made = await device
      .createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint: "main" } })
      .then(() => true, () => false);
    const ms = performance.now() - t0;
    const error = await device.popErrorScope();
    times.set(name, made && !error ? ms : NaN);
  }
  return times;
}

if (import.meta.main) {
  const adapter = await navigator.gpu?.requestAdapter();
  if (!adapter) {
    console.error("no WebGPU adapter");
    Deno.exit(1);
  }
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBuffersPerShaderStage: adapter.limits.maxStorageBuffersPerShaderStage,
    },
  });
  const here = new URL("..", import.meta.url).href.replace(/\/$/, "");
  const old = Deno.args[0];
  const other = old
    ? await compileTimes(device, new URL(old, `file://${Deno.cwd()}/`).href)
    : undefined;
  const mine = await compileTimes(device, here);
  const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + (b || 0), 0);
  for (const [name, ms] of [...mine].sort((a, b) => b[1] - a[1])) {
    const was = other?.get(name);
    console.log(
      was === undefined
        ? `${name.padEnd(28)} ${ms.toFixed(0).padStart(6)} ms`
        : `${name.padEnd(28)} ${was.toFixed(0).padStart(6)} -> ${ms.toFixed(0).padStart(6)} ms (${
          (ms / was).toFixed(2)
        }x)`,
    );
  }
  console.log(
    other
      ? `total ${total(other).toFixed(0)} -> ${total(mine).toFixed(0)} ms`
      : `total ${total(mine).toFixed(0)} ms`,
  );
  device.destroy();
}
