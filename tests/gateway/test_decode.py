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
    rgb = decode_rgb(_encode(red, "PNG"), max_pixels=1000)
    assert rgb.shape == (4, 8, 3) and tuple(rgb[0, 0]) == (255, 0, 0)


def test_decode_honours_exif_orientation() -> None:
    """Orientation 6 (rotate 90° clockwise to view): a 40x20 file shows as 20x40."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.new("RGB", (40, 20), (0, 128, 0)), "JPEG", exif=exif.tobytes())
    assert decode_rgb(data, max_pixels=10_000).shape == (40, 20, 3)


def test_decode_turns_grey_and_alpha_images_into_rgb() -> None:
    grey = decode_rgb(_encode(Image.new("L", (5, 5), 77), "PNG"), max_pixels=100)
    rgba = decode_rgb(_encode(Image.new("RGBA", (5, 5), (1, 2, 3, 0)), "PNG"), max_pixels=100)
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
