/**
 * What the call-order tests share: a SwitchNorm2d(3) with a non-trivial state on each backend (with
 * a delayed one-replica SyncSN group if asked), data that differs from call to call, tensors as
 * arrays or resident, and a comparison of two layers' whole state.
 */
import { type SwitchNorm, SwitchNorm2d, type SyncGroup } from "../mod.ts";
import type { BackendName, ResidentTensor } from "../backends/_backend.ts";
import { assertClose, type Tolerance } from "./_close.ts";
import { seededRandom } from "../examples/_data.ts";

export const EXACT: Tolerance = {
  atol: 0,
  rtol: 0,
  why: "the same calls in the same order on the same backend: bit-identical results",
};

export const SHAPE = [4, 3, 5, 7];
export const LENGTH = 4 * 3 * 5 * 7;

/** Data whose per-sample statistics differ from call to call (offset and scale by seed). */
export function data(seed: number, length = LENGTH): Float32Array {
  const r = seededRandom(seed);
  const offset = 4 * r() - 2, scale = 0.5 + 2 * r();
  return Float32Array.from({ length }, () => offset + scale * (2 * r() - 1));
}

/** A one-replica SyncSN group whose allGather answers after `ms`, calling `onGather` first. */
export function delayedGroup(
  ms = 5,
  hooks: { onGather?: () => void; fail?: boolean } = {},
): SyncGroup {
  return {
    size: 1,
    allGather: (v) => {
      hooks.onGather?.();
      return new Promise((resolve, reject) =>
        setTimeout(() => hooks.fail ? reject(new Error("replica failed")) : resolve([v]), ms)
      );
    },
  };
}

/** A SwitchNorm2d(3) with a non-trivial state, on `backend`, with a delayed group if `sync`. */
export function makeLayer(backend: BackendName, sync: boolean, group?: SyncGroup): SwitchNorm2d {
  const layer = new SwitchNorm2d(3, {
    backend,
    sync: sync ? group ?? delayedGroup() : undefined,
  });
  layer.loadStateDict({
    weight: [1.2, 0.7, -0.4],
    bias: [0.1, -0.3, 0.5],
    mean_weight: [0.3, -0.2, 0.9],
    var_weight: [-0.5, 0.4, 0.2],
    running_mean: [0.2, -0.1, 0.4],
    running_var: [1.5, 0.8, 1.1],
  });
  return layer;
}

/** How the tests hand tensors to a layer: as Float32Arrays, or uploaded first. */
type Kind = "array" | "resident";

/** Tensors of `kind` for `layer`, and a way to read a result back. */
export async function tensors(layer: SwitchNorm2d, kind: Kind, ...xs: Float32Array[]) {
  if (kind === "array") return xs;
  return await Promise.all(xs.map((x) => layer.upload(x, SHAPE)));
}

export function forwardOf(layer: SwitchNorm2d, x: Float32Array | ResidentTensor) {
  return x instanceof Float32Array ? layer.forward(x, SHAPE) : layer.forward(x);
}

export function backwardOf(layer: SwitchNorm2d, dy: Float32Array | ResidentTensor) {
  return dy instanceof Float32Array ? layer.backward(dy) : layer.backward(dy);
}

export async function read(t: Float32Array | ResidentTensor): Promise<Float32Array> {
  return t instanceof Float32Array ? t : await t.read();
}

export function kindsOf(backend: BackendName): Kind[] {
  return backend === "reference" ? ["array"] : ["array", "resident"];
}

/** Each (SyncSN or not, array or resident) variant a backend runs. */
export function variants(backend: BackendName): { sync: boolean; kind: Kind; label: string }[] {
  return [false, true].flatMap((sync) =>
    kindsOf(backend).map((kind) => ({ sync, kind, label: `${kind}${sync ? ", SyncSN" : ""}` }))
  );
}

export function assertSameState(a: SwitchNorm, b: SwitchNorm, at: string): void {
  const da: Record<string, Float32Array> = { ...a.stateDict() };
  const db: Record<string, Float32Array> = { ...b.stateDict() };
  for (const key of Object.keys(db)) assertClose(da[key], db[key], EXACT, `${at}: ${key}`);
  for (const key of ["weight", "bias", "mean_weight", "var_weight"] as const) {
    assertClose(a.grads[key], b.grads[key], EXACT, `${at}: grad of ${key}`);
  }
}

/** What a call ended with: its result read back, or its error's message. */
export async function outcome(p: Promise<Float32Array | ResidentTensor | void>) {
  try {
    const v = await p;
    return { value: v === undefined ? undefined : await read(v) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}
