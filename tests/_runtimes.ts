/**
 * Runs the shared vector suite in a runtime other than Deno (headless Chromium, Node), as a user
 * of the published package would load it: mod.ts bundled for the browser
 * (`deno bundle --platform browser --format esm`), next to the suite (tests/_runtime_suite.ts,
 * bundled the same way), served with the vectors on 127.0.0.1. The runtime posts its report back
 * to the server. The test writes no file: bundles go to stdout, and headless Chromium makes (and
 * removes) its own temporary profile (it leaves empty crash-report folders in ~/.config).
 *
 * @module
 */
import type { BackendName } from "../backends/_backend.ts";
import { STRICT } from "./_backends.ts";
import type { SuiteReport } from "./_runtime_suite.ts";

/** A program another runtime is, found on PATH or not. */
export interface Tool {
  readonly command: string;
  /** Its version line, or undefined when it is missing. */
  readonly version?: string;
  /** Why it cannot run, when it is missing. */
  readonly missing?: string;
}

/**
 * Asks `command --version` and checks that the answer looks like `version` (Deno answers for a
 * missing `node` itself, so a command that runs is not enough); a missing program comes back
 * with the reason.
 */
export async function findTool(command: string, version: RegExp, hint: string): Promise<Tool> {
  let line;
  try {
    const out = await new Deno.Command(command, {
      args: ["--version"],
      stdout: "piped",
      stderr: "null",
    }).output();
    line = new TextDecoder().decode(out.stdout).trim();
  } catch (e) {
    return { command, missing: `"${command}" is not on PATH (${(e as Error).name}); ${hint}` };
  }
  if (!version.test(line)) {
    return { command, missing: `"${command} --version" says "${line}", not ${version}; ${hint}` };
  }
  return { command, version: line };
}

/** Debian's `chromium` (.ci/run installs it), found on PATH or not. */
export function findChromium(): Promise<Tool> {
  return findTool("chromium", /^Chromium \d+/, "install Debian's chromium package");
}

/** Flags that run Chromium as CI can: no display, as root, with WebGPU. */
export const CHROMIUM_FLAGS: readonly string[] = [
  "--headless=new", // also makes (and removes) a temporary profile
  "--no-sandbox", // CI runs as root, where Chromium's sandbox cannot start
  "--enable-unsafe-webgpu", // WebGPU on Linux (SwiftShader's Vulkan where there is no GPU)
];

/**
 * Registers a test that needs `tool`, following the backend registry's rule: ignored where the
 * tool is missing, a failure under CI=true.
 */
export function testWithTool(
  tool: Tool,
  name: string,
  fn: (t: Deno.TestContext) => Promise<void>,
): void {
  if (tool.missing === undefined) {
    Deno.test(name, fn);
  } else if (STRICT) {
    Deno.test(name, () => {
      throw new Error(`${tool.command} must run in CI but is missing: ${tool.missing}`);
    });
  } else {
    Deno.test({ name: `${name} (skipped: ${tool.missing})`, ignore: true, fn() {} });
  }
}

/**
 * The shared vector suite in the runtime `tool` runs, one test per backend: `args(origin,
 * backend)` starts it on the served suite, whose report must show every vector passing.
 */
export function testSuiteInRuntime(
  tool: Tool,
  runtime: string,
  backends: readonly BackendName[],
  args: (origin: string, backend: BackendName) => string[],
  timeoutMs: number,
): void {
  for (const backend of backends) {
    testWithTool(
      tool,
      `${runtime}: the browser bundle matches PyTorch on the shared vectors (forward, running ` +
        `buffers, backward) on ${backend}`,
      async () => {
        const server = await serveSuite();
        try {
          const report = await runAndReport(
            server,
            tool.command,
            args(server.origin, backend),
            timeoutMs,
          );
          assertReportPassed(report, backend);
        } finally {
          await server.close();
        }
      },
    );
  }
}

const bundles = new Map<string, Promise<string>>();

/** `deno bundle --platform browser --format esm` of a file of this repository, to a string. */
export function bundle(path: string): Promise<string> {
  let p = bundles.get(path);
  if (!p) {
    p = (async () => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["bundle", "--quiet", "--platform", "browser", "--format", "esm", path],
        cwd: new URL("../", import.meta.url),
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!out.success) {
        throw new Error(`deno bundle ${path} failed:\n${new TextDecoder().decode(out.stderr)}`);
      }
      return new TextDecoder().decode(out.stdout);
    })();
    bundles.set(path, p);
  }
  return p;
}

const vectorDir = new URL("./vectors/", import.meta.url);

function vectorNames(): string[] {
  return [...Deno.readDirSync(vectorDir)]
    .filter((e) => e.isFile && e.name.endsWith(".json"))
    .map((e) => e.name)
    .sort();
}

/** Every file of tests/vectors/ as one JSON array (the raw cases, parsed by the runtime). */
function vectorsJson(): string {
  return `[${vectorNames().map((n) => Deno.readTextFileSync(new URL(n, vectorDir))).join(",")}]`;
}

/** The page Chromium opens: loads both bundles, runs the suite, posts the report. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>switchnorm vector suite</title>
<script type="module">
const backend = new URLSearchParams(location.search).get("backend");
let report;
try {
  const lib = await import("/switchnorm.js");
  const { runVectorSuite } = await import("/suite.js");
  const vectors = await (await fetch("/vectors.json")).json();
  report = await runVectorSuite(lib, vectors, backend, navigator.userAgent);
} catch (e) {
  report = { backend, ran: 0, failures: ["the page failed: " + (e && e.stack || e)], where: navigator.userAgent };
}
await fetch("/report", { method: "POST", body: JSON.stringify(report) });
</script>
`;

/**
 * A program, given as Node's ESM text, that does what the page does: fetches both bundles and
 * imports them (from data: URLs, the same module text Chromium gets), runs the suite, posts the
 * report. Arguments: origin, backend.
 */
export const NODE_RUNNER = `
const [origin, backend] = process.argv.slice(1);
const load = async (path) => {
  const text = await (await fetch(origin + path)).text();
  return import("data:text/javascript;base64," + Buffer.from(text).toString("base64"));
};
let report;
try {
  const lib = await load("/switchnorm.js");
  const { runVectorSuite } = await load("/suite.js");
  const vectors = await (await fetch(origin + "/vectors.json")).json();
  report = await runVectorSuite(lib, vectors, backend, "Node " + process.version);
} catch (e) {
  report = { backend, ran: 0, failures: ["node failed: " + (e && e.stack || e)], where: "Node" };
}
await fetch(origin + "/report", { method: "POST", body: JSON.stringify(report) });
`;

/**
 * A Node program that loads the bundle as NODE_RUNNER does and prints, as JSON, what an explicit
 * "webgpu" layer rejects with and which backend "auto" takes. Argument: origin.
 */
export const NODE_BACKEND_PROBE = `
const origin = process.argv[1];
const text = await (await fetch(origin + "/switchnorm.js")).text();
const { SwitchNorm2d } = await import("data:text/javascript;base64," + Buffer.from(text).toString("base64"));
const x = new Float32Array(2 * 3 * 4).map((_, i) => Math.sin(i));
let webgpu = "resolved";
try {
  await new SwitchNorm2d(3, { backend: "webgpu" }).forward(x, [2, 3, 2, 2]);
} catch (e) {
  webgpu = e.message;
}
const auto = new SwitchNorm2d(3);
await auto.forward(x, [2, 3, 2, 2]);
console.log(JSON.stringify({ webgpu, auto: auto.backendInfo }));
`;

/**
 * Throws unless the report says that `backend` ran every case without a failure; the message
 * counts the failures and quotes the first few.
 */
function assertReportPassed(report: SuiteReport, backend: BackendName): void {
  if (report.missing !== undefined) {
    throw new Error(`${backend} is missing in ${report.where}: ${report.missing}`);
  }
  if (report.backend !== backend) throw new Error(`the report is for ${report.backend}`);
  if (report.failures.length > 0) {
    throw new Error(
      `${report.failures.length} failures (${report.ran} vector runs) on ${backend} in ` +
        `${report.where}:\n` +
        report.failures.slice(0, 5).join("\n"),
    );
  }
  // Every vector, forward and backward: a suite that ran nothing must not pass.
  if (report.ran < 2 * vectorNames().length) {
    throw new Error(`only ${report.ran} runs, expected ${2 * vectorNames().length}`);
  }
}

/** A served page: its origin, and the first report posted to it. */
export interface PageServer<Report> {
  readonly origin: string;
  readonly report: Promise<Report>;
  close(): Promise<void>;
}

/** A served suite: its origin, and the first report posted to it. */
export type SuiteServer = PageServer<SuiteReport>;

/** Serves the page, the two bundles and the vectors on 127.0.0.1, and waits for one report. */
export async function serveSuite(): Promise<SuiteServer> {
  const [library, suite] = await Promise.all([bundle("mod.ts"), bundle("tests/_runtime_suite.ts")]);
  return servePage({
    "/": [PAGE, "text/html"],
    "/switchnorm.js": [library, "text/javascript"],
    "/suite.js": [suite, "text/javascript"],
    "/vectors.json": [vectorsJson(), "application/json"],
  });
}

/**
 * Serves `files` (path: [body, content type]) on 127.0.0.1. The page posts its report, as JSON,
 * to /report; what it posts to /progress (JSON too) goes to `onProgress` as it comes, so that a
 * page that hangs later has still said what it did.
 */
export function servePage<Report>(
  files: Record<string, [string, string]>,
  onProgress?: (body: unknown) => void,
): PageServer<Report> {
  const { promise: report, resolve } = Promise.withResolvers<Report>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    if (req.method === "POST" && path === "/report") {
      resolve(await req.json());
      return new Response("ok");
    }
    if (req.method === "POST" && path === "/progress") {
      onProgress?.(await req.json());
      return new Response("ok");
    }
    const file = files[path];
    if (!file) return new Response("not found", { status: 404 });
    return new Response(file[0], { headers: { "content-type": file[1] } });
  });
  return {
    origin: `http://127.0.0.1:${server.addr.port}`,
    report,
    close: () => server.shutdown(),
  };
}

/**
 * Starts `command args`, waits for the report it makes the served suite post (at most
 * `timeoutMs`), stops the process and returns the report. A process that exits or times out
 * first gives an Error with the end of its stderr.
 */
export async function runAndReport<Report>(
  server: PageServer<Report>,
  command: string,
  args: string[],
  timeoutMs: number,
): Promise<Report> {
  const child = new Deno.Command(command, { args, stdout: "null", stderr: "piped" }).spawn();
  let stderr = "";
  const drained = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr = (stderr + chunk).slice(-4000);
    }
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tail = () => `\n--- end of its stderr ---\n${stderr}`;
  // The runtime posts before it exits (Node awaits the POST), so an exit first means no report.
  const exited = child.status.then((s) =>
    Promise.reject(new Error(`${command} exited (code ${s.code}) without a report${tail()}`))
  );
  exited.catch(() => {}); // settles after the report too, when the process is stopped below
  try {
    return await Promise.race([
      server.report,
      exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(new Error(`${command} gave no report within ${timeoutMs / 1000} s${tail()}`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    try {
      child.kill("SIGTERM");
    } catch { /* already exited */ }
    await child.status;
    await drained;
  }
}
