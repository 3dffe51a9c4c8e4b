"""Pixel steps after the decoder: EXIF orientation, ICC profile to sRGB, a Pillow image to a numpy
array. Each works on horizontal strips where it can, so the decode's peak memory grows by a strip,
not by another copy of the photo. A strip is sized by its pixels, not its rows: as many whole rows
as STRIP_PIXELS holds, at least one (a row is at most PICMETRIC_MAX_IMAGE_SIDE px)."""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict

import cv2
import numpy as np
from PIL import Image, ImageCms

STRIP_PIXELS = 1 << 20  # 256 rows of a 4096 px wide photo
# A few profiles (sRGB, Display P3, a camera maker's) cover most photos.
_CACHED_PROFILES = 64
_TRANSFORMS: OrderedDict[bytes, ImageCms.ImageCmsTransform | None] = OrderedDict()
_LOCK = threading.Lock()
_SRGB = ImageCms.createProfile("sRGB")
# Every colour at steps of 17 (16 levels a channel): a profile that maps them all within one
# level of themselves is sRGB under another name (there are many: "sRGB IEC61966-2.1", a camera's
# "sRGB built-in", Android's v4 sRGB...), and the photo is left as it is.
_PROBE = np.stack(np.meshgrid(*[np.arange(0, 256, 17, np.uint8)] * 3), -1).reshape(1, -1, 3)


def orient(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels turned as EXIF `orientation` (1-8) says, to show the photo upright."""
    if orientation == 2:
        return cv2.flip(rgb, 1)
    if orientation == 3:
        return cv2.rotate(rgb, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(rgb, 0)
    if orientation == 5:
        return cv2.transpose(rgb)
    if orientation == 6:
        return cv2.rotate(rgb, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(rgb), -1)
    if orientation == 8:
        return cv2.rotate(rgb, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return rgb


def srgb_transform(profile: bytes) -> ImageCms.ImageCmsTransform | None:
    """The transform from an RGB ICC profile to sRGB, cached by the profile's SHA-256 (a photo's
    profile can be megabytes; the cache keeps none of them); None when the profile is sRGB
    already, or is no RGB profile littlecms can read (the pixels are then taken as sRGB)."""
    digest = hashlib.sha256(profile).digest()
    with _LOCK:
        if digest in _TRANSFORMS:
            _TRANSFORMS.move_to_end(digest)
            return _TRANSFORMS[digest]
    transform = _build_transform(profile)
    with _LOCK:
        _TRANSFORMS[digest] = transform
        while len(_TRANSFORMS) > _CACHED_PROFILES:
            _TRANSFORMS.popitem(last=False)
    return transform


def _build_transform(profile: bytes) -> ImageCms.ImageCmsTransform | None:
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        if source.profile.xcolor_space.strip() != "RGB":
            return None
        transform = ImageCms.buildTransform(source, _SRGB, "RGB", "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None
    converted = np.asarray(transform.apply(Image.fromarray(_PROBE)), np.int16)
    return None if np.abs(converted - _PROBE).max() <= 1 else transform


def strip_rows(width: int) -> int:
    """The rows of one strip of an image `width` px wide."""
    return max(1, STRIP_PIXELS // max(width, 1))


def to_srgb(rgb: np.ndarray, transform: ImageCms.ImageCmsTransform) -> None:
    """Convert `rgb` (writable, C-contiguous) to sRGB in place, a strip at a time."""
    rows = strip_rows(rgb.shape[1])
    for top in range(0, rgb.shape[0], rows):
        strip = rgb[top : top + rows]
        image = Image.fromarray(strip)
        transform.apply_in_place(image)
        strip[...] = np.asarray(image)


def pillow_rgb(image: Image.Image) -> np.ndarray:
    """A loaded RGB Pillow image as a writable numpy array, copied a strip at a time (np.asarray
    of the whole image would hold two more copies of it while it joins its bytes)."""
    width, height = image.size
    rgb = np.empty((height, width, 3), np.uint8)
    rows = strip_rows(width)
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        rgb[top:bottom] = np.asarray(image.crop((0, top, width, bottom)))
    return rgb
