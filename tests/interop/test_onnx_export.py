"""lmio export --to onnx against the real consumers: onnx's checker,
onnxruntime (Python) and transformers.js in Node (offline), all pinned.

Tolerance: onnxruntime's logits must satisfy
    max |ort - lmio| <= RTOL * max |lmio|
with RTOL = 1e-4 for fp32 exports and 2e-2 for fp16 ones (fp16 weights,
cache and logits; the reference is lmio's fp32 forward of the original
weights). Weights are drawn with std 0.2 (biases and LayerNorm included),
so every tensor moves the logits; each config exercises a different branch
of the graph (activation, attention scaling, tied or untied head, n_inner,
epsilon). Padded batches compare only the real tokens' logits with lmio's
run of each sequence alone; a wrong mask or position moves them."""
import json
import os
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import lmio_ctypes as lm
from test_gpt2_transformers import PROMPT, VOCAB_MERGES, random_weights
from test_llama_transformers import LLAMA3, hf_model
from test_llama_transformers import V as LLAMA_V

HERE = os.path.dirname(os.path.abspath(__file__))
V = 50257
CONFIGS = {
    "gelu_new_tied": dict(vocab_size=V, n_positions=64, n_embd=48, n_layer=2, n_head=4),
    "gelu_untied_inner_eps": dict(vocab_size=V, n_positions=64, n_embd=32, n_layer=2, n_head=2, n_inner=72,
                                  activation_function="gelu", tie_word_embeddings=False, layer_norm_epsilon=1e-2),
    "relu_scaled_by_layer": dict(vocab_size=V, n_positions=64, n_embd=36, n_layer=3, n_head=6,
                                 activation_function="relu", scale_attn_by_inverse_layer_idx=True),
    "silu_unscaled": dict(vocab_size=V, n_positions=64, n_embd=40, n_layer=2, n_head=5, activation_function="silu",
                          scale_attn_weights=False),
}
RTOL = {"f32": 1e-4, "f16": 2e-2}
IDS = [int(i) for i in np.random.default_rng(3).integers(0, V, 40)]


def run(*args):
    r = subprocess.run([lm.LMIO_BIN, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, f"lmio {' '.join(map(str, args))}: {r.stderr}"
    return r.stdout


def model_dir(tmp_path, name, seed=1):
    d = tmp_path / name
    cfg = CONFIGS[name]
    lm.save_pretrained(d, cfg, random_weights(cfg, seed), VOCAB_MERGES)
    return d


def export(d, out, *flags):
    run("export", d, "--to", "onnx", out, *flags)
    return out / "onnx" / "model.onnx"


def lmio_logits(d, ids, tmp_path):
    out = tmp_path / "ref.npy"
    run("logits", d, "--ids", ",".join(map(str, ids)), "--out", out)
    return np.load(out)


class Session:
    def __init__(self, path):
        self.s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.past = [i for i in self.s.get_inputs() if i.name.startswith("past_key_values.")]
        self.outs = [o.name for o in self.s.get_outputs()]
        self.float = np.float16 if self.past[0].type == "tensor(float16)" else np.float32

    def empty_past(self, batch):
        return {i.name: np.zeros((batch, i.shape[1], 0, i.shape[3]), self.float) for i in self.past}

    def __call__(self, ids, mask, pos, past):
        feed = {"input_ids": np.asarray(ids, np.int64), "attention_mask": np.asarray(mask, np.int64),
                "position_ids": np.asarray(pos, np.int64), **past}
        res = dict(zip(self.outs, self.s.run(None, feed)))
        present = {k.replace("present.", "past_key_values."): v for k, v in res.items() if k.startswith("present.")}
        return res["logits"].astype(np.float32), present


def positions(mask):
    """As transformers.js builds them: cumsum(mask) - 1, padding at 1."""
    mask = np.asarray(mask)
    p = np.cumsum(mask, axis=1) - 1
    return np.where(mask == 0, 1, p)


def assert_close(got, ref, rtol, what):
    diff, scale = float(np.abs(got - ref).max()), float(np.abs(ref).max())
    assert diff <= rtol * scale, f"{what}: max |ort - lmio| = {diff:.3g}, max |logit| = {scale:.3g}, " \
                                 f"relative {diff / scale:.3g} > {rtol}"


def check_session(d, path, ids_pool, rtol, what, tmp_path):
    """onnxruntime on the export at path against lmio on directory d:
    batch 1 prompts of 1 and 17 tokens, a batch of 3 padded left then
    right, and the cache fed back step by step."""
    onnx.checker.check_model(str(path), full_check=True)
    s = Session(path)
    for n in (1, 17):
        ids = ids_pool[:n]
        got, _ = s([ids], [[1] * n], [list(range(n))], s.empty_past(1))
        assert_close(got[0], lmio_logits(d, ids, tmp_path), rtol, f"{what} batch 1, {n} tokens")
    # batch 3 of 17, 9 and 1 tokens, padded left then right
    lens = [17, 9, 1]
    seqs = [ids_pool[i:i + n] for i, n in zip((0, 20, 31), lens)]
    refs = [lmio_logits(d, q, tmp_path) for q in seqs]
    for side in ("left", "right"):
        ids, mask = [], []
        for q in seqs:
            pad = [0] * (17 - len(q))
            ids.append(pad + q if side == "left" else q + pad)
            mask.append([0] * len(pad) + [1] * len(q) if side == "left" else [1] * len(q) + [0] * len(pad))
        got, _ = s(ids, mask, positions(mask), s.empty_past(3))
        for b, (q, ref) in enumerate(zip(seqs, refs)):
            real = got[b, 17 - len(q):] if side == "left" else got[b, :len(q)]
            assert_close(real, ref, rtol, f"{what} batch 3 {side}-padded, row {b}")
    # the cache fed back step by step, as generation does: the left-padded
    # batch, then one token per row per step, the mask growing by a column
    ids = [[0] * (17 - len(q)) + q for q in seqs]
    mask = [[0] * (17 - len(q)) + [1] * len(q) for q in seqs]
    _, past = s(ids, mask, positions(mask), s.empty_past(3))
    steps = [ids_pool[i:i + 8] for i in (5, 13, 27)]
    for t in range(8):
        mask = [m + [1] for m in mask]
        got, past = s([[st[t]] for st in steps], mask, positions(mask)[:, -1:], past)
        for b, q in enumerate(seqs):
            full = q + steps[b][:t + 1]
            ref = lmio_logits(d, full, tmp_path)[-1]
            assert_close(got[b, 0], ref, rtol, f"{what} cached step {t}, row {b}")
        assert past["past_key_values.0.key"].shape[2] == 18 + t


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_onnxruntime_logits_equal_lmio(tmp_path, name, dtype):
    d = model_dir(tmp_path, name)
    path = export(d, tmp_path / "onnx", "--dtype", dtype)
    check_session(d, path, IDS, RTOL[dtype], f"{name} {dtype}", tmp_path)


# Llama, built as test_llama_transformers.py builds it (every parameter
# std 0.2, so each moves the logits); each config exercises a branch of
# the graph: grouped (2 and 1 key/value heads) or plain attention, tied or
# untied head, llama3 rope scaling (all three frequency bands), head_dim
# apart from hidden_size / heads, biases, another activation and epsilon.
LLAMA_CONFIGS = {
    "gqa_theta500k": dict(num_key_value_heads=2, rope_theta=500000.0),
    "mha_tied": dict(num_key_value_heads=4, tie_word_embeddings=True),
    "llama3_rope_scaling": dict(num_key_value_heads=2, rope_scaling=LLAMA3, rope_theta=10000.0),
    "mqa_head_dim_biases_gelu": dict(num_key_value_heads=1, head_dim=24, attention_bias=True, mlp_bias=True,
                                     hidden_act="gelu", rms_norm_eps=1e-2),
}
LLAMA_IDS = [int(i) for i in np.random.default_rng(4).integers(0, LLAMA_V, 40)]


def llama_dir(tmp_path, name):
    d = tmp_path / name
    hf_model(len(name), **LLAMA_CONFIGS[name]).save_pretrained(d)
    return d


@pytest.mark.parametrize("name", list(LLAMA_CONFIGS))
@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_onnxruntime_llama_logits_equal_lmio(tmp_path, name, dtype):
    d = llama_dir(tmp_path, name)
    path = export(d, tmp_path / "onnx", "--dtype", dtype)
    m = onnx.load(str(path))
    G = LLAMA_CONFIGS[name]["num_key_value_heads"]
    D = LLAMA_CONFIGS[name].get("head_dim", 16)
    past = [i for i in m.graph.input if i.name.startswith("past_key_values.")]
    assert len(past) == 4 and all([x.dim_param or x.dim_value for x in i.type.tensor_type.shape.dim] ==
                                  ["batch_size", G, "past_sequence_length", D] for i in past)
    check_session(d, path, LLAMA_IDS, RTOL[dtype], f"llama {name} {dtype}", tmp_path)


def test_layout_is_what_transformersjs_expects(tmp_path):
    d = model_dir(tmp_path, "gelu_new_tied")
    path = export(d, tmp_path / "out")
    m = onnx.load(str(path))
    cfg = CONFIGS["gelu_new_tied"]
    H, D = cfg["n_head"], cfg["n_embd"] // cfg["n_head"]

    def dims(vi):
        return [x.dim_param or x.dim_value for x in vi.type.tensor_type.shape.dim]

    ins = {i.name: (i.type.tensor_type.elem_type, dims(i)) for i in m.graph.input}
    outs = {o.name: (o.type.tensor_type.elem_type, dims(o)) for o in m.graph.output}
    I64, F = onnx.TensorProto.INT64, onnx.TensorProto.FLOAT
    want_in = {"input_ids": (I64, ["batch_size", "sequence_length"]),
               "attention_mask": (I64, ["batch_size", "past_sequence_length + sequence_length"]),
               "position_ids": (I64, ["batch_size", "sequence_length"])}
    want_out = {"logits": (F, ["batch_size", "sequence_length", V])}
    for i in range(cfg["n_layer"]):
        for kv in ("key", "value"):
            want_in[f"past_key_values.{i}.{kv}"] = (F, ["batch_size", H, "past_sequence_length", D])
            want_out[f"present.{i}.{kv}"] = (F, ["batch_size", H, "past_sequence_length + sequence_length", D])
    assert ins == want_in
    assert outs == want_out
    assert m.ir_version == 9 and [(o.domain, o.version) for o in m.opset_import] == [("", 20)]
    files = sorted(os.listdir(tmp_path / "out"))
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "onnx"):
        assert f in files
    assert json.load(open(tmp_path / "out" / "config.json"))["model_type"] == "gpt2"


def test_f16_stores_half(tmp_path):
    d = model_dir(tmp_path, "gelu_new_tied")
    m = onnx.load(str(export(d, tmp_path / "out", "--dtype", "f16")))
    H16 = onnx.TensorProto.FLOAT16
    weights = [t for t in m.graph.initializer if t.name.startswith("transformer.")]
    assert weights and all(t.data_type == H16 for t in weights)
    floats = [v for v in list(m.graph.input) + list(m.graph.output) if v.name not in
              ("input_ids", "attention_mask", "position_ids")]
    assert all(v.type.tensor_type.elem_type == H16 for v in floats)


def test_deterministic_and_external_data(tmp_path):
    d = model_dir(tmp_path, "gelu_untied_inner_eps")
    a = export(d, tmp_path / "a")
    b = export(d, tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    ext = export(d, tmp_path / "ext", "--external-data")
    data = ext.parent / "model.onnx_data"
    assert data.exists() and ext.stat().st_size < 100_000
    assert export(d, tmp_path / "ext2", "--external-data").read_bytes() == ext.read_bytes()
    assert (tmp_path / "ext2" / "onnx" / "model.onnx_data").read_bytes() == data.read_bytes()
    m = onnx.load(str(ext), load_external_data=False)
    for t in m.graph.initializer:
        if t.name.startswith("transformer.") or t.name == "lm_head.weight":
            info = {e.key: e.value for e in t.external_data}
            assert t.data_location == onnx.TensorProto.EXTERNAL and info["location"] == "model.onnx_data"
            assert int(info["offset"]) % 4096 == 0, (t.name, info)
    onnx.checker.check_model(str(ext), full_check=True)
    ids = [IDS[:17]]
    sa, se = Session(a), Session(ext)
    la, _ = sa(ids, [[1] * 17], [list(range(17))], sa.empty_past(1))
    le, _ = se(ids, [[1] * 17], [list(range(17))], se.empty_past(1))
    assert np.array_equal(la, le)
    assert json.load(open(tmp_path / "ext" / "config.json"))["transformers.js_config"] == \
        {"use_external_data_format": True}


def test_cli_refusals(tmp_path):
    d = model_dir(tmp_path, "gelu_new_tied")
    for args, code, msg in [(["--to", "tflite"], 2, "unknown target 'tflite'"),
                            (["--to", "onnx", "--dtype", "bf16"], 2, "f32 or f16"),
                            ([], 2, "needs --to")]:
        r = subprocess.run([lm.LMIO_BIN, "export", str(d), str(tmp_path / "o"), *args], capture_output=True,
                           text=True)
        assert r.returncode == code and msg in r.stderr, r.stderr
    cfg = json.load(open(d / "config.json"))
    cfg["model_type"] = "bert"
    json.dump(cfg, open(d / "config.json", "w"))
    r = subprocess.run([lm.LMIO_BIN, "export", str(d), "--to", "onnx", str(tmp_path / "o")], capture_output=True,
                       text=True)
    assert r.returncode == 1 and '"bert" cannot be exported to ONNX' in r.stderr, r.stderr


N_NEW = 32


@pytest.mark.parametrize("flags", [[], ["--external-data"]])
def test_transformersjs_generates_as_lmio(tmp_path, flags):
    """pipeline('text-generation') and model.generate in transformers.js,
    offline, on the exported folder: the tokenizer's ids and the greedy
    32-token continuation equal lmio's."""
    d = model_dir(tmp_path, "gelu_new_tied", seed=4)
    (tmp_path / "models").mkdir()
    export(d, tmp_path / "models" / "exported", *flags)
    ours = json.loads(run("generate", d, "--prompt", PROMPT, "-n", N_NEW, "--greedy", "--json"))
    assert len(ours["ids"]) == N_NEW and len(set(ours["ids"])) >= 8, ours["ids"]
    r = subprocess.run(["node", os.path.join(HERE, "onnx_transformersjs.mjs"), str(tmp_path / "models"), "exported",
                        PROMPT, str(N_NEW)], capture_output=True, text=True, cwd=HERE,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    js = json.loads(r.stdout.strip().splitlines()[-1])
    assert js["prompt_ids"] == ours["prompt_ids"]
    assert js["ids"] == ours["ids"]
    assert js["generated_text"] == PROMPT + ours["text"]


@pytest.mark.parametrize("name", ["gqa_theta500k", "llama3_rope_scaling"])
def test_transformersjs_generates_llama_as_lmio(tmp_path, name):
    """transformers.js runs the export as a LlamaForCausalLM, offline: its
    greedy 32-token continuation of token ids equals lmio generate's."""
    d = llama_dir(tmp_path, name)
    (tmp_path / "models").mkdir()
    export(d, tmp_path / "models" / "exported")
    prompt = ",".join(map(str, LLAMA_IDS))
    ours = json.loads(run("generate", d, "--ids", prompt, "-n", N_NEW, "--greedy", "--json"))
    assert len(ours["ids"]) == N_NEW and len(set(ours["ids"])) >= 8, ours["ids"]
    r = subprocess.run(["node", os.path.join(HERE, "onnx_transformersjs_ids.mjs"), str(tmp_path / "models"),
                        "exported", prompt, str(N_NEW)], capture_output=True, text=True, cwd=HERE,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    js = json.loads(r.stdout.strip().splitlines()[-1])
    assert js == {"model_type": "llama", "ids": ours["ids"]}
