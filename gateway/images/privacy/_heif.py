"""A HEIC/HEIF or AVIF rebuilt as ftyp, meta and one mdat. The meta box is written anew: hdlr
('pict'), pitm, iinf, iref, iprp (ipco and ipma) and iloc for the images that make the photo and
nothing else: the primary item, the tiles of a grid, and an alpha plane (an auxiliary image whose
auxC says alpha). Their properties are kept by type (the decoder configuration, size, colour,
pixel depth and the transformations irot, imir and clap: the orientation lives there), others are
dropped and ipma is re-indexed; the mdat holds these items' data, each in one extent. Exif and XMP
items, thumbnails, depth maps, gain maps, grouping and every other box are dropped.

The boxes are read by gateway.images._heif, strictly and within its bounds (the reader the
decode-memory guard shares); a kept image of another type, or with an essential property of an
unknown kind, is refused here."""

from __future__ import annotations

import struct

from gateway.images import _heif
from gateway.images.privacy._walk import require

_CODED = (b"hvc1", b"av01")
_PROPERTIES = {
    b"hvcC", b"av1C", b"ispe", b"colr", b"pixi", b"irot", b"imir", b"clap", b"auxC", b"pasp",
    b"clli", b"mdcv",
}  # fmt: skip
_REFERENCES = (b"dimg", b"auxl", b"prem")  # grid tiles, an alpha plane, premultiplied by it


def rebuild(data: bytes) -> bytes:
    heif = _heif.read(data)
    return _write(heif, _kept(heif))


def _kept(heif: _heif.Heif) -> list[int]:
    """The primary item, its alpha plane, and the tiles of either when a grid."""
    items, references = heif.items, heif.references
    images = [heif.primary]
    for kind, source, targets in references:
        if kind == b"auxl" and targets == (heif.primary,) and heif.is_alpha(source):
            images.append(source)
    kept: list[int] = []
    for image in images:
        kept.append(image)
        if items[image].type == b"grid":
            tiles = [t for kind, s, ts in references if kind == b"dimg" and s == image for t in ts]
            require(bool(tiles), "a grid without tiles")
            kept += [tile for tile in tiles if tile not in kept]
    for item in kept:
        kind = items[item].type
        require(kind in _CODED or (kind == b"grid" and item in images), f"a {kind!r} item")
        require(bool(items[item].extents), f"item {item} has no data")
        for essential, index in items[item].properties:
            name = heif.properties[index - 1].kind
            require(name in _PROPERTIES or not essential, f"an essential {name!r} property")
    return kept


def _box(kind: bytes, body: bytes, full: int | None = None) -> bytes:
    """A box; with `full`, a FullBox of that version (flags 0)."""
    head = b"" if full is None else bytes((full, 0, 0, 0))
    return struct.pack(">I", 8 + len(head) + len(body)) + kind + head + body


def _write(heif: _heif.Heif, kept: list[int]) -> bytes:
    data, primary, items, references = heif.data, heif.primary, heif.items, heif.references
    properties = [(box.kind, data[box.start : box.end]) for box in heif.properties]
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
                struct.pack(ids, item) + b"\x00\x00" + items[item].type + b"\x00",
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
    ftyp = data[heif.ftyp.start : heif.ftyp.end]
    first = len(ftyp) + size + 8
    require(first + len(mdat_body) < 1 << 32, "a HEIF over 4 GB")
    return ftyp + meta(first) + struct.pack(">I", 8 + len(mdat_body)) + b"mdat" + mdat_body
