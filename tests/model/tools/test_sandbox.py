"""The Python sandbox: normal use, and each way out a model's code might try, blocked with a clear tool error.

Every test runs real code in a real sandbox (namespaces via util-linux `unshare`, as root on these machines).
"""

from __future__ import annotations

import ast
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from fineforge.model.tools import sandbox as sandbox_module
from fineforge.model.tools.sandbox import (
    CPU_TIME,
    DISK,
    MEMORY,
    OUTPUT,
    PROCESSES,
    WALL_TIME,
    PythonSandbox,
    SandboxLimits,
    SandboxUnavailable,
)

LIMITS = SandboxLimits(wall_seconds=5, cpu_seconds=1, output_bytes=4096, disk_bytes=2**20, processes=8)
FIXED_UID = 1_999_990  # tests that look for leftover processes run the code as a known uid


@pytest.fixture(scope="module")
def sandbox() -> PythonSandbox:
    if not sandbox_module.namespaces_available():
        pytest.fail("these tests need namespaces (root and util-linux unshare), as CI has")
    return PythonSandbox(LIMITS)


def fixed_uid_sandbox(**limits) -> PythonSandbox:
    return PythonSandbox(SandboxLimits(**{**vars(LIMITS), "uid_range": (FIXED_UID, FIXED_UID + 1), **limits}))


def processes_of(uid: int) -> list[int]:
    """Host pids of the processes running as `uid`."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            lines = status.read_text().splitlines()
        except OSError:  # exited while we looked
            continue
        uids = next((line.split()[1:] for line in lines if line.startswith("Uid:")), [])
        if str(uid) in uids:
            pids.append(int(status.parent.name))
    return pids


def processes_after(uid: int, seconds: float = 10) -> list[int]:
    """The processes of `uid` still there after waiting up to `seconds` for them to go (SIGKILL is asynchronous)."""
    deadline = time.monotonic() + seconds
    while (pids := processes_of(uid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


def code(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def test_normal_use_prints_arithmetic_and_counts(sandbox):
    result = sandbox.run(code("""
        print(2**100, 17 * 23)
        print("strawberry".count("r"), len("supercalifragilistic"))
        import math, statistics; print(math.comb(10, 3), statistics.mean([1, 2, 3, 4]))
    """))
    assert result.ok and result.exit_code == 0 and result.limit is None
    assert result.stdout == f"{2**100} 391\n3 20\n120 2.5\n"
    assert sandbox(code('print("strawberry".count("r"))')) == "3"  # the tool as the engine calls it


def test_tmp_is_the_writable_working_directory_and_fresh_each_call(sandbox):
    first = sandbox.run(code("""
        import os
        open("notes.txt", "w").write("hello")
        print(os.getcwd(), open("/tmp/notes.txt").read(), os.environ["HOME"])
    """))
    assert first.stdout == "/tmp hello /tmp\n", first
    second = sandbox.run(code('import os; print(os.listdir("/tmp"))'))
    assert second.stdout == "['main.py']\n", second


def test_environment_secrets_are_not_visible(sandbox, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-test-secret")
    result = sandbox.run(code("""
        import os
        print(sorted(os.environ))
        print(open("/proc/1/environ").read())
    """))
    assert "wJalrXUtnFEMI" not in result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "['HOME', 'LANG', 'PATH', 'TMPDIR']"
    assert result.error == "exit status 1: FileNotFoundError: [Errno 2] No such file or directory: '/proc/1/environ'"


def test_reading_etc_passwd_is_blocked(sandbox):
    assert Path("/etc/passwd").is_file()
    result = sandbox.run('print(open("/etc/passwd").read())\n')
    assert result.stdout == ""
    assert result.error == "exit status 1: FileNotFoundError: [Errno 2] No such file or directory: '/etc/passwd'"
    assert "error: exit status 1: FileNotFoundError" in sandbox.run('open("/etc/passwd")\n').for_model()


def test_work_dir_and_home_are_invisible(sandbox, tmp_path):
    secret = tmp_path / "workdir" / "mlflow.db"
    secret.parent.mkdir()
    secret.write_text("secret")
    result = sandbox.run(f"print(open({str(secret)!r}).read())\n")
    assert result.error == f"exit status 1: FileNotFoundError: [Errno 2] No such file or directory: '{secret}'"
    home = Path.home()
    # The only thing under the home folder a sandbox may see is the path down to the Python installation.
    on_the_way = {Path(p).relative_to(home).parts[0] for p in (sys.base_prefix,) if Path(p).is_relative_to(home)}
    hidden = sorted(p.name for p in home.iterdir() if p.name not in on_the_way)
    assert hidden, "expected something in the home folder to hide"
    seen = sandbox.run(f"import os; print(sorted(os.listdir({str(home)!r})))\n")
    assert seen.ok and not set(hidden) & set(ast.literal_eval(seen.stdout)), seen


def test_writing_outside_tmp_is_blocked(sandbox, tmp_path):
    for target in ("/escape.txt", "/usr/lib/escape.txt", os.path.join(sys.base_prefix, "escape.txt")):
        result = sandbox.run(f"open({target!r}, 'w').write('x')\n")
        assert result.error == f"exit status 1: OSError: [Errno 30] Read-only file system: '{target}'", result
        assert not Path(target).exists()
    outside = tmp_path / "escape.txt"
    result = sandbox.run(f"open({str(outside)!r}, 'w').write('x')\n")
    assert result.error.startswith("exit status 1: FileNotFoundError") and not outside.exists()


def test_network_is_blocked_even_to_localhost(sandbox):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = sandbox.run(f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)\n")
        server.settimeout(0.1)
        with pytest.raises(TimeoutError):
            server.accept()
    assert result.error == "exit status 1: OSError: [Errno 101] Network is unreachable"


def test_fork_bomb_hits_the_process_limit_quickly(sandbox):
    started = time.monotonic()
    result = sandbox.run("import os\nwhile True:\n    os.fork()\n")
    assert result.limit == PROCESSES, result.error
    # The rest of the line may be cut by another process's output (the exact line: the test below).
    assert result.error.startswith("process limit of 8 reached: BlockingIOError: [Errno 11]"), result.error
    assert time.monotonic() - started < LIMITS.wall_seconds


def test_a_limit_named_above_interleaved_tracebacks_is_still_found(sandbox):
    # A fork bomb's processes write their tracebacks at once: the line naming the limit may not come last, and
    # another process's words may run into it (both seen in full test runs).
    result = sandbox.run(code("""
        import sys
        sys.stderr.write("Traceback (most recent call last):\\n  File \\"<string>\\", line 3, in <module>\\n"
                         "BlockingIOErrorBlockingIOError: [Errno 11] Resource temporarily unavailable\\n"
                         "Traceback (most recent call last):\\n: [Errno 11] Resource temporarily unavailable\\n")
        sys.exit(1)
    """))
    assert result.limit == PROCESSES, result.error
    assert result.error == "process limit of 8 reached: BlockingIOError: [Errno 11] Resource temporarily unavailable"


def test_infinite_loop_is_killed(sandbox):
    result = sandbox.run("while True:\n    pass\n")
    # One CPU second; on a loaded machine the wall clock may come first.
    assert result.limit in (CPU_TIME, WALL_TIME), result
    assert "limit of" in result.error and "killed" in result.error


def test_wall_clock_kills_the_whole_process_tree_and_keeps_earlier_output():
    sandbox = fixed_uid_sandbox(wall_seconds=1.5)
    result = sandbox.run(code("""
        import os, time
        if os.fork() == 0:
            os.setsid()  # leaves the process group: the PID namespace still ends it
            time.sleep(60)
        print("started")
        time.sleep(60)
    """))
    assert result.limit == WALL_TIME and result.stdout == "started\n"
    assert result.error == "wall-clock limit of 1.5 s reached: the program and every process it started were killed"
    assert processes_after(FIXED_UID) == []


def test_processes_left_behind_end_with_the_code():
    result = fixed_uid_sandbox().run("import os, time\nif os.fork() == 0:\n    time.sleep(60)\nprint('done')\n")
    assert result.ok and result.stdout == "done\n"
    assert processes_after(FIXED_UID) == []


def test_code_does_not_outlive_a_dead_engine(tmp_path):
    """If the engine dies mid-call, the sandbox's own backstop still ends the code after the wall-clock limit
    and removes its mount point."""
    script = tmp_path / "engine.py"
    script.write_text(code(f"""
        from fineforge.model.tools.sandbox import PythonSandbox, SandboxLimits
        PythonSandbox(SandboxLimits(wall_seconds=1, uid_range=({FIXED_UID}, {FIXED_UID + 1}))).run(
            "import time\\nprint('x', flush=True)\\ntime.sleep(60)\\n")
    """))
    mount_points_before = set(Path(tempfile.gettempdir()).glob("fineforge-sandbox-*"))
    engine = subprocess.Popen([sys.executable, str(script)])
    deadline = time.monotonic() + 30
    while not processes_of(FIXED_UID) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(FIXED_UID), "the sandboxed code did not start"
    engine.send_signal(signal.SIGKILL)
    engine.wait()
    assert processes_after(FIXED_UID) == []
    deadline = time.monotonic() + 10
    while (left := set(Path(tempfile.gettempdir()).glob("fineforge-sandbox-*")) - mount_points_before) and (
            time.monotonic() < deadline):
        time.sleep(0.05)
    assert not left  # the launcher removed its mount point itself


def test_ten_gigabyte_allocation_fails_quickly(sandbox):
    started = time.monotonic()
    result = sandbox.run("data = bytearray(10 * 2**30)\n")
    assert result.limit == MEMORY
    assert result.error == "memory limit of 512 MB reached: MemoryError"
    assert time.monotonic() - started < LIMITS.wall_seconds


def test_hundred_megabytes_of_output_are_cut(sandbox):
    result = sandbox.run("import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 2**20)\n")
    assert result.limit == OUTPUT and result.exit_code is None
    assert result.stdout == "x" * LIMITS.output_bytes
    assert result.error == "output limit of 4096 bytes reached: the program was killed, its output is cut"


def test_disk_is_limited(sandbox):
    result = sandbox.run("open('big.bin', 'wb').write(b'0' * 100 * 2**20)\n")
    # /tmp (1 MB here, main.py included) fills up before the file reaches the 1 MB file-size limit.
    assert result.limit == DISK
    assert result.error == "disk limit of 1 MB reached: OSError: [Errno 28] No space left on device"


def test_open_file_descriptors_are_not_inherited(sandbox, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    fd = os.open(secret, os.O_RDONLY)
    os.set_inheritable(fd, True)
    try:
        result = sandbox.run(code(f"""
            import os
            open_fds = []
            for n in range(1024):
                try:
                    os.fstat(n)
                    open_fds.append(n)
                except OSError:
                    pass
            print(open_fds)
            os.read({fd}, 100)
        """))
    finally:
        os.close(fd)
    assert result.stdout == "[0, 1, 2]\n"  # /dev/null as stdin, the stdout and stderr pipes; nothing else
    assert result.error == "exit status 1: OSError: [Errno 9] Bad file descriptor"


def test_bad_input_is_a_tool_error_not_a_crash(sandbox):
    assert sandbox.run(b"print(1)").error == "code must be text, got bytes"
    assert sandbox.run("print('\ud800')").error.startswith("code is not valid UTF-8 text")
    assert sandbox("def broken(:\n").endswith("SyntaxError: invalid syntax")
    assert sandbox("") == "(no output)"


def test_without_namespaces_it_refuses_unless_unsafe(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no util-linux unshare on the PATH
    sandbox_module.namespaces_available.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable, match="needs Linux namespaces.*unsafe=True"):
            PythonSandbox(LIMITS)
        unsafe = PythonSandbox(LIMITS, unsafe=True)
        assert not unsafe.isolated
        result = unsafe.run("import os\nprint(6 * 7, os.getcwd() != '/tmp')\n")
        assert result.stdout == "42 True\n", result
        assert unsafe.run("while True:\n    pass\n").limit in (CPU_TIME, WALL_TIME)
        assert unsafe.run("bytearray(10 * 2**30)\n").limit == MEMORY
    finally:
        sandbox_module.namespaces_available.cache_clear()
