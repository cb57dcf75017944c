/**
 * Runs every shared PyTorch vector (tests/vectors/) against every backend present.
 */
import { SwitchNorm1d, SwitchNorm2d, SwitchNorm3d } from "../mod.ts";
import type { BackendName } from "../backends/_backend.ts";
import { assertCloseOrNaN, outsideRange } from "./_gpu_range.ts";
import { testEachBackend } from "./_backends.ts";
import { RUNNING, Y } from "./_tolerances.ts";
import { loadVectors, type VectorCase } from "./_vectors.ts";

const LAYERS = { SwitchNorm1d, SwitchNorm2d, SwitchNorm3d };

async function runCase(v: VectorCase, backend: BackendName): Promise<void> {
  const layer = new LAYERS[v.layer](v.numFeatures, { ...v.options, backend });
  const outside = outsideRange(backend, v.name);
  layer.loadStateDict(v.state);
  if (!layer.usingMovingAverage && layer.usingBN) layer.resetRunningStats();
  for (const [i, step] of v.steps.entries()) {
    const at = `${v.name} step ${i}`;
    if (step.op === "finalizeBatchAverage") {
      layer.finalizeBatchAverage();
    } else {
      layer.train(step.mode === "train");
      const y = await layer.forward(step.x, step.shape);
      assertCloseOrNaN(y, step.expect.y, Y, `${at}: y`, outside);
      if (layer.backendInfo?.backend !== backend) {
        throw new Error(`${at}: ran on ${layer.backendInfo?.backend}, not ${backend}`);
      }
    }
    if (step.expect.running_mean) {
      await layer.sync();
      assertCloseOrNaN(
        layer.running_mean,
        step.expect.running_mean,
        RUNNING,
        `${at}: running_mean`,
        outside,
      );
      assertCloseOrNaN(
        layer.running_var,
        step.expect.running_var!,
        RUNNING,
        `${at}: running_var`,
        outside,
      );
    }
  }
}

const vectors = loadVectors();
if (vectors.length < 30) throw new Error(`expected the shared vectors, found ${vectors.length}`);

for (const v of vectors) {
  await testEachBackend(`matches PyTorch on ${v.name} (${v.description})`, (b) => runCase(v, b));
}
