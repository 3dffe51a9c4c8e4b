"""Tenancy, end to end on a gateway with two API keys (real uvicorn, Triton, SQLite and
PostgreSQL, moto's S3 server): an analysis belongs to the key that made it, a key's first analysis
of a photo is its first whatever other keys did (no `cached` or timing oracle), a kept upload is
read back by its key only, URL credentials are neither stored, answered nor logged, and a stored
analysis reads back as the request answered it."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from gateway.ratelimit import key_id
from gateway.store.migrate import upgrade_schema
from gateway.store.storage import AnalysisStore
from gateway.tenancy import ANONYMOUS, owner_of, public_url
from picmetric.triton_server import TritonServer
from tests.gateway.conftest import BUCKET, FRESH, database_of, s3_client
from tests.utils.analyses import sample_row
from tests.utils.real_photos import jpeg_bytes
from tests.utils.services import gateway_env, gateway_process
from tests.utils.triton_stats import inference_count

ALICE, BOB = "alice-key-0123456789", "bob-key-9876543210"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql")])
def keyed_gateway(
    request: pytest.FixtureRequest,
    triton: TritonServer,
    model_repository: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The gateway with two API keys and no upload bucket (uploads are named by filename)."""
    folder = tmp_path_factory.mktemp(f"tenancy-{request.param}")
    database_url = database_of(request, folder)
    env = gateway_env(
        triton,
        model_repository,
        database_url,
        allow_private_urls="true",
        api_keys=f"{ALICE},{BOB}",
    )
    log = folder / "gateway.log"
    with gateway_process(env, log) as url:
        yield url
    # Nothing the clients put in their URLs reached the log.
    assert "hunter2" not in log.read_text() and "s3cret" not in log.read_text()


def _call(method: str, url: str, key: str, fresh: bool = False, **kwargs: object) -> httpx.Response:
    """`fresh`: Cache-Control: no-cache, the models run whatever the store holds."""
    headers = {"X-API-Key": key, **(FRESH if fresh else {})}
    return httpx.request(method, url, headers=headers, timeout=120, **kwargs)  # type: ignore[arg-type]


def _with_credentials(photo_server: str, path: str, token: str) -> str:
    return photo_server.replace("http://", "http://user:hunter2@") + f"{path}?token={token}#x"


@pytest.mark.integration
def test_a_key_reads_only_its_own_analyses_and_a_hit_is_its_own(
    keyed_gateway: str, photo_server: str, triton: TritonServer
) -> None:
    """Alice analyses a URL with credentials; Bob sends the same photo: his first analysis of it,
    the models run (no `cached`, no time that tells Alice's apart), with his own id, time and
    URL; his second is his own hit; each key reads its own and gets 404 (the body of a missing
    id) for the other's."""
    body = {"models": ["resnet50"]}
    alice_url = _with_credentials(photo_server, "/coffee.png", "s3cret-alice")
    bob_url = _with_credentials(photo_server, "/coffee.png", "s3cret-bob")
    first = _call(
        "POST", f"{keyed_gateway}/v1/analyze", ALICE, fresh=True, json={**body, "url": alice_url}
    )
    assert first.status_code == 200, first.text
    alice = first.json()
    assert alice["source"]["url"] == f"{photo_server}/coffee.png" == public_url(alice_url)
    inferences = inference_count(triton.grpc_url, "resnet50")

    second = _call("POST", f"{keyed_gateway}/v1/analyze", BOB, json={**body, "url": bob_url})
    assert second.status_code == 200, second.text
    bob = second.json()
    assert inference_count(triton.grpc_url, "resnet50") == inferences + 1, (
        "Bob's first analysis runs the model"
    )
    assert bob["cached"] is False and bob["results"] == alice["results"]
    assert set(bob["timings_ms"]) == set(alice["timings_ms"])
    assert bob["id"] != alice["id"] and bob["created_at"] > alice["created_at"]
    assert bob["source"]["url"] == f"{photo_server}/coffee.png"
    assert "hunter2" not in second.text and "s3cret" not in second.text

    for key, own, other in ((ALICE, alice, bob), (BOB, bob, alice)):
        mine = _call("GET", f"{keyed_gateway}/v1/analyses/{own['id']}", key)
        assert mine.status_code == 200 and mine.json()["id"] == own["id"]
        theirs = _call("GET", f"{keyed_gateway}/v1/analyses/{other['id']}", key)
        missing_id = str(uuid.uuid4())
        missing = _call("GET", f"{keyed_gateway}/v1/analyses/{missing_id}", key)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.text.replace(other["id"], missing_id) == missing.text

    again = _call("POST", f"{keyed_gateway}/v1/analyze", BOB, json={**body, "url": bob_url})
    assert again.json()["id"] == bob["id"], "the same key and source: its own earlier analysis"
    assert again.json()["cached"] is True

    broken = _with_credentials(photo_server, "/missing.jpg", "s3cret-x")
    failed = _call("POST", f"{keyed_gateway}/v1/analyze", ALICE, json={**body, "url": broken})
    assert failed.status_code == 400 and f"{photo_server}/missing.jpg" in failed.text
    assert "hunter2" not in failed.text and "s3cret" not in failed.text


@pytest.mark.integration
def test_upload_filenames_of_one_key_never_reach_another(
    keyed_gateway: str, photos: dict[str, np.ndarray]
) -> None:
    photo = jpeg_bytes(photos["rocket"])
    form = {"models": "resnet50"}
    answers = {}
    for key, name in ((ALICE, "alice-private-name.jpg"), (BOB, "bob.jpg")):
        answer = _call(
            "POST",
            f"{keyed_gateway}/v1/analyze",
            key,
            fresh=key == ALICE,  # Alice's runs the models; so does Bob's, his first
            files={"file": (name, photo)},
            data=form,
        )
        assert answer.status_code == 200, answer.text
        answers[key] = answer.json()
        assert answers[key]["source"] == {"kind": "upload", "url": f"upload:{name}"}
    assert answers[BOB]["cached"] is False and "alice" not in str(answers[BOB])
    read = _call("GET", f"{keyed_gateway}/v1/analyses/{answers[BOB]['id']}", BOB)
    assert read.json()["source"]["url"] == "upload:bob.jpg"


@pytest.mark.integration
def test_a_stored_analysis_reads_back_as_it_was_answered(
    keyed_gateway: str, photo_server: str
) -> None:
    """Issue 23: GET /v1/analyses/{id} answers what POST did, timings (`total`) included; only
    `cached` differs (a read is always answered from the store)."""
    body = {"url": f"{photo_server}/chelsea.png"}
    for fresh in (True, False):  # a miss, then the same key's hit
        posted = _call("POST", f"{keyed_gateway}/v1/analyze", ALICE, fresh, json=body).json()
        assert posted["cached"] is not fresh
        read = _call("GET", f"{keyed_gateway}/v1/analyses/{posted['id']}", ALICE).json()
        assert "total" in posted["timings_ms"]
        assert {**read, "cached": None} == {**posted, "cached": None}


def test_owner_is_a_hash_of_the_key_and_anonymous_without_one() -> None:
    """The owner starts with the key id of the rate limits (`sha256sum | cut -c1-12`)."""
    assert owner_of(None) == ANONYMOUS
    owner = owner_of(ALICE)
    assert len(owner) == 64 and ALICE not in owner and owner != owner_of(BOB)
    assert owner == owner_of(ALICE) and owner[:12] == key_id(ALICE)


def test_public_url_drops_userinfo_query_and_fragment() -> None:
    cases = {
        "https://u:p@Example.com:8443/a/b.jpg?sig=1&x=2#frag": "https://example.com:8443/a/b.jpg",
        "http://token@[2001:db8::1]/p.png?x": "http://[2001:db8::1]/p.png",
        "s3://bucket/key.jpg?versionId=3": "s3://bucket/key.jpg",
        "https://example.com/plain.jpg": "https://example.com/plain.jpg",
        "http://u:p@host:99999/x?t=1": "http://host:99999/x",  # a port no URL parser accepts
    }
    for url, public in cases.items():
        assert public_url(url) == public, url


def test_store_reads_by_owner_and_prefers_the_owners_own_cached_analysis(tmp_path: Path) -> None:
    """On SQLite: another owner's id reads as missing; a cache lookup finds the owner's own
    analysis of the same source before a newer one of another source, and never another
    owner's."""
    url = f"sqlite:///{tmp_path / 'analyses.db'}"
    upgrade_schema(url)
    alice, bob = owner_of(ALICE), owner_of(BOB)
    rows = {
        "alice-old": (alice, "https://example.com/cat.jpg", 1),
        "bob-new": (bob, "https://example.com/cat.jpg", 3),
        "alice-other-url": (alice, "https://example.com/other.jpg", 2),
    }
    store = AnalysisStore(url)
    try:
        for name, (owner, source, hour) in rows.items():
            row = sample_row(name)
            row.owner, row.source = owner, source
            row.created_at = row.created_at.replace(hour=hour)
            asyncio.run(store.save(row))
        assert asyncio.run(store.get("bob-new", alice)) is None
        assert asyncio.run(store.get("bob-new", bob)) is not None

        def cached(owner: str, source: str) -> str | None:
            found = asyncio.run(store.find_cached("a" * 64, "b" * 64, owner, source))
            return found.id if found else None

        assert cached(alice, "https://example.com/cat.jpg") == "alice-old"
        assert cached(alice, "https://example.com/new.jpg") == "alice-other-url"  # to copy
        assert cached(bob, "https://example.com/other.jpg") == "bob-new"
        assert cached(ANONYMOUS, "https://example.com/other.jpg") is None, "never another's"
    finally:
        store.dispose()


@pytest.fixture(scope="module")
def keeping_gateway(
    triton: TritonServer,
    model_repository: Path,
    s3_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The gateway with two API keys and the upload bucket, which PICMETRIC_S3_READ_FROM leaves
    whole to every key (the default: the upload bucket)."""
    folder = tmp_path_factory.mktemp("tenancy-s3")
    env = gateway_env(
        triton,
        model_repository,
        f"sqlite:///{folder / 'analyses.db'}",
        api_keys=f"{ALICE},{BOB}",
        s3_bucket=BUCKET,
        s3_endpoint_url=s3_url,
    )
    with gateway_process(env, folder / "gateway.log") as url:
        yield url


def _kept_keys(s3_url: str) -> set[str]:
    listed = s3_client(s3_url).list_objects_v2(Bucket=BUCKET, Prefix="uploads/")
    return {item["Key"] for item in listed.get("Contents", [])}


@pytest.mark.integration
def test_a_kept_upload_is_read_back_by_its_key_only(
    keeping_gateway: str, photos: dict[str, np.ndarray], s3_url: str
) -> None:
    """Alice's upload is kept under her owner's prefix; Bob sending its pointer to /v1/analyze
    or /v1/annotate is answered as for an object that is not there; Alice reads it back."""
    photo = jpeg_bytes(photos["coffee"])
    form = {"models": ["resnet50"]}
    kept = _call("POST", f"{keeping_gateway}/v1/images", ALICE, files={"file": ("c.jpg", photo)})
    assert kept.status_code == 201, kept.text
    pointer = kept.json()["source"]["url"]
    assert pointer.startswith(f"s3://{BUCKET}/uploads/{owner_of(ALICE)}/")
    missing = f"s3://{BUCKET}/uploads/{owner_of(BOB)}/{'0' * 64}"
    for path in ("/v1/analyze", "/v1/annotate"):
        theirs = _call("POST", f"{keeping_gateway}{path}", BOB, json={"url": pointer, **form})
        nothing = _call("POST", f"{keeping_gateway}{path}", BOB, json={"url": missing, **form})
        assert theirs.status_code == nothing.status_code == 400, theirs.text
        assert theirs.text.replace(pointer, "URL") == nothing.text.replace(missing, "URL")
        mine = _call("POST", f"{keeping_gateway}{path}", ALICE, json={"url": pointer, **form})
        assert mine.status_code == 200, mine.text
    bobs = _call("POST", f"{keeping_gateway}/v1/images", BOB, files={"file": ("c.jpg", photo)})
    assert bobs.status_code == 201 and bobs.json()["cached"] is False, bobs.text
    assert bobs.json()["source"]["url"] == pointer.replace(owner_of(ALICE), owner_of(BOB))
    assert {key for key in _kept_keys(s3_url) if key.endswith(pointer[-64:])} == {
        f"uploads/{owner}/{pointer[-64:]}" for owner in (owner_of(ALICE), owner_of(BOB))
    }


@pytest.mark.integration
def test_an_upload_the_analysis_refuses_is_not_kept(keeping_gateway: str, s3_url: str) -> None:
    """A file that is no image (415) and one whose header says too many pixels (413) leave
    nothing in the bucket, whichever route they came by."""
    text = b"not an image, only words\n" * 40
    huge = io.BytesIO()
    Image.new("1", (10_000, 5_000)).save(huge, "PNG")  # 50 MP in 7 KB, over the 40 MP limit
    before = _kept_keys(s3_url)
    for data, status in ((text, 415), (huge.getvalue(), 413)):
        for path in ("/v1/images", "/v1/analyze"):
            files = {"file": ("x.jpg", data)}
            answer = _call("POST", f"{keeping_gateway}{path}", ALICE, files=files)
            assert answer.status_code == status, answer.text
        batch = _call(
            "POST", f"{keeping_gateway}/v1/batch", ALICE, files=[("file", ("x.jpg", data))]
        )
        assert batch.status_code == 200 and batch.json()["results"][0]["error"], batch.text
    assert _kept_keys(s3_url) == before
