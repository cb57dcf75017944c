"""PyTorch beside switchnorm: the authors' SwitchNorm2d (the same module tests/vectors/generate.py
uses as the reference, here in float32 as a PyTorch user runs it) timed on the shapes of
bench/wasm_bench.ts, on the CPU, with 1 thread and with every core:

    deno task bench:torch        (/usr/bin/python3 bench/torch_peer.py; Debian's python3-torch)

Per shape: the training forward, the training forward + backward (y.backward(dy), x requiring
grad, as in training a model), and torch.nn.functional.instance_norm (the single fused op
closest to the kernel's statistics + normalize). Times are medians of REPS calls after warm-up,
in milliseconds. This is a separate process from `deno bench`, so compare its times with a WASM
bench run taken right after it on the same machine, not across machines.

    TORCH_DEVICE=cuda python3 bench/torch_peer.py

runs the same calls on the GPU instead (float32, the default CUDA stream; each call timed from a
synchronized start to torch.cuda.synchronize(), launch overhead included, as a WebGPU call to its
read-back is), the peer of `deno task bench:webgpu` on the same machine.
"""

import importlib.util
import os
import statistics
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = [(8, 64, 56, 56), (32, 256, 14, 14), (2, 32, 128, 128), (64, 512, 7, 7)]
REPS = 30


def reference_module():
    """tests/vectors/generate.py, loaded as a module (its main() does not run)."""
    path = os.path.join(HERE, "..", "tests", "vectors", "generate.py")
    spec = importlib.util.spec_from_file_location("sn_reference", path)
    mod = importlib.util.module_from_spec(spec)
    before = os.environ.get("ATEN_CPU_CAPABILITY")
    spec.loader.exec_module(mod)
    # generate.py pins ATen to its portable kernels (for reproducible vectors); a benchmark wants
    # the fastest ones the CPU has, so undo that before the first op runs.
    if before is None:
        os.environ.pop("ATEN_CPU_CAPABILITY", None)
    else:
        os.environ["ATEN_CPU_CAPABILITY"] = before
    return mod


def activations(shape, seed):
    """Unit-ish spread around a per-channel offset, as in bench/wasm_bench.ts (not bit-equal)."""
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    offset = (torch.arange(c) % 7 - 3).float().view(1, c, 1, 1)
    return offset + torch.rand(shape, generator=g) - 0.5


DEVICE = os.environ.get("TORCH_DEVICE", "cpu")


def sync():
    if DEVICE != "cpu":
        torch.cuda.synchronize()


def median_ms(fn):
    for _ in range(3):
        fn()
    times = []
    for _ in range(REPS):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    ref = reference_module()
    cores = os.cpu_count() or 1
    where = "CPU" if DEVICE == "cpu" else torch.cuda.get_device_name()
    print("PyTorch {} ({}), float32; medians of {} calls, ms".format(torch.__version__, where, REPS))
    print("| shape | threads | SN2d train forward | SN2d forward + backward | F.instance_norm |")
    print("| --- | --- | --- | --- | --- |")
    for threads in sorted({1, cores}) if DEVICE == "cpu" else [cores]:
        torch.set_num_threads(threads)
        for shape in SHAPES:
            x = activations(shape, 1).to(DEVICE)
            dy = (activations(shape, 2) * 0.1).to(DEVICE)
            sn = ref.SwitchNorm2d(shape[1]).train().to(DEVICE)
            weight = torch.ones(shape[1], device=DEVICE)
            bias = torch.zeros(shape[1], device=DEVICE)

            def forward():
                with torch.no_grad():
                    sn(x)

            xg = x.clone().requires_grad_(True)

            def forward_backward():
                sn.zero_grad()
                xg.grad = None
                sn(xg).backward(dy)

            def instance_norm():
                with torch.no_grad():
                    F.instance_norm(x, weight=weight, bias=bias, eps=1e-5)

            print("| [{}] | {} | {:.2f} | {:.2f} | {:.2f} |".format(
                ",".join(map(str, shape)), threads, median_ms(forward),
                median_ms(forward_backward), median_ms(instance_norm)))


if __name__ == "__main__":
    main()
