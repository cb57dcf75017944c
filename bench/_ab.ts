/**
 * What bench/ab.ts and bench/ab_passes.ts share: the part of a checkout's API they call (any
 * version since resident tensors), loading a checkout's mod.ts, the inputs, and quantiles.
 *
 * @module
 */

/** A resident tensor of either checkout. */
export interface Tensor {
  read(): Promise<Float32Array>;
  dispose(): void;
}

/** A SwitchNorm1d or SwitchNorm2d of either checkout. */
export interface Layer {
  upload(data: Float32Array, shape: readonly number[]): Promise<Tensor>;
  forward(x: Tensor, options?: { keepForBackward?: boolean }): Promise<Tensor>;
  forward(
    x: Float32Array,
    shape: readonly number[],
    options?: { keepForBackward?: boolean },
  ): Promise<Float32Array>;
  backward(dy: Tensor): Promise<Tensor>;
  backward(dy: Float32Array): Promise<Float32Array>;
  train(mode: boolean): unknown;
  loadStateDict(state: Record<string, Float32Array>, options: { strict: boolean }): unknown;
}

/** A checkout's mod.ts (one from before threads has no setNumThreads). */
export interface Module {
  SwitchNorm1d: new (c: number, options: { backend: string; momentum?: number }) => Layer;
  SwitchNorm2d: new (c: number, options: { backend: string; momentum?: number }) => Layer;
  setNumThreads?: (n: number) => void;
}

/** Imports DIR/mod.ts, DIR relative to the working directory or absolute. */
export async function loadCheckout(dir: string): Promise<Module> {
  const url = new URL(`${dir.replace(/\/$/, "")}/mod.ts`, `file://${Deno.cwd()}/`);
  return await import(url.href);
}

/** x and dy of `length` elements, the same for both checkouts. */
export function inputs(length: number): { x: Float32Array; dy: Float32Array } {
  return {
    x: Float32Array.from({ length }, (_, i) => Math.sin(i * 0.37) * 2 + (i % 5)),
    dy: Float32Array.from({ length }, (_, i) => Math.cos(i * 0.11)),
  };
}

/** The q-quantile of xs (q in [0, 1)). */
export function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length * q)];
}
