#!/bin/bash
# Which of the shader compiler's float rewrites makes the GPU's y NaN (tests/device/pack.sh first;
# after trace.sh in the same device call is fine: `bash tests/device/trace.sh; bash
# tests/device/bisect.sh`). Runs the attack fuzzer's failing seeds as they are, then with every
# float32 operation of the passes hidden from the compiler's algebra (tests/_gpu_opaque.ts,
# GPU_OPAQUE=all: no contraction, reassociation or cancellation across two values left, the
# hardware's flushing and reciprocal kept), and where that removes failures, with each kind of site
# alone (mul, add, div, cmp, calls). First, once more with every dispatch in a compute pass of its
# own (tests/_split_dispatches.ts, choice "split"): if that alone removes the NaN, the cause is the
# ordering between dispatches of one pass (a barrier, an indirect dispatch's arguments), not
# arithmetic, and tests/fuzz/nan_trace.ts (which splits the passes too) will not show it.
# Prints one line per choice ($OUT/bisect.log).
# Default SEEDS: ten of the H100's 318 failing seeds (NUMERICS.md, session 51's class), about
# 10 to 60 s per choice there (each choice compiles every pass again; ~36 s on lavapipe here).
# T0 (tests/device/_setup.sh) starts the clock: no kind starts after BISECT_BUDGET_S (420) seconds.
# What the choices cannot tell: tests/_gpu_opaque.ts's comment (identities of one value, such as
# x - x, and literal operands stay exposed; builtins such as min, max, select are not wrapped).
SEEDS=${SEEDS:-"204429 200861 211999 205490 209858 200061 202406 206361 209608 213144"}
source tests/device/_setup.sh
# A choice's run counts only if it printed DONE and no THROW (a backend error skips its seed
# silently in attack_fuzz's FAIL count; a timeout, a crash or a failed preload leaves no DONE):
# else it is INCONCLUSIVE and no conclusion is drawn from it. Its whole log is $OUT/bisect-CHOICE.log.
fuzz() { # fuzz CHOICE: the seeds' FAIL count under GPU_OPAQUE=CHOICE ("none": no rewrite;
  # "split": no rewrite, a pass per dispatch), or X
  local pre=() log=$OUT/bisect-$1.log
  case "$1" in
    none) ;;
    split) pre=(--preload tests/_split_dispatches.ts) ;;
    *) pre=(--preload tests/_gpu_opaque.ts) ;;
  esac
  GPU_OPAQUE=$1 timeout 120 deno run --no-check --cached-only -A "${pre[@]}" tests/fuzz/attack_fuzz.ts \
    --seeds $SEEDS > $log 2>&1
  local rc=$?
  local fails=$(grep -ac "^FAIL(" $log) throws=$(grep -ac "^THROW" $log) done=$(grep -ac "^DONE" $log)
  local verdict=$fails note=""
  if [ "$done" != 1 ] || [ "$throws" != 0 ]; then verdict=X; note=" INCONCLUSIVE"; fi
  el "choice $1: $fails FAIL, $throws THROW, $done DONE, rc $rc, $(echo $SEEDS | wc -w) seeds$note" | tee -a $OUT/bisect.log
  grep -a "^FAIL(\|^THROW" $log | cut -c1-300 | head -3 >> $OUT/bisect.log
  [ "$done" != 1 ] && tail -5 $log | cut -c1-300 >> $OUT/bisect.log
  echo $verdict
}
none=$(fuzz none | tail -1)
split=$(fuzz split | tail -1)
if [ "$none" != X ] && [ "$split" != X ] && [ "$split" -lt "$none" ]; then
  el "split removes failures: the ordering between dispatches of one compute pass" | tee -a $OUT/bisect.log
fi
all=$(fuzz all | tail -1)
if [ "$none" = X ] || [ "$all" = X ]; then
  el "none/all inconclusive (see above and $OUT/bisect-*.log): no bisection" | tee -a $OUT/bisect.log
elif [ "$all" -lt "$none" ]; then
  # Each kind only while the call's 600 s can hold one more run of up to 120 s.
  for c in mul add div cmp calls; do
    [ $(( $(date +%s) - T0 )) -gt ${BISECT_BUDGET_S:-420} ] && { el "out of time before $c" | tee -a $OUT/bisect.log; break; }
    fuzz $c > /dev/null
  done
fi
el done
cat $OUT/bisect.log
