"""A photo's quality figures and perceptual hash (gateway/images/quality.py), on scikit-image's
photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gateway.images.quality import WORKING_SIDE, hash_distance, measure, working_grey, working_size
from tests.utils.mtcnn_faces import photos

NAMES = ("astronaut", "coffee", "chelsea", "rocket", "camera")


@pytest.fixture(scope="module")
def real() -> dict[str, np.ndarray]:
    return {name: photo for name, photo in photos().items() if name in NAMES}


def _scaled(rgb: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def _noisy(rgb: np.ndarray, sigma: float) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0, sigma, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", NAMES)
def test_blurred_copy_is_less_sharp(real: dict[str, np.ndarray], name: str) -> None:
    sharp, _ = measure(real[name])
    blurred, _ = measure(cv2.GaussianBlur(real[name], (0, 0), 1.5))
    assert blurred.sharpness < sharp.sharpness / 5


@pytest.mark.parametrize("name", NAMES)
def test_brighter_copy_is_as_sharp_and_brighter(real: dict[str, np.ndarray], name: str) -> None:
    """Contrast is not sharpness (the Laplacian's variance is divided by the photo's)."""
    photo, _ = measure(real[name])
    brighter, _ = measure(_scaled(real[name], 1.3))
    assert brighter.sharpness == pytest.approx(photo.sharpness, rel=0.1)
    assert brighter.exposure > photo.exposure
    assert brighter.highlights >= photo.highlights


@pytest.mark.parametrize("name", NAMES)
def test_dark_copy_has_low_exposure(real: dict[str, np.ndarray], name: str) -> None:
    dark, _ = measure(_scaled(real[name], 0.25))
    assert dark.exposure < 0.15 and dark.shadows > measure(real[name])[0].shadows


@pytest.mark.parametrize("name", NAMES)
def test_added_noise_raises_noise(real: dict[str, np.ndarray], name: str) -> None:
    photo, _ = measure(real[name])
    noisy, _ = measure(_noisy(real[name], 10))
    assert noisy.noise > photo.noise + 1


def test_noise_reads_the_sigma_of_gaussian_noise_on_a_flat_photo() -> None:
    """Immerkær's estimate, on a grey photo at the working size (nothing averaged away); the
    same noise in every channel, so the grey photo has all of it."""
    flat = np.full((WORKING_SIDE, WORKING_SIDE, 1), 128, np.uint8)
    photo, _ = measure(np.repeat(_noisy(flat, 6), 3, axis=2))
    assert photo.noise == pytest.approx(6, rel=0.05)
    still, _ = measure(np.repeat(flat, 3, axis=2))
    assert still.noise == 0 and still.sharpness == 0


def test_figures_are_in_their_ranges(real: dict[str, np.ndarray]) -> None:
    for photo in real.values():
        figures, phash = measure(photo)
        assert 0.05 < figures.sharpness < 1
        assert 0 < figures.exposure < 1 and 0 <= figures.shadows + figures.highlights <= 1
        assert 0 < figures.noise < 10
        assert len(phash) == 16 and int(phash, 16) >= 0


def test_figures_are_measured_at_one_working_size(real: dict[str, np.ndarray]) -> None:
    """A photo and its copy at twice the size (12 MP-like: first a whole factor, then the rest)
    give one working photo, so nearly the same figures and hash."""
    photo = real["coffee"]
    large = cv2.resize(photo, None, fx=4.3, fy=4.3, interpolation=cv2.INTER_CUBIC)
    assert working_grey(large).shape == working_grey(photo).shape == (WORKING_SIDE, 576)
    (small_figures, small_hash), (large_figures, large_hash) = measure(photo), measure(large)
    assert large_figures.exposure == pytest.approx(small_figures.exposure, abs=0.01)
    assert large_figures.sharpness == pytest.approx(small_figures.sharpness, rel=0.5)
    assert hash_distance(small_hash, large_hash) <= 4


@pytest.mark.parametrize(
    ("shape", "working"),
    [
        ((3000, 4000), (384, 512)),
        ((100, 100), (384, 384)),
        ((1000, 6000), (256, 1536)),
        ((2, 20000), (1, 1536)),  # on main: 384 x 3,840,000
        ((65535, 1), (1536, 1)),
        ((1, 1), (384, 384)),
    ],
)
def test_the_working_size_is_bounded_whatever_the_shape(
    shape: tuple[int, int], working: tuple[int, int]
) -> None:
    """Short side WORKING_SIDE unless the long side would pass WORKING_LONG_SIDE; never 0."""
    assert working_size(*shape) == working
    photo = np.random.default_rng(1).integers(0, 256, (*shape, 3), np.uint8)
    assert working_grey(photo).shape == working
    figures, phash = measure(photo)
    assert 0 <= figures.exposure <= 1 and len(phash) == 16


def test_hash_distance_counts_differing_bits() -> None:
    assert hash_distance("00000000000000ff", "000000000000000f") == 4
    assert hash_distance("ffffffffffffffff", "0000000000000000") == 64
