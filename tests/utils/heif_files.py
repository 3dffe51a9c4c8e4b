"""HEIF and AVIF files rebuilt around a tile a real encoder wrote (pillow-heif's x265 for HEVC,
Pillow's libavif for AV1): its codec configuration and coded bytes are taken from the encoder's
file, and the boxes around them are written here, declaring whatever sizes a test needs (a grid
of that tile referenced many times, an `ispe`, a clean aperture, a grid output) — the lies a
hostile file tells, with coded data the real decoders accept."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pillow_heif
from PIL import Image

pillow_heif.register_heif_opener()


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full_box(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, end) of the boxes between `start` and `end` (no 64-bit sizes)."""
    while start < end:
        size, kind = struct.unpack_from(">I4s", data, start)
        yield kind, start + 8, start + size
        start += size


@dataclass(frozen=True)
class Tile:
    """One coded image a real encoder wrote: its item type, codec configuration box (hvcC or
    av1C, whole), coded bytes and size."""

    type: bytes
    config: bytes
    data: bytes
    width: int
    height: int


def encoded_tile(format: str, width: int, height: int) -> Tile:
    """A uniform `width`x`height` image encoded as one item by the real encoder of `format`."""
    buffer = io.BytesIO()
    pillow_heif.options.GRID_TILE_SIZE = 0
    options = {"speed": 10} if format == "AVIF" else {}
    Image.new("RGB", (width, height), (40, 160, 90)).save(
        buffer, format=format, quality=50, **options
    )
    file = buffer.getvalue()
    meta = next((s, e) for k, s, e in boxes(file, 0, len(file)) if k == b"meta")
    children = {k: (s, e) for k, s, e in boxes(file, meta[0] + 4, meta[1])}
    ipco = next((s, e) for k, s, e in boxes(file, *children[b"iprp"]) if k == b"ipco")
    config = next(file[s - 8 : e] for k, s, e in boxes(file, *ipco) if k in (b"hvcC", b"av1C"))
    # iloc: one item in one extent, with 4-byte offsets and lengths (both encoders' choice).
    start = children[b"iloc"][0]
    version, base_size = file[start], file[start + 5] >> 4
    at = start + 4 + 2 + 2 + 2 + (2 if version else 0) + 2
    base = int.from_bytes(file[at : at + base_size], "big")
    offset, length = struct.unpack_from(">II", file, at + base_size + 2)
    offset += base
    kind = b"av01" if format == "AVIF" else b"hvc1"
    return Tile(kind, config, file[offset : offset + length], width, height)


def ispe(width: int, height: int) -> bytes:
    return full_box(b"ispe", 0, 0, struct.pack(">II", width, height))


def clap(width: int, height: int) -> bytes:
    return box(b"clap", struct.pack(">8I", width, 1, height, 1, 0, 1, 0, 1))


def single_file(tile: Tile, declared: tuple[int, int] | None = None) -> bytes:
    """`tile` as the primary image, its ispe declaring `declared` (default: its own size)."""
    width, height = declared or (tile.width, tile.height)
    return heif_file(tile, [(tile.type, [tile.config, ispe(width, height)])], [], None)


def grid_file(
    tile: Tile,
    rows: int,
    columns: int,
    output: tuple[int, int] | None = None,
    grid_ispe: tuple[int, int] | None = None,
    crop: tuple[int, int] | None = None,
) -> bytes:
    """A grid of `rows` x `columns` references to `tile` (one item each, all on the same coded
    bytes), its output size `output` (default: the tiles' area) in the grid data and
    `grid_ispe` (default: the output) in its ispe; `crop`: a clean aperture on the grid."""
    output = output or (columns * tile.width, rows * tile.height)
    grid_ispe = grid_ispe or output
    grid_properties = [ispe(*grid_ispe), *([clap(*crop)] if crop else [])]
    items = [(b"grid", grid_properties)]
    items += [(tile.type, [tile.config, ispe(tile.width, tile.height)])] * (rows * columns)
    grid = struct.pack(">BBBBII", 0, 1, rows - 1, columns - 1, *output)
    return heif_file(tile, items, [(b"dimg", 1, list(range(2, 2 + rows * columns)))], grid)


def heif_file(
    tile: Tile,
    items: list[tuple[bytes, list[bytes]]],
    references: list[tuple[bytes, int, list[int]]],
    grid: bytes | None,
) -> bytes:
    """Items 1.. of `items` (type, property boxes), item 1 primary; coded items located on the
    tile's bytes in `mdat`, a grid item's data in `idat`."""
    brand = b"avif" if tile.type == b"av01" else b"heic"
    ftyp = box(b"ftyp", brand + bytes(4) + b"mif1" + brand + b"miaf")
    properties: list[bytes] = []
    associations = b""
    for number, (_, boxes_of_item) in enumerate(items, 1):
        indexes = []
        for property_box in boxes_of_item:
            if property_box not in properties:
                properties.append(property_box)
            indexes.append(properties.index(property_box) + 1)
        associations += struct.pack(">HB", number, len(indexes))
        associations += b"".join(struct.pack(">H", 0x8000 | i) for i in indexes)
    iprp = box(
        b"iprp",
        box(b"ipco", b"".join(properties))
        + full_box(b"ipma", 0, 1, struct.pack(">I", len(items)) + associations),
    )
    # An item's type, then its name (none), then what follows for the type (a mime item's content
    # type and encoding: `kind` is b"mime\0<content type>\0<encoding>\0").
    infe = b"".join(
        full_box(b"infe", 2, 0, struct.pack(">HH", number, 0) + kind[:4] + b"\0" + kind[5:])
        for number, (kind, _) in enumerate(items, 1)
    )
    iinf = full_box(b"iinf", 0, 0, struct.pack(">H", len(items)) + infe)
    iref = full_box(
        b"iref",
        0,
        0,
        b"".join(
            box(
                kind,
                struct.pack(">HH", source, len(targets))
                + struct.pack(f">{len(targets)}H", *targets),
            )
            for kind, source, targets in references
        ),
    )

    def meta(mdat_at: int) -> bytes:
        located = b""
        for number, (kind, _) in enumerate(items, 1):
            if kind == b"grid":
                located += struct.pack(">HHHHII", number, 1, 0, 1, 0, len(grid or b""))
            else:
                located += struct.pack(">HHHHII", number, 0, 0, 1, mdat_at, len(tile.data))
        iloc = full_box(b"iloc", 1, 0, struct.pack(">BBH", 0x44, 0x00, len(items)) + located)
        children = [
            full_box(b"hdlr", 0, 0, bytes(4) + b"pict" + bytes(12) + b"\0"),
            full_box(b"pitm", 0, 0, struct.pack(">H", 1)),
            iinf,
            iloc,
            *([iref] if references else []),
            iprp,
            *([box(b"idat", grid)] if grid else []),
        ]
        return full_box(b"meta", 0, 0, b"".join(children))

    at = len(ftyp) + len(meta(0)) + 8
    return ftyp + meta(at) + box(b"mdat", tile.data)
