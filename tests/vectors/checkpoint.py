# Checkpoint vectors (part of `deno task gen:vectors`, which calls write_vectors), and the PyTorch
# side of the round trip in tests/checkpoint_test.ts (`checkpoint.py verify < files`).
#
# checkpoint/model.safetensors: a small PyTorch model built from the ports of the authors'
# SwitchNorm1d/2d/3d and SSN2d (_authors_sn.py, _authors_ssn.py), plus a Conv2d whose keys belong
# to no SN layer, with random float32 parameters and buffers, saved as safetensors.
# checkpoint/model.json: for each SN layer, its prefix, options, a fixed float32 input and the
# float64 evaluation-mode output of the model's layer.
# checkpoint/dtypes.safetensors + dtypes.json: one tensor per dtype PyTorch writes, with the exact
# values (as text) that a reader must return.
#
# The safetensors package is not in Debian, so this file writes and reads the format itself, as
# safetensors.torch.save_file does: 8-byte little-endian header length, a JSON header padded with
# spaces to a multiple of 8 bytes, then the raw little-endian tensors.

import copy
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _torch_setup  # noqa: E402,F401  (first: pins ATen before torch runs anything)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from _authors_sn import SwitchNorm1d, SwitchNorm2d, SwitchNorm3d  # noqa: E402
from _authors_ssn import SSN2d  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint")
GENERATED_BY = "deno task gen:vectors (tests/vectors/checkpoint.py)"

DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
          torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
          torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
NUMPY = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.int16,
         "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
         "BOOL": np.bool_}


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)  # numpy has no bfloat16; the bits are the same
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def write_safetensors(tensors, path):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        raw = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors(raw):
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=np.dtype(NUMPY[info["dtype"]]).newbyteorder("<"))
        t = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="))).reshape(info["shape"])
        out[name] = t.view(torch.bfloat16) if info["dtype"] == "BF16" else t
    return out


class Model(nn.Module):
    """A model of the kind users save: SN layers at nested prefixes beside other modules."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 3, 3)  # keys outside every SN prefix
        self.layer1 = nn.Sequential(SwitchNorm2d(3), SwitchNorm2d(3, using_bn=False))
        self.sparse = SSN2d(3)
        self.head = nn.ModuleDict({"norm": SwitchNorm1d(4)})
        self.vol = SwitchNorm3d(2, last_gamma=True)


# prefix, the library's layer, its options, the input shape
LAYERS = [
    ("layer1.0.", "SwitchNorm2d", {"momentum": 0.9}, [2, 3, 4, 5]),
    ("layer1.1.", "SwitchNorm2d", {"usingBN": False}, [2, 3, 3, 3]),
    ("sparse.", "SwitchNorm2d", {"sparse": True}, [3, 3, 2, 4]),
    ("head.norm.", "SwitchNorm1d", {}, [5, 4]),
    ("vol.", "SwitchNorm3d", {"lastGamma": True}, [2, 2, 2, 3, 2]),
]


def module_at(model, prefix):
    return model.get_submodule(prefix.rstrip("."))


def sync_sparse_radius(model):
    # SSN2d reads its radius from the Python attribute `rad`, which set_rad keeps equal to the
    # `radius` buffer; load_state_dict restores only the buffer, so do what set_rad does.
    model.sparse.rad = torch.squeeze(model.sparse.radius)


def random_model():
    torch.manual_seed(12)
    model = Model()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape) * (0.5 if name.endswith("bias") else 1.0))
            if name.endswith("weight") and p.dim() > 1 and not name.startswith("stem"):
                p.copy_(torch.rand(p.shape) + 0.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape) * 0.5)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape) * 1.5 + 0.5)
        ssn = model.sparse
        ssn.var_weight.copy_(torch.tensor([0.0, 1.0, 0.0]))  # fixed to LN, as after a freeze
        ssn.var_fixed.fill_(1)
        ssn.mean_weight.copy_(torch.tensor([0.5, 0.1, -0.3]))
        ssn.set_rad(0.25)
    return model


def outputs(model, inputs):
    """float64 evaluation-mode outputs of each SN layer (float32 parameters, float32 inputs)."""
    m = copy.deepcopy(model).double().eval()
    sync_sparse_radius(m)
    ys = {}
    with torch.no_grad():
        for (prefix, _, _, _), x in zip(LAYERS, inputs):
            ys[prefix] = module_at(m, prefix)(torch.from_numpy(x).double()).numpy()
    # The sparse mean mixing must stay unfixed (not one-hot) for the case to test sparsestmax.
    assert int(m.sparse.mean_fixed) == 0, "pick logits whose sparsestmax is not one-hot"
    return ys


def inputs():
    rng = np.random.default_rng(1212)
    return [(rng.standard_normal(shape) * 1.5 + 0.5).astype(np.float32)
            for (_, _, _, shape) in LAYERS]


def dtype_vectors():
    """One tensor per dtype, with the exact values a reader must return (as text)."""
    f = [0.0, -0.0, 1.0, -2.5, 65504.0, 6.103515625e-05, 5.960464477539063e-08, 0.1,
         float("inf"), float("-inf"), float("nan")]
    ints = [0, 1, -1, 127, -128]
    tensors = {
        "f64": torch.tensor(f + [1e300, 2.0 ** -1074], dtype=torch.float64),
        "f32": torch.tensor(f + [3.4028234663852886e38, 1e-45], dtype=torch.float32),
        "f16": torch.tensor(f, dtype=torch.float16),
        "bf16": torch.tensor(f + [3.3895313892515355e38], dtype=torch.bfloat16).reshape(3, 4),
        "i64": torch.tensor(ints + [2 ** 63 - 1, -2 ** 63, 2 ** 53 + 1], dtype=torch.int64),
        "i32": torch.tensor(ints + [2 ** 31 - 1, -2 ** 31], dtype=torch.int32),
        "i16": torch.tensor(ints + [32767, -32768], dtype=torch.int16),
        "i8": torch.tensor(ints, dtype=torch.int8),
        "u8": torch.tensor([0, 1, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(7.5),
    }

    def text(v):
        return repr(float(v)) if isinstance(v, float) else str(int(v))

    expected = {name: {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                       "values": [text(v) for v in t.flatten().tolist()]}
                for name, t in tensors.items()}
    return tensors, expected


def rounding_vectors():
    """Writers round to F16 and BF16: the bits numpy (F16, correctly rounded from float64) and
    PyTorch (BF16, from float32 values, round to nearest even) give."""
    rng = np.random.default_rng(16)
    ulp16 = 2.0 ** -10
    f16_in = [1 + ulp16 / 2, 1 + 3 * ulp16 / 2, 2.0 ** -25, 3 * 2.0 ** -25, 2.0 ** -24 * 1.5,
              65519.99, -65504.0, 2.0 ** -14 * (1 - ulp16 / 4), 1e-9, -1e-9, 0.1, -0.0,
              float("inf"), float("-inf")] + list(rng.standard_normal(40) * 100)
    f16_bits = np.array(f16_in, dtype=np.float64).astype(np.float16).view(np.uint16)
    bf16_in = np.array([1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, 3.3895313892515355e38, 1e-40, -1e-40,
                        2.0 ** -133, 0.1, -0.0] + list(rng.standard_normal(40) * 100),
                       dtype=np.float32)
    bf16_bits = torch.from_numpy(bf16_in).to(torch.bfloat16).view(torch.int16).numpy()
    return {
        "F16": {"inputs": [repr(float(v)) for v in f16_in],
                "bits": [int(b) for b in f16_bits]},
        "BF16": {"inputs": [repr(float(v)) for v in bf16_in],
                 "bits": [int(b) & 0xFFFF for b in bf16_bits]},
    }


def write_json(path, doc):
    with open(path, "w") as f:
        f.write(json.dumps(doc, indent=1) + "\n")


def write_vectors():
    os.makedirs(HERE, exist_ok=True)
    model = random_model()
    xs = inputs()
    ys = outputs(model, xs)
    write_safetensors(model.state_dict(), os.path.join(HERE, "model.safetensors"))
    write_json(os.path.join(HERE, "model.json"), {
        "generatedBy": GENERATED_BY,
        "description": "each SN layer of model.safetensors: prefix, options, input x (float32) and "
                       "the float64 evaluation-mode output y of the authors' module",
        "layers": [{"prefix": prefix, "layer": layer, "options": options, "shape": shape,
                    "x": [float(v) for v in x.ravel()],
                    "y": [float(v) for v in ys[prefix].ravel()]}
                   for (prefix, layer, options, shape), x in zip(LAYERS, xs)],
    })
    tensors, expected = dtype_vectors()
    write_safetensors(tensors, os.path.join(HERE, "dtypes.safetensors"))
    write_json(os.path.join(HERE, "dtypes.json"), {"generatedBy": GENERATED_BY,
                                                    "tensors": expected,
                                                    "rounding": rounding_vectors()})


def stdin_files():
    """Files sent on stdin, each as an 8-byte little-endian length and its bytes."""
    stream = sys.stdin.buffer
    while True:
        size = stream.read(8)
        if not size:
            return
        (n,) = struct.unpack("<Q", size)
        yield stream.read(n)


def verify(files):
    """Loads each file strictly into a fresh Model; checks tensors and outputs against ours."""
    original = random_model()
    xs = inputs()
    expected = outputs(original, xs)
    for index, raw in enumerate(files):
        path = "file {}".format(index)
        model = Model()
        model.load_state_dict(read_safetensors(raw), strict=True)  # raises on any key mismatch
        for name, t in model.state_dict().items():
            want = original.state_dict()[name]
            if not torch.equal(t.double(), want.double()):
                raise SystemExit("{}: {} differs from the original".format(path, name))
        got = outputs(model, xs)
        for prefix, y in expected.items():
            if not np.array_equal(got[prefix], y):
                raise SystemExit("{}: the output of {} differs".format(path, prefix))
        print("{}: loaded strictly, {} tensors and {} layer outputs equal".format(
            path, len(model.state_dict()), len(expected)))


if __name__ == "__main__":
    if sys.argv[1:] == ["verify"]:
        verify(stdin_files())
    else:
        raise SystemExit("usage: checkpoint.py verify < files (each: u64 LE length, bytes); "
                         "the vectors: deno task gen:vectors")
