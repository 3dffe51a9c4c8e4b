"""Decoding: format sniffed from bytes, pixel limit from the header, EXIF orientation, colour."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from gateway.decode import decode_rgb, read_header
from gateway.errors import ImageTooLarge, UnsupportedImage


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
