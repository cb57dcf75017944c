/**
 * The shared vector suite (forward, running buffers, backward; tests/_suite.ts) in headless
 * Chromium on every backend, the library loaded as the browser bundle of mod.ts from a page on
 * 127.0.0.1 (tests/_runtimes.ts). WebGPU there is Dawn with the Tint shader compiler on
 * SwiftShader, a second WebGPU implementation beside Deno's wgpu/Naga: WGSL that only Naga
 * accepts fails here. Chromium is Debian's `chromium` (.ci/run installs it).
 */
import {
  assertReportPassed,
  findTool,
  runAndReport,
  serveSuite,
  testInRuntime,
} from "./_runtimes.ts";

const chromium = await findTool("chromium", /^Chromium \d+/, "install Debian's chromium package");

/** Flags that run Chromium as CI can: no display, as root, with WebGPU. */
const FLAGS = [
  "--headless=new", // also makes (and removes) a temporary profile
  "--no-sandbox", // CI runs as root, where Chromium's sandbox cannot start
  "--enable-unsafe-webgpu", // WebGPU on Linux (SwiftShader's Vulkan where there is no GPU)
];

testInRuntime(
  chromium,
  ["reference", "wasm", "webgpu"],
  (b) =>
    `headless Chromium: the browser bundle matches PyTorch on the shared vectors (forward, running buffers, backward) on ${b}`,
  async (backend) => {
    const server = await serveSuite();
    try {
      const args = [...FLAGS, `${server.origin}/?backend=${backend}`];
      assertReportPassed(await runAndReport(server, chromium.command, args, 120_000), backend);
    } finally {
      await server.close();
    }
  },
);
