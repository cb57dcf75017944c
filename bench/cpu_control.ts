/**
 * The compute-only control for the threads figures: whether this machine's second core is free.
 * The same pure integer loop runs on one worker, then on two at once; "scaling 2.00x of 2" means
 * two cores were free for the whole run, 1.00x that the second was busy. Run it just before and
 * just after `deno task bench --filter thread` (README, "WASM on threads"): thread figures mean
 * something only where it reads near 2.
 *
 * Usage: `deno task bench:control` (no permission needed: the workers start from source text).
 *
 * @module
 */
import { Worker } from "node:worker_threads";

const SOURCE = `const { parentPort } = require("node:worker_threads");
parentPort.on("message", (n) => {
  let x = 0;
  for (let i = 0; i < n; i++) x = (x * 1664525 + 1013904223) | 0;
  parentPort.postMessage(x);
});`;
const LOOP = 2e8; // ~0.3-0.6 s per worker on the project's VMs

const workers = [new Worker(SOURCE, { eval: true }), new Worker(SOURCE, { eval: true })];
const run = (w: Worker, n: number) =>
  new Promise((done) => {
    w.once("message", done);
    w.postMessage(n);
  });
await Promise.all(workers.map((w) => run(w, 1e6))); // start-up and compilation, untimed
for (let rep = 0; rep < 3; rep++) {
  let t0 = performance.now();
  await run(workers[0], LOOP);
  const one = performance.now() - t0;
  t0 = performance.now();
  await Promise.all(workers.map((w) => run(w, LOOP)));
  const two = performance.now() - t0;
  console.log(
    `control: 1 worker ${one.toFixed(0)} ms; 2 workers, the same loop each, ${
      two.toFixed(0)
    } ms: ` +
      `scaling ${(2 * one / two).toFixed(2)}x of 2`,
  );
}
for (const w of workers) w.terminate();
