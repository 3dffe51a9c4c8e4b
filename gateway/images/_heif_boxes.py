"""What a HEIF or AVIF decoder will allocate, read from the file's boxes (ISO/IEC 14496-12, the
HEIF items of 23008-12, AV1's sequence header) before a library parses them: the decoders size
their buffers from the coded images (the primary item, a grid's tiles, an alpha plane's), while
the size they report is what is shown (after a clean aperture crop). A file whose declared sizes
disagree is refused: a grid whose output is not its `ispe` or that its tiles do not cover, a clean
aperture larger than the image, an AV1 frame larger than its `ispe`, metadata that would be
inflated (an item with a content encoding). The boxes are walked by gateway.images._heif, the
reader the privacy rebuild shares: what it cannot read strictly is refused here too."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import UnsupportedImage
from gateway.images import _heif
from gateway.images._heif import Fields

_MOST_OBUS = 256  # OBUs before an AV1 item's sequence header
_CODED = {b"hvc1", b"av01"}  # the codecs the two libraries decode here: HEVC (libde265), AV1
_OBU_SEQUENCE_HEADER = 1


class _Disagree(Exception):
    """The boxes declare sizes that disagree."""


@dataclass(frozen=True)
class CodedImage:
    """The primary image as coded: its `ispe` (before any crop or turn), and the pixels the
    decoder allocates for it: its tiles', or its own (an alpha plane is checked to be no
    larger)."""

    width: int
    height: int
    pixels: int


def coded_image(data: bytes, format: str) -> CodedImage:
    """The coded size of the primary image of a HEIF or AVIF `data`; UnsupportedImage when the
    boxes cannot be walked within their bounds (gateway.images._heif) or declare sizes that
    disagree."""
    try:
        heif = _heif.read(data)
        try:
            return _Sizes(heif).coded()
        except _heif.Malformed as exc:  # an item's or property's own fields, not the structure
            raise _Disagree(str(exc)) from exc
    except (_heif.Malformed, _Disagree) as exc:
        raise UnsupportedImage(
            f"This {format} file's boxes are malformed or declare sizes that disagree ({exc}); "
            "save the photo again with a standard encoder."
        ) from exc


class _Sizes:
    def __init__(self, heif: _heif.Heif) -> None:
        self.heif, self.data, self.items = heif, heif.data, heif.items
        self.primary, self.references = heif.primary, heif.references

    def coded(self) -> CodedImage:
        width, height, pixels = self._image(self.primary, tiles_allowed=True)
        self._check_clap(self.primary, width, height)
        alphas = [
            source
            for kind, source, targets in self.references
            if kind == b"auxl" and self.primary in targets and self.heif.is_alpha(source)
        ]
        if len(alphas) > 1:
            raise _Disagree(f"{len(alphas)} alpha planes on one image")
        for source in alphas:
            # Decoded with the image, counted in its bands (DecodePlan.memory): checked only.
            alpha = self._image(source, tiles_allowed=True)[2]
            if alpha > pixels:
                raise _Disagree(f"an alpha plane of {alpha} pixels on an image of {pixels}")
        for item in self.items.values():
            if item.type == b"mime" and item.encoding:
                raise UnsupportedImage(
                    f"This image's metadata is compressed ({item.encoding.decode('latin-1')}), "
                    "which the gateway does not inflate: save the photo again without it."
                )
        return CodedImage(width, height, pixels)

    def _image(self, item_id: int, tiles_allowed: bool) -> tuple[int, int, int]:
        """(width, height, pixels allocated) of an image item, checked against its ispe."""
        kind = self.items[item_id].type
        if not (kind in _CODED or (kind == b"grid" and tiles_allowed)):
            raise UnsupportedImage(
                f"This image is coded as {kind.decode('latin-1')!r}; the gateway decodes HEVC "
                "and AV1 images and grids of them: save the photo again as HEIC or AVIF."
            )
        width, height = self._ispe(item_id)
        if kind == b"grid":
            return width, height, self._grid(item_id, width, height)
        if kind == b"av01":
            frame = self._av1_frame(item_id)
            if frame[0] > width or frame[1] > height:
                raise _Disagree(
                    f"an AV1 frame of {frame[0]}x{frame[1]} under an ispe of {width}x{height}"
                )
        return width, height, width * height

    def _ispe(self, item_id: int) -> tuple[int, int]:
        ispe = self.heif.property(item_id, b"ispe")
        if ispe is None:
            raise _Disagree("an image without its size (ispe)")
        read = Fields(self.data, ispe.body + 4, ispe.end)
        width, height = read.uint(4), read.uint(4)
        if not width or not height:
            raise _Disagree("an image of no pixels")
        return width, height

    def _check_clap(self, item_id: int, width: int, height: int) -> None:
        clap = self.heif.property(item_id, b"clap")
        if clap is None:
            return
        read = Fields(self.data, clap.body, clap.end)
        fields = [read.uint(4) for _ in range(4)]  # width N/D, height N/D (offsets follow)
        if fields[1] == 0 or fields[3] == 0:
            raise _Disagree("a clean aperture with a zero denominator")
        if fields[0] > fields[1] * width or fields[2] > fields[3] * height:
            raise _Disagree(f"a clean aperture larger than the {width}x{height} image")

    def _grid(self, item_id: int, width: int, height: int) -> int:
        tiles = [t for k, s, ts in self.references if k == b"dimg" and s == item_id for t in ts]
        read = Fields(self.data, *self._item_span(item_id, 12))
        read.uint(1)  # version
        flags = read.uint(1)
        rows, columns = read.uint(1) + 1, read.uint(1) + 1
        size = 4 if flags & 1 else 2
        output = read.uint(size), read.uint(size)
        if output != (width, height):
            raise _Disagree(f"a grid of {output[0]}x{output[1]} with an ispe of {width}x{height}")
        if len(tiles) != rows * columns:
            raise _Disagree(f"a {columns}x{rows} grid of {len(tiles)} tiles")
        sizes = {self._image(tile, tiles_allowed=False)[:2] for tile in set(tiles)}
        if len(sizes) != 1:
            raise _Disagree("a grid of tiles of different sizes")
        ((tile_width, tile_height),) = sizes
        # The tiles cover the output, and no row or column of them lies wholly outside it.
        if not (columns - 1) * tile_width < width <= columns * tile_width:
            raise _Disagree(f"{columns} tiles {tile_width} wide for a grid {width} wide")
        if not (rows - 1) * tile_height < height <= rows * tile_height:
            raise _Disagree(f"{rows} tiles {tile_height} high for a grid {height} high")
        return rows * columns * tile_width * tile_height

    def _item_span(self, item_id: int, most: int) -> tuple[int, int]:
        """Where the first `most` bytes of a one-extent item lie in `data`."""
        extents = self.items[item_id].extents
        if len(extents) != 1:
            raise _Disagree("an item in other than one extent")
        offset, length = extents[0]
        return offset, offset + min(length, most)

    def _av1_frame(self, item_id: int) -> tuple[int, int]:
        """The largest frame an AV1 item's sequence header allows (what dav1d allocates)."""
        start, end = self._item_span(item_id, 1 << 16)
        for _ in range(_MOST_OBUS):
            if start >= end:
                break
            read = Fields(self.data, start, end)
            header = read.uint(1)
            kind, extension, has_size = (header >> 3) & 15, header & 4, header & 2
            read.uint(1 if extension else 0)
            size = _leb128(read) if has_size else end - read.position
            if kind == _OBU_SEQUENCE_HEADER:
                return _sequence_frame(self.data, read.position, min(read.position + size, end))
            start = read.position + size
        raise _Disagree("an AV1 item without a sequence header")


def _leb128(read: Fields) -> int:
    value = 0
    for shift in range(0, 56, 7):
        byte = read.uint(1)
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
    raise _Disagree("an OBU size of more than 8 bytes")


class _Bits:
    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data, self.bit, self.end = data, start * 8, end * 8

    def read(self, count: int) -> int:
        if self.bit + count > self.end:
            raise _Disagree("an AV1 sequence header runs past its OBU")
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
