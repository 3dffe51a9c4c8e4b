"""Reading s3:// images: only from the buckets (and prefixes) the operator lists, kept uploads
only by their owner, and one answer for a missing, a forbidden object and another key's upload,
against moto's S3 server."""

from __future__ import annotations

import asyncio

import pytest
from botocore.exceptions import ClientError

from gateway.errors import FetchError, ForbiddenURL, InvalidRequest
from gateway.intake import s3
from gateway.settings import Settings
from gateway.tenancy import ANONYMOUS, owner_of
from tests.gateway.conftest import BUCKET, s3_client

OTHER_BUCKET = "picmetric-test-private"


@pytest.fixture(scope="module")
def client(s3_url: str):  # type: ignore[no-untyped-def]
    """moto's S3 with our bucket, a photo in it, and another bucket the credentials can read."""
    client = s3_client(s3_url)
    client.create_bucket(Bucket=OTHER_BUCKET)
    client.put_object(Bucket=OTHER_BUCKET, Key="secret.jpg", Body=b"private pixels")
    client.put_object(Bucket=BUCKET, Key="photos/a.jpg", Body=b"jpeg bytes")
    client.put_object(Bucket=BUCKET, Key="elsewhere/b.jpg", Body=b"jpeg bytes")
    for owner in (ALICE, BOB):
        client.put_object(Bucket=BUCKET, Key=f"uploads/{owner}/photo", Body=owner.encode())
    client.put_object(Bucket=BUCKET, Key="uploads/ownerless", Body=b"an old upload")
    return client


ALICE, BOB = owner_of("alice-key"), owner_of("bob-key")


def _read(client, url: str, readable: list[str], owner: str = ANONYMOUS) -> bytes:  # type: ignore[no-untyped-def]
    return asyncio.run(s3.read(client, url, 1000, readable, owner, BUCKET))


def test_by_default_only_the_uploads_bucket_is_readable(client) -> None:  # type: ignore[no-untyped-def]
    readable = Settings(s3_bucket=BUCKET).s3_readable
    assert _read(client, f"s3://{BUCKET}/photos/a.jpg", readable) == b"jpeg bytes"
    with pytest.raises(ForbiddenURL, match="PICMETRIC_S3_READ_FROM"):
        _read(client, f"s3://{OTHER_BUCKET}/secret.jpg", readable)
    assert Settings(s3_bucket=None).s3_readable == []


def test_a_prefix_limits_the_keys_read(client) -> None:  # type: ignore[no-untyped-def]
    readable = Settings(s3_read_from=f"{BUCKET}/photos/").s3_readable  # type: ignore[arg-type]
    assert readable == [f"{BUCKET}/photos/"]
    assert _read(client, f"s3://{BUCKET}/photos/a.jpg", readable) == b"jpeg bytes"
    with pytest.raises(ForbiddenURL):
        _read(client, f"s3://{BUCKET}/elsewhere/b.jpg", readable)


def test_missing_objects_and_buckets_get_one_answer(client) -> None:  # type: ignore[no-untyped-def]
    readable = [BUCKET, "no-such-bucket-here"]
    answers = set()
    for url in (f"s3://{BUCKET}/photos/missing.jpg", "s3://no-such-bucket-here/a.jpg"):
        with pytest.raises(FetchError) as caught:
            _read(client, url, readable)
        answers.add(str(caught.value).replace(url, "URL"))
    assert answers == {"S3 has no object URL that this gateway can read."}


@pytest.mark.parametrize("code", ["AccessDenied", "403", "NoSuchKey", "404"])
def test_a_forbidden_object_reads_like_a_missing_one(code: str) -> None:
    """S3's own refusal (a bucket policy, another account's bucket) as botocore raises it."""
    error = ClientError({"Error": {"Code": code, "Message": "..."}}, "GetObject")
    assert (
        str(s3.read_error("s3://b/k", error))
        == "S3 has no object s3://b/k that this gateway can read."
    )


@pytest.mark.parametrize("readable", [[BUCKET], [f"{BUCKET}/uploads/"]])
def test_kept_uploads_are_read_by_their_owner_only(client, readable: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Whatever PICMETRIC_S3_READ_FROM names (the whole bucket included), `uploads/` is readable
    only under the reader's own owner; another key's upload, an upload kept before owners had
    prefixes and a missing object answer alike."""
    mine = f"s3://{BUCKET}/uploads/{ALICE}/photo"
    assert _read(client, mine, readable, ALICE) == ALICE.encode()
    answers = set()
    for url, owner in (
        (mine, BOB),
        (mine, ANONYMOUS),
        (f"s3://{BUCKET}/uploads/ownerless", ALICE),
        (f"s3://{BUCKET}//uploads/{BOB}/photo", ALICE),
        (f"s3://{BUCKET}/uploads/{ALICE}/missing", ALICE),
    ):
        with pytest.raises(FetchError) as caught:
            _read(client, url, readable, owner)
        answers.add((type(caught.value), str(caught.value).replace(url, "URL")))
    assert answers == {(FetchError, "S3 has no object URL that this gateway can read.")}


def test_dot_segments_cannot_leave_a_prefix(client) -> None:  # type: ignore[no-untyped-def]
    """botocore's HTTP client removes dot segments, so they would read another key than the one
    checked."""
    for key in (f"uploads/{ALICE}/../{BOB}/photo", "photos/../secret.jpg", "photos/./a.jpg"):
        with pytest.raises(InvalidRequest, match="'.' or '..' segment"):
            _read(client, f"s3://{BUCKET}/{key}", [f"{BUCKET}/uploads/{ALICE}/", BUCKET], ALICE)


def _list(client, url: str, limit: int, readable: list[str], owner: str = ANONYMOUS):  # type: ignore[no-untyped-def]
    return asyncio.run(s3.list_prefix(client, url, limit, readable, owner, BUCKET))


def test_a_prefix_lists_the_owners_keys_only_and_stops_past_its_limit(client) -> None:  # type: ignore[no-untyped-def]
    """A job's S3 prefix: other owners' kept uploads are left out as if absent, and at most
    limit + 1 keys are listed, whatever the prefix holds."""
    # (the bucket is the session's: other tests' uploads are in it too, other owners' all)
    urls, more = _list(client, f"s3://{BUCKET}/uploads/", 10_000, [BUCKET], ALICE)
    assert (urls, more) == ([f"s3://{BUCKET}/uploads/{ALICE}/photo"], False)
    for i in range(5):
        client.put_object(Bucket=BUCKET, Key=f"listing/{i}.jpg", Body=b"x")
    client.put_object(Bucket=BUCKET, Key="listing/folder/", Body=b"")
    urls, more = _list(client, f"s3://{BUCKET}/listing/", 3, [BUCKET])
    assert (urls, more) == ([f"s3://{BUCKET}/listing/{i}.jpg" for i in range(4)], True)
    urls, more = _list(client, f"s3://{BUCKET}/listing/", 6, [BUCKET])
    assert (len(urls), more) == (5, False)  # the folder marker is no photo


def test_a_prefix_beyond_the_readable_places_is_forbidden(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ForbiddenURL, match="PICMETRIC_S3_READ_FROM"):
        _list(client, f"s3://{BUCKET}/", 10, [f"{BUCKET}/photos/"])
    with pytest.raises(ForbiddenURL):
        _list(client, f"s3://{OTHER_BUCKET}/", 10, [BUCKET])
    with pytest.raises(InvalidRequest):
        _list(client, f"s3://{BUCKET}/photos/../", 10, [f"{BUCKET}/photos/"])


def test_export_places_are_only_those_listed() -> None:
    """A job's export place: within a `bucket` or `bucket/prefix` of PICMETRIC_JOBS_EXPORT_TO
    (none: every place refused), ending in '/', without dot segments or a query."""
    places = [f"{BUCKET}/exports/"]
    assert s3.check_writable_prefix(f"s3://{BUCKET}/exports/a", places) == (BUCKET, "exports/a/")
    assert s3.check_writable_prefix(f"s3://{OTHER_BUCKET}/", [OTHER_BUCKET]) == (OTHER_BUCKET, "")
    for url, writable in (
        (f"s3://{BUCKET}/exports/a/", []),
        (f"s3://{BUCKET}/", places),
        (f"s3://{BUCKET}/exportsx/", places),
        (f"s3://{OTHER_BUCKET}/exports/", places),
    ):
        with pytest.raises(ForbiddenURL, match="PICMETRIC_JOBS_EXPORT_TO"):
            s3.check_writable_prefix(url, writable)
    for url in (
        f"s3://{BUCKET}/exports/../uploads/",
        f"s3://{BUCKET}/exports/..",
        f"https://{BUCKET}/exports/",
        f"s3://{BUCKET}/exports/?x=1",
    ):
        with pytest.raises(InvalidRequest):
            s3.check_writable_prefix(url, places)
