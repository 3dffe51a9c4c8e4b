"""A HEIC/HEIF or AVIF rebuilt as ftyp, meta and one mdat. The meta box is written anew: hdlr
('pict'), pitm, iinf, iref, iprp (ipco and ipma) and iloc for the images that make the photo and
nothing else: the primary item, the tiles of a grid, and an alpha plane (an auxiliary image whose
auxC says alpha). Their properties are kept by type (the decoder configuration, size, colour,
pixel depth and the transformations irot, imir and clap: the orientation lives there), others are
dropped and ipma is re-indexed; the mdat holds these items' data, each in one extent. Exif and XMP
items, thumbnails, depth maps, gain maps, grouping and every other box are dropped.

The walk is strict where libheif and libavif read differently from one another or from a lenient
walk: two boxes of one kind where one is allowed (a second iloc), an item or property that is
listed twice, an extent outside the file, a reference to an item that does not exist, and an
essential property of an unknown kind are refused."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from gateway.images.privacy._walk import MOST_CHUNKS, MOST_ITEMS, Refused, require, unpack

_CODED = (b"hvc1", b"av01")
_ALPHA_URNS = (b"urn:mpeg:hevc:2015:auxid:1", b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha")
_PROPERTIES = {
    b"hvcC", b"av1C", b"ispe", b"colr", b"pixi", b"irot", b"imir", b"clap", b"auxC", b"pasp",
    b"clli", b"mdcv",
}  # fmt: skip
_REFERENCES = (b"dimg", b"auxl", b"prem")  # grid tiles, an alpha plane, premultiplied by it
_UNIQUE = (b"hdlr", b"pitm", b"iinf", b"iloc", b"iprp", b"iref", b"idat")


@dataclass
class _Item:
    kind: bytes
    hidden: bool
    extents: list[tuple[int, int]] = field(default_factory=list)  # (file offset, length)
    properties: list[tuple[bool, int]] = field(default_factory=list)  # (essential, ipco index)


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, box end) of the boxes in `data[start:end]`, which they fill exactly."""
    for kind, _, body, box_end in _whole_boxes(data, start, end):
        yield kind, body, box_end


def _whole_boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int, int]]:
    """(type, box start, body start, box end) of the boxes in `data[start:end]`."""
    position = start
    for _ in range(MOST_CHUNKS):
        if position == end:
            return
        size, kind = unpack(">I4s", data, position, end)
        header = 8
        if size == 1:
            (size,) = unpack(">Q", data, position + 8, end)
            header = 16
        elif size == 0:
            size = end - position
        require(size >= header and position + size <= end, f"box {kind!r} overruns its parent")
        yield kind, position, position + header, position + size
        position += size
    raise Refused(f"more than {MOST_CHUNKS} boxes")


def _number(data: bytes, position: int, size: int, end: int) -> tuple[int, int]:
    require(size in (0, 1, 2, 4, 8) and position + size <= end, "a box overruns its parent")
    return int.from_bytes(data[position : position + size], "big"), position + size


def rebuild(data: bytes) -> bytes:
    top = list(_boxes(data, 0, len(data)))
    require(top[0][0] == b"ftyp" and top[0][2] <= 1024, "no ftyp box first")
    metas = [(s, e) for kind, s, e in top if kind == b"meta"]
    require(len(metas) == 1, f"{len(metas)} meta boxes, not one")
    start, end = metas[0]
    children: dict[bytes, tuple[int, int]] = {}
    for kind, s, e in _boxes(data, start + 4, end):
        require(kind not in children or kind not in _UNIQUE, f"two {kind.decode('latin-1')} boxes")
        children.setdefault(kind, (s, e))
    for kind in (b"hdlr", b"pitm", b"iinf", b"iloc", b"iprp"):
        require(kind in children, f"no {kind.decode()} box")
    hdlr = children[b"hdlr"]
    require(data[hdlr[0] + 8 : hdlr[0] + 12] == b"pict", "a meta box for other than a picture")
    pitm = children[b"pitm"]
    primary, _ = _number(data, pitm[0] + 4, 2 if data[pitm[0]] == 0 else 4, pitm[1])
    items = _infos(data, *children[b"iinf"])
    _locations(data, *children[b"iloc"], children.get(b"idat"), items)
    properties = _properties(data, *children[b"iprp"], items)
    references = _references(data, *children.get(b"iref", (0, 0)), items)
    kept = _kept(primary, items, references, properties)
    return _write(data[: top[0][2]], primary, kept, items, references, properties, data)


def _infos(data: bytes, start: int, end: int) -> dict[int, _Item]:
    count_size = 2 if data[start] == 0 else 4
    count, position = _number(data, start + 4, count_size, end)
    require(count <= MOST_ITEMS, f"more than {MOST_ITEMS} items")
    items: dict[int, _Item] = {}
    for kind, s, e in _boxes(data, position, end):
        require(kind == b"infe" and e - s >= 12, "iinf holds other than item infos")
        version, flags = data[s], int.from_bytes(data[s + 1 : s + 4], "big")
        require(version in (2, 3), f"an infe box of version {version}")
        item, position = _number(data, s + 4, 2 if version == 2 else 4, e)
        protection, position = _number(data, position, 2, e)
        require(position + 4 <= e and item not in items, f"item {item} listed twice")
        # a protected (encrypted) item is never kept
        items[item] = _Item(
            b"prot" if protection else data[position : position + 4], bool(flags & 1)
        )
    require(len(items) == count, "iinf's count is not its items'")
    return items


def _locations(
    data: bytes, start: int, end: int, idat: tuple[int, int] | None, items: dict[int, _Item]
) -> None:
    version = data[start]
    require(version <= 2, f"an iloc box of version {version}")
    offset_size, length_size = data[start + 4] >> 4, data[start + 4] & 15
    base_size, index_size = data[start + 5] >> 4, data[start + 5] & 15 if version else 0
    count, position = _number(data, start + 6, 2 if version < 2 else 4, end)
    require(count <= MOST_ITEMS, f"more than {MOST_ITEMS} items")
    located = set()
    for _ in range(count):
        item, position = _number(data, position, 2 if version < 2 else 4, end)
        method = 0
        if version:
            method, position = _number(data, position, 2, end)
            method &= 15
        reference, position = _number(data, position, 2, end)
        base, position = _number(data, position, base_size, end)
        extents, position = _number(data, position, 2, end)
        require(extents <= MOST_ITEMS, f"more than {MOST_ITEMS} extents")
        require(item in items and item not in located, f"iloc locates item {item} wrongly")
        require(method in (0, 1) and reference == 0, f"item {item} is stored elsewhere")
        located.add(item)
        origin = 0
        if method == 1:
            require(idat is not None, "an item in an idat box that is not there")
            assert idat is not None
            origin, limit = idat
        else:
            limit = len(data)
        for _ in range(extents):
            _, position = _number(data, position, index_size, end)
            offset, position = _number(data, position, offset_size, end)
            length, position = _number(data, position, length_size, end)
            at = origin + base + offset
            require(length > 0 and at + length <= limit, f"item {item}'s data is outside the file")
            items[item].extents.append((at, length))


def _properties(
    data: bytes, start: int, end: int, items: dict[int, _Item]
) -> list[tuple[bytes, bytes]]:
    """ipco's properties as (type, whole box), each item's associations filled in from ipma."""
    children = list(_boxes(data, start, end))
    ipco = [(s, e) for kind, s, e in children if kind == b"ipco"]
    ipmas = [(s, e) for kind, s, e in children if kind == b"ipma"]
    require(len(ipco) == 1 and len(ipmas) == 1, "other than one ipco and one ipma")
    properties = []
    for kind, box, _, e in _whole_boxes(data, *ipco[0]):
        properties.append((kind, data[box:e]))
    s, e = ipmas[0]
    version, flags = data[s], data[s + 3]
    count, position = _number(data, s + 4, 4, e)
    require(count <= MOST_ITEMS, f"more than {MOST_ITEMS} items")
    seen = set()
    for _ in range(count):
        item, position = _number(data, position, 2 if version < 1 else 4, e)
        require(item in items and item not in seen, f"ipma lists item {item} wrongly")
        seen.add(item)
        associations, position = _number(data, position, 1, e)
        for _ in range(associations):
            value, position = _number(data, position, 2 if flags & 1 else 1, e)
            top = 0x8000 if flags & 1 else 0x80
            index = value & (top - 1)
            require(index <= len(properties), f"item {item}'s property {index} is not there")
            if index:
                items[item].properties.append((bool(value & top), index))
    return properties


def _references(
    data: bytes, start: int, end: int, items: dict[int, _Item]
) -> list[tuple[bytes, int, list[int]]]:
    if start == end:
        return []
    id_size = 2 if data[start] == 0 else 4
    references = []
    for kind, s, e in _boxes(data, start + 4, end):
        source, position = _number(data, s, id_size, e)
        count, position = _number(data, position, 2, e)
        targets = []
        for _ in range(count):
            target, position = _number(data, position, id_size, e)
            targets.append(target)
        require(position == e, f"an iref {kind!r} box of the wrong size")
        require(source in items and all(t in items for t in targets), "iref names no item")
        references.append((kind, source, targets))
    return references


def _kept(
    primary: int,
    items: dict[int, _Item],
    references: list[tuple[bytes, int, list[int]]],
    properties: list[tuple[bytes, bytes]],
) -> list[int]:
    """The primary item, its alpha plane, and the tiles of either when a grid."""
    require(primary in items, f"the primary item {primary} is not listed")
    images = [primary]
    for kind, source, targets in references:
        if kind == b"auxl" and targets == [primary] and _is_alpha(items[source], properties):
            images.append(source)
    kept: list[int] = []
    for image in images:
        kept.append(image)
        if items[image].kind == b"grid":
            tiles = [t for kind, s, ts in references if kind == b"dimg" and s == image for t in ts]
            require(bool(tiles), "a grid without tiles")
            kept += [tile for tile in tiles if tile not in kept]
    for item in kept:
        kind = items[item].kind
        require(kind in _CODED or (kind == b"grid" and item in images), f"a {kind!r} item")
        require(bool(items[item].extents), f"item {item} has no data")
        for essential, index in items[item].properties:
            name = properties[index - 1][0]
            require(name in _PROPERTIES or not essential, f"an essential {name!r} property")
    return kept


def _is_alpha(item: _Item, properties: list[tuple[bytes, bytes]]) -> bool:
    for _, index in item.properties:
        kind, box = properties[index - 1]
        if kind == b"auxC" and box[12:].split(b"\x00")[0] in _ALPHA_URNS:
            return True
    return False


def _box(kind: bytes, body: bytes, full: int | None = None) -> bytes:
    """A box; with `full`, a FullBox of that version (flags 0)."""
    head = b"" if full is None else bytes((full, 0, 0, 0))
    return struct.pack(">I", 8 + len(head) + len(body)) + kind + head + body


def _write(
    ftyp: bytes,
    primary: int,
    kept: list[int],
    items: dict[int, _Item],
    references: list[tuple[bytes, int, list[int]]],
    properties: list[tuple[bytes, bytes]],
    data: bytes,
) -> bytes:
    wide = max(kept) > 0xFFFF
    ids = ">I" if wide else ">H"
    # Checked before anything is copied: extents that point at the same bytes again and again
    # would make a kept file many times the upload's size.
    total = sum(n for item in kept for _, n in items[item].extents)
    require(total <= len(data), "items whose data overlaps")
    payloads = [b"".join(data[s : s + n] for s, n in items[item].extents) for item in kept]
    hdlr = _box(b"hdlr", bytes(4) + b"pict" + bytes(12) + b"\x00", 0)
    pitm = _box(b"pitm", struct.pack(ids, primary), 1 if wide else 0)
    infes = [
        struct.pack(">I", 12 + len(body)) + b"infe" + bytes((3 if wide else 2, 0, 0, hidden)) + body
        for item in kept
        for hidden, body in [
            (
                int(items[item].hidden),
                struct.pack(ids, item) + b"\x00\x00" + items[item].kind + b"\x00",
            )
        ]
    ]
    iinf = _box(b"iinf", struct.pack(">H", len(kept)) + b"".join(infes), 0)
    kept_set = set(kept)
    links = []
    for kind, source, targets in references:
        if kind in _REFERENCES and source in kept_set and set(targets) <= kept_set:
            body = struct.pack(ids, source) + struct.pack(">H", len(targets))
            links.append(_box(kind, body + b"".join(struct.pack(ids, t) for t in targets)))
    iref = _box(b"iref", b"".join(links), 1 if wide else 0) if links else b""
    new_index: dict[int, int] = {}
    associations = []
    for item in sorted(kept):
        entry = []
        for essential, index in items[item].properties:
            if properties[index - 1][0] in _PROPERTIES:
                new_index.setdefault(index, len(new_index) + 1)
                entry.append((essential, new_index[index]))
        associations.append((item, entry))
    wide_index = len(new_index) > 127
    ipma_body = struct.pack(">I", len(associations))
    for item, entry in associations:
        ipma_body += struct.pack(ids, item) + bytes((len(entry),))
        for essential, index in entry:
            if wide_index:
                ipma_body += struct.pack(">H", index | (0x8000 if essential else 0))
            else:
                ipma_body += bytes((index | (0x80 if essential else 0),))
    ipma = struct.pack(">I", 12 + len(ipma_body)) + b"ipma"
    ipma += bytes((1 if wide else 0, 0, 0, int(wide_index))) + ipma_body
    ipco = _box(b"ipco", b"".join(properties[i - 1][1] for i in new_index))
    iprp = _box(b"iprp", ipco + ipma)

    def meta(first: int) -> bytes:
        locations, offset = b"", first
        for item, payload in zip(kept, payloads, strict=True):
            locations += struct.pack(ids, item)
            locations += (b"\x00\x00" if wide else b"") + struct.pack(
                ">HHII", 0, 1, offset, len(payload)
            )
            offset += len(payload)
        count = struct.pack(">I" if wide else ">H", len(kept))
        iloc = _box(b"iloc", b"\x44\x00" + count + locations, 2 if wide else 0)
        return _box(b"meta", hdlr + pitm + iinf + iref + iprp + iloc, 0)

    size = len(meta(0))
    mdat_body = b"".join(payloads)
    first = len(ftyp) + size + 8
    require(first + len(mdat_body) < 1 << 32, "a HEIF over 4 GB")
    return ftyp + meta(first) + struct.pack(">I", 8 + len(mdat_body)) + b"mdat" + mdat_body
