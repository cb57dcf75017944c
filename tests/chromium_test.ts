/**
 * The shared vector suite (forward, running buffers, backward; tests/_suite.ts) in headless
 * Chromium on every backend, the library loaded as the browser bundle of mod.ts from a page on
 * 127.0.0.1 (tests/_runtimes.ts). WebGPU there is Dawn with the Tint shader compiler on
 * SwiftShader, a second WebGPU implementation beside Deno's wgpu/Naga: WGSL that only Naga
 * accepts fails here. Chromium is Debian's `chromium` (.ci/run installs it).
 */
import assert from "node:assert/strict";
import { findTool, runAndReport, serveSuite, testInRuntime } from "./_runtimes.ts";

const chromium = await findTool("chromium", "install Debian's chromium package");

testInRuntime(
  chromium,
  ["reference", "wasm", "webgpu"],
  (b) =>
    `headless Chromium: the shared vectors (forward, running buffers, backward) match PyTorch on ${b}`,
  async (backend) => {
    const server = await serveSuite();
    try {
      const report = await runAndReport(server, chromium.command, [
        "--headless=new",
        "--no-sandbox", // CI runs as root, where Chromium's sandbox cannot start
        "--enable-unsafe-webgpu", // WebGPU on Linux (SwiftShader where there is no GPU)
        `${server.origin}/?backend=${backend}`,
      ], 120_000);
      assert.equal(
        report.missing,
        undefined,
        `${backend} is missing in Chromium: ${report.missing}`,
      );
      assert.deepEqual(report.failures, [], `on ${report.where}`);
      assert.ok(report.ran >= 60, `only ${report.ran} cases ran`);
    } finally {
      await server.close();
    }
  },
);
