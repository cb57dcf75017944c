/**
 * The auto rule a WebGPU benchmark run supports: bench/webgpu_bench.ts records it in
 * bench/crossover.json with `--write`, and tests/webgpu_select_test.ts checks that the recorded
 * rule is what the recorded measurement gives and that backends/select.ts's WEBGPU_AUTO is it.
 *
 * Depends on nothing.
 *
 * @module
 */

/** One size of the end-to-end sweep: median wall ms per forward on each backend. */
export interface SweepPoint {
  readonly elements: number;
  readonly webgpuMs: number;
  readonly wasmMs: number;
}

/** The rule as bench/crossover.json records it. */
export interface RecordedRule {
  /** Smallest tensor, in elements, that auto runs on WebGPU; null: auto never takes WebGPU. */
  readonly minElements: number | null;
  readonly fallbackAdapter: "never";
  readonly why: string;
}

/**
 * The crossover: the smallest size from which WebGPU is faster at every larger size measured, or
 * null where it is not faster at the largest.
 */
export function crossoverOf(sweep: readonly SweepPoint[]): number | null {
  let crossover: number | null = null;
  for (let i = sweep.length - 1; i >= 0 && sweep[i].webgpuMs < sweep[i].wasmMs; i--) {
    crossover = sweep[i].elements;
  }
  return crossover;
}

/**
 * The rule a run supports: the measured crossover on a real GPU; "never" (minElements null) where
 * WebGPU never won, or where the adapter was a fallback (software) one, whose timings say nothing
 * about a GPU. A threshold is never guessed: without a crossover measured on a GPU, auto keeps to
 * the CPU.
 */
export function autoRuleFrom(
  adapter: { readonly isFallbackAdapter: boolean },
  crossover: number | null,
): RecordedRule {
  const against: string[] = [];
  if (adapter.isFallbackAdapter) {
    against.push(
      "measured on a fallback (software) adapter, whose timings say nothing about a GPU",
    );
  }
  if (crossover === null) against.push("WebGPU was slower end to end than WASM at every size");
  if (against.length > 0) {
    return {
      minElements: null,
      fallbackAdapter: "never",
      why: `${against.join("; and ")}: auto never takes WebGPU by itself`,
    };
  }
  return {
    minElements: crossover,
    fallbackAdapter: "never",
    why: "the measured crossover: WebGPU was faster end to end than WASM from this size on",
  };
}
