/**
 * The mutation probe: applies each mutation of tests/mutation/mutations.ts alone to a temporary
 * copy of the repository (never to the working tree), regenerates shaders/_wgsl.ts (WGSL) or the
 * WASM module (Rust) where the mutation needs it, runs the test suite under a memory cap and a
 * time limit, and reports each mutation as killed, survived, or does not apply (its original
 * text is not in the file exactly once: code has moved and the list needs updating). Not part
 * of CI or `deno task test`; run it with `deno task mutation` (about 20-30 minutes on 2 cores).
 *
 * Options: `--only id,id` runs those mutations; `--rss-mb N` (default 4096) caps the summed
 * resident memory of the suite's processes; `--timeout-s N` (default 4x the unmutated run, at
 * least 180) caps its time. Exceeding either kills the run and counts the mutation as killed,
 * with the reason, as a crash would: a failing test must fail by assertion, so such a line says
 * which assertion to make cheaper.
 *
 * Memory: V8's heap is capped by DENO_V8_FLAGS=--max-old-space-size (inherited by the suite's
 * subprocesses), and everything else (typed arrays, WebAssembly memory, GPU buffers) by a
 * watchdog on the resident memory of the suite's session (its processes, polled twice a second). `ulimit -v` / `prlimit --as`
 * would cap address space, which V8 reserves far beyond what it uses, and fail at start.
 *
 * @module
 */
import { type Mutation, MUTATIONS } from "./mutations.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

function option(name: string): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

const only = option("only")?.split(",");
const rssCapMb = Number(option("rss-mb") ?? 4096);
const timeoutOption = option("timeout-s");

async function run(cmd: string, args: string[], cwd: string): Promise<Deno.CommandOutput> {
  return await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
}

/** The files of the working tree that git tracks or would track (not the ignored ones). */
async function repositoryFiles(): Promise<string[]> {
  const out = await run(
    "git",
    ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    ROOT,
  );
  if (!out.success) throw new Error(`git ls-files failed: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout).split("\0").filter((f) => f !== "");
}

async function copyRepository(to: string): Promise<void> {
  for (const file of await repositoryFiles()) {
    const from = `${ROOT}/${file}`;
    const info = await Deno.stat(from).catch(() => undefined);
    if (!info?.isFile) continue; // deleted in the working tree, or a submodule
    await Deno.mkdir(`${to}/${file}`.replace(/\/[^/]*$/, ""), { recursive: true });
    await Deno.copyFile(from, `${to}/${file}`);
  }
}

/**
 * Summed resident memory of the processes of session `sid`, in bytes (from `ps`: reading /proc
 * directly would need Deno's --allow-all).
 */
async function sessionRss(sid: number): Promise<number> {
  const out = await run("ps", ["-o", "rss=", "--sid", String(sid)], "/");
  const kib = new TextDecoder().decode(out.stdout).split("\n").map(Number).filter((v) => v > 0);
  return 1024 * kib.reduce((a, b) => a + b, 0);
}

interface SuiteResult {
  passed: boolean;
  /** Why the run was stopped (memory cap or time limit), if it was. */
  stopped?: string;
  seconds: number;
  peakMb: number;
  failing: string[];
  /** Tests registered as skipped (a backend missing here), e.g. "webgpu: ... (skipped: ...)". */
  skipped: string[];
  tail: string;
}

/**
 * Runs the suite in `dir` in a process group of its own (setsid), so that the watchdog can
 * measure and stop it with its subprocesses.
 */
async function runSuite(dir: string, timeoutS: number): Promise<SuiteResult> {
  const runtime = await Deno.makeTempDir({ prefix: "switchnorm-mutation-xdg-" });
  const child = new Deno.Command("setsid", {
    args: [
      Deno.execPath(),
      "test",
      "--no-check", // a mutation is a runtime change; checking every copy costs minutes
      "--fail-fast",
      "--allow-read",
      "--allow-run",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "tests/",
    ],
    cwd: dir,
    env: {
      DENO_V8_FLAGS: "--max-old-space-size=2048",
      NO_COLOR: "1",
      XDG_RUNTIME_DIR: runtime,
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new Response(child.stdout).text();
  const stderr = new Response(child.stderr).text();
  const start = performance.now();
  let stopped: string | undefined, peak = 0, done = false;
  const status = child.status.finally(() => done = true);
  while (!done) {
    await Promise.race([status, new Promise((r) => setTimeout(r, 500))]);
    if (done) break;
    const rss = await sessionRss(child.pid);
    peak = Math.max(peak, rss);
    const seconds = (performance.now() - start) / 1000;
    if (stopped === undefined && rss > rssCapMb * 2 ** 20) {
      stopped = `memory cap: ${Math.round(rss / 2 ** 20)} MB resident > ${rssCapMb} MB`;
    } else if (stopped === undefined && seconds > timeoutS) {
      stopped = `time limit: ${timeoutS} s`;
    }
    if (stopped !== undefined) {
      try {
        Deno.kill(-child.pid, "SIGKILL"); // the suite's process group (setsid made it leader)
      } catch {
        // Already gone.
      }
    }
  }
  const { success } = await status;
  const seconds = (performance.now() - start) / 1000;
  const text = (await stdout) + "\n" + (await stderr);
  await Deno.remove(runtime, { recursive: true }).catch(() => {});
  // The runner's summary lists each failed test as "name => ./tests/file_test.ts:line:col".
  const failing = [...new Set(text.split("\n").filter((l) => / => \.\/tests\//.test(l)))]
    .map((l) => l.trim());
  return {
    passed: success && stopped === undefined,
    stopped,
    seconds,
    peakMb: Math.round(peak / 2 ** 20),
    failing,
    skipped: text.split("\n").filter((l) => /\(skipped: /.test(l)).map((l) => l.trim()),
    tail: text.trim().split("\n").slice(-15).join("\n"),
  };
}

type Verdict = "killed" | "survived" | "does not apply";

interface Outcome {
  readonly mutation: Mutation;
  readonly verdict: Verdict;
  readonly detail: string;
}

function occurrences(text: string, part: string): number {
  let count = 0;
  for (let at = text.indexOf(part); at >= 0; at = text.indexOf(part, at + 1)) count++;
  return count;
}

/** What a mutation of `file` makes stale, as the deno task that rebuilds it and its outputs. */
function regeneration(file: string): { task: string; outputs: string[] } | undefined {
  if (file.endsWith(".wgsl")) return { task: "build:shaders", outputs: ["shaders/_wgsl.ts"] };
  if (file.endsWith(".rs")) return { task: "build:wasm", outputs: ["wasm/switchnorm_wasm.ts"] };
  return undefined;
}

async function probe(dir: string, mutation: Mutation, timeoutS: number): Promise<Outcome> {
  const path = `${dir}/${mutation.file}`;
  const original = await Deno.readTextFile(path).catch(() => undefined);
  if (original === undefined) {
    return { mutation, verdict: "does not apply", detail: `${mutation.file} does not exist` };
  }
  const found = occurrences(original, mutation.original);
  if (found !== 1) {
    return {
      mutation,
      verdict: "does not apply",
      detail: found === 0
        ? "original text not found (the code moved: update the mutation)"
        : `original text found ${found} times (make it unique)`,
    };
  }
  const regen = regeneration(mutation.file);
  const saved = new Map<string, string>([[path, original]]);
  for (const out of regen?.outputs ?? []) {
    saved.set(`${dir}/${out}`, await Deno.readTextFile(`${dir}/${out}`));
  }
  try {
    await Deno.writeTextFile(path, original.replace(mutation.original, () => mutation.replacement));
    if (regen) {
      const built = await run(Deno.execPath(), ["task", regen.task], dir);
      if (!built.success) {
        const why = new TextDecoder().decode(built.stderr).trim().split("\n").slice(-3).join(" ");
        return { mutation, verdict: "does not apply", detail: `${regen.task} failed: ${why}` };
      }
    }
    const r = await runSuite(dir, timeoutS);
    const cost = `${r.seconds.toFixed(0)} s, peak ${r.peakMb} MB`;
    if (r.passed) return { mutation, verdict: "survived", detail: cost };
    const by = r.stopped
      ? `stopped by the ${r.stopped}, not by an assertion`
      : r.failing.length > 0
      ? `by ${r.failing.slice(0, 2).join("; ")}`
      : `suite failed without a named test: ${r.tail.split("\n").slice(-3).join(" | ")}`;
    return { mutation, verdict: "killed", detail: `${by} (${cost})` };
  } finally {
    for (const [file, text] of saved) await Deno.writeTextFile(file, text);
  }
}

async function main(): Promise<number> {
  const ids = new Set(MUTATIONS.map((m) => m.id));
  if (ids.size !== MUTATIONS.length) throw new Error("mutation ids must be unique");
  for (const id of only ?? []) if (!ids.has(id)) throw new Error(`unknown mutation "${id}"`);
  const list = only ? MUTATIONS.filter((m) => only.includes(m.id)) : MUTATIONS;

  const dir = await Deno.makeTempDir({ prefix: "switchnorm-mutation-" });
  try {
    await copyRepository(dir);
    console.log(`copied the repository to ${dir}; running the unmutated suite first`);
    const base = await runSuite(dir, 1800);
    if (!base.passed) {
      console.error(`the unmutated suite fails (${base.stopped ?? "tests failed"}):\n${base.tail}`);
      return 2;
    }
    if (base.skipped.length > 0) {
      // E.g. without a WebGPU adapter every WGSL mutation survives.
      console.log(
        `note: ${base.skipped.length} tests are skipped here (first: ${base.skipped[0]}); ` +
          "mutations that only they would catch survive",
      );
    }
    const timeoutS = Number(timeoutOption ?? Math.max(180, Math.ceil(4 * base.seconds)));
    console.log(
      `unmutated: passed in ${base.seconds.toFixed(0)} s, peak ${base.peakMb} MB; ` +
        `limits per run: ${timeoutS} s, ${rssCapMb} MB resident\n`,
    );
    const outcomes: Outcome[] = [];
    for (const [i, mutation] of list.entries()) {
      const o = await probe(dir, mutation, timeoutS);
      outcomes.push(o);
      console.log(
        `[${i + 1}/${list.length}] ${o.verdict.toUpperCase()}: ${mutation.id} ` +
          `(${mutation.file}: ${mutation.models})\n    ${o.detail}`,
      );
    }
    const count = (v: Verdict) => outcomes.filter((o) => o.verdict === v).length;
    const killed = count("killed"), survived = count("survived"), na = count("does not apply");
    const score = killed + survived > 0 ? (100 * killed) / (killed + survived) : 0;
    console.log(
      `\nmutation score: ${score.toFixed(1)}% (${killed} killed of ${killed + survived} ` +
        `applied; ${na} do not apply)`,
    );
    for (const v of ["survived", "does not apply"] as const) {
      const those = outcomes.filter((o) => o.verdict === v);
      if (those.length > 0) console.log(`${v}: ${those.map((o) => o.mutation.id).join(", ")}`);
    }
    const crashed = outcomes.filter((o) => o.detail.startsWith("stopped by"));
    if (crashed.length > 0) {
      console.log(`killed by a limit, not an assertion: ${crashed.map((o) => o.mutation.id)}`);
    }
    return 0;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.exit(await main());
