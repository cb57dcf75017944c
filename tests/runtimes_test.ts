/**
 * Where the library runs and what it needs, as README's "Runtimes and permissions" states it. Each
 * test runs tests/_bare_probe.ts in a fresh `deno run` with NO permission flags (the script comes
 * on stdin), optionally after posing as a more limited runtime: no WebAssembly SIMD, WebAssembly
 * compilation refused by the embedder (edge runtimes, pages with a strict Content-Security-Policy),
 * no WebGPU at all. A fresh process each time, because backends and warnings are once per process.
 */
import assert from "node:assert/strict";
import { SwitchNorm2d } from "../mod.ts";
import { type ProbeReport, type ProbeRun, SHAPE, X } from "./_bare_probe.ts";
import { assertClose } from "./_close.ts";
import { currentEnvironment } from "../backends/select.ts";

const PROBE = new URL("./_bare_probe.ts", import.meta.url).href;
const WORKER = new URL("./_bare_worker.ts", import.meta.url).href;
const EXACT = { atol: 0, rtol: 0, why: "the same backend on the same input, in another runtime" };
const hasSimd = currentEnvironment().wasmSimd;

/** Poses: run before the library is imported. */
const NO_SIMD = "WebAssembly.validate = () => false;";
const REFUSE = `() => Promise.reject(
  new WebAssembly.CompileError("Wasm code generation disallowed by embedder"))`;
const COMPILE_REFUSED = `WebAssembly.compile = ${REFUSE}; WebAssembly.instantiate = ${REFUSE};`;
const INSTANTIATE_REFUSED = `WebAssembly.instantiate = ${REFUSE};`;
const NO_WEBGPU = `for (const name of ["GPUBufferUsage", "GPUMapMode", "GPUShaderStage"]) {
  delete globalThis[name];
}
Object.defineProperty(navigator, "gpu", { value: undefined, configurable: true });`;

/**
 * Runs the probe on `requests` under `deno run` with no permission flags, after `pose`, in the
 * main thread or in a Worker, and returns its report. Deno checks read permission for the modules
 * a Worker loads at run time (its own files, a local mod.ts), so a Worker run gets read access to
 * this checkout's folder, and nothing else.
 */
async function bare(
  requests: string[],
  { pose = "", inWorker = false }: { pose?: string; inWorker?: boolean } = {},
): Promise<ProbeReport> {
  const run = inWorker
    ? `const w = new Worker(${JSON.stringify(WORKER)}, { type: "module" });
const report = await new Promise((resolve, reject) => {
  w.onmessage = (e) => resolve(e.data);
  w.onerror = (e) => { e.preventDefault(); reject(new Error(e.message)); };
  w.postMessage(${JSON.stringify(requests)});
});
w.terminate();`
    : `const { probe } = await import(${JSON.stringify(PROBE)});
const report = await probe(${JSON.stringify(requests)});`;
  const script = `${pose}\n${run}\nconsole.log(JSON.stringify(report));\n`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--no-lock",
      ...inWorker ? [`--allow-read=${new URL("../", import.meta.url).pathname}`] : [],
      "-",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(script));
  await writer.close();
  const out = await child.output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `the bare deno run failed:\n${stderr}`);
  const report: ProbeReport = JSON.parse(new TextDecoder().decode(out.stdout));
  for (const [name, state] of Object.entries(report.permissions)) {
    // read: not granted as a whole; a Worker run has it for the checkout's folder only.
    assert.notEqual(state, "granted", `the subprocess had ${name} permission`);
  }
  return report;
}

/** y of `backend` computed here, in the test process, for comparison. */
async function here(backend: "wasm" | "reference"): Promise<Float32Array> {
  return await new SwitchNorm2d(3, { backend }).forward(X, SHAPE);
}

function assertRan(run: ProbeRun, backend: string, want: Float32Array, what: string): void {
  assert.equal(run.error, undefined, `${what}: threw ${run.error}`);
  assert.equal(run.ran, backend, `${what}: ran ${run.ran} (${run.reason})`);
  assertClose(run.y!, want, EXACT, `${what}: y`);
}

Deno.test({
  name:
    "a script importing mod.ts runs the wasm and reference backends under deno run with no permission flags",
  ignore: !hasSimd,
  async fn() {
    const report = await bare(["auto", "wasm", "reference"]);
    for (const backend of ["wasm", "reference"] as const) {
      assertRan(report.runs[backend][0], backend, await here(backend), backend);
    }
    assertRan(report.runs.auto[0], "wasm", await here("wasm"), "auto");
    assert.deepEqual(report.warnings, []);
  },
});

Deno.test({
  name:
    "mod.ts runs the wasm and reference backends in a Deno Worker, given only read access to its files",
  ignore: !hasSimd,
  async fn() {
    const report = await bare(["auto", "wasm", "reference"], { inWorker: true });
    for (const backend of ["wasm", "reference"] as const) {
      assertRan(report.runs[backend][0], backend, await here(backend), backend);
    }
    assertRan(report.runs.auto[0], "wasm", await here("wasm"), "auto");
  },
});

Deno.test("without WebAssembly SIMD, auto falls back to reference with one warning and wasm throws", async () => {
  const report = await bare(["auto", "wasm"], { pose: NO_SIMD });
  const want = await here("reference");
  for (const run of report.runs.auto) {
    assertRan(run, "reference", want, "auto");
    assert.match(run.reason!, /WebAssembly SIMD is not available here, fell back to reference/);
  }
  assert.equal(report.warnings.length, 1, `warnings: ${report.warnings.join(" | ")}`);
  assert.match(report.warnings[0], /WebAssembly SIMD is not available here/);
  for (const run of report.runs.wasm) {
    assert.match(run.error ?? "", /backend "wasm" needs WebAssembly SIMD/);
    assert.deepEqual(run.running_mean, [0, 0, 0]);
  }
});

Deno.test({
  name: "a WebAssembly failure that is not a refusal (memory not reserved) keeps its own error, " +
    "and auto does not take it for a refusal",
  ignore: !hasSimd,
  async fn() {
    const oom = `() => Promise.reject(
      new RangeError("WebAssembly.Memory(): could not allocate memory"))`;
    const report = await bare(["auto", "wasm"], {
      pose: `WebAssembly.compile = ${oom}; WebAssembly.instantiate = ${oom};`,
    });
    for (const run of [...report.runs.auto, ...report.runs.wasm]) {
      assert.equal(run.error, "RangeError: WebAssembly.Memory(): could not allocate memory");
    }
    assert.equal(report.runs.auto.length + report.runs.wasm.length > 0, true);
    assert.equal(report.warnings.length, 0, `warnings: ${report.warnings.join(" | ")}`);
  },
});

for (
  const [what, pose] of [
    ["WebAssembly.compile and instantiate reject", COMPILE_REFUSED],
    ["WebAssembly.instantiate rejects", INSTANTIATE_REFUSED],
  ]
) {
  Deno.test({
    name: `when ${what} (code generation disallowed), auto falls back to reference with one ` +
      "warning naming the reason and wasm throws an error saying what to do",
    ignore: !hasSimd,
    async fn() {
      const report = await bare(["auto", "wasm"], { pose });
      const want = await here("reference");
      for (const run of report.runs.auto) {
        assertRan(run, "reference", want, "auto");
        assert.match(
          run.reason!,
          /runtime refused to compile WebAssembly .*disallowed by embedder/,
        );
      }
      assert.equal(report.warnings.length, 1, `warnings: ${report.warnings.join(" | ")}`);
      assert.match(
        report.warnings[0],
        /refused to compile WebAssembly \(CompileError: Wasm code generation disallowed by embedder\), fell back to reference/,
      );
      for (const run of report.runs.wasm) {
        assert.match(
          run.error ?? "",
          /^WasmRefusedError: backend "wasm": this runtime refused to compile WebAssembly \(CompileError: Wasm code generation disallowed by embedder\); allow WebAssembly compilation .* or use backend "reference"/,
        );
        assert.deepEqual(run.running_mean, [0, 0, 0]);
      }
    },
  });
}

Deno.test({
  name:
    "without WebGPU (no navigator.gpu, no GPU globals) mod.ts loads, auto runs wasm and webgpu throws clearly",
  ignore: !hasSimd,
  async fn() {
    const report = await bare(["auto", "webgpu"], { pose: NO_WEBGPU });
    assertRan(report.runs.auto[0], "wasm", await here("wasm"), "auto");
    for (const run of report.runs.webgpu) {
      assert.match(run.error ?? "", /navigator\.gpu is undefined/);
    }
    assert.deepEqual(report.warnings, []);
  },
});
