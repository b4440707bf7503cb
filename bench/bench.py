"""Times lmio and its peers side by side on one GPT-2-124M-shaped state dict
(f32, ~500 MB) in one run and prints medians and ratios.
usage: bench.py LMIO_BENCH_BINARY OUTDIR [RUNS]"""
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
    r["py_save"] = med(lambda: save_file(sd, dst, metadata={"format": "pt"}), runs, rm(dst))
    r["py_load"] = med(lambda: load_file(src), runs)

    def safe_open_all():
        with safe_open(src, framework="pt") as f:
            for k in f.keys():
                f.get_tensor(k)
    r["py_safe_open"] = med(safe_open_all, runs)

    def safe_open_only():
        with safe_open(src, framework="pt") as f:
            f.keys()
    r["py_open_only"] = med(safe_open_only, runs)
    r["torch_save"] = med(lambda: torch.save(sd, pt), runs, rm(pt))
    r["torch_load"] = med(lambda: torch.load(pt, weights_only=True), runs)
    r["torch_load_mmap"] = med(lambda: torch.load(pt, weights_only=True, mmap=True), runs)

    def torch_load_touch():
        # the analogue of lmio's open + read every byte: mmap'd tensors summed
        for t in torch.load(pt, weights_only=True, mmap=True).values():
            t.view(torch.int64).sum()
    r["torch_load_mmap_read"] = med(torch_load_touch, runs)
    r["cp"] = med(lambda: subprocess.run(["cp", src, cp_dst], check=True), runs, rm(cp_dst))

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
    lmio_bin = os.path.join(outdir, "lmio.bin")
    r["torch_load_lmio_bin"] = med(lambda: torch.load(lmio_bin, weights_only=True), runs)
    if os.path.exists(lmio_bin):
        os.remove(lmio_bin)
    for p in (src, pt, dst, cp_dst):
        if os.path.exists(p):
            os.remove(p)

    ms = lambda s: f"{s * 1e3:9.2f} ms"
    print(f"GPT-2-124M-shaped state dict: {len(sd)} tensors, {nparams / 1e6:.1f} M parameters, "
          f"{nbytes / 1e6:.0f} MB f32; median of {runs} runs; hot page cache; lmio kernels: {lm['simd']}")
    print(f"{'operation':58s} {'time':>12s}   ratio")
    fast = lambda peer, ours: f"lmio {peer / ours:.2f}x as fast"
    rows = [
        ("save: lmio (no fsync)", lm["save"], None),
        ("save: safetensors save_file (no fsync)", r["py_save"], fast(r["py_save"], lm["save"]) + " (target 2x)"),
        ("save: torch.save", r["torch_save"], fast(r["torch_save"], lm["save"])),
        ("save: cp of the same bytes (physical baseline)", r["cp"],
         f"lmio takes {lm['save'] / r['cp']:.2f}x cp's time (target <= 1.3x)"),
        ("save: lmio durable (fsync file + dir, rename)", lm["save_durable"], None),
        ("save: cp + fsync", r["cp_fsync"], f"lmio durable takes {lm['save_durable'] / r['cp_fsync']:.2f}x its time"),
        ("open + validate header: lmio (mmap)", lm["open"], f"target < 1 ms: {'met' if lm['open'] < 1e-3 else 'NOT met'}"),
        ("open + parse header: safetensors safe_open + keys()", r["py_open_only"], fast(r["py_open_only"], lm["open"])),
        ("load, zero-copy views of all tensors: lmio open", lm["open"], None),
        ("load: safetensors load_file", r["py_load"], fast(r["py_load"], lm["open"])),
        ("load: safe_open + get_tensor (all)", r["py_safe_open"], fast(r["py_safe_open"], lm["open"])),
        ("load: torch.load(weights_only=True) (copies)", r["torch_load"], fast(r["torch_load"], lm["open"])),
        ("lmio open + read every byte (memory bandwidth)", lm["open_read_all"],
         f"{nbytes / lm['open_read_all'] / 1e9:.1f} GB/s"),
        ("convert file f32 -> bf16: lmio convert", lm["convert_file_bf16"], None),
        ("save .bin: lmio (no fsync)", lm["save_bin"], None),
        ("save .bin: torch.save", r["torch_save"], fast(r["torch_save"], lm["save_bin"])),
        ("load .bin torch.save wrote: lmio open (zero-copy views)", lm["open_bin"], None),
        ("load .bin: torch.load(weights_only=True) (copies)", r["torch_load"], fast(r["torch_load"], lm["open_bin"])),
        ("load .bin: torch.load(weights_only=True, mmap=True)", r["torch_load_mmap"],
         fast(r["torch_load_mmap"], lm["open_bin"])),
        ("load .bin + read every byte: lmio", lm["open_read_bin"], None),
        ("load .bin + read every byte: torch.load(mmap=True)", r["torch_load_mmap_read"],
         fast(r["torch_load_mmap_read"], lm["open_read_bin"])),
        ("load lmio's .bin: torch.load(weights_only=True)", r["torch_load_lmio_bin"],
         f"{r['torch_load_lmio_bin'] / r['torch_load']:.2f}x the time for torch.save's own file"),
    ]
    for name, t, note in rows:
        print(f"{name:58s} {ms(t)}   {note or ''}")
    print(f"{'f32 -> f16, one core: lmio':58s} {lm['f16_gelems']:6.2f} Gelem/s   "
          f"target >= 2: {'met' if lm['f16_gelems'] >= 2 else 'NOT met'}; torch {r['torch_f16_gelems']:.2f}; "
          f"portable {lm['f16_gelems_portable']:.2f}")
    print(f"{'f32 -> bf16, one core: lmio':58s} {lm['bf16_gelems']:6.2f} Gelem/s   "
          f"target >= 2: {'met' if lm['bf16_gelems'] >= 2 else 'NOT met'}; torch {r['torch_bf16_gelems']:.2f}; "
          f"portable {lm['bf16_gelems_portable']:.2f}")


if __name__ == "__main__":
    main()
