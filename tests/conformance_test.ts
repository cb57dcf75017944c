/**
 * Runs every shared PyTorch vector (tests/vectors/) against every backend present.
 */
import { type SwitchNorm, SwitchNorm1d, SwitchNorm2d, SwitchNorm3d } from "../mod.ts";
import type { BackendName } from "../backends/_backend.ts";
import { assertClose } from "./_close.ts";
import { testEachBackend } from "./_backends.ts";
import { EXACT, RUNNING, Y } from "./_tolerances.ts";
import { type ForwardStep, loadVectors, type VectorCase } from "./_vectors.ts";

const LAYERS = { SwitchNorm1d, SwitchNorm2d, SwitchNorm3d };

async function runCase(v: VectorCase, backend: BackendName): Promise<void> {
  const layer = new LAYERS[v.layer](v.numFeatures, { ...v.options, backend });
  layer.loadStateDict(v.state);
  if (!layer.usingMovingAverage && layer.usingBN) layer.resetRunningStats();
  for (const [i, step] of v.steps.entries()) {
    const at = `${v.name} step ${i}`;
    if (step.op === "finalizeBatchAverage") {
      layer.finalizeBatchAverage();
    } else {
      layer.train(step.mode === "train");
      if (step.radius !== undefined) layer.radius = step.radius;
      const y = await layer.forward(step.x, step.shape);
      assertClose(y, step.expect.y, Y, `${at}: y`);
      if (layer.backendInfo?.backend !== backend) {
        throw new Error(`${at}: ran on ${layer.backendInfo?.backend}, not ${backend}`);
      }
    }
    if (step.expect.running_mean) {
      await layer.sync();
      assertClose(layer.running_mean, step.expect.running_mean, RUNNING, `${at}: running_mean`);
      assertClose(layer.running_var, step.expect.running_var!, RUNNING, `${at}: running_var`);
    }
    if (step.op === "forward") checkSparseState(layer, step, at);
  }
}

/** Sparse SN: the logits and fixed flags after a step equal PyTorch's exactly (0/1 values). */
function checkSparseState(layer: SwitchNorm, step: ForwardStep, at: string): void {
  if (!layer.sparse) return;
  const dict = layer.stateDict() as unknown as Record<string, Float32Array>;
  for (const key of ["mean_weight", "var_weight", "mean_fixed", "var_fixed"] as const) {
    const want = step.expect[key];
    if (!want) throw new Error(`${at}: a sparse case must give the ${key} after each step`);
    assertClose(dict[key], want, EXACT, `${at}: ${key} after the step`);
  }
}

const vectors = loadVectors();
if (vectors.length < 30) throw new Error(`expected the shared vectors, found ${vectors.length}`);

for (const v of vectors) {
  await testEachBackend(`matches PyTorch on ${v.name} (${v.description})`, (b) => runCase(v, b));
}
