"""An S3-protocol server on 127.0.0.1 for tests: moto's server mode (`python -m moto.server`) as a process.

    with s3_store(log_dir) as store:
        store.make_bucket("fineforge")
        env = store.mlflow_env()     # what an MLflow server needs to keep its artifacts in the store

Its state is in memory and ends with the process; it accepts any credentials. (The same interface as branch
objstore's `testkit/s3_store.py`, less its work-dir environment: once both are on main, one module serves both.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testkit.prefect_server import free_port, wait_until
from testkit.services import listening

START_TIMEOUT_S = 60
REGION = "us-east-1"
KEY, SECRET = "fineforge-test", "fineforge-test-secret"


@dataclass(frozen=True)
class S3Store:
    """A running S3 server: its endpoint URL and the credentials to use."""

    endpoint: str
    key: str = KEY
    secret: str = SECRET

    def mlflow_env(self) -> dict[str, str]:
        """The environment of an MLflow server whose `--artifacts-destination` is in this store."""
        return {"MLFLOW_S3_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.key,
                "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_DEFAULT_REGION": REGION}

    def client(self):
        """A botocore S3 client of this store (to create buckets, list and read objects in tests)."""
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3", region_name=REGION, endpoint_url=self.endpoint, aws_access_key_id=self.key,
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
def s3_store(log_dir: Path) -> Iterator[S3Store]:
    """Start moto's S3 server on a free loopback port (its log in `log_dir`); stop it on leaving."""
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log_dir / "moto.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "MOTO_CALL_RESET_API": "false"})
    try:
        wait_until(lambda: listening(endpoint) or process.poll() is not None, START_TIMEOUT_S, "moto's S3 server")
        assert process.poll() is None, (log_dir / "moto.log").read_text()[-3000:]
        yield S3Store(endpoint)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
