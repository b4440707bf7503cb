"""Issue-11 benchmarks: ONNX export of a GPT-2-124M directory and
onnxruntime's load of the result, beside torch.onnx.export of the same model.

The peer is the one torch 2.13.0 can run offline: the TorchScript exporter
(dynamo=False; the dynamo exporter needs onnxscript, which is not pinned) on
the model without its cache, because that exporter refuses Transformers'
DynamicCache as an output. Its graph is traced at one sequence length (the
causal-mask code freezes shapes, transformers#17773), so it is a timing
peer only, not a usable decoder. lmio's graph has the cache.
usage: bench_onnx.py LMIO_BIN OUTDIR [RUNS]"""
import os
import shutil
import subprocess
import sys
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import med  # noqa: E402


def main():
    lmio, outdir = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    import onnxruntime as ort
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging
    logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    d = os.path.join(outdir, "gpt2-124m")
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).save_pretrained(d)
    out = os.path.join(outdir, "gpt2-124m-onnx")

    def export():
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([lmio, "export", d, "--to", "onnx", out], check=True, capture_output=True)

    t_lmio = med(export, runs)
    model = GPT2LMHeadModel.from_pretrained(d).eval()

    class NoCache(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, mask):
            return self.m(input_ids=ids, attention_mask=mask, use_cache=False).logits

    peer = os.path.join(outdir, "gpt2-124m-torch.onnx")
    ids = torch.tensor([[1, 2, 3, 4]])
    axes = {"input_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "sequence_length"}}

    def torch_export():
        torch.onnx.export(NoCache(model), (ids, torch.ones_like(ids)), peer, dynamo=False, opset_version=20,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"], dynamic_axes=axes)

    t_torch = med(torch_export, runs)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    path = os.path.join(out, "onnx", "model.onnx")

    def load(p):
        return lambda: ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])

    l_lmio, l_torch = med(load(path), runs), med(load(peer), runs)
    mb = os.path.getsize(path) / 1e6
    print(f"GPT-2-124M (random init, 498 MB f32 safetensors) to ONNX; median of {runs} runs, one thread")
    print(f"{'operation':58s} {'time':>12s}   ratio")
    print(f"{'export: lmio export --to onnx (with KV cache, %.0f MB)' % mb:58s} {t_lmio * 1e3:9.1f} ms")
    print(f"{'export: torch.onnx.export, TorchScript, no cache':58s} {t_torch * 1e3:9.1f} ms   "
          f"lmio {t_torch / t_lmio:.1f}x as fast")
    print(f"{'onnxruntime InferenceSession: lmio model.onnx':58s} {l_lmio * 1e3:9.1f} ms")
    print(f"{'onnxruntime InferenceSession: torch.onnx.export file':58s} {l_torch * 1e3:9.1f} ms   "
          f"lmio's file loads in {l_lmio / l_torch:.2f}x its time")


if __name__ == "__main__":
    main()
