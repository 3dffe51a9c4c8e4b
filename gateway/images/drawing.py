"""The detections drawn on the photo (EXIF orientation applied, the pixels the boxes are in):
YOLOv3 boxes with their class names, MTCNN face boxes with the five landmarks, and optionally
every detected face blurred for privacy. Answered as a JPEG."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from gateway.results import Box, Results

JPEG_QUALITY = 90
# RGB colours: objects amber, faces cyan, landmarks magenta; labels in black on the box colour.
OBJECT_COLOUR = (255, 176, 0)
FACE_COLOUR = (0, 220, 255)
LANDMARK_COLOUR = (255, 0, 200)
TEXT_COLOUR = (0, 0, 0)
WARNING_COLOUR = (255, 40, 40)  # the random-weights banner
FONT = cv2.FONT_HERSHEY_SIMPLEX
_MAX_SIGMA = 8.0  # px, the widest Gaussian made at the face's own size
_ENCODER_BYTES = 2_000_000  # libjpeg's own tables and rows, the font's (measured: about 1 MB)


def _corners(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Whole-pixel corners clipped to the image."""
    x0 = min(max(int(round(box.x_min)), 0), width - 1)
    y0 = min(max(int(round(box.y_min)), 0), height - 1)
    x1 = min(max(int(round(box.x_max)), 0), width - 1)
    y1 = min(max(int(round(box.y_max)), 0), height - 1)
    return x0, y0, x1, y1


def blur_faces(rgb: np.ndarray, results: Results) -> None:
    """Blur every face box in place, strongly enough that no feature is recognisable: a Gaussian
    whose width is a quarter of the face, so the blur follows the face's size."""
    height, width = rgb.shape[:2]
    for face in results.mtcnn or []:
        x0, y0, x1, y1 = _corners(face.box, width, height)
        if x1 <= x0 or y1 <= y0:
            continue
        sigma = max(x1 - x0, y1 - y0) / 4
        region = rgb[y0 : y1 + 1, x0 : x1 + 1]
        height, width = region.shape[:2]
        # A Gaussian costs its width per pixel (a 2000 px face at sigma 500: 170 s): a wider one
        # is made on the face shrunk until its sigma is _MAX_SIGMA px, then enlarged again.
        shrink = sigma / _MAX_SIGMA
        if shrink <= 1:
            region[...] = cv2.GaussianBlur(region, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
            continue
        size = (max(1, round(width / shrink)), max(1, round(height / shrink)))
        small = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), _MAX_SIGMA, borderType=cv2.BORDER_REFLECT)
        region[...] = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _label(canvas: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    """`text` on a filled tab of `colour` just above (x, y), or below it at the top edge; smaller
    where the photo is narrower than the text, so none is cut off."""
    scale = max(0.5, min(canvas.shape[:2]) / 1500)  # the short side: bounded by the pixel limit
    thickness = max(1, round(scale * 1.5))
    (text_width, text_height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    if text_width + 4 > canvas.shape[1]:
        scale = max(0.1, scale * (canvas.shape[1] - 4) / text_width)
        thickness = 1
        (text_width, text_height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    x = max(0, min(x, canvas.shape[1] - text_width - 4))  # kept inside the right edge
    top = y - text_height - baseline - 4 if y - text_height - baseline - 4 >= 0 else y
    cv2.rectangle(
        canvas, (x, top), (x + text_width + 4, top + text_height + baseline + 4), colour, -1
    )
    cv2.putText(
        canvas,
        text,
        (x + 2, top + text_height + 2),
        FONT,
        scale,
        TEXT_COLOUR,
        thickness,
        cv2.LINE_AA,
    )


def memory(height: int, width: int) -> int:
    """Peak bytes `draw` and `jpeg` hold beyond the photo: the drawn copy, and the JPEG in
    OpenCV's buffer and as bytes (together at most the photo's size at JPEG_QUALITY, noise
    included: measured 1.03 times), and the encoder's own buffers."""
    return 2 * height * width * 3 + _ENCODER_BYTES


def draw(
    rgb: np.ndarray, results: Results, blur: bool = False, random_models: Sequence[str] = ()
) -> np.ndarray:
    """A copy of the RGB photo with the detections drawn. `blur`: every face blurred and nothing
    drawn over it (no box, label or landmark: a photo to share). `random_models`: the models on
    random weights, named in a red banner across the top, since their boxes are noise."""
    canvas = np.ascontiguousarray(rgb).copy()
    if blur:
        blur_faces(canvas, results)
    height, width = canvas.shape[:2]
    line = max(2, round(min(height, width) / 400))
    for found in results.yolov3 or []:
        x0, y0, x1, y1 = _corners(found.box, width, height)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), OBJECT_COLOUR, line)
        _label(canvas, f"{found.label} {found.confidence:.2f}", x0, y0, OBJECT_COLOUR)
    for face in [] if blur else results.mtcnn or []:
        x0, y0, x1, y1 = _corners(face.box, width, height)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), FACE_COLOUR, line)
        _label(canvas, f"face {face.confidence:.2f}", x0, y0, FACE_COLOUR)
        radius = max(2, round((x1 - x0) / 25))
        for x, y in face.keypoints.values():
            cv2.circle(canvas, (int(round(x)), int(round(y))), radius, LANDMARK_COLOUR, -1)
    if random_models:
        _label(canvas, f"RANDOM WEIGHTS: {', '.join(random_models)}", 0, 0, WARNING_COLOUR)
    return canvas


def jpeg(drawn: np.ndarray) -> bytes:
    """`drawn` (RGB, C-contiguous, not used again) as a JPEG: turned to BGR in place for OpenCV's
    encoder, so the encoding holds no third copy of the photo beside it and the photo."""
    bgr = cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR, dst=drawn)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("OpenCV could not encode the annotated image as JPEG.")
    return bytes(encoded)
