"""Metadata hidden where a lenient walk does not look, in real files of every kept format (and in
TIFF, which is not kept): each form a way an in-place stripper missed a location, a name or a
contact (issue 27). Every form holds the same secrets, which must not survive in a kept file."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image

# What the hostile forms hide, as text a file would hold: names, places, contacts.
SECRETS = ["Jane Doe", "Eiffel", "Paris", "jane@example.org", "5550 4242", "Rue Secret"]
_XMP_HEAD = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
)
_XMP_TAIL = b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'


def xmp(description: bytes) -> bytes:
    return _XMP_HEAD + description + _XMP_TAIL


# The same position and person in the XMP forms a prefix-matching regex misses.
XMP_FORMS = {
    # properties in the default namespace: no prefix to match
    "xmp-default-namespace": xmp(
        b'<rdf:Description rdf:about="" xmlns="http://ns.adobe.com/exif/1.0/">'
        b"<GPSLatitude>48,51.5N</GPSLatitude><GPSLongitude>2,17.7E</GPSLongitude>"
        b"<GPSAreaInformation>Eiffel Tower, Paris</GPSAreaInformation></rdf:Description>"
    ),
    # a value given as rdf:value of a resource
    "xmp-rdf-value": xmp(
        b'<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" '
        b'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/">'
        b'<exif:GPSLatitude rdf:parseType="Resource"><rdf:value>48,51.5N</rdf:value>'
        b"</exif:GPSLatitude>"
        b'<photoshop:City rdf:value="Paris"/></rdf:Description>'
    ),
    # a person, and a creator's contact: address, e-mail, phone; an owner
    "xmp-person-contact": xmp(
        b'<rdf:Description rdf:about="" xmlns:Iptc4xmpCore="http://iptc.org/std/Iptc4xmpCore/1.0/'
        b'xmlns/" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        b'xmlns:xmpRights="http://ns.adobe.com/xap/1.0/rights/">'
        b'<Iptc4xmpCore:CreatorContactInfo Iptc4xmpCore:CiEmailWork="jane@example.org" '
        b'Iptc4xmpCore:CiTelWork="+33 1 5550 4242" Iptc4xmpCore:CiAdrExtadr="1 Rue Secret"/>'
        b"<Iptc4xmpExt:PersonInImage><rdf:Bag><rdf:li>Jane Doe</rdf:li></rdf:Bag>"
        b"</Iptc4xmpExt:PersonInImage>"
        b"<xmpRights:Owner><rdf:Bag><rdf:li>Jane Doe</rdf:li></rdf:Bag></xmpRights:Owner>"
        b"</rdf:Description>"
    ),
}


def photo(width: int = 96, height: int = 64) -> Image.Image:
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def encode(fmt: str, image: Image.Image | None = None, **options: object) -> bytes:
    out = io.BytesIO()
    (image or photo()).save(out, fmt, **options)
    return out.getvalue()


def gps_exif(orientation: int = 1) -> bytes:
    """A TIFF (EXIF) block with a position, its place in words, an artist and a serial number."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x013B] = "Jane Doe"
    exif.get_ifd(0x8769)[0xA431] = "SN-4242-BODY"
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    gps[0x1C] = b"ASCII\x00\x00\x00Eiffel Tower"
    return exif.tobytes()[6:]  # Pillow's block starts with b"Exif\0\0"


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _app1_exif(orientation: int = 1) -> bytes:
    return _segment(0xE1, b"Exif\x00\x00" + gps_exif(orientation))


def _app1_xmp(packet: bytes) -> bytes:
    return _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + packet)


def _after_soi(extra: bytes) -> bytes:
    jpeg = encode("JPEG", quality=90)
    return jpeg[:2] + extra + jpeg[2:]


def _iptc(*datasets: tuple[int, bytes]) -> bytes:
    return b"".join(b"\x1c\x02" + struct.pack(">BH", n, len(v)) + v for n, v in datasets)


_IPTC_PLACES = _iptc((80, b"Jane Doe"), (90, b"Paris"), (101, b"France"))


def _resource(signature: bytes, resource: int, data: bytes) -> bytes:
    return (
        signature + struct.pack(">HHI", resource, 0, len(data)) + data + b"\x00" * (len(data) % 2)
    )


def _app13(*resources: bytes) -> bytes:
    return _segment(0xED, b"Photoshop 3.0\x00" + b"".join(resources))


def _extended_xmp(packet: bytes) -> bytes:
    """A main XMP packet that points to an extended one, split over two APP1 segments in its
    middle (Adobe's XMP spec, part 3): a walk that reads each segment alone sees halves."""
    guid = hashlib.md5(packet).hexdigest().upper().encode()
    main = xmp(
        b'<rdf:Description rdf:about="" xmlns:xmpNote="http://ns.adobe.com/xmp/note/" '
        b'xmpNote:HasExtendedXMP="' + guid + b'"/>'
    )
    split = len(packet) // 2
    segments = _app1_xmp(main)
    for offset, chunk in ((0, packet[:split]), (split, packet[split:])):
        head = b"http://ns.adobe.com/xmp/extension/\x00" + guid
        segments += _segment(0xE1, head + struct.pack(">II", len(packet), offset) + chunk)
    return segments


def _mpf_seventeenth() -> bytes:
    """A JPEG whose MPF segment lists 17 images, the 17th carrying the position."""
    images = [encode("JPEG", photo(16, 16)) for _ in range(15)]
    located = encode("JPEG", photo(16, 16))
    images.append(located[:2] + _app1_exif() + located[2:])
    count = len(images) + 1
    ifd_size = 2 + 3 * 12 + 4
    entries_at = 8 + ifd_size

    def mpf(offsets: list[int], sizes: list[int]) -> bytes:
        ifd = struct.pack(">H", 3)
        ifd += struct.pack(">HHI4s", 0xB000, 7, 4, b"0100")
        ifd += struct.pack(">HHII", 0xB001, 4, 1, count)
        ifd += struct.pack(">HHII", 0xB002, 7, 16 * count, entries_at) + bytes(4)
        entries = b"".join(
            struct.pack(">IIIHH", 0x20000 if i == 0 else 0, sizes[i], offsets[i], 0, 0)
            for i in range(count)
        )
        return _segment(0xE2, b"MPF\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd + entries)

    primary = encode("JPEG", quality=90)
    placeholder = mpf([0] * count, [0] * count)
    tiff_header = 2 + 4 + 4  # SOI, the segment's marker and length, "MPF\0"
    first_size = len(primary) + len(placeholder)
    offsets, sizes, at = [0], [first_size], first_size
    for image in images:
        offsets.append(at - tiff_header)
        sizes.append(len(image))
        at += len(image)
    return primary[:2] + mpf(offsets, sizes) + primary[2:] + b"".join(images)


JPEG_FORMS: dict[str, Callable[[], bytes]] = {
    "jpeg-junk-byte-before-exif": lambda: _after_soi(b"\x00" + _app1_exif()),
    "jpeg-zero-length-segment-before-exif": lambda: _after_soi(b"\xff\xe3\x00\x00" + _app1_exif()),
    "jpeg-ff00-before-exif": lambda: _after_soi(b"\xff\x00" + _app1_exif()),
    "jpeg-fill-bytes-before-exif": lambda: _after_soi(b"\xff\xff\xff" + _app1_exif()),
    "jpeg-mpf-17th-image": _mpf_seventeenth,
    "jpeg-iptc-after-extended-dataset": lambda: _after_soi(
        _app13(_resource(b"8BIM", 0x0404, b"\x1c\x02\x05\x80\x02\x00\x04Note" + _IPTC_PLACES))
    ),
    "jpeg-iptc-after-non-8bim-resource": lambda: _after_soi(
        _app13(_resource(b"MeSa", 0x03ED, b"\x00" * 16), _resource(b"8BIM", 0x0404, _IPTC_PLACES))
    ),
    "jpeg-exif-after-first-scan": lambda: _between_scans(_app1_exif()),
}


def _between_scans(extra: bytes) -> bytes:
    jpeg = encode("JPEG", quality=90, progressive=True)
    second_scan = jpeg.index(b"\xff\xda", jpeg.index(b"\xff\xda") + 2)
    return jpeg[:second_scan] + extra + jpeg[second_scan:]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_with(*chunks: bytes, after_pixels: bool = False) -> bytes:
    png = encode("PNG")
    at = png.index(b"IEND") - 4 if after_pixels else 33  # before IEND, or after IHDR
    return png[:at] + b"".join(chunks) + png[at:]


def _raw_profile(exif: bytes) -> bytes:
    """ImageMagick's hex-encoded 'Raw profile type exif' text."""
    hexed = (b"Exif\x00\x00" + exif).hex().encode()
    return b"\nexif\n" + str(len(exif) + 6).rjust(8).encode() + b"\n" + hexed + b"\n"


PNG_FORMS: dict[str, Callable[[], bytes]] = {
    "png-exif-after-pixels": lambda: _png_with(_png_chunk(b"eXIf", gps_exif()), after_pixels=True),
    "png-raw-profile-exif": lambda: _png_with(
        _png_chunk(b"tEXt", b"Raw profile type exif\x00" + _raw_profile(gps_exif()))
    ),
    "png-author-text": lambda: _png_with(
        _png_chunk(b"tEXt", b"Author\x00Jane Doe, 1 Rue Secret, Paris")
    ),
}


def _webp_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) & 1 else b"")


def _webp_with(*chunks: bytes, flags: int = 0x0C) -> bytes:
    """A lossy WebP in the extended format, with `chunks` after its image."""
    simple = encode("WEBP", quality=80)
    image = simple[12:]
    canvas = struct.pack("<I", 95)[:3] + struct.pack("<I", 63)[:3]
    riff = b"WEBP" + _webp_chunk(b"VP8X", bytes((flags, 0, 0, 0)) + canvas) + image
    riff += b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


WEBP_FORMS: dict[str, Callable[[], bytes]] = {
    "webp-exif-with-prefix": lambda: _webp_with(_webp_chunk(b"EXIF", b"Exif\x00\x00" + gps_exif())),
    "webp-chunks-without-flags": lambda: _webp_with(
        _webp_chunk(b"EXIF", gps_exif()), _webp_chunk(b"XMP ", XMP_FORMS["xmp-rdf-value"]), flags=0
    ),
}


def _heif_boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, box start, box end) of plain 32-bit-sized boxes: what the encoders here write."""
    boxes, position = [], start
    while position < end:
        size, kind = struct.unpack_from(">I4s", data, position)
        boxes.append((kind, position, position + size))
        position += size
    return boxes


def _iloc_offsets(data: bytes, start: int) -> list[tuple[int, int]]:
    """(position, size) of each file-offset field (a base offset, else an extent's offset) of the
    iloc box at `start` (versions 0 and 1, as pillow-heif and libavif write them)."""
    body = start + 12
    version = data[start + 8]
    offset_size, length_size = data[body] >> 4, data[body] & 15
    base_size, index_size = data[body + 1] >> 4, (data[body + 1] & 15) if version else 0
    count = struct.unpack_from(">H", data, body + 2)[0]
    position, fields = body + 4, []
    for _ in range(count):
        position += 2
        method = struct.unpack_from(">H", data, position)[0] & 15 if version else 0
        position += 2 if version else 0
        position += 2  # data reference index
        if base_size and method == 0:
            fields.append((position, base_size))
        position += base_size
        extents = struct.unpack_from(">H", data, position)[0]
        position += 2
        for _ in range(extents):
            position += index_size
            if not base_size and method == 0:
                fields.append((position, offset_size))
            position += offset_size + length_size
    return fields


def _heif_edit(data: bytes, edit: Callable[[bytes, int, int], tuple[bytes, bytes]]) -> bytes:
    """`data` with its meta box's content from `edit(data, meta start, meta end)`, which answers
    (new meta content, what was appended); every file offset in iloc moved by what was added."""
    top = _heif_boxes(data, 0, len(data))
    _, start, end = next(box for box in top if box[0] == b"meta")
    content, added = edit(data, start, end)
    out = bytearray(data[:start] + struct.pack(">I", 8 + len(content)) + b"meta" + content)
    out += data[end:]
    iloc = next(
        s for k, s, _ in _heif_boxes(out, start + 12, start + 8 + len(content)) if k == b"iloc"
    )
    for position, size in _iloc_offsets(bytes(out), iloc):
        value = int.from_bytes(out[position : position + size], "big") + len(added)
        out[position : position + size] = value.to_bytes(size, "big")
    return bytes(out)


def _second_iloc(data: bytes, start: int, end: int) -> tuple[bytes, bytes]:
    """A second iloc box, after the first, that points every item at the file's start: a walk
    that takes the last iloc scrubs the wrong bytes; libheif reads the first."""
    iloc = next((s, e) for k, s, e in _heif_boxes(data, start + 12, end) if k == b"iloc")
    decoy = bytearray(data[iloc[0] : iloc[1]])
    for position, size in _iloc_offsets(data, iloc[0]):
        decoy[position - iloc[0] : position - iloc[0] + size] = bytes(size)
    return data[start + 8 : end] + bytes(decoy), bytes(decoy)


def _heif_with(fmt: str, exif: bytes | None = None, packet: bytes | None = None) -> bytes:
    return encode(fmt, quality=80, exif=b"Exif\x00\x00" + (exif or gps_exif()), xmp=packet)


def _exif_offset_out_of_range(data: bytes) -> bytes:
    """The Exif item's 4-byte offset to its TIFF header, set past the item: a walk that skips
    such an item leaves it whole."""
    at = data.index(b"Exif\x00\x00MM") - 4
    return data[:at] + struct.pack(">I", 0x7FFFFFF0) + data[at + 4 :]


def heif_forms(fmt: str) -> dict[str, Callable[[], bytes]]:
    key = fmt.lower()
    return {
        f"{key}-exif-offset-out-of-range": lambda: _exif_offset_out_of_range(_heif_with(fmt)),
        f"{key}-second-iloc": lambda: _heif_edit(_heif_with(fmt), _second_iloc),
    }


def _tiff_pages(pages: int) -> bytes:
    """A TIFF of `pages` pages (an in-place walk stopped at 64), with a position in its EXIF."""
    small = photo(8, 8)
    return encode(
        "TIFF", small, save_all=True, append_images=[small] * (pages - 1), exif=gps_exif()
    )


def _png_text(kind: bytes, head: bytes, compress: bool = False) -> Callable[[bytes], bytes]:
    def carry(packet: bytes) -> bytes:
        body = zlib.compress(packet) if compress else packet
        return _png_with(_png_chunk(kind, b"XML:com.adobe.xmp\x00" + head + body))

    return carry


def _heif_xmp(fmt: str, content_type: bytes = b"application/rdf+xml") -> Callable[[bytes], bytes]:
    """XMP in a mime item, its content type as given (libheif compares it without case)."""
    return lambda packet: _heif_with(fmt, packet=packet).replace(
        b"application/rdf+xml", content_type
    )


# Every place a file of a kept format carries XMP, and the ways a walk may miss it.
XMP_CARRIERS: dict[str, Callable[[bytes], bytes]] = {
    "jpeg-app1": lambda packet: _after_soi(_app1_xmp(packet)),
    "jpeg-extended-xmp-split": lambda packet: _after_soi(_extended_xmp(packet)),
    "png-text": _png_text(b"tEXt", b""),
    "png-ztxt": _png_text(b"zTXt", b"\x00", compress=True),
    "png-itxt": _png_text(b"iTXt", b"\x00\x00\x00\x00"),
    "png-itxt-compressed": _png_text(b"iTXt", b"\x01\x00\x00\x00", compress=True),
    "webp-chunk": lambda packet: _webp_with(_webp_chunk(b"XMP ", packet)),
    "heif-item": _heif_xmp("HEIF"),
    "heif-item-upper-case-type": _heif_xmp("HEIF", b"APPLICATION/RDF+XML"),
    "avif-item": _heif_xmp("AVIF"),
    "avif-item-upper-case-type": _heif_xmp("AVIF", b"APPLICATION/RDF+XML"),
}

FORMS: dict[str, Callable[[], bytes]] = {
    **{
        f"{carrier}/{form}": (lambda carry=carry, packet=packet: carry(packet))
        for carrier, carry in XMP_CARRIERS.items()
        for form, packet in XMP_FORMS.items()
    },
    **JPEG_FORMS,
    **PNG_FORMS,
    **WEBP_FORMS,
    **heif_forms("HEIF"),
    **heif_forms("AVIF"),
    "tiff-65-pages": lambda: _tiff_pages(65),
    "bmp-with-exif-after-pixels": lambda: encode("BMP") + b"Exif\x00\x00" + gps_exif(),
}
