"""Drive a command in a real pseudo-terminal, as a person at a keyboard would (stdlib `pty`).

The child gets the terminal as its controlling tty, so Ctrl-C (`interrupt()`) reaches it as SIGINT from
the line discipline, exactly as from a keyboard.

    with PtySession([fineforge, "chat", "-c", ckpt]) as term:
        term.expect("you> ")
        term.send("hello")
        term.interrupt()
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import time
from collections.abc import Sequence

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]")
CTRL_C, CTRL_D = b"\x03", b"\x04"


class PtySession:
    """A child process on a pseudo-terminal; `expect` reads its output (ANSI styles removed) up to a text."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec the command on the terminal
            try:
                # with Ctrl-C's default action, as a shell at a keyboard starts it (a test run started in the
                # background, e.g. `pytest &`, has SIGINT ignored, and an ignored signal stays ignored past exec)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                if cwd:
                    os.chdir(cwd)
                os.execvpe(argv[0], list(argv), env if env is not None else os.environ.copy())
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = ""  # everything read so far, styles removed
        self.seen = 0  # how much of `output` earlier expects consumed
        self.status: int | None = None

    def _read(self, timeout: float) -> bool:
        """Read what is there within `timeout`; False at end of output."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not data:
            return False
        self.output += ANSI.sub("", data.decode("utf-8", errors="replace").replace("\r\n", "\n"))
        return True

    def expect(self, text: str, timeout: float = 120.0) -> str:
        """Wait for `text` after what earlier expects consumed; return the output up to and including it."""
        deadline = time.monotonic() + timeout
        while self.output.find(text, self.seen) < 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(min(remaining, 0.5)):
                raise AssertionError(f"{text!r} not seen within {timeout} s; output since the last match:\n"
                                     f"{self.output[self.seen:]}")
        end = self.output.find(text, self.seen) + len(text)
        before, self.seen = self.output[self.seen : end], end
        return before

    def read_more(self, count: int, timeout: float = 120.0) -> str:
        """Wait for `count` more characters of output; return (and consume) what came."""
        deadline = time.monotonic() + timeout
        while len(self.output) - self.seen < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(min(remaining, 0.5)):
                raise AssertionError(f"{count} more characters not seen within {timeout} s; output since the last "
                                     f"match:\n{self.output[self.seen:]}")
        came, self.seen = self.output[self.seen :], len(self.output)
        return came

    def send(self, line: str) -> None:
        """Type a line and press Enter."""
        os.write(self.fd, line.encode() + b"\r")

    def interrupt(self) -> None:
        """Press Ctrl-C."""
        os.write(self.fd, CTRL_C)

    def interrupt_until(self, text: str, timeout: float = 120.0, every: float = 10.0) -> str:
        """Press Ctrl-C at a prompt until `text` appears; return the output up to it. A Ctrl-C that lands between
        the prompt's print and the read's wait for a key is only acted on at the next key (Python checks its
        signal flag when the wait is interrupted): a person never presses it that fast, a loaded test may."""
        deadline = time.monotonic() + timeout
        while True:
            self.interrupt()
            try:
                return self.expect(text, timeout=min(every, max(deadline - time.monotonic(), 0.1)))
            except AssertionError:
                if time.monotonic() >= deadline:
                    raise

    def wait(self, timeout: float = 60.0) -> int:
        """Read to the end and return the exit status (a negative signal number when killed)."""
        deadline = time.monotonic() + timeout
        while self.status is None and time.monotonic() < deadline:
            self._read(0.2)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        if self.status is None:
            raise AssertionError(f"the process did not exit within {timeout} s; output:\n{self.output[self.seen:]}")
        return self.status

    def close(self) -> None:
        """Kill the child if it is still running, and close the terminal."""
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                self.status = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            except ProcessLookupError:
                pass
        os.close(self.fd)

    def __enter__(self) -> PtySession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
