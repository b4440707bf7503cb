"""PyTorch checkpoints both ways against the real torch (pinned 2.13.0) and
Transformers: what lmio writes, torch.load(weights_only=True) reads with and
without mmap, dtype, shape and bytes identical, storages shared where lmio's
tensors overlap; what torch.save writes (every dtype, views at offsets,
non-contiguous views, shared storages, nested checkpoints, Parameters, the
legacy non-zip stream) lmio reads identical; GPT-2 pytorch_model.bin
directories load both ways with equal logits; and pickles that would run
code are refused without running it."""
import json
import os
import pickle
import subprocess

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

import lmio_ctypes as lm

TOL = 1e-4

# every torch dtype lmio carries, as lmio names it
DTYPES = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.uint16: "U16",
    torch.int32: "I32", torch.uint32: "U32", torch.int64: "I64", torch.uint64: "U64", torch.float16: "F16",
    torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64", torch.complex64: "C64",
    torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2", torch.float8_e8m0fnu: "F8_E8M0",
    torch.float8_e4m3fnuz: "F8_E4M3FNUZ", torch.float8_e5m2fnuz: "F8_E5M2FNUZ",
}


def run(*args, ok=True):
    r = subprocess.run([lm.LMIO_BIN, *map(str, args)], capture_output=True, text=True)
    if ok:
        assert r.returncode == 0, f"lmio {' '.join(map(str, args))}: {r.stderr}"
    return r


def raw(t):
    """A tensor's bytes, row-major, whatever its dtype (NaN payloads included)."""
    t = t.detach().contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def random_tensor(dtype, shape, seed):
    g = torch.Generator().manual_seed(seed)
    n = int(np.prod(shape)) if shape else 1
    bits = torch.randint(0, 256, (n * torch.empty((), dtype=dtype).element_size(),), generator=g, dtype=torch.uint8)
    if dtype == torch.bool:
        bits = bits & 1
    return bits.view(dtype).reshape(shape)


def all_dtypes_state_dict():
    sd = {}
    for k, (dt, name) in enumerate(DTYPES.items()):
        sd[f"t.{name.lower()}"] = random_tensor(dt, (3, 5), k)
    sd["scalar"] = torch.tensor(7, dtype=torch.int64)
    sd["empty"] = torch.zeros(0, 4)
    return sd


def assert_same(got, want):
    assert list(got) == list(want)
    for k, t in want.items():
        g = got[k]
        assert g.dtype == t.dtype and tuple(g.shape) == tuple(t.shape), k
        assert raw(g) == raw(t), k


# ---- lmio writes, torch reads ----

def test_torch_loads_what_lmio_writes(tmp_path):
    sd = all_dtypes_state_dict()
    save_file(sd, tmp_path / "in.safetensors")
    run("convert", tmp_path / "in.safetensors", tmp_path / "out.bin", "--format", "bin")
    for mmap in (False, True):
        got = torch.load(tmp_path / "out.bin", weights_only=True, mmap=mmap)
        # lmio writes in state-dict order, which for safetensors input is its (sorted) order
        assert_same({k: got[k] for k in sd}, sd)
    # the zip itself is what a zip tool expects: CRCs right, members stored, one folder
    import zipfile
    with zipfile.ZipFile(tmp_path / "out.bin") as z:
        assert z.testzip() is None
        names = z.namelist()
        assert all(n.startswith("out/") for n in names) and "out/data.pkl" in names
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
        assert z.read("out/byteorder") == b"little" and z.read("out/version") == b"3\n"


def test_lmio_keeps_shared_storages(tmp_path):
    base = torch.arange(24, dtype=torch.float32)
    sd = {"w": base.view(4, 6), "tied": base.view(4, 6), "row": base[6:12], "tail": base[18:]}
    torch.save(sd, tmp_path / "shared.pt")
    run("convert", tmp_path / "shared.pt", tmp_path / "again.pt", "--format", "pt")
    got = torch.load(tmp_path / "again.pt", weights_only=True)
    assert_same(got, sd)
    ptrs = {got[k].untyped_storage().data_ptr() for k in got}
    assert len(ptrs) == 1, "tensors sharing a storage were written as separate storages"
    assert got["row"].storage_offset() == 6 and got["tail"].storage_offset() == 18


def test_lmio_refuses_dtypes_torch_lacks(tmp_path):
    lm.save(tmp_path / "f4.safetensors", {"q": ("F4", [4], b"\x12\x34")})
    r = run("convert", tmp_path / "f4.safetensors", tmp_path / "f4.bin", "--format", "bin", ok=False)
    assert r.returncode == 1 and 'tensor "q" is F4, which torch has no dtype for' in r.stderr
    assert not (tmp_path / "f4.bin").exists()


# ---- torch writes, lmio reads ----

def views():
    a = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    return {"full": a, "t": a.t(), "row": a[2], "col": a[:, 3], "block": a[1:4, 2:7], "step": a[::2, ::3],
            "half_t": a.half().t(), "i64_slice": torch.arange(100)[10:30:4]}


@pytest.mark.parametrize("zipfile_format", [True, False])
def test_lmio_reads_what_torch_saves(tmp_path, zipfile_format):
    sd = dict(all_dtypes_state_dict(), **views())
    p = tmp_path / "x.pt"
    torch.save(sd, p, _use_new_zipfile_serialization=zipfile_format)
    got, meta = lm.load(p)
    assert list(got) == list(sd) and meta == {}
    for k, t in sd.items():
        dt, shape, data = got[k]
        assert dt == DTYPES[t.dtype] and shape == list(t.shape), k
        assert data == raw(t), k


def test_lmio_reads_training_checkpoints(tmp_path):
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    ck = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 5, "best": 0.25, "tag": "run-1",
          "param": torch.nn.Parameter(torch.ones(2))}
    torch.save(ck, tmp_path / "ck.pt")
    info = json.loads(run("inspect", "--json", tmp_path / "ck.pt").stdout)
    names = [t["name"] for t in info["tensors"]]
    assert names[:2] == ["model.weight", "model.bias"]
    assert "optimizer.state.0.exp_avg" in names and "optimizer.state.1.exp_avg_sq" in names and "param" in names
    meta = info["metadata"]
    assert meta["step"] == "5" and meta["best"] == "0.25" and meta["tag"] == "run-1"
    assert meta["optimizer.param_groups.0.lr"] == "0.001" and meta["optimizer.param_groups.0.params.1"] == "1"
    got, _ = lm.load(tmp_path / "ck.pt")
    assert got["optimizer.state.0.exp_avg"][2] == raw(opt.state_dict()["state"][0]["exp_avg"])
    assert got["model.weight"][2] == raw(model.weight)


def test_torch_protocol4_refused_as_torch_refuses_it(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "p4.pt", pickle_protocol=4)
    with pytest.raises(Exception):
        torch.load(tmp_path / "p4.pt", weights_only=True)
    r = run("inspect", tmp_path / "p4.pt", ok=False)
    assert r.returncode == 1 and "FRAME (protocol 4)" in r.stderr


# ---- Transformers directories ----

def hf_model(seed, **kw):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=1000, n_positions=64, n_embd=64, n_layer=3, n_head=4, **kw)).eval()


IDS = [0, 17, 999, 3, 512, 42, 42, 7, 1]


def hf_logits(model):
    with torch.no_grad():
        return model.float()(torch.tensor([IDS])).logits[0].numpy()


def lmio_logits(d, tmp_path):
    out = tmp_path / "logits.npy"
    run("logits", d, "--ids", ",".join(map(str, IDS)), "--out", out)
    return np.load(out)


def save_bin_directory(model, d, max_shard_size=None):
    """What save_pretrained(safe_serialization=False) wrote in Transformers
    4.x (5.x writes safetensors whatever the flag): torch.save of the state
    dict, tied lm_head sharing wte's storage, sharded by huggingface_hub's
    splitter with pytorch_model.bin.index.json."""
    from huggingface_hub import split_torch_state_dict_into_shards
    os.makedirs(d)
    model.config.save_pretrained(d)
    sd = model.state_dict()
    if not max_shard_size:
        torch.save(sd, os.path.join(d, "pytorch_model.bin"))
        return
    split = split_torch_state_dict_into_shards(sd, filename_pattern="pytorch_model{suffix}.bin",
                                               max_shard_size=max_shard_size)
    for fn, names in split.filename_to_tensors.items():
        torch.save({n: sd[n] for n in names}, os.path.join(d, fn))
    with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": split.metadata, "weight_map": split.tensor_to_filename}, f)


@pytest.mark.parametrize("sharded", [False, True])
def test_gpt2_bin_directories_both_ways(tmp_path, sharded):
    model = hf_model(3, tie_word_embeddings=not sharded)
    d = tmp_path / "hf"
    save_bin_directory(model, d, "100KB" if sharded else None)
    # Transformers itself reads the directory
    again, info = AutoModelForCausalLM.from_pretrained(d, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    files = os.listdir(d)
    assert ("pytorch_model.bin.index.json" in files) == sharded and not any(f.endswith(".safetensors") for f in files)
    ref = hf_logits(model)
    assert float(np.abs(lmio_logits(d, tmp_path) - ref).max()) <= TOL
    # lmio's bin directory loads in Transformers with the same logits
    out = tmp_path / "lmio_bin"
    run("convert", d, out, "--format", "bin", *(["--max-shard-size", "150KB"] if sharded else []))
    assert "pytorch_model.bin" in os.listdir(out) or "pytorch_model.bin.index.json" in os.listdir(out)
    again, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True, use_safetensors=False)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert float(np.abs(hf_logits(again.eval()) - ref).max()) <= TOL
    # and as safetensors, the other direction of the same conversion
    st = tmp_path / "lmio_st"
    run("convert", out, st)
    assert float(np.abs(lmio_logits(st, tmp_path) - ref).max()) <= TOL


# ---- pickles that would run code ----

class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("how", ["torch_save", "torch_save_legacy", "raw_pickle"])
def test_malicious_pickles_do_not_run(tmp_path, how):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.bin"
    obj = {"w": torch.ones(2), "x": Evil(marker)}
    if how == "raw_pickle":
        with open(p, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    else:
        torch.save(obj, p, _use_new_zipfile_serialization=how == "torch_save")
    # the file really is an attack: unpickling it without restrictions runs the command
    if how == "torch_save":
        torch.load(p, weights_only=False)
        assert marker.exists()
        marker.unlink()
    for cmd in (["inspect", p], ["verify", p], ["convert", p, tmp_path / "out.safetensors"]):
        r = run(*cmd, ok=False)
        assert r.returncode == 1, r.stdout
        if how != "raw_pickle":
            assert "GLOBAL posix.system is not allowed" in r.stderr, r.stderr
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()
