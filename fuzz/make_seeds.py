#!/usr/bin/env python3
"""Writes the hand-made seeds of the round-trip fuzz targets into
fuzz/corpus/{tokenizer_roundtrip,config_roundtrip}/seed-*: a loader needs a
complete file (a tokenizer needs all 256 byte tokens) before its writer can
be reached, which random mutation of nothing would not find. The fuzzer's
own finds sit beside them under hash names.

Stdlib only, deterministic: rerunning it reproduces the committed files."""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def byte_to_unicode():
    """GPT-2's byte-level table: printable bytes map to themselves, the
    other 68 to 256, 257, ... in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, n = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


def small_tokenizer():
    b2u = byte_to_unicode()
    vocab = [b2u[b] for b in range(256)]
    merges = [("t", "h"), ("th", "e"), ("\u0120", "the"), ("a", "t"), ("\u0120", "c"), ("\u0120c", "at"),
              ("\u0120", "s"), ("\u0120s", "at"), ("'", "s"), ("\u00c3", "\u00a9"), ("1", "2")]
    for a, b in merges:
        vocab.append(a + b)
    return vocab, merges


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def tokenizer_seeds():
    vocab, merges = small_tokenizer()
    added = [{"id": len(vocab), "content": "<|endoftext|>", "special": True},
             {"id": len(vocab) + 1, "content": "<pad>", "special": False}]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tok = {"added_tokens": added, "normalizer": None, "pre_tokenizer": byte_level,
           "model": {"type": "BPE", "vocab": {s: i for i, s in enumerate(vocab)},
                     "merges": [[a, b] for a, b in merges]}}
    yield "seed-tokenizer-json", compact(tok)
    # the pre-0.20 merges spelling, "a b"
    tok["model"]["merges"] = [a + " " + b for a, b in merges]
    tok["added_tokens"] = added[:1]
    yield "seed-tokenizer-json-string-merges", compact(tok)
    # an older directory: vocab.json \0 merges.txt \0 tokenizer_config.json \0 special_tokens_map.json
    v = {s: i for i, s in enumerate(vocab + ["<|endoftext|>"])}
    m = "#version: 0.2\n" + "".join(a + " " + b + "\n" for a, b in merges)
    cfg = {"added_tokens_decoder": {str(len(vocab)): {"content": "<|endoftext|>", "special": True}},
           "model_max_length": 1024}
    smap = {"eos_token": "<|endoftext|>", "bos_token": {"content": "<|endoftext|>"}}
    yield "seed-vocab-merges", b"\0".join([compact(v), m.encode(), compact(cfg), compact(smap)])
    yield "seed-vocab-merges-only", b"\0".join([compact(v), m.encode()])


def config_seeds():
    gpt2 = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
            "bos_token_id": 50256, "eos_token_id": 50256, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
            "n_embd": 768, "n_head": 12, "n_inner": None, "n_layer": 12, "n_positions": 1024,
            "scale_attn_weights": True, "tie_word_embeddings": True, "vocab_size": 50257,
            "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}}}
    yield "seed-config-gpt2", json.dumps(gpt2, indent=2).encode()
    odd = {"model_type": "llama", "rope_theta": 500000.0, "neg_zero": -0.0, "tiny": 5e-324, "big": 1.7976931348623157e308,
           "int_max": 9223372036854775807, "int_min": -9223372036854775808, "third": 1 / 3, "e": 1e16,
           "text": "d\u00e9j\u00e0 \u2014 \U0001f600 \"q\" \\ \n\t\u0001", "list": [1, 2.5, None, False, [], {}],
           "lmio_format_version": "1.0"}
    yield "seed-config-odd-values", json.dumps(odd).encode()


def main():
    for target, seeds in (("tokenizer_roundtrip", tokenizer_seeds()), ("config_roundtrip", config_seeds())):
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds:
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
