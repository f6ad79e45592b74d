"""A loopback HTTP file server that injects faults: error statuses with Retry-After, connection resets in the
middle of a body, and stalls. It honours `Range: bytes=N-` (206 + Content-Range) and serves S3 paths
(`/<bucket>/<key>`) too, so botocore's GetObject reads from it. Runs in a thread; a context manager.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOOPBACK = "127.0.0.1"
RESET_AFTER_S = 0.2


@dataclass(frozen=True)
class Fault:
    """What one response does instead of serving cleanly.

    kind: "status" (answer `status`, with `retry_after` as the Retry-After header when given),
    "reset" (send `after_bytes` bytes of the body, then reset the connection), or
    "stall" (send `after_bytes` bytes, then go silent for the server's `stall_s`).
    """

    kind: str
    status: int = 503
    retry_after: str | None = None
    after_bytes: int = 0


@dataclass(frozen=True)
class Request:
    """A request the server received: when, which path, from which byte, with which Authorization header."""

    at: float
    path: str
    start: int
    authorization: str


class FaultyFileServer:
    """Serves `files` ({path: bytes}); the n-th request gets the n-th of `faults`, later ones are served cleanly."""

    def __init__(self, files: dict[str, bytes], faults: list[Fault] | None = None, stall_s: float = 2.0):
        self.files = files
        self.faults = deque(faults or [])
        self.stall_s = stall_s
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}{path}"

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def __enter__(self) -> FaultyFileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _next(self, request: Request) -> Fault | None:
        with self._lock:
            self.requests.append(request)
            return self.faults.popleft() if self.faults else None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                requested = self.headers.get("Range", "bytes=0-")
                start = int(requested.removeprefix("bytes=").split("-", 1)[0] or 0)
                fault = server._next(Request(time.monotonic(), path, start, self.headers.get("Authorization", "")))
                data = server.files.get(path)
                if data is None:
                    self._empty(404)
                elif fault is not None and fault.kind == "status":
                    self._empty(fault.status, {"Retry-After": fault.retry_after} if fault.retry_after else {})
                elif start >= len(data) and data:
                    self._empty(416, {"Content-Range": f"bytes */{len(data)}"})
                else:
                    self._body(data, start, fault)

            def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _body(self, data: bytes, start: int, fault: Fault | None) -> None:
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if fault is None:
                    self.wfile.write(data[start:])
                    return
                self.wfile.write(data[start : start + fault.after_bytes])
                self.wfile.flush()
                # a stall goes silent; a reset first lets the client take what was sent (a reset drops unread data)
                time.sleep(server.stall_s if fault.kind == "stall" else RESET_AFTER_S)
                # SO_LINGER 0: close sends a TCP reset, as a dropped connection does
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

        return Handler
