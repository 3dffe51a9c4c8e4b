"""Photos made to cost a decoder work or memory out of proportion to their bytes."""

from __future__ import annotations

import re
import struct
import zlib

import cv2
import numpy as np


def progressive_jpeg(side: int, repeats: int = 0) -> bytes:
    """A progressive JPEG of noise; `repeats` more copies of its smallest luma AC scan (few bytes
    that make libjpeg pass over every luma block again)."""
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur((rng.random((side, side, 3)) * 255).astype(np.uint8), (0, 0), 3)
    flags = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_QUALITY, 30]
    data = cv2.imencode(".jpg", noise, flags)[1].tobytes()
    starts = [m.start() for m in re.finditer(rb"\xff\xda", data)]
    scans = zip(starts, [*starts[1:], len(data) - 2], strict=True)
    # SOS: FF DA, length (2), 1 component, component 1 (luma), tables, Ss > 0 (AC)
    luma = [(s, e) for s, e in scans if data[s + 4 : s + 6] == b"\x01\x01"]
    _, start, end = min((e - s, s, e) for s, e in luma if data[s + 7] > 0)
    return data[:-2] + data[start:end] * repeats + b"\xff\xd9"


def tiff16(side: int, variant: int = 0) -> bytes:
    """A black 16-bit RGBA TIFF of side x side in one Deflate strip: a decoder holds the whole
    strip (8 bytes a pixel) while it converts it, so 6323 x 6323 is 320 MB from about 310 KB.
    `variant` makes a distinct file (bytes after the data, which no reader reads), so no two
    variants are one cached analysis."""
    row = bytes(side * 8)
    packer = zlib.compressobj(9)
    strip = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    entries = [  # tag, type (3 SHORT, 4 LONG), count, value or offset
        (256, 4, 1, side),  # ImageWidth
        (257, 4, 1, side),  # ImageLength
        (258, 3, 4, 0),  # BitsPerSample: 16 x 4, at the offset filled in below
        (259, 3, 1, 8),  # Compression: Deflate
        (262, 3, 1, 2),  # PhotometricInterpretation: RGB
        (273, 4, 1, 0),  # StripOffsets: filled in below
        (277, 3, 1, 4),  # SamplesPerPixel
        (278, 4, 1, side),  # RowsPerStrip: the whole image
        (279, 4, 1, len(strip)),  # StripByteCounts
        (284, 3, 1, 1),  # PlanarConfiguration: chunky
        (338, 3, 1, 2),  # ExtraSamples: unassociated alpha
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    bits_at = 8 + ifd_size
    strip_at = bits_at + 8
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = {258: bits_at, 273: strip_at}.get(tag, value)
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 and count == 1 else None
        ifd += struct.pack("<HHI", tag, kind, count) + (packed or struct.pack("<I", value))
    ifd += struct.pack("<I", 0)
    header = b"II*\0" + struct.pack("<I", 8)
    bits = struct.pack("<4H", 16, 16, 16, 16)
    return header + ifd + bits + strip + variant.to_bytes(4, "big")
