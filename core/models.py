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

# COCO_NAMES is Darknet's list (what YOLOv3 was trained with and the seed answered); these six
# are spelt otherwise by COCO itself, as /v1 answers them (the seed's /api keeps Darknet's).
COCO_SPELLINGS = {
    "aeroplane": "airplane",
    "motorbike": "motorcycle",
    "sofa": "couch",
    "pottedplant": "potted plant",
    "diningtable": "dining table",
    "tvmonitor": "tv",
}
DARKNET_SPELLINGS = {coco: darknet for darknet, coco in COCO_SPELLINGS.items()}


def readable_label(name: str) -> str:
    """A class name as a person reads it: ImageNet's words without underscores (`fox squirrel`,
    `Crock Pot`), COCO's own spelling (`airplane`, not Darknet's `aeroplane`). Idempotent."""
    return COCO_SPELLINGS.get(name, name).replace("_", " ")
