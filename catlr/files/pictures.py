"""The mark catlr leaves in every picture it writes, and how a picture is recognised by it.

A PNG carries a Software text chunk naming catlr (before its pixels), a JPEG a comment: so
the output guard (outputs.py) replaces a picture only when catlr drew it. The drawers
(stages/plots.py, stages/demo.py) take the texts from here.
"""

from __future__ import annotations

from ..version import __version__

MARK = b"catlr"  # in every picture catlr writes: PNG Software text, JPEG comment
SOFTWARE = f"catlr {__version__}"   # the PNG Software text of catlr's pictures
DEMO = "catlr demo"                 # ... of the sample images `catlr demo` draws
DEMO_COMMENT = b"drawn by catlr demo"  # the JPEG comment of those


def _head(path, n=8) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


MARK = b"catlr"  # in every picture catlr writes: PNG Software text, JPEG comment


def png_is_catlr(path) -> bool:
    """A PNG whose Software text (a tEXt chunk before its pixels) says catlr wrote it."""
    import struct

    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            return False
        for _ in range(64):
            head = f.read(8)
            if len(head) < 8:
                return False
            size, kind = struct.unpack(">I4s", head)
            if kind == b"IDAT" or size > 1 << 20:
                return False
            data = f.read(size)
            f.read(4)
            if kind == b"tEXt" and data.startswith(b"Software\0") and MARK in data[9:]:
                return True
    return False


def jpeg_is_catlr(path) -> bool:
    head = _head(path, 64 << 10)
    return head.startswith(b"\xff\xd8\xff") and b"\xff\xfe" in head and MARK in head
