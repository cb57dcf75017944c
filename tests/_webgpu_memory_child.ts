/**
 * Run by tests/webgpu_memory_test.ts in its own process: repeats one kind of WebGPU call on
 * resident tensors of one shape (JSON; [N, C, ...]), with the layer's options (JSON, optional),
 * and prints how much the process grew per call (KB) as JSON on stdout. `what` starts with the
 * layer's kind (1d, 2d or 3d).
 */
import { SwitchNorm1d, SwitchNorm2d, SwitchNorm3d } from "../mod.ts";
import type { SwitchNormNdOptions } from "../mod.ts";

const [what, callsArg, shapeArg, optionsArg] = Deno.args;
const calls = Number(callsArg);
const shape: number[] = JSON.parse(shapeArg);
const options: SwitchNormNdOptions = { ...JSON.parse(optionsArg ?? "{}"), backend: "webgpu" };
const Layer = what.startsWith("1d")
  ? SwitchNorm1d
  : what.startsWith("3d")
  ? SwitchNorm3d
  : SwitchNorm2d;
const sn = new Layer(shape[1], options);
const length = shape.reduce((a, b) => a * b, 1);
const backward = what.endsWith("backward");
if (what.includes("eval")) sn.eval();
const x = await sn.upload(Float32Array.from({ length }, (_, i) => Math.sin(i)), shape);
const dy = await sn.upload(Float32Array.from({ length }, (_, i) => Math.cos(i)), shape);
const out = await sn.upload(new Float32Array(length), shape);
const step = async () => {
  await sn.forward(x, { out, keepForBackward: backward });
  if (backward) (await sn.backward(dy)).dispose();
};
// Warm up (pools, pipelines, allocator arenas, the JS heap's sizing), then measure. After 100
// calls the heap could still take a one-time step of a few MB within the 200 measured (main
// measured 22-48 KB per call, ~25 after 300 warm-up calls): 300 keep that step out.
for (let i = 0; i < 300; i++) await step();
const before = Deno.memoryUsage().rss;
for (let i = 0; i < calls; i++) await step();
console.log(JSON.stringify({ kbPerCall: (Deno.memoryUsage().rss - before) / calls / 1024 }));
Deno.exit(0);
