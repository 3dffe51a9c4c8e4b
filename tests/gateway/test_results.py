"""The typed results: faces linked to the YOLOv3 person box that contains them; figures not
counted; warnings."""

from __future__ import annotations

from gateway.http import rendering
from gateway.results import (
    AnswerWarning,
    Box,
    DetectedObject,
    Face,
    ModelRun,
    Results,
    Summary,
    weights_warnings,
)

POINTS = [(0.0, 0.0)] * 5
BOX = {"x_min": 0, "y_min": 0, "x_max": 1, "y_max": 1}


def _face(x_min: float, y_min: float, x_max: float, y_max: float) -> Face:
    return Face.of(0.99, (x_min, y_min, x_max, y_max), POINTS)


def _found(label: str, *corners: float) -> DetectedObject:
    return DetectedObject(label=label, confidence=0.9, box=Box.of(corners))


def test_faces_link_to_the_person_box_holding_them() -> None:
    results = Results(
        yolov3=[
            _found("dog", 0, 0, 500, 500),
            _found("person", 0, 0, 400, 400),  # a crowd-sized box holding the other person
            _found("person", 100, 100, 200, 300),
            _found("person", 600, 0, 700, 300),
        ],
        mtcnn=[
            _face(120, 110, 160, 160),  # inside both people: the smaller box, 2
            _face(10, 10, 50, 50),  # only in the large box, 1
            _face(690, 10, 730, 50),  # a quarter inside person 3: too little
            _face(900, 900, 950, 950),  # nobody's
        ],
    ).with_faces_linked()
    assert [face.person for face in results.mtcnn or []] == [2, 1, None, None]
    summary = Summary.of(results)
    assert (summary.people, summary.faces, summary.people_with_face) == (3, 4, 2)


def test_faces_stay_unlinked_without_yolov3_or_without_people() -> None:
    faces = [_face(10, 10, 50, 50)]
    assert Results(mtcnn=faces).with_faces_linked().mtcnn == faces
    no_people = Results(yolov3=[_found("cat", 0, 0, 100, 100)], mtcnn=faces).with_faces_linked()
    assert [face.person for face in no_people.mtcnn or []] == [None]


def test_the_seed_shape_does_not_gain_the_link() -> None:
    results = Results(
        yolov3=[_found("person", 0, 0, 100, 100)], mtcnn=[_face(10, 10, 50, 50)]
    ).with_faces_linked()
    assert results.mtcnn is not None and results.mtcnn[0].person == 0
    (face,) = rendering.seed_analysis("u", results)["mtcnn_faces"]
    assert set(face) == {"confidence", "bounding_box", "keypoints"}
    assert results.model_dump(mode="json")["mtcnn"][0]["person"] == 0  # what /v1 renders


def test_summary_figures_of_a_model_that_did_not_run_are_null_not_zero() -> None:
    """ResNet50 alone counted no people and no faces: those are None ("not counted")."""
    labels_only = Summary.of(Results(resnet50=[]))
    assert labels_only.labels == []
    assert (labels_only.people, labels_only.faces, labels_only.people_with_face) == (None,) * 3
    assert labels_only.objects is None
    faces_only = Summary.of(Results(mtcnn=[_face(10, 10, 50, 50)]))
    assert (faces_only.faces, faces_only.people, faces_only.people_with_face) == (1, None, None)
    assert faces_only.labels is None
    both = Summary.of(Results(yolov3=[], mtcnn=[]))
    assert (both.people, both.faces, both.people_with_face, both.objects) == (0, 0, 0, {})


def test_random_weights_are_one_warning_naming_the_models() -> None:
    runs = [
        ModelRun(name="resnet50", version="1", weights={"kind": "random"}, latency_ms=1),
        ModelRun(name="mtcnn", version="1", weights={"kind": "pretrained"}, latency_ms=1),
        ModelRun(name="yolov3", version="1", weights={"kind": "random"}, latency_ms=1),
    ]
    (warning,) = weights_warnings(runs)
    assert warning.kind == "random_weights" and warning.models == ["resnet50", "yolov3"]
    assert weights_warnings(runs[1:2]) == []
    header = rendering.warnings_header([warning, AnswerWarning.photo_reduced(800, 600, 0.5)])
    assert header == {"X-Picmetric-Warnings": "random_weights=resnet50+yolov3, photo_reduced"}
    assert rendering.warnings_header([]) == {}


def test_labels_read_as_words_in_v1_and_as_the_seed_spelt_them_in_api() -> None:
    """Oracle: ImageNet's label file (underscores) and Darknet's COCO list, which the seed
    answered; /v1 answers ImageNet's words and COCO's own spellings."""
    results = Results.model_validate(
        {
            "resnet50": [{"label": "fox_squirrel", "confidence": 0.9}],
            "yolov3": [
                {"label": "tvmonitor", "confidence": 0.8, "box": BOX},
                {"label": "traffic light", "confidence": 0.7, "box": BOX},
            ],
        }
    )
    assert [x.label for x in results.resnet50 or []] == ["fox squirrel"]
    assert [x.label for x in results.yolov3 or []] == ["tv", "traffic light"]
    assert Results.model_validate(results.model_dump()) == results  # idempotent
    seed = rendering.seed_analysis("u", results)
    assert [x["object"] for x in seed["resnet50_objects"]] == ["fox_squirrel"]
    assert [x["object"] for x in seed["yolo_objects"]] == ["tvmonitor", "traffic light"]
