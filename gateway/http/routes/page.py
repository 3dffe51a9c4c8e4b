"""The try-it page at `/` and its files at `/page/<name>`: plain HTML, CSS and JavaScript from
`gateway/http/static/`, no build step and nothing fetched from elsewhere, so it works offline. The
page calls /v1 from the browser, with the API key the user typed (kept in the browser)."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from gateway.http.deps import ServicesDep
from gateway.images import ACCEPTED_FORMATS, UPLOAD_TYPES

STATIC = Path(__file__).resolve().parent.parent / "static"
# Only the files shipped in gateway/http/static/, by name: a request cannot reach anything else.
_FILES = {path.name: path for path in STATIC.iterdir() if path.is_file()}
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    # The page's own files only; photos may come from a pasted URL or the picked file (blob:).
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data: http: https:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    ),
}

# The page names the formats the gateway reads, from the one list error messages and /docs use.
_PAGE = (
    _FILES["index.html"]
    .read_text()
    .replace("{{ACCEPTED_FORMATS}}", html.escape(f"Accepted: {ACCEPTED_FORMATS}."))
    .replace("{{UPLOAD_TYPES}}", html.escape(UPLOAD_TYPES))
)

router = APIRouter(tags=["page"])


@router.get("/", include_in_schema=False)
async def read_page(services: ServicesDep) -> HTMLResponse:
    """The try-it page (with where an analysis's trace is shown: PICMETRIC_TRACE_URL_TEMPLATE)."""
    trace_url = html.escape(services.settings.trace_url_template)
    return HTMLResponse(_PAGE.replace("{{TRACE_URL_TEMPLATE}}", trace_url), headers=_HEADERS)


@router.get("/page/{name}", include_in_schema=False)
async def read_static_file(name: str) -> FileResponse:
    """One of the page's files (stylesheet, script)."""
    path = _FILES.get(name)
    if path is None:
        raise HTTPException(404, f"No static file '{name}'.")
    return FileResponse(path, headers=_HEADERS)
