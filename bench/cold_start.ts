/**
 * Cold start as an edge function sees it, single- and multi-threaded: a fresh Deno process per
 * run imports mod.ts, makes a SwitchNorm2d, runs its first forward, yields once to the event loop
 * (as a request handler does when it awaits I/O), and runs 50 more forwards with `out` on a
 * [8, 64, 56, 56] Float32Array (6 MiB, above the size from which calls are split). Prints the
 * median over runs of: import; the first forward (which loads the backend; the pool's workers
 * are not started within it); the yield, where the pool starts (creating a worker blocks the
 * thread that creates it); the next 50 forwards; and the whole process (spawn to exit, so
 * including Deno's own start and the exit with the workers still there).
 *
 *   deno run --allow-read --allow-run bench/cold_start.ts [runs=7]
 */
const RUNS = Number(Deno.args[0] ?? 7);
const mod = new URL("../mod.ts", import.meta.url).href;

function probe(threads: number): string {
  return `
const t0 = performance.now();
const { setNumThreads, SwitchNorm2d } = await import("${mod}");
setNumThreads(${threads});
const t1 = performance.now();
const shape = [8, 64, 56, 56];
const x = Float32Array.from({ length: 8 * 64 * 56 * 56 }, (_, i) => (i % 97) / 97 - 0.5);
const out = new Float32Array(x.length);
const sn = new SwitchNorm2d(64);
const t2 = performance.now();
await sn.forward(x, shape, { out });
const t3 = performance.now();
await new Promise((resolve) => setTimeout(resolve, 0));
const t4 = performance.now();
for (let i = 0; i < 50; i++) await sn.forward(x, shape, { out });
const t5 = performance.now();
console.log(JSON.stringify({
  import: t1 - t0, first: t3 - t2, yield: t4 - t3, fifty: t5 - t4, reason: sn.backendInfo.reason,
}));
`;
}

const median = (v: number[]) => v.toSorted((a, b) => a - b)[v.length >> 1];

const results: Record<string, number[]>[] = [];
for (let run = 0; run < RUNS; run++) {
  // Interleaved, so that a change in the machine's load falls on both alike.
  for (const threads of [1, 2]) {
    const start = performance.now();
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", "--no-lock", "--no-config", probe(threads)],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const wall = performance.now() - start;
    if (out.code !== 0) throw new Error(`cold start probe failed (code ${out.code})`);
    const got = JSON.parse(new TextDecoder().decode(out.stdout));
    const r = (results[threads] ??= {});
    for (const k of ["import", "first", "yield", "fifty"]) (r[k] ??= []).push(got[k]);
    (r.wall ??= []).push(wall);
    if (run === 0) console.log(`${threads} thread(s), after the 51st call: ${got.reason}`);
  }
}
for (const threads of [1, 2]) {
  const r = results[threads];
  console.log(
    `setNumThreads(${threads}): import ${median(r.import).toFixed(1)} ms, first forward ` +
      `${median(r.first).toFixed(1)} ms, yield ${median(r.yield).toFixed(1)} ms, ` +
      `next 50 forwards ${median(r.fifty).toFixed(1)} ms, ` +
      `process ${median(r.wall).toFixed(0)} ms (median of ${RUNS})`,
  );
}
