"""The ctypes mirrors in lmio_ctypes.py must match include/lmio.h exactly:
lmio writes whole structs into them, so a missing field corrupts memory."""
import ctypes
import json
import os
import subprocess

import lmio_ctypes as lm


def test_ctypes_mirrors_match_the_header():
    out = subprocess.run([os.path.join(lm.BUILD, "abi_sizes")], capture_output=True, text=True, check=True).stdout
    layout = json.loads(out)
    for name, fields in layout.items():
        cls = getattr(lm, name)
        assert ctypes.sizeof(cls) == fields.pop("size"), name
        assert [f[0] for f in cls._fields_] == list(fields), name
        for field, off in fields.items():
            assert getattr(cls, field).offset == off, (name, field)
