"""PID 1 of a sandbox: builds the minimal root, then runs the model's code in a child as an unprivileged user.

Run by `sandbox.py` as `python -I -S sandbox_init.py`, inside fresh namespaces made by util-linux
`unshare` (network, mount, PID, IPC, UTS), or directly in the unsafe mode without them. It reads its
settings as JSON on stdin and reports on the status file descriptor: "ready" just before the model's
code starts, or "failed: <reason>" when the sandbox could not be set up. It exits with the code's exit
status, or 128 + the signal that killed it; when it exits, the kernel kills every process left in the
PID namespace. Standard library only, and nothing from fineforge: it must start before anything else.
"""

import ctypes
import json
import math
import os
import resource
import shutil
import signal
import sys

# <sys/mount.h>
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
MNT_DETACH = 2  # <sys/mount.h> umount2 flag
PR_SET_NO_NEW_PRIVS = 38
WALL_MARGIN_SECONDS = 1  # the parent kills at the wall-clock limit; this is the backstop if the parent died
SETUP_FAILED = 125  # exit status when the sandbox could not be set up (the status pipe says why)
CODE_FILE = "main.py"
SANDBOX_TMP = "/tmp"  # the only writable place inside the minimal root; also the working directory
ROOT_SIZE = "1m"  # the minimal root is a read-only tmpfs of mount points

_libc = ctypes.CDLL(None, use_errno=True)


def _c_string(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _libc.mount(*map(_c_string, (source, target, fstype)), flags, _c_string(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or fstype} on {target}: {os.strerror(err)}")


def _mount_point(root: str, path: str, is_dir: bool) -> str:
    """Create `path` (a host path) inside `root` as an empty directory or file; return the inside path."""
    inside = root + path
    os.makedirs(inside if is_dir else os.path.dirname(inside), mode=0o755, exist_ok=True)
    if not is_dir:
        open(inside, "a").close()
    return inside


def _bind(root: str, path: str, flags: int) -> None:
    """Bind the host `path` at the same place in `root` and remount it with `flags` (read-only...)."""
    if os.path.islink(path):  # e.g. /lib -> usr/lib on merged-/usr systems: same link, target bound separately
        os.makedirs(os.path.dirname(root + path), exist_ok=True)
        os.symlink(os.readlink(path), root + path)
        return
    inside = _mount_point(root, path, os.path.isdir(path))
    _mount(path, inside, None, MS_BIND)
    _mount(None, inside, None, MS_REMOUNT | MS_BIND | flags)


def build_root(config: dict) -> str:
    """A minimal root at config["root"]: read-only binds, devices, a private size-limited /tmp with the code."""
    root, uid = config["root"], config["uid"]
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, f"size={ROOT_SIZE},mode=0755")
    for path in config["binds"]:
        if os.path.lexists(path):
            _bind(root, path, MS_RDONLY | MS_NOSUID | MS_NODEV)
    for device in config["devices"]:
        _bind(root, device, MS_NOSUID | MS_NOEXEC)
    tmp = _mount_point(root, SANDBOX_TMP, True)
    _mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={config['limits']['disk_bytes']},mode=0700,uid={uid},gid={uid}")
    _write_code(tmp, config["code"], uid)
    _mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    return root


def _write_code(directory: str, code: str, uid: int | None) -> None:
    path = os.path.join(directory, CODE_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(code)
    if uid is not None:
        os.chown(path, uid, uid)


def _set_limits(limits: dict) -> None:
    cpu = limits["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL a second later
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["disk_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_code(config: dict, root: str | None, status_fd: int) -> None:
    """The child: enter the root, limit, drop privileges, and exec Python on the code (never returns)."""
    if root is not None:
        os.chroot(root)
    os.chdir(config["cwd"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    _set_limits(config["limits"])
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    uid = config["uid"]
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    os.write(status_fd, b"ready\n")
    os.execve(config["python"], [config["python"], *config["python_args"], CODE_FILE], config["env"])


def remove_mount_point(config: dict) -> None:
    """Leave nothing on the host, even if the parent died: the mount point (or the unsafe mode's directory)."""
    try:
        if config["isolate"]:
            _libc.umount2(config["root"].encode(), MNT_DETACH)
            os.rmdir(config["root"])
        else:
            shutil.rmtree(config["root"])
    except OSError:
        pass  # the parent removes it too


def _fail(status_fd: int, error: BaseException) -> None:
    os.write(status_fd, f"failed: {type(error).__name__}: {error}\n".encode())
    os._exit(SETUP_FAILED)


def main() -> None:
    config = json.loads(sys.stdin.buffer.read())
    status_fd = config["status_fd"]
    os.set_inheritable(status_fd, False)  # closed by the exec of the code
    try:
        if config["isolate"]:
            root = build_root(config)
        else:
            root = None
            _write_code(config["cwd"], config["code"], config["uid"])
        child = os.fork()
    except Exception as e:  # noqa: BLE001 - every setup error goes back to the parent as one line
        _fail(status_fd, e)
    if child == 0:
        try:
            run_code(config, root, status_fd)
        except BaseException as e:  # noqa: BLE001
            _fail(status_fd, e)
    os.close(status_fd)
    signal.signal(signal.SIGALRM, lambda *_: os.kill(child, signal.SIGKILL))
    signal.alarm(math.ceil(config["limits"]["wall_seconds"]) + WALL_MARGIN_SECONDS)
    _, status = os.waitpid(child, 0)
    remove_mount_point(config)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
