"""The two JSON shapes of one analysis: the seed's strings (the old Flask service's rules, kept
for the existing front end) and /v1's numbers."""

from __future__ import annotations

from gateway.http import rendering
from gateway.results import Box, DetectedObject, Face, Label, Results, Summary

FACE = Face.of(
    0.99871236, (10.4, 20.5, 50.51, 80.49), [(20, 40), (40, 40.5), (30, 50), (22, 60), (38, 60)]
)
RESULTS = Results(
    resnet50=[Label(label="tabby", confidence=0.5326323)],
    yolov3=[
        DetectedObject(label="person", confidence=0.25, box=Box.of((0, 1.5, 99.49, 199.5))),
        DetectedObject(label="cat", confidence=0.75, box=Box.of((5, 5, 6, 6))),
        DetectedObject(label="person", confidence=0.5, box=Box.of((1, 2, 3, 4))),
    ],
    mtcnn=[FACE],
)


def test_seed_analysis_writes_every_value_as_the_seed_did() -> None:
    body = rendering.seed_analysis("https://example.com/a.jpg", RESULTS)
    assert body["success"] == "true" and body["url"] == "https://example.com/a.jpg"
    assert body["resnet50_objects"] == [{"confidence": "0.5326323", "object": "tabby"}]
    first = body["yolo_objects"][0]
    assert first["confidence"] == "0.25" and first["object"] == "person"
    # Whole pixels as strings, x before y, numbers rounded half to even as Python's round().
    assert first["bounding_box"] == {"x_min": "0", "x_max": "99", "y_min": "2", "y_max": "200"}
    assert list(first["bounding_box"]) == ["x_min", "x_max", "y_min", "y_max"]
    face = body["mtcnn_faces"][0]
    assert face["confidence"] == "0.99871236"
    assert face["bounding_box"] == {"x_min": "10", "x_max": "51", "y_min": "20", "y_max": "80"}
    assert face["keypoints"]["left_eye"] == [20, 40]
    assert face["keypoints"]["right_eye"] == [40, 40]
    assert list(face["keypoints"]) == ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]


def test_seed_analysis_of_models_that_did_not_run_is_empty_lists() -> None:
    body = rendering.seed_analysis("u", Results(resnet50=[]))
    assert body["resnet50_objects"] == body["yolo_objects"] == body["mtcnn_faces"] == []


def test_error_bodies_in_each_shape() -> None:
    assert rendering.v1_error("not_found", "No.") == {"errortype": "not_found", "message": "No."}
    assert rendering.seed_error("not_found", "No.") == {
        "success": "false",
        "errortype": "not_found",
        "message": "No.",
    }


def test_summary_counts_people_faces_objects_and_labels() -> None:
    summary = Summary.of(RESULTS)
    assert summary.people == 2 and summary.faces == 1
    assert summary.objects == {"person": 2, "cat": 1}
    assert summary.labels == ["tabby"]


def test_boxes_and_landmarks_are_rounded_to_a_hundredth_of_a_pixel() -> None:
    assert Box.of((1.23456, 2.0, 3.005001, 4.9999)).model_dump() == {
        "x_min": 1.23,
        "y_min": 2.0,
        "x_max": 3.01,
        "y_max": 5.0,
    }
    assert Face.of(0.5, (0, 0, 1, 1), [(1.234, 5.678)] * 5).keypoints["nose"] == (1.23, 5.68)
