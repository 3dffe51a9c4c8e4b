"""The album summary of a batch (gateway/pipeline/album.py)."""

from __future__ import annotations

from gateway.pipeline.album import BURST_BITS, NEAR_BITS, AlbumGroup, album_of, best_shot, groups_of
from gateway.results import (
    Analysis,
    Box,
    DetectedObject,
    Face,
    ImageInfo,
    Label,
    Options,
    Quality,
    Results,
    Source,
    Summary,
)


def _analysis(
    labels: dict[str, float],
    objects: list[str],
    faces: int,
    phash: str | None = None,
    taken_at: str | None = None,
    quality: Quality | None = None,
    face_height: float = 10,
) -> Analysis:
    box = Box.of((0, 0, 100, 100))
    results = Results(
        resnet50=[Label(label=k, confidence=v) for k, v in labels.items()],
        yolov3=[DetectedObject(label=name, confidence=0.9, box=box) for name in objects],
        mtcnn=[Face.of(0.99, (10, 10, 20, 10 + face_height), [(15, 15)] * 5) for _ in range(faces)],
    ).with_faces_linked()
    return Analysis(
        id="x",
        cached=False,
        created_at="2026-11-25T00:00:00+00:00",
        source=Source(kind="url", url="https://example.com/a.jpg"),
        image=ImageInfo(width=100, height=100, sha256="0" * 64, phash=phash, taken_at=taken_at),
        options=Options(threshold=0.2, max_results=10),
        models=[],
        results=results,
        summary=Summary.of(results),
        quality=quality,
        timings_ms={},
    )


def test_album_adds_up_people_faces_and_objects_and_ranks_labels() -> None:
    album = album_of(
        [
            _analysis({"tabby": 0.6, "lynx": 0.3}, ["person", "cat"], faces=1),
            _analysis({"tabby": 0.8}, ["person", "person"], faces=0),
            _analysis({"lynx": 0.9, "kite": 0.95}, [], faces=2),
        ],
        failed=2,
        max_labels=2,
    )
    assert (album.images, album.analysed, album.failed) == (5, 3, 2)
    assert (album.people, album.faces, album.people_with_face) == (3, 3, 1)
    assert album.objects == {"person": 3, "cat": 1}
    # Two photos each for tabby (1.4 in all) and lynx (1.2): tabby first; kite is cut.
    assert [(x.label, x.images) for x in album.labels] == [("tabby", 2), ("lynx", 2)]
    assert abs(album.labels[0].confidence - 0.7) < 1e-9


def test_album_of_nothing_analysed_counts_nothing() -> None:
    album = album_of([], failed=3, max_labels=5)
    assert (album.images, album.failed, album.people, album.labels) == (3, 3, None, None)
    assert album.objects is None and album.faces is None


def test_album_figures_are_null_when_a_photo_did_not_count_them() -> None:
    """A photo analysed without YOLOv3 and ResNet50 counted no people and no labels: the album's
    are not counted (None), not the other photos' sum, while the faces every photo counted still
    add up."""
    without_yolo = _analysis({}, [], faces=1)
    results = without_yolo.results.model_copy(update={"yolov3": None, "resnet50": None})
    results = results.with_faces_linked()
    without_yolo = without_yolo.model_copy(
        update={"results": results, "summary": Summary.of(results)}
    )
    album = album_of([_analysis({}, ["person"], faces=1), without_yolo], failed=0, max_labels=1)
    assert (album.people, album.people_with_face, album.objects) == (None, None, None)
    assert album.faces == 2
    assert album.labels is None  # one photo did not run ResNet50: no list, not an empty one


def _hash(bits: int, high: bool = False) -> str:
    """A hash `bits` bits away from 0: its lowest bits set, or its highest."""
    ones = (1 << bits) - 1
    return f"{ones << (64 - bits) if high else ones:016x}"


def _photo(
    bits: int,
    taken_at: str | None = None,
    sharpness: float = 0.2,
    exposure: float = 0.5,
    clipped: float = 0.0,
    faces: int = 0,
    face_height: float = 10,
    high: bool = False,
) -> Analysis:
    quality = Quality(
        sharpness=sharpness, exposure=exposure, shadows=0, highlights=clipped, noise=1
    )
    return _analysis({}, [], faces, _hash(bits, high), taken_at, quality, face_height)


def test_copies_within_near_bits_are_grouped_and_the_sharpest_is_best() -> None:
    photos = {
        0: _photo(0, sharpness=0.10),
        1: _photo(NEAR_BITS, sharpness=0.30),  # NEAR_BITS from 0: one scene
        2: _photo(64 - NEAR_BITS, sharpness=0.5),  # far from both
        3: _photo(2, sharpness=0.02),
    }
    assert groups_of(photos) == [AlbumGroup(images=[0, 1, 3], best=1)]


def test_a_burst_is_grouped_within_burst_bits_only_when_taken_within_seconds() -> None:
    at = "2026-05-01T12:00:0{}"
    photos = {
        0: _photo(0, at.format(0)),
        1: _photo(BURST_BITS, at.format(4)),  # too far for copies, near enough for a burst
        2: _photo(64 - BURST_BITS, at.format(2)),  # at the same time, a different photo
        5: _photo(BURST_BITS, None, high=True),  # no time: NEAR_BITS only
    }
    assert [g.images for g in groups_of(photos)] == [[0, 1]]
    later = {0: _photo(0, at.format(0)), 1: _photo(BURST_BITS, "2026-05-01T12:00:30")}
    assert groups_of(later) == []
    farther = {0: _photo(0, at.format(0)), 1: _photo(BURST_BITS + 1, at.format(1))}
    assert groups_of(farther) == []


def test_photos_stored_without_a_hash_are_in_no_group() -> None:
    photos = {0: _analysis({}, [], 0), 1: _analysis({}, [], 0), 2: _photo(0), 3: _photo(0)}
    assert [g.images for g in groups_of(photos)] == [[2, 3]]


def test_best_shot_weighs_exposure_and_faces_between_shots_about_as_sharp() -> None:
    assert best_shot({0: _photo(0, sharpness=0.20), 1: _photo(0, sharpness=0.19)}) == 0
    clipped = {0: _photo(0, sharpness=0.20, clipped=0.4), 1: _photo(0, sharpness=0.19)}
    assert best_shot(clipped) == 1
    dark = {0: _photo(0, sharpness=0.20, exposure=0.15), 1: _photo(0, sharpness=0.19)}
    assert best_shot(dark) == 1
    face_lost = {0: _photo(0, sharpness=0.20), 1: _photo(0, sharpness=0.18, faces=1)}
    assert best_shot(face_lost) == 1
    larger = {
        0: _photo(0, sharpness=0.2, faces=1, face_height=10),
        1: _photo(0, sharpness=0.2, faces=1, face_height=40),
    }
    assert best_shot(larger) == 1
    blurred = {0: _photo(0, sharpness=0.02, faces=1), 1: _photo(0, sharpness=0.2)}
    assert best_shot(blurred) == 1  # a face does not save a blurred shot
    assert best_shot({3: _analysis({}, [], 0, _hash(0)), 4: _photo(0, sharpness=0.01)}) == 4


def test_album_counts_scenes_not_copies() -> None:
    photos = {i: _photo(bits) for i, bits in enumerate((0, 1, 2, 40, 64, 62))}
    groups = groups_of(photos)
    assert [g.images for g in groups] == [[0, 1, 2], [4, 5]]
    album = album_of(list(photos.values()), failed=1, max_labels=3, groups=groups)
    assert (album.images, album.analysed, album.scenes) == (7, 6, 3)
    assert album_of(list(photos.values()), failed=0, max_labels=3).scenes == 6
