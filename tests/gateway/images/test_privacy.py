"""Kept uploads cannot carry a location (gateway/images/privacy): the kept file is rebuilt from the
pixel data, orientation and colour profile alone. Two oracles that are not the rebuild's own
reading: ExifTool (tests/utils/exiftool.py) finds no place, person, contact or device in any kept
file, nor any of the secrets a fixture hid, in its bytes; the gateway's decoder gives exactly the
same pixels, at the orientation applied, as for the upload as sent. Fixtures are files written by
real encoders with metadata ExifTool's writer added, and hand-built hostile forms of every format
(tests/utils/hostile_metadata.py)."""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable, Iterator

import numpy as np
import pillow_heif
import pytest
from PIL import ImageCms

from gateway.errors import UnsupportedImage
from gateway.images.decode import decode_rgb, read_header
from gateway.images.privacy import KEPT_FORMATS, strip_identifying
from tests.utils.exiftool import identifying, identifying_each, write_tags
from tests.utils.hostile_metadata import FORMS, SECRETS, encode, photo

pillow_heif.register_heif_opener()

# ExifTool writes all of these into a real file: a position, a place in words, names, a serial
# number, a creator's contact and an owner, in EXIF, XMP and (where the format has it) IPTC.
IDENTIFYING_TAGS = [
    "-GPSLatitude=48.8584",
    "-GPSLatitudeRef=N",
    "-GPSLongitude=2.2945",
    "-GPSLongitudeRef=E",
    "-GPSAreaInformation=Eiffel Tower",
    "-EXIF:Artist=Jane Doe",
    "-EXIF:OwnerName=Jane Doe",
    "-EXIF:SerialNumber=SN-4242-BODY",
    "-EXIF:Orientation#=6",
    "-XMP-dc:Creator=Jane Doe",
    "-XMP-iptcCore:CreatorWorkEmail=jane@example.org",
    "-XMP-iptcCore:CreatorWorkTelephone=+33 1 5550 4242",
    "-XMP-iptcCore:CreatorAddress=1 Rue Secret",
    "-XMP-photoshop:City=Paris",
    "-XMP-xmpRights:Owner=Jane Doe",
    "-XMP-exif:GPSLatitude=48.8584 N",
    "-IPTC:By-line=Jane Doe",
    "-IPTC:City=Paris",
    "-IPTC:Country-PrimaryLocationName=France",
]
_SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
# The hostile forms a strict walk refuses rather than keeps (decoders disagree about them).
REFUSED = {
    "jpeg-junk-byte-before-exif",
    "jpeg-zero-length-segment-before-exif",
    "jpeg-ff00-before-exif",
    "heif-second-iloc",
    "avif-second-iloc",
    "tiff-65-pages",
    "bmp-with-exif-after-pixels",
}


def assert_kept_clean(sent: bytes, kept: bytes) -> None:
    """The privacy oracle, for every kept file: ExifTool finds nothing identifying, no secret is in
    its bytes, and the gateway decodes it to the same pixels, upright, as the upload."""
    assert identifying(kept, SECRETS) == []
    for secret in [*SECRETS, "SN-4242"]:
        assert secret.encode() not in kept, secret
    header = read_header(kept)
    assert not header.has_location
    try:
        original = read_header(sent)
    except UnsupportedImage:  # the gateway cannot read it (libavif refuses a broken Exif item)
        assert decode_rgb(kept, 10**8).rgb.size  # so the gateway never keeps it; this would do
        return
    assert (header.orientation, header.icc_profile) == (original.orientation, original.icc_profile)
    assert np.array_equal(decode_rgb(kept, 10**8).rgb, decode_rgb(sent, 10**8).rgb)


@pytest.mark.parametrize(
    ("fmt", "alpha"),
    [(fmt, False) for fmt in ("JPEG", "MPO", "PNG", "WEBP", "HEIF", "AVIF")]
    + [(fmt, True) for fmt in ("PNG", "WEBP", "HEIF", "AVIF")],
)
def test_real_files_with_metadata_written_by_exiftool_are_kept_clean(fmt: str, alpha: bool) -> None:
    """Real encoders' files (an MPO with its second view; with alpha: a WebP's ALPH chunk, a
    HEIF's or AVIF's alpha plane), a colour profile, and everything ExifTool's writer puts in: the
    kept file has the profile, orientation and alpha, nothing else."""
    options: dict[str, object] = {"icc_profile": _SRGB_ICC}
    if fmt == "MPO":
        options.update(save_all=True, append_images=[photo().rotate(180)])
    image = photo()
    if alpha:
        image.putalpha(image.getchannel("G"))
    sent = write_tags(encode(fmt, image, **options), *IDENTIFYING_TAGS)
    assert read_header(sent).bands == (4 if alpha else 3)
    assert len(identifying(sent, SECRETS)) >= 10  # the fixture does carry what must go
    kept = strip_identifying(sent)
    assert_kept_clean(sent, kept)
    assert read_header(kept).icc_profile == _SRGB_ICC
    assert read_header(kept).bands == (4 if alpha else 3)
    if fmt not in ("HEIF", "AVIF"):  # theirs is in irot, which pillow-heif applies (decode.py)
        assert read_header(kept).orientation == 6


def _long_profile() -> bytes:
    """An sRGB profile padded past 64 KB, which a JPEG holds in three APP2 segments."""
    profile = bytearray(_SRGB_ICC + bytes(150_000))
    struct.pack_into(">I", profile, 0, len(profile))  # the header's profile size
    return bytes(profile)


def test_a_cmyk_jpeg_and_a_long_profile_keep_what_their_colours_need() -> None:
    """A CMYK JPEG's Adobe segment (how the decoder converts its colours) and a profile spanning
    several APP2 segments are written anew: the same pixels, the profile byte for byte."""
    cmyk = write_tags(encode("JPEG", photo().convert("CMYK"), quality=90), *IDENTIFYING_TAGS)
    assert read_header(cmyk).bands == 4 and b"Adobe" in cmyk
    assert_kept_clean(cmyk, strip_identifying(cmyk))
    sent = write_tags(encode("JPEG", icc_profile=_long_profile()), *IDENTIFYING_TAGS)
    assert sent.count(b"ICC_PROFILE\x00") == 3
    kept = strip_identifying(sent)
    assert_kept_clean(sent, kept)
    assert read_header(kept).icc_profile == _long_profile()


def test_a_profile_with_a_segment_missing_is_refused() -> None:
    sent = encode("JPEG", icc_profile=_long_profile())
    second = sent.index(b"\xff\xe2", sent.index(b"ICC_PROFILE\x00\x01"))
    length = struct.unpack_from(">H", sent, second + 2)[0]
    with pytest.raises(UnsupportedImage, match="ICC_PROFILE"):
        strip_identifying(sent[:second] + sent[second + 2 + length :])


def test_a_heic_of_tiles_is_kept_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A phone's HEIC is a grid of tiles (an iPhone's: 512x512): the grid item, its ImageGrid
    data (in idat) and every tile are kept, referenced as before."""
    monkeypatch.setattr(pillow_heif.options, "GRID_TILE_SIZE", 256)
    sent = write_tags(encode("HEIF", photo(640, 384), quality=80), *IDENTIFYING_TAGS)
    assert b"grid" in sent and b"dimg" in sent
    kept = strip_identifying(sent)
    assert b"grid" in kept and b"dimg" in kept
    assert_kept_clean(sent, kept)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_hostile_form_is_refused_or_kept_without_what_it_hides(form: str) -> None:
    """Each way a lenient walk missed a location, a name or a contact (issue 27), in every format:
    kept clean, or refused where decoders would read the file differently (and TIFF and BMP,
    which are never kept)."""
    sent = FORMS[form]()
    try:
        kept = strip_identifying(sent)
    except UnsupportedImage as refused:
        assert form in REFUSED, refused
        return
    assert form not in REFUSED
    assert_kept_clean(sent, kept)


def _damaged(data: bytes, seed: int, count: int) -> Iterator[bytes]:
    """`count` copies of `data`, each cut short, with a byte changed, or bytes put in or taken
    out at a random place."""
    rng = random.Random(seed)
    for _ in range(count):
        at, damage = rng.randrange(len(data)), rng.randrange(4)
        if damage == 0:
            yield data[:at]
        elif damage == 1:
            yield data[:at] + bytes((rng.randrange(256),)) + data[at + 1 :]
        elif damage == 2:
            yield data[:at] + rng.randbytes(rng.randrange(1, 9)) + data[at:]
        else:
            yield data[:at] + data[at + rng.randrange(1, 9) :]


@pytest.mark.filterwarnings("ignore:(Tag data larger|Truncated File):UserWarning")  # Pillow's EXIF
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF", "AVIF"])
def test_damaged_files_are_refused_or_kept_clean(fmt: str) -> None:
    """Property over 300 seeded damaged copies of a file ExifTool filled with metadata: each is
    refused (UnsupportedImage, never another exception) or kept with nothing ExifTool finds."""
    sent = write_tags(encode(fmt, quality=80), *IDENTIFYING_TAGS)
    kept = []
    for damaged in _damaged(sent, seed=27, count=300):
        try:
            kept.append(strip_identifying(damaged))
        except UnsupportedImage:
            pass
    assert kept  # damage in pixel data is copied as it is (a PNG's CRCs refuse nearly all)
    assert identifying_each(kept, SECRETS) == [[]] * len(kept)
    for secret in SECRETS:
        assert not any(secret.encode() in file for file in kept), secret


def test_what_is_not_kept_is_refused_naming_the_kept_formats() -> None:
    with pytest.raises(UnsupportedImage, match="JPEG, PNG, WebP") as refused:
        strip_identifying(FORMS["tiff-65-pages"]())
    assert KEPT_FORMATS in str(refused.value) and "location" in str(refused.value)


def test_a_photo_without_metadata_keeps_its_pixels_and_structure() -> None:
    """A plain PNG is rebuilt to the same chunks: nothing to drop, nothing added."""
    sent = encode("PNG")
    assert strip_identifying(sent) == sent


def _heif_of_repeated_extents() -> bytes:
    """A 1 MB HEIC whose image item lists 4,000 extents over the same megabyte: 4 GB if copied."""
    sent = bytearray(encode("HEIF", quality=80) + bytes(1 << 20))
    at = sent.index(b"iloc")  # version 0, offset/length/base sizes 4/4/4 (pillow-heif)
    mdat = len(sent) - (1 << 20)
    extents = struct.pack(">H", 4000) + struct.pack(">II", mdat, 1 << 20) * 4000
    iloc = bytes(4) + b"\x44\x40" + struct.pack(">HHHI", 1, 1, 0, 0) + extents
    box = struct.pack(">I", 8 + len(iloc)) + b"iloc" + iloc
    old = struct.unpack_from(">I", sent, at - 4)[0]
    meta = sent.index(b"meta") - 4
    sent[at - 4 : at - 4 + old] = box
    struct.pack_into(">I", sent, meta, struct.unpack_from(">I", sent, meta)[0] + len(box) - old)
    return bytes(sent)


def _scan_of_stuffed_bytes() -> bytes:
    jpeg = encode("JPEG")
    end = jpeg.rindex(b"\xff\xd9")
    return jpeg[:end] + b"\xff\x00" * (10 << 20) + jpeg[end:]


@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param(lambda: b"\xff\xd8" + b"\xff\xfe\x00\x02" * 500_000, id="jpeg-comments"),
        pytest.param(lambda: b"\xff\xd8" + b"\xff" * (20 << 20), id="jpeg-fill-bytes"),
        pytest.param(_scan_of_stuffed_bytes, id="jpeg-20-mb-scan"),
        pytest.param(_heif_of_repeated_extents, id="heif-repeated-extents"),
        pytest.param(
            lambda: encode("PNG")[:33] + b"\x00\x00\x00\x00teXt\x2f\xaa\xa1\x8b" * 200_000,
            id="png-empty-chunks",
        ),
        pytest.param(
            lambda: b"RIFF\x40\x1a\x27\x00WEBP" + b"JUNK\x00\x00\x00\x00" * 320_000,
            id="webp-chunks",
        ),
    ],
)
def test_hostile_files_cost_linear_time(hostile: Callable[[], bytes]) -> None:
    """Megabytes of segments, fill bytes, stuffed scan bytes or chunks: refused or rebuilt within
    a second, each byte looked at a bounded number of times (no regex that backtracks)."""
    data = hostile()
    started = time.perf_counter()
    try:
        strip_identifying(data)
    except UnsupportedImage:
        pass
    assert time.perf_counter() - started < 1.0
