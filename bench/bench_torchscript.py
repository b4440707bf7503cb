"""TorchScript export of a GPT-2-124M directory: `lmio export DIR --to
torchscript OUT.pt` (a whole process: load, check every tensor, write the
archive, fsync) against what a torch user runs, torch.jit.trace of
Transformers' model then torch.jit.save (the model already in memory, so
this side pays neither process start nor from_pretrained). Both archives are
then loaded with torch.jit.load and their logits compared, so the timing is
of two things that do the same job.
usage: bench_torchscript.py LMIO_BINARY OUTDIR [RUNS]"""
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import med  # noqa: E402  (one median timer for every benchmark)


def fresh(path):
    """Before every timed write: no old file, no dirty pages of another."""
    def setup():
        if os.path.exists(path):
            os.remove(path)
        os.sync()
    return setup


def main():
    lmio, outdir = sys.argv[1], sys.argv[2]
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
    hf = AutoModelForCausalLM.from_pretrained(d).eval()

    class Logits(torch.nn.Module):  # what tracing needs: tensors in, a tensor out
        def __init__(self):
            super().__init__()
            self.m = hf

        def forward(self, input_ids):
            return self.m(input_ids=input_ids, use_cache=False).logits

    model = Logits()
    ids = torch.tensor([[464, 300, 952, 13, 50256, 11, 3, 7]])

    ours = os.path.join(outdir, "lmio-gpt2.pt")
    theirs = os.path.join(outdir, "traced-gpt2.pt")
    t_lmio = med(lambda: subprocess.run([lmio, "export", d, "--to", "torchscript", ours], check=True,
                                        capture_output=True), runs, fresh(ours))

    def trace_save():
        with torch.no_grad():
            traced = torch.jit.trace(model, ids)
        torch.jit.save(traced, theirs)
    t_torch = med(trace_save, runs, fresh(theirs))
    with torch.no_grad():
        traced = torch.jit.trace(model, ids)
    t_save = med(lambda: torch.jit.save(traced, theirs), runs, fresh(theirs))

    a, b = torch.jit.load(ours), torch.jit.load(theirs)
    with torch.no_grad():
        la, lb = a(ids), b(ids)
    rel = float((la - lb).abs().max() / lb.abs().max())
    assert rel <= 1e-5, f"the two archives disagree: {rel:.3g} relative"

    mb = os.path.getsize(ours) / 1e6
    print(f"GPT-2-124M TorchScript export, median of {runs} (archives: lmio {mb:.0f} MB, "
          f"traced {os.path.getsize(theirs) / 1e6:.0f} MB; logits agree to {rel:.1g} relative)")
    print(f"  lmio export (process: load, check, write, fsync)  {t_lmio:7.3f} s")
    print(f"  torch.jit.trace + torch.jit.save (in memory)      {t_torch:7.3f} s   "
          f"lmio takes {t_lmio / t_torch:.2f}x the time")
    print(f"  torch.jit.save of the traced module alone         {t_save:7.3f} s   "
          f"lmio takes {t_lmio / t_save:.2f}x the time")


if __name__ == "__main__":
    main()
