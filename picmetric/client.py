"""A running gateway over HTTP only, for the `picmetric` client commands (analyze, show, models):
one photo through /v1/analyze (or /v1/annotate, drawn), many through /v1/batch in chunks, a
stored analysis by id, the models. Every failure is a `ClientError` with the exit code its kind
has (`ExitCode`), so a script tells a bad photo from a refused key or a gateway that is down."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Self

import httpx

from gateway.images import UPLOAD_TYPES

TIMEOUT_S = 300  # a 12 MP photo on a small CPU under load; a batch's photos run together
# The file extensions of the formats the gateway reads: a folder's photos.
PHOTO_SUFFIXES = frozenset(t for t in UPLOAD_TYPES.split(",") if t.startswith("."))
URL_SCHEMES = ("http://", "https://", "s3://", "upload://")
BATCH_IMAGES = 16  # PICMETRIC_MAX_BATCH_IMAGES' default
BATCH_BYTES = 48 << 20  # a chunk's uploads, under PICMETRIC_MAX_BATCH_BYTES' default (64 MiB)


class ExitCode(IntEnum):
    """What `picmetric` exits with (README, "The command line")."""

    OK = 0
    FAILED = 1  # anything else: the gateway's own error (500), an unexpected answer
    USAGE = 2  # the command line is wrong (argparse's own code too)
    BAD_INPUT = 3  # a photo or option the gateway refused (4xx), a file that cannot be read
    REFUSED = 4  # the API key is missing or wrong, or over its rate (401, 403, 429)
    UNAVAILABLE = 5  # the gateway is unreachable, not ready or overloaded (502, 503, 504)


# A failure found before or without the gateway's answer, named as the gateway names its own.
_CLIENT_ERRORTYPES = {
    ExitCode.USAGE: "usage",
    ExitCode.BAD_INPUT: "bad_input",
    ExitCode.UNAVAILABLE: "unreachable",
}


class ClientError(RuntimeError):
    """Why a command failed, in the gateway's words when it answered."""

    def __init__(
        self,
        message: str,
        exit_code: ExitCode = ExitCode.FAILED,
        errortype: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.errortype = errortype or _CLIENT_ERRORTYPES.get(exit_code, "client_error")
        self.status = status

    def as_json(self) -> dict[str, Any]:
        return {"errortype": self.errortype, "message": str(self), "status": self.status}


# The gateway's errortypes (gateway/errors.py) that are not about the photo or the options.
_REFUSALS = frozenset({"unauthorized", "rate_limited", "too_many_fetches"})
_UNAVAILABLE = frozenset(
    {
        "model_unavailable",
        "inference_timeout",
        "upstream_error",
        "storage_unavailable",
        "overloaded",
    }
)


def exit_code_for(errortype: str, status: int | None = None) -> ExitCode:
    """The exit code of a failure the gateway answered (a batch's photo has no status)."""
    if errortype in _REFUSALS or status in (401, 429):
        return ExitCode.REFUSED
    if errortype in _UNAVAILABLE or status in (502, 503, 504):
        return ExitCode.UNAVAILABLE
    if errortype == "internal_error" or (status is not None and status >= 500):
        return ExitCode.FAILED
    return ExitCode.BAD_INPUT


def is_url(source: str) -> bool:
    return source.lower().startswith(URL_SCHEMES)


def photos_in(arguments: list[str]) -> list[str]:
    """The photos the command line names, in order: URLs as they are, files, the photos in a
    folder (by extension, sorted, sub-folders included) and the files a quoted glob matches.
    A name that is none of these fails before anything is sent."""
    found: list[str] = []
    for argument in arguments:
        if is_url(argument):
            found.append(argument)
            continue
        path = Path(argument).expanduser()
        if path.is_dir():
            photos = sorted(
                str(p)
                for p in path.rglob("*")
                if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file()
            )
            if not photos:
                raise ClientError(
                    f"No photos in {argument} ({', '.join(sorted(PHOTO_SUFFIXES))}).",
                    ExitCode.BAD_INPUT,
                )
            found.extend(photos)
        elif path.is_file():
            found.append(str(path))
        elif glob.has_magic(argument):
            matches = sorted(
                m
                for m in glob.glob(os.path.expanduser(argument), recursive=True)
                if Path(m).is_file()
            )
            if not matches:
                raise ClientError(f"No file matches {argument}.", ExitCode.BAD_INPUT)
            found.extend(matches)
        else:
            raise ClientError(f"No such file or folder: {argument}.", ExitCode.BAD_INPUT)
    return found


def chunks(
    photos: list[str], most: int = BATCH_IMAGES, most_bytes: int = BATCH_BYTES
) -> Iterator[list[str]]:
    """The photos in batches the gateway takes: all URLs or all files, at most `most` of them,
    files together at most `most_bytes` (one larger file goes alone: the gateway judges it)."""
    chunk: list[str] = []
    size = 0
    for photo in photos:
        bytes_ = 0 if is_url(photo) else _size(photo)
        kind_changes = bool(chunk) and is_url(chunk[0]) != is_url(photo)
        if chunk and (kind_changes or len(chunk) == most or size + bytes_ > most_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(photo)
        size += bytes_
    if chunk:
        yield chunk


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError as exc:
        raise ClientError(f"Cannot read {path}: {exc.strerror}.", ExitCode.BAD_INPUT) from exc


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ClientError(f"Cannot read {path}: {exc.strerror}.", ExitCode.BAD_INPUT) from exc


def json_options(options: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = dict(options)
    if "models" in body:
        body["models"] = [m.strip() for m in body["models"].split(",") if m.strip()]
    for name, kind in (("threshold", float), ("max_results", int)):
        if name in body:
            body[name] = kind(body[name])
    return body


def answered(response: httpx.Response) -> httpx.Response:
    """The response, or the gateway's error (read) as a `ClientError` with its exit code."""
    if response.is_error:
        response.read()
        try:
            body = response.json()
            errortype, message = str(body["errortype"]), str(body["message"])
        except (ValueError, KeyError, TypeError):
            errortype, message = "http_error", response.text[:200]
        raise ClientError(
            f"The gateway answered {response.status_code}, {errortype}: {message}",
            exit_code_for(errortype, response.status_code),
            errortype,
            response.status_code,
        )
    return response


@dataclass(frozen=True)
class Drawn:
    """/v1/annotate's answer: the JPEG, and the analysis it drew."""

    jpeg: bytes
    analysis: dict[str, Any]


class Gateway:
    """One gateway at `url`, with an API key and, `fresh`, Cache-Control: no-cache (the models
    run again, whatever the store holds)."""

    def __init__(self, url: str, api_key: str | None = None, fresh: bool = False) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        if fresh:
            headers["Cache-Control"] = "no-cache"
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT_S)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc
        return answered(response)

    def unreachable(self, exc: httpx.TransportError) -> ClientError:
        return ClientError(
            f"Could not reach the gateway at {self.url} ({exc}); is it running? "
            "(--gateway or PICMETRIC_GATEWAY)",
            ExitCode.UNAVAILABLE,
        )

    def _post_photo(
        self, path: str, photo: str, options: dict[str, str], **kwargs: Any
    ) -> httpx.Response:
        if is_url(photo):
            return self._send("POST", path, json={"url": photo, **json_options(options)}, **kwargs)
        files = {"file": (Path(photo).name, _read(photo))}
        return self._send("POST", path, files=files, data=options, **kwargs)

    def analyze(self, photo: str, options: dict[str, str]) -> dict[str, Any]:
        return dict(self._post_photo("/v1/analyze", photo, options).json())

    def annotate(self, photo: str, options: dict[str, str], blur_faces: bool) -> Drawn:
        """The photo drawn, and its analysis read back by id (`cached` as the drawing's was)."""
        params = {"blur_faces": "true"} if blur_faces else {}
        drawn = self._post_photo("/v1/annotate", photo, options, params=params)
        analysis = self.analysis(drawn.headers["X-Analysis-Id"])
        analysis["cached"] = drawn.headers.get("X-Analysis-Cached") == "true"
        return Drawn(drawn.content, analysis)

    def batch(self, photos: list[str], options: dict[str, str]) -> dict[str, Any]:
        """One /v1/batch of `photos` (all URLs or all files: `chunks`)."""
        if is_url(photos[0]):
            body = {"urls": photos, **json_options(options)}
            return dict(self._send("POST", "/v1/batch", json=body).json())
        files = [("file", (Path(p).name, _read(p))) for p in photos]
        return dict(self._send("POST", "/v1/batch", files=files, data=options).json())

    def analysis(self, analysis_id: str) -> dict[str, Any]:
        return dict(self._send("GET", f"/v1/analyses/{analysis_id}").json())

    def models(self) -> list[dict[str, Any]]:
        return list(self._send("GET", "/v1/models").json())


def _counted(figure: int | None) -> str:
    """A count, or "not counted" when its model did not run (which is not 0)."""
    return "not counted" if figure is None else str(figure)


def summary(analysis: dict[str, Any]) -> list[str]:
    """A few lines for a person: size, counts, objects, labels, and the answer's warnings."""
    image, counts = analysis["image"], analysis["summary"]
    people, faces = _counted(counts["people"]), _counted(counts["faces"])
    with_face = counts["people_with_face"]
    if with_face is not None:
        people += f" ({with_face} with a visible face)"
    lines = [
        f"{image['width']}x{image['height']} photo, analysis {analysis['id']}"
        + (" (from the store)" if analysis["cached"] else ""),
        f"people: {people}, faces: {faces}",
    ]
    if counts["objects"]:
        objects = sorted(counts["objects"].items(), key=lambda item: -item[1])
        lines.append("objects: " + ", ".join(f"{n} {label}" for label, n in objects))
    labels = analysis["results"].get("resnet50") or []
    if labels:
        lines.append("labels: " + ", ".join(f"{x['label']} {x['confidence']:.2f}" for x in labels))
    lines.extend(f"warning: {w['message']}" for w in analysis.get("warnings", []))
    return lines


def models_table(models: list[dict[str, Any]]) -> list[str]:
    """One line per model: name, Triton model and version, ready, weights kind."""
    lines = []
    for model in models:
        kind = model["weights"].get("kind", "unknown")
        note = "  <- random weights: its answers are noise" if kind == "random" else ""
        ready = "ready" if model["ready"] else "NOT READY"
        lines.append(
            f"{model['name']:<10} {model['triton_model']} v{model['version'] or '?'}  {ready:<9} "
            f"{kind}{note}"
        )
    return lines
