"""The MTCNN pyramid (model_repository/mtcnn/1/pyramid.py), without Triton: scales against the
mtcnn package, levels against TensorFlow's area resize up to 12 MP, budgets and PNet's bands."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.utils.mtcnn_faces import cascade

mtcnn_parameters = cascade("parameters")
mtcnn_pyramid = cascade("pyramid")


@pytest.mark.slow
@pytest.mark.parametrize("size", [(12, 12), (13, 40), (300, 451), (512, 512), (3000, 4000)])
def test_pyramid_scales_match_the_package(size: tuple[int, int]) -> None:
    from mtcnn.utils.images import build_scale_pyramid

    height, width = size
    want = build_scale_pyramid(width, height, min_face_size=20, scale_factor=0.709)
    assert mtcnn_pyramid.pyramid_scales(height, width, 20, 0.709) == list(want)


def test_pyramid_scales_empty_for_images_below_pnet_window() -> None:
    assert mtcnn_pyramid.pyramid_scales(11, 11, 20, 0.709) == []
    assert mtcnn_pyramid.pyramid_scales(1, 4000, 20, 0.709) == []
    assert mtcnn_pyramid.pyramid_scales(4000, 1, 20, 0.709) == []


def test_pyramid_scales_skip_levels_smaller_than_pnet_window() -> None:
    """min_face_size=60 makes the package's pyramid go below 12 px; those levels are dropped."""
    scales = mtcnn_pyramid.pyramid_scales(512, 512, 60, 0.709)
    assert scales and scales[0] == pytest.approx(12 / 60)
    assert all(
        min(mtcnn_pyramid.level_size(512, 512, s)) >= mtcnn_pyramid.PNET_WINDOW for s in scales
    )


def test_pyramid_refuses_a_level_over_the_pixel_budget() -> None:
    image = np.zeros((3000, 4000, 3), np.float32)
    with pytest.raises(mtcnn_parameters.CascadeError, match="raise min_face_size"):
        mtcnn_pyramid.pyramid(image, [12 / 2])


def test_check_budget_counts_the_pixels_of_all_levels() -> None:
    """min_face_size 12 on 4000x3000 passes at the default scale_factor (24 megapixels over 15
    levels); at scale_factor 0.9 the first level is as big, but there are 51 (63 megapixels)."""
    mtcnn_pyramid.check_budget(3000, 4000, mtcnn_pyramid.pyramid_scales(3000, 4000, 12, 0.709))
    scales = mtcnn_pyramid.pyramid_scales(3000, 4000, 12, mtcnn_parameters.MAX_SCALE_FACTOR)
    assert len(scales) == 51
    with pytest.raises(mtcnn_parameters.CascadeError, match="in 51 levels .* lower scale_factor"):
        mtcnn_pyramid.check_budget(3000, 4000, scales)


def test_pyramid_levels_stay_few_at_the_largest_scale_factor() -> None:
    """The budgets allow at most a 5657-px short side at scale 1, so about 60 levels."""
    side = math.isqrt(mtcnn_pyramid.MAX_PYRAMID_PIXELS)
    assert (
        len(
            mtcnn_pyramid.pyramid_scales(
                side, side, mtcnn_pyramid.PNET_WINDOW, mtcnn_parameters.MAX_SCALE_FACTOR
            )
        )
        <= 60
    )
    assert (
        len(mtcnn_pyramid.pyramid_scales(100_000, 100_000, 20, mtcnn_parameters.MAX_SCALE_FACTOR))
        <= 100
    )


@pytest.mark.slow
@pytest.mark.parametrize("size", [(71, 54), (12, 12), (50, 76), (13, 9), (100, 77), (3, 70)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_area_level_matches_tensorflow(size: tuple[int, int], dtype: type) -> None:
    import tensorflow as tf

    image = np.random.default_rng(0).uniform(0, 255, (100, 77, 3)).astype(dtype)
    want = tf.image.resize(image[None], size, method="area").numpy()[0]
    level = mtcnn_pyramid.area_level(image, mtcnn_pyramid.running_sums(image), *size)
    assert level.shape == (3, *size) and level.dtype == np.float32
    np.testing.assert_allclose(level.transpose(1, 2, 0), want, atol=1e-3)


@pytest.mark.slow
def test_pyramid_of_a_12_megapixel_photo_matches_tensorflow() -> None:
    """Every level of a 4032x3024 photo's pyramid (running sums in int32 reach 771,120 down a
    column: still exact) within 1e-3 of TensorFlow's area resize, in bands of rows."""
    import tensorflow as tf

    image = np.random.default_rng(1).integers(0, 256, (3024, 4032, 3), dtype=np.uint8)
    scales = mtcnn_pyramid.pyramid_scales(3024, 4032, 20, 0.709)
    levels = mtcnn_pyramid.pyramid(image, scales)
    assert len(levels) == len(scales) == 15
    for scale, level in zip(scales[::4], levels[::4], strict=True):
        size = mtcnn_pyramid.level_size(3024, 4032, scale)
        want = tf.image.resize(image[None], size, method="area").numpy()[0]
        np.testing.assert_allclose(level.transpose(1, 2, 0), want, atol=1e-3, err_msg=f"{scale}")


@pytest.mark.parametrize("fill", ["white", "noise"])
def test_running_sums_wrap_in_16_bits_only_where_every_level_stays_exact(fill: str) -> None:
    """A 3024-row white photo sums to 771,120 down a column, far beyond 16 bits: the sums wrap,
    yet a 14-row level (216 rows per output row) is the same bytes as from int32 sums; a 11-row
    level (275 rows) gets int32 sums."""
    rng = np.random.default_rng(2)
    if fill == "white":
        image = np.full((3024, 40, 3), 255, np.uint8)
    else:
        image = rng.integers(0, 256, (3024, 40, 3), dtype=np.uint8)
    wide = mtcnn_pyramid.running_sums(image)
    assert wide.dtype == np.int32
    assert mtcnn_pyramid.running_sums(image, [1814, 14]).dtype == np.uint16
    assert mtcnn_pyramid.running_sums(image, [1814, 11]).dtype == np.int32
    narrow = mtcnn_pyramid.running_sums(image, [14])
    for height in (14, 20, 1814):
        want = mtcnn_pyramid.area_level(image, wide, height, 19)
        np.testing.assert_array_equal(mtcnn_pyramid.area_level(image, narrow, height, 19), want)
    assert mtcnn_pyramid.running_sums(image[:256], []).dtype == np.uint16


@pytest.mark.parametrize("height", [12, 13, 400, 401, 411, 1814])
def test_pnet_bands_cover_the_level_on_even_rows_with_the_window_overlap(height: int) -> None:
    width = 2419
    bands = mtcnn_pyramid.pnet_bands(height, width)
    assert bands[0][0] == 0 and bands[-1][1] == height
    for (start, stop), (next_start, _) in zip(bands, bands[1:], strict=False):
        assert start % 2 == 0 and (stop - start) % 2 == 0
        assert stop - next_start == mtcnn_pyramid.PNET_WINDOW - mtcnn_pyramid.PNET_STRIDE
        assert (stop - start) * width <= mtcnn_pyramid.PNET_BAND_PIXELS
    if height == 1814:
        assert len(bands) == 5  # 412 rows of 2419 pixels each but the last
