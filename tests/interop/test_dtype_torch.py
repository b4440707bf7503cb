"""lmio_convert against torch's Tensor.to(), bit for bit: every f32 input
for f32->f16 and f32->bf16, every 16-bit input for the half types, and
random + special bit patterns for f64. The C tests prove the SIMD and
portable kernels agree on all 2^32 inputs, so this ties both to torch."""
import numpy as np
import pytest
import torch

import lmio_ctypes as lm

CHUNK = 1 << 26
NP = {"F16": np.uint16, "BF16": np.uint16, "F32": np.uint32, "F64": np.uint64}
TORCH = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
TORCH_BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def torch_cast(bits_np, src, dst):
    t = torch.from_numpy(bits_np.view(getattr(np, f"int{bits_np.dtype.itemsize * 8}"))).view(TORCH[src])
    out = t.to(TORCH[dst])
    return out.view(TORCH_BITS[out.element_size()]).numpy().view(NP[dst])


def lmio_cast(bits_np, src, dst):
    out = np.empty(bits_np.size, dtype=NP[dst])
    return lm.convert(bits_np, src, dst, out)


def first_mismatch(inp, a, b):
    i = int(np.flatnonzero(a != b)[0])
    return f"input 0x{int(inp[i]):x}: lmio 0x{int(a[i]):x}, torch 0x{int(b[i]):x}"


@pytest.mark.parametrize("dst", ["F16", "BF16"])
def test_all_f32_inputs(dst):
    for base in range(0, 1 << 32, CHUNK):
        inp = np.arange(base, base + CHUNK, dtype=np.uint32)
        a, b = lmio_cast(inp, "F32", dst), torch_cast(inp, "F32", dst)
        assert np.array_equal(a, b), first_mismatch(inp, a, b)


@pytest.mark.parametrize("src,dst", [("F16", "F32"), ("BF16", "F32"), ("F16", "BF16"), ("BF16", "F16"),
                                     ("F16", "F64"), ("BF16", "F64")])
def test_all_16bit_inputs(src, dst):
    inp = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    a, b = lmio_cast(inp, src, dst), torch_cast(inp, src, dst)
    assert np.array_equal(a, b), first_mismatch(inp, a, b)


def special64():
    s = [0x7FF0000000000001, 0xFFF8000000000000, 0x7FF8000000000001, 0x7FF0000000000000, 0xFFF0000000000000,
         0, 1 << 63, 1, 0x000FFFFFFFFFFFFF, 0x47EFFFFFE0000000, 0x47EFFFFFF0000000, 0x3FF0000010000000,
         0x3FF0000010000001, 0x36A0000000000000, 0x40EFFE0000000000, 0x40EFFDFFFFFFFFFF]
    return np.array(s, dtype=np.uint64)


@pytest.mark.parametrize("src,dst", [("F64", "F32"), ("F64", "F16"), ("F64", "BF16"), ("F32", "F64")])
def test_random_and_special_wide_inputs(src, dst):
    rng = np.random.default_rng(7)
    if src == "F64":
        inp = np.concatenate([special64(), rng.integers(0, 2**64, size=1 << 22, dtype=np.uint64, endpoint=False),
                              # values near the f16/f32 range, where double rounding would show
                              np.frombuffer(rng.normal(0, 1000, 1 << 20).tobytes(), dtype=np.uint64)])
    else:
        inp = np.concatenate([np.array([0x7F800001, 0xFFC00000, 0x7FC00001, 1, 0x80000001], dtype=np.uint32),
                              rng.integers(0, 2**32, size=1 << 22, dtype=np.uint32)])
    a, b = lmio_cast(inp, src, dst), torch_cast(inp, src, dst)
    assert np.array_equal(a, b), first_mismatch(inp, a, b)


def test_portable_kernels_match_torch_too():
    """The scalar path alone (as on a CPU without F16C) on a 2^24 sample."""
    rng = np.random.default_rng(11)
    inp = rng.integers(0, 2**32, size=1 << 24, dtype=np.uint32)
    prev = lm.set_portable(True)
    try:
        assert lm.simd_active() == "portable"
        for dst in ("F16", "BF16"):
            a, b = lmio_cast(inp, "F32", dst), torch_cast(inp, "F32", dst)
            assert np.array_equal(a, b), first_mismatch(inp, a, b)
        h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
        for src in ("F16", "BF16"):
            a, b = lmio_cast(h, src, "F32"), torch_cast(h, src, "F32")
            assert np.array_equal(a, b), first_mismatch(h, a, b)
    finally:
        lm.set_portable(prev == 1)
