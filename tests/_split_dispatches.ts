/**
 * A test-only preload (`--preload tests/_split_dispatches.ts`) that records every dispatch of
 * every compute pass into a compute pass of its own (bench/_split_passes.ts), in the same place
 * of the same encoder. Between passes WebGPU orders all memory accesses; inside one pass the
 * implementation (wgpu) inserts the barriers between dispatches that use a buffer. A result that
 * changes under this preload on some GPU points at that ordering (a race between dispatches of
 * one pass, such as an indirect dispatch reading arguments that the dispatch before it wrote)
 * rather than at arithmetic: `tests/device/bisect.sh` runs the H100's failing seeds so.
 * `tests/fuzz/nan_trace.ts` splits the passes the same way to copy buffers between dispatches.
 *
 * @module
 */
import { splitComputePasses } from "../bench/_split_passes.ts";

/** How many passes the split has recorded (one per dispatch). */
export const SPLIT = { passes: 0 };

splitComputePasses((d) => {
  SPLIT.passes++;
  d.record();
});
