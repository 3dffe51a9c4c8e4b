"""A manifest's lines become a job's photos (gateway.jobs.submit)."""

from __future__ import annotations

from gateway.jobs.submit import manifest_sources


def test_a_manifest_lists_urls_and_keys_of_its_own_bucket() -> None:
    text = "# a trip\nphotos/a.jpg\n\n  /photos/b.jpg \r\nhttps://example.com/c.jpg\ns3://other/d.jpg\n"
    assert manifest_sources(text, "s3://bucket/lists/trip.txt") == [
        "s3://bucket/photos/a.jpg",
        "s3://bucket/photos/b.jpg",
        "https://example.com/c.jpg",
        "s3://other/d.jpg",
    ]
