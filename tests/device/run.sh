#!/bin/bash
# The device checks (tests/device/pack.sh first): the adapter float probe, the WebGPU bench
# (--write: bench/crossover.json comes back), an A/B of the WebGPU forward+backward against an
# older checkout in .abold/ where pack.sh made one (ab.log), the WebGPU tests of every test file
# that names WebGPU (each its own process, 12 at once, tests/device/files.txt's first: the files
# the H200 failed in session 42) and, beside them, the attack fuzzer from seed 200001 in three
# processes. Results land in $OUT (the tool returns them).
TESTS_S=${TESTS_S:-200}
source tests/device/_setup.sh
el probe
timeout 30 deno run --no-check --cached-only --allow-env tests/fuzz/adapter_float_probe.ts > $OUT/probe.log 2>&1
grep -c DIFFERS $OUT/probe.log; grep two_sum $OUT/probe.log
el bench
timeout 60 deno run --no-check --cached-only --allow-read --allow-env --allow-write=bench/crossover.json bench/webgpu_bench.ts --write > $OUT/bench.log 2>&1; cp bench/crossover.json $OUT/crossover.json
if [ -d .abold ]; then
  el "ab against $(cat .abold/REV)"
  { echo "old: $(cat .abold/REV)"; timeout 45 deno run --no-check --cached-only --allow-read --allow-env bench/ab.ts .abold . webgpu 16
    SHAPE='[65536,64]' timeout 30 deno run --no-check --cached-only --allow-read --allow-env bench/ab.ts .abold . webgpu 20; } > $OUT/ab.log 2>&1
fi
el tests+fuzz
for k in 0 1 2; do
  a=$((200001 + k * 5000))
  (end=$(( $(date +%s) + TESTS_S )); s=$a
   while [ $(date +%s) -lt $end ]; do
     timeout $(( end - $(date +%s) )) deno run --no-check --cached-only -A tests/fuzz/attack_fuzz.ts $s $((s + 199)) webgpu 2>&1 | sed "s/^/[fuzz$k] /" >> $OUT/fuzz.log
     s=$((s + 200))
   done) &
done
mkdir -p /tmp/tl
{ cat tests/device/files.txt; grep -il webgpu tests/*_test.ts | grep -v 'swiftshader_range\|gpu_lid_.*range' | grep -vxF -f tests/device/files.txt; } |
  timeout $TESTS_S xargs -P 12 -I{} bash -c 'f={}; CI=true timeout 120 deno test --no-check --cached-only --allow-read --allow-run --allow-net=127.0.0.1 --allow-env --filter "/[Ww]eb[Gg][Pp][Uu]/" $f > /tmp/tl/$(basename $f).log 2>&1; echo "rc $?" >> /tmp/tl/$(basename $f).log'
sed -i 's/\x1b\[[0-9;]*m//g' /tmp/tl/*.log
tar -czf $OUT/tests.tgz -C /tmp tl
wait
el done
grep -h "passed |" /tmp/tl/*.log | awk '{p+=$3; f+=$6} END {print "webgpu tests passed", p, "failed", f}'
echo "files: $(ls /tmp/tl | wc -l) run, $(grep -l '^rc 0' /tmp/tl/*.log | wc -l) rc 0"
grep -c "DONE" $OUT/fuzz.log; grep -c "FAIL" $OUT/fuzz.log
