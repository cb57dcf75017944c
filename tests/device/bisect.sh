#!/bin/bash
# Which of the shader compiler's float rewrites makes the GPU's y NaN (tests/device/pack.sh first;
# after trace.sh in the same device call is fine: `bash tests/device/trace.sh; bash
# tests/device/bisect.sh`). Runs the attack fuzzer's failing seeds as they are, then with every
# float32 operation of the passes hidden from the compiler's algebra (tests/_gpu_opaque.ts,
# GPU_OPAQUE=all: no contraction, reassociation or cancellation left, the hardware's flushing and
# reciprocal kept), and where that removes failures, with each kind of site alone (mul, add, div,
# cmp, calls). Prints one line per choice: FAIL lines and of how many seeds ($OUT/bisect.log).
# Default SEEDS: ten of the H100's 318 failing seeds (NUMERICS.md, session 51's class), about
# 10 to 60 s per choice there (each choice compiles every pass again).
SEEDS=${SEEDS:-"204429 200861 211999 205490 209858 200061 202406 206361 209608 213144"}
source tests/device/_setup.sh
fuzz() { # fuzz CHOICE: the seeds' FAIL count under GPU_OPAQUE=CHOICE ("none": no rewrite)
  local pre=()
  [ "$1" != none ] && pre=(--preload tests/_gpu_opaque.ts)
  GPU_OPAQUE=$1 timeout 120 deno run --no-check --cached-only -A "${pre[@]}" tests/fuzz/attack_fuzz.ts \
    --seeds $SEEDS > /tmp/bisect-$1.log 2>&1
  local fails=$(grep -ac "FAIL" /tmp/bisect-$1.log)
  el "GPU_OPAQUE=$1: $fails FAIL lines, $(echo $SEEDS | wc -w) seeds, $(grep -ac DONE /tmp/bisect-$1.log) DONE" | tee -a $OUT/bisect.log
  grep -a "FAIL" /tmp/bisect-$1.log | cut -c1-300 | head -3 >> $OUT/bisect.log
  echo $fails
}
none=$(fuzz none | tail -1)
all=$(fuzz all | tail -1)
if [ "$all" -lt "$none" ]; then
  for c in mul add div cmp calls; do fuzz $c > /dev/null; done
fi
el done
cat $OUT/bisect.log
