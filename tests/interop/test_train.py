"""lmio's training step against torch 2.13.0 and Transformers: the gradients
of GPT2LMHeadModel's loss.backward() tensor by tensor, and AdamW: one
torch.optim.AdamW(fused=True) step started from an lmio checkpoint's
optimizer state (optimizer.pt, loaded by load_state_dict as it is) equals
lmio's next step bit for bit."""
import ctypes
import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2LMHeadModel

from lmio_ctypes import LIB, Error, Tensor, P

c_u64, c_sz, c_d = ctypes.c_uint64, ctypes.c_size_t, ctypes.c_double


class TrainerOpts(ctypes.Structure):
    _fields_ = [("struct_size", c_sz), ("batch_size", c_sz), ("seq_len", c_sz), ("lr", c_d),
                ("warmup_steps", c_u64), ("total_steps", c_u64), ("beta1", c_d), ("beta2", c_d), ("eps", c_d),
                ("weight_decay", c_d), ("max_grad_norm", c_d), ("seed", c_u64)]


class CheckpointOpts(ctypes.Structure):
    _fields_ = [("struct_size", c_sz), ("keep", c_u64), ("keep_best", ctypes.c_int), ("async_", ctypes.c_int),
                ("durable", ctypes.c_int)]


class Stats(ctypes.Structure):
    _fields_ = [("step", c_u64), ("loss", ctypes.c_float), ("lr", c_d), ("grad_norm", ctypes.c_float),
                ("tokens_per_second", c_d)]


E = ctypes.POINTER(Error)
LIB.lmio_pretrained_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(P), ctypes.POINTER(P), ctypes.POINTER(P), E]
LIB.lmio_config_free.argtypes = [P]
LIB.lmio_trainer_create.argtypes = [P, P, P, ctypes.POINTER(TrainerOpts), ctypes.POINTER(P), E]
LIB.lmio_trainer_free.argtypes = [P]
LIB.lmio_trainer_backward.argtypes = [P, ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int32), c_sz, c_sz,
                                      ctypes.POINTER(ctypes.c_float), E]
LIB.lmio_trainer_update.argtypes = [P, ctypes.POINTER(Stats), E]
LIB.lmio_trainer_tensors.argtypes = [P, ctypes.c_int, ctypes.POINTER(P), E]
LIB.lmio_trainer_save.argtypes = [P, ctypes.c_char_p, ctypes.POINTER(CheckpointOpts), E]
LIB.lmio_trainer_resume.argtypes = [ctypes.c_char_p, c_u64, ctypes.POINTER(P), E]
LIB.lmio_trainer_next_lr.argtypes = [P]
LIB.lmio_trainer_next_lr.restype = c_d

WEIGHTS, GRADS, EXP_AVG, EXP_AVG_SQ = range(4)


def check(status, err):
    assert status == 0, err.message.decode()


def trainer_opts(**kw):
    o = TrainerOpts(ctypes.sizeof(TrainerOpts), 2, 0, 1e-3, 0, 1000, 0.9, 0.999, 1e-8, 0.01, 1.0, 0)
    for k, v in kw.items():
        setattr(o, k, v)
    return o


class Trainer:
    def __init__(self, model_dir, **opts):
        err = Error()
        cfg, w = P(), P()
        check(LIB.lmio_pretrained_load(model_dir.encode(), ctypes.byref(cfg), ctypes.byref(w), None, err), err)
        self.h = P()
        o = trainer_opts(**opts)
        check(LIB.lmio_trainer_create(cfg, w, None, ctypes.byref(o), ctypes.byref(self.h), err), err)
        LIB.lmio_config_free(cfg)
        LIB.lmio_statedict_free(w)  # the trainer copied the weights

    @classmethod
    def resume(cls, ckpt):
        self = cls.__new__(cls)
        err = Error()
        self.h = P()
        check(LIB.lmio_trainer_resume(ckpt.encode(), 0, ctypes.byref(self.h), err), err)
        return self

    def backward(self, ids, targets):
        err = Error()
        loss = ctypes.c_float()
        B, T = ids.shape
        a = np.ascontiguousarray(ids, dtype=np.int32)
        t = np.ascontiguousarray(targets, dtype=np.int32)
        check(LIB.lmio_trainer_backward(self.h, a.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                                        t.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), B, T, ctypes.byref(loss),
                                        err), err)
        return loss.value

    def update(self):
        err = Error()
        st = Stats()
        check(LIB.lmio_trainer_update(self.h, ctypes.byref(st), err), err)
        return st

    def tensors(self, part):
        """{name: a numpy copy} of one part, in the trainer's order."""
        err = Error()
        sd = P()
        check(LIB.lmio_trainer_tensors(self.h, part, ctypes.byref(sd), err), err)
        out = {}
        for i in range(LIB.lmio_statedict_count(sd)):
            t = Tensor()
            check(LIB.lmio_statedict_get(sd, i, ctypes.byref(t), err), err)
            shape = tuple(t.shape[:t.ndim])
            buf = (ctypes.c_float * int(t.numel)).from_address(t.data)
            out[t.name.decode()] = np.frombuffer(buf, dtype=np.float32).reshape(shape).copy()
        LIB.lmio_statedict_free(sd)
        return out

    def save(self, run_dir):
        err = Error()
        co = CheckpointOpts(ctypes.sizeof(CheckpointOpts), 0, 0, 0, 1)
        check(LIB.lmio_trainer_save(self.h, run_dir.encode(), ctypes.byref(co), err), err)

    def __del__(self):
        LIB.lmio_trainer_free(self.h)


def random_model(cfg, seed, std=0.3):
    """A GPT2LMHeadModel whose every weight has std >= 0.2, so each
    gradient is far from rounding noise; dropout off (lmio trains without)."""
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0, **cfg))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * std + (1.0 if name.endswith("ln_1.weight") or name.endswith("ln_2.weight")
                                                  or name.endswith("ln_f.weight") else 0.0))
    return model.eval()


CONFIGS = [
    dict(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=4),
    dict(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2, activation_function="gelu",
         tie_word_embeddings=False, n_inner=48),
    dict(vocab_size=80, n_positions=12, n_embd=24, n_layer=1, n_head=3, activation_function="relu",
         scale_attn_by_inverse_layer_idx=True, layer_norm_epsilon=1e-3),
    dict(vocab_size=50, n_positions=10, n_embd=16, n_layer=3, n_head=2, activation_function="silu",
         scale_attn_weights=False),
]


def batch(cfg, B, T, seed):
    g = np.random.default_rng(seed)
    return g.integers(0, cfg["vocab_size"], size=(B, T), dtype=np.int64)


def check_gradients(tmp_path, model, cfg, T):
    """lmio's loss and gradients for a batch of model's equal torch autograd's
    (model saved to tmp_path/m first)."""
    model.save_pretrained(tmp_path / "m")
    B = 3
    ids = batch(cfg, B, T, seed=2)
    out = model(torch.from_numpy(ids), labels=torch.from_numpy(ids))
    out.loss.backward()

    tr = Trainer(str(tmp_path / "m"))
    targets = np.concatenate([ids[:, 1:], -np.ones((B, 1), dtype=np.int64)], axis=1)  # HF shifts labels
    loss = tr.backward(ids, targets)
    assert abs(loss - out.loss.item()) <= 1e-5 * abs(out.loss.item())

    grads = tr.tensors(GRADS)
    params = dict(model.named_parameters())
    assert list(grads) == list(params)  # named_parameters() order, tied head once
    for name, p in params.items():
        g = p.grad.numpy()
        rel = np.linalg.norm(grads[name] - g) / np.linalg.norm(g)
        assert rel <= 1e-4, f"{name}: ||lmio - torch|| / ||torch|| = {rel:.3g}"


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.get("activation_function", "gelu_new"))
def test_gradients_match_torch_autograd(tmp_path, cfg):
    check_gradients(tmp_path, random_model(cfg, seed=1), cfg, cfg["n_positions"])


def test_gradient_check_fails_on_a_wrong_gradient(tmp_path):
    """The tolerance separates: one layer's gradient scaled by 1.001 fails."""
    cfg = CONFIGS[0]
    model = random_model(cfg, seed=3)
    ids = batch(cfg, 2, cfg["n_positions"], seed=4)
    model(torch.from_numpy(ids), labels=torch.from_numpy(ids)).loss.backward()
    g = model.transformer.h[1].mlp.c_fc.weight.grad.numpy()
    assert np.linalg.norm(g * 1.001 - g) / np.linalg.norm(g) > 1e-4


def adamw(model, ckpt):
    """torch.optim.AdamW(fused=True) under a LambdaLR (which adds
    initial_lr), the groups as a training script builds them."""
    named = list(model.named_parameters())
    state = json.load(open(os.path.join(ckpt, "trainer_state.json")))["lmio_trainer"]
    opt = torch.optim.AdamW([{"params": [p for n, p in named if p.ndim >= 2], "weight_decay": state["weight_decay"]},
                             {"params": [p for n, p in named if p.ndim < 2], "weight_decay": 0.0}],
                            lr=state["lr"], betas=(state["beta1"], state["beta2"]), eps=state["eps"], fused=True)
    torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return opt


def torch_state_dict_after_a_step(ckpt, grads):
    """What torch itself saves for this model: AdamW's state_dict() after
    one step of its own."""
    model = GPT2LMHeadModel.from_pretrained(ckpt).eval()
    opt = adamw(model, ckpt)
    for name, p in model.named_parameters():
        p.grad = torch.from_numpy(grads[name])
    opt.step()
    return opt.state_dict()


def same_structure(a, b, where="optimizer.pt"):
    """Same keys in the same order, same types, tensors of the same dtype
    and shape."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} vs {list(b)}"
        for k in a:
            same_structure(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: {len(a)} items vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            same_structure(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert (a.dtype, a.shape, a.device) == (b.dtype, b.shape, b.device), where


def test_one_torch_adamw_step_from_an_lmio_checkpoint_equals_lmios(tmp_path):
    cfg = CONFIGS[0]  # every tensor's size a multiple of 16: no AVX-512 tail in torch's kernel
    model = random_model(cfg, seed=5, std=0.2)
    model.save_pretrained(tmp_path / "m")
    tr = Trainer(str(tmp_path / "m"), lr=3e-3, warmup_steps=2, total_steps=10, weight_decay=0.1,
                 beta2=0.95, max_grad_norm=0.5)
    for k in range(3):  # moments and bias corrections of a run under way
        ids = batch(cfg, 2, 16, seed=10 + k)
        tr.backward(ids, np.roll(ids, -1, axis=1))
        tr.update()
    tr.save(str(tmp_path / "run"))
    ckpt = str(tmp_path / "run" / "checkpoint-3")
    saved = load_file(os.path.join(ckpt, "optimizer.safetensors"))
    assert set(saved) == {f"{k}.{n}" for k in ("exp_avg", "exp_avg_sq") for n, _ in model.named_parameters()}

    resumed = Trainer.resume(ckpt)
    ids = batch(cfg, 2, 16, seed=20)
    resumed.backward(ids, np.roll(ids, -1, axis=1))
    resumed.update()
    grads = resumed.tensors(GRADS)  # as clipped, what AdamW used

    model = GPT2LMHeadModel.from_pretrained(ckpt).eval()
    pt = torch.load(os.path.join(ckpt, "optimizer.pt"), weights_only=True)
    same_structure(torch_state_dict_after_a_step(ckpt, grads), pt)
    sched = json.load(open(os.path.join(ckpt, "scheduler.json")))
    assert [g["lr"] for g in pt["param_groups"]] == sched["_last_lr"]  # the next update's
    named = list(model.named_parameters())
    n_decay = sum(p.ndim >= 2 for _, p in named)
    assert [g["params"] for g in pt["param_groups"]] == [list(range(n_decay)), list(range(n_decay, len(named)))]
    opt = adamw(model, ckpt)
    opt.load_state_dict(pt)  # as it is: no edits
    for name, p in model.named_parameters():
        p.grad = torch.from_numpy(grads[name])
    opt.step()
    want = {n: p.detach().numpy() for n, p in model.named_parameters()}
    got = resumed.tensors(WEIGHTS)
    m = resumed.tensors(EXP_AVG)
    v = resumed.tensors(EXP_AVG_SQ)
    for name, p in named:
        st = opt.state[p]
        assert np.array_equal(got[name], want[name]), f"{name}: weights differ from torch's AdamW"
        assert np.array_equal(m[name], st["exp_avg"].numpy()), f"{name}: exp_avg differs"
        assert np.array_equal(v[name], st["exp_avg_sq"].numpy()), f"{name}: exp_avg_sq differs"
        assert st["step"].item() == 4.0


# ---- Llama ----

def random_llama(cfg, seed, std=0.3):
    """A LlamaForCausalLM whose every weight has std >= 0.2 (RMSNorm
    weights around 1)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * std + (1.0 if name.endswith("norm.weight") else 0.0))
    return model.eval()


LLAMA_CONFIGS = {
    # grouped-query attention (4 query heads share 2 key/value heads), untied
    "gqa": dict(vocab_size=64, max_position_embeddings=16, hidden_size=32, intermediate_size=48,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False),
    # multi-head, tied head, biases everywhere, a padding row that gets no gradient
    "mha_tied_bias": dict(vocab_size=48, max_position_embeddings=12, hidden_size=24, intermediate_size=40,
                          num_hidden_layers=2, num_attention_heads=3, tie_word_embeddings=True,
                          attention_bias=True, mlp_bias=True, rms_norm_eps=1e-3, pad_token_id=5),
    # one key/value head, an explicit head_dim, Llama 3.1 rope scaling, tied
    "mqa_llama3": dict(vocab_size=40, max_position_embeddings=16, hidden_size=16, intermediate_size=24,
                       num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=1, head_dim=8,
                       tie_word_embeddings=True, rope_theta=500.0,
                       rope_scaling=dict(rope_type="llama3", factor=4.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                         original_max_position_embeddings=4)),
}


@pytest.mark.parametrize("name", list(LLAMA_CONFIGS))
def test_llama_gradients_match_torch_autograd(tmp_path, name):
    cfg = LLAMA_CONFIGS[name]
    check_gradients(tmp_path, random_llama(cfg, seed=1), cfg, cfg["max_position_embeddings"])


def llama_run(tmp_path, steps, env=None, out="run"):
    """`lmio train --config DIR` on a small Llama config (no tokenizer: the
    run trains one) over English text; the printed log lines."""
    import subprocess
    from transformers import LlamaConfig
    cfg_dir = tmp_path / "cfg"
    LlamaConfig(vocab_size=300, max_position_embeddings=32, hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2).save_pretrained(cfg_dir)
    text = tmp_path / "text.txt"
    lic = "/usr/share/common-licenses"  # English text every Debian system ships (base-files)
    text.write_bytes(b"".join(open(os.path.join(lic, f), "rb").read() for f in sorted(os.listdir(lic))
                              if os.path.isfile(os.path.join(lic, f)))[:200000])
    lmio = os.path.join(os.environ["LMIO_BUILD"], "lmio")
    run = subprocess.run([lmio, "train", "--config", str(cfg_dir), "--data", str(text), "--out", str(tmp_path / out),
                          "--steps", str(steps), "--lr", "3e-3", "--batch-size", "4", "--seq-len", "32"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


def test_lmio_train_on_a_llama_config_lowers_the_loss(tmp_path):
    """The loss of the last steps is well below the first's, and the
    checkpoint loads in Transformers as a LlamaForCausalLM."""
    from transformers import LlamaForCausalLM
    losses = [r["loss"] for r in llama_run(tmp_path, 300)]
    assert len(losses) == 300
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.6 * first, f"mean loss {first:.3f} -> {last:.3f}"
    model, info = LlamaForCausalLM.from_pretrained(tmp_path / "run" / "checkpoint-300", output_loading_info=True)
    assert not any(info.values()), info


def test_llama_training_is_the_same_on_one_and_two_threads(tmp_path):
    """Every sum in a fixed order: the weights after some steps are the same
    bytes whatever the thread count."""
    for n in ("1", "2"):
        llama_run(tmp_path, 4, env={"OMP_NUM_THREADS": n}, out=f"run{n}")
    a, b = (open(tmp_path / f"run{n}" / "checkpoint-4" / "model.safetensors", "rb").read() for n in ("1", "2"))
    assert a == b
