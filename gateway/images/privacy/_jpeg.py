"""A JPEG rebuilt: SOI, a fresh JFIF and Adobe segment where the photo had one (they say how the
decoder converts its colours), a fresh EXIF with the orientation alone, the ICC profile's APP2
segments, then the tables, frame and scans as they were (DQT, DHT, DRI, DAC, SOFn, SOS and its
entropy-coded data), EOI. Every other APPn and COM, an MPF segment and the images after EOI (gain
maps, a stereo view) and any bytes after the first image are dropped.

Markers are walked the way libjpeg does: fill bytes (0xFF) may precede a marker; anything else
where a marker must be (a junk byte, FF 00, a restart marker outside a scan, a segment shorter
than its length field) is refused, as are markers libjpeg does not decode (DNL, hierarchical and
arithmetic-extension markers beside those listed)."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

import numpy as np

from gateway.images.decode import ImageHeader
from gateway.images.privacy._walk import MOST_SEGMENTS, Refused, orientation_exif, require, unpack

_SOI, _EOI, _SOS, _APP0, _APP1, _APP2, _APP14, _COM = 0xD8, 0xD9, 0xDA, 0xE0, 0xE1, 0xE2, 0xEE, 0xFE
_FRAMES = {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)}
_TABLES = {0xC4, 0xCC, 0xDB, 0xDD}  # DHT, DAC, DQT, DRI
_ICC = b"ICC_PROFILE\x00"
_FILL = re.compile(rb"\xff+")


def rebuild(data: bytes, header: Callable[[], ImageHeader]) -> bytes:
    require(data.startswith(b"\xff\xd8"), "no JPEG start of image")
    body: list[bytes] = []  # tables, frame and scans, in their order
    jfif = adobe = None
    icc: dict[int, tuple[int, bytes]] = {}  # sequence number: (count, chunk)
    frame = scanned = False
    position, segments = 2, 0
    while True:
        fill = _FILL.match(data, position)
        if fill is None:
            raise Refused(f"a byte other than a marker at offset {position} of the JPEG")
        position = fill.end()
        require(position < len(data), "the JPEG ends before its end-of-image marker")
        marker = data[position]
        position += 1
        segments += 1
        require(segments <= MOST_SEGMENTS, f"more than {MOST_SEGMENTS} JPEG segments")
        if marker == _EOI:
            require(scanned, "a JPEG without a scan")
            break
        require(
            marker in _FRAMES
            or marker in _TABLES
            or marker in (_SOS, _COM)
            or 0xE0 <= marker <= 0xEF,
            f"JPEG marker FF {marker:02X} at offset {position - 2}, which decoders do not take",
        )
        (length,) = unpack(">H", data, position)
        end = position + length
        require(length >= 2 and end <= len(data), f"a JPEG segment's length {length} is wrong")
        payload = data[position + 2 : end]
        segment = bytes((0xFF, marker)) + data[position:end]
        position = end
        if marker in _FRAMES:
            require(not frame, "a JPEG with two frames")
            frame = True
            body.append(segment)
        elif marker in _TABLES:
            body.append(segment)
        elif marker == _SOS:
            require(frame, "a JPEG scan before its frame")
            scanned = True
            scan_end = _scan_end(data, position)
            body.append(segment + data[position:scan_end].rstrip(b"\xff"))
            position = scan_end
        elif not scanned:  # what the decoder reads of APPn segments: those before the first scan
            if marker == _APP0 and payload.startswith(b"JFIF\x00") and jfif is None:
                require(len(payload) >= 14, "a JFIF segment too short")
                jfif = payload[5:12]  # version, density units and density: no thumbnail
            elif marker == _APP14 and payload.startswith(b"Adobe") and adobe is None:
                require(len(payload) >= 12, "an Adobe segment too short")
                adobe = payload[11]  # the colour transform
            elif marker == _APP2 and payload.startswith(_ICC):
                _icc_chunk(icc, payload)
    segments_before = _header(jfif, adobe, header().orientation, _icc_profile(icc))
    return b"".join([b"\xff\xd8", *segments_before, *body, b"\xff\xd9"])


def _scan_end(data: bytes, position: int) -> int:
    """Where the entropy-coded data from `position` ends: at 0xFF followed by a marker code, which
    is neither a stuffed zero, a restart marker (both part of the data) nor another fill byte.
    Looked for in windows that double from 64 KB, vectorised: a scan of 20 MB of stuffed 0xFF
    bytes costs tens of milliseconds, not a Python step per byte."""
    view = np.frombuffer(data, np.uint8)
    window = 1 << 16
    while position < len(data) - 1:
        stop = min(position + window, len(data) - 1)
        following = view[position + 1 : stop + 1]
        marker = (view[position:stop] == 0xFF) & (following != 0) & (following != 0xFF)
        marker &= (following < 0xD0) | (following > 0xD7)
        found = np.flatnonzero(marker)
        if found.size:
            return position + int(found[0])
        position, window = stop, window * 2
    raise Refused("the JPEG ends inside a scan")


def _icc_chunk(icc: dict[int, tuple[int, bytes]], payload: bytes) -> None:
    require(len(payload) > len(_ICC) + 2, "an ICC_PROFILE segment too short")
    sequence, count = payload[len(_ICC)], payload[len(_ICC) + 1]
    require(1 <= sequence <= count and sequence not in icc, "ICC_PROFILE segments out of sequence")
    icc[sequence] = (count, payload[len(_ICC) + 2 :])


def _icc_profile(icc: dict[int, tuple[int, bytes]]) -> list[bytes]:
    """The profile's chunks in order: every one from 1 to the count they all give, once."""
    if not icc:
        return []
    counts = {count for count, _ in icc.values()}
    require(len(counts) == 1 and len(icc) == counts.pop(), "ICC_PROFILE segments missing")
    return [icc[sequence][1] for sequence in sorted(icc)]


def _header(
    jfif: bytes | None, adobe: int | None, orientation: int, icc: list[bytes]
) -> list[bytes]:
    segments = []
    if jfif is not None:
        segments.append(_segment(_APP0, b"JFIF\x00" + jfif + b"\x00\x00"))
    if orientation != 1:
        segments.append(_segment(_APP1, b"Exif\x00\x00" + orientation_exif(orientation)))
    for sequence, chunk in enumerate(icc, 1):
        segments.append(_segment(_APP2, _ICC + bytes((sequence, len(icc))) + chunk))
    if adobe is not None:
        segments.append(_segment(_APP14, b"Adobe\x00\x64\x00\x00\x00\x00" + bytes((adobe,))))
    return segments


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload
