/**
 * The WASM backend on 2 threads outside Deno, loaded as the browser bundle (of
 * tests/_runtime_threads.ts, which imports the library and its thread test hooks, bundled as
 * tests/_runtimes.ts bundles the library): forward and backward on a tensor above the one-thread
 * threshold must be split across the calling thread and a worker (the worker running some of the
 * rows) and give the same bits as on 1 thread; a backend whose worker fails to start must run
 * on 1 thread and say why.
 *
 * - Headless Chromium, on a page served cross-origin isolated
 *   (`Cross-Origin-Opener-Policy: same-origin`, `Cross-Origin-Embedder-Policy: require-corp`), so
 *   that it has SharedArrayBuffer, and in a dedicated worker of that page: the backend's worker is
 *   a web Worker from a `blob:` URL. The same page without those headers is not isolated: the
 *   backend says so and runs on one thread.
 * - Node: the worker is a node:worker_threads worker, and the process exits by itself.
 */
import assert from "node:assert/strict";
import { bundle, findTool, testWithTool } from "./_runtimes.ts";
import type { ThreadsReport } from "./_runtime_threads.ts";

const chromium = await findTool("chromium", /^Chromium \d+/, "install Debian's chromium package");
const node = await findTool("node", /^v\d+\./, "install Node.js 20 or later");

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

/**
 * Node: fetches the bundle and imports it from a data: URL (as tests/_runtimes.ts's NODE_RUNNER
 * does), runs the check, posts the report; the same text as a script or as an ES module.
 * Argument: origin.
 */
const NODE_PROGRAM = `(async () => {
  const origin = process.argv[1];
  let report;
  try {
    const text = await (await fetch(origin + "/threads.js")).text();
    const { runThreadsCheck } = await import(
      "data:text/javascript;base64," + Buffer.from(text).toString("base64")
    );
    report = await runThreadsCheck();
  } catch (e) {
    report = { failures: ["node failed: " + (e && e.stack || e)] };
  }
  await fetch(origin + "/report", { method: "POST", body: JSON.stringify(report) });
})();
`;

/**
 * Serves the page and its bundle on 127.0.0.1, isolated or not, and runs `command` on it (given
 * the origin): the report it posts. With `exitWithinMs`, also the exit code of the command if it
 * exited by itself within that time after posting (else "running"); it is then killed.
 */
async function check(
  isolated: boolean,
  command: string,
  args: (origin: string) => string[],
  exitWithinMs = 0,
): Promise<ThreadsReport & { exit?: number | "running" }> {
  const script = await bundle("tests/_runtime_threads.ts");
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
  const child = new Deno.Command(command, {
    args: args(`http://127.0.0.1:${server.addr.port}`),
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
    const got = await Promise.race([
      report,
      child.status.then((s) => {
        throw new Error(`${command} exited (code ${s.code}) without a report:\n${stderr}`);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${command} gave no report within 120 s:\n${stderr}`)),
          120_000,
        );
      }),
    ]);
    if (exitWithinMs === 0) return got;
    const exit = await Promise.race([
      child.status.then((st) => st.code),
      new Promise<"running">((resolve) =>
        timer = setTimeout(() => resolve("running"), exitWithinMs)
      ),
    ]);
    return { ...got, exit };
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
      "and backward; a worker that fails to start leaves 1 thread, with the reason",
    async () => {
      const r = await check(true, chromium.command, (origin) => [
        "--headless=new", // also makes (and removes) a temporary profile
        "--no-sandbox", // CI runs as root, where Chromium's sandbox cannot start
        `${origin}/${inWorker ? "?worker" : ""}`,
      ]);
      assert.deepEqual(r.failures, [], `in ${r.where}`);
      assert.equal(r.crossOriginIsolated, true, "the page is not cross-origin isolated");
      assert.ok(r.elements >= 1 << 18, "the tensor must be above the one-thread threshold");
      assert.match(r.reason, /; 2 threads \(calls under \d+ elements on 1\)$/);
      // 2 runs x (training statistics, normalize, backward sums, dx; eval statistics, normalize).
      assert.equal(r.splits, 12, "calls split 2 ways");
      assert.ok(r.workerChunks > 0, "the worker ran no rows");
      assert.deepEqual(r.differences, [], "2 threads differ from 1");
      assert.match(r.failedStart, /^1 thread: a worker thread failed to start: .*cannot start/);
    },
  );
}

testWithTool(
  chromium,
  "headless Chromium, not cross-origin isolated: the WASM backend runs on 1 thread and says why, with the same bits",
  async () => {
    const r = await check(false, chromium.command, (origin) => [
      "--headless=new",
      "--no-sandbox",
      `${origin}/`,
    ]);
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

// As an ES module (--input-type=module, which Node passes on to workers, so that the worker's
// text runs as a module too) and as a script.
for (const esm of [true, false]) {
  testWithTool(
    node,
    `Node, ${esm ? "an ES module" : "a script"}: the WASM backend runs on 2 threads ` +
      "(node:worker_threads) with the same bits as on 1, forward and backward, and the process " +
      "exits by itself; a worker that fails to start leaves 1 thread, with the reason",
    async () => {
      const r = await check(
        false,
        node.command,
        (origin) => [...(esm ? ["--input-type=module"] : []), "--eval", NODE_PROGRAM, origin],
        20_000,
      );
      assert.deepEqual(r.failures, [], `in ${r.where}`);
      assert.match(r.reason, /; 2 threads \(calls under \d+ elements on 1\)$/);
      assert.equal(r.splits, 12, "calls split 2 ways");
      assert.ok(r.workerChunks > 0, "the worker ran no rows");
      assert.deepEqual(r.differences, [], "2 threads differ from 1");
      assert.match(r.failedStart, /^1 thread: a worker thread failed to start: .*cannot start/);
      // Idle workers must not keep the process alive.
      assert.equal(r.exit, 0, "the process did not exit by itself within 20 s");
    },
  );
}
