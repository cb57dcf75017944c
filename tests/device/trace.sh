#!/bin/bash
# Where the GPU's NaN comes from (tests/device/pack.sh first; SEEDS: attack fuzzer seeds that gave
# y NaN there): the adapter float probe ($OUT/probe.log), then tests/fuzz/nan_trace.ts's
# dispatch-by-dispatch words of each seed's call ($OUT/trace.tgz, to diff against the same seeds
# traced on lavapipe), then, where pack.sh made
# .abold/, the per-dispatch GPU times of a SwitchNorm1d [65536, 64] and a SwitchNorm2d
# [8, 64, 56, 56] (whose forward took 123x the copy kernel on an H100) against that checkout
# ($OUT/passes.log).
# Default SEEDS: the smallest of the H100's failing class (layout "nd", constant rows below 2^-21
# beside a row of zeros; NUMERICS.md, session 51), 3d calls of 8 elements.
SEEDS=${SEEDS:-"204429 200861 211999 205490 209858"}
source tests/device/_setup.sh
# The float probe first (seconds; its session 52 lines ask about abs, min, max, unary minus and
# reassociated products, which no device has answered yet).
el probe
timeout 30 deno run --no-check --cached-only --allow-env tests/fuzz/adapter_float_probe.ts > $OUT/probe.log 2>&1
el trace
timeout 120 deno run --no-check --cached-only -A tests/fuzz/nan_trace.ts /tmp/trace $SEEDS 2>&1 | tee $OUT/trace.log
tar -czf $OUT/trace.tgz -C /tmp trace
if [ -d .abold ]; then
  el "passes against $(cat .abold/REV)"
  for shape in '[65536,64]' '[8,64,56,56]'; do
    SHAPE=$shape timeout 60 deno run --no-check --cached-only --allow-read --allow-env bench/ab_passes.ts .abold . 12 >> $OUT/passes.log 2>&1
  done
fi
el done
