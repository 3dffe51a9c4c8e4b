"""Kept uploads in a folder on this machine, for a gateway without an S3 bucket (`picmetric
serve`'s default: PICMETRIC_UPLOAD_DIR, else ~/.cache/picmetric/uploads). The same scoping as
the bucket's `uploads/<owner>/<sha256>`: a file per upload under its owner's folder, named by the
hash of the bytes kept, pointed to as `upload://<sha256>`, which reads only the owner's own."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from gateway.errors import FetchError, ImageTooLarge, StorageError

SCHEME = "upload"
_POINTER = re.compile(rf"^{SCHEME}://([0-9a-f]{{64}})$")


def pointer(sha256: str) -> str:
    return f"{SCHEME}://{sha256}"


def _write(folder: Path, name: str, data: bytes) -> None:
    """`data` as `folder/name`, whole or not at all (a temporary file renamed into place)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, staging = tempfile.mkstemp(dir=folder, prefix=".keeping-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(staging, folder / name)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


async def keep(folder: Path, owner: str, data: bytes) -> str:
    """Keep `data` (the upload as kept: without its identifying metadata unless the operator
    keeps it) under `owner`'s folder; returns its pointer. A retry of the same bytes writes the
    same file. A folder that cannot be written is 503 storage_unavailable, and nothing is
    analysed or stored."""
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        await run_in_threadpool(_write, folder / owner, sha256, data)
    except OSError as exc:
        raise StorageError(
            f"The upload could not be kept in {folder} ({exc.strerror}); nothing was analysed or "
            "stored. Make the folder writable or set PICMETRIC_UPLOAD_DIR (or PICMETRIC_S3_BUCKET)."
        ) from exc
    return pointer(sha256)


def _missing(url: str) -> FetchError:
    """One answer for a pointer that is malformed, missing or another key's."""
    return FetchError(f"No kept upload {url[:80]} that this API key can read.")


async def read(folder: Path | None, url: str, owner: str, max_bytes: int) -> bytes:
    """The bytes of `owner`'s kept upload at `url` (upload://<sha256>)."""
    match = _POINTER.match(url)
    if folder is None:
        raise FetchError(
            f"This gateway keeps no uploads on its own disk, so {url[:80]} means nothing here; "
            "analyse the s3:// pointer /v1/images answered."
        )
    if match is None:
        raise _missing(url)
    path = folder / owner / match.group(1)

    def get() -> bytes:
        with path.open("rb") as photo:
            data = photo.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ImageTooLarge.over(max_bytes)
        return data

    try:
        return await run_in_threadpool(get)
    except FileNotFoundError as exc:
        raise _missing(url) from exc
    except OSError as exc:
        raise StorageError(
            f"The kept upload could not be read from {folder}: {exc.strerror}."
        ) from exc
