"""An object store (`s3://bucket/prefix`) as a work dir: which store, with which credentials, staged where.

A work dir is a local folder or an `s3://bucket/prefix` URI. fineforge's stages, Spark and torchrun read and
write local files, so a remote work dir has a local *staging* copy, `$FINEFORGE_STAGING_DIR/<bucket>/<prefix>`
(default `~/.cache/fineforge/staging`): a stage is written there and then published to the store, and what a
stage reads is pulled from the store into it (`committed.py` says how, without renames).

The store is reached with s3fs. Its endpoint and credentials:
- `FINEFORGE_S3_ENDPOINT_URL`, `FINEFORGE_S3_ACCESS_KEY_ID`, `FINEFORGE_S3_SECRET_ACCESS_KEY` for an
  S3-compatible store (the credential names the WARC reader uses for a local store too); they affect the work
  dir only, so `s3://commoncrawl` is still read from AWS;
- without them, botocore's own chain (`AWS_ACCESS_KEY_ID`, `AWS_PROFILE`, `AWS_ENDPOINT_URL_S3`, ...): AWS S3.

`check_work_dir` refuses, before any work, a remote work dir whose store has no credentials, does not answer,
or has no such bucket, naming the setting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REMOTE_PREFIX = "s3://"
ENDPOINT_ENV = "FINEFORGE_S3_ENDPOINT_URL"
KEY_ENV, SECRET_ENV = "FINEFORGE_S3_ACCESS_KEY_ID", "FINEFORGE_S3_SECRET_ACCESS_KEY"
STAGING_ENV = "FINEFORGE_STAGING_DIR"
DEFAULT_STAGING = Path("~/.cache/fineforge/staging")
CONNECT_TIMEOUT_S = 10
STORE_RETRIES = 3  # botocore's attempts per request (a store that does not answer fails in seconds)


class ObjectStoreError(ValueError):
    """A remote work dir that cannot be used: no credentials, no answer, no bucket; the message names the setting."""


def is_remote(path: str | Path) -> bool:
    """Whether `path` is an object store URI (`s3://...`)."""
    return str(path).startswith(REMOTE_PREFIX)


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> ("bucket", "a/b")."""
    bucket, _, prefix = uri[len(REMOTE_PREFIX):].partition("/")
    return bucket, prefix.strip("/")


def join_uri(uri: str, *parts: str) -> str:
    """`uri` with path parts appended, one slash between each."""
    return "/".join([uri.rstrip("/"), *(part.strip("/") for part in parts if part)])


def store_key(uri: str) -> str:
    """An s3fs path: the URI without its scheme (`s3://b/p` -> `b/p`)."""
    return uri.split("://", 1)[-1]


def filesystem():
    """The s3fs filesystem of the work dir store (listings never cached: other processes write the store)."""
    import s3fs

    endpoint = os.environ.get(ENDPOINT_ENV)
    key, secret = os.environ.get(KEY_ENV), os.environ.get(SECRET_ENV)
    config = {"connect_timeout": CONNECT_TIMEOUT_S, "retries": {"max_attempts": STORE_RETRIES}}
    return s3fs.S3FileSystem(
        key=key or None, secret=secret or None, endpoint_url=endpoint or None, use_listings_cache=False,
        config_kwargs=config, client_kwargs={"region_name": os.environ.get("AWS_REGION", "us-east-1")},
    )  # fmt: skip


def staging_root() -> Path:
    """Where remote work dirs are staged locally: $FINEFORGE_STAGING_DIR, else ~/.cache/fineforge/staging."""
    return Path(os.environ.get(STAGING_ENV) or DEFAULT_STAGING).expanduser().resolve()


def staging_path(uri: str) -> Path:
    """The local staging copy of a remote path: `<staging root>/<bucket>/<prefix>`."""
    bucket, prefix = split_uri(uri)
    return staging_root() / bucket / prefix


@dataclass(frozen=True)
class WorkDir:
    """A work dir: `uri` (a resolved local path or `s3://...`) and `local`, the folder the stages work in (the path
    itself, or the staging copy of a remote work dir)."""

    uri: str
    local: Path

    @property
    def remote(self) -> bool:
        return is_remote(self.uri)

    def uri_of(self, *parts: str) -> str:
        """The URI of a path under the work dir, e.g. `uri_of("tokens", "gpt2")`."""
        return join_uri(self.uri, *parts) if self.remote else str(self.local.joinpath(*parts))


def work_dir(spec: str | Path) -> WorkDir:
    """The work dir of a config's `workdir` value."""
    if is_remote(spec):
        uri = str(spec).rstrip("/")
        return WorkDir(uri, staging_path(uri))
    local = Path(spec).resolve()
    return WorkDir(str(local), local)


def local_path(spec: str | Path) -> Path:
    """The local folder of a path or URI: the path itself, or a remote path's staging copy."""
    return work_dir(spec).local


def _credential_error() -> str | None:
    key, secret = os.environ.get(KEY_ENV), os.environ.get(SECRET_ENV)
    if bool(key) != bool(secret):
        return f"set both {KEY_ENV} and {SECRET_ENV}, or neither"
    if key:
        return None
    import botocore.session

    if botocore.session.get_session().get_credentials() is None:
        return f"no credentials for the object store: set {KEY_ENV} and {SECRET_ENV} (or AWS_ACCESS_KEY_ID ...)"
    return None


def check_work_dir(spec: str | Path) -> None:
    """Refuse a remote work dir that cannot be used (ObjectStoreError naming the setting); a local one passes."""
    if not is_remote(spec):
        return
    bucket, _ = split_uri(str(spec))
    if not bucket:
        raise ObjectStoreError(f"{spec}: no bucket (expected s3://bucket/prefix)")
    problem = _credential_error()
    if problem:
        raise ObjectStoreError(problem)
    endpoint = os.environ.get(ENDPOINT_ENV) or "AWS S3"
    try:
        filesystem().call_s3("head_bucket", Bucket=bucket)
    except FileNotFoundError as e:
        raise ObjectStoreError(f"bucket {bucket} not found at {endpoint} ({ENDPOINT_ENV})") from e
    except PermissionError as e:
        raise ObjectStoreError(f"the object store at {endpoint} refused the credentials for {bucket}: {e}") from e
    except Exception as e:  # botocore's endpoint and connection errors, as s3fs passes them on
        raise ObjectStoreError(f"the object store at {endpoint} ({ENDPOINT_ENV}) does not answer: {e}") from e


def usable_work_dir(value: str | Path) -> str:
    """A config's work dir as a string (a remote one checked: `check_work_dir`), for a pydantic field validator."""
    check_work_dir(str(value))
    return str(value)


def put_file(path: Path, uri: str) -> None:
    """Upload one local file to `uri` (one object: readers see the old one or the new one)."""
    filesystem().put_file(str(path), store_key(uri))


def staged_uri(path: str | Path) -> str | None:
    """The URI of a file in the staging copy of a remote path (None for any other local path)."""
    resolved = Path(os.path.abspath(path))
    root = staging_root()
    if not resolved.is_relative_to(root):
        return None
    return REMOTE_PREFIX + resolved.relative_to(root).as_posix()
