"""Which models an analysis says it skipped (gateway/pipeline/analysis.py): only those offered
that did not run when every model was asked for; a request that named its models skips none."""

from __future__ import annotations

from gateway.pipeline.analysis import skipped_models
from gateway.pipeline.request import AnalysisRequest
from gateway.results import AnswerWarning, Options
from gateway.triton.inference import MODELS

OPTIONS = Options(threshold=0.2, max_results=10)


def _request(models: list[str] | None) -> AnalysisRequest:
    return AnalysisRequest(
        source_kind="url", source="https://x/a.jpg", models=models, options=OPTIONS
    )


def test_every_model_asked_for_and_one_not_ready_is_skipped() -> None:
    ran = [MODELS["resnet50"], MODELS["mtcnn"]]
    assert skipped_models(_request(None), ran) == ["yolov3"]
    assert skipped_models(_request(["resnet50", "mtcnn"]), ran) == []
    assert skipped_models(_request(None), list(MODELS.values())) == []
    warning = AnswerWarning.model_skipped(["yolov3"])
    assert warning.kind == "model_skipped" and "not counted (null), not zero" in warning.message
