/**
 * Runs every shared PyTorch vector (tests/vectors/) against every backend present: y and the
 * running buffers (the checks live in tests/_suite.ts, shared with the Chromium and Node runs).
 */
import * as lib from "../mod.ts";
import { testEachBackend } from "./_backends.ts";
import { runForwardCase } from "./_suite.ts";
import { loadVectors } from "./_vectors.ts";

const vectors = loadVectors();
if (vectors.length < 30) throw new Error(`expected the shared vectors, found ${vectors.length}`);

for (const v of vectors) {
  await testEachBackend(
    `matches PyTorch on ${v.name} (${v.description})`,
    (b) => runForwardCase(lib, v, b),
  );
}
