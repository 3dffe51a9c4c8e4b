"""Header reading counts what the decoder will allocate, and is itself bounded and total: HEIF/AVIF
sizes from their boxes (tiles, clean apertures, AV1 frames), a multi-page TIFF refused from its
first IFD, PNG metadata inflated within MAX_METADATA_BYTES, an ICC profile only as bytes, and any
hostile header a 415, never another exception. The files come from real encoders, then byte
surgery (tests/utils/hostile_headers.py)."""

from __future__ import annotations

import dataclasses
import io
import random
import subprocess
import sys
import time

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from core.paths import PROJECT_ROOT
from gateway.errors import ImageTooLarge, PicmetricError, UnsupportedImage
from gateway.images.decode import (
    MAX_METADATA_BYTES,
    ImageHeader,
    decode_rgb,
    plan_decode,
    read_header,
)
from tests.utils.heif_files import Tile, encoded_tile, grid_file, heif_file, ispe, single_file
from tests.utils.hostile_headers import (
    chained_tiff,
    heif_lies,
    png_text_bomb,
    png_xmp,
    tiff_with_icc_type,
)
from tests.utils.phone_formats import display_p3, encode

LIMIT = 40_000_000


@pytest.fixture(scope="module")
def lies() -> dict[str, bytes]:
    return heif_lies()


def test_a_heic_cropped_by_its_clean_aperture_counts_its_coded_grid(lies: dict[str, bytes]) -> None:
    """A 64x64 clean aperture over 576 tiles: libheif decodes all 151 MP; the limit counts them."""
    data = lies["heic_clap"]
    assert Image.open(io.BytesIO(data)).size == (64, 64)  # what the library reports
    header = read_header(data)
    assert header.pixels == 24 * 24 * 512 * 512
    with pytest.raises(ImageTooLarge, match="coded as 12288x12288") as refused:
        plan_decode(data, LIMIT, 64)
    assert "PICMETRIC_MAX_IMAGE_PIXELS" in str(refused.value)
    # Under a larger limit, the decode budget counts the coded grid, not 64x64.
    assert plan_decode(data, 10**9, 64).memory > header.pixels * 9


@pytest.mark.parametrize("name", ["avif_grid_ispe", "avif_frame"])
def test_an_avif_whose_ispe_understates_its_coded_size_is_refused(
    lies: dict[str, bytes], name: str
) -> None:
    data = lies[name]
    assert Image.open(io.BytesIO(data)).size == (64, 64)
    with pytest.raises(UnsupportedImage, match="8192x8192") as refused:
        plan_decode(data, LIMIT, 64)
    assert refused.value.status_code == 415


@pytest.mark.parametrize("format", ["HEIF", "AVIF"])
def test_grids_whose_sizes_disagree_are_refused(format: str) -> None:
    """Each lie of a grid against its tiles and its ispe, a clean aperture larger than the image,
    and more items than the walk reads: 415 naming what disagrees."""
    tile = encoded_tile(format, 64, 64)
    lies = {
        "an ispe of 100x100": grid_file(tile, 2, 2, grid_ispe=(100, 100)),
        "tiles 64 wide for a grid 200 wide": grid_file(tile, 2, 2, output=(200, 128)),
        "tiles 64 high for a grid 60 high": grid_file(tile, 2, 2, output=(128, 60)),
        "grid of 3 tiles": _three_tiles(tile),
        "clean aperture larger": grid_file(tile, 2, 2, crop=(129, 128)),
        "more than 1000 items": grid_file(tile, 32, 32),  # the walk's bound, libheif's too
    }
    for reason, data in lies.items():
        with pytest.raises(UnsupportedImage, match=reason):
            read_header(data)
    assert read_header(grid_file(tile, 2, 2, output=(100, 128))).pixels == 4 * 64 * 64


def _three_tiles(tile: Tile) -> bytes:
    """A 2x2 grid whose dimg reference lists 3 tiles."""
    data = bytearray(grid_file(tile, 2, 2))
    at = data.index(b"dimg") + 4 + 2
    data[at : at + 2] = (3).to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("format", ["HEIF", "AVIF"])
@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("tile_size", [0, 128])
def test_real_encoders_files_count_their_coded_pixels(
    format: str, mode: str, tile_size: int
) -> None:
    """Oracle: the encoders' own files (pillow-heif's grids of 128 px tiles, alpha planes, odd
    sizes): accepted, counted at least at their size and at most at their tiles' area, and
    decoded to that size."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (300, 401, len(mode)), np.uint8), mode)
    pillow_heif.options.GRID_TILE_SIZE = tile_size
    try:
        data = encode(image, format, quality=60)
    finally:
        pillow_heif.options.GRID_TILE_SIZE = 0
    header = read_header(data)
    assert (header.width, header.height) == (401, 300)
    assert 401 * 300 <= header.pixels <= 512 * 384
    assert decode_rgb(data, header.pixels).rgb.shape == (300, 401, 3)
    with pytest.raises(ImageTooLarge):
        plan_decode(data, header.pixels - 1, 64)


@pytest.mark.parametrize("format", ["HEIF", "AVIF"])
def test_a_heif_whose_metadata_would_be_inflated_is_refused(format: str) -> None:
    """An XMP item with a content encoding (libheif inflates it when the file is opened)."""
    tile = encoded_tile(format, 64, 64)
    image = (tile.type, [tile.config, ispe(64, 64)])
    plain = heif_file(tile, [image, (b"mime" + b"\0application/rdf+xml\0", [])], [], None)
    assert read_header(plain).pixels == 64 * 64
    xmp = (b"mime" + b"\0application/rdf+xml\0deflate\0", [])
    with pytest.raises(UnsupportedImage, match="compressed \\(deflate\\)"):
        read_header(heif_file(tile, [image, xmp], [], None))


def test_a_tiff_of_many_pages_is_refused_from_its_first_ifd() -> None:
    """30,000 pages chained from the first (3.8 MB): Pillow's page count takes tens of seconds;
    refused at once."""
    data = chained_tiff(30_000)
    started = time.perf_counter()
    with pytest.raises(UnsupportedImage, match="more than one page"):
        read_header(data)
    assert time.perf_counter() - started < 0.5
    assert read_header(chained_tiff(1)).format == "TIFF"


@pytest.mark.parametrize("tag_type", [1, 2, 3, 4])
def test_a_tiff_whose_icc_tag_has_another_type_is_decoded_without_it(tag_type: int) -> None:
    """BYTE, ASCII, SHORT, LONG instead of UNDEFINED: the profile is not bytes Pillow returns, so
    it is ignored (the pixels taken as sRGB), never a 500."""
    data = tiff_with_icc_type(tag_type)
    header = read_header(data)
    assert header.icc_profile is None or isinstance(header.icc_profile, bytes)
    assert decode_rgb(data, 100).rgb.shape == (8, 8, 3)


def test_a_png_whose_text_inflates_to_gigabytes_is_refused_within_the_metadata_budget() -> None:
    """3,000 iTXt chunks of 3 KB, each inflating to 1 MiB (3 GiB): refused at the budget, in
    milliseconds (before: Pillow, then libpng, inflated every one)."""
    data = png_text_bomb(3000)
    started = time.perf_counter()
    with pytest.raises(UnsupportedImage, match="MiB the gateway reads"):
        read_header(data)
    assert time.perf_counter() - started < 0.5
    # Within the budget, the same chunks are read.
    assert read_header(png_text_bomb(2, 1 << 20)).format == "PNG"


def _jpeg_with(before_frame: bytes) -> bytes:
    """A 64x64 JPEG with `before_frame` right after its SOI."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    return data[:2] + before_frame + data[2:]


COMMENT = b"\xff\xfe\x00\x03x"  # a one-byte COM segment


@pytest.mark.parametrize(
    ("before_frame", "limit"),
    [
        (b"\xff" * 20_000_000, "stray bytes"),  # fill bytes: Pillow stepped over them for 11 s
        (b"\x00" * 5_000, "stray bytes"),  # junk before a marker
        (COMMENT * 500_000, "segments"),  # 2.5 MB of comments: 1 s in Pillow
    ],
    ids=["fill-bytes", "junk", "comments"],
)
def test_a_jpeg_header_pillow_would_walk_byte_by_byte_is_refused_at_once(
    before_frame: bytes, limit: str
) -> None:
    data = _jpeg_with(before_frame)
    started = time.perf_counter()
    with pytest.raises(UnsupportedImage, match=limit):
        read_header(data)
    assert time.perf_counter() - started < 0.1


def test_a_jpeg_with_a_few_fill_bytes_and_many_comments_is_read() -> None:
    """What libjpeg and real files do stays accepted: fill bytes before a marker, a thousand
    segments (the scan count's bound leaves room for them)."""
    data = _jpeg_with(b"\xff" * 100 + COMMENT * 1000)
    header = plan_decode(data, LIMIT, 64).header
    assert (header.width, header.height) == (64, 64)


@pytest.mark.parametrize("format", ["PNG", "WEBP"])
def test_an_xmp_packet_larger_than_the_metadata_budget_is_refused(format: str) -> None:
    packet = b'<x:xmpmeta><rdf:Description exif:GPSLatitude="1,2N"/>' + b" " * MAX_METADATA_BYTES
    small = b'<x:xmpmeta><rdf:Description exif:GPSLatitude="1,2N"/></x:xmpmeta>'
    if format == "PNG":
        data, fits = png_xmp(packet + b"</x:xmpmeta>"), png_xmp(small)
    else:
        photo = np.full((16, 16, 3), 90, np.uint8)
        data = encode(photo, format, xmp=packet + b"</x:xmpmeta>")
        fits = encode(photo, format, xmp=small)
    assert read_header(fits).has_location
    with pytest.raises(UnsupportedImage, match="MiB the gateway reads"):
        read_header(data)


def _mutations(data: bytes, rng: random.Random) -> bytes:
    """`data` with a header field broken: bytes flipped, a 32-bit field set to a large value,
    or the file cut short, within its first 4 KB."""
    mutated = bytearray(data)
    head = min(len(data), 4096)
    choice = rng.randrange(3)
    if choice == 0:
        for _ in range(rng.randrange(1, 8)):
            mutated[rng.randrange(head)] ^= 1 << rng.randrange(8)
    elif choice == 1:
        at = rng.randrange(head - 4)
        mutated[at : at + 4] = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 0x10000, 1]).to_bytes(4, "big")
    else:
        del mutated[rng.randrange(head) :]
    return bytes(mutated)


@pytest.mark.parametrize("format", ["JPEG", "PNG", "WEBP", "TIFF", "HEIF", "AVIF", "GRID"])
def test_header_reading_is_total_over_broken_headers(format: str) -> None:
    """Property: over 300 seeded mutations of a real file's header (with EXIF, GPS, an ICC
    profile and XMP), reading it returns a header or refuses with a 4xx, each in bounded time;
    no other exception reaches the caller (a 500)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 0.0), 3: "E", 4: (4.0, 53.0, 0.0)})
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 12:30:00"
    photo = Image.new("RGB", (48, 32), (30, 90, 150))
    if format == "GRID":
        data = grid_file(encoded_tile("HEIF", 64, 64), 2, 2, crop=(100, 100))
    else:
        buffer = io.BytesIO()
        photo.save(buffer, format=format, exif=exif, icc_profile=display_p3(), xmp=b"<x:xmpmeta/>")
        data = buffer.getvalue()
    rng = random.Random(format)
    for _ in range(300):
        broken = _mutations(data, rng)
        started = time.perf_counter()
        try:
            header = plan_decode(broken, LIMIT, 64).header
            assert isinstance(header, ImageHeader)
            assert header.icc_profile is None or isinstance(header.icc_profile, bytes)
        except PicmetricError as refused:
            assert 400 <= refused.status_code < 500, refused
        assert time.perf_counter() - started < 1


_DECODE_GROWTH = """
import sys
from gateway.images.decode import decode_rgb
from gateway.errors import UnsupportedImage
def kb(field):
    status = open('/proc/self/status').read().splitlines()
    return next(int(l.split()[1]) for l in status if l.startswith(field + ':'))
data = sys.stdin.buffer.read()
open('/proc/self/clear_refs', 'w').write('5')
before = kb('VmRSS')
try:
    decode_rgb(data, 40_000_000)
    print('decoded')
except UnsupportedImage:
    print((kb('VmHWM') - before) * 1024)
"""


def test_an_hevc_tile_larger_than_its_ispe_is_refused_by_libheif_before_decoding() -> None:
    """The HEVC side of the coded size is libheif's: it refuses a bitstream larger than its ispe
    (its security limit, set from the ispe) before decoding it, so the walk need not read the
    SPS. Oracle: a fresh interpreter's peak RSS grows by less than one 2048x2048 tile's planes."""
    big = encoded_tile("HEIF", 2048, 2048)
    small = dataclasses.replace(big, width=512, height=512)
    for data in (grid_file(small, 2, 2), single_file(big, (512, 512))):
        done = subprocess.run(
            [sys.executable, "-c", _DECODE_GROWTH],
            input=data,
            capture_output=True,
            check=True,
            cwd=PROJECT_ROOT,
        )
        assert done.stdout.strip() != b"decoded"
        assert int(done.stdout) < 2048 * 2048, int(done.stdout)
