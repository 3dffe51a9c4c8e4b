"""What each stage of an analysis really holds and how long it takes, the oracle for the gateway's
count (gateway.pipeline.analysis.analysis_memory): a worker interpreter runs one stage at a time on
a photo and reports how far its peak RSS (VmHWM, reset through clear_refs) rose above its RSS before
the stage, and the stage's seconds. glibc's mmap threshold is fixed at 128 KiB in the worker, so
every large buffer is mapped when allocated and unmapped when freed: one stage's freed buffers
neither hide the next one's (reused without a page fault) nor count in its baseline."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import IO, Any

import cv2
import numpy as np

from core.paths import PROJECT_ROOT


def encoded(rgb: np.ndarray, extension: str) -> bytes:
    return bytes(cv2.imencode(extension, np.ascontiguousarray(rgb[..., ::-1]))[1])


_WORKER = r"""
import json, os, pickle, struct, sys, time
import numpy as np
from gateway.images import drawing, quality
from gateway.results import Box, DetectedObject, Face, Results
from gateway.images.decode import DecodedImage, decode_planned, plan_decode
from gateway.triton.inference import MODELS, _input
from tritonclient.grpc._utils import _get_inference_request

def kb(field):
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'):
            return int(line.split()[1])

def photo(height, width):
    rng = np.random.default_rng(height * 7919 + width)
    return DecodedImage(rng.integers(0, 256, (height, width, 3), np.uint8), width, height)

def tensors(image, models):
    # What run_models holds while its requests are in flight: every model's prepared tensors,
    # tritonclient's copy of each (InferInput), its request message and the message serialized.
    held = []
    for name in models:
        prepared = MODELS[name].prepare(image, None)
        dtype = {np.dtype(np.uint8): 'UINT8', np.dtype(np.int32): 'INT32'}
        inputs = [_input(key, array, dtype[array.dtype]) for key, array in prepared.items()]
        request = _get_inference_request(name, inputs, '', '', None, 0, False, False, 0, None, None)
        held.append((prepared, inputs, request, request.SerializeToString()))
    return held

def shared(image, models):
    # The same, a full-resolution input put in a shared-memory region instead (its file unlinked
    # at once: the mapping is what holds the pages).
    from gateway.triton.shared_memory import Region
    held = []
    for name in models:
        if MODELS[name].input_size is not None:
            held.append(tensors(image, [name]))
            continue
        prepared = MODELS[name].prepare(image, None)
        region = Region(f'picmetric-stage-{os.getpid()}-{name}', prepared['image'].nbytes)
        region.path.unlink()
        region.fill(prepared['image'])
        held.append((prepared, region))
    return held

def run(stage, args):
    if stage == 'decode':
        data, max_pixels, min_side = args
        plan = plan_decode(data, max_pixels, 64, min_side)
        return lambda: decode_planned(data, plan)
    image = photo(*args[:2])
    if stage == 'quality':
        return lambda: quality.measure(image.rgb)
    if stage == 'draw':  # a face and an object as large as the photo, the face blurred
        box = (0.0, 0.0, float(image.width), float(image.height))
        found = Results(
            yolov3=[DetectedObject(label='person', confidence=0.9, box=Box.of(box))],
            mtcnn=[Face.of(0.99, box, [(image.width / 2, image.height / 2)] * 5)],
        )
        return lambda: drawing.jpeg(drawing.draw(image.rgb, found, blur=True))
    if stage == 'shared':
        return lambda: shared(image, args[2])
    return lambda: tensors(image, args[2])

source = sys.stdin.buffer
while header := source.read(4):
    stage, args = pickle.loads(source.read(struct.unpack('<I', header)[0]))
    work = run(stage, args)
    open('/proc/self/clear_refs', 'w').write('5')
    before = kb('VmRSS')
    started = time.perf_counter()
    kept = work()
    seconds = time.perf_counter() - started
    peak = (kb('VmHWM') - before) * 1024
    del kept, work
    print(json.dumps({'peak': peak, 'seconds': seconds}), flush=True)
"""


@dataclass(frozen=True)
class Measured:
    peak: int  # bytes the stage added to the process's resident memory at its peak
    seconds: float


class StageWorker:
    """One worker interpreter; `measure` runs a stage in it: ("decode", (data, max_pixels,
    min_side)); or on a random photo of (height, width) made before the measure starts,
    ("quality", (height, width)), ("tensors", (height, width, models)), ("shared", (height,
    width, models): a full-resolution input through a shared-memory region), ("draw", (height,
    width))."""

    def __init__(self) -> None:
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 << 10)}
        self._process = subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=PROJECT_ROOT,
            env=env,
        )
        # The codecs, OpenCV's and the tensors' code paths loaded first, so they are not counted.
        small = np.zeros((64, 64, 3), np.uint8)
        for stage, args in [
            *(("decode", (encoded(small, f), 10**6, None)) for f in (".jpg", ".png")),
            ("quality", (64, 64)),
            ("draw", (64, 64)),
            ("tensors", (64, 64, ["resnet50", "yolov3", "mtcnn"])),
            ("shared", (64, 64, ["resnet50", "yolov3", "mtcnn"])),
        ]:
            self.measure(stage, args)

    def measure(self, stage: str, args: tuple[Any, ...]) -> Measured:
        message = pickle.dumps((stage, args))
        stdin, stdout = self._pipes()
        stdin.write(struct.pack("<I", len(message)) + message)
        stdin.flush()
        answer = stdout.readline()
        if not answer:
            raise RuntimeError(f"the stage worker died measuring {stage} {args[1:]}")
        return Measured(**json.loads(answer))

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        assert self._process.stdin is not None and self._process.stdout is not None
        return self._process.stdin, self._process.stdout

    def close(self) -> None:
        self._pipes()[0].close()
        self._process.wait(timeout=30)
