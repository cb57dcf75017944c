/**
 * The WebGPU range tests again, in headless Chromium, whose WebGPU is Dawn/Tint on SwiftShader
 * (a CPU implementation). SwiftShader flushes subnormal operands and results to 0 as NVIDIA's
 * Vulkan driver does, while lavapipe, where `deno test` runs WebGPU without a GPU, keeps them:
 * a shader that loses a row to a flushed subnormal passes on lavapipe and fails on NVIDIA, and
 * here it can fail on CI's CPUs too (NUMERICS.md, "WebGPU on NVIDIA's Vulkan driver", says
 * which of the H200's failures SwiftShader reproduces; tests/fuzz/adapter_float_probe.ts shows
 * the flush).
 *
 * The files of tests/_swiftshader_files.ts are bundled into one module for the browser
 * (tests/_runtimes.ts's `bundle`), loaded in one page with tests/_browser_test_shim.ts standing
 * in for Deno.test, Deno.env and node:assert, and every test whose name matches /webgpu/i runs
 * there; each comes back as a step of this test, named as the test is. Tests that fail under
 * SwiftShader today are listed in KNOWN_FAILURES: they must fail (a pass says to remove them).
 * Chromium is missing: the test is ignored, or fails under CI=true (tests/chromium_test.ts).
 */
import {
  bundle,
  CHROMIUM_FLAGS,
  findChromium,
  runAndReport,
  servePage,
  testWithTool,
} from "./_runtimes.ts";

/**
 * Browser tests that fail under SwiftShader today, by name, with the error they fail with (for
 * the reader: any failure counts as the expected one). NUMERICS.md's section "WebGPU on NVIDIA's
 * Vulkan driver" lists them (none since session 43; the nine of session 42 failed on the H200
 * too); when a fix makes one pass, this test fails and says to remove it here and there.
 */
const KNOWN_FAILURES: ReadonlyMap<string, string> = new Map<string, string>([]);

/**
 * Tests of the listed files left out of the page, by name, with their time under SwiftShader:
 * each needs pipelines of its own (blocks of samples, lowered binding limits, SwitchNorm1d's
 * variants) that SwiftShader takes minutes to compile, and lavapipe runs them in `deno test`.
 * They show as ignored steps.
 */
const SLOW_TESTS: ReadonlyMap<string, string> = new Map([
  [
    "WebGPU: LN groups of |x| beyond 2^40 that cancel beside a narrow member keep the reference's gradients in calls of several blocks of samples",
    "149 s",
  ],
  [
    "WebGPU: LN groups whose mean cancels beside a narrow member keep the reference's y and gradients in calls of several blocks of samples",
    "221 s",
  ],
  [
    "WebGPU: SwitchNorm1d's y.sum() logit gradients match the reference where feature means lie apart",
    "32 s",
  ],
  [
    "WebGPU: SwitchNorm1d's dgamma under dy = 1 is ~0 where the mixing settled on BN, at offsets too",
    "91 s",
  ],
  [
    "WebGPU: dgamma under dy of one sign with a mixing settled on BN or IN matches the reference",
    "34 s",
  ],
  [
    "WebGPU: the running buffers after a step in blocks of samples or under SyncSN are the reference's, rounded once",
    "213 s",
  ],
  [
    "WebGPU: rows of mixed std 0 in blocks of samples and windows of x give the reference's y and weight gradient",
    "137 s",
  ],
  [
    "WebGPU under SyncSN: a constant batch column under BN's variance gives the reference's weight gradient of -Infinity",
    "147 s",
  ],
  [
    "WebGPU: attack fuzzer seed 99545: an evaluation of rows of +-3.4e38 gives the reference's dx and logit gradients",
    "264 s",
  ],
]);

/** Which tests of the page run: the WebGPU ones (the reference and WASM do not change here). */
const FILTER = /webgpu/i;

/**
 * Guards, not speed checks: SwiftShader compiles every pipeline on the CPU (80-90 s for the first
 * test of a page on 2 shared cores), so a test may take minutes; a page test past PER_TEST_MS
 * is reported as hung and the page goes on (the test's GPU work may still run, slowing the next
 * ones), and a page past PAGE_MS is stopped, the steps reporting what it finished.
 */
const PER_TEST_MS = 300_000;
const PAGE_MS = 1_200_000;

/** What the page posts for each test it ran (or each file that failed to load). */
interface PageResult {
  readonly file: string;
  readonly name: string;
  readonly ms: number;
  /** The error, when it failed. */
  readonly error?: string;
  /** Left out: one of SLOW_TESTS. */
  readonly skipped?: boolean;
}

/** What the page posts at the end. */
interface PageReport {
  readonly where: string;
  /** Files that registered no test matching FILTER (a renamed test, a skip in the page). */
  readonly empty: readonly string[];
}

/** The page: the shim first, then each file's tests in turn, each result posted as it comes. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>switchnorm WebGPU range tests under SwiftShader</title>
<script type="importmap">
{ "imports": { "node:assert": "/shim.js", "node:assert/strict": "/shim.js" } }
</script>
<script type="module">
const post = (path, body) => fetch(path, { method: "POST", body: JSON.stringify(body) });
const message = (e) => String((e && e.stack) || e).slice(0, 2000);
const filter = ${FILTER};
const context = { step() { throw new Error("test steps are not supported in the page"); } };
let where = navigator.userAgent;
const empty = [];
const slow = new Set(${JSON.stringify([...SLOW_TESTS.keys()])});
try {
  const adapter = await navigator.gpu?.requestAdapter();
  const i = adapter?.info ?? {};
  where += adapter ? ", adapter " + [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(" ") : ", no WebGPU adapter";
  const { installDenoShim } = await import("/shim.js");
  const collector = installDenoShim();
  const { FILES } = await import("/tests.js");
  for (const [file, load] of Object.entries(FILES)) {
    collector.file = file;
    const first = collector.tests.length;
    try {
      await load();
    } catch (e) {
      await post("/progress", { file, name: "loading " + file, ms: 0, error: message(e) });
      continue;
    }
    const tests = collector.tests.slice(first).filter((t) => !t.ignore && filter.test(t.name));
    if (tests.length === 0) empty.push(file);
    for (const t of tests) {
      if (slow.has(t.name)) {
        await post("/progress", { file, name: t.name, ms: 0, skipped: true });
        continue;
      }
      const t0 = performance.now();
      let error, timer;
      try {
        await Promise.race([
          t.fn(context),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error("no result within ${
  PER_TEST_MS / 1000
} s (hung?)")), ${PER_TEST_MS});
          }),
        ]);
      } catch (e) {
        error = message(e);
      } finally {
        clearTimeout(timer);
      }
      await post("/progress", { file, name: t.name, ms: Math.round(performance.now() - t0), error });
    }
  }
} catch (e) {
  await post("/progress", { file: "(page)", name: "the page", ms: 0, error: message(e) });
}
await post("/report", { where, empty });
</script>
`;

const chromium = await findChromium();

testWithTool(
  chromium,
  "headless Chromium (SwiftShader, which flushes subnormals as NVIDIA does): the WebGPU range " +
    "tests pass, or fail as listed",
  async (t) => {
    const [shim, tests] = await Promise.all([
      bundle("tests/_browser_test_shim.ts"),
      bundle("tests/_swiftshader_files.ts"),
    ]);
    const results: PageResult[] = [];
    const server = servePage<PageReport>(
      {
        "/": [PAGE, "text/html"],
        "/shim.js": [shim, "text/javascript"],
        "/tests.js": [tests, "text/javascript"],
      },
      (r) => results.push(r as PageResult),
    );
    let report: PageReport | undefined;
    let stopped: Error | undefined;
    try {
      report = await runAndReport(
        server,
        chromium.command,
        [...CHROMIUM_FLAGS, `${server.origin}/`],
        PAGE_MS,
      );
    } catch (e) {
      stopped = e as Error; // the steps below still report what the page finished
    } finally {
      await server.close();
    }
    for (const r of results) {
      if (r.skipped) {
        const why = SLOW_TESTS.get(r.name);
        await t.step({ name: `${r.name} [${r.file}] (left out: ${why})`, ignore: true, fn() {} });
        continue;
      }
      const known = KNOWN_FAILURES.get(r.name);
      const label = `${r.name} [${r.file}, ${(r.ms / 1000).toFixed(1)} s]` +
        (known === undefined ? "" : " (a known failure under SwiftShader)");
      await t.step(label, () => {
        if (known === undefined && r.error !== undefined) throw new Error(r.error);
        if (known !== undefined && r.error === undefined) {
          throw new Error(
            "now passes under SwiftShader: remove it from KNOWN_FAILURES " +
              "(tests/swiftshader_range_test.ts) and from NUMERICS.md's list",
          );
        }
      });
    }
    if (stopped) throw stopped;
    const ran = new Set(results.map((r) => r.name));
    const missing = [...KNOWN_FAILURES.keys(), ...SLOW_TESTS.keys()].filter((n) => !ran.has(n));
    if (missing.length > 0) {
      throw new Error(`listed tests that the page did not find (renamed?): ${missing.join("; ")}`);
    }
    // A file whose tests all skip (no adapter, a name without "webgpu") would pass unseen.
    if (report!.empty.length > 0) {
      throw new Error(`no WebGPU test ran from ${report!.empty.join(", ")} in ${report!.where}`);
    }
    if (!/swiftshader/i.test(report!.where)) {
      console.log(`not SwiftShader, flushes may differ: ${report!.where}`);
    }
  },
);
