"""MTCNN's `min_face_size` for one photo: the request's option (`gateway.results.face_size`) in
pixels, within what the `mtcnn` model runs: at least PNet's window, and an image pyramid within
the cascade's pixel budget. The arithmetic repeats model_repository/mtcnn/1/pyramid.py's (the
gateway does not import the model's code; tests/gateway/triton/test_face_size.py checks that both
agree), so a value the model would refuse is a 400 naming the option before any inference, not
Triton's INVALID_ARG after it (a 502)."""

from __future__ import annotations

import numpy as np

from gateway.errors import FaceSizeNotRunnable
from gateway.results import MAX_FACE_PX, MIN_FACE_PX, Options, face_pixels

PNET_WINDOW = MIN_FACE_PX
SCALE_FACTOR = 0.709  # config.pbtxt's scale_factor, the mtcnn package's default
MAX_PYRAMID_PIXELS = 32_000_000  # pyramid.py's budget over all levels


def pyramid_pixels(height: int, width: int, min_face_px: float) -> int:
    """The pixels of the `mtcnn` model's pyramid over all its levels for this photo (pyramid.py's
    `pyramid_scales` and `level_size`; levels under PNet's window are skipped)."""
    min_side = min(height, width)
    if min_side < PNET_WINDOW:
        return 0
    count = round(-((np.log(min_side / PNET_WINDOW) / np.log(SCALE_FACTOR)) + 1))
    scales = (PNET_WINDOW / min_face_px) * SCALE_FACTOR ** np.arange(max(count, 0))
    sizes = [(int(height * float(s)), int(width * float(s))) for s in scales]
    return sum(h * w for h, w in sizes if min(h, w) >= PNET_WINDOW)


def smallest_face_px(height: int, width: int) -> int:
    """The smallest whole min_face_size in pixels the model runs for this photo (the pyramid
    shrinks as the faces asked for grow)."""
    low, high = PNET_WINDOW, MAX_FACE_PX
    while low < high:
        middle = (low + high) // 2
        if pyramid_pixels(height, width, middle) > MAX_PYRAMID_PIXELS:
            low = middle + 1
        else:
            high = middle
    return low


def for_photo(options: Options, height: int, width: int) -> Options:
    """`options` with `min_face_px` for a `height` x `width` photo; FaceSizeNotRunnable (400)
    naming min_face_size and the smallest value this photo allows when the model would refuse
    it."""
    size = options.min_face_size
    pixels = face_pixels(size, height, width)
    smallest = smallest_face_px(height, width)
    if pixels < PNET_WINDOW:
        raise FaceSizeNotRunnable(
            f"min_face_size {size} is {pixels:g} px on this {width}x{height} "
            f"photo, less than {PNET_WINDOW} px (PNet's window); ask for {smallest}px or more."
        )
    total = pyramid_pixels(height, width, pixels)
    if total > MAX_PYRAMID_PIXELS:
        raise FaceSizeNotRunnable(
            f"min_face_size {size} ({pixels:g} px) makes MTCNN's image pyramid {total:,} pixels "
            f"for this {width}x{height} photo, more than its {MAX_PYRAMID_PIXELS:,}; ask for "
            f"{smallest}px or more."
        )
    return options.model_copy(update={"min_face_px": pixels})
