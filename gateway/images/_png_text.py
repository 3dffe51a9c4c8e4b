"""A PNG's metadata as its readers inflate it: the text (tEXt, zTXt, iTXt: XMP among them), the ICC
profile (iCCP) and EXIF (eXIf) chunks, counted before Pillow reads them. Pillow stops one chunk at
1 MiB inflated but skips the count for an iTXt chunk that is not UTF-8, and libpng (OpenCV's
decoder) inflates up to 8 MB a chunk, text after the pixels included; so a PNG of a few kilobytes
can cost gigabytes of inflating. Here every chunk of the file is counted, and the inflating itself
stops at the budget."""

from __future__ import annotations

import struct
import zlib

from gateway.errors import UnsupportedImage

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A PNG has a few chunks of metadata and its pixels in IDAT chunks of 8 to 64 KiB: a 20 MiB file
# has a few thousand.
_MOST_CHUNKS = 100_000


def metadata_bytes(data: bytes, most: int) -> int:
    """The bytes of the PNG `data`'s metadata chunks, compressed ones as inflated; counting (and
    inflating) stops once past `most`."""
    position, total = len(SIGNATURE), 0
    for _ in range(_MOST_CHUNKS):
        if position + 8 > len(data):
            return total  # truncated: the decoders say so
        length, kind = struct.unpack_from(">I4s", data, position)
        body = data[position + 8 : position + 8 + length]
        if kind == b"IEND":
            return total
        if kind in (b"tEXt", b"eXIf"):
            total += len(body)
        elif kind in (b"zTXt", b"iCCP"):  # keyword, NUL, compression method, deflated bytes
            keyword, _, rest = body.partition(b"\0")
            total += len(keyword) + _inflated(rest[1:], most - total + 1)
        elif kind == b"iTXt":  # keyword, NUL, flag, method, language, NUL, keyword, NUL, text
            keyword, _, rest = body.partition(b"\0")
            text = rest[2:].split(b"\0", 2)[-1]
            compressed = rest[:1] not in (b"", b"\0")
            total += len(body) - len(text)
            total += _inflated(text, most - total + 1) if compressed else len(text)
        if total > most:
            return total
        position += 12 + length
    raise UnsupportedImage(f"This PNG has more than {_MOST_CHUNKS} chunks; save it again.")


def _inflated(compressed: bytes, most: int) -> int:
    """The length of `compressed` inflated, up to `most` (0 when it is not zlib data: the
    readers skip such a chunk)."""
    if most <= 0:
        return 1
    try:
        return len(zlib.decompressobj().decompress(compressed, most))
    except zlib.error:
        return 0
