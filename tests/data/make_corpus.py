#!/usr/bin/env python3
"""Writes tests/data/{good,corrupt}/: valid edge cases and one malformed
safetensors file per way the format can break, each with the error lmio must
give (corrupt/EXPECTED: file, status, byte offset, message fragment).

Stdlib only, deterministic: rerunning it reproduces the committed files."""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def st(header, data=b"", pad=True, raw_header=None):
    """A safetensors file from a header dict (or raw header bytes)."""
    h = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    if pad and raw_header is None:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def t(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


GOOD = {
    "empty.safetensors": st({}),
    "metadata_only.safetensors": st({"__metadata__": {"format": "pt", "note": "no tensors"}}),
    "scalar.safetensors": st({"s": t("I32", [], 0, 4)}, struct.pack("<i", -7)),
    "zero_size.safetensors": st({"z": t("F32", [2, 0], 0, 0), "w": t("F32", [0], 0, 0), "a": t("U8", [3], 0, 3)}, b"abc"),
    "whitespace_header.safetensors": st(None, b"\x01\x02", raw_header=b'\t\n {"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}} \r\t\n'),
    "unordered_offsets.safetensors": st({"b": t("U8", [2], 2, 4), "a": t("U8", [2], 0, 2)}, b"\x00\x01\x02\x03"),
    "f4_even.safetensors": st({"q": t("F4", [1, 2], 0, 1)}, b"\x21"),
    "all_dtypes.safetensors": None,  # filled below
}

# Every dtype, two elements each (F4 needs an even count, F6 four).
_dt = [("BOOL", 1), ("U8", 1), ("I8", 1), ("I16", 2), ("U16", 2), ("I32", 4), ("U32", 4), ("I64", 8),
       ("U64", 8), ("F16", 2), ("BF16", 2), ("F32", 4), ("F64", 8), ("C64", 8), ("F8_E4M3", 1),
       ("F8_E5M2", 1), ("F8_E8M0", 1), ("F8_E4M3FNUZ", 1), ("F8_E5M2FNUZ", 1)]
_hdr, _data = {}, b""
for name, size in _dt:
    n = 2 * size
    _hdr["t_" + name.lower()] = t(name, [2], len(_data), len(_data) + n)
    _data += bytes((i * 37 + len(_data)) & 0xFF for i in range(n))
for name, shape, n in [("F4", [4], 2), ("F6_E2M3", [4], 3), ("F6_E3M2", [8], 6)]:
    _hdr["t_" + name.lower()] = t(name, shape, len(_data), len(_data) + n)
    _data += bytes(range(n))
GOOD["all_dtypes.safetensors"] = st(_hdr, _data)

F32x6 = struct.pack("<6f", *range(6))
CORRUPT = [
    # name, bytes, status, offset, message fragment
    ("empty_file", b"", "FORMAT", 0, "expected at least 8"),
    ("seven_bytes", b"\x08\x00\x00\x00\x00\x00\x00", "FORMAT", 0, "expected at least 8"),
    ("header_len_1tb", struct.pack("<Q", 1 << 40) + b"{}" + b" " * 6, "LIMIT", 0, "exceeds the 100000000-byte cap"),
    ("header_len_max_u64", struct.pack("<Q", 2**64 - 1) + b"{}", "LIMIT", 0, "exceeds the 100000000-byte cap"),
    ("header_len_past_eof", struct.pack("<Q", 1000) + b"{}" + b" " * 6, "FORMAT", 0, "exceeds file size 16; expected <= 8"),
    ("git_lfs_pointer", b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 548105171\n", "FORMAT", 0, "Git LFS pointer"),
    ("header_len_zero", struct.pack("<Q", 0), "FORMAT", 8, "invalid JSON"),
    ("bad_utf8", st(None, raw_header=b'{"\xff\xfe":{}}  '), "FORMAT", 10, "not valid UTF-8"),
    ("overlong_utf8", st(None, raw_header=b'{"\xc0\xaf":{}}  '), "FORMAT", 10, "not valid UTF-8"),
    ("truncated_json", st(None, raw_header=b'{"a":{"dtype":'), "FORMAT", -2, "invalid JSON"),
    ("json_trailing_garbage", st(None, raw_header=b'{} xyz  '), "FORMAT", -2, "invalid JSON"),
    ("nul_in_header", st(None, raw_header=b'{"a\x00":1}     '), "FORMAT", -2, "invalid JSON"),
    ("header_is_array", st(None, raw_header=b'[1,2,3] '), "FORMAT", 8, "expected a JSON object"),
    ("duplicate_tensor", st(None, F32x6, raw_header=b'{"w":{"dtype":"F32","shape":[6],"data_offsets":[0,24]},"w":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}'), "FORMAT", -2, "duplicate"),
    ("duplicate_metadata_key", st(None, raw_header=b'{"__metadata__":{"k":"a","k":"b"}}     '), "FORMAT", -2, "duplicate"),
    ("entry_not_object", st({"w": 5}), "FORMAT", 8, "entry is not an object"),
    ("unknown_field", st({"w": dict(t("F32", [6], 0, 24), extra=1)}, F32x6), "FORMAT", 8, "unknown field \"extra\""),
    ("missing_dtype", st({"w": {"shape": [6], "data_offsets": [0, 24]}}, F32x6), "FORMAT", 8, "missing \"dtype\""),
    ("missing_shape", st({"w": {"dtype": "F32", "data_offsets": [0, 24]}}, F32x6), "FORMAT", 8, "missing \"shape\""),
    ("missing_offsets", st({"w": {"dtype": "F32", "shape": [6]}}, F32x6), "FORMAT", 8, "missing \"data_offsets\""),
    ("unknown_dtype", st({"w": t("F128", [6], 0, 24)}, F32x6), "FORMAT", 8, "unknown dtype \"F128\""),
    ("lowercase_dtype", st({"w": t("f32", [6], 0, 24)}, F32x6), "FORMAT", 8, "unknown dtype \"f32\""),
    ("dtype_not_string", st({"w": t(32, [6], 0, 24)}, F32x6), "FORMAT", 8, "dtype is not a string"),
    ("shape_negative", st({"w": t("F32", [-6], 0, 24)}, F32x6), "FORMAT", 8, "shape[0] is not a non-negative integer"),
    ("shape_float", st({"w": t("F32", [6.0], 0, 24)}, F32x6), "FORMAT", 8, "shape[0] is not a non-negative integer"),
    ("shape_not_array", st({"w": t("F32", 6, 0, 24)}, F32x6), "FORMAT", 8, "shape is not an array"),
    ("shape_17_dims", st({"w": t("F32", [1] * 17, 0, 4)}, F32x6[:4]), "LIMIT", 8, "17 dimensions; expected at most 16"),
    ("offsets_three", st({"w": {"dtype": "F32", "shape": [6], "data_offsets": [0, 12, 24]}}, F32x6), "FORMAT", 8, "data_offsets is not two non-negative integers"),
    ("offsets_negative", st({"w": t("F32", [6], -24, 0)}, F32x6), "FORMAT", 8, "data_offsets is not two non-negative integers"),
    ("offsets_gap_at_start", st({"w": t("F32", [6], 4, 28)}, b"\0" * 4 + F32x6), "FORMAT", 8, "leave a gap; expected it to begin at 0"),
    ("offsets_gap_between", st({"a": t("F32", [3], 0, 12), "b": t("F32", [2], 16, 24)}, F32x6), "FORMAT", 8, "leave a gap; expected it to begin at 12"),
    ("offsets_overlap", st({"a": t("F32", [4], 0, 16), "b": t("F32", [4], 8, 24)}, F32x6), "FORMAT", 8, "overlap the previous tensor"),
    ("offsets_reversed", st({"w": t("F32", [0], 24, 0)}, F32x6), "FORMAT", 8, "end before they begin"),
    ("json_attack_same_range", st({f"t{i}": t("F32", [4], 0, 16) for i in range(10)}, F32x6[:16]), "FORMAT", 8, "overlap the previous tensor"),
    ("size_mismatch", st({"w": t("I32", [2, 2], 0, 4)}, b"\0" * 4), "FORMAT", 8, "hold 4 bytes; expected 16 (I32 [2, 2])"),
    ("numel_overflow", st({"w": t("U8", [2**32, 2**32, 2**32], 0, 8)}, b"\0" * 8), "FORMAT", 8, "overflows the element count"),
    ("bytes_overflow", st({"w": t("F64", [2**62], 0, 8)}, b"\0" * 8), "FORMAT", 8, "overflows the byte size"),
    ("f4_odd_count", st({"q": t("F4", [3], 0, 2)}, b"\0\0"), "FORMAT", 8, "not a whole number of bytes"),
    ("truncated_data", st({"w": t("F32", [6], 0, 24)}, F32x6[:10]), "FORMAT", -3, "file ends inside tensor \"w\""),
    ("trailing_bytes", st({"w": t("F32", [6], 0, 24)}, F32x6 + b"polyglot"), "FORMAT", -4, "8 bytes follow the last tensor"),
    ("metadata_not_object", st({"__metadata__": ["format", "pt"]}), "FORMAT", 8, "__metadata__ is not an object"),
    ("metadata_int_value", st({"__metadata__": {"unquoted_int": 0}}), "FORMAT", 8, "non-string value"),
    ("integer_too_big", st(None, raw_header=b'{"w":{"dtype":"U8","shape":[99999999999999999999999],"data_offsets":[0,1]}}'), "FORMAT", -2, "invalid JSON"),
    # read as the GGUF it announces: its error is a GGUF reader's
    ("gguf_magic", b"GGUF\x03\x00\x00\x00" + (1 << 40).to_bytes(8, "little") + b"\0" * 8, "FORMAT", 8,
     "tensor count 1099511627776 cannot fit"),
    # read as the zip it announces: its error says what a zip lacks
    ("zip_magic", b"PK\x03\x04\x14\x00" + b"\0" * 24, "FORMAT", 8, "no zip end record"),
]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else HERE
    os.makedirs(os.path.join(out, "good"), exist_ok=True)
    os.makedirs(os.path.join(out, "corrupt"), exist_ok=True)
    for name, data in GOOD.items():
        with open(os.path.join(out, "good", name), "wb") as f:
            f.write(data)
    lines = ["# file\tstatus\toffset\tmessage fragment",
             "# offset -2: inside the header (any value >= 8); -3: inside the data; -4: end of last tensor"]
    for name, data, status, off, frag in CORRUPT:
        fn = name + ".safetensors"
        with open(os.path.join(out, "corrupt", fn), "wb") as f:
            f.write(data)
        lines.append(f"{fn}\t{status}\t{off}\t{frag}")
    with open(os.path.join(out, "corrupt", "EXPECTED"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{len(GOOD)} good, {len(CORRUPT)} corrupt files in {out}")


if __name__ == "__main__":
    main()
