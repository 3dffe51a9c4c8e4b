"""Kept uploads lose their location and identifying metadata, in every format a phone or an editor
writes, with the same pixels: files written by the real encoders (Pillow, pillow-heif), read back
with them. The oracle for the pixels is exact equality with the upload's own decode."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pillow_heif
import pytest
from PIL import Image, PngImagePlugin

from gateway.errors import UnsupportedImage
from gateway.privacy import blank_xmp, strip_identifying

pillow_heif.register_heif_opener()

_PNG_SIGNATURE_FOR_TESTS = b"\x89PNG\r\n\x1a\n"

ORIENTATION, ARTIST, MAKER_NOTE, EXIF_IFD, GPS_IFD = 0x0112, 0x013B, 0x927C, 0x8769, 0x8825
DATETIME_ORIGINAL, UNIQUE_ID, OWNER, BODY_SERIAL, LENS_SERIAL = (
    0x9003,
    0xA420,
    0xA430,
    0xA431,
    0xA435,
)
TAKEN = "2024:05:01 12:30:00"
SECRETS = [b"Jane Doe", b"SN-4242-BODY", b"LN-777-LENS", b"5f3c0ffee0ddba11", b"CANON-NOTE"]
XMP = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:exif="http://ns.adobe.com/exif/1.0/" '
    b'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
    b'xmlns:aux="http://ns.adobe.com/exif/1.0/aux/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
    b'exif:GPSLatitude="48,51.4047N" exif:GPSLongitude="2,21.0500E" photoshop:City="Paris" '
    b'aux:SerialNumber="SN-4242-BODY" xmp:CreateDate="2024-05-01T12:30:00">'
    b"<exif:GPSAltitude>3500/100</exif:GPSAltitude>"
    b"<dc:creator><rdf:Seq><rdf:li>Jane Doe</rdf:li></rdf:Seq></dc:creator>"
    b'</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)
XMP_SECRETS = [b"48,51.4047N", b"2,21.0500E", b"Paris", b"3500/100", b"Jane Doe", b"SN-4242"]


def identifying_exif(orientation: int = 6) -> Image.Exif:
    """EXIF as a phone and a camera write it: a position, names, serials, maker's notes."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[ARTIST] = "Jane Doe"
    exif[0x010F] = "Canon"  # Make: kept
    sub = exif.get_ifd(EXIF_IFD)
    sub.update(
        {
            DATETIME_ORIGINAL: TAKEN,
            OWNER: "Jane Doe",
            BODY_SERIAL: "SN-4242-BODY",
            LENS_SERIAL: "LN-777-LENS",
            UNIQUE_ID: "5f3c0ffee0ddba11",
            MAKER_NOTE: b"CANON-NOTE" * 20,
        }
    )
    gps = exif.get_ifd(GPS_IFD)
    gps.update({1: "N", 2: (48.0, 51.0, 24.28), 3: "E", 4: (2.0, 21.0, 3.0), 6: 35.0})
    return exif


def photo(width: int = 96, height: int = 64) -> Image.Image:
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def encode(fmt: str, image: Image.Image | None = None, **options: object) -> bytes:
    image = image or photo()
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def assert_clean(exif: Image.Exif) -> None:
    assert not exif.get_ifd(GPS_IFD) and GPS_IFD not in exif
    assert ARTIST not in exif
    sub = exif.get_ifd(EXIF_IFD)
    assert not {OWNER, BODY_SERIAL, LENS_SERIAL, UNIQUE_ID, MAKER_NOTE} & set(sub)
    assert sub[DATETIME_ORIGINAL] == TAKEN and exif[0x010F] == "Canon"


def assert_stripped(original: bytes, stripped: bytes) -> None:
    assert len(stripped) == len(original)
    assert np.array_equal(pixels(stripped), pixels(original))
    for secret in SECRETS + XMP_SECRETS:
        assert secret not in stripped, secret


def test_jpeg_loses_location_names_and_serials_keeps_orientation_and_time() -> None:
    original = encode("JPEG", exif=identifying_exif(), xmp=XMP, quality=90)
    stripped = strip_identifying(original)
    assert_stripped(original, stripped)
    with Image.open(io.BytesIO(stripped)) as image:
        exif = image.getexif()
        assert_clean(exif)
        assert exif[ORIENTATION] == 6
        xmp = image.info["xmp"]
    assert b'exif:GPSLatitude="' + b" " * 11 + b'"' in xmp
    assert b'xmp:CreateDate="2024-05-01T12:30:00"' in xmp


def test_each_image_of_an_mpf_jpeg_is_stripped_and_still_found() -> None:
    """Pillow's MPO writer: two JPEGs, each with its EXIF and XMP, the second found by offset."""
    second = photo().rotate(180)
    original = encode(
        "MPO", exif=identifying_exif(), xmp=XMP, save_all=True, append_images=[second]
    )
    assert original.count(b"SN-4242-BODY") == 4  # EXIF and XMP of both images
    stripped = strip_identifying(original)
    assert_stripped(original, stripped)
    with Image.open(io.BytesIO(stripped)) as image, Image.open(io.BytesIO(original)) as sent:
        assert image.format == "MPO" and image.n_frames == 2
        for frame in range(2):
            image.seek(frame)
            sent.seek(frame)
            assert_clean(image.getexif())
            assert image.getexif()[ORIENTATION] == 6
            assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(sent.convert("RGB")))


def _iptc(*datasets: tuple[int, bytes]) -> bytes:
    return b"".join(b"\x1c\x02" + struct.pack(">BH", n, len(v)) + v for n, v in datasets)


def test_jpeg_iptc_places_and_by_line_are_blanked() -> None:
    """An editor's APP13 (Photoshop resources, IPTC-IIM), built by hand: city, country and
    by-line blanked in place, the caption kept."""
    iptc = _iptc((80, b"Jane Doe"), (90, b"Paris"), (101, b"France"), (120, b"A cat, asleep"))
    resource = (
        b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iptc)) + iptc + b"\x00" * (len(iptc) % 2)
    )
    app13 = b"Photoshop 3.0\x00" + resource
    jpeg = encode("JPEG")
    original = jpeg[:2] + b"\xff\xed" + struct.pack(">H", len(app13) + 2) + app13 + jpeg[2:]
    stripped = strip_identifying(original)
    assert_stripped(original, stripped)
    assert b"France" not in stripped and b"A cat, asleep" in stripped
    assert stripped.count(b"\x1c\x02") == 4


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heif_and_avif_exif_and_xmp_items_are_stripped(fmt: str) -> None:
    original = encode(fmt, exif=identifying_exif(), xmp=XMP, quality=80)
    stripped = strip_identifying(original)
    assert_stripped(original, stripped)
    with Image.open(io.BytesIO(stripped)) as image:
        assert_clean(image.getexif())
        assert b"Paris" not in image.info["xmp"]
    # pillow-heif answers orientation 1 once it has applied it: the item's own EXIF says 6
    raw = pillow_heif.open_heif(io.BytesIO(stripped)).info["exif"] if fmt == "HEIF" else None
    exif = Image.Exif()
    exif.load(raw or Image.open(io.BytesIO(stripped)).info["exif"])
    assert exif[ORIENTATION] == 6


def test_webp_exif_and_xmp_chunks_are_stripped() -> None:
    original = encode("WEBP", exif=identifying_exif(), xmp=XMP, quality=80)
    stripped = strip_identifying(original)
    assert_stripped(original, stripped)
    with Image.open(io.BytesIO(stripped)) as image:
        assert_clean(image.getexif())
        assert image.getexif()[ORIENTATION] == 6


@pytest.mark.parametrize("compressed", [False, True])
def test_png_exif_and_xmp_chunks_are_stripped_with_valid_crcs(compressed: bool) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode(), zip=compressed)
    info.add_text("Raw profile type exif", "exif\n  12\n4a616e6520446f65")
    original = encode("PNG", exif=identifying_exif(), pnginfo=info)
    stripped = strip_identifying(original)
    assert np.array_equal(pixels(stripped), pixels(original))
    for secret in SECRETS + XMP_SECRETS + [b"4a616e6520446f65"]:
        assert secret not in stripped and secret not in _png_inflated(stripped), secret
    with Image.open(io.BytesIO(stripped)) as image:
        image.load()  # Pillow checks every chunk's CRC
        assert_clean(image.getexif())
        assert image.getexif()[ORIENTATION] == 6


def _png_inflated(data: bytes) -> bytes:
    """The compressed text of a PNG's chunks, inflated, and every CRC checked."""
    found, position = b"", 8
    while position < len(data):
        size, kind = struct.unpack_from(">I4s", data, position)
        body = data[position + 8 : position + 8 + size]
        crc = struct.unpack_from(">I", data, position + 8 + size)[0]
        assert zlib.crc32(kind + body) == crc, kind
        keyword = body.find(b"\x00")
        if kind == b"iTXt" and body[keyword + 1] == 1:
            language = body.index(b"\x00", keyword + 3)
            found += zlib.decompress(body[body.index(b"\x00", language + 1) + 1 :])
        position += 12 + size
    return found


@pytest.mark.parametrize("big_tiff", [False, True])
def test_tiff_is_stripped_in_place_like_the_rest(big_tiff: bool) -> None:
    """A TIFF is one TIFF structure: its IFD0 loses the same entries, its strips stay put
    (BigTIFF too: 8-byte offsets)."""
    exif = identifying_exif()
    tags = {**exif, EXIF_IFD: exif.get_ifd(EXIF_IFD), GPS_IFD: exif.get_ifd(GPS_IFD), 700: XMP}
    original = encode("TIFF", tiffinfo=tags, big_tiff=big_tiff)
    assert original[2] == (43 if big_tiff else 42)
    stripped = strip_identifying(original)
    assert_stripped(original, stripped)
    with Image.open(io.BytesIO(stripped)) as image:
        assert_clean(image.getexif())
        assert image.getexif()[ORIENTATION] == 6


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF", "BMP", "GIF"])
def test_a_photo_without_identifying_metadata_is_kept_byte_for_byte(fmt: str) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 3
    options = {} if fmt in ("BMP", "GIF") else {"exif": exif}
    original = encode(fmt, **options)
    assert strip_identifying(original) == original


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_exif_that_points_outside_its_block_is_zeroed_whole() -> None:
    """A block we cannot walk cannot be told clean: its bytes go, the photo stays."""
    exif = identifying_exif().tobytes()
    broken = exif[:6] + exif[6:10] + struct.pack(">I", 0xFFFF) + exif[14:]  # IFD0 far away
    original = encode("JPEG", exif=broken)
    stripped = strip_identifying(original)
    assert len(stripped) == len(original)
    assert np.array_equal(pixels(stripped), pixels(original))
    assert b"SN-4242-BODY" not in stripped and not Image.open(io.BytesIO(stripped)).getexif()


def test_a_tiff_whose_own_structure_is_broken_is_refused() -> None:
    with pytest.raises(UnsupportedImage, match="location"):
        strip_identifying(b"II*\x00" + struct.pack("<I", 0xFFFF) + bytes(8))


def test_xmp_blanking_keeps_the_packet_length_and_other_properties() -> None:
    blanked = blank_xmp(XMP)
    assert len(blanked) == len(XMP)
    assert b"<exif:GPSAltitude>        </exif:GPSAltitude>" in blanked
    assert b"<dc:creator>" in blanked and b"Jane" not in blanked
    assert b'xmp:CreateDate="2024-05-01T12:30:00"' in blanked


def test_hostile_xmp_costs_linear_time() -> None:
    """Unclosed elements and attributes by the hundred thousand: no quadratic scan."""
    packet = b"<a:GPSLatitude>" * 100_000 + b'a:GPSLongitude="' * 100_000
    assert len(blank_xmp(packet)) == len(packet)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_compressed_xmp_bomb_is_dropped_not_inflated() -> None:
    """64 MiB of XMP in a 64 KiB iTXt chunk: inflated no further than 16 MiB, then dropped."""
    deflated = zlib.compress(b"<a:GPSLatitude>" + b" " * (64 << 20))
    chunk = _png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + deflated)
    png = encode("PNG")
    original = png[:33] + chunk + png[33:]  # after IHDR
    assert strip_identifying(original) == png


@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param(b"\xff\xd8" + b"\xff\xfe\x00\x02" * 500_000, id="jpeg-endless-comments"),
        pytest.param(
            _PNG_SIGNATURE_FOR_TESTS + _png_chunk(b"teXt", b"") * 200_000, id="png-empty-chunks"
        ),
        pytest.param(
            b"RIFF\x00\x00\x00\x00WEBP" + b"JUNK\x00\x00\x00\x00" * 200_000, id="webp-chunks"
        ),
    ],
)
def test_hostile_files_are_refused_in_bounded_time(hostile: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(UnsupportedImage):
        strip_identifying(hostile)
    assert time.perf_counter() - started < 1.0
