"""The album summary of a batch (gateway/album.py)."""

from __future__ import annotations

from gateway.album import album_of
from gateway.results import (
    Analysis,
    Box,
    DetectedObject,
    Face,
    ImageInfo,
    Label,
    Options,
    Results,
    Source,
    Summary,
)


def _analysis(labels: dict[str, float], objects: list[str], faces: int) -> Analysis:
    box = Box.of((0, 0, 100, 100))
    results = Results(
        resnet50=[Label(label=k, confidence=v) for k, v in labels.items()],
        yolov3=[DetectedObject(label=name, confidence=0.9, box=box) for name in objects],
        mtcnn=[Face.of(0.99, (10, 10, 20, 20), [(15, 15)] * 5) for _ in range(faces)],
    ).with_faces_linked()
    return Analysis(
        id="x",
        cached=False,
        created_at="2026-11-25T00:00:00+00:00",
        source=Source(kind="url", url="https://example.com/a.jpg"),
        image=ImageInfo(width=100, height=100, sha256="0" * 64),
        options=Options(threshold=0.2, max_results=10),
        models=[],
        results=results,
        summary=Summary.of(results),
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


def test_album_of_nothing_analysed_is_all_zero() -> None:
    album = album_of([], failed=3, max_labels=5)
    assert (album.images, album.failed, album.people, album.labels) == (3, 3, 0, [])
