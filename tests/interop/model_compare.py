"""What the model comparisons with Transformers share: running lmio, and the
tolerance and power checks (see test_gpt2_transformers.py for why 1e-5)."""
import subprocess

import numpy as np
import torch

import lmio_ctypes as lm

RTOL = 1e-5
POWER = 10  # an option under test must move the logits by POWER x the tolerance


def run(*args):
    r = subprocess.run([lm.LMIO_BIN, *args], capture_output=True, text=True)
    assert r.returncode == 0, f"lmio {' '.join(args)}: {r.stderr}"
    return r.stdout


def refuses(d, ids, tmp_path):
    r = subprocess.run([lm.LMIO_BIN, "logits", str(d), "--ids", ",".join(map(str, ids)), "--out",
                        str(tmp_path / "refused.npy")], capture_output=True, text=True)
    return r.returncode != 0, r.stderr


def lmio_logits(d, ids, tmp_path):
    out = tmp_path / "logits.npy"
    run("logits", str(d), "--ids", ",".join(map(str, ids)), "--out", str(out))
    return np.load(out)


def assert_close(ours, ref, what):
    assert ours.shape == ref.shape, what
    diff, scale = float(np.abs(ours - ref).max()), float(np.abs(ref).max())
    assert diff <= RTOL * scale, (f"{what}: max |lmio - Transformers| = {diff:.3g}, max |logit| = {scale:.3g}, "
                                  f"relative {diff / scale:.3g} > {RTOL}")


def assert_moves(alt, ref, what):
    moved, scale = float(np.abs(alt - ref).max()), float(np.abs(ref).max())
    assert moved >= POWER * RTOL * scale, (f"{what} moves Transformers' logits by {moved / scale:.3g} (relative), "
                                           f"less than {POWER} x {RTOL}: the comparison could not see lmio ignore it")


def hf_forward(model, ids):
    """Transformers' fp32 logits; half-precision weights are widened first, as lmio does."""
    with torch.no_grad():
        return model.float()(torch.tensor([ids])).logits[0].numpy()
