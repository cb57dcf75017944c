/**
 * What tests/runtimes_test.ts runs inside a constrained runtime (a `deno run` with no permission
 * flags, a Worker, a runtime posing without SIMD or refusing WebAssembly compilation): one
 * SwitchNorm2d training forward per backend request, with what ran, why, the output, the running
 * buffers and the warnings, or the error it threw.
 *
 * @module
 */
import { SwitchNorm2d } from "../mod.ts";
import type { BackendRequest } from "../mod.ts";

/** The input every probe normalizes. */
export const SHAPE = [2, 3, 4, 4];
/** Deterministic, not constant per row (so that every statistic is exercised). */
export const X: Float32Array = Float32Array.from(
  { length: 2 * 3 * 4 * 4 },
  (_, i) => Math.sin(i * 1.7) * 3 + (i % 5),
);

/** One backend request's outcome. */
export interface ProbeRun {
  readonly ran?: string;
  readonly reason?: string;
  readonly y?: number[];
  readonly error?: string;
  /** After the call (unchanged when it threw). */
  readonly running_mean: number[];
}

/** What a probe reports. */
export interface ProbeReport {
  /** Deno.permissions state per permission name, to show what the runtime granted. */
  readonly permissions: Record<string, string>;
  readonly runs: Record<string, ProbeRun[]>;
  readonly warnings: string[];
}

/** Runs each request twice (the second shows what is remembered and that warnings come once). */
export async function probe(requests: readonly BackendRequest[]): Promise<ProbeReport> {
  const permissions: Record<string, string> = {};
  for (const name of ["read", "write", "net", "env", "run", "ffi", "sys"] as const) {
    permissions[name] = (await Deno.permissions.query({ name })).state;
  }
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
  const runs: Record<string, ProbeRun[]> = {};
  try {
    for (const backend of requests) {
      runs[backend] = [];
      for (let i = 0; i < 2; i++) {
        const sn = new SwitchNorm2d(3, { backend });
        try {
          const y = await sn.forward(X, SHAPE);
          runs[backend].push({
            ran: sn.backendInfo?.backend,
            reason: sn.backendInfo?.reason,
            y: Array.from(y),
            running_mean: Array.from(sn.running_mean),
          });
        } catch (e) {
          const err = e as Error;
          runs[backend].push({
            error: `${err.name}: ${err.message}`,
            running_mean: Array.from(sn.running_mean),
          });
        }
      }
    }
  } finally {
    console.warn = warn;
  }
  return { permissions, runs, warnings };
}
