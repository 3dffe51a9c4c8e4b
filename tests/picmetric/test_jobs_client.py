"""`picmetric jobs` without a gateway: what the command line's source becomes, and the progress
line. Its run against a real gateway and workers is tests/gateway/jobs/test_jobs_cli.py."""

from __future__ import annotations

from typing import Any

import pytest

from picmetric.cli import build_parser
from picmetric.client import ClientError
from picmetric.jobs_client import job_source, progress_line


def test_job_source_tells_a_prefix_a_manifest_and_urls_apart() -> None:
    assert job_source(["s3://photos/trip/"]) == {"s3_prefix": "s3://photos/trip/"}
    assert job_source(["s3://photos/trip.txt"]) == {"manifest": "s3://photos/trip.txt"}
    urls = ["https://example.com/a.jpg", "s3://photos/b.jpg"]
    assert job_source(urls) == {"urls": urls}
    assert job_source(["http://example.com/a.jpg"]) == {"urls": ["http://example.com/a.jpg"]}


@pytest.mark.parametrize("sources", [[], ["photos/a.jpg"], ["https://e.com/a.jpg", "b.jpg"]])
def test_job_source_refuses_what_is_not_a_source(sources: list[str]) -> None:
    with pytest.raises(ClientError, match="A job's source is"):
        job_source(sources)


def _job(state: str, done: int, skipped: int, failed: int, **more: Any) -> dict[str, Any]:
    counts = {"total": 40, "done": done, "skipped": skipped, "failed": failed}
    return {"id": "job1", "state": state, "counts": counts, **more}


def test_progress_line_shows_answered_of_all_the_pace_and_the_time_left() -> None:
    line = progress_line(_job("running", 8, 1, 1, photos_per_second=0.5, seconds_left=3723))
    assert line == (
        "job1 running   [######..................] 10/40 (skipped 1, failed 1), "
        "0.50 photos/s, 1h02m left"
    )
    queued = progress_line(_job("queued", 0, 0, 0, photos_per_second=None, seconds_left=None))
    assert queued == "job1 queued    [........................] 0/40"
    done = progress_line(_job("done", 40, 0, 0, photos_per_second=1.25, seconds_left=0))
    assert done == "job1 done      [########################] 40/40, 1.25 photos/s"


def test_jobs_commands_parse() -> None:
    parser = build_parser()
    submit = parser.parse_args(["jobs", "submit", "s3://b/p/", "--follow", "--models", "resnet50"])
    assert (submit.action, submit.source, submit.follow, submit.models) == (
        "submit",
        ["s3://b/p/"],
        True,
        "resnet50",
    )
    results = parser.parse_args(["jobs", "results", "job1", "-o", "out.jsonl"])
    assert (results.action, results.id, str(results.output)) == ("results", "job1", "out.jsonl")
    for action in ("status", "cancel"):
        assert parser.parse_args(["jobs", action, "job1"]).id == "job1"
    assert parser.parse_args(["jobs", "list"]).limit == 20
