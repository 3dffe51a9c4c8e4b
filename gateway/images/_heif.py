"""HEIF's structure (the boxes of ISO/IEC 14496-12, the items of 23008-12; HEIC and AVIF alike)
read once, for both of its users: the decode-memory guard (`_heif_boxes`: what the decoder will
allocate) and the privacy rebuild (`privacy/_heif`: the items making the photo). The walk is
bounded and strict, the way the strictest of libheif and libavif reads: every box within its
parent, counts of boxes, items, extents and references bounded, every item's data within the file
(or its `idat`), one box of each kind where one is allowed, every item listed once in `iinf`,
`iloc` and `ipma`, every reference and property association naming one that exists. Anything else
is Malformed, whose message says what is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

# libheif refuses files of more than 1000 items (its default security limit); an iPhone's 48 MP
# HEIC has about 200 (its tiles, a thumbnail, EXIF, XMP, auxiliary images).
MOST_ITEMS = 1000
MOST_BOXES = 4 * MOST_ITEMS  # in one container: items, properties, references
MOST_EXTENTS = 32  # libheif's max_iloc_extents_per_item
MOST_REFERENCES = 256 * 256  # item references in all: a grid's largest, 256 rows of 256 tiles
# Boxes of which a second is refused: which one a reader takes varies.
_ONCE = (b"hdlr", b"pitm", b"iinf", b"iloc", b"iprp", b"iref", b"idat")
_NEEDED = (b"hdlr", b"pitm", b"iinf", b"iloc", b"iprp")
_SINGLE = (b"ispe", b"clap", b"auxC")  # properties an item has at most one of
_ALPHA = (b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha", b"urn:mpeg:hevc:2015:auxid:1")


class Malformed(Exception):
    """The boxes cannot be read as HEIF within their bounds."""


def require(condition: bool, reason: str) -> None:
    if not condition:
        raise Malformed(reason)


@dataclass(frozen=True)
class Box:
    kind: bytes
    start: int  # the box's first byte
    body: int  # its payload's
    end: int


@dataclass
class Item:
    type: bytes  # b"prot" for a protected (encrypted) item
    hidden: bool
    encoding: bytes = b""  # a `mime` item's content encoding ("deflate"): inflated when read
    extents: list[tuple[int, int]] = field(default_factory=list)  # (offset in the file, length)
    properties: list[tuple[bool, int]] = field(default_factory=list)  # (essential, ipco index)


@dataclass(frozen=True)
class Heif:
    data: bytes
    ftyp: Box
    primary: int  # an item of `items`
    items: dict[int, Item]
    properties: list[Box]  # ipco's, in order: an item's index n is properties[n - 1]
    references: list[tuple[bytes, int, tuple[int, ...]]]  # (type, from, to), all items

    def property(self, item: int, kind: bytes) -> Box | None:
        found = [self.properties[i - 1] for _, i in self.items[item].properties]
        return next((box for box in found if box.kind == kind), None)

    def is_alpha(self, item: int) -> bool:
        """Whether an auxiliary image's auxC says alpha."""
        auxc = self.property(item, b"auxC")
        return auxc is not None and Fields(self.data, auxc.body + 4, auxc.end).string() in _ALPHA


class Fields:
    """Big-endian fields read in order from data[position:end], Malformed past `end`."""

    def __init__(self, data: bytes, position: int, end: int) -> None:
        self.data, self.position, self.end = data, position, end

    def take(self, size: int) -> bytes:
        require(self.position + size <= self.end, "a field runs past its box")
        self.position += size
        return self.data[self.position - size : self.position]

    def uint(self, size: int) -> int:
        require(size in (0, 1, 2, 4, 8), f"a field of {size} bytes")
        return int.from_bytes(self.take(size), "big")

    def string(self) -> bytes:
        """A NUL-terminated string (its end is the box's when the NUL is missing)."""
        stop = self.data.find(b"\0", self.position, self.end)
        stop = self.end if stop < 0 else stop
        value = self.data[self.position : stop]
        self.position = min(stop + 1, self.end)
        return value


def boxes(data: bytes, start: int, end: int) -> Iterator[Box]:
    """The boxes filling `data[start:end]` exactly, at most MOST_BOXES of them."""
    count = 0
    while start < end:
        count += 1
        require(count <= MOST_BOXES, f"more than {MOST_BOXES} boxes in one container")
        header = Fields(data, start, end)
        size, kind = header.uint(4), header.take(4)
        if size == 1:
            size = header.uint(8)
        elif size == 0:
            size = end - start  # to the end of its container
        require(header.position - start <= size <= end - start, f"box {kind!r} overruns its parent")
        yield Box(kind, start, header.position, start + size)
        start += size


def _full(data: bytes, box: Box) -> tuple[int, int, Fields]:
    """A FullBox's version, flags and its fields after them."""
    read = Fields(data, box.body, box.end)
    return read.uint(1), int.from_bytes(read.take(3), "big"), read


def read(data: bytes) -> Heif:
    """The structure of HEIF or AVIF `data`; Malformed where it cannot be read strictly."""
    top = list(boxes(data, 0, len(data)))
    require(bool(top) and top[0].kind == b"ftyp" and top[0].end <= 1024, "no ftyp box first")
    metas = [box for box in top if box.kind == b"meta"]
    require(len(metas) == 1, f"{len(metas)} meta boxes, not one")
    children: dict[bytes, Box] = {}
    for box in boxes(data, _full(data, metas[0])[2].position, metas[0].end):
        require(
            box.kind not in children or box.kind not in _ONCE,
            f"two {box.kind.decode('latin-1')} boxes",
        )
        children.setdefault(box.kind, box)
    for kind in _NEEDED:
        require(kind in children, f"no {kind.decode()} box")
    hdlr = Fields(data, children[b"hdlr"].body + 8, children[b"hdlr"].end)
    require(hdlr.take(4) == b"pict", "a meta box for other than a picture")
    version, _, pitm = _full(data, children[b"pitm"])
    primary = pitm.uint(2 if version == 0 else 4)
    items = _infos(data, children[b"iinf"])
    require(primary in items, f"the primary item {primary} is not listed")
    _locations(data, children[b"iloc"], children.get(b"idat"), items)
    properties = _properties(data, children[b"iprp"], items)
    references = _references(data, children.get(b"iref"), items)
    return Heif(data, top[0], primary, items, properties, references)


def _infos(data: bytes, iinf: Box) -> dict[int, Item]:
    version, _, read = _full(data, iinf)
    count = read.uint(2 if version == 0 else 4)
    require(count <= MOST_ITEMS, f"more than {MOST_ITEMS} items")
    items: dict[int, Item] = {}
    for box in boxes(data, read.position, iinf.end):
        require(box.kind == b"infe", "iinf holds other than item infos")
        version, flags, entry = _full(data, box)
        require(version in (2, 3), f"an infe box of version {version}")
        item, protection, kind = entry.uint(2 if version == 2 else 4), entry.uint(2), entry.take(4)
        require(item not in items, f"item {item} listed twice")
        items[item] = Item(b"prot" if protection else kind, bool(flags & 1))
        if kind == b"mime":
            entry.string()  # name
            entry.string()  # content type
            items[item].encoding = entry.string()
    require(len(items) == count, "iinf's count is not its items'")
    return items


def _locations(data: bytes, iloc: Box, idat: Box | None, items: dict[int, Item]) -> None:
    version, _, read = _full(data, iloc)
    require(version <= 2, f"an iloc box of version {version}")
    sizes = read.uint(2)
    offset_size, length_size, base_size = sizes >> 12, (sizes >> 8) & 15, (sizes >> 4) & 15
    index_size = sizes & 15 if version else 0
    count = read.uint(2 if version < 2 else 4)
    require(count <= MOST_ITEMS, f"more than {MOST_ITEMS} items")
    located = set()
    for _ in range(count):
        item = read.uint(2 if version < 2 else 4)
        require(item in items and item not in located, f"iloc locates item {item} wrongly")
        located.add(item)
        method = read.uint(2) & 15 if version else 0
        require(method in (0, 1) and read.uint(2) == 0, f"item {item} is stored elsewhere")
        require(method == 0 or idat is not None, "an item in an idat box that is not there")
        origin, limit = (idat.body, idat.end) if method and idat else (0, len(data))
        base, extents = read.uint(base_size), read.uint(2)
        require(extents <= MOST_EXTENTS, f"an item in more than {MOST_EXTENTS} extents")
        for _ in range(extents):
            read.uint(index_size)
            at, length = origin + base + read.uint(offset_size), read.uint(length_size)
            require(length > 0 and at + length <= limit, f"item {item}'s data is outside the file")
            items[item].extents.append((at, length))


def _properties(data: bytes, iprp: Box, items: dict[int, Item]) -> list[Box]:
    """ipco's properties, each item's associations filled in from ipma."""
    children = list(boxes(data, iprp.body, iprp.end))
    ipco = [box for box in children if box.kind == b"ipco"]
    ipma = [box for box in children if box.kind == b"ipma"]
    require(len(ipco) == 1 and len(ipma) == 1, "other than one ipco and one ipma")
    properties = list(boxes(data, ipco[0].body, ipco[0].end))
    version, flags, read = _full(data, ipma[0])
    count = read.uint(4)
    require(count <= MOST_ITEMS, f"more than {MOST_ITEMS} items")
    top = 0x8000 if flags & 1 else 0x80
    seen = set()
    for _ in range(count):
        item = read.uint(2 if version < 1 else 4)
        require(item in items and item not in seen, f"ipma lists item {item} wrongly")
        seen.add(item)
        for _ in range(read.uint(1)):
            value = read.uint(2 if flags & 1 else 1)
            index = value & (top - 1)
            require(0 < index <= len(properties), f"item {item}'s property {index} is not there")
            items[item].properties.append((bool(value & top), index))
        kinds = [properties[i - 1].kind for _, i in items[item].properties]
        for kind in _SINGLE:
            require(kinds.count(kind) <= 1, f"two {kind.decode()} properties on one item")
    return properties


def _references(
    data: bytes, iref: Box | None, items: dict[int, Item]
) -> list[tuple[bytes, int, tuple[int, ...]]]:
    if iref is None:
        return []
    version, _, read = _full(data, iref)
    size = 2 if version == 0 else 4
    references = []
    total = 0
    for box in boxes(data, read.position, iref.end):
        read = Fields(data, box.body, box.end)
        source, count = read.uint(size), read.uint(2)
        total += count
        require(total <= MOST_REFERENCES, f"more than {MOST_REFERENCES} item references")
        # Bytes after the targets are not read (as libheif): the references' count is the
        # size check's to judge against a grid's tiles, and the rebuild writes iref anew.
        targets = tuple(read.uint(size) for _ in range(count))
        require(source in items and all(t in items for t in targets), "iref names no item")
        references.append((box.kind, source, targets))
    return references
