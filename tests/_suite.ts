/**
 * The shared vector suite: what one case of tests/vectors/ must give on one backend (forward:
 * y and the running buffers after every step; backward: dx and the parameter gradients). The Deno
 * conformance tests and the runtime runner (tests/_runtime_suite.ts, bundled for Chromium and
 * Node) both run these functions, so every runtime is held to the same checks and tolerances.
 *
 * Nothing here touches Deno: the library comes in as a parameter, so that the browser and Node
 * run it against the bundle of mod.ts that a user would load.
 *
 * @module
 */
import type * as Library from "../mod.ts";
import type { BackendName } from "../backends/_backend.ts";
import { assertClose } from "./_close.ts";
import { EXACT, GRAD, RUNNING, Y } from "./_tolerances.ts";
import type { ForwardStep, VectorCase } from "./_vectors.ts";

/** The part of the library the suite uses: mod.ts, or its bundle. */
export type LayerClasses = Pick<typeof Library, "SwitchNorm1d" | "SwitchNorm2d" | "SwitchNorm3d">;

function makeLayer(lib: LayerClasses, v: VectorCase, backend: BackendName) {
  const layer = new lib[v.layer](v.numFeatures, { ...v.options, backend });
  layer.loadStateDict(v.state);
  if (!layer.usingMovingAverage && layer.usingBN) layer.resetRunningStats();
  return layer;
}

/** Runs the forward steps of `v` on `backend`: y and the running buffers against PyTorch. */
export async function runForwardCase(
  lib: LayerClasses,
  v: VectorCase,
  backend: BackendName,
): Promise<void> {
  const layer = makeLayer(lib, v, backend);
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
function checkSparseState(
  layer: ReturnType<typeof makeLayer>,
  step: ForwardStep,
  at: string,
): void {
  if (!layer.sparse) return;
  const dict = layer.stateDict() as unknown as Record<string, Float32Array>;
  for (const key of ["mean_weight", "var_weight", "mean_fixed", "var_fixed"] as const) {
    const want = step.expect[key];
    if (!want) throw new Error(`${at}: a sparse case must give the ${key} after each step`);
    assertClose(dict[key], want, EXACT, `${at}: ${key} after the step`);
  }
}

/** Runs the backward of every forward step of `v` on `backend`: dx and the gradients. */
export async function runBackwardCase(
  lib: LayerClasses,
  v: VectorCase,
  backend: BackendName,
): Promise<void> {
  const layer = makeLayer(lib, v, backend);
  for (const [i, step] of v.steps.entries()) {
    if (step.op === "finalizeBatchAverage") {
      layer.finalizeBatchAverage();
      continue;
    }
    const at = `${v.name} step ${i} (${step.mode})`;
    layer.train(step.mode === "train");
    if (step.radius !== undefined) layer.radius = step.radius;
    await layer.forward(step.x, step.shape, { keepForBackward: true });
    if (layer.backendInfo?.backend !== backend) {
      throw new Error(`${at}: ran on ${layer.backendInfo?.backend}, not ${backend}`);
    }
    layer.zeroGrad();
    const dx = await layer.backward(step.dy);
    assertClose(dx, step.expect.dx, GRAD, `${at}: dx`);
    for (const [name, want] of Object.entries(step.expect.grads)) {
      const got = layer.grads[name as keyof typeof layer.grads];
      assertClose(got, want, GRAD, `${at}: grad of ${name}`);
    }
  }
}

/** The two halves of the suite, by the name the reports use. */
export const SUITE_PARTS = { forward: runForwardCase, backward: runBackwardCase } as const;
