"""`picmetric cpu-engine openvino [--precision fp32|bf16]` and `picmetric cpu-engine onnxruntime`:
switch every `onnxruntime` model config of a repository between ONNX Runtime's own CPU kernels and
the onnxruntime backend's OpenVINO CPU execution accelerator, through Triton's ModelConfig message
(core/model_config.py). Switching back removes the accelerator, which gives back the committed
configs byte for byte (they are in the writer's form).

NGC's onnxruntime backend takes the accelerator by name and gives OpenVINO only its device
("CPU"); the `inference_precision` parameter is ours, honoured by the local stand-in
(picmetric/backends/onnxruntime/model.py) and ignored there. BF16 goes only to the networks whose
BF16 accuracy has been measured against their oracle and holds (BF16_VERIFIED: MTCNN's ONet);
the others get FP32 even with `--precision bf16`, and the command says which and why."""

from __future__ import annotations

from pathlib import Path

from core.model_config import ModelConfig, read_config, with_accelerator, write_config

ACCELERATOR = "openvino"
PRECISION = "inference_precision"  # the stand-in's parameter (its module docstring)
ENGINES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16")

# Networks run in BF16 when asked, and the measurement that allows it (BENCHMARKS.md, "CPU
# engines": the cascade against the mtcnn package at 1, 3 and 12 MP).
BF16_VERIFIED = {
    "mtcnn_onet": "with ONet in BF16 MTCNN's faces equal the mtcnn package's (IoU > 0.99, "
    "landmarks within 0.5 px, scores within 0.002)",
}
# Why the others stay FP32.
BF16_REFUSED = {
    "mtcnn_pnet": "in BF16 its candidates shift: at 3 MP a face's landmarks move 6 px and its "
    "IoU with the mtcnn package's falls to 0.905",
    "mtcnn_pyramid_pnet": "PNet's weights, as mtcnn_pnet: at 12 MP landmarks 9 px off in BF16",
    "mtcnn_rnet": "in BF16 it keeps a seventh face at 3 MP that the mtcnn package drops",
}
BF16_UNVERIFIED = (
    "its real weights cannot be downloaded here, so BF16's effect on its labels or boxes against "
    "its oracle has not been measured (random weights amplify rounding)"
)


def onnxruntime_configs(repository: Path) -> list[Path]:
    """Every `onnxruntime` model config of the repository."""
    return sorted(
        path
        for path in repository.glob("*/config.pbtxt")
        if read_config(path).backend == "onnxruntime"
    )


def precision_for(model: str, precision: str) -> str:
    """The precision `model` gets when `precision` is asked for: BF16 only where verified."""
    if precision == "bf16" and model in BF16_VERIFIED:
        return "BF16"
    return "FP32"


def switched(config: ModelConfig, engine: str, precision: str = "FP32") -> ModelConfig:
    """A copy of `config` on `engine`: with the OpenVINO accelerator at `precision` (FP32 or
    BF16) or without it; blocks left empty go too, other accelerators stay."""
    parameters = {PRECISION: precision} if engine == "openvino" else None
    return with_accelerator(config, "cpu", ACCELERATOR, parameters)


def switch(
    repository: Path, engine: str, precision: str = "fp32", models: list[str] | None = None
) -> dict[Path, str]:
    """Put every onnxruntime model (or those of `models`) on `engine` (at `precision` where
    verified, else FP32); returns the configs it changed and what each runs now."""
    if engine not in ENGINES or precision not in PRECISIONS:
        raise ValueError(
            f"Unknown engine '{engine}' or precision '{precision}': the engines are "
            f"{', '.join(ENGINES)}, the precisions {', '.join(PRECISIONS)}."
        )
    paths = onnxruntime_configs(repository)
    if models is not None:
        known = [path.parent.name for path in paths]
        unknown = sorted(set(models) - set(known))
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)}: not an onnxruntime model of {repository}; "
                f"those are {', '.join(known)}."
            )
        paths = [path for path in paths if path.parent.name in models]
    changed = {}
    for path in paths:
        config = read_config(path)
        runs = precision_for(path.parent.name, precision)
        new = switched(config, engine, runs)
        if new != config:
            write_config(path, new)
            changed[path] = "onnxruntime FP32" if engine == "onnxruntime" else f"openvino {runs}"
    return changed


def kept_fp32(repository: Path, precision: str) -> dict[str, str]:
    """The models that stay FP32 although `precision` asks for BF16, and why."""
    if precision != "bf16":
        return {}
    return {
        path.parent.name: BF16_REFUSED.get(path.parent.name, BF16_UNVERIFIED)
        for path in onnxruntime_configs(repository)
        if path.parent.name not in BF16_VERIFIED
    }
