"""Llama (LlamaForCausalLM) both ways against Hugging Face Transformers
(pinned), with tests that can fail.

Tolerance: lmio's fp32 logits must satisfy
    max |lmio - Transformers| <= RTOL * max |Transformers|,  RTOL = 1e-5,
at every position of the prompt and of a 32-token greedy continuation, the
house tolerance of the GPT-2 comparison: both are fp32 implementations of
the same model, and measured lmio sits 1-3e-6 from Transformers on these
configurations (rotary angles and RMSNorm are computed in float32 in the
order Transformers uses).

Power: every parameter is drawn with std 0.2 (RMSNorm weights around 1,
biases around 0), not Transformers' init (std 0.02, norms 1, biases 0), so
every key mapping moves the logits. For each config option a configuration
tests, switching that option in Transformers must move its logits by at
least 10 x the tolerance, so a lmio that ignored the option would fail.
Options that change tensor shapes (num_key_value_heads, head_dim) or whether
a tensor exists (tie_word_embeddings on a tied model) are shown to be read
by lmio refusing the directory once the option is switched. Greedy
continuations must hold at least 8 distinct tokens in 32."""
import copy
import json
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

import lmio_ctypes as lm
from model_compare import assert_close, assert_moves, hf_forward, lmio_logits, refuses, run

STD = 0.2
N_NEW = 32
MIN_DISTINCT = 8
V = 512
BASE = dict(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=128, rms_norm_eps=1e-5, bos_token_id=None, eos_token_id=None)
PROMPT = [int(i) for i in np.random.default_rng(5).integers(0, V, 40)]
OTHER_ACT = {"silu": "gelu", "gelu": "silu", "relu": "silu", "gelu_pytorch_tanh": "silu"}
# llama3 scaling with a short original context, so the three bands (kept,
# divided by factor, interpolated) all hold frequencies of a 16-wide head
LLAMA3 = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=32)


def hf_model(seed, norm_mean=1.0, **kw):
    """A LlamaForCausalLM as a trainer would save it: every parameter drawn
    with std 0.2, RMSNorm weights around norm_mean."""
    torch.manual_seed(seed)
    # a copy: LlamaConfig fills defaults into the rope dict it is given
    model = LlamaForCausalLM(LlamaConfig(**copy.deepcopy(dict(BASE, **kw)))).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(norm_mean if name.endswith("norm.weight") else 0.0, STD)
    return model


def hf_greedy(model, ids):
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=N_NEW, pad_token_id=0)
    return out[0, len(ids):].tolist()


def edited_copy(d, dst, edit):
    """A copy of directory d whose config.json is edit(config dict)."""
    shutil.copytree(d, dst)
    c = json.load(open(dst / "config.json"))
    edit(c)
    json.dump(c, open(dst / "config.json", "w"))
    return dst


def set_rope(**changes):
    def edit(c):
        c["rope_parameters"].update(changes)
    return edit


def switches(c, opt):
    """(description, config edit) pairs that switch option opt of config c."""
    rp = c["rope_parameters"]
    if opt == "rope_theta":
        return [("rope_theta", set_rope(rope_theta=10000.0 if rp["rope_theta"] != 10000.0 else 500000.0))]
    if opt == "rope_type":
        return [("rope_type default", lambda c: c.update(rope_parameters={"rope_type": "default",
                                                                          "rope_theta": rp["rope_theta"]}))]
    if opt in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
        other = {"factor": 2.0, "low_freq_factor": 2.0, "high_freq_factor": 8.0,
                 "original_max_position_embeddings": 64}[opt]
        assert rp[opt] != other
        return [(f"{opt}={other}", set_rope(**{opt: other}))]
    if opt == "hidden_act":
        return [(f"hidden_act={OTHER_ACT[c[opt]]}", lambda c: c.update(hidden_act=OTHER_ACT[c["hidden_act"]]))]
    if opt == "rms_norm_eps":
        assert c[opt] >= 1e-3, "a small epsilon barely moves the logits: test a large one"
        return [("rms_norm_eps=1e-6", lambda c: c.update(rms_norm_eps=1e-6))]
    if opt in ("attention_bias", "mlp_bias"):
        assert c[opt]
        return [(f"{opt}=False", lambda c: c.update({opt: False}))]
    raise AssertionError(f"no switch for option {opt}")


def check_option(d, model, opt, ids, ref, tmp_path):
    """Shows that comparing lmio with Transformers on d would catch lmio
    ignoring config option opt."""
    c = json.load(open(d / "config.json"))
    if opt == "tie_word_embeddings" and not c[opt]:
        # Transformers keeps a checkpoint's own lm_head even when told to tie
        tied = AutoModelForCausalLM.from_pretrained(d).eval()
        tied.lm_head.weight = torch.nn.Parameter(tied.model.embed_tokens.weight.detach().clone())
        assert_moves(hf_forward(tied, ids), ref, "tie_word_embeddings=True")
        return
    shape_switch = {  # option -> (config edit, the tensor lmio must then name)
        "tie_word_embeddings": (lambda c: c.update(tie_word_embeddings=False), "lm_head.weight"),
        "num_key_value_heads": (lambda c: c.update(num_key_value_heads=c["num_attention_heads"]
                                                   if c["num_key_value_heads"] != c["num_attention_heads"] else 1),
                                "k_proj.weight"),
        "head_dim": (lambda c: c.update(head_dim=None), "q_proj.weight"),
    }
    if opt in shape_switch:
        edit, tensor = shape_switch[opt]
        bad, msg = refuses(edited_copy(d, tmp_path / f"switched_{opt}", edit), ids, tmp_path)
        assert bad and tensor in msg, msg
        return
    for k, (what, edit) in enumerate(switches(c, opt)):
        alt_dir = edited_copy(d, tmp_path / f"switched_{opt}_{k}", edit)
        alt = AutoModelForCausalLM.from_pretrained(alt_dir).eval()
        assert_moves(hf_forward(alt, ids), ref, what)


CONFIGS = {  # Transformers writes these; options: the config options each one tests
    "gqa_theta500k": dict(kw=dict(num_key_value_heads=2, rope_theta=500000.0),
                          options=["num_key_value_heads", "rope_theta", "hidden_act", "tie_word_embeddings"]),
    "mha_tied": dict(kw=dict(num_key_value_heads=4, tie_word_embeddings=True),
                     options=["num_key_value_heads", "rope_theta", "tie_word_embeddings"]),
    "mqa_eps_gelu": dict(kw=dict(num_key_value_heads=1, rms_norm_eps=1e-2, hidden_act="gelu"),
                         options=["num_key_value_heads", "rms_norm_eps", "hidden_act"]),
    "llama3_rope_scaling": dict(kw=dict(num_key_value_heads=2, rope_scaling=LLAMA3, rope_theta=10000.0),
                                options=["rope_type", "factor", "low_freq_factor", "high_freq_factor",
                                         "original_max_position_embeddings", "rope_theta"]),
    "head_dim_explicit": dict(kw=dict(num_key_value_heads=2, head_dim=24),
                              options=["head_dim", "num_key_value_heads", "rope_theta"]),
    "biases_tied": dict(kw=dict(num_key_value_heads=2, attention_bias=True, mlp_bias=True, tie_word_embeddings=True),
                        options=["attention_bias", "mlp_bias", "tie_word_embeddings"]),
    # 6 layers, norms around 0.3 (deeper std-0.2 stacks amplify fp32 rounding
    # chaotically with norms around 1, as in the GPT-2 comparison)
    "deeper_gqa": dict(kw=dict(num_hidden_layers=6, hidden_size=128, num_attention_heads=8, num_key_value_heads=2,
                               intermediate_size=256, rope_theta=500000.0), norm_mean=0.3,
                       options=["rope_theta"]),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_lmio_runs_transformers_llama(tmp_path, name):
    spec = CONFIGS[name]
    model = hf_model(len(name), spec.get("norm_mean", 1.0), **spec["kw"])
    d = tmp_path / "hf"
    model.save_pretrained(d)
    assert "OK (config llama, 1 weight file" in run("verify", str(d))
    gen = hf_greedy(model, PROMPT)
    assert len(set(gen)) >= MIN_DISTINCT, f"greedy continuation {gen} is a loop: it tests little"
    out = json.loads(run("generate", str(d), "--ids", ",".join(map(str, PROMPT)), "-n", str(N_NEW), "--greedy",
                         "--json"))
    assert out == {"prompt_ids": PROMPT, "ids": gen}
    seq = PROMPT + gen
    ref = hf_forward(model, seq)
    assert_close(lmio_logits(d, seq, tmp_path), ref, name)
    for opt in spec["options"]:
        check_option(d, model, opt, seq, ref, tmp_path)


def random_weights(cfg, seed):
    """LlamaForCausalLM tensors as numpy, every one drawn with std 0.2."""
    g = np.random.default_rng(seed)
    C, I, L, H = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
    G, D = cfg.get("num_key_value_heads") or H, cfg.get("head_dim") or C // H
    w = lambda *s: (g.standard_normal(s) * STD).astype(np.float32)
    norm = lambda: (1 + g.standard_normal(C) * STD).astype(np.float32)
    t = {"model.embed_tokens.weight": w(cfg["vocab_size"], C), "model.norm.weight": norm()}
    for i in range(L):
        p = f"model.layers.{i}."
        t.update({p + "self_attn.q_proj.weight": w(H * D, C), p + "self_attn.k_proj.weight": w(G * D, C),
                  p + "self_attn.v_proj.weight": w(G * D, C), p + "self_attn.o_proj.weight": w(C, H * D),
                  p + "mlp.gate_proj.weight": w(I, C), p + "mlp.up_proj.weight": w(I, C),
                  p + "mlp.down_proj.weight": w(C, I), p + "input_layernorm.weight": norm(),
                  p + "post_attention_layernorm.weight": norm()})
    if not cfg.get("tie_word_embeddings", False):
        t["lm_head.weight"] = w(cfg["vocab_size"], C)
    return t


@pytest.mark.parametrize("tied", [False, True])
def test_transformers_loads_lmio_llama(tmp_path, tied):
    """lmio's save_pretrained of a Llama state dict: Transformers loads it with
    no missing or unexpected keys and computes lmio's logits."""
    cfg = dict(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, rope_theta=500000.0, tie_word_embeddings=tied)
    d = tmp_path / "lmio"
    lm.save_pretrained(d, cfg, random_weights(cfg, 3), model_type="llama")
    c = json.load(open(d / "config.json"))
    assert c["model_type"] == "llama" and c["architectures"] == ["LlamaForCausalLM"]
    model, info = AutoModelForCausalLM.from_pretrained(d, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert model.config.rope_parameters["rope_theta"] == 500000.0 and model.config.num_key_value_heads == 2
    ref = hf_forward(model.eval(), PROMPT)
    assert_close(lmio_logits(d, PROMPT, tmp_path), ref, f"lmio-written, tied={tied}")


def test_older_config_and_checkpoint_layouts(tmp_path):
    """A config as Transformers 4.x wrote it (top-level rope_theta,
    rope_scaling with "type"), and a checkpoint of the base model's names
    with the rotary inv_freq buffers older Transformers saved."""
    model = hf_model(9, num_key_value_heads=2, rope_scaling=LLAMA3, rope_theta=20000.0)
    ref = hf_forward(model, PROMPT)
    d = tmp_path / "hf"
    model.save_pretrained(d)

    def v4_config(c):
        rp = c.pop("rope_parameters")
        c["rope_theta"] = rp.pop("rope_theta")
        rp["type"] = rp.pop("rope_type")
        c["rope_scaling"] = rp
    old = edited_copy(d, tmp_path / "v4", v4_config)
    again = AutoModelForCausalLM.from_pretrained(old).eval()
    assert again.config.rope_parameters["rope_theta"] == 20000.0
    assert_close(hf_forward(again, PROMPT), ref, "Transformers on the 4.x config")  # the same model
    assert_close(lmio_logits(old, PROMPT, tmp_path), ref, "4.x config")

    bare = tmp_path / "bare"
    model.config.save_pretrained(bare)
    t = {}
    for k, v in model.state_dict().items():
        t[k[len("model."):] if k.startswith("model.") else k] = v.contiguous()
    D = model.config.head_dim
    for i in range(model.config.num_hidden_layers):
        t[f"layers.{i}.self_attn.rotary_emb.inv_freq"] = torch.ones(D // 2)
    save_file(t, bare / "model.safetensors", metadata={"format": "pt"})
    assert_close(lmio_logits(bare, PROMPT, tmp_path), ref, "base-model names with inv_freq buffers")


def test_half_sharded_directory(tmp_path):
    """A sharded bf16 directory: lmio widens the weights to f32, as
    Transformers does when loading it in float32. (Not the bf16 model
    itself: .to(bfloat16) also rounds its rotary inv_freq buffer.)"""
    d = tmp_path / "bf16"
    hf_model(4, num_key_value_heads=2).to(torch.bfloat16).save_pretrained(d, max_shard_size="100KB")
    assert sum(f.startswith("model-") for f in os.listdir(d)) > 1
    widened = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    assert_close(lmio_logits(d, PROMPT, tmp_path), hf_forward(widened, PROMPT), "sharded bf16")


def test_refuses_what_transformers_cannot_run(tmp_path):
    model = hf_model(2, num_key_value_heads=2)
    d = tmp_path / "hf"
    model.save_pretrained(d)
    cases = {
        "kv3": (lambda c: c.update(num_key_value_heads=3), "num_key_value_heads 3 does not divide num_attention_heads 4"),
        "yarn": (set_rope(rope_type="yarn", factor=2.0), 'rope_type "yarn"; expected "default" or "llama3"'),
        "partial": (set_rope(partial_rotary_factor=0.5), "partial_rotary_factor 0.5; expected 1"),
        "act": (lambda c: c.update(hidden_act="tanh"), 'hidden_act "tanh"'),
        "layers": (lambda c: c.update(num_hidden_layers=1000),
                   'missing tensor "model.layers.2.self_attn.q_proj.weight"'),
    }
    for name, (edit, fragment) in cases.items():
        bad, msg = refuses(edited_copy(d, tmp_path / name, edit), PROMPT, tmp_path)
        assert bad and fragment in msg, f"{name}: {msg}"


@pytest.mark.parametrize("tied", [False, True])
def test_lmio_resaves_transformers_llama(tmp_path, tied):
    """from_pretrained then save_pretrained through lmio (lmio convert): the
    directory loads back in Transformers, no key missing or left over, and
    computes the same logits; a tied head is left out as Transformers does."""
    model = hf_model(6, num_key_value_heads=2, tie_word_embeddings=tied, attention_bias=True)
    d, out = tmp_path / "hf", tmp_path / "resaved"
    model.save_pretrained(d)
    run("convert", str(d), str(out), "--max-shard-size", "100KB")
    index = json.load(open(out / "model.safetensors.index.json"))
    assert ("lm_head.weight" in index["weight_map"]) == (not tied)
    again, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert_close(hf_forward(again.eval(), PROMPT), hf_forward(model, PROMPT), f"re-saved by lmio, tied={tied}")
