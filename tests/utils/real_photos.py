"""Real-size, phone-like JPEG photos made from scikit-image's photos, the same for every call:
a 4:3 landscape picture of 2x2 upscaled tiles (coffee, chelsea, rocket, coffee mirrored) with
six real faces (the astronaut's and the cameraman's, as in `mtcnn_faces.collage()`) pasted one
per cell of a 3x2 grid, faces from about 40 px up to a quarter of the short side, and mild
sensor noise (Gaussian, sigma 3, fixed seed)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from tests.utils.mtcnn_faces import faces

SIDE_STEP = 96  # phone sensors' 4:3 sizes are multiples of 96 x 72 (1152x864 ... 4032x3024)
COLUMNS, ROWS = 3, 2
SMALLEST_FACE = 40  # px, face height as MTCNN boxes it
LARGEST_FACE = 0.25  # of the short side
FACE_IN_CROP = 0.55  # the face's height in the crops': MTCNN's box is 52-60 % of it
NOISE_SIGMA = 3.0
# Which face size goes into which grid cell (row-major), so small and large faces mix.
CELL_ORDER = (2, 5, 0, 4, 1, 3)


def size(megapixels: float) -> tuple[int, int]:
    """(width, height) of a 4:3 landscape photo of about `megapixels`."""
    width = SIDE_STEP * max(1, round(math.sqrt(megapixels * 1e6 * 4 / 3) / SIDE_STEP))
    return width, width * 3 // 4


SIZES = {"1mp": size(1), "3mp": size(3), "12mp": size(12)}  # 1152x864, 2016x1512, 4032x3024


def background(width: int, height: int) -> np.ndarray:
    """2x2 tiles: coffee, chelsea (a cat) / rocket, coffee mirrored, each upscaled (bicubic)."""
    from skimage import data

    tiles = [data.coffee(), data.chelsea(), data.rocket(), data.coffee()[:, ::-1]]
    half = (width // 2, height // 2)
    tiles = [cv2.resize(t, half, interpolation=cv2.INTER_CUBIC) for t in tiles]
    canvas = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
    return cv2.resize(canvas, (width, height), interpolation=cv2.INTER_CUBIC)


def real_photo(megapixels: float, seed: int = 0) -> np.ndarray:
    """RGB uint8 [height, width, 3], 4:3 landscape: the background tiles with six faces whose
    heights run geometrically from SMALLEST_FACE px to a quarter of the short side (1 MP: 40 to
    216 px; 12 MP: 40 to 756 px; the pasted crops, hair and shoulders included, are 1/FACE_IN_CROP
    times taller), each at a seeded place inside its cell of a 3x2 grid, then Gaussian noise."""
    width, height = size(megapixels)
    canvas = background(width, height)
    rng = np.random.default_rng(seed)
    crops = np.geomspace(SMALLEST_FACE, LARGEST_FACE * min(width, height), len(CELL_ORDER))
    crops /= FACE_IN_CROP
    cell_w, cell_h = width // COLUMNS, height // ROWS
    sources = faces()
    for cell, k in enumerate(CELL_ORDER):
        face = sources[k % 2]
        scale = crops[k] / face.shape[0]
        w, h = round(face.shape[1] * scale), round(crops[k])
        method = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        face = cv2.resize(face, (w, h), interpolation=method)
        x = (cell % COLUMNS) * cell_w + int(rng.integers(0, cell_w - w + 1))
        y = (cell // COLUMNS) * cell_h + int(rng.integers(0, cell_h - h + 1))
        canvas[y : y + h, x : x + w] = face
    noise = rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(NOISE_SIGMA)
    noise += canvas
    return np.clip(noise, 0, 255, out=noise).round().astype(np.uint8)


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
    """An RGB uint8 image as a JPEG file (OpenCV, 4:2:0), as a phone would upload it."""
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as JPEG")
    return encoded.tobytes()


def decoded(jpeg: bytes) -> np.ndarray:
    """A JPEG decoded as the gateway decodes it at full resolution: OpenCV, straight to RGB."""
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_COLOR_RGB)
