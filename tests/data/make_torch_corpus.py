#!/usr/bin/env python3
"""Writes tests/data/corrupt_torch/: one malicious or broken PyTorch
checkpoint per way the format can be abused or break, each with the error
lmio must give (EXPECTED: file, status, byte offset or -1 for "any", message
fragment). The zips are laid out as torch.save lays them out; the pickles
are assembled opcode by opcode, except the attacks, which come from Python's
own pickler exactly as an attacker would make them.

Stdlib only, deterministic: rerunning it reproduces the committed files."""
import builtins
import os
import pickle
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


# ---- a torch.save-shaped zip ----

def torch_zip(records, root="archive", compress=(), dup_central=None, zip64_central=False):
    """records: [(name, bytes)] -> (file bytes, {name: data offset}).
    dup_central names a member listed twice in the central directory;
    zip64_central moves every size and offset into zip64 extra fields, as
    a writer must for members past 4 GiB."""
    out, central, offs = bytearray(), bytearray(), {}
    for name, data in records:
        full = f"{root}/{name}".encode() if root is not None else name.encode()
        method = 8 if name in compress else 0
        payload = zlib.compress(data)[2:-4] if method else data
        start = len(out) + 30 + len(full) + 4
        pad = -start % 64
        extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        hdr_off = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, 0x0808, method, 0, 0, 0, 0, 0, len(full), len(extra))
        out += full + extra
        offs[name] = len(out)
        out += payload
        crc = zlib.crc32(data)
        out += struct.pack("<IIII", 0x08074B50, crc, len(payload), len(data))
        if zip64_central:
            x = struct.pack("<HHQQQ", 1, 24, len(data), len(payload), hdr_off)
            entry = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 45, 0x0808, method, 0, 0, crc, 0xFFFFFFFF,
                                0xFFFFFFFF, len(full), len(x), 0, 0, 0, 0, 0xFFFFFFFF) + full + x
        else:
            entry = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 0, 0x0808, method, 0, 0, crc, len(payload),
                                len(data), len(full), 0, 0, 0, 0, 0, hdr_off) + full
        central += entry * (2 if name == dup_central else 1)
    cd_off, n = len(out), len(records) + (dup_central is not None)
    out += central
    end64 = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 45, 0, 0, n, n, len(central), cd_off)
    out += struct.pack("<IIQI", 0x07064B50, 0, end64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), cd_off, 0)
    return bytes(out), offs


# ---- a pickle assembler (protocol 2, as torch.save writes) ----

def s(text):
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def i(v):
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"\x8a\x08" + struct.pack("<q", v)


def glob(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tup(*items):
    return b"(" + b"".join(items) + b"t"


def tensor(key="0", cls="FloatStorage", numel=6, offset=0, size=(2, 3), stride=(3, 1), extra=b""):
    pid = tup(s("storage"), glob("torch", cls), s(key), s("cpu"), i(numel)) + b"Q"
    return (glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + i(offset) + tup(*map(i, size)) +
            tup(*map(i, stride)) + b"\x89" + glob("collections", "OrderedDict") + b")R" + extra + b"tR")


def state_dict(*items):
    return b"\x80\x02}(" + b"".join(items) + b"u."


F32x6 = struct.pack("<6f", *range(6))
GOOD_PKL = state_dict(s("w") + tensor())


def ckpt(pkl, data=F32x6, extra=(), root="archive", **kw):
    recs = [("data.pkl", pkl), ("byteorder", b"little"), ("data/0", data), ("version", b"3\n")] + list(extra)
    return torch_zip(recs, root=root, **kw)


def at_pkl(pkl, needle, **kw):
    """A checkpoint and the file offset of needle inside its data.pkl."""
    f, offs = ckpt(pkl, **kw)
    return f, offs["data.pkl"] + pkl.index(needle)


class Reduce:
    """What an attacker pickles: REDUCE of any callable."""
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


CASES = []


def pcase(name, pkl, needle, status, frag):
    """A case whose error points at needle's first byte in data.pkl."""
    f, off = at_pkl(pkl, needle)
    case(name, f, status, off, frag)


def case(name, data, status, off, frag):
    CASES.append((name, data, status, off, frag))


def pickle_cases():
    marker = "/tmp/lmio-pwned"
    for name, obj, frag in [
        ("reduce_os_system", Reduce(os.system, "touch " + marker), "GLOBAL posix.system is not allowed"),
        ("reduce_builtins_eval", Reduce(builtins.eval, "__import__('os').system('touch " + marker + "')"),
         "GLOBAL __builtin__.eval is not allowed"),
        ("reduce_builtins_exec", Reduce(builtins.exec, "open('" + marker + "','w')"), "GLOBAL __builtin__.exec"),
        ("getattr_gadget", Reduce(getattr, Reduce(__import__, "os"), "system"), "GLOBAL __builtin__.getattr"),
    ]:
        pkl = pickle.dumps({"w": obj}, protocol=2)
        pcase(name, pkl, b"c", "UNSUPPORTED", frag)
    # any module at all, even torch's own classes
    pkl = b"\x80\x02" + glob("torch.nn.modules.linear", "Linear") + b")R."
    pcase("global_torch_module", pkl, b"c", "UNSUPPORTED", "GLOBAL torch.nn.modules.linear.Linear")
    pkl = b"\x80\x02" + glob("builtins", "eval") + s("1") + b"\x85R."
    pcase("global_py3_builtins", pkl, b"c", "UNSUPPORTED", "GLOBAL builtins.eval")
    p4 = pickle.dumps({"w": 1}, protocol=4)
    pcase("protocol4_frame", p4, b"\x95", "UNSUPPORTED", "FRAME (protocol 4)")
    pkl = b"\x80\x02" + s("os") + s("system") + b"\x93."
    pcase("stack_global", pkl, b"\x93", "UNSUPPORTED", "STACK_GLOBAL")
    pkl = b"\x80\x05\x96" + struct.pack("<Q", 3) + b"abc."
    pcase("protocol5_bytearray", pkl, b"\x96", "UNSUPPORTED", "BYTEARRAY8 (protocol 5)")
    pkl = b"\x80\x02(ios\nsystem\n" + s("true") + b"."
    pcase("inst_opcode", pkl, b"ios", "UNSUPPORTED", "opcode INST")
    pkl = b"\x80\x02" + glob("collections", "OrderedDict") + b")\x81."
    pcase("newobj", pkl, b"\x81", "UNSUPPORTED", "opcode NEWOBJ")
    pkl = b"\x80\x02}(" + s("w") + b"h\x07u."
    pcase("memo_get_unset", pkl, b"h\x07", "FORMAT", "BINGET of memo key 7, which was never stored")
    pkl = b"\x80\x02}r\xff\xff\xff\x7f."
    pcase("memo_put_huge", pkl, b"r", "LIMIT", "LONG_BINPUT key 2147483647")
    pkl = b"\x80\x02" + b"]" * 2000 + b"a" * 1999 + b"."
    case("deep_nesting", ckpt(pkl)[0], "LIMIT", -1, "nested deeper than 64")
    pkl = b"\x80\x02}(" + s("loop") + b"]q\x00h\x00au."
    case("list_contains_itself", ckpt(pkl)[0], "LIMIT", -1, "nested deeper than 64")
    pkl = GOOD_PKL[:-3]
    f, offs = ckpt(pkl)
    case("pickle_truncated", f, "FORMAT", offs["data.pkl"] + len(pkl), "pickle ends without STOP")
    pkl = b"\x80\x02X\xff\xff\xff\x00ab."
    pcase("string_past_end", pkl, b"X", "FORMAT", "BINUNICODE needs 16777215 more bytes")
    pkl = b"\x80\x02X\x02\x00\x00\x00\xc3\x28."
    f, offs = ckpt(pkl)
    case("string_not_utf8", f, "FORMAT", offs["data.pkl"] + 7, "is not UTF-8")
    pkl = b"\x80\x02\xff."
    pcase("not_an_opcode", pkl, b"\xff", "FORMAT", "byte 0xff is not a pickle opcode")
    pkl = b"\x80\x02\x8a\x09" + b"\x01" * 9 + b"."
    pcase("long1_too_wide", pkl, b"\x8a", "LIMIT", "LONG1 integer of 9 bytes")
    pkl = b"\x80\x02K\x01K\x02."
    pcase("stop_two_values", pkl, b".", "FORMAT", "STOP with 2 values")
    pkl = b"\x80\x02K\x01)R."
    pcase("reduce_an_int", pkl, b"R", "FORMAT", "REDUCE calls a int")
    pkl = b"\x80\x02" + tup(s("storage"), s("not a class"), s("0"), s("cpu"), i(6)) + b"Q."
    pcase("bad_persistent_id", pkl, b"Q", "FORMAT", "persistent id is not")
    pkl = b"\x80\x02" + glob("torch", "FloatStorage") + b")R."
    pcase("reduce_storage_class", pkl, b"R", "FORMAT", "which is not a function")
    # tensors that lie about their storage
    pkl = state_dict(s("w") + tensor(numel=1000))
    case("storage_claims_more", ckpt(pkl)[0], "FORMAT", -1, "holds 24 bytes; expected 4000")
    pkl = state_dict(s("w") + tensor(offset=4))
    case("view_past_storage", ckpt(pkl)[0], "FORMAT", -1, "view reaches element 9 of a storage of 6")
    pkl = state_dict(s("w") + tensor(key="7"))
    case("storage_record_missing", ckpt(pkl)[0], "FORMAT", -1, "has no record data/7")
    pkl = state_dict(s("w") + tensor(size=(1 << 40,), stride=(0,)))
    case("expanded_view_bomb", ckpt(pkl)[0], "LIMIT", -1, "overlapping strides")
    pkl = state_dict(s("w") + tensor(size=(1,) * 17, stride=(1,) * 17, numel=1))
    case("seventeen_dims", ckpt(pkl, data=F32x6[:4])[0], "LIMIT", -1, "17 dimensions")
    pkl = state_dict(s("w") + tensor(size=(5,), stride=(1 << 62,)))
    case("stride_overflow", ckpt(pkl)[0], "FORMAT", -1, "size and stride overflow")
    meta = b"}" + s("conj") + b"\x88s"
    pkl = state_dict(s("w") + tensor(extra=meta))
    case("conj_bit_metadata", ckpt(pkl)[0], "UNSUPPORTED", -1, "conjugate or negative bit")
    pkl = b"\x80\x02}(" + tup(i(1), i(2)) + i(3) + b"u."
    case("tuple_key", ckpt(pkl)[0], "FORMAT", -1, "dict key is a tuple")
    pkl = state_dict(s("w") + tensor() + s("w") + tensor())
    case("duplicate_tensor", ckpt(pkl)[0], "DUPLICATE", -1, "tensor \"w\" appears twice")
    pkl = state_dict(s("__metadata__") + tensor())
    case("reserved_name", ckpt(pkl)[0], "FORMAT", -1, "other than __metadata__")


def zip_cases():
    good, offs = ckpt(GOOD_PKL)
    cd_off = struct.unpack_from("<I", good, len(good) - 6)[0]
    case("tiny_file", b"PK\x03\x04\0\0\0\0\0\0", "FORMAT", 0, "expected at least 22")
    half = good[:len(good) // 2]
    case("zip_truncated", half, "FORMAT", len(half) - 22, "no zip end record")
    bad = bytearray(good)
    struct.pack_into("<Q", bad, len(bad) - 22 - 20 - 56 + 48, 1 << 40)
    case("central_dir_past_end", bytes(bad), "FORMAT", -1, "runs past the end records")
    bad = bytearray(good)
    struct.pack_into("<QQ", bad, len(bad) - 22 - 20 - 56 + 24, 1 << 50, 1 << 50)
    case("member_count_huge", bytes(bad), "FORMAT", -1, "claims 1125899906842624 members")
    bad = bytearray(good)
    struct.pack_into("<Q", bad, len(bad) - 22 - 20 + 8, 1 << 40)
    case("zip64_locator_outside", bytes(bad), "FORMAT", -1, "zip64 locator points to offset 1099511627776")
    # members whose sizes or headers lie
    bad = bytearray(good)
    struct.pack_into("<II", bad, cd_off + 20, 1 << 30, 1 << 30)
    case("member_size_past_file", bytes(bad), "FORMAT", -1, "claims 1073741824 bytes")
    bad = bytearray(good)
    struct.pack_into("<I", bad, cd_off + 42, len(good) + 100)
    case("local_header_outside", bytes(bad), "FORMAT", -1, "local header offset")
    # one member's bytes listed twice: the overlapping-members zip bomb
    f, _ = torch_zip([("data.pkl", GOOD_PKL), ("data/0", F32x6)], dup_central="data/0")
    case("members_overlap", f, "FORMAT", -1, "overlap; expected disjoint members")
    bad = bytearray(good)
    pos = bad.index(b"archive/data/0")
    bad[pos:pos + 14] = b"archive/data/9"
    case("local_name_differs", bytes(bad), "FORMAT", -1, "names another file")
    f, _ = torch_zip([("archive/data.pkl", GOOD_PKL), ("other/data/0", F32x6)], root=None)
    case("member_outside_root", f, "FORMAT", -1, "outside the archive folder \"archive\"")
    f, _ = torch_zip([("data.pkl", GOOD_PKL)], root=None)
    case("no_folder", f, "FORMAT", -1, "is not in a folder")
    f, _ = torch_zip([("data.pkl", GOOD_PKL), ("data/0", F32x6), ("data/0", F32x6)])
    case("duplicate_member", f, "FORMAT", -1, "appears twice")
    f, _ = torch_zip([("data/0", F32x6), ("version", b"3\n")])
    case("no_data_pkl", f, "FORMAT", 0, "without archive/data.pkl")
    case("torchscript_archive", ckpt(GOOD_PKL, extra=[("constants.pkl", b"\x80\x02).")])[0], "UNSUPPORTED", 0,
         "TorchScript archive")
    f, _ = torch_zip([("data.pkl", GOOD_PKL), ("byteorder", b"big"), ("data/0", F32x6)])
    case("big_endian", f, "UNSUPPORTED", -1, "byteorder \"big\"")
    f, _ = torch_zip([("data.pkl", GOOD_PKL), ("data/0", F32x6), ("version", b"99\n")])
    case("version_too_new", f, "UNSUPPORTED", -1, "archive version \"99\"; expected 1 to 10")
    case("compressed_pickle", ckpt(GOOD_PKL, compress=("data.pkl",))[0], "UNSUPPORTED", -1, "data.pkl is compressed")
    case("compressed_storage", ckpt(GOOD_PKL, compress=("data/0",))[0], "UNSUPPORTED", -1,
         "record data/0 is compressed")


def legacy(pkl, storages, little=True, tail=b""):
    """torch.save(..., _use_new_zipfile_serialization=False)'s stream."""
    magic = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."
    info = b"\x80\x02}(" + s("protocol_version") + i(1001) + s("little_endian") + (b"\x88" if little else b"\x89") + b"u."
    keys = b"\x80\x02]" + b"".join(s(k) + b"a" for k, _ in storages) + b"."
    body = b"".join(struct.pack("<Q", n) + d for (_, d), n in zip(storages, [len(d) // 4 for _, d in storages]))
    return magic + b"\x80\x02M\xe9\x03." + info + pkl + keys + body + tail


def legacy_cases():
    pkl = state_dict(s("w") + tensor(key="0"))
    case("legacy_big_endian", legacy(pkl, [("0", F32x6)], little=False), "UNSUPPORTED", -1, "little_endian is not True")
    case("legacy_trailing_bytes", legacy(pkl, [("0", F32x6)], tail=b"junk"), "FORMAT", -1, "4 bytes follow the last storage")
    f = legacy(pkl, [("0", F32x6)])
    case("legacy_truncated", f[:-8], "FORMAT", -1, "file ends inside storage \"0\" (truncated?)")
    case("legacy_unknown_storage", legacy(pkl, [("0", F32x6), ("1", F32x6)]), "FORMAT", -1, "is used by no tensor")


def good_files():
    """Checkpoints test_torch.c reads back value by value: a nested training
    checkpoint with a transposed view, a view sharing its storage at an
    offset, a uint16 tensor (_rebuild_tensor_v3), a Parameter and plain
    values; and the same weights as the legacy stream."""
    u16 = (glob("torch._utils", "_rebuild_tensor_v3") + b"(" +
           tup(s("storage"), glob("torch.storage", "UntypedStorage"), s("1"), s("cpu"), i(6)) + b"Q" + i(0) +
           tup(i(3)) + tup(i(1)) + b"\x89" + glob("collections", "OrderedDict") + b")R" + glob("torch", "uint16") +
           b"tR")
    param = glob("torch._utils", "_rebuild_parameter") + b"(" + tensor(size=(6,), stride=(1,)) + b"\x88" + \
        glob("collections", "OrderedDict") + b")Rt" + b"R"
    model = (b"}(" + s("w") + tensor() + s("w_t") + tensor(size=(3, 2), stride=(1, 3)) +
             s("row1") + tensor(offset=3, size=(3,), stride=(1,)) + s("u16") + u16 + s("p") + param + b"u")
    opt = b"}(" + s("lr") + b"G" + struct.pack(">d", 0.001) + s("betas") + tup(b"G" + struct.pack(">d", 0.9)) + \
        s("state") + b"}(" + i(0) + b"}(" + s("step") + i(7) + b"uu" + b"u"
    pkl = b"\x80\x02}(" + s("model") + model + s("optimizer") + opt + s("step") + i(5) + s("name") + s("run") + \
        s("done") + b"\x88" + s("none") + b"N" + s("big") + i(1 << 40) + s("dtype") + glob("torch", "float16") + b"u."
    u16_bytes = struct.pack("<3H", 1, 2, 65535)
    files = {"checkpoint.pt": ckpt(pkl, extra=[("data/1", u16_bytes)])[0]}
    sd = state_dict(s("w") + tensor() + s("w_t") + tensor(size=(3, 2), stride=(1, 3)) +
                    s("row1") + tensor(offset=3, size=(3,), stride=(1,)))
    files["legacy.pt"] = legacy(sd, [("0", F32x6)])
    files["zip64_extras.pt"] = ckpt(sd, zip64_central=True)[0]
    return files


def main():
    out = os.path.join(sys.argv[1] if len(sys.argv) > 1 else HERE, "corrupt_torch")
    os.makedirs(out, exist_ok=True)
    pickle_cases()
    zip_cases()
    legacy_cases()
    lines = ["# file\tstatus\toffset (-1: any)\tmessage fragment"]
    for name, data, status, off, frag in CASES:
        fn = name + ".pt"
        with open(os.path.join(out, fn), "wb") as f:
            f.write(data)
        lines.append(f"{fn}\t{status}\t{off}\t{frag}")
    # good files beside them, so the replay proves the bad ones fail for their fault
    with open(os.path.join(out, "good.pt"), "wb") as f:
        f.write(ckpt(GOOD_PKL)[0])
    good = os.path.join(os.path.dirname(out), "good_torch")
    os.makedirs(good, exist_ok=True)
    for name, data in good_files().items():
        with open(os.path.join(good, name), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "EXPECTED"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{len(CASES)} corrupt checkpoints in {out}")


if __name__ == "__main__":
    main()
