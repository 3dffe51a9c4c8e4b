"""A PNG rebuilt: IHDR, the colour chunks (iCCP under a neutral name, sRGB, gAMA, cHRM, cICP) and
pHYs, PLTE and tRNS, a fresh eXIf with the orientation alone, the IDATs, IEND. Text chunks (tEXt,
zTXt, iTXt: XMP among them), eXIf, time, and every other ancillary chunk are dropped, and so is
what follows IEND. Every chunk's CRC is checked; a chunk of a known kind must have its size; an
unknown critical chunk, an animation (acTL), or chunks out of the order libpng requires are
refused."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

from gateway.images.decode import ImageHeader
from gateway.images.privacy._walk import (
    MOST_CHUNKS,
    MOST_ICC_BYTES,
    Refused,
    orientation_exif,
    require,
)

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Kept before the first IDAT, with the size each must have (None: any).
_SIZES: dict[bytes, int | None] = {
    b"IHDR": 13,
    b"PLTE": None,
    b"tRNS": None,
    b"sRGB": 1,
    b"gAMA": 4,
    b"cHRM": 32,
    b"cICP": 4,
    b"pHYs": 9,
    b"iCCP": None,
}
_ICC_NAME = b"ICC Profile"


def rebuild(data: bytes, header: Callable[[], ImageHeader]) -> bytes:
    require(data.startswith(SIGNATURE), "no PNG signature")
    kept: list[bytes] = []
    position, pixels, ended, exif_at = len(SIGNATURE), False, False, 0
    view = memoryview(data)
    for index in range(MOST_CHUNKS):
        require(position + 12 <= len(data), "the PNG ends before IEND")
        size, kind = struct.unpack_from(">I4s", data, position)
        end = position + 8 + size
        require(size < 1 << 31 and end + 4 <= len(data), f"PNG chunk {kind!r} overruns the file")
        require(kind.isalpha() and kind.isascii(), f"PNG chunk type {kind!r} is not a name")
        (crc,) = struct.unpack_from(">I", data, end)
        require(zlib.crc32(view[position + 4 : end]) == crc, f"PNG chunk {kind!r}: wrong CRC")
        require((index == 0) == (kind == b"IHDR"), "a PNG must start with IHDR, once")
        require(kind != b"acTL", "an animated PNG")
        if kind == b"IEND":
            ended = True
            break
        if kind == b"IDAT":
            require(not pixels or kept[-1][4:8] == b"IDAT", "a PNG's IDATs must follow each other")
            if not pixels:
                exif_at = len(kept)  # a fresh eXIf goes before the pixels, where Pillow reads it
            pixels = True
            kept.append(data[position : end + 4])
        elif kind in _SIZES and not pixels:
            body = data[position + 8 : end]
            expected = _SIZES[kind]
            require(expected is None or size == expected, f"PNG chunk {kind!r} of {size} bytes")
            kept.append(_chunk(kind, _icc(body)) if kind == b"iCCP" else data[position : end + 4])
        else:
            # An ancillary chunk (lower-case first letter) is dropped; a critical one the decoder
            # would need (PLTE after the pixels, one it does not know) is refused.
            require(kind[0] & 0x20 == 0x20, f"PNG chunk {kind!r} where it cannot be")
        position = end + 4
    require(ended and pixels, "a PNG without pixels or IEND")
    if (orientation := header().orientation) != 1:
        kept.insert(exif_at, _chunk(b"eXIf", orientation_exif(orientation)))
    return SIGNATURE + b"".join(kept) + _chunk(b"IEND", b"")


def _icc(body: bytes) -> bytes:
    """iCCP under a neutral profile name (the name is free text), the profile as compressed,
    once it inflates completely within MOST_ICC_BYTES with nothing after it."""
    name = body.find(b"\x00", 0, 80)
    require(name > 0 and body[name + 1 : name + 2] == b"\x00", "a malformed iCCP chunk")
    compressed = body[name + 2 :]
    inflater = zlib.decompressobj()
    try:
        inflater.decompress(compressed, MOST_ICC_BYTES)
    except zlib.error as exc:
        raise Refused("an iCCP chunk that does not inflate") from exc
    require(inflater.eof and not inflater.unused_data, "an iCCP chunk with more than its profile")
    require(not inflater.unconsumed_tail, f"an ICC profile over {MOST_ICC_BYTES} bytes")
    return _ICC_NAME + b"\x00\x00" + compressed


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
