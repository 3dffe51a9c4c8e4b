"""Simple figures of a photo's quality (sharpness, exposure, noise) and its perceptual hash, from
the decoded pixels, for albums (gateway.pipeline.album) to find copies and bursts and name their
best shot.

Every figure is measured on the grey photo at one working size (short side WORKING_SIDE px,
INTER_AREA), whatever size the photo was decoded at (a JPEG may be a reduced decode, only as large
as the models need): photos of any size, decoded at any reduction, are then comparable. A photo
longer than WORKING_LONG_SIDE / WORKING_SIDE to one (a panorama, a strip of pixels) is measured at
a long side of WORKING_LONG_SIDE px instead, so the working image is never larger than
WORKING_SIDE x WORKING_LONG_SIDE px whatever the photo's shape (a 20000x2 photo: 1536x1, not
3,840,000x384). `memory` counts what a measure holds."""

from __future__ import annotations

import math

import cv2
import imagehash
import numpy as np
from PIL import Image

from gateway.results import Quality

WORKING_SIDE = 384  # px, the short side the figures are measured at
WORKING_LONG_SIDE = 4 * WORKING_SIDE  # px, the long side at most
# Bytes a working pixel costs at most in `measure`: float32 copies for the Laplacian and the noise
# mask (4 B each, a few at once), the clipped-pixel masks and the hash's copy (1 B each).
_BYTES_PER_WORKING_PIXEL = 20
# Grey levels (0-255) at or below / at or above which a pixel counts as clipped.
SHADOW_LEVEL, HIGHLIGHT_LEVEL = 5, 250
# Immerkær's noise mask: the difference of two Laplacians, blind to a photo's slopes and edges
# to first order, so what it leaves is mostly noise.
_NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def working_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) a `height` x `width` photo is measured at: its short side WORKING_SIDE px,
    or its long side WORKING_LONG_SIDE px when that is the smaller scale; neither side under 1 px
    nor over WORKING_LONG_SIDE px."""
    scale = min(WORKING_SIDE / min(height, width), WORKING_LONG_SIDE / max(height, width))

    def scaled(side: int) -> int:
        return min(max(1, round(side * scale)), WORKING_LONG_SIDE)

    return scaled(height), scaled(width)


def memory(height: int, width: int) -> int:
    """Peak bytes `measure` holds for a `height` x `width` RGB photo, beyond the photo: its grey
    copy, the grey reduced by a whole factor (at most a quarter of it), and the working image's
    buffers."""
    pixels = height * width
    working_height, working_width = working_size(height, width)
    return pixels + pixels // 4 + working_height * working_width * _BYTES_PER_WORKING_PIXEL


def working_grey(rgb: np.ndarray) -> np.ndarray:
    """The photo in grey (uint8), resized to its `working_size`."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    height, width = grey.shape
    target_height, target_width = working_size(height, width)
    # OpenCV's INTER_AREA is fast for a whole factor only (12 MP to 512x384: 5 ms, not 15-30):
    # first a whole factor to 2-4 times the working size (the edge's leftover rows and columns
    # cut), then the rest. Every decode then ends as a reduced JPEG decode does, and one 12 MP
    # photo decoded whole, at 1/2 and at 1/4 reads a sharpness of 0.33, 0.36 and 0.29 (to
    # WORKING_SIDE in one whole factor: 0.20, 0.22, 0.29).
    factor = min(height // (2 * target_height), width // (2 * target_width))
    if factor >= 2:
        height, width = height // factor, width // factor
        grey = grey[: height * factor, : width * factor]
        grey = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
    smaller = target_height * target_width < height * width
    method = cv2.INTER_AREA if smaller else cv2.INTER_LINEAR
    return cv2.resize(grey, (target_width, target_height), interpolation=method)


def sharpness(grey: np.ndarray) -> float:
    """The variance of the Laplacian over the variance of the grey levels: 0 for a flat or
    smooth photo, about 0.1-0.6 for a sharp one (scikit-image's photos), under 0.02 for a
    visibly blurred one. Divided by the photo's own variance so that contrast does not read as
    sharpness: the raw variance of the Laplacian of a copy 1.3 times brighter is 25-65 % higher."""
    spread = float(grey.var())
    return float(cv2.Laplacian(grey, cv2.CV_32F).var()) / spread if spread > 0 else 0.0


def noise(grey: np.ndarray) -> float:
    """Immerkær's estimate of the noise's standard deviation (grey levels): the mean absolute
    response to _NOISE_MASK, scaled so Gaussian noise of sigma s reads s (fine texture reads as
    noise too, a little)."""
    height, width = grey.shape
    if height < 3 or width < 3:
        return 0.0
    response = cv2.filter2D(grey.astype(np.float32), -1, _NOISE_MASK)[1:-1, 1:-1]
    return float(np.abs(response).mean() * math.sqrt(math.pi / 2) / 6)


def measure(rgb: np.ndarray) -> tuple[Quality, str]:
    """The photo's quality figures and its perceptual hash (ImageHash's 64-bit DCT hash, as 16
    hex digits)."""
    grey = working_grey(rgb)
    pixels = grey.size
    figures = Quality(
        sharpness=round(sharpness(grey), 4),
        exposure=round(float(grey.mean()) / 255, 4),
        shadows=round(int(np.count_nonzero(grey <= SHADOW_LEVEL)) / pixels, 4),
        highlights=round(int(np.count_nonzero(grey >= HIGHLIGHT_LEVEL)) / pixels, 4),
        noise=round(noise(grey), 3),
    )
    return figures, str(imagehash.phash(Image.fromarray(grey)))


def hash_distance(a: str, b: str) -> int:
    """The Hamming distance of two hashes `measure` gave (0-64 bits)."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
