"""The S3 bucket through boto3, off the event loop: reading an image by s3://bucket/key and
keeping uploads. botocore's exceptions become ours here."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from starlette.concurrency import run_in_threadpool

from gateway.errors import FetchError, ImageTooLarge, InvalidRequest, UpstreamError, URLUnreachable

UPLOADS_PREFIX = "uploads/"


def split_s3_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    key = parts.path.lstrip("/")
    if not parts.netloc or not key:
        raise InvalidRequest(f"S3 URL '{url}' must look like s3://bucket/key.")
    return parts.netloc, key


async def read(s3: Any, url: str, max_bytes: int) -> bytes:
    """The object at s3://bucket/key, refused when larger than `max_bytes`."""
    bucket, key = split_s3_url(url)

    def get() -> bytes:
        response = s3.get_object(Bucket=bucket, Key=key)
        if response["ContentLength"] > max_bytes:
            raise ImageTooLarge.over(max_bytes)
        return bytes(response["Body"].read())

    try:
        return await run_in_threadpool(get)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise FetchError(f"S3 could not return {url}: {code}.") from exc
    except BotoCoreError as exc:
        raise URLUnreachable(f"S3 is unreachable for {url}: {exc}") from exc


async def keep_upload(s3: Any, bucket: str, data: bytes) -> str:
    """Put uploaded bytes into `bucket` under their sha256; returns the s3:// pointer."""
    key = f"{UPLOADS_PREFIX}{hashlib.sha256(data).hexdigest()}"
    try:
        await run_in_threadpool(s3.put_object, Bucket=bucket, Key=key, Body=data)
    except (ClientError, BotoCoreError) as exc:
        raise UpstreamError(f"Could not store the upload in s3://{bucket}: {exc}") from exc
    return f"s3://{bucket}/{key}"
