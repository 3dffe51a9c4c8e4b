"""Turning a request into an analysis request (gateway/http/bodies.py): JSON or multipart, and what
is wrong with a request said plainly."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.conftest import Gateway, post

pytestmark = pytest.mark.integration


def test_invalid_requests_say_what_is_wrong(gateway: Gateway) -> None:
    answer = post(gateway, "/v1/analyze", json={"url": "http://x/y.jpg", "models": ["nope"]})
    assert answer.status_code == 422 and answer.json()["errortype"] == "invalid_request"
    assert "models" in answer.json()["message"]
    no_url = post(gateway, "/api", json={"threshold": 0.5})
    assert no_url.status_code == 422 and no_url.json()["success"] == "false"
    assert "url" in no_url.json()["message"]
    bare = httpx.post(f"{gateway.url}/v1/analyze", content=b'{"url": "http://x/y.jpg"}')
    assert bare.status_code == 415 and bare.json()["errortype"] == "unsupported_media_type"
    assert bare.json()["message"].endswith("not without a Content-Type.")  # not "not no"
    missing = httpx.get(f"{gateway.url}/v1/analyses/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.json()["errortype"] == "not_found"


def test_v1_analyze_accepts_a_multipart_upload(gateway: Gateway, photo_server: str) -> None:
    data = httpx.get(f"{photo_server}/chelsea.png").content
    answer = post(
        gateway,
        "/v1/analyze",
        files={"file": ("cat.png", data, "image/png")},
        data={"models": "resnet50,mtcnn", "threshold": "0.05", "max_results": "2"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["source"]["kind"] == "upload" and body["options"]["max_results"] == 2
    assert {m["name"] for m in body["models"]} == {"resnet50", "mtcnn"}
    bad = post(
        gateway,
        "/v1/analyze",
        files={"file": ("x.png", data, "image/png")},
        data={"models": "resnet50,cats"},
    )
    assert bad.status_code == 422 and "models" in bad.json()["message"]
    empty = post(gateway, "/v1/analyze", files={"file": ("x.png", b"", "image/png")})
    assert empty.status_code == 422 and "empty" in empty.json()["message"]


def test_misspelled_and_unknown_fields_are_refused_naming_them(
    gateway: Gateway, photo_server: str
) -> None:
    """A misspelled option would otherwise run every model at the default threshold."""
    url = f"{photo_server}/astronaut.png"
    data = httpx.get(url).content
    upload = {"file": ("a.png", data, "image/png")}
    for path in ("/v1/analyze", "/v1/annotate", "/v1/batch"):
        wrong = post(gateway, path, files=upload, data={"treshold": "0.5"})
        assert wrong.status_code == 422, (path, wrong.text)
        message = wrong.json()["message"]
        assert "'treshold'" in message and "did you mean 'threshold'" in message, message
        assert "models, threshold, max_results" in message
    keys = post(gateway, "/v1/analyze", json={"url": url, "model": ["mtcnn"]})
    assert keys.status_code == 422 and "'model'" in keys.json()["message"]
    assert "did you mean 'models'" in keys.json()["message"]
    batch = post(gateway, "/v1/batch", json={"urls": [url], "thresold": 0.1})
    assert batch.status_code == 422 and "'thresold'" in batch.json()["message"]
    nothing = post(gateway, "/v1/analyze", json={"url": url, "models": []})
    assert nothing.status_code == 422 and "models" in nothing.json()["message"]
    for empty in ("", " , "):  # a script's empty variable: not every model
        blank = post(gateway, "/v1/analyze", files=upload, data={"models": empty})
        assert blank.status_code == 422 and "models" in blank.json()["message"], blank.text
    twice = post(gateway, "/v1/analyze", files=upload, data={"threshold": ["0.1", "0.2"]})
    assert twice.status_code == 422 and "'threshold' is given 2 times" in twice.json()["message"]
    # The seed's /api ignores other keys, as the Flask service did.
    seed = post(gateway, "/api", json={"url": url, "treshold": 0.5})
    assert seed.status_code == 200 and seed.json()["success"] == "true"


def test_repeated_models_fields_add_up_and_threshold_1_is_accepted(
    gateway: Gateway, photo_server: str
) -> None:
    data = httpx.get(f"{photo_server}/astronaut.png").content
    answer = post(
        gateway,
        "/v1/analyze",
        files={"file": ("a.png", data, "image/png")},
        data={"models": ["mtcnn", "resnet50,mtcnn"], "threshold": "1"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [m["name"] for m in body["models"]] == ["mtcnn", "resnet50"]
    assert body["options"]["threshold"] == 1.0
    over = post(gateway, "/v1/analyze", json={"url": "http://x/a.jpg", "threshold": 1.01})
    assert over.status_code == 422 and "threshold" in over.json()["message"]
    yolo = post(
        gateway,
        "/v1/analyze",
        json={"url": f"{photo_server}/astronaut.png", "models": ["yolov3"], "threshold": 1},
    )
    assert yolo.status_code == 200 and yolo.json()["results"]["yolov3"] == [], yolo.text


def test_unknown_query_parameters_are_refused_naming_them(
    gateway: Gateway, photo_server: str
) -> None:
    """`?blur_face=true` answered the faces unblurred, `?models=mtcnn` ran every model: a query
    parameter a /v1 route does not take is refused, and an option in the wrong place is told
    where it goes. The seed's /api keeps ignoring what it does not know."""
    url = f"{photo_server}/astronaut.png"
    body = {"url": url, "models": ["mtcnn"]}
    misspelled = post(gateway, "/v1/annotate?blur_face=true", json=body)
    assert misspelled.status_code == 422, misspelled.headers.get("content-type")
    message = misspelled.json()["message"]
    assert "'blur_face'" in message and "did you mean 'blur_faces'" in message, message
    options = post(gateway, "/v1/analyze?models=mtcnn", json={"url": url})
    assert options.status_code == 422
    message = options.json()["message"]
    assert "this route takes no query parameters" in message and "JSON body" in message, message
    listed = httpx.get(f"{gateway.url}/v1/models?verbose=1")
    assert listed.status_code == 422 and "'verbose'" in listed.json()["message"]
    pages = httpx.get(f"{gateway.url}/v1/jobs?limt=5")
    assert pages.status_code == 422 and "did you mean 'limit'" in pages.json()["message"]
    data = httpx.get(url).content
    upload = {"file": ("a.png", data, "image/png")}
    for sent in (
        {"files": upload, "data": {"blur_faces": "true"}},
        {"json": {**body, "blur_faces": True}},
    ):
        in_body = post(gateway, "/v1/annotate", **sent)
        assert in_body.status_code == 422
        assert "'blur_faces' is a query parameter (?blur_faces=...)" in in_body.json()["message"]
    seed = post(gateway, "/api?verbose=1", json={"url": url})
    assert seed.status_code == 200 and seed.json()["success"] == "true"


def test_json_that_is_not_the_options_object_is_refused(gateway: Gateway) -> None:
    """A job source's misspelled key is named with its path and the accepted ones; true is not
    a threshold (pydantic reads it as 1.0) nor a count; an array is not the body's object."""
    url = "http://x/a.jpg"
    nested = post(gateway, "/v1/jobs", json={"source": {"urls": [url], "prefix": "s3://b/"}})
    assert nested.status_code == 422
    message = nested.json()["message"]
    assert "'source.prefix' (did you mean 'source.s3_prefix'?)" in message, message
    assert "source.s3_prefix, source.urls, source.manifest" in message
    for option in ("threshold", "max_results"):
        truth = post(gateway, "/v1/analyze", json={"url": url, option: True})
        assert truth.status_code == 422 and "not true or false" in truth.json()["message"]
    array = post(gateway, "/v1/analyze", json=[url])
    assert array.status_code == 422 and "a JSON object" in array.json()["message"]
    assert "not an array" in array.json()["message"]
