"""Times lmio and its peers side by side on one GPT-2-124M-shaped state dict
(f32, ~500 MB) in one run and prints medians and ratios.
usage: bench.py LMIO_BENCH_BINARY OUTDIR [RUNS]"""
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def gpt2_124m():
    """GPT-2 small's tensor names and shapes (Conv1D weights stored [in, out])."""
    g = torch.Generator().manual_seed(0)
    V, P, C, L = 50257, 1024, 768, 12
    sd = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (P, C)}
    for i in range(L):
        p = f"transformer.h.{i}."
        sd.update({p + "ln_1.weight": (C,), p + "ln_1.bias": (C,), p + "attn.c_attn.weight": (C, 3 * C),
                   p + "attn.c_attn.bias": (3 * C,), p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
                   p + "ln_2.weight": (C,), p + "ln_2.bias": (C,), p + "mlp.c_fc.weight": (C, 4 * C),
                   p + "mlp.c_fc.bias": (4 * C,), p + "mlp.c_proj.weight": (4 * C, C), p + "mlp.c_proj.bias": (C,)})
    sd["transformer.ln_f.weight"] = (C,)
    sd["transformer.ln_f.bias"] = (C,)
    return {k: torch.randn(*s, generator=g) * 0.02 for k, s in sd.items()}


class LmioSaver:
    """lmio_safetensors_save through ctypes on the very tensors save_file
    gets (borrowed, not copied), so the two saves run in one process on the
    same memory and can be interleaved run by run: on a shared machine load
    changes from second to second, and timing one after the other would
    compare the load, not the writers."""

    class Opts(ctypes.Structure):
        _fields_ = [("struct_size", ctypes.c_size_t), ("dtype", ctypes.c_int), ("durable", ctypes.c_int),
                    ("progress", ctypes.c_void_p), ("progress_ctx", ctypes.c_void_p)]

    def __init__(self, lib_path, sd, metadata):
        self.lib = ctypes.CDLL(lib_path)
        P = ctypes.c_void_p
        self.lib.lmio_statedict_create.argtypes = [ctypes.POINTER(P), ctypes.c_void_p]
        self.lib.lmio_statedict_add.argtypes = [P, ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                                                ctypes.POINTER(ctypes.c_uint64), ctypes.c_void_p, ctypes.c_uint64,
                                                ctypes.c_int, ctypes.c_void_p]
        self.lib.lmio_metadata_set.argtypes = [P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
        self.lib.lmio_safetensors_save.argtypes = [P, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p]
        self.sd = P()
        assert self.lib.lmio_statedict_create(ctypes.byref(self.sd), None) == 0
        f32 = 11  # LMIO_DTYPE_F32
        for k, v in sd.items():
            assert v.dtype == torch.float32 and v.is_contiguous()
            shape = (ctypes.c_uint64 * max(1, v.dim()))(*v.shape)
            assert self.lib.lmio_statedict_add(self.sd, k.encode(), f32, v.dim(), shape, v.data_ptr(),
                                               v.numel() * 4, 0, None) == 0  # LMIO_BORROW
        for k, v in metadata.items():
            self.lib.lmio_metadata_set(self.sd, k.encode(), v.encode(), None)

    def save(self, path, durable):
        o = self.Opts(ctypes.sizeof(self.Opts), -1, 1 if durable else 0, None, None)
        assert self.lib.lmio_safetensors_save(self.sd, os.fsencode(path), ctypes.byref(o), None) == 0


def med_pair(fa, fb, runs, setup_a, setup_b):
    """Medians of fa and fb timed alternately, run by run."""
    ta, tb = [], []
    for _ in range(runs):
        for f, setup, ts in ((fa, setup_a, ta), (fb, setup_b, tb)):
            setup()
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def med(fn, runs, setup=None):
    ts = []
    for _ in range(runs):
        if setup:
            setup()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    bench_bin, outdir = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    sd = gpt2_124m()
    nbytes = sum(t.numel() * t.element_size() for t in sd.values())
    nparams = sum(t.numel() for t in sd.values())
    src = os.path.join(outdir, "ref.safetensors")
    pt = os.path.join(outdir, "ref.pt")
    dst = os.path.join(outdir, "py.safetensors")
    cp_dst = os.path.join(outdir, "cp.safetensors")
    save_file(sd, src, metadata={"format": "pt"})
    torch.save(sd, pt)

    def rm(p):
        # Before every timed write: remove the old file and flush dirty
        # pages, so no writer pays for an earlier one's writeback.
        def setup():
            if os.path.exists(p):
                os.remove(p)
            os.sync()
        return setup

    r = {}
    lm_dst = os.path.join(outdir, "lmio-inproc.safetensors")
    saver = LmioSaver(os.path.join(os.path.dirname(bench_bin), "liblmio.so"), sd, {"format": "pt"})
    r["py_save"], r["lm_save"] = med_pair(lambda: save_file(sd, dst, metadata={"format": "pt"}),
                                          lambda: saver.save(lm_dst, False), runs, rm(dst), rm(lm_dst))
    with open(dst, "rb") as a, open(lm_dst, "rb") as b:
        r["identical"] = a.read() == b.read()
    r["py_load"] = med(lambda: load_file(src), runs)

    def safe_open_all():
        with safe_open(src, framework="pt") as f:
            for k in f.keys():
                f.get_tensor(k)
    r["py_safe_open"] = med(safe_open_all, runs)

    def safe_open_only():
        with safe_open(src, framework="pt") as f:
            f.keys()
    r["torch_save"] = med(lambda: torch.save(sd, pt), runs, rm(pt))
    r["torch_load"] = med(lambda: torch.load(pt, weights_only=True), runs)
    r["torch_load_mmap"] = med(lambda: torch.load(pt, weights_only=True, mmap=True), runs)

    def torch_load_touch():
        # the analogue of lmio's open + read every byte: mmap'd tensors summed
        for t in torch.load(pt, weights_only=True, mmap=True).values():
            t.view(torch.int64).sum()
    r["torch_load_mmap_read"] = med(torch_load_touch, runs)
    r["cp"] = med(lambda: subprocess.run(["cp", src, cp_dst], check=True), runs, rm(cp_dst))

    def save_fsync():
        # save_file has no durability option: the same durability as lmio's
        # durable save is save_file, then fsync of the file and its directory
        save_file(sd, dst, metadata={"format": "pt"})
        for p, flags in ((dst, os.O_RDONLY), (outdir, os.O_RDONLY | os.O_DIRECTORY)):
            fd = os.open(p, flags)
            os.fsync(fd)
            os.close(fd)
    r["py_save_durable"], r["lm_save_durable"] = med_pair(save_fsync, lambda: saver.save(lm_dst, True), runs,
                                                          rm(dst), rm(lm_dst))
    os.remove(lm_dst)

    def load_read():
        for t in load_file(src).values():
            t.view(torch.int64).sum()
    r["py_load_read"] = med(load_read, runs)

    def py_convert_bf16():
        out = {k: v.to(torch.bfloat16) for k, v in load_file(src).items()}
        save_file(out, bf16_dst, metadata={"format": "pt"})
    bf16_dst = os.path.join(outdir, "py-bf16.safetensors")
    r["py_convert_bf16"] = med(py_convert_bf16, runs, rm(bf16_dst))

    # a header of 1,200 tensors (a deep model's many small tensors)
    many = os.path.join(outdir, "many.safetensors")
    save_file({f"model.layers.{i // 12}.block.{i % 12}.weight": torch.zeros(8, 8) for i in range(1200)}, many,
              metadata={"format": "pt"})

    def open_many():
        with safe_open(many, framework="pt") as f:
            f.keys()
    r["py_open_many"] = med(open_many, max(runs, 50))
    r["py_open_only"] = med(safe_open_only, max(runs, 50))

    def cp_sync():
        subprocess.run(["cp", src, cp_dst], check=True)
        fd = os.open(cp_dst, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    r["cp_fsync"] = med(cp_sync, runs, rm(cp_dst))
    os.sync()
    big = torch.randn(1 << 26)
    r["torch_f16_gelems"] = (1 << 26) / med(lambda: big.to(torch.float16), runs) / 1e9
    r["torch_bf16_gelems"] = (1 << 26) / med(lambda: big.to(torch.bfloat16), runs) / 1e9
    del big

    out = subprocess.run([bench_bin, src, outdir, str(runs)], check=True, capture_output=True, text=True).stdout
    lm = json.loads(out)
    out = subprocess.run([bench_bin, "torch", src, pt, outdir, str(runs)], check=True, capture_output=True,
                         text=True).stdout
    lm.update(json.loads(out))
    for key, path in (("open_gpt2", src), ("open_many", many)):
        out = subprocess.run([bench_bin, "open", path, "500"], check=True, capture_output=True, text=True).stdout
        lm[key] = json.loads(out)["open"]
    lmio_bin = os.path.join(outdir, "lmio.bin")
    r["torch_load_lmio_bin"] = med(lambda: torch.load(lmio_bin, weights_only=True), runs)
    if os.path.exists(lmio_bin):
        os.remove(lmio_bin)
    for p in (src, pt, dst, cp_dst, bf16_dst, many):
        if os.path.exists(p):
            os.remove(p)

    print(f"GPT-2-124M-shaped state dict: {len(sd)} tensors, {nparams / 1e6:.1f} M parameters, "
          f"{nbytes / 1e6:.0f} MB f32; median of {runs} runs; hot page cache; lmio kernels: {lm['simd']}; "
          f"lmio's and save_file's files {'identical' if r['identical'] else 'DIFFER'}")
    # every lmio figure beside its peer, measured in this run: (lmio row, lmio time, peer row, peer time)
    rows = [
        ("save: lmio (no fsync), same tensors, interleaved", r["lm_save"], "safetensors save_file (no fsync)",
         r["py_save"]),
        ("", r["lm_save"], "cp of the same bytes", r["cp"]),
        ("save, durable: lmio (fsync file + dir, rename)", r["lm_save_durable"],
         "save_file + fsync file + dir", r["py_save_durable"]),
        ("", r["lm_save_durable"], "cp + fsync", r["cp_fsync"]),
        ("save: lmio_bench (tensors copied into its heap)", lm["save"], "safetensors save_file (no fsync)",
         r["py_save"]),
        ("open + validate header, 148 tensors: lmio", lm["open_gpt2"], "safe_open + keys()", r["py_open_only"]),
        ("open + validate header, 1,200 tensors: lmio", lm["open_many"], "safe_open + keys()", r["py_open_many"]),
        ("load, zero-copy views of all tensors: lmio open", lm["open"], "safetensors load_file", r["py_load"]),
        ("", lm["open"], "safe_open + get_tensor (all)", r["py_safe_open"]),
        ("", lm["open"], "torch.load(weights_only=True)", r["torch_load"]),
        ("load + read every byte: lmio", lm["open_read_all"], "load_file + read every byte", r["py_load_read"]),
        ("convert file f32 -> bf16: lmio", lm["convert_file_bf16"], "load_file + .to(bf16) + save_file",
         r["py_convert_bf16"]),
        ("save .bin: lmio (no fsync)", lm["save_bin"], "torch.save", r["torch_save"]),
        ("load .bin (torch.save's): lmio open, zero-copy", lm["open_bin"], "torch.load(weights_only=True)",
         r["torch_load"]),
        ("", lm["open_bin"], "torch.load(weights_only=True, mmap=True)", r["torch_load_mmap"]),
        ("load .bin + read every byte: lmio", lm["open_read_bin"], "torch.load(mmap=True) + read",
         r["torch_load_mmap_read"]),
        ("load lmio's .bin: torch.load (vs its own file)", r["torch_load"], "torch.load of torch.save's file",
         r["torch_load_lmio_bin"]),
    ]
    print(f"{'lmio':50s} {'time':>10s}   {'peer, same run':42s} {'time':>10s}   lmio is")
    t = lambda s: f"{s * 1e3:7.3f} ms" if s < 0.01 else f"{s * 1e3:7.1f} ms"
    for name, ours, peer, theirs in rows:
        print(f"{name:50s} {t(ours) if name else '':>10s}   {peer:42s} {t(theirs):>10s}   {theirs / ours:6.2f}x as fast")
    for kind in ("f16", "bf16"):
        ours, theirs = lm[kind + "_gelems"], r["torch_" + kind + "_gelems"]
        print(f"{'f32 -> ' + kind + ', one core: lmio':50s} {ours:6.2f} Gel/s   {'torch .to(), one thread':42s} "
              f"{theirs:6.2f} Gel/s   {ours / theirs:6.2f}x as fast (portable C: {lm[kind + '_gelems_portable']:.2f})")


if __name__ == "__main__":
    main()
