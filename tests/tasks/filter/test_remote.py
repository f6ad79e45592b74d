"""Resilient remote reads of a real WARC from a loopback server that injects 503/429 with Retry-After,
connection resets mid-body and stalls: the documents equal a clean local read, the retries are counted."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from fineforge.tasks.filter.remote import RateLimiter, RemoteReadConfig, retry_after_seconds
from fineforge.tasks.filter.warc_records import iter_html_documents
from testkit.fault_server import Fault, FaultyFileServer

SAMPLE = "cc-main-2020-34-slice.warc.gz"
BLOCK = 16 * 1024  # small blocks, so a fault mid-file leaves bytes already delivered
# Short timeouts and backoff: the test waits for Retry-After (1 s) and one stall (0.5 s), no longer.
FAST = {"block_bytes": BLOCK, "read_timeout_s": 0.5, "connect_timeout_s": 2.0, "backoff_base_s": 0.05,
        "backoff_max_s": 2.0, "max_retries": 3}  # fmt: skip
FAULTS = [
    Fault("status", status=503, retry_after="1"),
    Fault("reset", after_bytes=3 * BLOCK + 1000),
    Fault("status", status=429),
    Fault("reset", after_bytes=2 * BLOCK + 5),
    Fault("stall", after_bytes=BLOCK + 7),
]


@pytest.fixture(scope="module")
def warc_bytes(shared_data) -> bytes:
    return (shared_data / "warc" / SAMPLE).read_bytes()


@pytest.fixture(scope="module")
def clean_documents(shared_data) -> list[tuple]:
    return documents_of(str(shared_data / "warc" / SAMPLE), Counter())


def documents_of(uri: str, counts: Counter, config: RemoteReadConfig | None = None) -> list[tuple]:
    """What the reader yields, without the file's own name."""
    documents = iter_html_documents(uri, counts, config)
    return [(d.id, d.text, d.metadata["url"], d.metadata["warc_offset"]) for d in documents]


def test_faulty_https_read_equals_clean_read(warc_bytes, clean_documents):
    with FaultyFileServer({"/crawl/" + SAMPLE: warc_bytes}, list(FAULTS), stall_s=1.5) as server:
        counts = Counter()
        documents = documents_of(server.url("/crawl/" + SAMPLE), counts, RemoteReadConfig(**FAST))
        requests = server.requests
    assert documents == clean_documents and len(documents) > 10
    assert counts["remote_retries"] == len(FAULTS)
    assert counts["remote_requests"] == len(requests) == len(FAULTS) + 1
    assert not counts["corrupt_record"] and not counts["unreadable_file"]
    # Each interrupted stream resumed at the last byte delivered, never from the start nor past what was sent.
    starts = [r.start for r in requests]
    assert starts[:2] == [0, 0] and starts[3] == starts[2]
    for before, after, fault in ((1, 2, FAULTS[1]), (3, 4, FAULTS[3]), (4, 5, FAULTS[4])):
        assert starts[before] < starts[after] <= starts[before] + fault.after_bytes
    assert counts["remote_resumed"] == 3  # streams reopened mid-file (the 429 answer opened none)
    assert requests[1].at - requests[0].at >= 1.0  # Retry-After: 1 honoured
    assert requests[5].at - requests[4].at >= FAST["read_timeout_s"]  # the stall was detected by the timeout


def test_s3_read_through_a_bucket_endpoint(warc_bytes, clean_documents, monkeypatch):
    monkeypatch.setenv("FINEFORGE_S3_ACCESS_KEY_ID", "local-store-key")
    monkeypatch.setenv("FINEFORGE_S3_SECRET_ACCESS_KEY", "local-store-secret")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "aws-key")  # never used for a bucket of the local store
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    faults = [Fault("status", status=503), Fault("reset", after_bytes=BLOCK + 3)]
    with FaultyFileServer({"/local-bucket/crawl/" + SAMPLE: warc_bytes}, faults) as server:
        config = RemoteReadConfig(**FAST, s3_endpoints={"local-bucket": server.endpoint})
        counts = Counter()
        documents = documents_of(f"s3://local-bucket/crawl/{SAMPLE}", counts, config)
        requests = server.requests
    assert documents == clean_documents
    starts = [r.start for r in requests]
    assert counts["remote_retries"] == 2 and starts[:2] == [0, 0] and starts[2] > 0
    assert all("Credential=local-store-key/" in r.authorization for r in requests)


def test_missing_file_is_unreadable_without_retries(warc_bytes):
    with FaultyFileServer({}) as server:
        counts = Counter()
        assert documents_of(server.url("/nothing.warc.gz"), counts, RemoteReadConfig(**FAST)) == []
        assert len(server.requests) == 1
    assert counts["unreadable_file"] == 1 and not counts["remote_retries"]


def test_gives_up_after_max_retries(warc_bytes):
    faults = [Fault("status", status=503)] * 10
    with FaultyFileServer({"/w.warc.gz": warc_bytes}, faults) as server:
        counts = Counter()
        assert documents_of(server.url("/w.warc.gz"), counts, RemoteReadConfig(**FAST)) == []
        assert len(server.requests) == FAST["max_retries"] + 1
    assert counts["unreadable_file"] == 1 and counts["remote_retries"] == FAST["max_retries"]


def test_request_rate_is_limited(warc_bytes):
    rate = 10.0
    faults = [Fault("reset", after_bytes=BLOCK + 1)] * 3
    with FaultyFileServer({"/w.warc.gz": warc_bytes}, faults) as server:
        config = RemoteReadConfig(**{**FAST, "backoff_base_s": 0.001}, requests_per_second=rate)
        documents_of(server.url("/w.warc.gz"), Counter(), config)
        times = [r.at for r in server.requests]
    assert len(times) == 4
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 1 / rate * 0.9


def test_rate_limiter_spaces_acquisitions():
    limiter = RateLimiter(20.0)
    started = time.monotonic()
    for _ in range(5):
        limiter.acquire()
    assert time.monotonic() - started >= 4 / 20.0 * 0.9


def test_run_rate_is_shared_by_concurrent_tasks():
    assert RemoteReadConfig(requests_per_second=8).task_share(4).requests_per_second == 2
    assert RemoteReadConfig().task_share(4).requests_per_second is None


def test_retry_after_forms():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
