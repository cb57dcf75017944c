"""Summaries of inputs too large for a vector file (summaries/): the long-rows SwitchNorm3d case,
drawn from the same seeded stream as the tests."""

import numpy as np
import torch

from _authors_sn import SwitchNorm3d
from _case import F32, F64, FORMAT, GENERATED_BY


def mulberry32(seed, count):
    """The first `count` outputs of examples/_data.ts `seededRandom(seed)` (mulberry32), as
    float64 in [0, 1). Output i depends only on the state seed + (i + 1) * 0x6d2b79f5, so the
    stream is computed vectorised."""
    m = np.uint64(0xFFFFFFFF)
    a = (np.uint64(seed) + (np.arange(1, count + 1, dtype=np.uint64) * np.uint64(0x6D2B79F5))) & m

    def imul(x, y):
        return (x * y) & m  # low 32 bits of the product (x, y < 2^32: no uint64 overflow issue
        # for the low bits, numpy wraps modulo 2^64)

    t = a
    t = imul(t ^ (t >> np.uint64(15)), t | np.uint64(1))
    t = (t ^ ((t + imul(t ^ (t >> np.uint64(7)), t | np.uint64(61))) & m)) & m
    return ((t ^ (t >> np.uint64(14))) & m).astype(np.float64) / 2.0 ** 32


LONG_ROWS = {"shape": (1, 3, 1, 1, 4000000), "x_seed": 10, "dy_seed": 11, "head": 8}


def long_rows_summary():
    """The long-rows summary with two backwards of the same forward: dy uniform in (-1, 1)
    (`expect`) and dy uniform in (0, 1), of one sign (`expect_dy_one_sign`): there dL/dmu sums
    ~M values of one sign, so a systematic float32 rounding of x - mu per element, or row means
    off by 1e-9, show in dgamma and var_weight."""
    out = _long_rows(-1.0, 2.0)
    out["expect_dy_one_sign"] = _long_rows(0.0, 1.0)["expect"]
    out["description"] += "; expect_dy_one_sign: the same with dy = u (one sign)"
    return out


def _long_rows(dy_lo, dy_width):
    """Issue 10, point 2: SwitchNorm3d on [1,3,1,1,4e6], x uniform in (-1, 3) and dy uniform in
    (-1, 1) from examples/_data.ts seededRandom (the test draws the same floats), reference
    initial state, one training forward and backward. 12M floats are too many for a vector file,
    so this keeps the gradients, running buffers and the first/last values of y and dx."""
    shape, head = LONG_ROWS["shape"], LONG_ROWS["head"]
    count = int(np.prod(shape))
    x = (-1.0 + 4.0 * mulberry32(LONG_ROWS["x_seed"], count)).astype(np.float32).reshape(shape)
    dy = (dy_lo + dy_width * mulberry32(LONG_ROWS["dy_seed"], count)).astype(np.float32)
    dy = dy.reshape(shape)
    m = SwitchNorm3d(3).double()
    m.train(True)
    # One thread: torch's parallel reductions over 4e6 floats would add in an order that depends
    # on the machine's core count, and CI checks that regenerated files are unchanged.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    xt = torch.from_numpy(x).double().requires_grad_(True)
    y = m(xt)
    (y * torch.from_numpy(dy).double()).sum().backward()
    torch.set_num_threads(threads)
    yf, dxf = y.detach().numpy().ravel(), xt.grad.numpy().ravel()
    return {
        "generatedBy": GENERATED_BY,
        "format": FORMAT,
        "name": "sn3d_long_rows",
        "description": "SwitchNorm3d(3), reference initial state, training forward and backward "
                       "on [1,3,1,1,4000000]; x = -1 + 4 u, dy = -1 + 2 u with u from "
                       "seededRandom(x_seed / dy_seed) (examples/_data.ts), as float32",
        "shape": list(shape), "x_seed": LONG_ROWS["x_seed"], "dy_seed": LONG_ROWS["dy_seed"],
        "x_head": F32(x.ravel()[:head]), "dy_head": F32(dy.ravel()[:head]),
        "expect": {
            "y_head": F64(yf[:head]), "y_tail": F64(yf[-head:]),
            "dx_head": F64(dxf[:head]), "dx_tail": F64(dxf[-head:]),
            "running_mean": F64(m.running_mean.numpy()), "running_var": F64(m.running_var.numpy()),
            "grads": {k: F64(getattr(m, k).grad.numpy().ravel())
                      for k in ("weight", "bias", "mean_weight", "var_weight")},
        },
    }
