"""What of an upload is kept: the photo as sent, less what says where it was taken or who took it.
Taken out: EXIF's GPS IFD, camera and lens serial numbers, owner, artist and author names, the
image's unique id and the maker's notes; in XMP packets, the location properties (GPS, city,
country), serial numbers and creators; in IPTC (Photoshop's resources), the same places and the
by-line. Orientation and the capture time stay.

Every change is made in place, at the same length (a TIFF IFD loses entries and is padded with
zeros; an XMP value is blanked with spaces): the pixels are never re-encoded, and every offset in
the file stays valid (the second image of an MPF JPEG, HEIF's item locations, a TIFF's strips).
Only PNG chunks carry a checksum, recomputed. Formats without known metadata stay as sent."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator

from gateway.errors import UnsupportedImage

# TIFF tags (EXIF is a TIFF structure) that identify a place, a person or a device.
_GPS_IFD, _EXIF_IFD, _XMP, _IPTC, _PHOTOSHOP = 0x8825, 0x8769, 700, 33723, 34377
_IDENTIFYING = frozenset(
    {
        _GPS_IFD,
        0x013B,  # Artist
        0x9C9D,  # XPAuthor
        0x927C,  # MakerNote: makers keep serial numbers (and some a position) in it
        0xA420,  # ImageUniqueID
        0xA430,  # CameraOwnerName
        0xA431,  # BodySerialNumber
        0xA435,  # LensSerialNumber
        0xC62F,  # CameraSerialNumber (DNG)
    }
)
_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_TYPE_BYTES.update({16: 8, 17: 8, 18: 8})  # BigTIFF's 64-bit integers and IFD offsets
# Bounds on the work a hostile file can ask for; past them it is malformed. Cameras write IFDs
# of a few dozen entries, MPF files hold two or three images, PNGs a few thousand chunks.
_MOST_IFDS = 64
_MOST_ENTRIES = 1024
_MOST_IMAGES = 16
_MOST_CHUNKS = 100_000
_MOST_XMP_BYTES = 16 << 20  # a compressed XMP packet inflated
_MP_ENTRY = 0xB002  # MPF's list of the images in the file

# XMP properties (any namespace prefix) blanked, as attributes and as elements. Every pattern
# stops at the next quote or angle bracket, so a hostile packet costs linear time.
_XMP_NAME = (
    rb"[A-Za-z][\w.-]{0,63}:(?:[Gg][Pp][Ss]\w*|Location\w*|Sublocation|City|State|Country\w*"
    rb"|\w*SerialNumber|CameraOwnerName|OwnerName|ImageUniqueID|creator|Artist)\b"
)
_XMP_ATTRIBUTE = re.compile(_XMP_NAME + rb"\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_XMP_TAG = re.compile(rb"<(/?)(" + _XMP_NAME + rb")[^<>]*?(/?)>")

# IPTC-IIM (in Photoshop's image resources): record 2's by-line, city, sub-location,
# province or state, country code and name, and the creator's contact.
_IPTC_IDENTIFYING = frozenset({80, 90, 92, 95, 100, 101, 118})
_IPTC_RESOURCE = 0x0404
_PHOTOSHOP_APP13 = b"Photoshop 3.0\x00"

_JPEG_XMP = (b"http://ns.adobe.com/xap/1.0/\x00", b"http://ns.adobe.com/xmp/extension/\x00")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Malformed(Exception):
    """A structure that points outside its block, or asks for more work than real files do."""


def strip_identifying(data: bytes) -> bytes:
    """`data` without location and identifying metadata, the same length but for a PNG's text
    chunks; `data` itself when it carries none or is not JPEG, HEIF/AVIF, WebP, PNG or TIFF.
    UnsupportedImage for a file whose own structure cannot be walked (a TIFF, a HEIF; any past
    the bounds above): what it holds cannot be told apart, nor zeroed whole like an EXIF block."""
    buf = bytearray(data)
    try:
        if buf.startswith(b"\xff\xd8"):
            _jpeg(buf, 0, primary=True)
        elif buf[4:8] == b"ftyp":
            _heif(buf)
        elif buf[:4] == b"RIFF" and buf[8:12] == b"WEBP":
            _webp(buf)
        elif buf.startswith(_PNG_SIGNATURE):
            _png(buf)
        elif buf[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            _Tiff(buf, 0, len(buf)).scrub()
    except (_Malformed, struct.error, IndexError, ValueError, zlib.error) as exc:
        raise UnsupportedImage(
            "The image's metadata is not laid out as its format says, so its "
            "location cannot be taken out before it is kept; save it again with any editor, or "
            "send it as JPEG."
        ) from exc
    return bytes(buf) if buf != data else data


class _Tiff:
    """A TIFF (or BigTIFF) structure inside `buf[start:end]`, offsets counted from `start`."""

    def __init__(self, buf: bytearray, start: int, end: int) -> None:
        order = {b"II": "<", b"MM": ">"}.get(bytes(buf[start : start + 2]))
        self.buf, self.start, self.end = buf, start, end
        if order is None:
            raise _Malformed("no TIFF header")
        self.order = order
        version = self.read("H", 2)
        if version not in (42, 43):
            raise _Malformed("no TIFF header")
        big = version == 43
        # BigTIFF: 8-byte offsets and entry counts, 20-byte entries holding up to 8 bytes inline
        self.offset, self.count = ("Q", "Q") if big else ("I", "H")
        self.first, self.entry_size, self.inline = (8, 20, 8) if big else (4, 12, 4)

    def _at(self, offset: int, size: int) -> int:
        if offset < 0 or self.start + offset + size > self.end:
            raise _Malformed(f"offset {offset} outside the block")
        return self.start + offset

    def read(self, fmt: str, offset: int) -> int:
        at = self._at(offset, struct.calcsize("<" + fmt))
        value: int = struct.unpack_from(self.order + fmt, self.buf, at)[0]
        return value

    def _next_field(self, ifd: int, entries: int) -> int:
        return ifd + struct.calcsize("<" + self.count) + self.entry_size * entries

    def zero(self, offset: int, size: int) -> None:
        at = self._at(offset, size)
        self.buf[at : at + size] = bytes(size)

    def ifds(self) -> Iterator[int]:
        """The chain of IFDs from the header's first (a TIFF's pages; EXIF's IFD0 and IFD1)."""
        offset, seen = self.read(self.offset, self.first), set[int]()
        while offset and offset not in seen and len(seen) < _MOST_IFDS:
            seen.add(offset)
            yield offset
            offset = self.read(self.offset, self._next_field(offset, self.read(self.count, offset)))

    def entries(self, ifd: int) -> list[tuple[int, int, int, int]]:
        """(tag, value size in bytes, value offset, entry offset) of each entry of `ifd`."""
        count = self.read(self.count, ifd)
        if count > _MOST_ENTRIES:
            raise _Malformed(f"an IFD of {count} entries")
        found = []
        for index in range(count):
            entry = self._next_field(ifd, index)
            tag, kind = self.read("H", entry), self.read("H", entry + 2)
            size = _TYPE_BYTES.get(kind, 0) * self.read(self.offset, entry + 4)
            value = entry + 4 + self.inline
            if size > self.inline:
                value = self.read(self.offset, value)
            found.append((tag, size, value, entry))
        return found

    def scrub(self) -> None:
        for ifd in self.ifds():
            self.scrub_ifd(ifd, depth=0)

    def scrub_ifd(self, ifd: int, depth: int) -> None:
        entries = self.entries(ifd)
        next_field = self._next_field(ifd, len(entries))
        end = next_field + struct.calcsize("<" + self.offset)
        kept = []
        for tag, size, value, entry in entries:
            if tag not in _IDENTIFYING:
                at = self._at(entry, self.entry_size)
                kept.append(bytes(self.buf[at : at + self.entry_size]))
                if tag == _EXIF_IFD and depth == 0:
                    self.scrub_ifd(self.pointer(value, size), depth + 1)
                elif tag in (_XMP, _IPTC, _PHOTOSHOP) and size:
                    at = self._at(value, size)
                    if tag == _XMP:
                        self.buf[at : at + size] = blank_xmp(bytes(self.buf[at : at + size]))
                    else:
                        (_blank_iptc if tag == _IPTC else _photoshop)(self.buf, at, at + size)
                continue
            if tag == _GPS_IFD:
                self.zero_ifd(self.pointer(value, size))
            elif size > self.inline:
                self.zero(value, size)
        if len(kept) == len(entries):
            return
        # The IFD shrinks where it is: its entries move up, the next-IFD offset follows them,
        # zeros fill the rest. Nothing points inside an IFD, so every other offset holds.
        at = self._at(ifd, end - ifd)
        shrunk = struct.pack(self.order + self.count, len(kept)) + b"".join(kept)
        shrunk += bytes(self.buf[self.start + next_field : self.start + end])
        self.buf[at : at + len(shrunk)] = shrunk
        self.zero(ifd + len(shrunk), end - ifd - len(shrunk))

    def pointer(self, value: int, size: int) -> int:
        """The IFD offset that an entry's value holds (LONG, or BigTIFF's IFD8)."""
        return self.read("I" if size == 4 else "Q", value)

    def zero_ifd(self, ifd: int) -> None:
        entries = self.entries(ifd)
        for _, size, value, _ in entries:
            if size > self.inline:
                self.zero(value, size)
        end = self._next_field(ifd, len(entries)) + struct.calcsize("<" + self.offset)
        self.zero(ifd, end - ifd)


def _exif(buf: bytearray, start: int, end: int) -> None:
    """Scrub the EXIF TIFF block `buf[start:end]`; one that cannot be walked is zeroed whole: its
    location cannot be told apart from the rest."""
    try:
        _Tiff(buf, start, end).scrub()
    except _Malformed:
        buf[start:end] = bytes(end - start)


def blank_xmp(packet: bytes) -> bytes:
    """`packet` with the values of its location and identifying properties blanked with spaces:
    an attribute's between its quotes, an element's between its tags (a structure's fields too)."""
    out = bytearray(packet)
    for attribute in _XMP_ATTRIBUTE.finditer(packet):
        group = 1 if attribute.start(1) >= 0 else 2
        start, end = attribute.span(group)
        out[start:end] = b" " * (end - start)
    open_name, content = b"", 0
    for tag in _XMP_TAG.finditer(packet):
        closing, name, empty = tag.groups()
        if not open_name and not closing and not empty:
            open_name, content = name, tag.end()
        elif closing and name == open_name:
            out[content : tag.start()] = b" " * (tag.start() - content)
            open_name = b""
    return bytes(out)


def _blank_xmp_at(buf: bytearray, start: int, end: int) -> None:
    buf[start:end] = blank_xmp(bytes(buf[start:end]))


def _blank_iptc(buf: bytearray, start: int, end: int) -> None:
    """Blank with spaces the identifying datasets of the IPTC-IIM block `buf[start:end]`."""
    position = start
    while position + 5 <= end and buf[position] == 0x1C:
        record, dataset, size = struct.unpack_from(">BBH", buf, position + 1)
        if size & 0x8000:  # an extended length: a blob, never one of the texts blanked
            return
        value, position = position + 5, min(position + 5 + size, end)
        if record == 2 and dataset in _IPTC_IDENTIFYING:
            buf[value:position] = b" " * (position - value)


def _photoshop(buf: bytearray, start: int, end: int) -> None:
    """The IPTC block among Photoshop's image resources (`8BIM`, id, padded name, size, data)."""
    position = start
    while position + 12 <= end and buf.startswith(b"8BIM", position):
        resource, name = struct.unpack_from(">HB", buf, position + 4)
        position += 6 + name + 1 + (name + 1) % 2
        if position + 4 > end:
            return
        size = struct.unpack_from(">I", buf, position)[0]
        data = position + 4
        if resource == _IPTC_RESOURCE:
            _blank_iptc(buf, data, min(data + size, end))
        position = data + size + size % 2


def _jpeg(buf: bytearray, soi: int, primary: bool) -> None:
    """The metadata segments of the JPEG at `soi`, up to its first scan; for the primary image,
    also those of the images its MPF segment lists (an MPO's views, an HDR gain map)."""
    position, images, segments = soi + 2, [], 0
    while position + 4 <= len(buf) and buf[position] == 0xFF:
        marker = buf[position + 1]
        segments += 1
        if segments > _MOST_ENTRIES:
            raise _Malformed("more segments before the first scan than any JPEG has")
        if marker in (0xD9, 0xDA):  # EOI, SOS
            break
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7:  # fill, TEM, RSTn
            position += 1 if marker == 0xFF else 2
            continue
        body = position + 4
        end = position + 2 + struct.unpack_from(">H", buf, position + 2)[0]
        if end > len(buf) or end < body:
            break
        if marker == 0xE1 and buf.startswith(b"Exif\x00\x00", body):
            _exif(buf, body + 6, end)
        elif marker == 0xE1 and any(buf.startswith(ns, body) for ns in _JPEG_XMP):
            _blank_xmp_at(buf, body, end)
        elif marker == 0xED and buf.startswith(_PHOTOSHOP_APP13, body):
            _photoshop(buf, body + len(_PHOTOSHOP_APP13), end)
        elif marker == 0xE2 and primary and buf.startswith(b"MPF\x00", body):
            images = _mpf_images(buf, body + 4, end)
        position = end
    for image in images:
        if buf.startswith(b"\xff\xd8", image):
            _jpeg(buf, image, primary=False)


def _mpf_images(buf: bytearray, start: int, end: int) -> list[int]:
    """Where the images other than the first of an MPF segment start in the file (MPF counts
    from its own TIFF header)."""
    try:
        mpf = _Tiff(buf, start, end)
        for ifd in mpf.ifds():
            for tag, size, value, _ in mpf.entries(ifd):
                if tag == _MP_ENTRY:
                    count = min(size // 16, _MOST_IMAGES)
                    offsets = {mpf.read("I", value + 16 * i + 8) for i in range(count)}
                    return sorted(start + offset for offset in offsets if offset)
    except _Malformed:
        pass
    return []


def _boxes(buf: bytearray, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, content start, end) of the ISOBMFF boxes in `buf[start:end]`."""
    position, boxes = start, 0
    while position + 8 <= end:
        boxes += 1
        if boxes > _MOST_CHUNKS:
            raise _Malformed("more boxes than any HEIF has")
        size, kind = struct.unpack_from(">I4s", buf, position)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", buf, position + 8)[0], 16
        elif size == 0:
            size = end - position
        if size < header or position + size > end:
            raise _Malformed(f"box {kind!r} overruns its parent")
        yield kind, position + header, position + size
        position += size


def _number(buf: bytearray, position: int, size: int) -> tuple[int, int]:
    return int.from_bytes(buf[position : position + size], "big"), position + size


def _heif(buf: bytearray) -> None:
    """HEIF and AVIF: the Exif items and the XMP items (mime application/rdf+xml) of `meta`."""
    meta = next(((s, e) for kind, s, e in _boxes(buf, 0, len(buf)) if kind == b"meta"), None)
    if meta is None:
        return
    children = {kind: (s, e) for kind, s, e in _boxes(buf, meta[0] + 4, meta[1])}
    if b"iinf" not in children or b"iloc" not in children:
        return
    exif, xmp = _heif_items(buf, *children[b"iinf"])
    idat = children.get(b"idat", (0, 0))[0]
    for item, extents in _heif_locations(buf, *children[b"iloc"], idat).items():
        if item not in exif and item not in xmp:
            continue
        payload = bytearray(b"".join(bytes(buf[s : s + n]) for s, n in extents))
        if item in xmp:
            payload[:] = blank_xmp(bytes(payload))
        elif len(payload) >= 4:  # a 4-byte offset to the TIFF header, then EXIF
            tiff = 4 + int.from_bytes(payload[:4], "big")
            if tiff < len(payload):
                _exif(payload, tiff, len(payload))
        for s, n in extents:
            buf[s : s + n] = payload[:n]
            del payload[:n]


def _heif_items(buf: bytearray, start: int, end: int) -> tuple[set[int], set[int]]:
    """The ids of the Exif items and of the XMP items listed in `iinf`."""
    version = buf[start]
    first = start + 4 + (2 if version == 0 else 4)
    exif, xmp = set(), set()
    for kind, s, _ in _boxes(buf, first, end):
        if kind != b"infe" or buf[s] < 2:
            continue
        item, position = _number(buf, s + 4, 2 if buf[s] == 2 else 4)
        item_type = bytes(buf[position + 2 : position + 6])
        name_end = buf.find(b"\x00", position + 6)
        content_type = bytes(buf[name_end + 1 : buf.find(b"\x00", name_end + 1)])
        if item_type == b"Exif":
            exif.add(item)
        elif item_type == b"mime" and content_type == b"application/rdf+xml":
            xmp.add(item)
    return exif, xmp


def _heif_locations(
    buf: bytearray, start: int, end: int, idat: int
) -> dict[int, list[tuple[int, int]]]:
    """Each item's extents, as (file offset, length), from `iloc` (in the file or in `idat`)."""
    version = buf[start]
    offset_size, length_size = buf[start + 4] >> 4, buf[start + 4] & 15
    base_size, index_size = buf[start + 5] >> 4, buf[start + 5] & 15 if version in (1, 2) else 0
    count, position = _number(buf, start + 6, 2 if version < 2 else 4)
    if count > _MOST_CHUNKS:
        raise _Malformed("more items than any HEIF has")
    located: dict[int, list[tuple[int, int]]] = {}
    for _ in range(count):
        item, position = _number(buf, position, 2 if version < 2 else 4)
        method = 0
        if version in (1, 2):
            method, position = _number(buf, position, 2)
        position += 2  # data_reference_index
        base, position = _number(buf, position, base_size)
        extent_count, position = _number(buf, position, 2)
        extents = []
        for _ in range(extent_count):
            position += index_size
            offset, position = _number(buf, position, offset_size)
            length, position = _number(buf, position, length_size)
            extents.append(((idat if method & 15 == 1 else 0) + base + offset, length))
        if position > end:
            raise _Malformed("iloc overruns its box")
        if method & 15 in (0, 1) and all(0 < n and s + n <= len(buf) for s, n in extents):
            located[item] = extents
    return located


def _webp(buf: bytearray) -> None:
    position = 12
    for _ in range(_MOST_CHUNKS):
        if position + 8 > len(buf):
            return
        kind, size = struct.unpack_from("<4sI", buf, position)
        start, end = position + 8, min(position + 8 + size, len(buf))
        if kind == b"EXIF":
            _exif(buf, start + (6 if buf.startswith(b"Exif\x00\x00", start) else 0), end)
        elif kind == b"XMP ":
            _blank_xmp_at(buf, start, end)
        position = start + size + (size & 1)
    raise _Malformed("more chunks than any WebP has")


def _png(buf: bytearray) -> None:
    """eXIf scrubbed, an XMP iTXt blanked (inflated and deflated again when compressed), the
    hex-encoded 'Raw profile type' text chunks of ImageMagick dropped: a PNG's chunks follow one
    another and nothing points into them, so one may change length."""
    edits: list[tuple[int, int, bytes]] = []  # (start, end, replacement) of whole chunks
    position = len(_PNG_SIGNATURE)
    for _ in range(_MOST_CHUNKS):
        if position + 12 > len(buf):
            break
        size, kind = struct.unpack_from(">I4s", buf, position)
        start, end = position + 8, position + 8 + size
        if end + 4 > len(buf):
            break
        data: bytes | None = None
        if kind == b"eXIf":
            exif = bytearray(buf[start:end])
            _exif(exif, 0, len(exif))
            data = bytes(exif)
        elif kind == b"iTXt" and buf.startswith(b"XML:com.adobe.xmp\x00", start):
            data = _png_xmp(bytes(buf[start:end]))
        elif kind in (b"tEXt", b"zTXt", b"iTXt") and buf.startswith(b"Raw profile type ", start):
            data = b""
        if data is not None and data != buf[start:end]:
            chunk = struct.pack(">I4s", len(data), kind) + data
            chunk += struct.pack(">I", zlib.crc32(chunk[4:]))
            edits.append((position, end + 4, chunk if data else b""))
        position = end + 4
    else:
        raise _Malformed("more chunks than any PNG has")
    pieces: list[bytes] = []
    last = 0
    for start, end, chunk in edits:
        pieces += [bytes(buf[last:start]), chunk]
        last = end
    if edits:
        buf[:] = b"".join(pieces) + buf[last:]


def _png_xmp(data: bytes) -> bytes:
    """An XMP iTXt chunk's data, blanked; empty (the chunk dropped) when it cannot be read, or
    inflates past _MOST_XMP_BYTES."""
    keyword = len(b"XML:com.adobe.xmp\x00")
    try:
        compressed = data[keyword] == 1
        language = data.index(b"\x00", keyword + 2)
        text = data.index(b"\x00", language + 1) + 1
        inflater = zlib.decompressobj()
        packet = inflater.decompress(data[text:], _MOST_XMP_BYTES) if compressed else data[text:]
    except (ValueError, IndexError, zlib.error):
        return b""
    if compressed and (inflater.unconsumed_tail or not inflater.eof):
        return b""
    blanked = blank_xmp(packet)
    if blanked == packet:
        return data
    return data[:text] + (zlib.compress(blanked) if compressed else blanked)
