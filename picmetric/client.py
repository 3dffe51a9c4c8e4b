"""`picmetric analyze`: one photo through a running gateway, answered as a short summary for a
person (or the JSON), and optionally saved with the detections drawn (`/v1/annotate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

TIMEOUT_S = 300  # a 12 MP photo on a small CPU under load


class GatewayError(RuntimeError):
    """The gateway could not be reached, or answered with an error."""


def _request(
    client: httpx.Client, path: str, image: str, fields: dict[str, str], params: dict[str, str]
) -> httpx.Response:
    if "://" in image:
        body: dict[str, Any] = {"url": image, **fields}
        if "models" in body:
            body["models"] = body["models"].split(",")
        return client.post(path, json=body, params=params)
    try:
        with open(image, "rb") as photo:
            return client.post(path, files={"file": photo}, data=fields, params=params)
    except OSError as exc:
        raise GatewayError(f"Cannot read {image}: {exc.strerror}.") from exc


def checked(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        try:
            body = response.json()
            problem = f"{body['errortype']}: {body['message']}"
        except (ValueError, KeyError, TypeError):
            problem = response.text[:200]
        raise GatewayError(f"The gateway answered {response.status_code}, {problem}")
    return response


def analyze(
    gateway: str,
    image: str,
    options: dict[str, str],
    draw: Path | None = None,
    blur_faces: bool = False,
    api_key: str | None = None,
) -> dict[str, Any]:
    """The /v1 analysis of `image` (a URL or a local file). With `draw`, the annotated photo is
    saved there too (one analysis: the JSON is read back by its id)."""
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=gateway.rstrip("/"), headers=headers, timeout=TIMEOUT_S) as client:
        try:
            if draw is None:
                return dict(checked(_request(client, "/v1/analyze", image, options, {})).json())
            params = {"blur_faces": "true"} if blur_faces else {}
            drawn = checked(_request(client, "/v1/annotate", image, options, params))
            draw.write_bytes(drawn.content)
            stored = client.get(f"/v1/analyses/{drawn.headers['X-Analysis-Id']}")
            return dict(checked(stored).json())
        except httpx.TransportError as exc:
            raise GatewayError(f"Could not reach the gateway at {gateway}: {exc}") from exc


def summary(analysis: dict[str, Any]) -> list[str]:
    """A few lines for a person: size, counts, objects, labels, and which models guess."""
    image, counts = analysis["image"], analysis["summary"]
    lines = [
        f"{image['width']}x{image['height']} photo, analysis {analysis['id']}"
        + (" (from the store)" if analysis["cached"] else ""),
        f"people: {counts['people']} ({counts['people_with_face']} with a visible face), "
        f"faces: {counts['faces']}",
    ]
    if counts["objects"]:
        objects = sorted(counts["objects"].items(), key=lambda item: -item[1])
        lines.append("objects: " + ", ".join(f"{n} {label}" for label, n in objects))
    labels = analysis["results"].get("resnet50") or []
    if labels:
        lines.append("labels: " + ", ".join(f"{x['label']} {x['confidence']:.2f}" for x in labels))
    guessing = [m["name"] for m in analysis["models"] if m["weights"].get("kind") == "random"]
    if guessing:
        lines.append(f"warning: {', '.join(guessing)} run on random weights (no trained file)")
    return lines
