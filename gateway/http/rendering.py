"""The two JSON shapes side by side: /v1's numbers and readable labels, and the seed's /api
strings (exactly as the old Flask service wrote them, its label spellings too), for analyses and
for errors. A router picks its error shape
(`ErrorRenderer`); gateway.main renders every error through it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from core.models import DARKNET_SPELLINGS
from gateway.errors import ErrorBody
from gateway.results import Analysis, AnswerWarning, Box, Results

ErrorRenderer = Callable[[str, str], dict[str, str]]
# The kinds of an answer's `warnings`, for a client that reads only headers (/v1/annotate's JPEG).
WARNINGS_HEADER = "X-Picmetric-Warnings"


def warnings_header(warnings: list[AnswerWarning]) -> dict[str, str]:
    """`X-Picmetric-Warnings: random_weights=resnet50+yolov3, photo_reduced`; none when empty."""
    if not warnings:
        return {}
    kinds = [w.kind + (f"={'+'.join(w.models)}" if w.models else "") for w in warnings]
    return {WARNINGS_HEADER: ", ".join(kinds)}


def v1_analysis(analysis: Analysis) -> dict[str, Any]:
    return analysis.model_dump(mode="json")


def v1_error(errortype: str, message: str) -> dict[str, str]:
    return ErrorBody(errortype=errortype, message=message).model_dump()


def _seed_label(label: str) -> str:
    """ImageNet's label file's spelling (`fox_squirrel`), as the seed answered it."""
    return label.replace(" ", "_")


def _seed_object(label: str) -> str:
    """Darknet's spelling of a COCO class (`aeroplane`), as the seed answered it."""
    return DARKNET_SPELLINGS.get(label, label)


def _seed_confidence(value: float) -> str:
    """The seed printed numpy float32 scores: "0.5326323"."""
    return str(np.float32(value))


def _seed_box(box: Box) -> dict[str, str]:
    """Whole pixels as strings, in the seed's key order."""
    corners = {"x_min": box.x_min, "x_max": box.x_max, "y_min": box.y_min, "y_max": box.y_max}
    return {key: str(int(round(value))) for key, value in corners.items()}


def seed_analysis(url: str, results: Results) -> dict[str, Any]:
    """The seed's /api answer for the existing front end."""
    return {
        "success": "true",
        "url": url,
        "resnet50_objects": [
            {"confidence": _seed_confidence(found.confidence), "object": _seed_label(found.label)}
            for found in results.resnet50 or []
        ],
        "yolo_objects": [
            {
                "confidence": _seed_confidence(found.confidence),
                "object": _seed_object(found.label),
                "bounding_box": _seed_box(found.box),
            }
            for found in results.yolov3 or []
        ],
        "mtcnn_faces": [
            {
                "confidence": _seed_confidence(face.confidence),
                "bounding_box": _seed_box(face.box),
                "keypoints": {
                    name: [int(round(x)), int(round(y))] for name, (x, y) in face.keypoints.items()
                },
            }
            for face in results.mtcnn or []
        ],
    }


def seed_error(errortype: str, message: str) -> dict[str, str]:
    return {"success": "false", "errortype": errortype, "message": message}
