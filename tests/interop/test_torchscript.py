"""`lmio export DIR --to torchscript OUT.pt` against the pinned torch's own
TorchScript loader and against Transformers.

Tolerance: the exported module's fp32 logits must satisfy
    max |exported - reference| <= RTOL * max |reference|,  RTOL = 1e-5,
against lmio's own logits (`lmio logits`) and Transformers', at prompts of
several lengths up to the full context. Measured, the three agree to ~1e-7
relative: they are fp32 computations of the same model in different orders.
The promise is 1e-4; the test holds 1e-5 because gelu and gelu_new (tanh)
differ by only ~3e-4 relative in these logits, and the comparison must be
able to tell them apart.

Llama (LlamaForCausalLM, saved by Transformers, built as
test_llama_transformers.py builds them) is held to the same tolerance; its
rotary angles are computed inside the exported module, so the comparison at
every position up to the full context checks them (measured ~1e-6 relative).

Power: every parameter is drawn with std 0.2 (LayerNorm weights around 1),
so a tensor bound to the wrong place moves the logits; and for each config
option a directory exercises, switching it in Transformers must move the
logits by at least 10 x the tolerance, so an exporter that ignored the
option would fail the comparison."""
import json
import subprocess

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

import lmio_ctypes as lm
from safetensors.numpy import load_file
from test_gpt2_transformers import VOCAB_MERGES, random_weights
from test_llama_transformers import LLAMA3, check_option, hf_model

RTOL = 1e-5
# torch 2.13 deprecates TorchScript in favour of torch.export; it still loads
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning",
                                        "ignore:'torch.load' received a zip file:UserWarning")
POWER = 10
V = 50257

CONFIGS = {  # lmio writes these; options: what each one shows the export reads
    "tied_gelu_new": dict(
        cfg=dict(vocab_size=V, n_positions=64, n_embd=48, n_layer=2, n_head=3),
        options={"activation_function": "gelu", "tie_word_embeddings": False}),
    "untied_gelu_inner_eps": dict(
        cfg=dict(vocab_size=V, n_positions=48, n_embd=64, n_layer=3, n_head=4, n_inner=100,
                 activation_function="gelu", tie_word_embeddings=False, layer_norm_epsilon=1e-2),
        options={"activation_function": "gelu_new", "tie_word_embeddings": True, "layer_norm_epsilon": 1e-5}),
    "scaled_by_layer_relu": dict(
        cfg=dict(vocab_size=V, n_positions=40, n_embd=36, n_layer=3, n_head=6, activation_function="relu",
                 scale_attn_by_inverse_layer_idx=True),
        options={"scale_attn_by_inverse_layer_idx": False, "activation_function": "silu"}),
    "unscaled_silu": dict(
        cfg=dict(vocab_size=V, n_positions=32, n_embd=40, n_layer=2, n_head=5, activation_function="silu",
                 scale_attn_weights=False),
        options={"scale_attn_weights": True, "activation_function": "relu"}),
}


def lmio(*args, ok=True):
    r = subprocess.run([lm.LMIO_BIN, *args], capture_output=True, text=True)
    if ok:
        assert r.returncode == 0, f"lmio {' '.join(args)}: {r.stderr}"
    return r


def lmio_logits(d, ids, tmp_path):
    out = tmp_path / "logits.npy"
    lmio("logits", str(d), "--ids", ",".join(map(str, ids)), "--out", str(out))
    return np.load(out)


def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def ts_logits(module, ids):
    with torch.no_grad():
        out = module(torch.tensor(ids, dtype=torch.long))
    assert out.dtype == torch.float32
    return out.numpy()


def assert_close(ours, ref, what):
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape}, expected {ref.shape}"
    diff, scale = float(np.abs(ours - ref).max()), float(np.abs(ref).max())
    assert diff <= RTOL * scale, (f"{what}: max |exported - reference| = {diff:.3g}, max |logit| = {scale:.3g}, "
                                  f"relative {diff / scale:.3g} > {RTOL}")


def assert_moves(alt, ref, what):
    moved, scale = float(np.abs(alt - ref).max()), float(np.abs(ref).max())
    assert moved >= POWER * RTOL * scale, f"{what} moves the logits by only {moved / scale:.3g} (relative)"


def prompts(cfg):
    g = np.random.default_rng(cfg["n_embd"])
    P = cfg["n_positions"]
    return [[int(i) for i in g.integers(0, V, n)] for n in (1, 2, 7, P // 2 + 1, P)]


def export(d, out):
    r = lmio("export", str(d), "--to", "torchscript", str(out))
    assert "wrote" in r.stdout
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_exported_module_matches_lmio_and_transformers(tmp_path, name):
    spec = CONFIGS[name]
    cfg = spec["cfg"]
    d = tmp_path / "model"
    weights = random_weights(cfg, len(name))
    lm.save_pretrained(d, cfg, weights, VOCAB_MERGES)
    pt = export(d, tmp_path / "model.pt")
    module = torch.jit.load(str(pt), map_location="cpu")
    assert not module.training
    hf = AutoModelForCausalLM.from_pretrained(d).eval()

    # the parameters are the directory's tensors under Transformers' names
    sd = module.state_dict()
    assert set(sd) == set(weights)
    for k, v in weights.items():
        assert sd[k].dtype == torch.float32 and torch.equal(sd[k], torch.from_numpy(v)), k

    for ids in prompts(cfg):
        ours = ts_logits(module, ids)
        ref = hf_logits(hf, ids)
        assert_close(ours, lmio_logits(d, ids, tmp_path), f"{name}, {len(ids)} tokens, against lmio")
        assert_close(ours, ref, f"{name}, {len(ids)} tokens, against Transformers")

    # a batch (B, T) gives each row's logits
    batch = [p[:7] for p in prompts(cfg)[2:]]
    out = ts_logits(module, batch)
    assert out.shape == (len(batch), 7, V)
    for row, ids in zip(out, batch):
        assert_close(row, hf_logits(hf, ids), f"{name}, batch row")

    # each option the directory sets is one the comparison above could see ignored
    ids = prompts(cfg)[3]
    ref = hf_logits(hf, ids)
    for key, value in spec["options"].items():
        if key == "tie_word_embeddings" and value:  # tie by hand: Transformers keeps a saved lm_head
            alt = AutoModelForCausalLM.from_pretrained(d).eval()
            alt.lm_head.weight = torch.nn.Parameter(alt.transformer.wte.weight.detach().clone())
        elif key == "tie_word_embeddings":  # untie: a separate lm_head (drawn anew) must matter
            alt = AutoModelForCausalLM.from_pretrained(d, tie_word_embeddings=False).eval()
            with torch.no_grad():
                alt.lm_head.weight.normal_(0, 0.2)
        else:
            alt = AutoModelForCausalLM.from_pretrained(d, **{key: value}).eval()
        assert_moves(hf_logits(alt, ids), ref, f"{key}={value!r}")


LLAMA_CONFIGS = {  # Transformers writes these (std 0.2 weights); options: what each one shows the export reads
    "gqa_theta500k_untied": dict(kw=dict(num_key_value_heads=2, rope_theta=500000.0),
                                 options=["rope_theta", "hidden_act", "tie_word_embeddings"]),
    "mha_tied": dict(kw=dict(num_key_value_heads=4, tie_word_embeddings=True),
                     options=["rope_theta", "tie_word_embeddings"]),
    "mqa_eps_gelu": dict(kw=dict(num_key_value_heads=1, rms_norm_eps=1e-2, hidden_act="gelu"),
                         options=["rms_norm_eps", "hidden_act"]),
    "llama3_rope_scaling": dict(kw=dict(num_key_value_heads=2, rope_scaling=LLAMA3, rope_theta=10000.0),
                                options=["rope_type", "factor", "low_freq_factor", "high_freq_factor",
                                         "original_max_position_embeddings", "rope_theta"]),
    "head_dim_explicit": dict(kw=dict(num_key_value_heads=2, head_dim=24), options=["rope_theta"]),
    "biases_untied": dict(kw=dict(num_key_value_heads=2, attention_bias=True, mlp_bias=True),
                          options=["attention_bias", "mlp_bias"]),
}


@pytest.mark.parametrize("name", list(LLAMA_CONFIGS))
def test_exported_llama_matches_lmio_and_transformers(tmp_path, name):
    """LlamaForCausalLM: the rotary angles are computed inside the module
    from the constants the config gives, so the comparison at every prompt
    length up to the full context checks them at every position."""
    spec = LLAMA_CONFIGS[name]
    model = hf_model(len(name), **spec["kw"])
    d = tmp_path / "hf"
    model.save_pretrained(d)
    module = torch.jit.load(str(export(d, tmp_path / "model.pt")), map_location="cpu")
    assert not module.training

    # the parameters are the directory's tensors (a tied head left out, a
    # switched-off bias absent) under Transformers' names
    saved = load_file(d / "model.safetensors")
    sd = module.state_dict()
    assert set(sd) == set(saved)
    assert any("bias" in k for k in saved) == bool(spec["kw"].get("attention_bias"))
    for k, v in saved.items():
        assert sd[k].dtype == torch.float32 and torch.equal(sd[k], torch.from_numpy(v)), k

    P, Vl = model.config.max_position_embeddings, model.config.vocab_size
    g = np.random.default_rng(len(name))
    lengths = (1, 2, 7, P // 2 + 1, P)
    for ids in ([int(i) for i in g.integers(0, Vl, n)] for n in lengths):
        ours = ts_logits(module, ids)
        assert_close(ours, lmio_logits(d, ids, tmp_path), f"{name}, {len(ids)} tokens, against lmio")
        assert_close(ours, hf_logits(model, ids), f"{name}, {len(ids)} tokens, against Transformers")

    batch = [[int(i) for i in g.integers(0, Vl, 9)] for _ in range(3)]
    out = ts_logits(module, batch)
    assert out.shape == (3, 9, Vl)
    for row, ids in zip(out, batch):
        assert_close(row, hf_logits(model, ids), f"{name}, batch row")

    ids = [int(i) for i in g.integers(0, Vl, P)]
    ref = hf_logits(model, ids)
    for opt in spec["options"]:
        check_option(d, model, opt, ids, ref, tmp_path)


def test_torch_round_trips_the_archive(tmp_path):
    """What torch itself can do with lmio's archive: save it again with
    torch.jit.save and load that, script a module around it, move it."""
    cfg = CONFIGS["untied_gelu_inner_eps"]["cfg"]
    d = tmp_path / "model"
    lm.save_pretrained(d, cfg, random_weights(cfg, 3), VOCAB_MERGES)
    module = torch.jit.load(str(export(d, tmp_path / "model.pt")))
    ids = prompts(cfg)[3]
    want = ts_logits(module, ids)
    assert_close(want, lmio_logits(d, ids, tmp_path), "exported")

    torch.jit.save(module, str(tmp_path / "resaved.pt"))
    again = torch.jit.load(str(tmp_path / "resaved.pt"), map_location="cpu")
    assert np.array_equal(ts_logits(again, ids), want)
    assert set(again.state_dict()) == set(module.state_dict())

    class Greedy(torch.nn.Module):
        def __init__(self, lm_module):
            super().__init__()
            self.lm = lm_module

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.lm(ids).argmax(-1)

    scripted = torch.jit.script(Greedy(module))
    torch.jit.save(scripted, str(tmp_path / "greedy.pt"))
    greedy = torch.jit.load(str(tmp_path / "greedy.pt"))
    with torch.no_grad():
        assert greedy(torch.tensor(ids)).tolist() == want.argmax(-1).tolist()

    # torch.load dispatches a TorchScript archive to torch.jit.load, and
    # refuses it under weights_only, as for any TorchScript file
    with pytest.raises(RuntimeError, match="TorchScript archives"):
        torch.load(str(tmp_path / "model.pt"), weights_only=True)


@pytest.mark.parametrize("dtype", ["bf16", "f16"])
def test_half_directories_export_f32(tmp_path, dtype):
    """Half-precision weights are widened to f32, as lmio computes with them."""
    cfg = CONFIGS["tied_gelu_new"]["cfg"]
    d = tmp_path / "f32"
    lm.save_pretrained(d, cfg, random_weights(cfg, 5), VOCAB_MERGES)
    half = tmp_path / dtype
    lmio("convert", str(d), str(half), "--dtype", dtype)
    module = torch.jit.load(str(export(half, tmp_path / "half.pt")))
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    hf = AutoModelForCausalLM.from_pretrained(half).float().eval()
    for ids in prompts(cfg)[1:4]:
        ours = ts_logits(module, ids)
        assert_close(ours, lmio_logits(half, ids, tmp_path), f"{dtype}, against lmio")
        assert_close(ours, hf_logits(hf, ids), f"{dtype}, against Transformers")


def test_refusals(tmp_path):
    cfg = CONFIGS["tied_gelu_new"]["cfg"]
    d = tmp_path / "model"
    lm.save_pretrained(d, cfg, random_weights(cfg, 6), VOCAB_MERGES)
    r = lmio("export", str(d), "--to", "onnx-ish", str(tmp_path / "x.pt"), ok=False)
    assert r.returncode == 2 and "torchscript" in r.stderr
    # an architecture lmio cannot run is named, and nothing is written
    c = json.load(open(d / "config.json"))
    c["model_type"] = "bert"
    json.dump(c, open(d / "config.json", "w"))
    r = lmio("export", str(d), "--to", "torchscript", str(tmp_path / "x.pt"), ok=False)
    assert r.returncode == 1 and '"bert"' in r.stderr, r.stderr
    assert not (tmp_path / "x.pt").exists()
    # a directory whose weights do not fit its config is refused by name
    d2 = tmp_path / "short"
    cfg2 = dict(cfg, n_layer=1)
    lm.save_pretrained(d2, cfg2, random_weights(cfg2, 6), VOCAB_MERGES)
    c = json.load(open(d2 / "config.json"))
    c["n_layer"] = 2
    json.dump(c, open(d2 / "config.json", "w"))
    r = lmio("export", str(d2), "--to", "torchscript", str(tmp_path / "x.pt"), ok=False)
    assert r.returncode == 1 and "transformer.h.1." in r.stderr, r.stderr
    assert not (tmp_path / "x.pt").exists()
