"""An S3 store on loopback for tests and benchmarks: moto's server mode (`python -m moto.server`) as a process.

    with s3_store(log_dir) as store:
        store.make_bucket("work")
        env = store.env(staging_dir)   # FINEFORGE_S3_* and FINEFORGE_STAGING_DIR: a work dir s3://work/...
        env = store.mlflow_env()       # what an MLflow server needs to keep its artifacts in the store

Its state is in memory and ends with the process; it accepts any credentials.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fineforge.tasks.common.object_store import ENDPOINT_ENV, KEY_ENV, SECRET_ENV, STAGING_ENV
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

    def env(self, staging: Path) -> dict[str, str]:
        """The environment of a fineforge process whose work dir is in this store, staged under `staging`."""
        return {ENDPOINT_ENV: self.endpoint, KEY_ENV: self.key, SECRET_ENV: self.secret, STAGING_ENV: str(staging)}

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
