/**
 * The shared vector suite (forward, running buffers, backward; tests/_suite.ts) in headless
 * Chromium on every backend, the library loaded as the browser bundle of mod.ts from a page on
 * 127.0.0.1 (tests/_runtimes.ts). WebGPU there is Dawn with the Tint shader compiler on
 * SwiftShader, a second WebGPU implementation beside Deno's wgpu/Naga: WGSL that only Naga
 * accepts fails here. Chromium is Debian's `chromium` (.ci/run installs it).
 */
import { CHROMIUM_FLAGS, findChromium, testSuiteInRuntime } from "./_runtimes.ts";

const chromium = await findChromium();

testSuiteInRuntime(
  chromium,
  "headless Chromium",
  ["reference", "wasm", "webgpu"],
  (origin, backend) => [...CHROMIUM_FLAGS, `${origin}/?backend=${backend}`],
  // A guard against a hung page, not a speed check: SwiftShader compiles and runs every shader on
  // the CPU. The WebGPU suite took 1m6s to 1m16s in CI at session 39's main and 2m55s at session
  // 40's (its shaders grew: triples, wide-line sums; measured beside a second CI run on 2 cores),
  // which the 120 s this guard had failed.
  300_000,
);
