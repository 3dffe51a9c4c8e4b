"""The album's grouping at library scale (gateway/pipeline/album.py `groups_of`): the same groups
as asking `same_scene` of every pair (tests/utils/albums.py `groups_all_pairs`, the oracle), for
photos drawn near each other in hash and time, where the index's shortcuts could miss a pair."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.pipeline.album import BURST_BITS, BURST_SECONDS, NEAR_BITS, groups_of
from gateway.results import Analysis
from tests.utils.albums import groups_all_pairs, library, photo

START = dt.datetime(2026, 5, 1, 12)


@st.composite
def albums(draw: st.DrawFn) -> dict[int, Analysis]:
    """Up to 40 photos around a few hashes: each a base hash with up to BURST_BITS + 2 bits
    flipped (within a 16-bit field or spread), taken within a few BURST_SECONDS of the others, or
    without a time or a hash; at indices with gaps."""
    bases = draw(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=3))
    count = draw(st.integers(0, 40))
    indices = draw(st.lists(st.integers(0, 200), min_size=count, max_size=count, unique=True))
    photos = {}
    for index in indices:
        value = draw(st.sampled_from(bases))
        for bit in draw(st.lists(st.integers(0, 63), max_size=BURST_BITS + 2, unique=True)):
            value ^= 1 << bit
        second = draw(st.none() | st.integers(0, 4 * BURST_SECONDS))
        taken_at = None if second is None else START + dt.timedelta(seconds=second)
        hashed = draw(st.booleans() | st.just(True))
        sharpness = draw(st.floats(0.01, 0.5))
        photos[index] = photo(value if hashed else None, taken_at, sharpness)
    return photos


@given(albums())
@settings(max_examples=200, deadline=None)
def test_groups_of_equals_every_pair_asked(photos: dict[int, Analysis]) -> None:
    assert groups_of(photos) == groups_all_pairs(photos)


def test_groups_of_finds_pairs_at_the_thresholds_in_every_field() -> None:
    """NEAR_BITS apart spread over every 16-bit field (at most 3 in each: found only by its
    flips), and BURST_BITS apart in one field, BURST_SECONDS apart."""
    spread = sum(1 << bit for bit in (0, 1, 2, 16, 17, 18, 32, 33, 48, 49))
    assert spread.bit_count() == NEAR_BITS
    one_field = (1 << BURST_BITS) - 1
    other = 0xFFFF_FFFF_0000_0000  # 32 bits from 0
    later = START + dt.timedelta(seconds=BURST_SECONDS)
    photos = {
        0: photo(0, None),
        1: photo(spread, None),
        2: photo(other, START),
        3: photo(other ^ one_field, later),
        4: photo(other ^ one_field << 16, None),  # BURST_BITS from 2, but no time
    }
    assert [g.images for g in groups_of(photos)] == [[0, 1], [2, 3]]
    assert groups_of(photos) == groups_all_pairs(photos)


def test_groups_of_a_library_equals_every_pair_asked() -> None:
    for same_second in (False, True):
        photos = library(400, seed=1, same_second=same_second)
        assert groups_of(photos) == groups_all_pairs(photos)
