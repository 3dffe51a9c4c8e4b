"""Init container: download the model repository archive from S3 and unpack it.

Usage: python fetch_models.py DEST. Reads MODEL_ARCHIVE_URL (s3://bucket/key of a .tar.gz),
MODEL_ARCHIVE_SHA256 (checked when set), S3_ENDPOINT_URL (empty: AWS). Credentials come from
the usual AWS sources (IRSA on EKS). Runs in the gateway image, which has boto3.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import boto3


def main(dest: Path) -> None:
    url = urlparse(os.environ["MODEL_ARCHIVE_URL"])
    if url.scheme != "s3" or not url.netloc or not url.path.strip("/"):
        sys.exit(f"MODEL_ARCHIVE_URL must be s3://bucket/key.tar.gz, not {url.geturl()!r}")
    s3 = boto3.client("s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None)
    with tempfile.TemporaryFile() as archive:
        s3.download_fileobj(url.netloc, url.path.lstrip("/"), archive)
        archive.seek(0)
        digest = hashlib.file_digest(archive, "sha256").hexdigest()
        expected = os.environ.get("MODEL_ARCHIVE_SHA256", "")
        if expected and digest != expected:
            sys.exit(f"{url.geturl()}: sha256 {digest}, expected {expected}; refusing it")
        archive.seek(0)
        with tarfile.open(fileobj=archive, mode="r:gz") as tar:
            tar.extractall(dest, filter="data")
    models = sorted(p.parent.name for p in dest.glob("*/config.pbtxt"))
    if not models:
        sys.exit(f"{url.geturl()} has no */config.pbtxt: not a model repository")
    print(f"Model repository {url.geturl()} (sha256 {digest}): {', '.join(models)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
