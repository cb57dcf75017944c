/**
 * tests/_split_dispatches.ts, the preload that gives every dispatch a compute pass of its own:
 * the WebGPU backend's calls still agree with the float64 reference under it, each dispatch in
 * its own pass.
 *
 * @module
 */
import assert from "node:assert/strict";
import { SPLIT } from "./_split_dispatches.ts";
import { ReferenceBackend } from "../backends/reference.ts";
import { loadWebGpuBackend } from "../backends/webgpu.ts";
import { copyParams, randomParams, rng, webgpuTest } from "./_webgpu.ts";
import { assertClose } from "./_close.ts";
import { Y } from "./_tolerances.ts";
import type { NormProblem } from "../backends/_backend.ts";

webgpuTest(
  "a WebGPU forward with every dispatch in a pass of its own agrees with the reference, wide rows included",
  async () => {
    await using backend = await loadWebGpuBackend();
    const reference = new ReferenceBackend();
    const problem: NormProblem = {
      layout: "nd",
      n: 2,
      c: 3,
      m: 40,
      usingBN: true,
      training: true,
      eps: 1e-5,
    };
    const r = rng(5);
    // Row 1 scaled far below 1 (the wide passes, dispatched indirectly), the others near 1.
    const x = Float32Array.from(
      { length: 240 },
      (_, i) => (r() * 2 - 1) * (i >= 40 && i < 80 ? 1e-30 : 1),
    );
    const params = randomParams(r, 3, 3, true);
    const before = SPLIT.passes;
    const update = { kind: "movingAverage", momentum: 0.1 } as const;
    const y = await backend.forward(problem, x, copyParams(params), update);
    const want = await reference.forward(problem, x, copyParams(params), update);
    assert.ok(SPLIT.passes - before >= 5, `${SPLIT.passes - before} passes`);
    assertClose(y as Float32Array, want as Float32Array, Y, "y");
  },
);
