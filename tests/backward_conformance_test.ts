/**
 * Runs the backward pass of every shared PyTorch vector (dx and the parameter gradients from
 * autograd, loss = sum(y * dy)) on every backend present.
 */
import { SwitchNorm1d, SwitchNorm2d, SwitchNorm3d } from "../mod.ts";
import type { BackendName } from "../backends/_backend.ts";
import { assertCloseOrNaN, outsideRange } from "./_gpu_range.ts";
import { testEachBackend } from "./_backends.ts";
import { GRAD } from "./_tolerances.ts";
import { loadVectors, type VectorCase } from "./_vectors.ts";

const LAYERS = { SwitchNorm1d, SwitchNorm2d, SwitchNorm3d };

async function runCase(v: VectorCase, backend: BackendName): Promise<void> {
  const layer = new LAYERS[v.layer](v.numFeatures, { ...v.options, backend });
  const outside = outsideRange(backend, v.name);
  layer.loadStateDict(v.state);
  if (!layer.usingMovingAverage && layer.usingBN) layer.resetRunningStats();
  for (const [i, step] of v.steps.entries()) {
    if (step.op === "finalizeBatchAverage") {
      layer.finalizeBatchAverage();
      continue;
    }
    const at = `${v.name} step ${i} (${step.mode})`;
    layer.train(step.mode === "train");
    await layer.forward(step.x, step.shape, { keepForBackward: true });
    layer.zeroGrad();
    const dx = await layer.backward(step.dy);
    assertCloseOrNaN(dx, step.expect.dx, GRAD, `${at}: dx`, outside);
    for (const [name, want] of Object.entries(step.expect.grads)) {
      const got = layer.grads[name as keyof typeof layer.grads];
      assertCloseOrNaN(got, want, GRAD, `${at}: grad of ${name}`, outside);
    }
  }
}

for (const v of loadVectors()) {
  await testEachBackend(`backward matches PyTorch autograd on ${v.name}`, (b) => runCase(v, b));
}
