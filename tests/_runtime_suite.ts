/**
 * The shared vector suite as a runtime other than Deno runs it: the entry point that
 * tests/_runtimes.ts bundles for the browser and loads, beside the bundle of mod.ts, into headless
 * Chromium and into Node. It takes the library and the raw vectors as parameters and returns a
 * report that the Deno test turns into a pass or a failure; it never throws.
 *
 * @module
 */
import type { BackendName } from "../backends/_backend.ts";
import { type LayerClasses, SUITE_PARTS } from "./_suite.ts";
import { parseCase } from "./_vectors.ts";
import * as WGSL from "../shaders/_wgsl.ts";

/** What one run of the suite on one backend found. */
export interface SuiteReport {
  readonly backend: BackendName;
  /** Why the backend cannot run in this runtime (then nothing ran), e.g. no WebGPU adapter. */
  readonly missing?: string;
  /** Cases x parts (forward, backward) that ran. */
  readonly ran: number;
  /** "part case: message" of each failure. */
  readonly failures: string[];
  /** The runtime, and for WebGPU the adapter, in words. */
  readonly where: string;
}

/** The adapter this runtime offers, in words, or why there is none. */
async function adapterInfo(): Promise<{ adapter?: GPUAdapter; name?: string; missing?: string }> {
  const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  if (!gpu) return { missing: "this runtime has no WebGPU (navigator.gpu is undefined)" };
  const adapter = await gpu.requestAdapter();
  if (!adapter) return { missing: "navigator.gpu.requestAdapter() found no adapter" };
  const i = adapter.info;
  const name = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(" ");
  return { adapter, name };
}

/**
 * What this runtime's WGSL compiler says about each shader: errors, and warnings too, since a
 * construct one compiler only warns about may be one another rejects.
 */
async function compilerMessages(adapter: GPUAdapter): Promise<string[]> {
  const device = await adapter.requestDevice();
  const out: string[] = [];
  try {
    for (const [name, code] of Object.entries(WGSL)) {
      const info = await device.createShaderModule({ code, label: name }).getCompilationInfo();
      for (const m of info.messages) {
        out.push(`WGSL ${name}: ${m.type} at ${m.lineNum}:${m.linePos}: ${m.message}`);
      }
    }
  } finally {
    device.destroy();
  }
  return out;
}

/**
 * Runs every case of `raws` (parsed JSON of tests/vectors/*.json) forward and backward on
 * `backend`, with the library `lib` (the bundle of mod.ts). On WebGPU, every message of the WGSL
 * compiler about the library's shaders is a failure as well.
 */
export async function runVectorSuite(
  lib: LayerClasses,
  raws: Record<string, unknown>[],
  backend: BackendName,
  runtime: string,
): Promise<SuiteReport> {
  let where = runtime;
  const failures: string[] = [];
  if (backend === "webgpu") {
    const { adapter, name, missing } = await adapterInfo();
    if (!adapter) return { backend, missing, ran: 0, failures, where };
    where += `, adapter "${name}"`;
    failures.push(...await compilerMessages(adapter));
  }
  let ran = 0;
  for (const raw of raws) {
    const v = parseCase(raw);
    for (const [part, run] of Object.entries(SUITE_PARTS)) {
      ran++;
      try {
        await run(lib, v, backend);
      } catch (e) {
        failures.push(`${part} ${v.name}: ${(e as Error).message}`);
      }
    }
  }
  return { backend, ran, failures, where };
}
