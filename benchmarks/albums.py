"""The measurements behind albums (gateway/images/quality.py, gateway/pipeline/album.py): what the
quality figures and the perceptual hash cost, and how far apart the hashes of copies and of distinct
photos are.

`python -m benchmarks.albums` prints (1) the median time of `quality.measure` on the phone-like
12 MP photo of tests/utils/real_photos.py decoded at full size and at 1/4 (the reduced JPEG decode
ResNet50 and YOLOv3 alone get), and its figures at both; (2) over 19 of scikit-image's photos,
the hash distances of every distinct pair (the closest, the 5th percentile, the median) and of
each photo to its copies made as a burst's next shot would be (moved, blurred, brightened,
darker, recompressed, noisier, cropped), the largest and the mean per kind. No server needed.

`python -m benchmarks.albums --library 10000` prints instead how the grouping of copies and
bursts (`album.groups_of`) grows with a library's photos: its time at a tenth, half and all of
them (synthetic libraries, tests/utils/albums.py `library`), also when every photo says the same
second (the burst sweep's worst case), beside the all-pairs grouping it replaced where that
takes under a minute."""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np

from benchmarks._measure import machine, table
from gateway.images import quality
from gateway.pipeline.album import groups_of
from tests.utils.albums import groups_all_pairs, library
from tests.utils.mtcnn_faces import rgb
from tests.utils.real_photos import decoded, jpeg_bytes, real_photo

PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "text",
    "page",
    "moon",
    "brick",
    "grass",
    "gravel",
    "colorwheel",
    "coins",
    "clock",
    "cell",
    "stereo_motorcycle",
)


def _moved(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    height, width = image.shape[:2]
    move = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, move, (width, height), borderMode=cv2.BORDER_REFLECT)


def _gain(image: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(image.astype(np.float32) * gain + 10, 0, 255).astype(np.uint8)


def _recompressed(image: np.ndarray, quality_: int) -> np.ndarray:
    return decoded(jpeg_bytes(image, quality_))


def _cropped(image: np.ndarray, share: float) -> np.ndarray:
    height, width = image.shape[:2]
    dy, dx = int(height * share), int(width * share)
    inner = image[dy : height - dy, dx : width - dx]
    return cv2.resize(inner, (width, height), interpolation=cv2.INTER_AREA)


def _noisier(image: np.ndarray, sigma: float) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0, sigma, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


COPIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "moved 8x5 px": lambda i: _moved(i, 8, 5),
    "moved 3 % x 2 %": lambda i: _moved(i, i.shape[1] * 0.03, i.shape[0] * 0.02),
    "moved 6 %": lambda i: _moved(i, i.shape[1] * 0.06, 0),
    "blurred (sigma 1.5)": lambda i: cv2.GaussianBlur(i, (0, 0), 1.5),
    "blurred (sigma 3)": lambda i: cv2.GaussianBlur(i, (0, 0), 3),
    "1.3x brighter": lambda i: _gain(i, 1.3),
    "0.6x darker": lambda i: _gain(i, 0.6),
    "JPEG quality 40": lambda i: _recompressed(i, 40),
    "noise sigma 8": lambda i: _noisier(i, 8),
    "cropped 5 % a side": lambda i: _cropped(i, 0.05),
    "moved, blurred, brighter": lambda i: _gain(cv2.GaussianBlur(_moved(i, 6, 4), (0, 0), 2), 1.2),
}


def _median_ms(work: Callable[[], object], runs: int = 15) -> float:
    work()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def cost() -> str:
    jpeg = jpeg_bytes(real_photo(12))
    full = decoded(jpeg)
    flags = cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_COLOR_RGB
    reduced = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flags)
    rows = []
    for name, image in (("full", full), ("1/4", reduced)):
        figures, phash = quality.measure(image)
        size = f"{image.shape[1]}x{image.shape[0]}"
        ms = _median_ms(lambda image=image: quality.measure(image))
        figured = [f"{figures.sharpness:.3f}", f"{figures.exposure:.3f}", f"{figures.noise:.2f}"]
        rows.append([name, size, ms, *figured, phash])
    headers = ["decode", "pixels", "measure ms", "sharpness", "exposure", "noise", "phash"]
    return table(headers, rows)


def distances() -> str:
    from skimage import data

    def photo(name: str) -> np.ndarray:
        image = getattr(data, name)()
        return rgb(image[0] if isinstance(image, tuple) else image)  # a stereo pair: the left

    photos = {name: photo(name) for name in PHOTOS}
    hashes = {name: quality.measure(photo)[1] for name, photo in photos.items()}
    pairs = sorted(
        (quality.hash_distance(hashes[a], hashes[b]), a, b)
        for a, b in itertools.combinations(PHOTOS, 2)
    )
    spread = [d for d, _, _ in pairs]
    closest = ", ".join(f"{a}/{b} {d}" for d, a, b in pairs[:3])
    rows: list[list[object]] = [
        [
            f"distinct pairs ({len(pairs)})",
            spread[0],
            f"5th percentile {np.percentile(spread, 5):.0f}, median "
            f"{statistics.median(spread):.0f}; closest: {closest}",
        ]
    ]
    for kind, copy in COPIES.items():
        found = [
            quality.hash_distance(hashes[n], quality.measure(copy(p))[1]) for n, p in photos.items()
        ]
        rows.append([kind, max(found), f"mean {statistics.mean(found):.1f}, each: {found}"])
    return table(["photos", "bits (largest; distinct: smallest)", "more"], rows)


def _seconds(work: Callable[[], object], runs: int) -> float:
    """The fastest of `runs` timings, in seconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


ALL_PAIRS_UP_TO = 5000  # photos: all pairs of 5,000 take about 30 s here


def scaling(photos: int) -> str:
    rows: list[list[object]] = []
    for size in sorted({photos // 10, photos // 2, photos}):
        album = library(size)
        same_second = library(size, same_second=True)
        fast = _seconds(lambda album=album: groups_of(album), 3)
        worst = _seconds(lambda same_second=same_second: groups_of(same_second), 1)
        groups = groups_of(album)
        pairs = "—"
        if size <= ALL_PAIRS_UP_TO:
            pairs = f"{_seconds(lambda album=album: groups_all_pairs(album), 1) * 1000:.0f}"
            assert groups_all_pairs(album) == groups
        rows.append([size, len(groups), fast * 1000, fast / size * 1e6, worst * 1000, pairs])
    headers = [
        "photos",
        "groups",
        "groups_of ms",
        "µs per photo",
        "all in one second, ms",
        "all pairs ms",
    ]
    return table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--library", type=int, metavar="PHOTOS", help="time the grouping of up to PHOTOS photos"
    )
    args = parser.parse_args()
    print(machine(), "\n")
    if args.library:
        print(scaling(args.library))
        return
    print(cost(), "\n")
    print(distances())


if __name__ == "__main__":
    main()
