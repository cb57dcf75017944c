/**
 * The memory-bandwidth control for the threads figures at DRAM sizes: how much two forwards that
 * share nothing but the memory bus gain over one. Two workers, each with its own single-threaded
 * WASM backend and its own [32,256,56,56] tensor (98 MiB, far beyond cache), run the forward one
 * worker alone, then both at once. "2.00x" means the machine's DRAM bandwidth has room for two;
 * what it prints bounds what threads can give one DRAM-sized call (README, "WASM on threads").
 * Run it beside `deno task bench:control` (which says whether the second core is free).
 *
 * Usage: `deno task bench:dram`
 *
 * @module
 */
const CALLS = 10;
const start = () =>
  new Promise<Worker>((ready) => {
    const w = new Worker(new URL("./_dram_worker.ts", import.meta.url), { type: "module" });
    w.onmessage = () => ready(w);
  });
const workers = [await start(), await start()];
const run = (w: Worker, n: number) =>
  new Promise<number>((done) => {
    w.onmessage = (e) => done(e.data);
    w.postMessage(n);
  });
await Promise.all(workers.map((w) => run(w, 2))); // warm-up, untimed
for (let rep = 0; rep < 3; rep++) {
  const one = await run(workers[0], CALLS);
  const t0 = performance.now();
  await Promise.all(workers.map((w) => run(w, CALLS)));
  const two = performance.now() - t0;
  console.log(
    `dram control: 1 forward at a time ${(one / CALLS).toFixed(1)} ms/call; 2 at once ` +
      `${(two / CALLS).toFixed(1)} ms/call each: ${(2 * one / two).toFixed(2)}x the throughput`,
  );
}
for (const w of workers) w.terminate();
