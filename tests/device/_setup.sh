# Sourced by tests/device/run.sh and trace.sh on the device machine: Deno, the npm cache and the
# Vulkan loader from what tests/device/pack.sh packed. NVIDIA needs its driver folder on
# LD_LIBRARY_PATH for the Vulkan ICD (without it: "found no adapter").
T0=$(date +%s)
el() { echo "[t+$(( $(date +%s) - T0 ))s] $*"; }
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do [ -d $d ] && export LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}; done
mkdir -p /tmp/bin && xz -dc .deno-pack/deno.xz > /tmp/bin/deno && chmod +x /tmp/bin/deno
export PATH=/tmp/bin:$PATH
tar -xJf .deno-pack/dd.txz -C /tmp && export DENO_DIR=/tmp/dd
export XDG_RUNTIME_DIR=$(mktemp -d)
