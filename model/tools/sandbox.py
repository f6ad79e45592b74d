"""A sandbox for model-written Python: one fresh, isolated, limited process tree per call.

Each call runs the code with the interpreter's own Python (standard library only) in new network, mount,
PID, IPC and UTS namespaces made by util-linux `unshare`: no network (not even loopback), a read-only
minimal root (the Python installation, the shared libraries and four devices; no /etc, /home, /proc or
work dir), a private size-limited /tmp as the only writable place and working directory, an unprivileged
user id of its own, a minimal environment, no inherited file descriptors, and resource limits (CPU time,
address space, file size, processes, open files). The wall-clock and output limits are enforced here:
at either, the whole process tree is killed. `docs/sandbox.md` says what this protects against and what
not. Where namespaces are unavailable (not root, no `unshare`) the sandbox refuses to start unless it is
created with `unsafe=True`: resource limits, a temporary working directory, a clean environment and no
inherited file descriptors only, as the calling user.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

LAUNCHER = Path(__file__).with_name("sandbox_init.py")
NAMESPACES = ("--net", "--mount", "--pid", "--ipc", "--uts")
UNSHARE_ARGS = (*NAMESPACES, "--fork", "--kill-child=SIGKILL", "--propagation", "private")
# Read-only inside the sandbox besides the Python installation (missing ones are skipped).
SYSTEM_PATHS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/etc/ld.so.cache")
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
# -u: output written before a kill is not lost in a buffer; -X utf8: UTF-8 whatever the locale.
PYTHON_ARGS = ("-I", "-u", "-X", "utf8")
SANDBOX_TMP = "/tmp"
READ_CHUNK = 65536

WALL_TIME, CPU_TIME, OUTPUT, MEMORY, PROCESSES, DISK = "wall_time", "cpu_time", "output", "memory", "processes", "disk"
# What the code's stderr says when it met a limit it could observe as an exception.
LIMIT_MARKERS = {
    MEMORY: ("MemoryError",),
    PROCESSES: ("BlockingIOError: [Errno 11]", "can't start new thread"),
    DISK: ("[Errno 27] File too large", "[Errno 28] No space left on device"),
}
EXCEPTION_BEFORE = re.compile(r"\b[A-Za-z_]\w*: $")


class SandboxUnavailable(RuntimeError):
    """Isolation (namespaces) is not available here and the unsafe mode was not asked for."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one call. Memory is the address space of each process; disk is the size of /tmp and of a file."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_bytes: int = 512 * 2**20
    output_bytes: int = 16 * 2**10
    disk_bytes: int = 16 * 2**20
    processes: int = 16
    open_files: int = 64
    uid_range: tuple[int, int] = (1_000_000, 2_000_000)  # each call runs as a random unprivileged uid of these

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name != "uid_range" and not value > 0:
                raise ValueError(f"SandboxLimits.{name} must be > 0, got {value!r}")
        low, high = self.uid_range
        if not 0 < low < high:
            raise ValueError(f"SandboxLimits.uid_range must be (low, high) with 0 < low < high, got {self.uid_range}")


@dataclass(frozen=True)
class SandboxResult:
    """What one call produced. `limit` names the limit that stopped it; `error` is the one line the model sees."""

    stdout: str
    stderr: str
    exit_code: int | None
    limit: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def for_model(self) -> str:
        """The text pasted into the model's context: output, errors, and the one-line verdict."""
        parts = [self.stdout.rstrip("\n")] if self.stdout else []
        if self.stderr:
            parts.append("stderr:\n" + self.stderr.rstrip("\n"))
        if self.error:
            parts.append(f"error: {self.error}")
        return "\n".join(parts) if parts else "(no output)"


@cache
def namespaces_available() -> bool:
    """Whether this process may run the sandbox isolated: root, `unshare` present, and namespaces work."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        return False
    probe = subprocess.run([unshare, *UNSHARE_ARGS, "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        log.warning("namespaces unavailable: %s", probe.stderr.decode(errors="replace").strip())
    return probe.returncode == 0


def python_installation() -> tuple[str, list[str]]:
    """The real interpreter behind sys.executable (not a virtualenv's) and the folders it needs."""
    executable = os.path.realpath(sys.executable)
    prefixes = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}
    if not any(executable.startswith(p + os.sep) for p in prefixes):
        executable = os.path.realpath(getattr(sys, "_base_executable", executable))
    return executable, sorted(prefixes)


def bind_paths(prefixes: list[str]) -> list[str]:
    """The host paths bound read-only: the Python prefixes and the system paths, none inside another."""
    paths = sorted({*prefixes, *SYSTEM_PATHS})
    kept: list[str] = []
    for path in paths:
        if not any(path.startswith(k.rstrip("/") + "/") for k in kept if not os.path.islink(k)):
            kept.append(path)
    return kept


class PythonSandbox:
    """Runs model-written Python, one sandboxed process tree per call; calling it returns the model's text."""

    def __init__(self, limits: SandboxLimits | None = None, unsafe: bool = False) -> None:
        self.limits = limits or SandboxLimits()
        self.isolated = namespaces_available()
        if not self.isolated and not unsafe:
            raise SandboxUnavailable(
                "the Python sandbox needs Linux namespaces (root and util-linux `unshare`); they are not "
                "available here. Run as root, or create the sandbox with unsafe=True to run code with "
                "resource limits only (no filesystem or network isolation).")
        if not self.isolated:
            log.warning("Python sandbox in UNSAFE mode: resource limits only, no filesystem or network isolation")
        self.unshare = shutil.which("unshare")
        self.python, prefixes = python_installation()
        self.binds = bind_paths(prefixes)

    def __call__(self, code: str) -> str:
        """The tool: code in, the text the model sees out (never raises for anything the code does)."""
        return self.run(code).for_model()

    def run(self, code: str) -> SandboxResult:
        """Run `code` once in a fresh sandbox and return what it printed and how it ended."""
        if not isinstance(code, str):
            return SandboxResult("", "", None, error=f"code must be text, got {type(code).__name__}")
        try:
            code.encode("utf-8")
        except UnicodeEncodeError as e:
            return SandboxResult("", "", None, error=f"code is not valid UTF-8 text: {e}")
        mount_point = tempfile.mkdtemp(prefix="fineforge-sandbox-")
        try:
            uid = random.SystemRandom().randrange(*self.limits.uid_range) if self.isolated else None
            return self._run(code, mount_point, uid)
        except OSError as e:  # the sandbox itself failed: a tool error, never a crash of the caller
            log.exception("sandbox failed")
            return SandboxResult("", "", None, error=f"the sandbox failed to start: {e}")
        finally:
            shutil.rmtree(mount_point, ignore_errors=True)

    def _launcher_config(self, code: str, mount_point: str, uid: int | None, status_fd: int) -> dict:
        cwd = SANDBOX_TMP if self.isolated else mount_point
        env = {"PATH": os.path.dirname(self.python), "HOME": cwd, "TMPDIR": cwd, "LANG": "C.UTF-8"}
        return {
            "code": code, "isolate": self.isolated, "root": mount_point, "cwd": cwd, "uid": uid,
            "binds": self.binds, "devices": list(DEVICES), "python": self.python, "python_args": list(PYTHON_ARGS),
            "env": env, "limits": asdict(self.limits), "status_fd": status_fd,
        }

    def _run(self, code: str, mount_point: str, uid: int | None) -> SandboxResult:
        status_read, status_write = os.pipe()
        command = [self.python, "-I", "-S", str(LAUNCHER)]
        if self.isolated:
            command = [self.unshare, *UNSHARE_ARGS, *command]
        payload = json.dumps(self._launcher_config(code, mount_point, uid, status_write)).encode()
        try:
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    pass_fds=(status_write,), close_fds=True, start_new_session=True,
                                    env={"PATH": os.defpath, "LANG": "C.UTF-8"})
        finally:
            os.close(status_write)
        with os.fdopen(status_read, "rb") as status:
            outputs, limit = self._communicate(proc, payload, status)
        stdout, stderr, status_text = (outputs[name].decode("utf-8", errors="replace")
                                       for name in ("stdout", "stderr", "status"))
        ready, failure = "ready" in status_text.split("\n"), status_text.partition("failed: ")[2].strip()
        if failure or (not ready and limit is None):
            reason = failure or last_line(stderr) or f"exit {proc.returncode}"
            log.error("sandbox setup failed: %s", reason)
            return SandboxResult("", "", None, error=f"the sandbox failed to start: {reason}")
        return self._result(stdout, stderr, proc.returncode, limit)

    def _communicate(self, proc: subprocess.Popen, payload: bytes, status) -> tuple[dict[str, bytes], str | None]:
        """Feed stdin, read stdout/stderr/status with the output cap until EOF or the wall-clock deadline."""
        deadline = time.monotonic() + self.limits.wall_seconds
        cap = self.limits.output_bytes
        selector = selectors.DefaultSelector()
        streams = {"stdout": proc.stdout, "stderr": proc.stderr, "status": status}
        for name, stream in streams.items():
            os.set_blocking(stream.fileno(), False)
            selector.register(stream, selectors.EVENT_READ, name)
        os.set_blocking(proc.stdin.fileno(), False)
        selector.register(proc.stdin, selectors.EVENT_WRITE, "stdin")
        outputs = {name: b"" for name in streams}
        limit, exited = None, False
        try:
            while selector.get_map() and limit is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    limit = WALL_TIME
                    break
                for key, _ in selector.select(min(remaining, 0.1)):
                    if key.data == "stdin":
                        payload = write_some(key.fileobj, payload)
                        if not payload:
                            selector.unregister(key.fileobj)
                            key.fileobj.close()
                        continue
                    chunk = os.read(key.fileobj.fileno(), READ_CHUNK)
                    if not chunk:
                        selector.unregister(key.fileobj)
                    outputs[key.data] += chunk
                    if len(outputs[key.data]) > cap and key.data != "status":
                        outputs[key.data] = outputs[key.data][:cap]
                        limit = OUTPUT
                if not exited and has_exited(proc):
                    exited = True
                    kill_tree(proc)  # processes the code left behind (the unsafe mode has no PID namespace)
        finally:
            kill_tree(proc)
            selector.close()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                stream.close()
            proc.wait()
        return outputs, limit

    def _result(self, stdout: str, stderr: str, returncode: int, limit: str | None) -> SandboxResult:
        """Name the limit that stopped the code (if any) and the one-line error the model sees."""
        signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else None
        if limit is None and signum == signal.SIGXCPU:
            limit = CPU_TIME
        last = last_line(stderr)
        if limit is None and returncode != 0:
            limit, last = observed_limit(stderr) or (None, last)
        lim = self.limits
        messages = {
            WALL_TIME: f"wall-clock limit of {lim.wall_seconds:g} s reached: the program and every process it "
                       "started were killed",
            OUTPUT: f"output limit of {lim.output_bytes} bytes reached: the program was killed, its output is cut",
            CPU_TIME: f"CPU time limit of {lim.cpu_seconds} s reached: the program was killed",
            MEMORY: f"memory limit of {lim.memory_bytes // 2**20} MB reached: {last}",
            PROCESSES: f"process limit of {lim.processes} reached: {last}",
            DISK: f"disk limit of {lim.disk_bytes // 2**20} MB reached: {last}",
        }
        if limit is not None:
            error = messages[limit]
        elif signum is not None:
            error = f"killed by {signal.Signals(signum).name}" if signum in signal.valid_signals() else None
            error = error or f"exit status {returncode}: {last}"
        elif returncode != 0:
            error = f"exit status {returncode}: {last}" if last else f"exit status {returncode}"
        else:
            error = None
        return SandboxResult(stdout, stderr, None if limit in (WALL_TIME, OUTPUT) else returncode, limit, error)


def write_some(stream, data: bytes) -> bytes:
    """Write what the pipe takes now; return the rest (nothing if the reader is gone: its stderr says why)."""
    try:
        return data[os.write(stream.fileno(), data[:READ_CHUNK]):]
    except BrokenPipeError:
        return b""


def last_line(text: str) -> str:
    """The last non-empty line (a traceback's exception line)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def observed_limit(stderr: str) -> tuple[str, str] | None:
    """The limit a stderr line names and that line from its exception on, the latest first. Several processes (a
    fork bomb's) write their tracebacks at once, so the line that names the limit is not always the last one, and
    another process's words may run into it (`BlockingIOErrorBlockingIOError: [Errno 11] ...`)."""
    for line in reversed(stderr.splitlines()):
        for name, markers in LIMIT_MARKERS.items():
            found = [line.rfind(marker) for marker in markers if marker in line]
            if found:
                start = max(found)
                exception = EXCEPTION_BEFORE.search(line[:start])  # the marker's own "OSError: ", if any
                return name, line[exception.start() if exception else start :].strip()
    return None


def has_exited(proc: subprocess.Popen) -> bool:
    """Whether the process has exited, without reaping it (its process group id stays reserved to kill)."""
    return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the call's process group (in the isolated mode this also ends the whole PID namespace).

    Called before the process is reaped, so the group id cannot have been reused."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
