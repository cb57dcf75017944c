#!/bin/bash
# Where the GPU's NaN comes from (tests/device/pack.sh first; SEEDS: attack fuzzer seeds that gave
# y NaN there): tests/fuzz/nan_trace.ts's dispatch-by-dispatch words of each seed's call
# ($OUT/trace.tgz, to diff against the same seeds traced on lavapipe), then, where pack.sh made
# .abold/, the per-dispatch GPU times of a SwitchNorm1d [65536, 64] against that checkout
# ($OUT/passes.log).
source tests/device/_setup.sh
el trace
timeout 120 deno run --no-check --cached-only -A tests/fuzz/nan_trace.ts /tmp/trace $SEEDS 2>&1 | tee $OUT/trace.log
tar -czf $OUT/trace.tgz -C /tmp trace
if [ -d .abold ]; then
  el "passes against $(cat .abold/REV)"
  SHAPE='[65536,64]' timeout 60 deno run --no-check --cached-only --allow-read --allow-env bench/ab_passes.ts .abold . 12 > $OUT/passes.log 2>&1
fi
el done
