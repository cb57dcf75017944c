/**
 * The StateDict type knows what the layer has: running buffers on a layer with BN statistics (the
 * default, and SwitchNorm1d), none without, optional when `usingBN` is only known at run time. The
 * lines marked @ts-expect-error are the checks: `deno check` (and `deno test`) fail if they
 * compile, and the others fail if they need a `!`.
 */
import assert from "node:assert/strict";
import {
  type RunningBuffers,
  type StateDict,
  type SwitchNorm,
  SwitchNorm1d,
  SwitchNorm2d,
  SwitchNorm3d,
} from "../mod.ts";

Deno.test("a layer with BN statistics has running buffers in its state dict type, with no !", () => {
  const sn = new SwitchNorm2d(3, { usingBN: true, backend: "reference" });
  const { running_mean, running_var } = sn.stateDict();
  assert.equal(running_mean.length + running_var.length, 6);
  const byDefault: RunningBuffers = new SwitchNorm2d(3).stateDict();
  const oneD: RunningBuffers = new SwitchNorm1d(3).stateDict();
  const threeD: RunningBuffers = new SwitchNorm3d(3, { eps: 1e-3 }).stateDict();
  assert.equal(byDefault.running_mean.length + oneD.running_var.length, 6);
  assert.equal(threeD.running_var.length, 3);
});

Deno.test("a layer without BN statistics has no running buffers in its state dict type", () => {
  const sn = new SwitchNorm2d(3, { usingBN: false });
  const dict = sn.stateDict();
  // @ts-expect-error: usingBN: false layers have no running buffers
  assert.equal(dict.running_mean, undefined);
  assert.equal(sn.usingBN, false);
});

Deno.test("usingBN known only at run time makes the running buffers optional", () => {
  const usingBN = Math.random() < 2; // a boolean, as far as TypeScript knows
  const sn = new SwitchNorm3d(2, { usingBN });
  const dict: StateDict<boolean> = sn.stateDict();
  // @ts-expect-error: possibly undefined
  assert.equal(dict.running_mean.length, 2);
  assert.equal(dict.running_mean?.length, 2);
  // Every layer is a SwitchNorm (of unknown usingBN), so mixed lists type-check.
  const all: SwitchNorm[] = [sn, new SwitchNorm2d(2, { usingBN: false }), new SwitchNorm1d(2)];
  assert.equal(all.length, 3);
});
