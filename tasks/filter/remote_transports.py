"""How a remote file's bytes are opened from an offset: HTTP(S) through requests, S3 through botocore.

Each transport answers one request; the retrying lives in `remote.ResilientRemoteFile`. A status worth
retrying raises `RetryableResponse` (with the server's Retry-After); a missing file raises
FileNotFoundError, a refused one PermissionError; the other errors of a broken connection are listed in
the transport's `transient` tuple. The library's own retries are off, so every try is counted once.
"""

from __future__ import annotations

import os
from functools import partial

from fineforge.tasks.filter.remote import (
    RETRYABLE_STATUS,
    OpenedStream,
    RemoteReadConfig,
    RemoteReadError,
    RetryableResponse,
    Transport,
    retry_after_seconds,
    size_from_headers,
)

DEFAULT_S3_REGION = "us-east-1"  # CommonCrawl's bucket
# Credentials of a local S3-compatible store (a bucket in `s3_endpoints`), by names of their own: the
# standard AWS_* variables would also sign requests to AWS buckets such as s3://commoncrawl.
LOCAL_STORE_KEY_ENV = ("FINEFORGE_S3_ACCESS_KEY_ID", "FINEFORGE_S3_SECRET_ACCESS_KEY")


def error_for_status(uri: str, status: int, detail: str = "") -> OSError:
    """The error of a final (not retried) HTTP status."""
    message = f"{uri}: HTTP {status}{': ' + detail if detail else ''}"
    if status == 404:
        return FileNotFoundError(message)
    if status in (401, 403):
        return PermissionError(message)
    return RemoteReadError(message)


def local_store_credentials() -> dict[str, str]:
    """botocore client arguments with the local store's credentials, when its variables are set."""
    key, secret = (os.environ.get(name) for name in LOCAL_STORE_KEY_ENV)
    return {"aws_access_key_id": key, "aws_secret_access_key": secret} if key and secret else {}


def empty_stream() -> OpenedStream:
    return OpenedStream(read=lambda _: b"", close=lambda: None, size=0)


def _discard(read, count: int) -> None:
    """Read and drop `count` bytes (a server that ignored the Range header sent the file from its start)."""
    while count > 0:
        skipped = read(min(count, 1 << 20))
        if not skipped:
            raise RemoteReadError(f"body ended {count} bytes before the requested offset")
        count -= len(skipped)


class HttpTransport:
    """GET with `Range: bytes=<offset>-`, streamed; the body is read as sent (no content decoding)."""

    def __init__(self, url: str, config: RemoteReadConfig):
        import requests
        import urllib3

        self.transient = (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)
        self._url = url
        self._session = requests.Session()
        self._timeout = (config.connect_timeout_s, config.read_timeout_s)

    def open(self, offset: int) -> OpenedStream:
        asked = {"Range": f"bytes={offset}-", "Accept-Encoding": "identity"}
        response = self._session.get(self._url, headers=asked, stream=True, timeout=self._timeout)
        status = response.status_code
        if status in (200, 206):
            start = offset if status == 206 else 0
            headers = response.headers
            size = size_from_headers(start, headers.get("Content-Range"), headers.get("Content-Length"))
            read = partial(response.raw.read1, decode_content=False)  # what has arrived, up to the amount
            if status == 200 and offset:
                _discard(read, offset)
            return OpenedStream(read=read, close=response.close, size=size)
        response.close()
        if status == 416 and size_from_headers(0, response.headers.get("Content-Range"), None) == offset:
            return empty_stream()
        if status in RETRYABLE_STATUS:
            raise RetryableResponse(status, retry_after_seconds(response.headers.get("Retry-After")))
        raise error_for_status(self._url, status)

    def close(self) -> None:
        self._session.close()


class S3Transport:
    """GetObject with `Range: bytes=<offset>-`; the bucket's endpoint from the config (AWS when not given).

    A bucket of a local store signs with the FINEFORGE_S3_* credentials when set; AWS buckets use the
    standard credential chain, or no signature with `s3_anonymous`.
    """

    def __init__(self, uri: str, config: RemoteReadConfig):
        import botocore.session
        import urllib3
        from botocore import UNSIGNED
        from botocore.config import Config
        from botocore.exceptions import HTTPClientError, IncompleteReadError

        self.transient = (HTTPClientError, IncompleteReadError, urllib3.exceptions.HTTPError, ConnectionError,
                          TimeoutError)  # fmt: skip
        self._uri = uri
        self._bucket, _, self._key = uri.removeprefix("s3://").partition("/")
        endpoint = config.s3_endpoints.get(self._bucket)
        client_config = Config(
            connect_timeout=config.connect_timeout_s,
            read_timeout=config.read_timeout_s,
            retries={"total_max_attempts": 1},
            signature_version=UNSIGNED if config.s3_anonymous else None,
            s3={"addressing_style": "path"} if endpoint else None,
        )
        session = botocore.session.get_session()
        region = session.get_config_variable("region") or DEFAULT_S3_REGION
        credentials = local_store_credentials() if endpoint else {}
        self._client = session.create_client(
            "s3", region_name=region, endpoint_url=endpoint, config=client_config, **credentials
        )

    def open(self, offset: int) -> OpenedStream:
        from botocore.exceptions import ClientError

        try:
            response = self._client.get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes={offset}-")
        except ClientError as e:
            metadata = e.response.get("ResponseMetadata", {})
            status, headers = metadata.get("HTTPStatusCode", 0), metadata.get("HTTPHeaders", {})
            if status == 416 and offset == size_from_headers(0, headers.get("content-range"), None):
                return empty_stream()
            if status in RETRYABLE_STATUS:
                raise RetryableResponse(status, retry_after_seconds(headers.get("retry-after"))) from e
            raise error_for_status(self._uri, status, e.response.get("Error", {}).get("Code", "")) from e
        size = size_from_headers(offset, response.get("ContentRange"), str(response.get("ContentLength", "")))
        body = response["Body"]
        return OpenedStream(read=body.read, close=body.close, size=size)

    def close(self) -> None:
        self._client.close()


def transport_for(uri: str, config: RemoteReadConfig) -> Transport:
    """The transport of a URI's scheme (s3, http, https)."""
    if uri.startswith("s3://"):
        return S3Transport(uri, config)
    return HttpTransport(uri, config)
