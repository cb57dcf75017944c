/**
 * The shared vector suite (forward, running buffers, backward; tests/_suite.ts) in headless
 * Chromium on every backend, the library loaded as the browser bundle of mod.ts from a page on
 * 127.0.0.1 (tests/_runtimes.ts). WebGPU there is Dawn with the Tint shader compiler on
 * SwiftShader, a second WebGPU implementation beside Deno's wgpu/Naga: WGSL that only Naga
 * accepts fails here. Chromium is Debian's `chromium` (.ci/run installs it).
 */
import { findTool, testSuiteInRuntime } from "./_runtimes.ts";

const chromium = await findTool("chromium", /^Chromium \d+/, "install Debian's chromium package");

/** Flags that run Chromium as CI can: no display, as root, with WebGPU. */
const FLAGS = [
  "--headless=new", // also makes (and removes) a temporary profile
  "--no-sandbox", // CI runs as root, where Chromium's sandbox cannot start
  "--enable-unsafe-webgpu", // WebGPU on Linux (SwiftShader's Vulkan where there is no GPU)
];

testSuiteInRuntime(
  chromium,
  "headless Chromium",
  ["reference", "wasm", "webgpu"],
  (origin, backend) => [...FLAGS, `${origin}/?backend=${backend}`],
  // A guard against a hung page, not a speed check: SwiftShader compiles and runs every shader on
  // the CPU. The WebGPU suite took 1m6s to 1m16s in CI at session 39's main and 2m55s at session
  // 40's (its shaders grew: triples, wide-line sums; measured beside a second CI run on 2 cores),
  // which the 120 s this guard had failed.
  300_000,
);
