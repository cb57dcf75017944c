"""PyTorch set up for reproducible vectors: portable ATen kernels, one thread, no UserWarnings.
Import it before anything imports torch."""

import os

# Pin ATen's CPU kernels to the portable (non-AVX2/AVX-512) variants so that the float64 reductions,
# and hence the last bits of the expected values, do not depend on the CPU that runs the script.
os.environ["ATEN_CPU_CAPABILITY"] = "default"

import warnings  # noqa: E402

import torch  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=UserWarning)
