"""Bytes to an RGB array: the format is sniffed from the bytes (never from headers), the pixel
count is read from the image header before the full decode, OpenCV decodes and honours EXIF
orientation."""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from gateway.errors import ImageTooLarge, UnsupportedImage

DECODABLE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
Image.MAX_IMAGE_PIXELS = None  # we enforce our own limit, before decoding


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


def read_header(data: bytes) -> ImageHeader:
    """The format and size from the first bytes, without decoding pixels."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            header = ImageHeader(image.format or "", image.width, image.height)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnsupportedImage(
            "The data is not an image we can read; send JPEG, PNG, WebP, BMP or TIFF."
        ) from exc
    if header.format not in DECODABLE_FORMATS:
        raise UnsupportedImage(
            f"{header.format or 'This'} images are not supported; "
            "send JPEG, PNG, WebP, BMP or TIFF."
        )
    return header


def decode_rgb(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode to an RGB uint8 array [height, width, 3] (grey and alpha images included)."""
    header = read_header(data)
    if header.width * header.height > max_pixels:
        raise ImageTooLarge(
            f"Image is {header.width}x{header.height} pixels, "
            f"more than the {max_pixels} pixel limit."
        )
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise UnsupportedImage(f"The {header.format} image is corrupt or truncated.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
