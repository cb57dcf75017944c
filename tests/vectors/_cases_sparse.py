"""The Sparse SN cases (build_sparse_cases) and the vectors of the sparse map alone
(maps/sparsestmax.json)."""

import zlib

import numpy as np
import torch

from _authors_ssn import sparse_map
from _case import F64, FORMAT, GENERATED_BY, Case


def build_sparse_cases():
    """Sparse SN (option sparse): the port of the authors' SSN2d (SPARSE_LAYERS)."""
    cases = []

    def case(*a, **kw):
        c = Case(*a, sparse=True, **kw)
        cases.append(c)
        return c

    def logits(*v):
        return np.array(v, np.float32)

    c = case("ssn2d_train_radius_ramp",
             "Sparse SN 2d: mean logits [1, 0.5, -1] (the issue's example: sparsemax [0.75, 0.25, "
             "0] up to r = 0.54, then the edge of the two largest logits) and var logits [0.2, "
             "0.9, 0.4] (full support), train at r = 0, 0.3, 0.5, 0.55 (mean on the edge, var on "
             "the sphere), 0.7 (both on the edge), eval at r = 0.6, M=3x5", "SwitchNorm2d", 4)
    c.random_state()
    c.state["mean_weight"], c.state["var_weight"] = logits(1, 0.5, -1), logits(0.2, 0.9, 0.4)
    for r in (0.0, 0.3, 0.5, 0.55, 0.7):
        c.forward("train", c.normal((2, 4, 3, 5), 1.3, 0.2), radius=r)
    c.forward("eval", c.normal((2, 4, 3, 5), 1.3, 0.2), radius=0.6)

    c = case("ssn2d_train_freeze",
             "Sparse SN 2d freezing: at r = 0.75 the mean weights (logits [3, 0.5, -1]) are "
             "one-hot and the mean mixing is fixed (logits become [1, 0, 0], no gradient) while "
             "the var weights are on an edge; r = 0.2: var on the sphere; eval at r = 0.9 fixes "
             "var too (SSN2d freezes in eval); a last train step at r = 0.1 stays fixed, M=2x6",
             "SwitchNorm2d", 3)
    c.random_state(buffers="zero")
    c.state["mean_weight"], c.state["var_weight"] = logits(3, 0.5, -1), logits(0.1, 0.3, 0.25)
    for mode, r in (("train", 0.75), ("train", 0.2), ("eval", 0.9), ("train", 0.1)):
        c.forward(mode, c.normal((3, 3, 2, 6), 0.9, -0.3), radius=r)

    c = case("ssn2d_train_loaded_fixed",
             "Sparse SN 2d from a checkpoint: mean_fixed = 1 with logits [0.25, 0.5, 0.25] (a "
             "fixed mixing's weights ARE its logits), var not fixed, radius 0.45 from the state "
             "dict (var weights on the sphere); train then eval, M=4x4", "SwitchNorm2d", 5)
    c.random_state()
    c.state["mean_weight"], c.state["var_weight"] = logits(0.25, 0.5, 0.25), logits(0.7, 0.1, 0.3)
    c.state["mean_fixed"][0] = 1
    c.state["radius"][0] = 0.45
    c.forward("train", c.normal((2, 5, 4, 4), 1.1, 0.5))
    c.forward("eval", c.normal((2, 5, 4, 4), 1.1, 0.5))

    c = case("ssn2d_train_default_state",
             "Sparse SN 2d, the initial state (logits all 1: uniform weights, sparsemax's "
             "gradient) at r = 0, one train step, M=3x3", "SwitchNorm2d", 3)
    c.default_state()
    c.forward("train", c.normal((2, 3, 3, 3)))

    c = case("ssn3d_train_sparse",
             "Sparse SN 3d (SSN2d's map on [N, C, D, H, W]): mean logits [0.4, 0.1, 0.25] (full "
             "support: the sphere at r = 0.35, the edge at 0.6), var logits [-0.2, 0.3, 0.6] "
             "(sparsemax at 0.35, the edge at 0.6), train at r = 0.35 and 0.6, eval at r = 0.6, "
             "M=2x2x4", "SwitchNorm3d", 3)
    c.random_state()
    c.state["mean_weight"], c.state["var_weight"] = logits(0.4, 0.1, 0.25), logits(-0.2, 0.3, 0.6)
    for mode, r in (("train", 0.35), ("train", 0.6), ("eval", 0.6)):
        c.forward(mode, c.normal((2, 3, 2, 2, 4), 1.2, 0.3), radius=r)

    c = case("ssn2d_train_nobn_k2",
             "Sparse SN 2d with usingBN=false: 2 logits, the library's extension of SSN2d (u = "
             "1/2); r = 0.3 (sparsemax), 0.5 and 0.65 (the sphere), 0.75 (clamped to one-hot: "
             "both mixings fixed), then r = 0.3 stays fixed, M=3x4", "SwitchNorm2d", 3,
             using_bn=False)
    c.random_state()
    c.state["mean_weight"], c.state["var_weight"] = logits(0.3, -0.2), logits(0.1, 0.25)
    for r in (0.3, 0.5, 0.65, 0.75, 0.3):
        c.forward("train", c.normal((2, 3, 3, 4), 1.0, 0.1), radius=r)

    c = case("ssn1d_train_sparse",
             "Sparse SN 1d (LN and BN: 2 logits, the extension with u = 1/2): train at r = 0, 0.4, "
             "then 0.8 (one-hot: fixed), eval at r = 0.2, [6,5]", "SwitchNorm1d", 5)
    c.random_state(buffers="zero")
    c.state["mean_weight"], c.state["var_weight"] = logits(-0.1, 0.15), logits(0.6, 0.2)
    for mode, r in (("train", 0.0), ("train", 0.4), ("train", 0.8), ("eval", 0.2)):
        c.forward(mode, c.normal((6, 5), 1.2, 0.4), radius=r)

    return cases


def sparsestmax_map_vectors():
    """The map alone: the port's regulated_sparsemax (K = 3) and the K = 2 extension, weights and
    dL/dlogits by autograd for L = <g, weights>, at random logits and radii (maps/sparsestmax.json)."""
    rng = np.random.default_rng(zlib.crc32(b"maps/sparsestmax"))
    points = []
    for t in range(300):
        k = 2 if t % 3 == 0 else 3
        v = rng.standard_normal(k) * 1.2
        r = float(rng.uniform(0, 1))
        g = rng.standard_normal(k)
        vt = torch.tensor(v, requires_grad=True)
        w = sparse_map(vt, torch.tensor(r, dtype=torch.float64))
        (w * torch.from_numpy(g)).sum().backward()
        points.append({"v": F64(v), "r": r, "g": F64(g), "expect": {
            "weights": F64(w.detach().numpy()), "dv": F64(vt.grad.numpy())}})
    return {"generatedBy": GENERATED_BY, "format": FORMAT, "name": "sparsestmax",
            "description": "regulated_sparsemax of the port (K = 3) and its K = 2 extension, "
                           "float64, with autograd's dL/dv for L = <g, weights>",
            "points": points}
