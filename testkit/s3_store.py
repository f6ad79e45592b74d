"""An S3 store on loopback for tests and benchmarks: moto's server mode (`python -m moto.server`) as a process.

    with s3_store() as store:
        store.make_bucket("work")
        env = store.env(staging_dir)     # FINEFORGE_S3_* and FINEFORGE_STAGING_DIR: a work dir s3://work/...

Its state is in memory and ends with the process; it accepts any credentials.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fineforge.tasks.common.object_store import ENDPOINT_ENV, KEY_ENV, SECRET_ENV, STAGING_ENV

START_TIMEOUT_S = 60
KEY, SECRET = "fineforge-test", "fineforge-test-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with status {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"moto_server did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S} s")


@dataclass(frozen=True)
class S3Store:
    """A running S3 server: its endpoint URL and the credentials to use."""

    endpoint: str
    key: str = KEY
    secret: str = SECRET

    def env(self, staging: Path) -> dict[str, str]:
        """The environment of a fineforge process whose work dir is in this store, staged under `staging`."""
        return {ENDPOINT_ENV: self.endpoint, KEY_ENV: self.key, SECRET_ENV: self.secret, STAGING_ENV: str(staging)}

    def client(self):
        """A botocore S3 client of this store (to create buckets, list and read objects in tests)."""
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3", region_name="us-east-1", endpoint_url=self.endpoint, aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
        )  # fmt: skip

    def make_bucket(self, name: str) -> str:
        """Create the bucket `name`; return `s3://name`."""
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key of `bucket` under `prefix`."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@contextmanager
def s3_store() -> Iterator[S3Store]:
    """Start moto's S3 server on a free loopback port; stop it on leaving."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "MOTO_CALL_RESET_API": "false"},
    )  # fmt: skip
    try:
        _wait_for(port, process)
        yield S3Store(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
