/**
 * Repeated WebGPU calls on resident tensors (no uploads, readbacks or new buffers) keep the
 * process's memory bounded. Shaders branched on a uniform flag around a storage load, which
 * made lavapipe keep ~130 KB per dispatch for good (a raw WebGPU loop of that shader alone
 * showed it); they now select instead. What remains per call is the runtime's own (a raw
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

async function growth(what: string, shape: number[], options: object): Promise<number> {
  const child = new URL("./_webgpu_memory_child.ts", import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      child.href,
      what,
      "200",
      JSON.stringify(shape),
      JSON.stringify(options),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, `child failed: ${new TextDecoder().decode(out.stderr)}`);
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!;
  return JSON.parse(text).kbPerCall;
}

// Batches of 2 samples and of more: lavapipe (Mesa 22.3) compiles a pipeline again at every
// dispatch, with the values of the uniforms its if conditions and loop bounds read made
// constants, for as long as those values shrink the shader by half, and never frees those
// variants; the first dispatch whose values do not turns that off for the pipeline. So it can
// depend on the shape: sn_bwd_reduce's branch on P_USING_BN kept ~740 KB per training or
// keepForBackward backward for good at N >= 3 and nothing at N = 2. Each case runs in its own
// process, as the pipelines' first dispatches decide. The branches may be in a helper that takes
// a uniform as its argument: scale2 of a mean weight in zero_std.wgsl's lost_part made
// SwitchNorm1d's eps-0 passes (sn1d_zero_std_y, sn1d_bwd_zero_std) keep ~0.9 MB per forward and
// ~1.4 MB per training forward + backward, at any shape.
const cases: [string, number[], object?][] = [
  ["2d eval forward", [2, 8, 16, 16]],
  ["2d train forward+backward", [2, 8, 16, 16]],
  ["2d train forward+backward", [4, 8, 16, 16]],
  ["2d eval forward+backward", [3, 8, 8, 8]],
  ["1d train forward+backward", [16, 8]],
  ["1d train forward+backward", [3, 8]],
  ["1d eval forward+backward", [4, 8]],
  ["1d train forward+backward", [4, 8], { eps: 0 }],
  ["1d eval forward", [3, 8], { eps: 0 }],
];
for (const [what, shape, options = {}] of cases) {
  const opts = Object.keys(options).length ? ` ${JSON.stringify(options)}` : "";
  const name = `${what} [${shape}]${opts}`;
  webgpuTest(`WebGPU: repeated ${name} calls on resident tensors keep memory bounded`, async () => {
    const kb = await growth(what, shape, options);
    assert.ok(kb < BOUND_KB, `${name}: the process grew ${kb.toFixed(1)} KB per call`);
  });
}
