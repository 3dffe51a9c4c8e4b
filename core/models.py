"""The model contract shared by conversion, the gateway and the tests: the models Picmetric
offers, the order of MTCNN's landmarks and where the label files live in a model repository."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

ModelName = Literal["resnet50", "yolov3", "mtcnn"]
OFFERED_MODELS: tuple[ModelName, ...] = get_args(ModelName)

# The order of the `mtcnn` model's `landmarks` output (and of the `mtcnn` package's keypoints).
FACE_KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

# Label files, relative to the model repository: line i names class i.
IMAGENET_LABELS = Path("resnet50/imagenet_labels.txt")
COCO_NAMES = Path("yolov3/coco_names.txt")

# YOLOv3's COCO class for people: the summary counts these boxes.
PERSON_LABEL = "person"
