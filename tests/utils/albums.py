"""Albums for tests and benchmarks: the all-pairs grouping that gateway.pipeline.album.groups_of
must equal, and synthetic analyses that carry only what grouping reads (a perceptual hash, an
EXIF time, quality figures)."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict

from gateway.pipeline.album import BURST_BITS, NEAR_BITS, AlbumGroup, best_shot, same_scene
from gateway.results import Analysis, ImageInfo, Options, Quality, Results, Source, Summary


def groups_all_pairs(photos: dict[int, Analysis]) -> list[AlbumGroup]:
    """The grouping `groups_of` gave before multi-index hashing: `same_scene` asked of every
    pair, single linkage, groups by their first index."""
    parent = {i: i for i in photos}

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    indices = sorted(photos)
    for n, i in enumerate(indices):
        for j in indices[n + 1 :]:
            if root(i) != root(j) and same_scene(photos[i], photos[j]):
                parent[max(root(i), root(j))] = min(root(i), root(j))
    members: dict[int, list[int]] = defaultdict(list)
    for i in indices:
        members[root(i)].append(i)
    return [
        AlbumGroup(images=group, best=best_shot({i: photos[i] for i in group}))
        for group in members.values()
        if len(group) > 1
    ]


def photo(phash: int | None, taken_at: dt.datetime | None, sharpness: float = 0.2) -> Analysis:
    """An analysis with nothing found, of a photo with this hash, EXIF time and sharpness."""
    results = Results(resnet50=[], yolov3=[], mtcnn=[])
    return Analysis(
        id="x",
        cached=False,
        created_at="2026-11-25T00:00:00+00:00",
        source=Source(kind="url", url="https://example.com/a.jpg"),
        image=ImageInfo(
            width=100,
            height=100,
            sha256="0" * 64,
            phash=None if phash is None else f"{phash:016x}",
            taken_at=None if taken_at is None else taken_at.isoformat(),
        ),
        options=Options(threshold=0.2, max_results=10),
        models=[],
        results=results,
        summary=Summary.of(results),
        quality=Quality(sharpness=sharpness, exposure=0.5, shadows=0, highlights=0, noise=1),
        timings_ms={},
    )


def flipped(value: int, bits: int, rng: random.Random) -> int:
    """`value` with `bits` of its 64 bits flipped, chosen at random."""
    for bit in rng.sample(range(64), bits):
        value ^= 1 << bit
    return value


def library(photos: int, seed: int = 0, same_second: bool = False) -> dict[int, Analysis]:
    """A phone's library: scenes a few hours apart over a year, each of one to five shots (a
    copy within NEAR_BITS, or a burst's next shot within BURST_BITS a second or two later), one
    in twenty without an EXIF time. The scenes' hashes are drawn at random, so distinct scenes are
    about 32 bits apart (scikit-image's photos: 20 at the closest, benchmarks/albums.py).
    `same_second`: every photo says the same time, the sweep over bursts' worst case."""
    rng = random.Random(seed)
    start = dt.datetime(2025, 1, 1)
    found: dict[int, Analysis] = {}
    at = start
    while len(found) < photos:
        base = rng.getrandbits(64)
        at += dt.timedelta(seconds=rng.randint(60, 6 * 3600))
        shot = at
        for _ in range(min(rng.choice((1, 1, 1, 2, 3, 5)), photos - len(found))):
            burst = rng.random() < 0.5
            value = flipped(base, rng.randint(0, BURST_BITS if burst else NEAR_BITS), rng)
            timed = None if rng.random() < 0.05 else (start if same_second else shot)
            found[len(found)] = photo(value, timed, sharpness=rng.uniform(0.01, 0.5))
            shot += dt.timedelta(seconds=rng.randint(0, 2))
    return found
