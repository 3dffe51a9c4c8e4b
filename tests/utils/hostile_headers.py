"""Hostile headers made from real encoders' files by byte surgery: a TIFF whose first page chains
to thousands more, a TIFF whose ICC profile tag has another type, a PNG whose text chunks inflate
to gigabytes, and the HEIF/AVIF size lies of tests/utils/heif_files.py."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from tests.utils.heif_files import encoded_tile, grid_file, single_file
from tests.utils.phone_formats import display_p3

_ICC_PROFILE = 34675
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 7: 1}  # BYTE, ASCII, SHORT, LONG, UNDEFINED


def _tiff(**options: object) -> bytes:
    buffer = io.BytesIO()
    pixels = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    Image.fromarray(pixels).save(buffer, format="TIFF", **options)
    return buffer.getvalue()


def chained_tiff(pages: int) -> bytes:
    """A little-endian TIFF (Pillow's) whose first IFD chains to `pages - 1` copies of itself,
    each a page on the same strip."""
    data = bytearray(_tiff())
    assert data[:2] == b"II"
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    size = 2 + 12 * count + 4
    entries = bytes(data[ifd : ifd + size - 4])
    next_field = ifd + size - 4
    for _ in range(pages - 1):
        struct.pack_into("<I", data, next_field, len(data))
        next_field = len(data) + size - 4
        data += entries + bytes(4)
    return bytes(data)


def tiff_with_icc_type(tag_type: int) -> bytes:
    """A TIFF with a Display P3 profile whose tag (34675) says `tag_type` instead of UNDEFINED
    (the same bytes, counted in that type's units)."""
    data = bytearray(_tiff(icc_profile=display_p3()))
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind, length = struct.unpack_from("<HHI", data, entry)
        if tag == _ICC_PROFILE:
            assert kind == 7
            struct.pack_into("<HI", data, entry + 2, tag_type, length // _TIFF_TYPE_SIZES[tag_type])
            return bytes(data)
    raise AssertionError("no ICC profile tag")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_chunks(chunks: list[bytes]) -> bytes:
    """Pillow's PNG of a small photo with `chunks` (whole, from `_chunk`) before its pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 40)).save(buffer, format="PNG")
    data = buffer.getvalue()
    idat = data.index(b"IDAT") - 4
    return data[:idat] + b"".join(chunks) + data[idat:]


def png_text_bomb(chunks: int, inflated: int = 1 << 20) -> bytes:
    """A PNG of `chunks` compressed iTXt chunks, each `inflated` bytes once inflated and not
    UTF-8 (Pillow leaves them out of its text budget), about 1 KB each as sent."""
    text = zlib.compress(b"\xff" * inflated, 9)
    return png_with_chunks([_chunk(b"iTXt", b"Comment\0\1\0\0\0" + text)] * chunks)


def png_xmp(packet: bytes) -> bytes:
    """A PNG with `packet` as its XMP (an uncompressed iTXt chunk)."""
    return png_with_chunks([_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + packet)])


def heif_lies() -> dict[str, bytes]:
    """Files whose declared size is not what their decoder allocates, by name:
    - heic_clap: a 64x64 clean aperture over a 24x24 grid of 512x512 HEVC tiles (151 MP);
    - avif_grid_ispe: a 16x16 grid of 512x512 AV1 tiles (67 MP) whose ispe says 64x64;
    - avif_frame: an 8192x8192 AV1 frame (67 MP) under an ispe of 64x64."""
    hevc, av1 = encoded_tile("HEIF", 512, 512), encoded_tile("AVIF", 512, 512)
    return {
        "heic_clap": grid_file(hevc, 24, 24, crop=(64, 64)),
        "avif_grid_ispe": grid_file(av1, 16, 16, grid_ispe=(64, 64)),
        "avif_frame": single_file(encoded_tile("AVIF", 8192, 8192), (64, 64)),
    }
