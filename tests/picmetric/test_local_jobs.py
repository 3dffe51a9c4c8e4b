"""`picmetric serve`'s own Redis for bulk jobs (picmetric/local_jobs.py): Debian's redis-server on
loopback, writing its append-only file where it is told, so queued photos outlive serve."""

from __future__ import annotations

from pathlib import Path

import redis

from picmetric.local_jobs import LocalJobs


def test_local_redis_keeps_what_it_held_across_a_restart(tmp_path: Path) -> None:
    jobs = LocalJobs(tmp_path / "redis")
    url = jobs.start_redis()
    assert url is not None and url.startswith("redis://127.0.0.1:")
    redis.Redis.from_url(url).rpush("dramatiq:picmetric-jobs", "a photo")
    jobs.stop()
    assert jobs.redis is None and list((tmp_path / "redis").rglob("*.aof*"))

    again = jobs.start_redis()
    try:
        assert again is not None
        assert redis.Redis.from_url(again).lrange("dramatiq:picmetric-jobs", 0, -1) == [b"a photo"]
    finally:
        jobs.stop()
