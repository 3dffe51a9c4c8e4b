"""What the per-container rebuilds share: the refusal, bounded reads, and the one EXIF block they
write (the orientation, nothing else)."""

from __future__ import annotations

import struct
from typing import Any

# Bounds on a walk: past them the file is refused. Real JPEGs have a few dozen segments (a
# progressive one with its tables, a few hundred at most), PNGs and WebPs a few thousand chunks
# (a PNG's IDATs); a HEIF's bounds are its reader's (gateway.images._heif).
MOST_SEGMENTS = 4096
MOST_CHUNKS = 100_000
# A colour profile inflated (a PNG's iCCP); real profiles are a few KB, printers' a few MB.
MOST_ICC_BYTES = 16 << 20
_ORIENTATION = 0x0112


class Refused(Exception):
    """A file the rebuild cannot walk completely and strictly; its message says what is wrong."""


def require(condition: bool, reason: str) -> None:
    if not condition:
        raise Refused(reason)


def unpack(fmt: str, data: bytes, offset: int, end: int | None = None) -> tuple[Any, ...]:
    """struct.unpack_from within `data[:end]`, a Refused past it."""
    size = struct.calcsize(fmt)
    require(0 <= offset and offset + size <= (len(data) if end is None else end), "truncated")
    return struct.unpack_from(fmt, data, offset)


def orientation_exif(orientation: int) -> bytes:
    """A TIFF (EXIF) block whose IFD0 holds the orientation alone."""
    ifd = struct.pack(">HHHIHHI", 1, _ORIENTATION, 3, 1, orientation, 0, 0)
    return b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
