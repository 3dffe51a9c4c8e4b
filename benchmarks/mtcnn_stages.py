"""The MTCNN cascade's numpy stages (model_repository/mtcnn/1) on real-size photos (1, 3 and 12
MP JPEGs from tests/utils/real_photos.py, decoded as the gateway decodes them), this working
tree's against another commit's, interleaved in one process:

- the pyramid: the running sums and every level, one after another (the cascade makes them in
  worker threads while PNet runs);
- the PNet stage (proposals, NMS per level and across levels, squaring), RNet's crops, the RNet
  stage, ONet's crops and the ONet stage, each fed the same network outputs (ONNX Runtime, run
  once on the baseline's levels and crops).

- the whole cascade (`detect_faces`, the networks under ONNX Runtime in place of BLS, the pyramid
  in worker threads as on a CPU host): its time, the time inside the networks, and the rest
  ("Python": what this commit's levers act on, the pyramid's part that is not hidden behind PNet
  included).

Each stage's result must be the same bytes in both versions (levels, boxes, crops, faces), and
so must the whole cascade's faces, or it stops. Prints a Markdown table of median ms per stage
and the ratio new / old (progress to stderr).

    python -m benchmarks.mtcnn_stages [--baseline REV] [--sizes 1mp,3mp,12mp] [--repeats 7]
                                      [--stages-only]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.machinery
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnxruntime as ort

from benchmarks._measure import log, machine, table
from core.paths import MODEL_REPOSITORY, PROJECT_ROOT
from tests.utils.real_photos import SIZES, decoded, jpeg_bytes, real_photo

FOLDER = "model_repository/mtcnn/1"
NETWORKS = ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet")
STAGES = ("pyramid", "pnet_stage", "rnet_crops", "rnet_stage", "onet_crops", "onet_stage")
WHOLE = ("cascade", "networks", "Python")
PNET_OUTPUTS = ("offsets", "probabilities")
CROP_BATCH = 256  # RNet and ONet crops per request: config.pbtxt's crop_batch_size


def load_version(label: str, folder: Path) -> dict[str, ModuleType]:
    """The cascade's modules from `folder`, as package `mtcnn_stages_<label>`."""
    package = f"mtcnn_stages_{label}"
    spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    sys.modules[package] = importlib.util.module_from_spec(spec)
    return {m: importlib.import_module(f"{package}.{m}") for m in ("cascade", "pyramid", "boxes")}


def checkout(rev: str, into: Path) -> Path:
    """model_repository/mtcnn/1's Python files at `rev`, written into `into`."""
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", rev, f"{FOLDER}/"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in names:
        if name.endswith(".py"):
            text = subprocess.run(
                ["git", "show", f"{rev}:{name}"],
                cwd=PROJECT_ROOT,
                capture_output=True,
                check=True,
            ).stdout
            (into / Path(name).name).write_bytes(text)
    return into


def sessions(repository: Path) -> dict[str, ort.InferenceSession]:
    if not all((repository / n / "1" / "model.onnx").exists() for n in NETWORKS):
        from conversion import mtcnn as converter

        repository = Path(tempfile.mkdtemp(prefix="mtcnn_stages_"))
        log(f"converting the MTCNN networks into {repository}")
        converter.convert(repository)
    return {n: ort.InferenceSession(str(repository / n / "1" / "model.onnx")) for n in NETWORKS}


def run(session: ort.InferenceSession, outputs: list[str], image: np.ndarray) -> list[np.ndarray]:
    return list(session.run(outputs, {"image": image}))


def networks_outputs(
    version: dict[str, ModuleType], nets: dict[str, ort.InferenceSession], photo: np.ndarray
) -> dict[str, Any]:
    """The networks' outputs through the cascade on `photo`, as the cascade calls them."""
    cascade, pyramid, boxes = version["cascade"], version["pyramid"], version["boxes"]
    params = cascade.Parameters()
    height, width = photo.shape[:2]
    scales = pyramid.pyramid_scales(height, width, params.min_face_size, params.scale_factor)
    pnet = []
    for level in pyramid.pyramid(photo, scales):
        bands = []
        for a, b in pyramid.pnet_bands(*level.shape[1:]):
            answer = run(nets["mtcnn_pnet"], list(PNET_OUTPUTS), level[None, :, a:b])
            bands.append(dict(zip(PNET_OUTPUTS, answer, strict=True)))
        pnet.append(bands)
    candidates = pnet_stage(cascade, pnet, scales, params)
    crops = boxes.crop_and_resize(photo, candidates, cascade.RNET_SIZE)
    rnet = run(nets["mtcnn_rnet"], ["offsets", "probabilities"], crops)
    kept = cascade.rnet_stage(candidates, *rnet, params)
    crops = boxes.crop_and_resize(photo, kept, cascade.ONET_SIZE)
    onet = run(nets["mtcnn_onet"], ["offsets", "landmarks", "probabilities"], crops)
    return {"scales": scales, "pnet": pnet, "rnet": rnet, "onet": onet}


def pnet_stage(
    cascade: ModuleType, bands: list[list[dict[str, np.ndarray]]], scales: list[float], params: Any
) -> np.ndarray:
    """`cascade.pnet_stage` on PNet's answers per level in bands of rows; before 2026-12-07 it took
    each level's bands joined (by the cascade, on the way), so for such a version they are."""
    if cascade.pnet_stage.__annotations__["outputs"].startswith("list[list["):
        return cascade.pnet_stage(bands, scales, params)
    levels = [
        {name: np.concatenate([band[name] for band in level], axis=2) for name in PNET_OUTPUTS}
        for level in bands
    ]
    return cascade.pnet_stage(levels, scales, params)


def stages(
    version: dict[str, ModuleType], photo: np.ndarray, nets: dict[str, Any]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Seconds per stage, and each stage's result, on the recorded network outputs."""
    cascade, pyramid, boxes = version["cascade"], version["pyramid"], version["boxes"]
    params = cascade.Parameters()
    height, width = photo.shape[:2]
    seconds: dict[str, float] = {}
    results: dict[str, Any] = {}

    def timed(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        results[stage] = fn(*args)
        seconds[stage] = time.perf_counter() - started
        return results[stage]

    timed("pyramid", pyramid.pyramid, photo, nets["scales"])
    candidates = timed("pnet_stage", pnet_stage, cascade, nets["pnet"], nets["scales"], params)
    timed("rnet_crops", boxes.crop_and_resize, photo, candidates, cascade.RNET_SIZE)
    kept = timed("rnet_stage", cascade.rnet_stage, candidates, *nets["rnet"], params)
    timed("onet_crops", boxes.crop_and_resize, photo, kept, cascade.ONET_SIZE)
    faces = timed("onet_stage", cascade.onet_stage, kept, *nets["onet"], params, height, width)
    results["onet_stage"] = [faces.boxes, faces.scores, faces.landmarks]
    return seconds, results


def whole(
    version: dict[str, ModuleType], photo: np.ndarray, nets: dict[str, ort.InferenceSession]
) -> tuple[dict[str, float], list[np.ndarray]]:
    """Seconds of the whole cascade, inside the networks and outside them; and its faces."""
    cascade = version["cascade"]
    in_networks = [0.0]

    async def infer(model: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        result = run(nets[model], outputs, inputs["image"])
        in_networks[0] += time.perf_counter() - started
        return dict(zip(outputs, result, strict=True))

    started = time.perf_counter()
    faces = asyncio.run(cascade.detect_faces(photo, cascade.Parameters(), infer, CROP_BATCH))
    total = time.perf_counter() - started
    seconds = {"cascade": total, "networks": in_networks[0], "Python": total - in_networks[0]}
    return seconds, [faces.boxes, faces.scores, faces.landmarks]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="main", help="git revision to compare with")
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument(
        "--stages-only", action="store_true", help="without the whole cascade (faster repeats)"
    )
    args = parser.parse_args()

    old_folder = checkout(args.baseline, Path(tempfile.mkdtemp(prefix="mtcnn_old_")))
    versions = {
        "old": load_version("old", old_folder),
        "new": load_version("new", PROJECT_ROOT / FOLDER),
    }
    nets = sessions(args.repository)
    rows = []
    for size in args.sizes.split(","):
        megapixels = int(size.removesuffix("mp"))
        photo = decoded(jpeg_bytes(real_photo(megapixels)))
        log(f"{size}: networks on the baseline's levels and crops")
        outputs = networks_outputs(versions["old"], nets, photo)
        samples: dict[str, dict[str, list[float]]] = {v: defaultdict(list) for v in versions}
        results = {v: stages(versions[v], photo, outputs)[1] for v in versions}  # warm-up
        for stage in STAGES:
            if not same(results["old"][stage], results["new"][stage]):
                raise SystemExit(f"{size}: {stage} differs from the baseline's")
        faces = [whole(versions[v], photo, nets)[1] for v in versions]
        if not same(*faces):
            raise SystemExit(f"{size}: the whole cascade's faces differ from the baseline's")
        for repeat in range(args.repeats):
            log(f"{size}: repeat {repeat + 1}/{args.repeats}")
            order = list(versions) if repeat % 2 == 0 else list(versions)[::-1]
            for label in order:
                seconds, _ = stages(versions[label], photo, outputs)
                for stage, value in seconds.items():
                    samples[label][stage].append(value)
                samples[label]["stages"].append(sum(seconds.values()))
                if not args.stages_only:
                    for part, value in whole(versions[label], photo, nets)[0].items():
                        samples[label][part].append(value)
        for stage in (*STAGES, "stages", *(() if args.stages_only else WHOLE)):
            old, new = (statistics.median(samples[v][stage]) * 1000 for v in versions)
            rows.append([size, stage, old, new, f"{new / old:.2f}"])
    print(f"{machine()}; baseline {args.baseline}; {args.repeats} repeats, medians\n")
    print(table(["size", "stage", "baseline ms", "this tree ms", "ratio"], rows))


if __name__ == "__main__":
    main()
