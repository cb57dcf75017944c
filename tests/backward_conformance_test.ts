/**
 * Runs the backward pass of every shared PyTorch vector (dx and the parameter gradients from
 * autograd, loss = sum(y * dy)) on every backend present (checks in tests/_suite.ts, shared with
 * the Chromium and Node runs).
 */
import * as lib from "../mod.ts";
import { testEachBackend } from "./_backends.ts";
import { runBackwardCase } from "./_suite.ts";
import { loadVectors } from "./_vectors.ts";

for (const v of loadVectors()) {
  await testEachBackend(
    `backward matches PyTorch autograd on ${v.name}`,
    (b) => runBackwardCase(lib, v, b),
  );
}
