/**
 * Run by tests/lifetime_test.ts in a subprocess with --v8-flags=--expose-gc: creates layers on
 * one backend, runs a training step on each (so that each holds its own backend state), drops
 * them without dispose(), collects garbage, and prints what the backend holds before and after
 * as JSON on stdout.
 */
import { SwitchNorm1d, SwitchNorm2d } from "../mod.ts";
import { chooseBackend } from "../backends/select.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --v8-flags=--expose-gc");
const [name, countArg, kind] = Deno.args as ["wasm" | "webgpu", string, string];
const count = Number(countArg);
const backend = (await chooseBackend(name, undefined, { elements: 1 })).backend as unknown as {
  layerCount: number;
  usedBytes?: number;
};
const make = () =>
  kind === "1d"
    ? { layer: new SwitchNorm1d(512, { backend: name }), shape: [8, 512] }
    : { layer: new SwitchNorm2d(16, { backend: name }), shape: [4, 16, 8, 8] };

async function step(): Promise<object> {
  const { layer, shape } = make();
  const n = shape.reduce((a, b) => a * b, 1);
  const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
  await layer.forward(x, shape);
  await layer.backward(Float32Array.from({ length: n }, (_, i) => Math.cos(i)));
  return layer;
}

async function collect(): Promise<void> {
  // Finalizers run as tasks after a collection: give them turns, and collect again.
  for (let i = 0; i < 5; i++) {
    gc!();
    await new Promise((r) => setTimeout(r, 20));
  }
}

// One step first, so that the shared regions exist in the baseline, then collect it away.
await step();
await collect();
const before = { layers: backend.layerCount, bytes: backend.usedBytes };
// Held until counted, then dropped all at once.
let layers: object[] = [];
for (let i = 0; i < count; i++) layers.push(await step());
const live = { layers: backend.layerCount, bytes: backend.usedBytes };
layers = [];
await collect();
const after = { layers: backend.layerCount, bytes: backend.usedBytes };
console.log(JSON.stringify({ before, live, after }));
Deno.exit(0);
