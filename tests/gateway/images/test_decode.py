"""Decoding: format sniffed from bytes, pixel limit from the header, EXIF orientation, colour."""

from __future__ import annotations

import io
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from gateway.errors import ImageTooLarge, UnsupportedImage
from gateway.images.decode import (
    DEFAULT_MAX_IMAGE_SIDE,
    DEFAULT_MAX_JPEG_SCANS,
    decode_rgb,
    jpeg_scans,
    plan_decode,
    read_header,
)
from gateway.images.privacy import strip_identifying
from gateway.settings import Settings
from tests.utils.decode_memory import decode_peak_bytes
from tests.utils.hostile_images import progressive_jpeg, tiff16
from tests.utils.real_photos import jpeg_bytes, real_photo


def _encode(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def test_decode_returns_rgb_in_the_right_channel_order() -> None:
    red = Image.new("RGB", (8, 4), (255, 0, 0))
    rgb = decode_rgb(_encode(red, "PNG"), max_pixels=1000).rgb
    assert rgb.shape == (4, 8, 3) and tuple(rgb[0, 0]) == (255, 0, 0)


def test_decode_honours_exif_orientation() -> None:
    """Orientation 6 (rotate 90° clockwise to view): a 40x20 file shows as 20x40."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.new("RGB", (40, 20), (0, 128, 0)), "JPEG", exif=exif.tobytes())
    image = decode_rgb(data, max_pixels=10_000)
    assert image.rgb.shape == (40, 20, 3) and (image.width, image.height) == (20, 40)


def test_decode_turns_grey_and_alpha_images_into_rgb() -> None:
    grey = decode_rgb(_encode(Image.new("L", (5, 5), 77), "PNG"), max_pixels=100).rgb
    rgba = decode_rgb(_encode(Image.new("RGBA", (5, 5), (1, 2, 3, 0)), "PNG"), max_pixels=100).rgb
    assert grey.shape == rgba.shape == (5, 5, 3)
    assert tuple(grey[0, 0]) == (77, 77, 77) and tuple(rgba[0, 0]) == (1, 2, 3)


def test_pixel_limit_is_checked_from_the_header() -> None:
    data = _encode(Image.new("RGB", (100, 100)), "PNG")
    assert read_header(data).width == 100
    with pytest.raises(ImageTooLarge, match="100x100 pixels"):
        decode_rgb(data, max_pixels=9_999)


@pytest.mark.parametrize("data", [b"", b"hello world", b"\xff\xd8\xff" + bytes(100), b"GIF89a"])
def test_non_images_and_truncated_images_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedImage):
        decode_rgb(data, max_pixels=10_000)


def test_truncated_png_is_unsupported() -> None:
    ok, encoded = cv2.imencode(".png", np.zeros((50, 50, 3), np.uint8))
    with pytest.raises(UnsupportedImage, match="corrupt or truncated"):
        decode_rgb(encoded.tobytes()[:60], max_pixels=10_000)


def _photo(width: int, height: int) -> Image.Image:
    """A smooth gradient, so reduced and full decodes can be compared pixel by pixel."""
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    pixels = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2)
    return Image.fromarray(pixels.astype(np.uint8))


def test_decode_reduces_a_jpeg_to_the_smallest_size_that_keeps_the_side_asked_for() -> None:
    """1600x1200: 1/8 would leave a 150 px short side, under 224; 1/4 leaves 300."""
    data = _encode(_photo(1600, 1200), "JPEG", quality=95)
    image = decode_rgb(data, max_pixels=2_000_000, min_side=224)
    assert image.rgb.shape == (300, 400, 3) and not image.full_resolution
    assert (image.width, image.height) == (1600, 1200)
    full = decode_rgb(data, max_pixels=2_000_000)
    assert full.rgb.shape == (1200, 1600, 3) and full.full_resolution
    shrunk = cv2.resize(full.rgb, (400, 300), interpolation=cv2.INTER_AREA)
    assert np.abs(shrunk.astype(int) - image.rgb).mean() < 2  # the same picture


def test_decode_keeps_full_resolution_when_asked_or_when_not_a_jpeg() -> None:
    jpeg = _encode(_photo(1600, 1200), "JPEG")
    assert decode_rgb(jpeg, max_pixels=2_000_000, min_side=1200).full_resolution
    png = _encode(_photo(1600, 1200), "PNG")
    assert decode_rgb(png, max_pixels=2_000_000, min_side=100).full_resolution


def test_reduced_decode_honours_exif_orientation() -> None:
    """An 800x400 file shown turned (orientation 6) is 400x800; at 1/4, 100x200 pixels, with
    the corner that is top-left on screen (the file's bottom-left: dark red, green 255) there."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(_photo(800, 400), "JPEG", quality=95, exif=exif.tobytes())
    image = decode_rgb(data, max_pixels=1_000_000, min_side=100)
    assert image.rgb.shape == (200, 100, 3) and (image.width, image.height) == (400, 800)
    assert image.rgb[1, 1, 0] < 20 and image.rgb[1, 1, 1] > 235


def test_jpeg_scans_are_counted_from_the_markers_of_the_main_image_only() -> None:
    """Oracle: libjpeg's standard progressive script has 10 scans for colour; a baseline JPEG
    has one; an EXIF thumbnail inside APP1 and a second picture after EOI (MPO) add none."""
    assert jpeg_scans(progressive_jpeg(64), most=64) == 10
    assert jpeg_scans(progressive_jpeg(64, repeats=5), most=64) == 15
    photo = Image.new("RGB", (64, 48), (10, 200, 30))
    assert jpeg_scans(_encode(photo, "JPEG"), most=64) == 1
    thumbnail = _encode(Image.new("RGB", (8, 8)), "JPEG", progressive=True)
    exif = Image.Exif()
    exif[0x0201], exif[0x0202] = 0, len(thumbnail)  # JPEGInterchangeFormat(Length)
    with_exif = _encode(photo, "JPEG", exif=exif.tobytes() + thumbnail)
    assert jpeg_scans(with_exif, most=64) == 1
    mpo = _encode(photo, "MPO", save_all=True, append_images=[photo])
    assert jpeg_scans(mpo, most=64) == 1
    assert jpeg_scans(progressive_jpeg(64, repeats=500), most=64) == 65  # stops counting


def test_a_jpeg_with_too_many_scans_is_refused_before_decoding() -> None:
    """4,000 repeated scans in 300 KB (4 MP): decoding takes over a second of CPU; the refusal
    takes milliseconds and names the setting."""
    data = progressive_jpeg(2048, repeats=4000)
    assert len(data) < 320_000
    started = time.perf_counter()
    with pytest.raises(UnsupportedImage, match="PICMETRIC_MAX_JPEG_SCANS") as refused:
        plan_decode(data, max_pixels=40_000_000, max_jpeg_scans=64)
    assert time.perf_counter() - started < 0.2
    assert refused.value.status_code == 415
    assert plan_decode(progressive_jpeg(64), 40_000_000, max_jpeg_scans=10).header.progressive


def test_decode_plan_counts_the_memory_a_decode_holds() -> None:
    """Stored samples the decoder may hold whole (a 16-bit RGBA TIFF: 8 bytes a pixel; a
    progressive JPEG's coefficients: 2 bytes a sample), plus the RGB output, plus 15%."""
    rgba16 = cv2.imencode(".tiff", np.zeros((300, 200, 4), np.uint16))[1].tobytes()
    plan = plan_decode(rgba16, 10**8, 64)
    assert (plan.header.bands, plan.header.sample_bytes) == (4, 2)
    assert plan.memory == 300 * 200 * (4 * 2 + 3) * 23 // 20
    png16 = cv2.imencode(".png", np.zeros((30, 20, 3), np.uint16))[1].tobytes()
    assert plan_decode(png16, 10**8, 64).memory == 30 * 20 * (3 * 2 + 3) * 23 // 20
    baseline = _encode(Image.new("RGB", (640, 480)), "JPEG")
    assert plan_decode(baseline, 10**8, 64).memory == 640 * 480 * 3 * 2 * 23 // 20
    reduced = plan_decode(baseline, 10**8, 64, min_side=100)
    assert reduced.factor == 4 and reduced.memory == 160 * 120 * 3 * 2 * 23 // 20
    progressive = plan_decode(progressive_jpeg(64), 10**8, 64)
    assert progressive.memory == 64 * 64 * (3 * 2 + 3 + 3) * 23 // 20


@pytest.mark.parametrize("min_side", [None, 1000, 400])
def test_decode_plan_memory_covers_what_libjpeg_takes_for_a_12mp_jpeg(
    min_side: int | None, tmp_path: Path
) -> None:
    """Oracle: the peak memory a 12 MP baseline JPEG's decode adds, whole and reduced
    (tests/utils/decode_memory.py), libjpeg loaded first; counted within 30% above it."""
    data = jpeg_bytes(real_photo(12))
    plan = plan_decode(data, 40_000_000, 64, min_side)
    warm = tmp_path / "small.jpg"
    warm.write_bytes(jpeg_bytes(real_photo(0.1)))
    measured = decode_peak_bytes(data, warm, min_side)
    assert measured <= plan.memory < 1.3 * measured, (measured, plan.memory)


def test_pixel_limit_refusal_names_its_setting() -> None:
    data = _encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageTooLarge, match="PICMETRIC_MAX_IMAGE_PIXELS"):
        plan_decode(data, max_pixels=9_999, max_jpeg_scans=64)


def test_max_jpeg_scans_default_is_the_settings_default() -> None:
    assert Settings().max_jpeg_scans == DEFAULT_MAX_JPEG_SCANS


def test_max_image_side_default_is_the_settings_default() -> None:
    assert Settings().max_image_side == DEFAULT_MAX_IMAGE_SIDE


@pytest.mark.parametrize("shape", [(1, 1_000_001), (40_000_000, 1), (2, 65_501)])
def test_a_side_over_the_limit_is_refused_from_the_header_naming_its_setting(
    shape: tuple[int, int],
) -> None:
    """A 1 x 1,000,001 PNG of 3 KB is within the pixel limit, but libpng refuses its row (on
    main: 415 "corrupt or truncated"); refused from the header, naming the setting."""
    data = _encode(Image.new("RGB", shape[::-1]), "PNG")
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="PICMETRIC_MAX_IMAGE_SIDE") as refused:
        plan_decode(data, 40_000_000, 64)
    assert refused.value.status_code == 413
    assert time.perf_counter() - started < 1


def test_decode_plan_memory_covers_what_opencv_takes_for_a_one_strip_deep_tiff() -> None:
    """Oracle: the peak memory a 6323x6323 16-bit RGBA TIFF in one strip adds while decoded
    (tests/utils/decode_memory.py)."""
    data = tiff16(6323)
    measured = decode_peak_bytes(data)
    counted = plan_decode(data, 40_000_000, 64).memory
    assert measured <= counted < 1.2 * measured, (measured, counted)


GPS_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="52,22.5N" '
    b'exif:GPSLongitude="4,53.1E"/></rdf:RDF></x:xmpmeta>'
)


@pytest.mark.parametrize("format", ["JPEG", "WEBP"])
def test_a_location_in_xmp_alone_is_a_location(format: str) -> None:
    """Some apps write the position in XMP only; once gateway.images.privacy blanks it, it is
    gone."""
    buffer = io.BytesIO()
    Image.new("RGB", (60, 40)).save(buffer, format, xmp=GPS_XMP)
    assert read_header(buffer.getvalue()).has_location
    assert not read_header(strip_identifying(buffer.getvalue())).has_location
    plain = io.BytesIO()
    Image.new("RGB", (60, 40)).save(plain, format, xmp=GPS_XMP.replace(b"GPS", b"Other"))
    assert not read_header(plain.getvalue()).has_location
