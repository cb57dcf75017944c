"""The Case builder (a case's options, state and steps, run on the ports) and the JSON writing of
its vector file (format: README.md in this directory)."""

import json
import math
import zlib

import numpy as np
import torch

from _authors_sn import SwitchNorm1d, SwitchNorm2d, SwitchNorm3d
from _authors_ssn import SPARSE_LAYERS

GENERATED_BY = "deno task gen:vectors (tests/vectors/generate.py)"
FORMAT = 1


def finalize_batch_average(module, k):
    """Batch-average workflow (SN_SPEC): after k train forwards with using_moving_average=False
    from zeroed buffers, turn the accumulated sums into inference statistics."""
    mean = module.running_mean / k
    var = module.running_var / k - mean ** 2
    module.running_mean.copy_(mean)
    module.running_var.copy_(var)


LAYERS = {"SwitchNorm1d": SwitchNorm1d, "SwitchNorm2d": SwitchNorm2d, "SwitchNorm3d": SwitchNorm3d}
RANK = {"SwitchNorm1d": 2, "SwitchNorm2d": 4, "SwitchNorm3d": 5}
DEFAULT_MOMENTUM = {"SwitchNorm1d": 0.997, "SwitchNorm2d": 0.9, "SwitchNorm3d": 0.997}


# ---------------------------------------------------------------------------------------------
# Case description and evaluation
# ---------------------------------------------------------------------------------------------

class Case:
    def __init__(self, name, description, layer, num_features, *, eps=1e-5, momentum=None,
                 using_moving_average=True, using_bn=True, last_gamma=False, sparse=False):
        self.name = name
        self.sparse = sparse  # Sparse SN: the port of SSN2d (SPARSE_LAYERS) instead of SN
        self.description = description
        self.layer = layer
        self.C = num_features
        self.eps = eps
        default_momentum = 0.997 if sparse else DEFAULT_MOMENTUM[layer]  # SSN2d's default
        self.momentum = default_momentum if momentum is None else momentum
        self.using_moving_average = using_moving_average
        self.using_bn = using_bn if layer != "SwitchNorm1d" else True
        self.last_gamma = last_gamma if layer != "SwitchNorm1d" else False
        self.rng = np.random.default_rng(zlib.crc32(name.encode("utf-8")))
        self.state = None
        # ("forward", mode, x float32 array, radius or None) | ("finalizeBatchAverage",)
        self.steps = []
        self.dy_scale = 1.0  # dy = N(0, 1) * dy_scale
        # Round the float64 module's running buffers to float32 after each train step, as the
        # library's (and PyTorch's float32) buffers are (range cases: 1e-50 becomes 0, 1e76 Inf).
        self.float32_buffers = False

    # -- drawing helpers (all float32) --
    def normal(self, shape, scale=1.0, loc=0.0):
        return (loc + scale * self.rng.standard_normal(shape)).astype(np.float32)

    def uniform(self, shape, lo, hi):
        return self.rng.uniform(lo, hi, shape).astype(np.float32)

    def n_logits(self):
        return 3 if (self.layer != "SwitchNorm1d" and self.using_bn) else 2

    def has_buffers(self):
        return self.layer == "SwitchNorm1d" or self.using_bn

    def default_state(self):
        """The reference's initial state (after reset_parameters)."""
        C, L = self.C, self.n_logits()
        st = {
            "weight": np.full(C, 0.0 if self.last_gamma else 1.0, np.float32),
            "bias": np.zeros(C, np.float32),
            "mean_weight": np.ones(L, np.float32),
            "var_weight": np.ones(L, np.float32),
        }
        if self.has_buffers():
            st["running_mean"] = np.zeros(C, np.float32)
            st["running_var"] = np.zeros(C, np.float32)
        self.state = self.with_sparse_buffers(st)
        return st

    def with_sparse_buffers(self, st, radius=0.0):
        """SSN2d's extra buffers (not fixed, the given radius), for sparse cases."""
        if self.sparse:
            st["mean_fixed"] = np.zeros(1, np.float32)
            st["var_fixed"] = np.zeros(1, np.float32)
            st["radius"] = np.full(1, radius, np.float32)
        return st

    def random_state(self, buffers="random"):
        """Random parameters; buffers: "zero" (start of accumulation) or "random" (eval-ready)."""
        C, L = self.C, self.n_logits()
        st = {
            "weight": np.zeros(C, np.float32) if self.last_gamma else self.uniform(C, 0.5, 1.5),
            "bias": self.normal(C, 0.5),
            "mean_weight": self.normal(L),
            "var_weight": self.normal(L),
        }
        if self.has_buffers():
            if buffers == "zero":
                st["running_mean"] = np.zeros(C, np.float32)
                st["running_var"] = np.zeros(C, np.float32)
            else:
                st["running_mean"] = self.normal(C, 0.5)
                st["running_var"] = self.uniform(C, 0.5, 2.0)
        self.state = self.with_sparse_buffers(st)
        return st

    def forward(self, mode, x, radius=None, dy_at=None):
        """A forward step; radius (sparse cases): set the layer's radius before it; dy_at: a dict
        {index tuple of x's shape: float32 value} overwriting those entries of the step's seeded
        dy (NaN and infinities in dy, which the seeded stream never draws)."""
        assert mode in ("train", "eval")
        x = np.ascontiguousarray(x, dtype=np.float32)
        assert x.ndim == RANK[self.layer] and x.shape[1] == self.C, (self.name, x.shape)
        assert radius is None or self.sparse
        self.steps.append(("forward", mode, x, radius, dy_at or {}))

    def finalize(self):
        self.steps.append(("finalizeBatchAverage",))

    # -- evaluation with the reference module --
    def build_module(self):
        cls = (SPARSE_LAYERS if self.sparse else LAYERS)[self.layer]
        if self.layer == "SwitchNorm1d":
            m = cls(self.C, eps=self.eps, momentum=self.momentum,
                    using_moving_average=self.using_moving_average)
        else:
            m = cls(self.C, eps=self.eps, momentum=self.momentum,
                    using_moving_average=self.using_moving_average,
                    using_bn=self.using_bn, last_gamma=self.last_gamma)
        sd = m.state_dict()
        assert set(sd.keys()) == set(self.state.keys()), (self.name, sd.keys(), self.state.keys())
        m.load_state_dict({k: torch.from_numpy(self.state[k].copy()).reshape(sd[k].shape)
                           for k in sd})
        m = m.double()
        if self.sparse:
            # SSN2d reads its radius buffer only through set_rad (their training loop calls it
            # every step); the library's radius is the buffer, so apply the loaded one.
            m.set_rad(float(self.state["radius"][0]))
        return m

    def run(self):
        m = self.build_module()
        train_steps = 0
        out_steps = []
        # dy for the backward check (loss = sum(y * dy)) comes from its own stream, so that adding
        # it left every x and state of the forward vectors unchanged.
        rng_dy = np.random.default_rng(zlib.crc32((self.name + "/dy").encode("utf-8")))
        for st in self.steps:
            if st[0] == "forward":
                _, mode, x, radius, dy_at = st
                if radius is not None:
                    m.set_rad(radius)
                m.train(mode == "train")
                if mode == "train":
                    train_steps += 1
                for p in m.parameters():
                    p.grad = None
                xt = torch.from_numpy(x.copy()).double().requires_grad_(True)
                y = m(xt)
                assert y.dtype == torch.float64 and tuple(y.shape) == x.shape
                # dy_scale (extreme-range cases) keeps dx = O(dy / std) near 1, where the
                # tolerances can see it.
                with np.errstate(over="ignore"):
                    dy = (rng_dy.standard_normal(x.shape) * self.dy_scale).astype(np.float32)
                assert np.isfinite(dy).all(), (self.name, "dy_scale makes dy overflow float32")
                # After the draw, so that the stream (and every later step's dy) is unchanged.
                for at, v in dy_at.items():
                    dy[at] = np.float32(v)
                (y * torch.from_numpy(dy).double()).sum().backward()
                if self.float32_buffers and self.has_buffers():
                    with torch.no_grad():
                        for b in (m.running_mean, m.running_var):
                            b.copy_(b.float().double())
                # Every output is a float32 array: a float64 value beyond float32's largest is the
                # infinity of its sign there (float32_range), as PyTorch's float32 cast makes it.
                expect = {"y": F64(float32_range(y.detach().numpy().ravel()))}
                if self.has_buffers():
                    expect["running_mean"] = F64(float32_range(m.running_mean.numpy().ravel()))
                    expect["running_var"] = F64(float32_range(m.running_var.numpy().ravel()))
                expect["dx"] = F64(float32_range(xt.grad.numpy().ravel()))
                # A fixed Sparse SN mixing's logits have no gradient (None): 0.
                expect["grads"] = {k: F64(float32_range(
                    np.zeros(getattr(m, k).numel()) if getattr(m, k).grad is None
                    else getattr(m, k).grad.numpy().ravel()))
                    for k in ("weight", "bias", "mean_weight", "var_weight")}
                if self.sparse:
                    # The logits and fixed flags after the step (a freeze changes them).
                    for k in ("mean_weight", "var_weight", "mean_fixed", "var_fixed"):
                        expect[k] = F64(getattr(m, k).detach().double().numpy().ravel())
                step = {"op": "forward", "mode": mode}
                if radius is not None:
                    step["radius"] = radius
                step.update({"shape": list(x.shape), "x": F32(x.ravel()), "dy": F32(dy.ravel()),
                             "expect": expect})
                out_steps.append(step)
            else:
                assert self.has_buffers() and not self.using_moving_average and train_steps > 0
                with torch.no_grad():
                    finalize_batch_average(m, train_steps)
                out_steps.append({"op": "finalizeBatchAverage", "batches": train_steps,
                                  "expect": {
                                      "running_mean": F64(m.running_mean.numpy().ravel()),
                                      "running_var": F64(m.running_var.numpy().ravel())}})
        options = {"eps": self.eps, "momentum": self.momentum,
                   "usingMovingAverage": self.using_moving_average}
        if self.layer != "SwitchNorm1d":
            options["usingBN"] = self.using_bn
            options["lastGamma"] = self.last_gamma
        if self.sparse:
            options["sparse"] = True
        doc = {
            "generatedBy": GENERATED_BY,
            "format": FORMAT,
            "name": self.name,
            "description": self.description,
            "layer": self.layer,
            "numFeatures": self.C,
            "options": options,
            "state": {k: F32(v) for k, v in self.state.items()},
            "steps": out_steps,
        }
        return doc


# ---------------------------------------------------------------------------------------------
# JSON output: exact float32 inputs, repr (round-trip) float64 expectations, non-finite as strings
# ---------------------------------------------------------------------------------------------

class F32(list):
    """float32 values, written as the exact double value (repr) so that they parse back exactly."""

    def __init__(self, arr):
        arr = np.asarray(arr)
        assert arr.dtype == np.float32
        super().__init__(float(v) for v in arr.ravel())


class F64(list):
    def __init__(self, arr):
        arr = np.asarray(arr)
        assert arr.dtype == np.float64
        super().__init__(float(v) for v in arr.ravel())


def float32_range(v):
    """An output (y, dx, a gradient, a running buffer) as a float32 array holds it: values beyond
    float32's range are +-Infinity (as PyTorch's float32 cast makes them: round to nearest, so a
    value within half an ulp above float32's largest stays finite); others are left in float64
    (the tolerance covers the rounding)."""
    v = np.array(v, dtype=np.float64)
    with np.errstate(over="ignore"):
        over = np.isinf(v.astype(np.float32)) & np.isfinite(v)
    v[over] = np.copysign(np.inf, v[over])
    return v


def num(v):
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, int):
        return str(v)
    v = float(v)
    if math.isnan(v):
        return '"NaN"'
    if math.isinf(v):
        return '"Infinity"' if v > 0 else '"-Infinity"'
    s = repr(v)
    assert float(s) == v
    return s


def is_scalar(v):
    return not isinstance(v, (list, dict))


def emit(v, indent):
    pad = " " * indent
    if is_scalar(v):
        return num(v)
    if isinstance(v, list):
        if all(is_scalar(e) for e in v):
            return "[" + ",".join(num(e) for e in v) + "]"
        return "[\n" + ",\n".join(pad + "  " + emit(e, indent + 2) for e in v) + "\n" + pad + "]"
    # dict
    if all(is_scalar(e) for e in v.values()):
        return "{" + ", ".join(json.dumps(k) + ": " + num(e) for k, e in v.items()) + "}"
    return ("{\n" + ",\n".join(pad + "  " + json.dumps(k) + ": " + emit(e, indent + 2)
                               for k, e in v.items()) + "\n" + pad + "}")


def dumps(doc):
    text = emit(doc, 0) + "\n"
    # Sanity: valid JSON (strict: no bare NaN/Infinity) that keeps generatedBy first.
    back = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert next(iter(back)) == "generatedBy"
    return text
