#!/usr/bin/env python3
"""Writes tests/data/corrupt_gguf/: one malformed GGUF file per way the
format's header can lie or break, each with the error lmio must give
(EXPECTED: file, status, byte offset or -1 for "any", message fragment),
plus good-*.gguf files that must open. The files are assembled field by
field from the layout in shared/reference/gguf-llamacpp.md §1: every count
and length a real file has can be made to lie.

Stdlib only, deterministic: rerunning it reproduces the committed files."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corrupt_gguf")

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, payload):
    return s(key) + struct.pack("<I", vtype) + payload


def tinfo(name, dims, ggml_type, offset):
    return s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + \
        struct.pack("<IQ", ggml_type, offset)


def gguf(kvs=(), tensors=(), data=b"", version=3, n_tensors=None, n_kv=None, align=32, magic=b"GGUF"):
    """kvs and tensors are encoded records; data goes after padding to align."""
    head = magic + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tensors)
    if tensors or data:
        body += b"\0" * (-len(body) % align)
    return body + data


ARCH = kv("general.architecture", STRING, s("llama"))
F32_4 = struct.pack("<4f", 1, 2, 3, 4)


def offset_after(kvs=(), tensors=(), extra=0):
    """The offset of the byte just after the header, kvs and tensors."""
    return 24 + sum(map(len, kvs)) + sum(map(len, tensors)) + extra


CASES = []


def case(name, status, offset, fragment, content):
    CASES.append((name, status, offset, fragment, content))


def build():
    one = [tinfo("t", [4], 0, 0)]
    case("version_1.gguf", "UNSUPPORTED", 4, "GGUF version 1;", gguf([ARCH], version=1))
    case("version_4.gguf", "FORMAT", 4, "GGUF version 4;", gguf([ARCH], version=4))
    case("version_big_endian.gguf", "FORMAT", 4, "big-endian", gguf([ARCH], version=0x03000000))
    case("truncated_header.gguf", "FORMAT", 8, "file ends", gguf([ARCH])[:12])
    case("tensor_count_huge.gguf", "FORMAT", 8, "tensor count 9223372036854775808 cannot fit",
         gguf([ARCH], n_tensors=1 << 63))
    case("tensor_count_lie.gguf", "FORMAT", -1, "a tensor name is empty", gguf([ARCH], one, F32_4 + b"\0" * 64, n_tensors=3))
    case("kv_count_huge.gguf", "FORMAT", 16, "metadata count 18446744073709551615 cannot fit",
         gguf([ARCH], n_kv=(1 << 64) - 1))
    case("kv_count_lie.gguf", "FORMAT", -1, "file ends", gguf([ARCH], n_kv=2))
    case("key_length_huge.gguf", "FORMAT", 24, "a metadata key has length 1152921504606846976",
         gguf([struct.pack("<Q", 1 << 60) + b"general.x"]))
    case("key_length_lie.gguf", "FORMAT", 24, "a metadata key has length 100 but",
         gguf([struct.pack("<Q", 100) + b"general.architecture" + struct.pack("<I", STRING)]))
    case("key_empty.gguf", "FORMAT", 24, "metadata key 0 is empty", gguf([kv("", U32, struct.pack("<I", 1))]))
    case("key_not_utf8.gguf", "FORMAT", 32 + 3, "a metadata key is not valid UTF-8",
         gguf([kv(b"gen\xffx", U32, struct.pack("<I", 1))]))
    case("duplicate_key.gguf", "DUPLICATE", -1, '"general.architecture" appears twice', gguf([ARCH, ARCH]))
    case("value_type_unknown.gguf", "FORMAT", 24 + 8 + 9, "value type 13; expected",
         gguf([kv("general.x", 13, b"\0" * 8)]))
    case("value_type_huge.gguf", "FORMAT", 24 + 8 + 9, "value type 4294967295; expected",
         gguf([kv("general.x", 0xFFFFFFFF, b"\0" * 8)]))
    case("string_length_huge.gguf", "FORMAT", 24 + 8 + 9 + 4, "a string value has length 18446744073709551615",
         gguf([kv("general.x", STRING, struct.pack("<Q", (1 << 64) - 1) + b"abc")]))
    case("string_not_utf8.gguf", "FORMAT", 24 + 8 + 9 + 4 + 8 + 1, "a string value is not valid UTF-8",
         gguf([kv("general.x", STRING, s(b"a\xc0\xafb"))]))
    case("truncated_value.gguf", "FORMAT", 24 + 8 + 9 + 4, "file ends", gguf([kv("general.x", U64, b"\1\2\3")]))
    case("bool_not_0_or_1.gguf", "FORMAT", 24 + 8 + 9 + 4, "bool value 2; expected 0 or 1",
         gguf([kv("general.x", BOOL, b"\2")]))
    at = 24 + 8 + 9 + 4
    case("array_count_huge.gguf", "FORMAT", at + 4, "array of 2305843009213693952 UINT64 values needs at least",
         gguf([kv("general.x", ARRAY, struct.pack("<IQ", U64, 1 << 61) + b"\0" * 8)]))
    case("array_count_overflow.gguf", "FORMAT", at + 4, "array of 18446744073709551615 UINT32 values",
         gguf([kv("general.x", ARRAY, struct.pack("<IQ", U32, (1 << 64) - 1))]))
    case("array_of_strings_lie.gguf", "FORMAT", 24 + 8 + 21 + 4 + 4, "array of 1000 STRING values needs at least 8000 bytes",
         gguf([kv("tokenizer.ggml.tokens", ARRAY, struct.pack("<IQ", STRING, 1000) + s("a") + s("b"))]))
    case("array_string_length_huge.gguf", "FORMAT", -1, "a string value has length 4294967296",
         gguf([kv("general.x", ARRAY, struct.pack("<IQ", STRING, 2) + s("a") + struct.pack("<Q", 1 << 32) +
                  b"x" * 8)]))
    case("array_element_type_unknown.gguf", "FORMAT", at, "array element type 99",
         gguf([kv("general.x", ARRAY, struct.pack("<IQ", 99, 1) + b"\0" * 8)]))
    deep = struct.pack("<IQ", U8, 0)
    for _ in range(100):
        deep = struct.pack("<IQ", ARRAY, 1) + deep
    case("deep_arrays.gguf", "LIMIT", -1, "arrays nested deeper than 7", gguf([kv("general.x", ARRAY, deep)]))
    case("alignment_not_power_of_two.gguf", "FORMAT", -1, "general.alignment is 48; expected a power of two",
         gguf([kv("general.alignment", U32, struct.pack("<I", 48))]))
    case("alignment_zero.gguf", "FORMAT", -1, "general.alignment is 0; expected a power of two",
         gguf([kv("general.alignment", U32, struct.pack("<I", 0))]))
    case("alignment_wrong_type.gguf", "FORMAT", -1, "general.alignment is a UINT64; expected UINT32",
         gguf([kv("general.alignment", U64, struct.pack("<Q", 32))]))
    t_at = offset_after([ARCH])
    case("tensor_name_too_long.gguf", "LIMIT", t_at, "a tensor name has length 65; expected at most 64",
         gguf([ARCH], [tinfo("x" * 65, [4], 0, 0)], F32_4))
    case("tensor_name_length_huge.gguf", "FORMAT", t_at, "a tensor name has length 9223372036854775807",
         gguf([ARCH], [struct.pack("<Q", (1 << 63) - 1) + b"t"]))
    case("tensor_name_empty.gguf", "FORMAT", t_at, "a tensor name is empty", gguf([ARCH], [tinfo("", [4], 0, 0)], F32_4))
    case("tensor_five_dims.gguf", "FORMAT", t_at + 9, 'tensor "t" has 5 dimensions; expected at most 4',
         gguf([ARCH], [tinfo("t", [1, 1, 1, 1, 4], 0, 0)], F32_4))
    case("tensor_dims_overflow.gguf", "FORMAT", t_at + 9 + 4 + 8, "dimensions multiply past 2^63",
         gguf([ARCH], [tinfo("t", [1 << 32, 1 << 32], 0, 0)], F32_4))
    case("tensor_dim_negative.gguf", "FORMAT", t_at + 9 + 4, "dimensions multiply past 2^63",
         gguf([ARCH], [tinfo("t", [(1 << 64) - 4], 0, 0)], F32_4))
    case("tensor_type_removed.gguf", "FORMAT", t_at + 9 + 4 + 8, "has type 4, which ggml does not define",
         gguf([ARCH], [tinfo("t", [32], 4, 0)], b"\0" * 32))
    case("tensor_type_huge.gguf", "FORMAT", t_at + 9 + 4 + 8, "has type 4294967295, which ggml does not define",
         gguf([ARCH], [tinfo("t", [32], 0xFFFFFFFF, 0)], b"\0" * 32))
    case("tensor_type_unsupported.gguf", "UNSUPPORTED", t_at, 'tensor "t" is IQ2_XXS; lmio reads',
         gguf([ARCH], [tinfo("t", [256], 16, 0)], b"\0" * 66))
    case("tensor_row_not_whole_blocks.gguf", "FORMAT", t_at + 9 + 4 + 8,
         "rows of 33 elements of Q8_0; expected a multiple of its block of 32",
         gguf([ARCH], [tinfo("t", [33], 8, 0)], b"\0" * 68))
    case("tensor_offset_misaligned.gguf", "FORMAT", t_at, 'tensor "t" has offset 4; expected a multiple of the alignment 32',
         gguf([ARCH], [tinfo("t", [4], 0, 4)], F32_4 * 2))
    case("tensor_past_eof.gguf", "FORMAT", t_at, 'tensor "t" spans data bytes 0..4000 but the data section holds 16',
         gguf([ARCH], [tinfo("t", [1000], 0, 0)], F32_4))
    case("tensor_offset_huge.gguf", "FORMAT", t_at, "spans data bytes 9223372036854775808..",
         gguf([ARCH], [tinfo("t", [4], 0, 1 << 63)], F32_4))
    case("tensor_offset_wraps.gguf", "FORMAT", t_at, "expected it inside the file",
         gguf([ARCH], [tinfo("t", [4], 0, (1 << 64) - 32)], F32_4))
    two = [tinfo("a", [8], 0, 0), tinfo("b", [8], 0, 0)]
    case("tensors_overlap.gguf", "FORMAT", -1, "overlaps", gguf([ARCH], two, F32_4 * 2))
    two = [tinfo("a", [16], 0, 0), tinfo("b", [4], 0, 32)]
    case("tensors_overlap_inside.gguf", "FORMAT", -1, 'tensor "b" at data offset 32 overlaps "a"',
         gguf([ARCH], two, F32_4 * 4))
    case("duplicate_tensor.gguf", "DUPLICATE", -1, 'tensor "t" appears twice',
         gguf([ARCH], [tinfo("t", [4], 0, 0), tinfo("t", [4], 0, 32)], F32_4 + b"\0" * 16 + F32_4))
    case("truncated_tensor_info.gguf", "FORMAT", 8, "tensor count 1 cannot fit in the 12 bytes left after the metadata", gguf([ARCH], one, F32_4)[:t_at + 12])
    case("truncated_in_dims.gguf", "FORMAT", -1, "file ends",
         gguf([ARCH], [tinfo("t", [1, 1, 1, 4], 0, 0)], F32_4)[:t_at + 9 + 4 + 16])
    body = gguf([ARCH], one)
    case("no_data_section.gguf", "FORMAT", -1, "file ends before the data section",
         body[:offset_after([ARCH], one)])
    big = gguf([ARCH], [tinfo("t", [64], 2, 0)], b"\0" * 2 * 18 + b"\0" * 12)  # Q4_0 needs 36 bytes: fits
    case("quantised_past_eof.gguf", "FORMAT", -1, "spans data bytes 0..36 but the data section holds 16",
         big[:len(big) - 32])


GOOD = {
    "good-v2.gguf": gguf([ARCH], [tinfo("t", [4], 0, 0)], F32_4, version=2),
    "good-no-tensors.gguf": gguf([ARCH, kv("general.name", STRING, s("empty"))]),
    "good-align64.gguf": gguf([ARCH, kv("general.alignment", U32, struct.pack("<I", 64))],
                              [tinfo("a", [3], 0, 0), tinfo("b", [2, 2], 1, 64)],
                              struct.pack("<3f", 1, 2, 3) + b"\0" * 52 + struct.pack("<4e", 1, 2, 3, 4), align=64),
    "good-q8_0.gguf": gguf([ARCH], [tinfo("q", [32, 2], 8, 0)],
                           (struct.pack("<e", 0.5) + bytes(range(32))) * 2 + b"\0" * 28),
    "good-empty-tensor.gguf": gguf([ARCH], [tinfo("e", [0, 4], 0, 0), tinfo("t", [4], 0, 0)], F32_4),
    "good-nested-array.gguf": gguf([ARCH, kv("general.x", ARRAY, struct.pack("<IQ", ARRAY, 2) +
                                             struct.pack("<IQ", I32, 1) + struct.pack("<i", -1) +
                                             struct.pack("<IQ", STRING, 1) + s("z"))]),
}


def main():
    build()
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    lines = ["# file\tstatus\toffset (-1: any)\tmessage fragment\n"]
    for name, status, offset, fragment, content in CASES:
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(content)
        lines.append(f"{name}\t{status}\t{offset}\t{fragment}\n")
    for name, content in GOOD.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(content)
    with open(os.path.join(OUT, "EXPECTED"), "w") as f:
        f.writelines(lines)
    print(f"{len(CASES)} corrupt and {len(GOOD)} good GGUF files in {OUT}")


if __name__ == "__main__":
    main()
