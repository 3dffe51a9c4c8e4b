"""A WebP rebuilt: the RIFF holds the image chunk (VP8 with its ALPH, or VP8L) and, in the extended
format, VP8X with its flags written anew, ICCP, and a fresh EXIF with the orientation alone. XMP,
EXIF and unknown chunks are dropped, and so are bytes after the RIFF. An animation, a second
image, or a chunk that overruns the RIFF is refused."""

from __future__ import annotations

import struct
from collections.abc import Callable

from gateway.images.decode import ImageHeader
from gateway.images.privacy._walk import MOST_CHUNKS, orientation_exif, require, unpack

_ICC, _ALPHA, _EXIF, _ANIMATION = 0x20, 0x10, 0x08, 0x02


def rebuild(data: bytes, header: Callable[[], ImageHeader]) -> bytes:
    (size,) = unpack("<I", data, 4)
    end = 8 + size
    require(data[8:12] == b"WEBP" and 4 <= size and end <= len(data), "the RIFF overruns the file")
    chunks: list[tuple[bytes, bytes]] = []
    position = 12
    while position < end:
        require(len(chunks) < MOST_CHUNKS, f"more than {MOST_CHUNKS} WebP chunks")
        kind, length = unpack("<4sI", data, position, end)
        body_end = position + 8 + length
        require(body_end + (length & 1) <= end, f"WebP chunk {kind!r} overruns the RIFF")
        chunks.append((kind, data[position + 8 : body_end]))
        position = body_end + (length & 1)
    kinds = [kind for kind, _ in chunks]
    require(bool(chunks) and kinds[0] in (b"VP8 ", b"VP8L", b"VP8X"), "no WebP image chunk first")
    images = [i for i, kind in enumerate(kinds) if kind in (b"VP8 ", b"VP8L")]
    require(len(images) == 1, "a WebP with other than one image")
    require(b"ANIM" not in kinds and b"ANMF" not in kinds, "an animated WebP")
    image = chunks[images[0]]
    alpha = chunks[images[0] - 1] if images[0] and kinds[images[0] - 1] == b"ALPH" else None
    flags, icc = 0, None
    if kinds[0] == b"VP8X":
        require(len(chunks[0][1]) == 10, "a VP8X chunk of the wrong size")
        flags = chunks[0][1][0]
        require(not flags & _ANIMATION, "an animated WebP")
        icc = (
            next((body for kind, body in chunks if kind == b"ICCP"), None) if flags & _ICC else None
        )
    image_header = header()
    orientation, width, height = image_header.orientation, image_header.width, image_header.height
    kept = [_chunk(b"ICCP", icc)] if icc is not None else []
    if alpha is not None:
        kept.append(_chunk(*alpha))
    kept.append(_chunk(*image))
    if orientation != 1:
        kept.append(_chunk(b"EXIF", orientation_exif(orientation)))
    if len(kept) > 1 or flags & _ALPHA:
        new_flags = (_ICC if icc is not None else 0) | (flags & _ALPHA) | (_ALPHA if alpha else 0)
        new_flags |= _EXIF if orientation != 1 else 0
        canvas = struct.pack("<I", width - 1)[:3] + struct.pack("<I", height - 1)[:3]
        require(width >= 1 and height >= 1 and max(width, height) <= 1 << 24, "a WebP's size")
        kept.insert(0, _chunk(b"VP8X", bytes((new_flags, 0, 0, 0)) + canvas))
    riff = b"WEBP" + b"".join(kept)
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


def _chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")
