/**
 * Repeated WebGPU calls on resident tensors (no uploads, readbacks or new buffers) keep the
 * process's memory bounded. Three shaders branched on a uniform flag around a storage load,
 * which made lavapipe keep ~130 KB per dispatch for good (a raw WebGPU loop of that shader
 * alone showed it); they now select instead. What remains per call is the runtime's own (a raw
 * WebGPU loop of the same dispatches grows ~5-10 KB per submit). Each kind runs in its own
 * process so that other tests' garbage does not count.
 */
import assert from "node:assert/strict";
import { webgpuTest } from "./_webgpu.ts";

/**
 * KB per call allowed: the runtime's ~10 KB per submit (a backward has two) with room for the
 * allocator's noise over 200 calls; the leaks were 130 KB (evaluation forward) to 330 KB (a
 * training forward + backward) per call.
 */
const BOUND_KB = 60;

async function growth(what: string): Promise<number> {
  const child = new URL("./_webgpu_memory_child.ts", import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", child.href, what, "200"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, `child failed: ${new TextDecoder().decode(out.stderr)}`);
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!;
  return JSON.parse(text).kbPerCall;
}

for (
  const what of ["2d eval forward", "2d train forward+backward", "1d train forward+backward"]
) {
  webgpuTest(`WebGPU: repeated ${what} calls on resident tensors keep memory bounded`, async () => {
    const kb = await growth(what);
    assert.ok(kb < BOUND_KB, `${what}: the process grew ${kb.toFixed(1)} KB per call`);
  });
}
