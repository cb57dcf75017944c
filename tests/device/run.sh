#!/bin/bash
# The device checks of session 42 (tests/device/pack.sh first): the adapter float probe, the
# WebGPU bench (--write: bench/crossover.json comes back), the WebGPU tests of the files in
# tests/device/files.txt (each its own process, 12 at once) and ~110 s of the attack fuzzer from
# seed 200001, four processes. Results land in $OUT (the tool returns them). NVIDIA needs its
# driver folder on LD_LIBRARY_PATH for the Vulkan ICD (without it: "found no adapter").
T0=$(date +%s)
el() { echo "[t+$(( $(date +%s) - T0 ))s] $*"; }
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do [ -d $d ] && export LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}; done
mkdir -p /tmp/bin && xz -dc .deno-pack/deno.xz > /tmp/bin/deno && chmod +x /tmp/bin/deno
export PATH=/tmp/bin:$PATH
tar -xJf .deno-pack/dd.txz -C /tmp && export DENO_DIR=/tmp/dd
export XDG_RUNTIME_DIR=$(mktemp -d)
el probe
timeout 30 deno run --no-check --cached-only --allow-env tests/fuzz/adapter_float_probe.ts > $OUT/probe.log 2>&1
grep -c DIFFERS $OUT/probe.log; grep two_sum $OUT/probe.log
el bench
timeout 60 deno run --no-check --cached-only --allow-read --allow-env --allow-write=bench/crossover.json bench/webgpu_bench.ts --write > $OUT/bench.log 2>&1; cp bench/crossover.json $OUT/crossover.json
el tests+fuzz
for k in 0 1 2 3; do
  a=$((200001 + k * 5000))
  (end=$(( $(date +%s) + 110 )); s=$a
   while [ $(date +%s) -lt $end ]; do
     timeout $(( end - $(date +%s) )) deno run --no-check --cached-only -A tests/fuzz/attack_fuzz.ts $s $((s + 199)) webgpu 2>&1 | sed "s/^/[fuzz$k] /" >> $OUT/fuzz.log
     s=$((s + 200))
   done) &
done
mkdir -p /tmp/tl
cat tests/device/files.txt | xargs -P 12 -I{} bash -c 'f={}; CI=true timeout 100 deno test --no-check --cached-only --allow-read --allow-run --allow-net=127.0.0.1 --allow-env --filter "/[Ww]eb[Gg][Pp][Uu]/" $f > /tmp/tl/$(basename $f).log 2>&1; echo "rc $?" >> /tmp/tl/$(basename $f).log'
tar -czf $OUT/tests.tgz -C /tmp tl
wait
el done
grep -h "passed |" /tmp/tl/*.log | awk '{p+=$3; f+=$6} END {print "webgpu tests passed", p, "failed", f}'
grep -c "DONE" $OUT/fuzz.log; grep -c "FAIL" $OUT/fuzz.log
