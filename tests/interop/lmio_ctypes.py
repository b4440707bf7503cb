"""A thin ctypes binding of include/lmio.h for the interop tests: it lets
Python hand lmio exactly the bytes a real consumer wrote or will read."""
import ctypes
import os

BUILD = os.environ.get("LMIO_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
LIB = ctypes.CDLL(os.path.join(BUILD, "liblmio.so"))
# LMIO_CLI points the CLI-driven tests at another build of the tool (the
# sanitizer build in scripts/test.sh) while ctypes keeps the plain library.
LMIO_BIN = os.environ.get("LMIO_CLI", os.path.join(BUILD, "lmio"))

DTYPES = ["BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F16", "BF16", "F32", "F64",
          "F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F6_E2M3", "F6_E3M2", "F4", "C64"]
CODE = {n: i for i, n in enumerate(DTYPES)}
NONE = -1


class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("offset", ctypes.c_int64), ("path", ctypes.c_char * 1024),
                ("key", ctypes.c_char * 256), ("message", ctypes.c_char * 2048)]


class Tensor(ctypes.Structure):
    # must mirror lmio_tensor in include/lmio.h field for field: lmio writes
    # sizeof(lmio_tensor) bytes into it (tests/interop/test_abi.py checks)
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("ndim", ctypes.c_int),
                ("shape", ctypes.c_uint64 * 16), ("data", ctypes.c_void_p), ("nbytes", ctypes.c_uint64),
                ("numel", ctypes.c_uint64), ("file_offset", ctypes.c_int64), ("source", ctypes.c_char_p)]


class SaveOpts(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("dtype", ctypes.c_int), ("durable", ctypes.c_int), ("progress", ctypes.c_void_p),
                ("progress_ctx", ctypes.c_void_p)]


P = ctypes.c_void_p
LIB.lmio_statedict_create.argtypes = [ctypes.POINTER(P), ctypes.POINTER(Error)]
LIB.lmio_statedict_free.argtypes = [P]
LIB.lmio_statedict_add.argtypes = [P, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_uint64),
                                   ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.POINTER(Error)]
LIB.lmio_safetensors_save.argtypes = [P, ctypes.c_char_p, ctypes.POINTER(SaveOpts), ctypes.POINTER(Error)]
LIB.lmio_statedict_open.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(P), ctypes.POINTER(Error)]
LIB.lmio_statedict_count.argtypes = [P]
LIB.lmio_statedict_count.restype = ctypes.c_size_t
LIB.lmio_statedict_get.argtypes = [P, ctypes.c_size_t, ctypes.POINTER(Tensor), ctypes.POINTER(Error)]
LIB.lmio_metadata_set.argtypes = [P, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(Error)]
LIB.lmio_metadata_count.argtypes = [P]
LIB.lmio_metadata_count.restype = ctypes.c_size_t
LIB.lmio_metadata_get.argtypes = [P, ctypes.c_size_t, ctypes.POINTER(ctypes.c_char_p),
                                  ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(Error)]
LIB.lmio_convert.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t,
                             ctypes.POINTER(Error)]
LIB.lmio_set_simd.argtypes = [ctypes.c_int]
LIB.lmio_simd_active.restype = ctypes.c_char_p


class LmioError(Exception):
    pass


def _check(status, err):
    if status != 0:
        raise LmioError(err.message.decode())


def save(path, tensors, metadata=None, dtype=None):
    """tensors: {name: (dtype_name, shape, bytes)}, saved in dict order."""
    err = Error()
    sd = P()
    _check(LIB.lmio_statedict_create(ctypes.byref(sd), ctypes.byref(err)), err)
    try:
        for name, (dt, shape, data) in tensors.items():
            arr = (ctypes.c_uint64 * max(1, len(shape)))(*shape)
            buf = ctypes.create_string_buffer(bytes(data), max(1, len(data)))
            _check(LIB.lmio_statedict_add(sd, name.encode(), CODE[dt], len(shape), arr, buf, len(data), 1,
                                          ctypes.byref(err)), err)
        for k, v in (metadata or {}).items():
            _check(LIB.lmio_metadata_set(sd, k.encode(), v.encode(), ctypes.byref(err)), err)
        opts = SaveOpts(ctypes.sizeof(SaveOpts), CODE[dtype] if dtype else NONE, 1, None, None)
        _check(LIB.lmio_safetensors_save(sd, os.fsencode(path), ctypes.byref(opts), ctypes.byref(err)), err)
    finally:
        LIB.lmio_statedict_free(sd)


def load(path):
    """Returns ({name: (dtype_name, shape, bytes)} in lmio's order, metadata)."""
    err = Error()
    sd = P()
    _check(LIB.lmio_statedict_open(os.fsencode(path), None, ctypes.byref(sd), ctypes.byref(err)), err)
    try:
        out, meta = {}, {}
        for i in range(LIB.lmio_statedict_count(sd)):
            t = Tensor()
            _check(LIB.lmio_statedict_get(sd, i, ctypes.byref(t), ctypes.byref(err)), err)
            data = ctypes.string_at(t.data, t.nbytes) if t.nbytes else b""
            out[t.name.decode()] = (DTYPES[t.dtype], list(t.shape[:t.ndim]), data)
        for i in range(LIB.lmio_metadata_count(sd)):
            k, v = ctypes.c_char_p(), ctypes.c_char_p()
            _check(LIB.lmio_metadata_get(sd, i, ctypes.byref(k), ctypes.byref(v), ctypes.byref(err)), err)
            meta[k.value.decode()] = v.value.decode()
        return out, meta
    finally:
        LIB.lmio_statedict_free(sd)


def convert(np_src, src_dtype, dst_dtype, out):
    """Converts a contiguous numpy buffer (one element per array item) into a
    preallocated one of the same length."""
    assert np_src.flags.c_contiguous and out.flags.c_contiguous and np_src.size == out.size
    err = Error()
    n = np_src.size
    _check(LIB.lmio_convert(out.ctypes.data, CODE[dst_dtype], np_src.ctypes.data, CODE[src_dtype], n,
                            ctypes.byref(err)), err)
    return out


def set_portable(portable):
    return LIB.lmio_set_simd(1 if portable else 0)


def simd_active():
    return LIB.lmio_simd_active().decode()


# ---- config, tokenizer, save_pretrained (issue: GPT-2 + HF directories) ----

LIB.lmio_config_create.argtypes = [ctypes.c_char_p, ctypes.POINTER(P), ctypes.POINTER(Error)]
LIB.lmio_config_free.argtypes = [P]
LIB.lmio_config_set_int.argtypes = [P, ctypes.c_char_p, ctypes.c_int64, ctypes.POINTER(Error)]
LIB.lmio_config_set_float.argtypes = [P, ctypes.c_char_p, ctypes.c_double, ctypes.POINTER(Error)]
LIB.lmio_config_set_bool.argtypes = [P, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(Error)]
LIB.lmio_config_set_string.argtypes = [P, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(Error)]
LIB.lmio_config_set_null.argtypes = [P, ctypes.c_char_p, ctypes.POINTER(Error)]
LIB.lmio_tokenizer_load_files.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p),
                                          ctypes.c_size_t, ctypes.POINTER(P), ctypes.POINTER(Error)]
LIB.lmio_tokenizer_free.argtypes = [P]


class PretrainedOpts(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("dtype", ctypes.c_int), ("max_shard_size", ctypes.c_uint64),
                ("durable", ctypes.c_int), ("format", ctypes.c_char_p), ("source_dir", ctypes.c_char_p),
                ("keep_other_files", ctypes.c_int64)]


LIB.lmio_pretrained_save.argtypes = [ctypes.c_char_p, P, P, P, ctypes.POINTER(PretrainedOpts), ctypes.POINTER(Error)]


def save_pretrained(directory, config, tensors, vocab_merges=None, dtype=None, max_shard_size=0, model_type="gpt2"):
    """config: {key: value} set over model_type's defaults; tensors: {name: numpy
    array (float32/16) or (dtype_name, shape, bytes)}; vocab_merges: the two
    GPT-2 files, loaded with <|endoftext|> special."""
    err = Error()
    cfg, sd, tok = P(), P(), P()
    _check(LIB.lmio_config_create(model_type.encode(), ctypes.byref(cfg), ctypes.byref(err)), err)
    try:
        for k, v in config.items():
            kb = k.encode()
            if v is None:
                st = LIB.lmio_config_set_null(cfg, kb, ctypes.byref(err))
            elif isinstance(v, bool):
                st = LIB.lmio_config_set_bool(cfg, kb, int(v), ctypes.byref(err))
            elif isinstance(v, int):
                st = LIB.lmio_config_set_int(cfg, kb, v, ctypes.byref(err))
            elif isinstance(v, float):
                st = LIB.lmio_config_set_float(cfg, kb, v, ctypes.byref(err))
            else:
                st = LIB.lmio_config_set_string(cfg, kb, str(v).encode(), ctypes.byref(err))
            _check(st, err)
        _check(LIB.lmio_statedict_create(ctypes.byref(sd), ctypes.byref(err)), err)
        keep = []
        for name, v in tensors.items():
            if not isinstance(v, tuple):
                import numpy as np
                a = np.ascontiguousarray(v)
                v = ({np.dtype("float32"): "F32", np.dtype("float16"): "F16"}[a.dtype], list(a.shape), a.tobytes())
            dt, shape, data = v
            arr = (ctypes.c_uint64 * max(1, len(shape)))(*shape)
            buf = ctypes.create_string_buffer(bytes(data), max(1, len(data)))
            keep.append(buf)
            _check(LIB.lmio_statedict_add(sd, name.encode(), CODE[dt], len(shape), arr, buf, len(data), 1,
                                          ctypes.byref(err)), err)
        if vocab_merges:
            sp = (ctypes.c_char_p * 1)(b"<|endoftext|>")
            _check(LIB.lmio_tokenizer_load_files(os.fsencode(vocab_merges[0]), os.fsencode(vocab_merges[1]), sp, 1,
                                                 ctypes.byref(tok), ctypes.byref(err)), err)
        opts = PretrainedOpts(ctypes.sizeof(PretrainedOpts), CODE[dtype] if dtype else NONE, max_shard_size, 1, None, None)
        _check(LIB.lmio_pretrained_save(os.fsencode(directory), cfg, sd, tok if vocab_merges else None,
                                        ctypes.byref(opts), ctypes.byref(err)), err)
    finally:
        LIB.lmio_config_free(cfg)
        LIB.lmio_statedict_free(sd)
        LIB.lmio_tokenizer_free(tok)

LIB.lmio_tokenizer_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(P), ctypes.POINTER(Error)]
LIB.lmio_tokenizer_encode.argtypes = [P, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.POINTER(ctypes.c_int32)),
                                      ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(Error)]
LIB.lmio_tokenizer_decode.argtypes = [P, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t,
                                      ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t),
                                      ctypes.POINTER(Error)]
LIB.lmio_free.argtypes = [ctypes.c_void_p]


class Tokenizer:
    def __init__(self, path=None, vocab_merges=None):
        err = Error()
        self.t = P()
        if path is not None:
            _check(LIB.lmio_tokenizer_load(os.fsencode(path), ctypes.byref(self.t), ctypes.byref(err)), err)
        else:
            sp = (ctypes.c_char_p * 1)(b"<|endoftext|>")
            _check(LIB.lmio_tokenizer_load_files(os.fsencode(vocab_merges[0]), os.fsencode(vocab_merges[1]), sp, 1,
                                                 ctypes.byref(self.t), ctypes.byref(err)), err)

    def encode_bytes(self, data):
        err = Error()
        ids = ctypes.POINTER(ctypes.c_int32)()
        n = ctypes.c_size_t()
        _check(LIB.lmio_tokenizer_encode(self.t, data, len(data), ctypes.byref(ids), ctypes.byref(n),
                                         ctypes.byref(err)), err)
        out = ids[:n.value]
        LIB.lmio_free(ids)
        return out

    def encode(self, text):
        return self.encode_bytes(text.encode())

    def decode_bytes(self, ids):
        err = Error()
        arr = (ctypes.c_int32 * max(1, len(ids)))(*ids)
        p = ctypes.c_void_p()
        n = ctypes.c_size_t()
        _check(LIB.lmio_tokenizer_decode(self.t, arr, len(ids), ctypes.byref(p), ctypes.byref(n), ctypes.byref(err)), err)
        out = ctypes.string_at(p, n.value)
        LIB.lmio_free(p)
        return out

    def __del__(self):
        LIB.lmio_tokenizer_free(self.t)


LIB.lmio_tokenizer_save.argtypes = [P, ctypes.c_char_p, ctypes.POINTER(Error)]


def tokenizer_save(tok, directory):
    err = Error()
    _check(LIB.lmio_tokenizer_save(tok.t, os.fsencode(directory), ctypes.byref(err)), err)
