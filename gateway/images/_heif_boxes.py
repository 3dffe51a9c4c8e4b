"""What a HEIF or AVIF decoder will allocate, read from the file's boxes (ISO/IEC 14496-12, the
HEIF items of 23008-12, AV1's sequence header) before a library parses them: the decoders size
their buffers from the coded images (the primary item, a grid's tiles, an alpha plane's), while
the size they report is what is shown (after a clean aperture crop). A file whose declared sizes
disagree is refused: a grid whose output is not its `ispe` or that its tiles do not cover, a clean
aperture larger than the image, an AV1 frame larger than its `ispe`, metadata that would be
inflated (an item with a content encoding). The walk reads a bounded number of boxes at two
known depths (`meta`'s children and `ipco`'s, `iinf`'s, `iref`'s), each within its parent."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from gateway.errors import UnsupportedImage

# libheif refuses files of more than 1000 items (its default security limit); an iPhone's 48 MP
# HEIC has about 200 (its tiles, a thumbnail, EXIF, XMP, auxiliary images).
_MOST_ITEMS = 1000
_MOST_BOXES = 4 * _MOST_ITEMS  # in one container: items, properties, references
_MOST_EXTENTS = 32  # libheif's max_iloc_extents_per_item
_MOST_REFERENCES = 256 * 256  # item references in all: a grid's largest, 256 rows of 256 tiles
_MOST_OBUS = 256  # OBUs before an AV1 item's sequence header
_CODED = {b"hvc1", b"av01"}  # the codecs the two libraries decode here: HEVC (libde265), AV1
_ALPHA = {b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha", b"urn:mpeg:hevc:2015:auxid:1"}
_OBU_SEQUENCE_HEADER = 1


class _Malformed(Exception):
    """The boxes cannot be read as HEIF: their sizes or counts do not fit."""


@dataclass(frozen=True)
class CodedImage:
    """The primary image as coded: its `ispe` (before any crop or turn), and the pixels the
    decoder allocates for it: its tiles', or its own (an alpha plane is checked to be no
    larger)."""

    width: int
    height: int
    pixels: int


@dataclass
class _Item:
    type: bytes = b""
    encoding: bytes = b""  # a `mime` item's content encoding ("deflate"): inflated when read
    method: int = 0  # iloc's construction method: 0 file offsets, 1 `idat`
    extents: tuple[tuple[int, int], ...] = ()  # (offset, length)
    properties: tuple[int, ...] = ()  # 1-based indexes into ipco


def coded_image(data: bytes, format: str) -> CodedImage:
    """The coded size of the primary image of a HEIF or AVIF `data`; UnsupportedImage when the
    boxes cannot be walked within their bounds or declare sizes that disagree."""
    try:
        return _Heif(data).coded()
    except _Malformed as exc:
        raise UnsupportedImage(
            f"This {format} file's boxes are malformed or declare sizes that disagree ({exc}); "
            "save the photo again with a standard encoder."
        ) from exc
    except (struct.error, LookupError, ValueError) as exc:
        raise UnsupportedImage(
            f"This {format} file's boxes are truncated or malformed; save the photo again."
        ) from exc


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes between `start` and `end`."""
    count = 0
    while start < end:
        count += 1
        if count > _MOST_BOXES:
            raise _Malformed(f"more than {_MOST_BOXES} boxes in one container")
        if start + 8 > end:
            raise _Malformed("a box header runs past its container")
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1:
            if start + 16 > end:
                raise _Malformed("a box header runs past its container")
            (size,) = struct.unpack_from(">Q", data, start + 8)
            header = 16
        elif size == 0:
            size = end - start  # to the end of the file
        if size < header or start + size > end:
            raise _Malformed(f"a {kind!r} box of {size} bytes does not fit its container")
        yield kind, start + header, start + size
        start += size


class _Reader:
    """Big-endian fields read in order from data[position:end]."""

    def __init__(self, data: bytes, position: int, end: int) -> None:
        self.data, self.position, self.end = data, position, end

    def uint(self, size: int) -> int:
        if size == 0:
            return 0
        if self.position + size > self.end:
            raise _Malformed("a field runs past its box")
        value = int.from_bytes(self.data[self.position : self.position + size], "big")
        self.position += size
        return value

    def string(self) -> bytes:
        """A NUL-terminated string (its end is the box's when the NUL is missing)."""
        stop = self.data.find(b"\0", self.position, self.end)
        stop = self.end if stop < 0 else stop
        value = self.data[self.position : stop]
        self.position = min(stop + 1, self.end)
        return value


class _Heif:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.items: dict[int, _Item] = {}
        self.properties: list[tuple[bytes, int, int]] = []  # ipco's, in order
        self.references: list[tuple[bytes, int, tuple[int, ...]]] = []  # (type, from, to)
        self.referenced = 0
        self.primary: int | None = None
        self.idat = (0, 0)
        metas = [(start, end) for kind, start, end in _boxes(data, 0, len(data)) if kind == b"meta"]
        if len(metas) != 1:
            raise _Malformed(f"{len(metas)} meta boxes")
        self._meta(*metas[0])

    def _item(self, item: int) -> _Item:
        if item not in self.items:
            if len(self.items) >= _MOST_ITEMS:
                raise _Malformed(f"more than {_MOST_ITEMS} items")
            self.items[item] = _Item()
        return self.items[item]

    def _meta(self, start: int, end: int) -> None:
        seen: set[bytes] = set()
        for kind, body, stop in _boxes(self.data, start + 4, end):  # meta is a FullBox
            if kind in seen and kind in (b"pitm", b"iloc", b"iinf", b"iref", b"iprp", b"idat"):
                raise _Malformed(f"two {kind.decode()} boxes")  # which one a reader takes varies
            seen.add(kind)
            if kind == b"pitm":
                version = self.data[body]
                self.primary = _Reader(self.data, body + 4, stop).uint(2 if version == 0 else 4)
            elif kind == b"iloc":
                self._iloc(body, stop)
            elif kind == b"iinf":
                self._iinf(body, stop)
            elif kind == b"iref":
                self._iref(body, stop)
            elif kind == b"iprp":
                self._iprp(body, stop)
            elif kind == b"idat":
                self.idat = (body, stop)

    def _iloc(self, start: int, end: int) -> None:
        read = _Reader(self.data, start, end)
        version = read.uint(1)
        read.uint(3)
        if version > 2:
            raise _Malformed(f"iloc version {version}")
        sizes = read.uint(2)
        offset_size, length_size = sizes >> 12, (sizes >> 8) & 15
        base_size, index_size = (sizes >> 4) & 15, (sizes & 15 if version else 0)
        for _ in range(read.uint(2 if version < 2 else 4)):
            item = self._item(read.uint(2 if version < 2 else 4))
            if item.extents:
                raise _Malformed("an item located twice")
            item.method = read.uint(2) & 15 if version else 0
            read.uint(2)  # data_reference_index: 0, this file
            base = read.uint(base_size)
            count = read.uint(2)
            if count > _MOST_EXTENTS:
                raise _Malformed(f"an item in more than {_MOST_EXTENTS} extents")
            extents = []
            for _ in range(count):
                read.uint(index_size)
                extents.append((base + read.uint(offset_size), read.uint(length_size)))
            item.extents = tuple(extents)

    def _iinf(self, start: int, end: int) -> None:
        version = self.data[start]
        body = start + 4 + (2 if version == 0 else 4)
        for kind, entry, stop in _boxes(self.data, body, end):
            if kind != b"infe":
                continue
            read = _Reader(self.data, entry, stop)
            infe_version = read.uint(1)
            read.uint(3)
            if infe_version < 2:
                raise _Malformed(f"item info version {infe_version}")
            item = self._item(read.uint(2 if infe_version == 2 else 4))
            read.uint(2)  # protection index
            item.type = read.data[read.position : read.position + 4]
            read.uint(4)
            read.string()  # name
            if item.type == b"mime":
                read.string()  # content type
                item.encoding = read.string()

    def _iref(self, start: int, end: int) -> None:
        size = 2 if self.data[start] == 0 else 4
        for kind, body, stop in _boxes(self.data, start + 4, end):
            read = _Reader(self.data, body, stop)
            source, count = read.uint(size), read.uint(2)
            self.referenced += count
            if self.referenced > _MOST_REFERENCES:
                raise _Malformed(f"more than {_MOST_REFERENCES} item references")
            targets = tuple(read.uint(size) for _ in range(count))
            self.references.append((kind, source, targets))

    def _iprp(self, start: int, end: int) -> None:
        for kind, body, stop in _boxes(self.data, start, end):
            if kind == b"ipco":
                if self.properties:
                    raise _Malformed("two ipco boxes")
                self.properties = list(_boxes(self.data, body, stop))
            elif kind == b"ipma":
                self._ipma(body, stop)

    def _ipma(self, start: int, end: int) -> None:
        read = _Reader(self.data, start, end)
        version, flags = read.uint(1), read.uint(3)
        for _ in range(read.uint(4)):
            item = self._item(read.uint(2 if version == 0 else 4))
            if item.properties:
                raise _Malformed("an item's properties associated twice")
            count = read.uint(1)
            mask = 0x7FFF if flags & 1 else 0x7F
            item.properties = tuple(read.uint(2 if flags & 1 else 1) & mask for _ in range(count))

    # The sizes

    def coded(self) -> CodedImage:
        if self.primary is None or self.primary not in self.items:
            raise _Malformed("no primary item")
        width, height, pixels = self._image(self.primary, tiles_allowed=True)
        self._check_clap(self.primary, width, height)
        alphas = [
            source
            for kind, source, targets in self.references
            if kind == b"auxl" and self.primary in targets and self._is_alpha(source)
        ]
        if len(alphas) > 1:
            raise _Malformed(f"{len(alphas)} alpha planes on one image")
        for source in alphas:
            # Decoded with the image, counted in its bands (DecodePlan.memory): checked only.
            alpha = self._image(source, tiles_allowed=True)[2]
            if alpha > pixels:
                raise _Malformed(f"an alpha plane of {alpha} pixels on an image of {pixels}")
        for item in self.items.values():
            if item.type == b"mime" and item.encoding:
                raise UnsupportedImage(
                    f"This image's metadata is compressed ({item.encoding.decode('latin-1')}), "
                    "which the gateway does not inflate: save the photo again without it."
                )
        return CodedImage(width, height, pixels)

    def _image(self, item_id: int, tiles_allowed: bool) -> tuple[int, int, int]:
        """(width, height, pixels allocated) of an image item, checked against its ispe."""
        item = self.items.get(item_id)
        kind = item.type if item else b"none"
        if item is None or not (kind in _CODED or (kind == b"grid" and tiles_allowed)):
            raise UnsupportedImage(
                f"This image is coded as {kind.decode('latin-1')!r}; the gateway decodes HEVC "
                "and AV1 images and grids of them: save the photo again as HEIC or AVIF."
            )
        width, height = self._ispe(item_id)
        if kind == b"grid":
            return width, height, self._grid(item_id, width, height)
        if kind == b"av01":
            frame = self._av1_frame(item)
            if frame[0] > width or frame[1] > height:
                raise _Malformed(
                    f"an AV1 frame of {frame[0]}x{frame[1]} under an ispe of {width}x{height}"
                )
        return width, height, width * height

    def _property(self, item_id: int, kind: bytes) -> tuple[int, int] | None:
        found = None
        for index in self.items[item_id].properties:
            if not 1 <= index <= len(self.properties):
                raise _Malformed(f"property {index} of {len(self.properties)}")
            name, start, end = self.properties[index - 1]
            if name == kind:
                if found is not None:
                    raise _Malformed(f"two {kind.decode()} properties on one item")
                found = (start, end)
        return found

    def _ispe(self, item_id: int) -> tuple[int, int]:
        place = self._property(item_id, b"ispe")
        if place is None:
            raise _Malformed("an image without its size (ispe)")
        read = _Reader(self.data, place[0] + 4, place[1])
        width, height = read.uint(4), read.uint(4)
        if not width or not height:
            raise _Malformed("an image of no pixels")
        return width, height

    def _check_clap(self, item_id: int, width: int, height: int) -> None:
        place = self._property(item_id, b"clap")
        if place is None:
            return
        read = _Reader(self.data, *place)
        fields = [read.uint(4) for _ in range(4)]  # width N/D, height N/D (offsets follow)
        if fields[1] == 0 or fields[3] == 0:
            raise _Malformed("a clean aperture with a zero denominator")
        if fields[0] > fields[1] * width or fields[2] > fields[3] * height:
            raise _Malformed(f"a clean aperture larger than the {width}x{height} image")

    def _grid(self, item_id: int, width: int, height: int) -> int:
        tiles = [t for k, s, ts in self.references if k == b"dimg" and s == item_id for t in ts]
        read = _Reader(self.data, *self._item_span(self.items[item_id], 12))
        read.uint(1)  # version
        flags = read.uint(1)
        rows, columns = read.uint(1) + 1, read.uint(1) + 1
        size = 4 if flags & 1 else 2
        output = read.uint(size), read.uint(size)
        if output != (width, height):
            raise _Malformed(f"a grid of {output[0]}x{output[1]} with an ispe of {width}x{height}")
        if len(tiles) != rows * columns:
            raise _Malformed(f"a {columns}x{rows} grid of {len(tiles)} tiles")
        sizes = {self._image(tile, tiles_allowed=False)[:2] for tile in set(tiles)}
        if len(sizes) != 1:
            raise _Malformed("a grid of tiles of different sizes")
        ((tile_width, tile_height),) = sizes
        # The tiles cover the output, and no row or column of them lies wholly outside it.
        if not (columns - 1) * tile_width < width <= columns * tile_width:
            raise _Malformed(f"{columns} tiles {tile_width} wide for a grid {width} wide")
        if not (rows - 1) * tile_height < height <= rows * tile_height:
            raise _Malformed(f"{rows} tiles {tile_height} high for a grid {height} high")
        return rows * columns * tile_width * tile_height

    def _is_alpha(self, item_id: int) -> bool:
        if item_id not in self.items:
            return False
        place = self._property(item_id, b"auxC")
        return place is not None and _Reader(self.data, place[0] + 4, place[1]).string() in _ALPHA

    def _item_span(self, item: _Item, most: int) -> tuple[int, int]:
        """Where the first `most` bytes of a one-extent item lie in `data` (its iloc extent, in
        the file or in idat; a length of 0 is to the end)."""
        if len(item.extents) != 1 or item.method not in (0, 1):
            raise _Malformed("an item in other than one extent of this file")
        offset, length = item.extents[0]
        start, end = (0, len(self.data)) if item.method == 0 else self.idat
        first = start + offset
        last = end if length == 0 else first + length
        if last > end:
            raise _Malformed("an item's data lies past its container")
        return first, min(last, first + most)

    def _av1_frame(self, item: _Item) -> tuple[int, int]:
        """The largest frame an AV1 item's sequence header allows (what dav1d allocates)."""
        start, end = self._item_span(item, 1 << 16)
        for _ in range(_MOST_OBUS):
            if start >= end:
                break
            read = _Reader(self.data, start, end)
            header = read.uint(1)
            kind, extension, has_size = (header >> 3) & 15, header & 4, header & 2
            read.uint(1 if extension else 0)
            size = _leb128(read) if has_size else end - read.position
            if kind == _OBU_SEQUENCE_HEADER:
                return _sequence_frame(self.data, read.position, min(read.position + size, end))
            start = read.position + size
        raise _Malformed("an AV1 item without a sequence header")


def _leb128(read: _Reader) -> int:
    value = 0
    for shift in range(0, 56, 7):
        byte = read.uint(1)
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
    raise _Malformed("an OBU size of more than 8 bytes")


class _Bits:
    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data, self.bit, self.end = data, start * 8, end * 8

    def read(self, count: int) -> int:
        if self.bit + count > self.end:
            raise _Malformed("an AV1 sequence header runs past its OBU")
        value = 0
        for _ in range(count):
            byte = self.data[self.bit >> 3]
            value = (value << 1) | ((byte >> (7 - (self.bit & 7))) & 1)
            self.bit += 1
        return value

    def uvlc(self) -> None:
        zeros = 0
        while not self.read(1):
            zeros += 1
            if zeros >= 32:
                return
        self.read(zeros)


def _sequence_frame(data: bytes, start: int, end: int) -> tuple[int, int]:
    """max_frame_width and max_frame_height of an AV1 sequence header (AV1 spec 5.5.1)."""
    bits = _Bits(data, start, end)
    bits.read(4)  # seq_profile, still_picture
    if bits.read(1):  # reduced_still_picture_header
        bits.read(5)
    else:
        decoder_model, delay_length = 0, 0
        if bits.read(1):  # timing_info_present_flag
            bits.read(64)
            if bits.read(1):  # equal_picture_interval
                bits.uvlc()
            decoder_model = bits.read(1)
            if decoder_model:
                delay_length = bits.read(5) + 1
                bits.read(32 + 5 + 5)
        initial_display_delay = bits.read(1)
        for _ in range(bits.read(5) + 1):  # operating points
            bits.read(12)
            if bits.read(5) > 7:
                bits.read(1)
            if decoder_model and bits.read(1):
                bits.read(2 * delay_length + 1)
            if initial_display_delay and bits.read(1):
                bits.read(4)
    width_bits, height_bits = bits.read(4) + 1, bits.read(4) + 1
    return bits.read(width_bits) + 1, bits.read(height_bits) + 1
