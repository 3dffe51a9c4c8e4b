"""What a job says of itself (gateway.jobs.progress.job_view): its pace over the answered photos
since the first started, the time left at that pace, the secret only when asked."""

from __future__ import annotations

import datetime as dt

from gateway.jobs.progress import job_view
from gateway.store.jobs import now
from gateway.store.storage import JobRow


def _job(**fields: object) -> JobRow:
    started = now() - dt.timedelta(seconds=10)
    values: dict[str, object] = {
        "id": "j",
        "owner": "o",
        "state": "running",
        "source_kind": "urls",
        "source": "100 URLs",
        "options": {"models": None, "threshold": 0.2, "max_results": 10},
        "webhook_url": "https://example.com/hook",
        "webhook_secret": "s" * 64,
        "total": 100,
        "done": 15,
        "skipped": 3,
        "failed": 2,
        "created_at": started,
        "started_at": started.replace(tzinfo=None),  # as SQLite gives it back: UTC, no zone
        "finished_at": None,
    }
    return JobRow(**{**values, **fields})


def test_a_running_job_says_its_pace_and_the_time_left() -> None:
    view = job_view(_job())
    assert view.counts.answered == 20
    assert view.photos_per_second is not None and 1.9 < view.photos_per_second <= 2.0
    assert view.seconds_left is not None and 40 <= view.seconds_left < 42.2
    assert view.webhook_secret is None and job_view(_job(), with_secret=True).webhook_secret


def test_a_job_not_started_or_finished_has_no_time_left() -> None:
    waiting = job_view(_job(started_at=None, done=0, skipped=0, failed=0, state="queued"))
    assert (waiting.photos_per_second, waiting.seconds_left) == (None, None)
    started = now() - dt.timedelta(seconds=20)
    done = job_view(
        _job(
            state="done",
            done=95,
            skipped=0,
            failed=5,
            started_at=started,
            finished_at=started + dt.timedelta(seconds=50),
        )
    )
    assert (done.photos_per_second, done.seconds_left) == (2.0, None)
