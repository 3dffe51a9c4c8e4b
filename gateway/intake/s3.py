"""The S3 bucket through boto3, off the event loop: reading an image by s3://bucket/key, listing a
prefix (a job's photos, bounded), keeping uploads, and writing a job's results where allowed.
botocore's exceptions become ours here."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from starlette.concurrency import run_in_threadpool

from gateway.errors import (
    FetchError,
    ForbiddenURL,
    ImageTooLarge,
    InvalidRequest,
    PicmetricError,
    StorageError,
    URLUnreachable,
)

UPLOADS_PREFIX = "uploads/"  # kept uploads, each under its owner's folder (upload_prefix)
# S3's codes for an object that is not there or not ours to read (HeadObject answers bare 404/403).
UNREADABLE_CODES = frozenset(
    {"NoSuchKey", "NoSuchBucket", "AccessDenied", "AllAccessDisabled", "404", "403"}
)
LIST_PAGE = 1000  # keys per ListObjectsV2 call (S3's most)


def upload_prefix(owner: str) -> str:
    """Where `owner`'s kept uploads are (owner: gateway.tenancy.owner_of, a hash or anonymous)."""
    return f"{UPLOADS_PREFIX}{owner}/"


def split_s3_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    key = parts.path.lstrip("/")
    if not parts.netloc or not key:
        raise InvalidRequest(f"S3 URL '{url}' must look like s3://bucket/key.")
    return parts.netloc, key


def check_readable(
    url: str, readable: list[str], owner: str, uploads_bucket: str | None
) -> tuple[str, str]:
    """Bucket and key of `url`, or ForbiddenURL when no `bucket` or `bucket/prefix` entry of
    `readable` holds it: the gateway's credentials may reach buckets its clients must not read
    (their pixels come back through /v1/annotate). In `uploads_bucket` the kept uploads are
    readable by their owner only: whatever `readable` says, `uploads/` is out of every other
    owner's reach, refused as an object that is not there (no answer tells that another key kept
    a photo)."""
    bucket, key = split_s3_url(url)
    if {".", ".."} & set(key.split("/")):
        # HTTP clients (urllib3 under botocore) remove dot segments: the key read would not be
        # the key checked.
        raise InvalidRequest(f"S3 URL '{url}' has a '.' or '..' segment; send the key itself.")
    for place in readable:
        allowed_bucket, _, prefix = place.partition("/")
        if bucket == allowed_bucket and key.startswith(prefix):
            break
    else:
        raise ForbiddenURL(
            f"s3://{bucket}/{key} is not in a bucket this gateway reads images from; the operator "
            "lists them in PICMETRIC_S3_READ_FROM."
        )
    others_upload = key.startswith(UPLOADS_PREFIX) and not key.startswith(upload_prefix(owner))
    if others_upload and uploads_bucket is not None and bucket.lower() == uploads_bucket.lower():
        raise unreadable(url)
    return bucket, key


def unreadable(url: str) -> FetchError:
    """The one answer for an object that is missing, forbidden, or another key's upload."""
    return FetchError(f"S3 has no object {url} that this gateway can read.")


def read_error(url: str, exc: ClientError) -> FetchError:
    """S3's refusal as the client sees it. A missing object, a missing bucket and a forbidden
    object get the same answer, so that no client can map what else the gateway may read."""
    code = exc.response.get("Error", {}).get("Code", "error")
    if code in UNREADABLE_CODES:
        return unreadable(url)
    return FetchError(f"S3 could not return {url}: {code}.")


async def read(
    s3: Any,
    url: str,
    max_bytes: int,
    readable: list[str],
    owner: str,
    uploads_bucket: str | None,
    too_large: Callable[[int], PicmetricError] = ImageTooLarge.over,
) -> bytes:
    """The object at s3://bucket/key for `owner`, refused outside what it may read
    (check_readable) or when larger than `max_bytes` (`too_large(max_bytes)`)."""
    bucket, key = check_readable(url, readable, owner, uploads_bucket)

    def get() -> bytes:
        response = s3.get_object(Bucket=bucket, Key=key)
        if response["ContentLength"] > max_bytes:
            raise too_large(max_bytes)
        return bytes(response["Body"].read())

    # S3 down here stays a fetch error (url_unreachable, 400), as for an http(s) URL that does not
    # answer: the client chose this image's location, the request cannot go on without it and no
    # retry on our side brings it, so the answer names the source. Storage of our own (the upload
    # bucket in keep_upload, the results database) failing is 503 storage_unavailable instead.
    try:
        return await run_in_threadpool(get)
    except ClientError as exc:
        raise read_error(url, exc) from exc
    except BotoCoreError as exc:
        raise URLUnreachable(f"S3 is unreachable for {url}: {exc}") from exc


def _within(bucket: str, prefix: str, places: list[str]) -> bool:
    """Whether a `bucket` or `bucket/prefix` place of `places` holds every key under `prefix`."""
    return any(
        bucket == allowed_bucket and prefix.startswith(allowed)
        for allowed_bucket, _, allowed in (place.partition("/") for place in places)
    )


def check_readable_prefix(
    url: str, readable: list[str], owner: str, uploads_bucket: str | None
) -> tuple[str, str]:
    """Bucket and key prefix of `url` (s3://bucket/ or s3://bucket/prefix), or ForbiddenURL
    unless one `readable` place holds every key under it (check_readable's rule for a prefix)."""
    parts = urlsplit(url)
    bucket, prefix = parts.netloc, parts.path.lstrip("/")
    if parts.scheme != "s3" or not bucket:
        raise InvalidRequest(f"S3 prefix '{url}' must look like s3://bucket/prefix/.")
    if {".", ".."} & set(prefix.split("/")[:-1]):
        raise InvalidRequest(f"S3 prefix '{url}' has a '.' or '..' segment.")
    if _within(bucket, prefix, readable):
        return bucket, prefix
    raise ForbiddenURL(
        f"s3://{bucket}/{prefix} is not within a bucket or prefix this gateway reads images from; "
        "the operator lists them in PICMETRIC_S3_READ_FROM."
    )


def check_writable_prefix(url: str, writable: list[str]) -> tuple[str, str]:
    """Bucket and key prefix (ending in '/', or empty: the bucket's top) of s3://bucket/prefix/
    `url`, or ForbiddenURL unless a `bucket` or `bucket/prefix` place of `writable` holds it."""
    parts = urlsplit(url)
    bucket, prefix = parts.netloc, parts.path.lstrip("/")
    if parts.scheme != "s3" or not bucket or parts.query or parts.fragment:
        raise InvalidRequest(f"Export place '{url}' must look like s3://bucket/prefix/.")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if {".", ".."} & set(prefix.split("/")):
        raise InvalidRequest(f"Export place '{url}' has a '.' or '..' segment.")
    if _within(bucket, prefix, writable):
        return bucket, prefix
    raise ForbiddenURL(
        f"s3://{bucket}/{prefix} is not a place this gateway writes jobs' results to; the "
        "operator lists them in PICMETRIC_JOBS_EXPORT_TO (none by default: export is off)."
    )


async def write(s3: Any, bucket: str, key: str, data: bytes, content_type: str) -> None:
    """Put `data` at s3://bucket/key (an existing object is replaced); StorageError when S3 is
    unreachable or refuses."""
    try:
        await run_in_threadpool(
            s3.put_object, Bucket=bucket, Key=key, Body=data, ContentType=content_type
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise StorageError(f"S3 refused to write s3://{bucket}/{key} ({code}).") from exc
    except BotoCoreError as exc:
        raise StorageError(f"S3 is unreachable to write s3://{bucket}/{key}: {exc}") from exc


async def list_prefix(
    s3: Any, url: str, limit: int, readable: list[str], owner: str, uploads_bucket: str | None
) -> tuple[list[str], bool]:
    """The s3:// URLs of the objects under the prefix `url` that `owner` may read, in S3's (key)
    order, folder markers left out; and whether the prefix holds more than `limit` keys (then
    the listing stopped there). At most `limit` + 1 keys are listed, readable or not, so a
    prefix over others' uploads costs no more than one the owner may read."""
    bucket, prefix = check_readable_prefix(url, readable, owner, uploads_bucket)

    def listing() -> tuple[list[str], bool]:
        urls: list[str] = []
        listed = 0
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        while listed <= limit:
            page = s3.list_objects_v2(MaxKeys=min(LIST_PAGE, limit + 1 - listed), **kwargs)
            for entry in page.get("Contents", []):
                listed += 1
                key = entry["Key"]
                if key.endswith("/"):
                    continue
                try:
                    check_readable(f"s3://{bucket}/{key}", readable, owner, uploads_bucket)
                except (FetchError, ForbiddenURL, InvalidRequest):
                    continue  # another owner's upload, or a key no URL can name
                urls.append(f"s3://{bucket}/{key}")
            if not page.get("IsTruncated"):
                break
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
        return urls, listed > limit

    try:
        return await run_in_threadpool(listing)
    except ClientError as exc:
        raise read_error(url, exc) from exc
    except BotoCoreError as exc:
        raise URLUnreachable(f"S3 is unreachable for {url}: {exc}") from exc


async def keep_upload(s3: Any, bucket: str, owner: str, data: bytes) -> str:
    """Put uploaded bytes into `bucket` under their owner's prefix and their sha256; returns the
    s3:// pointer. Runs once the photo's header was accepted and before its inference, so an
    upload that cannot be kept is analysed and stored nowhere: 503 storage_unavailable with
    Retry-After (S3 unreachable, or refusing), the client sends it again. The key is the content's
    hash, so a retry overwrites the same object, never adds one. `data` is the upload as kept
    (gateway.images.privacy may have taken its location out), so the key is not always the
    analysis's image.sha256, which is the upload's as sent."""
    key = f"{upload_prefix(owner)}{hashlib.sha256(data).hexdigest()}"
    try:
        await run_in_threadpool(s3.put_object, Bucket=bucket, Key=key, Body=data)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise StorageError(
            f"S3 refused to keep the upload in s3://{bucket} ({code}); nothing was analysed or "
            "stored. Retry in a few seconds; if it persists, the bucket or the gateway's "
            "credentials need attention."
        ) from exc
    except BotoCoreError as exc:
        raise StorageError(
            f"S3 is unreachable, so the upload could not be kept in s3://{bucket}; nothing was "
            "analysed or stored. Retry in a few seconds."
        ) from exc
    return f"s3://{bucket}/{key}"
