"""Resilient reads of remote WARC files (``https://``, ``http://``, ``s3://``) as one seekable byte stream.

A remote file is read as a stream from a byte offset. When a request fails (HTTP 429/5xx, a reset
connection, a stall longer than the read timeout, a body that ends early), the stream is reopened with a
``Range`` request at the first byte not yet delivered, after a wait: the server's ``Retry-After`` when it
sends one, else exponential backoff with full jitter. The reader above sees one unbroken stream, so no
record is lost or read twice. Every request of a run draws on a request-rate budget shared by the run's
concurrent tasks. Requests, retries and resumptions are counted into the caller's statistics.
"""

from __future__ import annotations

import email.utils
import io
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Protocol

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from fineforge.tasks.filter.warc_input import open_uri

log = logging.getLogger(__name__)

REMOTE_SCHEMES = ("http://", "https://", "s3://")
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
CONTENT_RANGE_PREFIX = "bytes "


class RemoteReadConfig(BaseModel):
    """How WARC files on ``https://`` and ``s3://`` are read: retries, timeouts, request rate, S3 endpoints."""

    model_config = ConfigDict(extra="forbid")

    max_retries: int = Field(8, ge=0, description="Retries of one failed request before the file is given up.")
    backoff_base_s: PositiveFloat = Field(1.0, description="First backoff; doubles with each retry (full jitter).")
    backoff_max_s: PositiveFloat = Field(60.0, description="Longest wait between two tries, Retry-After included.")
    connect_timeout_s: PositiveFloat = Field(10.0, description="Seconds to open a connection.")
    read_timeout_s: PositiveFloat = Field(60.0, description="Seconds without a byte before a stalled read is retried.")
    block_bytes: int = Field(1 << 20, ge=1 << 12, description="Bytes asked of the stream at a time.")
    requests_per_second: PositiveFloat | None = Field(
        None, description="Request rate of the whole run, shared equally by its concurrent tasks; null: no limit."
    )
    s3_endpoints: dict[str, str] = Field(
        default_factory=dict,
        description="S3 endpoint URL per bucket, for a local S3-compatible store (other buckets: AWS).",
    )
    s3_anonymous: bool = Field(False, description="Read S3 without credentials (unsigned requests).")

    def task_share(self, concurrent_tasks: int) -> RemoteReadConfig:
        """The settings of one of `concurrent_tasks` tasks: an equal share of the run's request rate."""
        if self.requests_per_second is None or concurrent_tasks <= 1:
            return self
        return self.model_copy(update={"requests_per_second": self.requests_per_second / concurrent_tasks})


class RemoteReadError(OSError):
    """A remote file could not be read, after the configured retries where a retry could help."""


class BodyEndedEarly(Exception):
    """A response body ended before the bytes it announced."""


class RetryableResponse(Exception):
    """The server answered with a status worth retrying; `retry_after` is its Retry-After in seconds."""

    def __init__(self, status: int, retry_after: float | None):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


@dataclass
class OpenedStream:
    """A response body read from `offset`, and the size of the whole file."""

    read: Callable[[int], bytes]
    close: Callable[[], None]
    size: int


class Transport(Protocol):
    """Opens a file's bytes from an offset; raises RetryableResponse, or an error listed in `transient`."""

    transient: tuple[type[BaseException], ...]

    def open(self, offset: int) -> OpenedStream: ...

    def close(self) -> None: ...


def is_remote(uri: str) -> bool:
    """True for the URIs this module reads (http, https, s3)."""
    return uri.startswith(REMOTE_SCHEMES)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def size_from_headers(offset: int, content_range: str | None, content_length: str | None) -> int:
    """The whole file's size from a response's Content-Range (`bytes a-b/total`), else offset + Content-Length."""
    if content_range and content_range.startswith(CONTENT_RANGE_PREFIX) and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        if total.isdigit():
            return int(total)
    if content_length and content_length.isdigit():
        return offset + int(content_length)
    raise RemoteReadError(f"no file size in Content-Range {content_range!r} nor Content-Length {content_length!r}")


class RateLimiter:
    """At most `rate` acquisitions per second (a token bucket of one), shared by the threads of a process."""

    def __init__(self, rate: float | None):
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self._interval
        if wait > 0:
            time.sleep(wait)


class ResilientRemoteFile(io.RawIOBase):
    """A seekable, read-only byte stream over a remote file that survives failed requests (see module doc)."""

    def __init__(self, uri: str, transport: Transport, config: RemoteReadConfig, counts: Counter,
                 limiter: RateLimiter | None = None):  # fmt: skip
        super().__init__()
        self.uri = uri
        self._transport = transport
        self._config = config
        self._counts = counts
        self._limiter = limiter or RateLimiter(config.requests_per_second)
        self._position = 0
        self._stream: OpenedStream | None = None
        self._stream_position = 0  # where the open stream's next byte lies in the file
        self._open_at(0)  # fails now, with the file's own error, when it cannot be read at all
        self.size = self._stream.size if self._stream else 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        if self._position >= self.size:
            return 0
        wanted = min(len(buffer), self._config.block_bytes, self.size - self._position)
        failures = 0
        while True:
            try:
                if self._stream is None or self._stream_position != self._position:
                    self._open_at(self._position)
                data = self._stream.read(wanted)
                if not data:
                    raise BodyEndedEarly(f"body ended at byte {self._position} of {self.size}")
            except self._transport.transient + (RetryableResponse, BodyEndedEarly) as e:
                failures += 1
                self._retry_after_failure(e, failures)
                continue
            count = len(data)
            buffer[:count] = data
            self._position += count
            self._stream_position += count
            return count

    def close(self) -> None:
        self._drop_stream()
        self._transport.close()
        super().close()

    def _open_at(self, offset: int) -> None:
        """Open the stream at `offset`, retrying failed requests."""
        failures = 0
        while True:
            self._drop_stream()
            self._limiter.acquire()
            self._counts["remote_requests"] += 1
            try:
                self._stream = self._transport.open(offset)
            except self._transport.transient + (RetryableResponse,) as e:
                failures += 1
                self._retry_after_failure(e, failures)
                continue
            self._stream_position = offset
            if offset:
                self._counts["remote_resumed"] += 1
            return

    def _retry_after_failure(self, error: BaseException, failures: int) -> None:
        """Wait before the next try (Retry-After, else jittered exponential backoff), or give up."""
        self._drop_stream()
        if failures > self._config.max_retries:
            raise RemoteReadError(
                f"{self.uri}: giving up at byte {self._position} after {failures} failed tries: {error}"
            ) from error
        self._counts["remote_retries"] += 1
        retry_after = getattr(error, "retry_after", None)
        ceiling = min(self._config.backoff_max_s, self._config.backoff_base_s * 2 ** (failures - 1))
        wait = min(retry_after, self._config.backoff_max_s) if retry_after is not None else random.uniform(0, ceiling)
        log.warning("%s: %s at byte %d; try %d in %.1fs", self.uri, error, self._position, failures + 1, wait)
        time.sleep(wait)

    def _drop_stream(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            try:
                stream.close()
            except Exception as e:  # closing a broken connection may fail again; nothing is lost
                log.debug("%s: closing a failed stream: %s", self.uri, e)


_LIMITERS: dict[float | None, RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def shared_limiter(config: RemoteReadConfig) -> RateLimiter:
    """The process's rate limiter for the configured rate (one per rate, shared by every file it reads)."""
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault(config.requests_per_second, RateLimiter(config.requests_per_second))


def open_remote(uri: str, counts: Counter, config: RemoteReadConfig | None = None) -> IO[bytes]:
    """A buffered, seekable stream over a remote WARC file; requests and retries are counted into `counts`."""
    from fineforge.tasks.filter.remote_transports import transport_for

    config = config or RemoteReadConfig()
    raw = ResilientRemoteFile(uri, transport_for(uri, config), config, counts, shared_limiter(config))
    return io.BufferedReader(raw, buffer_size=config.block_bytes)


def open_warc(uri: str, counts: Counter, config: RemoteReadConfig | None = None) -> IO[bytes]:
    """A seekable binary stream on a WARC file: resilient reads for http(s) and s3 URIs, else a local file."""
    return open_remote(uri, counts, config) if is_remote(uri) else open_uri(uri)
