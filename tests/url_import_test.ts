/**
 * The package must work when imported by URL, as JSR serves it, not only from a file path: the
 * WASM module (and the WGSL shaders) travel inside generated .ts modules for that reason. This
 * serves the repository on 127.0.0.1 and imports mod.ts by URL in a fresh Deno subprocess.
 */
import assert from "node:assert/strict";
import { assertSameValues } from "./_close.ts";
import { SwitchNorm2d } from "../mod.ts";
import type { BackendName } from "../backends/_backend.ts";
import { backendsHere, STRICT } from "./_backends.ts";

const root = new URL("../", import.meta.url);
const SHAPE = [2, 3, 5, 1];
const X = Float32Array.from({ length: 30 }, (_, i) => Math.sin(i) * 3 + i % 4);

/**
 * The script the subprocess runs: one SN2d forward on `backend`, printed as JSON. With `threads`
 * (wasm), on 2 threads with every call split, once the workers run.
 */
function probe(origin: string, backend: BackendName, threads = false): string {
  return `
import { setNumThreads, SwitchNorm2d } from "${origin}/mod.ts";
import { setThreadTestHooks } from "${origin}/backends/_wasm_threads.ts";
if (${threads}) {
  setNumThreads(2);
  setThreadTestHooks({
    minElements: 1,
    chunkElements: 1,
    waitForWorkers: true,
    noBackoff: true,
  });
}
const sn = new SwitchNorm2d(3, { backend: "${backend}" });
const x = new Float32Array(${JSON.stringify(Array.from(X))});
const y = await sn.forward(x, ${JSON.stringify(SHAPE)});
const { backend, reason } = sn.backendInfo;
console.log(JSON.stringify({ ran: backend, reason, y: Array.from(y) }));
`;
}

/** Serves the repository read-only on 127.0.0.1, plus /__probe_<backend>.ts. */
function serve(): Deno.HttpServer<Deno.NetAddr> {
  let origin = "";
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    const probeMatch = path.match(/^\/__probe_([a-z]+)(_threads)?\.ts$/);
    if (probeMatch) {
      return new Response(probe(origin, probeMatch[1] as BackendName, !!probeMatch[2]), {
        headers: { "content-type": "application/typescript" },
      });
    }
    if (path.includes("..")) return new Response("bad path", { status: 400 });
    try {
      const body = await Deno.readFile(new URL(`.${path}`, root));
      return new Response(body, { headers: { "content-type": "application/typescript" } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  origin = `http://127.0.0.1:${server.addr.port}`;
  return server;
}

const backends = (await backendsHere()).filter((b) => b.backend.name !== "reference");

const runs = backends.flatMap((b) =>
  b.backend.name === "wasm" ? [{ ...b, threads: false }, { ...b, threads: true }] : [{
    ...b,
    threads: false,
  }]
);

for (const { backend, missing, threads } of runs) {
  const name = `${backend.name}: mod.ts imported by http URL computes the same as from a file ` +
    `path${threads ? ", on 2 threads" : ""}`;
  if (missing !== undefined && !STRICT) {
    Deno.test({ name: `${name} (skipped: ${missing})`, ignore: true, fn() {} });
    continue;
  }
  Deno.test(name, async () => {
    if (missing !== undefined) throw new Error(`backend ${backend.name} missing in CI: ${missing}`);
    const server = serve();
    try {
      const origin = `127.0.0.1:${server.addr.port}`;
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--quiet",
          "--no-lock",
          "--no-config",
          // Deno caches remote modules by URL: a port an earlier run (of older sources) used
          // must not serve its cached mod.ts.
          "--reload",
          `--allow-import=${origin}`,
          `http://${origin}/__probe_${backend.name}${threads ? "_threads" : ""}.ts`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, `subprocess failed:\n${stderr}`);
      const got = JSON.parse(new TextDecoder().decode(out.stdout));
      const local = new SwitchNorm2d(3, { backend: backend.name });
      const want = await local.forward(X, SHAPE);
      assert.equal(got.ran, backend.name);
      if (threads) assert.match(got.reason, /; 2 threads/);
      assertSameValues(got.y, want, "y");
    } finally {
      await server.shutdown();
    }
  });
}
