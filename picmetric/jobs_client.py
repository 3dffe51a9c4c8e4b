"""`picmetric jobs`: bulk analysis jobs through a running gateway, over HTTP only (/v1/jobs, and
/v1/images for a local folder's photos): submit one and follow its progress, read its state, list
the key's jobs, cancel one, write its results as JSON Lines."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx

from picmetric.client import ClientError, ExitCode, Gateway, answered, is_url, photos_in

POLL_S = 2.0  # how often --follow asks for the job
FINISHED = ("done", "failed", "cancelled")


def job_source(sources: Sequence[str]) -> dict[str, Any]:
    """The job's `source` for what the command line names: one s3://bucket/prefix/ (ending with
    '/'): every photo under it; one s3://bucket/key: a manifest (a URL or key a line); else
    http(s)://, s3:// or upload:// URLs, each a photo. A local folder is uploaded first
    (`upload_folder`)."""
    if len(sources) == 1 and sources[0].startswith("s3://"):
        kind = "s3_prefix" if sources[0].endswith("/") else "manifest"
        return {kind: sources[0]}
    if not sources or not all(is_url(s) for s in sources):
        raise ClientError(
            "A job's source is one s3://bucket/prefix/, one s3://bucket/manifest, http(s)://, "
            f"s3:// or upload:// URLs, or one local folder; not {' '.join(sources)[:200]!r}.",
            ExitCode.USAGE,
        )
    return {"urls": list(sources)}


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def progress_line(job: dict[str, Any]) -> str:
    """One line for a person: answered of all, how (skipped: from the store; failed), the pace
    and the time left, as the gateway computes them."""
    counts = job["counts"]
    answered = counts["done"] + counts["skipped"] + counts["failed"]
    width = 24
    filled = width * answered // counts["total"] if counts["total"] else width
    line = f"{job['id']} {job['state']:<9} [{'#' * filled}{'.' * (width - filled)}] "
    line += f"{answered}/{counts['total']}"
    if counts["skipped"] or counts["failed"]:
        line += f" (skipped {counts['skipped']}, failed {counts['failed']})"
    if job.get("photos_per_second"):
        line += f", {job['photos_per_second']:.2f} photos/s"
    if job.get("seconds_left") is not None and job["state"] not in FINISHED:
        line += f", {_duration(job['seconds_left'])} left"
    return line


class JobsClient(Gateway):
    """The gateway's /v1/jobs for one API key."""

    def upload_folder(
        self, folder: Path, on_each: Callable[[int, int], None] | None = None
    ) -> list[str]:
        """Each photo of `folder` (`client.photos_in`: by extension, sub-folders included) kept
        by the gateway (/v1/images, which analyses it too); their pointers, the job's URLs."""
        photos = photos_in([str(folder)])
        pointers = []
        for n, photo in enumerate(photos, 1):
            try:
                with open(photo, "rb") as file:
                    answer = self._send("POST", "/v1/images", files={"file": file}).json()
            except OSError as exc:
                raise ClientError(
                    f"Cannot read {photo}: {exc.strerror}.", ExitCode.BAD_INPUT
                ) from exc
            pointers.append(str(answer["source"]["url"]))
            if on_each is not None:
                on_each(n, len(photos))
        return pointers

    def submit(
        self,
        source: dict[str, Any],
        options: dict[str, Any],
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        export: str | None = None,
    ) -> dict[str, Any]:
        """The job the gateway made (or, for an Idempotency-Key it knows, made before)."""
        body = {"source": source, **options}
        if webhook_url:
            body["webhook_url"] = webhook_url
        if export:
            body["export"] = export
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return dict(self._send("POST", "/v1/jobs", json=body, headers=headers).json())

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self._send("GET", f"/v1/jobs/{job_id}").json())

    def jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The key's newest jobs, at most `limit`."""
        page = self._send("GET", "/v1/jobs", params={"limit": str(limit)}).json()
        return list(page["jobs"])

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._send("DELETE", f"/v1/jobs/{job_id}").json())

    def follow(self, job_id: str, on_progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Ask for the job every POLL_S seconds until it has finished; `on_progress` sees each
        answer. The finished job."""
        while True:
            job = self.job(job_id)
            on_progress(job)
            if job["state"] in FINISHED:
                return job
            time.sleep(POLL_S)

    def results(self, job_id: str) -> Iterator[str]:
        """The job's answered photos as JSON Lines, streamed as the gateway sends them."""
        headers = {"Accept": "application/x-ndjson"}
        try:
            with self.http.stream("GET", f"/v1/jobs/{job_id}/results", headers=headers) as r:
                answered(r)
                for line in r.iter_lines():
                    if line.strip():
                        yield line
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc

    def write_results(self, job_id: str, out: TextIO) -> int:
        """The job's results written to `out`, one JSON object a line; how many."""
        count = 0
        for line in self.results(job_id):
            out.write(line + "\n")
            count += 1
        return count


class ProgressLine:
    """A line rewritten in place on a terminal (one line each time elsewhere)."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.last = ""

    def show(self, line: str) -> None:
        if line == self.last:
            return
        self.last = line
        if self.live:
            self.stream.write(f"\r\033[K{line}")
        else:
            self.stream.write(f"{line}\n")
        self.stream.flush()

    def end(self) -> None:
        if self.live and self.last:
            self.stream.write("\n")
            self.stream.flush()
