"""Analysis results as the typed /v1 JSON (numbers as numbers) and as the seed's /api JSON
(values as strings, exactly as the old Flask service wrote them)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

PERSON_LABEL = "person"


def summarize(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """People and faces counted, and located objects counted per label."""
    objects = Counter(d["label"] for d in results.get("yolov3", []))
    return {
        "people": objects.get(PERSON_LABEL, 0),
        "faces": len(results.get("mtcnn", [])),
        "objects": dict(objects),
        "labels": [d["label"] for d in results.get("resnet50", [])],
    }


def _confidence(value: float) -> str:
    """The seed printed numpy float32 scores: "0.5326323"."""
    return str(np.float32(value))


def _box(box: dict[str, float]) -> dict[str, str]:
    return {key: str(int(round(box[key]))) for key in ("x_min", "x_max", "y_min", "y_max")}


def seed_response(url: str, results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The seed's /api answer for the existing front end."""
    return {
        "success": "true",
        "url": url,
        "resnet50_objects": [
            {"confidence": _confidence(d["confidence"]), "object": d["label"]}
            for d in results.get("resnet50", [])
        ],
        "yolo_objects": [
            {
                "confidence": _confidence(d["confidence"]),
                "object": d["label"],
                "bounding_box": _box(d["box"]),
            }
            for d in results.get("yolov3", [])
        ],
        "mtcnn_faces": [
            {
                "confidence": _confidence(d["confidence"]),
                "bounding_box": _box(d["box"]),
                "keypoints": {
                    name: [int(round(x)), int(round(y))] for name, (x, y) in d["keypoints"].items()
                },
            }
            for d in results.get("mtcnn", [])
        ],
    }


def seed_error(errortype: str, message: str) -> dict[str, str]:
    return {"success": "false", "errortype": errortype, "message": message}
