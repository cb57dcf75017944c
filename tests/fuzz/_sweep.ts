/**
 * The command line the seeded class sweeps under `tests/fuzz/` share (issue 10): for each seed
 * from FIRST to LAST it runs the sweep's call on the backend and on the float64 reference, holds
 * it to the range tests' checks (and the sweep's own, where it has one), prints each failure with
 * its seed, then the count, and exits.
 *
 *   deno run -A tests/fuzz/NAME.ts FIRST LAST [webgpu|wasm]
 *
 * @module
 */
import { assertRangeChecks, type CallResult, type LayerCall, runBoth } from "../_range_compare.ts";

/**
 * Runs `make(seed)` for the seeds `args` name (FIRST LAST [webgpu|wasm], WebGPU by default),
 * prints `FAIL seed layer [shape] train|eval message` for each call that fails
 * `assertRangeChecks` or `extra` (with `tag(call)` appended, where given: a known exception's
 * tag such as `_close_stats.ts`'s), then `DONE FIRST LAST backend failures N`, and exits with 0
 * (2 for bad arguments): a tool to find members of a fault class, not a test.
 */
export async function runSweep(
  make: (seed: number) => LayerCall,
  extra?: (call: LayerCall, got: CallResult, want: CallResult) => void,
  args: readonly string[] = Deno.args,
  tag?: (call: LayerCall) => string,
): Promise<never> {
  const [first, last, backend = "webgpu"] = [Number(args[0]), Number(args[1]), args[2]];
  if (
    !Number.isInteger(first) || !Number.isInteger(last) || !["webgpu", "wasm"].includes(backend)
  ) {
    console.error("usage: FIRST LAST [webgpu|wasm]");
    Deno.exit(2);
  }
  let fails = 0;
  for (let seed = first; seed <= last; seed++) {
    const call = make(seed);
    try {
      const { got, want } = await runBoth(call, backend as "webgpu" | "wasm");
      assertRangeChecks(call, got, want);
      extra?.(call, got, want);
    } catch (e) {
      fails++;
      console.log(
        "FAIL",
        seed,
        call.layer,
        `[${call.shape}]`,
        call.training ? "train" : "eval",
        String(e).replaceAll("\n", " | ").slice(0, 300) + (tag?.(call) ?? ""),
      );
    }
  }
  console.log("DONE", first, last, backend, "failures", fails);
  Deno.exit(0);
}
