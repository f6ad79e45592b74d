"""A real `prefect server start` on a free loopback port, for tests that need Prefect's API (pausing a flow run
for input, deployments served by a runner)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
STARTUP_SECONDS = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], T], seconds: float, what: str, interval: float = 0.5) -> T:
    """The first truthy result of `check`; an AssertionError naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """Run a Prefect server with its own home (SQLite there, analytics off) until the block ends; yields its API
    URL. Fails with the end of the server's log when it does not come up."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).with_name("prefect")
    with open(home / "server.log", "wb") as log:
        server = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_until(lambda: healthy(url) or server.poll() is not None, STARTUP_SECONDS, "the Prefect server", 1)
        assert server.poll() is None, (home / "server.log").read_text()[-3000:]
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)
