"""Every file of lmio's good and corrupt safetensors corpora (tests/data)
held against the reference reader, safetensors 0.8.0: `safe_open` with
torch, and the framework-free `deserialize` for dtypes torch lacks.

Good files must load in both with identical names, dtypes, shapes, bytes and
metadata. Corrupt files must be refused by lmio with the error
tests/data/corrupt/EXPECTED names. Wherever safe_open decides differently
from lmio the file must be in DIFFERENCES with the reason, and every entry
there must still differ, so a new difference, or one that goes away, fails."""
import glob
import os

import pytest
import torch
from safetensors import deserialize, safe_open

import lmio_ctypes as lm

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
FILES = sorted(os.path.relpath(p, DATA) for p in glob.glob(os.path.join(DATA, "*", "*.safetensors")))

# file: (what lmio does, what safe_open does, why the difference is deliberate)
DIFFERENCES = {
    "good/all_dtypes.safetensors": (
        "loads", "refuses",
        "torch has no 6-bit float, so safe_open(framework='pt') refuses F6_E2M3/F6_E3M2; the reference's "
        "framework-free deserialize() reads the file, and lmio carries those dtypes as bytes"),
    "corrupt/duplicate_tensor.safetensors": (
        "refuses", "loads",
        "the reference's JSON parser keeps the last of two equal keys; two readers of one file could then "
        "see different tensors, so lmio refuses duplicate keys"),
    "corrupt/duplicate_metadata_key.safetensors": (
        "refuses", "loads", "as for tensors: lmio refuses a duplicate __metadata__ key the reference drops"),
    "corrupt/unknown_field.safetensors": (
        "refuses", "loads",
        "the reference ignores unknown fields in a tensor entry; lmio refuses them, since a misspelt field "
        "would silently be lost on a round trip"),
    "corrupt/shape_17_dims.safetensors": (
        "refuses", "loads",
        "the reference has no rank limit; lmio's lmio_tensor holds at most 16 dimensions (LIMIT error)"),
}


def expected_errors():
    out = {}
    with open(os.path.join(DATA, "corrupt", "EXPECTED"), encoding="utf-8") as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                name, status, offset, fragment = line.rstrip("\n").split("\t")
                out[name] = (status, int(offset), fragment)
    return out


def raw(t):
    t = t.contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def lmio_read(path):
    try:
        return lm.load(path), None
    except lm.LmioError as e:
        return None, str(e)


def safe_open_read(path):
    """({name: tensor}, metadata) or the reference's error."""
    try:
        with safe_open(path, framework="pt") as f:
            return ({k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}), None
    except Exception as e:  # SafetensorError, or torch refusing a dtype
        return None, f"{type(e).__name__}: {e}"


def torch_shape(dtype, shape):
    """safetensors counts F4 elements; torch's float4_e2m1fn_x2 packs two per item."""
    return shape[:-1] + [shape[-1] // 2] if dtype == "F4" else shape


def test_corpus_is_covered():
    names = {f.split("/", 1)[1] for f in FILES if f.startswith("corrupt/")}
    assert names == set(expected_errors()), "every corrupt file has an EXPECTED line and no line lacks a file"
    assert set(DIFFERENCES) <= set(FILES)
    assert sum(f.startswith("good/") for f in FILES) >= 8 and len(names) >= 40


@pytest.mark.parametrize("name", FILES)
def test_file_against_safe_open(name):
    path = os.path.join(DATA, name)
    ours, our_err = lmio_read(path)
    ref, ref_err = safe_open_read(path)
    lmio_does, ref_does = "loads" if ours else "refuses", "loads" if ref else "refuses"
    if name in DIFFERENCES:
        want_lmio, want_ref, why = DIFFERENCES[name]
        assert (lmio_does, ref_does) == (want_lmio, want_ref), (
            f"{name}: listed as a difference ({why}), but lmio {lmio_does} it ({our_err}) and safe_open "
            f"{ref_does} it ({ref_err})")
    else:
        assert lmio_does == ref_does, (f"{name}: lmio {lmio_does} it ({our_err}), safe_open {ref_does} it "
                                       f"({ref_err}): a difference DIFFERENCES does not list")

    if name.startswith("corrupt/"):
        status, _, fragment = expected_errors()[os.path.basename(name)]
        assert ours is None, f"{name}: lmio loaded a corrupt file"
        assert fragment in our_err, f"{name}: {our_err!r} lacks {fragment!r}"
        return

    assert ours is not None, f"{name}: lmio refused a good file: {our_err}"
    tensors, meta = ours
    # the framework-free reference reads every dtype lmio does
    flat = dict(deserialize(open(path, "rb").read()))
    assert set(flat) == set(tensors), name
    for k, (dt, shape, data) in tensors.items():
        assert (flat[k]["dtype"], flat[k]["shape"], bytes(flat[k]["data"])) == (dt, shape, data), f"{name}: {k}"
    if ref is None:
        return
    ref_tensors, ref_meta = ref
    assert ref_meta == meta, name
    assert set(ref_tensors) == set(tensors), name
    for k, (dt, shape, data) in tensors.items():
        t = ref_tensors[k]
        assert list(t.shape) == torch_shape(dt, shape), f"{name}: {k}"
        assert raw(t) == data, f"{name}: {k}"
