"""The `min_face_size` option without Triton: its one spelling and limits (gateway.results), and
the gateway's copy of the `mtcnn` model's pyramid arithmetic (gateway.triton.face_size) against
the model's own (model_repository/mtcnn/1/pyramid.py, config.pbtxt): the gateway refuses exactly
the values the model would refuse."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.model_config import parameter, read_config
from core.paths import PROJECT_ROOT
from gateway.errors import FaceSizeNotRunnable
from gateway.results import (
    DEFAULT_MIN_FACE_SIZE,
    FACE_SIZE_PATTERN,
    MIN_FACE_PX,
    Options,
    face_pixels,
    face_size,
)
from gateway.triton import face_size as gateway_faces
from tests.utils.mtcnn_faces import cascade

pyramid = cascade("pyramid")
parameters = cascade("parameters")
CONFIG = read_config(PROJECT_ROOT / "model_repository" / "mtcnn")


@pytest.mark.parametrize(
    ("given", "spelled", "pixels"),
    [
        ("40px", "40px", 40.0),
        (" 040px ", "40px", 40.0),
        ("12px", "12px", 12.0),
        ("2%", "2%", 60.48),  # of the 4032x3024 photo's short side
        ("2.50%", "2.5%", 75.6),
        ("1%", "1%", 30.24),
        ("0.125%", "0.125%", 3.78),  # the option's syntax; the photo's check refuses it
        ("100%", "100%", 3024.0),
    ],
)
def test_face_sizes_have_one_spelling_and_mean_pixels_of_the_photo(
    given: str, spelled: str, pixels: float
) -> None:
    assert face_size(given) == spelled
    assert face_pixels(spelled, 3024, 4032) == pixels == face_pixels(spelled, 4032, 3024)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("40", "with 'px'"),  # a bare number: pixels or a fraction? refused, not guessed
        (40, "with 'px'"),
        (0.02, "with 'px'"),
        ("40 px", "with 'px'"),
        ("1e2px", "with 'px'"),
        ("-20px", "with 'px'"),
        ("2.5px", "with 'px'"),
        ("2.1234%", "up to 3 decimals"),
        ("11px", "from 12px (PNet's window) to 10000px, not 11px"),
        ("10001px", "to 10000px, not 10001px"),
        ("0%", "above 0% and at most 100%, not 0%"),
        ("100.5%", "at most 100%, not 100.5%"),
    ],
)
def test_other_face_sizes_are_refused_saying_the_syntax(given: object, says: str) -> None:
    with pytest.raises(ValueError) as refused:
        face_size(given)
    assert says in str(refused.value)


def _accepted(text: str) -> bool:
    try:
        face_size(text)
    except ValueError:
        return False
    return True


# Near misses as well as hits: digits, units, points and blanks in any order, and numbers around
# every limit (11, 12, 10000, 10001 px; 0, 0.001, 100, 100.001 %) with leading zeros.
_ALPHABET = st.text(st.sampled_from("0123456789.%px \t\n\u00a0-e"), max_size=12)
_NUMBERS = st.builds(
    lambda zeros, number, unit, blank: f"{blank}{'0' * zeros}{number}{unit}{blank}",
    st.integers(0, 3),
    st.one_of(
        st.integers(0, 100_001).map(str),
        st.decimals(0, 101, places=3).map(lambda d: f"{d:f}"),
        st.sampled_from(["0.001", "100.001", "100.000", "99.999", "0.000", ".5", "5."]),
    ),
    st.sampled_from(["px", "%", ""]),
    st.sampled_from(["", " ", "\t", "\n"]),
)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(_ALPHABET, _NUMBERS, st.from_regex(FACE_SIZE_PATTERN, fullmatch=True)))
def test_the_openapi_pattern_accepts_exactly_what_the_gateway_accepts(text: str) -> None:
    """/docs' `pattern` for min_face_size and face_size() agree on every string: a client that
    follows the schema is never refused, and one the schema refuses never gets an answer."""
    assert bool(re.fullmatch(FACE_SIZE_PATTERN, text)) == _accepted(text), repr(text)


def test_the_gateways_default_and_pyramid_constants_are_the_models() -> None:
    assert float(parameter(CONFIG, "min_face_size")) == face_pixels(DEFAULT_MIN_FACE_SIZE, 1, 1)
    assert parameters.Parameters().min_face_size == face_pixels(DEFAULT_MIN_FACE_SIZE, 1, 1)
    assert float(parameter(CONFIG, "scale_factor")) == gateway_faces.SCALE_FACTOR
    assert pyramid.PNET_WINDOW == gateway_faces.PNET_WINDOW == MIN_FACE_PX
    assert pyramid.MAX_PYRAMID_PIXELS == gateway_faces.MAX_PYRAMID_PIXELS


def _model_refuses(height: int, width: int, pixels: float) -> bool:
    scales = pyramid.pyramid_scales(height, width, pixels, gateway_faces.SCALE_FACTOR)
    try:
        if scales:  # cascade.detect_faces checks the budget of a pyramid it makes
            pyramid.check_budget(height, width, scales)
    except parameters.CascadeError as exc:
        assert "raise min_face_size" in str(exc)
        return True
    return False


SIZES = [(864, 1152), (1512, 2016), (3024, 4032), (3456, 4608), (3600, 4800), (4000, 6000)]


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_the_gateway_refuses_exactly_what_the_model_would(height: int, width: int) -> None:
    """For whole and fractional pixels from PNet's window up: the same pyramid size as the model
    makes, a 400 exactly where the model's budget refuses, and `smallest_face_px` the boundary."""
    smallest = gateway_faces.smallest_face_px(height, width)
    for pixels in [12, 12.5, 13, 15.12, 20, 21, 22, 30.24, 60.48, 500, min(height, width) + 1]:
        scales = pyramid.pyramid_scales(height, width, pixels, gateway_faces.SCALE_FACTOR)
        levels = [pyramid.level_size(height, width, s) for s in scales]
        total = sum(h * w for h, w in levels)
        assert gateway_faces.pyramid_pixels(height, width, pixels) == total
        if pixels != int(pixels):
            continue  # the option takes whole pixels; the arithmetic above takes any
        refused = _model_refuses(height, width, pixels)
        assert refused == (pixels < smallest)
        options = Options(threshold=0.2, max_results=10, min_face_size=f"{pixels}px")
        if refused:
            with pytest.raises(FaceSizeNotRunnable, match=f"min_face_size {pixels}px .* ask for"):
                gateway_faces.for_photo(options, height, width)
        else:
            assert gateway_faces.for_photo(options, height, width).min_face_px == pixels
    assert _model_refuses(height, width, smallest - 1) == (smallest > MIN_FACE_PX)


def test_a_share_under_pnets_window_is_refused_naming_the_option_and_the_least_it_takes() -> None:
    options = Options(threshold=0.2, max_results=10, min_face_size="1%")
    with pytest.raises(FaceSizeNotRunnable) as refused:
        gateway_faces.for_photo(options, 864, 1152)  # 8.64 px
    assert str(refused.value) == (
        "min_face_size 1% is 8.64 px on this 1152x864 photo, less than 12 px (PNet's window); "
        "ask for 12px or more."
    )
    assert gateway_faces.for_photo(options, 1512, 2016).min_face_px == 15.12
