/**
 * The WASM backend on 2 threads in headless Chromium: a page served cross-origin isolated
 * (`Cross-Origin-Opener-Policy: same-origin`, `Cross-Origin-Embedder-Policy: require-corp`), so
 * that it has SharedArrayBuffer, starts the backend's worker from a `blob:` URL; forward and
 * backward on a tensor above the one-thread threshold must be split across the page's thread and
 * the worker (the worker running some of the rows) and give the same bits as on 1 thread. The
 * browser side is tests/_browser_threads.ts, bundled for the browser as tests/_runtimes.ts
 * bundles the library. The same page served without those headers is not isolated, and the
 * backend says so and runs on one thread.
 */
import assert from "node:assert/strict";
import { bundle, findTool, testWithTool } from "./_runtimes.ts";
import type { ThreadsReport } from "./_browser_threads.ts";

const chromium = await findTool("chromium", /^Chromium \d+/, "install Debian's chromium package");

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>switchnorm threads</title>
<script type="module">
let report;
try {
  if (location.search === "?worker") {
    // The library inside a dedicated worker of the page (where Atomics.wait may block).
    const w = new Worker("/worker.js", { type: "module" });
    report = await new Promise((resolve, reject) => {
      w.onmessage = (e) => resolve(e.data);
      w.onerror = (e) => reject(new Error("the worker failed: " + e.message));
    });
  } else {
    const { runThreadsCheck } = await import("/threads.js");
    report = await runThreadsCheck();
  }
} catch (e) {
  report = { failures: ["the page failed: " + (e && e.stack || e)] };
}
await fetch("/report", { method: "POST", body: JSON.stringify(report) });
</script>
`;

/** The page's dedicated worker, for the run inside a worker. */
const WORKER = `import { runThreadsCheck } from "/threads.js";
postMessage(await runThreadsCheck());
`;

/** Serves the page and its bundle on 127.0.0.1, isolated or not; resolves the posted report. */
async function checkInChromium(isolated: boolean, inWorker = false): Promise<ThreadsReport> {
  const script = await bundle("tests/_browser_threads.ts");
  const headers: Record<string, string> = isolated
    ? {
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-embedder-policy": "require-corp",
    }
    : {};
  const { promise: report, resolve } = Promise.withResolvers<ThreadsReport>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    if (req.method === "POST" && path === "/report") {
      resolve(await req.json());
      return new Response("ok");
    }
    const body = path === "/"
      ? PAGE
      : path === "/threads.js"
      ? script
      : path === "/worker.js"
      ? WORKER
      : undefined;
    if (body === undefined) return new Response("not found", { status: 404, headers });
    const type = path === "/" ? "text/html" : "text/javascript";
    return new Response(body, { headers: { ...headers, "content-type": type } });
  });
  const child = new Deno.Command(chromium.command, {
    args: [
      "--headless=new", // also makes (and removes) a temporary profile
      "--no-sandbox", // CI runs as root, where Chromium's sandbox cannot start
      `http://127.0.0.1:${server.addr.port}/${inWorker ? "?worker" : ""}`,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const drained = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr = (stderr + chunk).slice(-4000);
    }
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      report,
      child.status.then((s) => {
        throw new Error(`chromium exited (code ${s.code}) without a report:\n${stderr}`);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`chromium gave no report within 120 s:\n${stderr}`)),
          120_000,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    try {
      child.kill("SIGTERM");
    } catch { /* already exited */ }
    await child.status.catch(() => {});
    await drained;
    await server.shutdown();
  }
}

for (const inWorker of [false, true]) {
  testWithTool(
    chromium,
    `headless Chromium, cross-origin isolated, ${
      inWorker ? "in a dedicated worker" : "on the page"
    }: ` +
      "the WASM backend runs on 2 threads (a blob: worker) with the same bits as on 1, forward " +
      "and backward",
    async () => {
      const r = await checkInChromium(true, inWorker);
      assert.deepEqual(r.failures, [], `in ${r.where}`);
      assert.equal(r.crossOriginIsolated, true, "the page is not cross-origin isolated");
      assert.ok(r.elements >= 1 << 18, "the tensor must be above the one-thread threshold");
      assert.match(r.reason, /; 2 threads \(calls under \d+ elements on 1\)$/);
      // 2 runs x (training statistics, normalize, backward sums, dx; eval statistics, normalize).
      assert.equal(r.splits, 12, "calls split 2 ways");
      assert.ok(r.workerChunks > 0, "the worker ran no rows");
      assert.deepEqual(r.differences, [], "2 threads differ from 1");
    },
  );
}

testWithTool(
  chromium,
  "headless Chromium, not cross-origin isolated: the WASM backend runs on 1 thread and says why, with the same bits",
  async () => {
    const r = await checkInChromium(false);
    assert.equal(r.crossOriginIsolated, false);
    assert.match(
      r.reason,
      /1 thread: SharedArrayBuffer is not available \(a browser page needs cross-origin isolation\)$/,
    );
    assert.equal(r.splits, 0);
    assert.deepEqual(r.failures, []);
    assert.deepEqual(r.differences, []);
  },
);
