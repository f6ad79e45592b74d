"""The commit protocol of outputs in an object store, against a real S3 server on loopback (moto's server mode)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fineforge.tasks.common.committed import (
    ATTEMPT_PREFIX,
    COMMIT_FILE,
    PULLED_FILE,
    attempts,
    committed_children,
    publish,
    pull,
    read_commit,
)
from fineforge.tasks.common.object_store import (
    ENDPOINT_ENV,
    KEY_ENV,
    SECRET_ENV,
    ObjectStoreError,
    check_work_dir,
    split_uri,
)


def make_output(folder: Path, files: int, content: str = "x") -> Path:
    for index in range(files):
        path = folder / ("parts" if index % 2 else "") / f"part-{index:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{content} {index}\n" * 10)
    (folder / "stats.json").write_text(json.dumps({"documents_out": files}))
    return folder


def tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != PULLED_FILE}


def test_publish_then_pull_gives_the_same_files_and_mtimes(s3_workdir, s3_server, tmp_path):
    output = make_output(tmp_path / "out", 5)
    uri = f"{s3_workdir}/dump/filtered"
    commit = publish(output, uri, "fp1", {"documents_out": 5})

    bucket, prefix = split_uri(uri)
    keys = s3_server.keys(bucket, prefix)
    assert f"{prefix}/{COMMIT_FILE}" in keys
    assert sorted(k for k in keys if k != f"{prefix}/{COMMIT_FILE}") == sorted(
        f"{prefix}/{ATTEMPT_PREFIX}{commit['attempt']}/{name}" for name in tree(output))
    assert read_commit(uri)["fingerprint"] == "fp1"

    copy = tmp_path / "copy"
    assert pull(uri, copy)["attempt"] == commit["attempt"]
    assert tree(copy) == tree(output)  # bytes and mtimes: the identity of a pulled file is stable
    before = {p: p.stat().st_ino for p in copy.rglob("*")}
    pull(uri, copy)  # an unchanged commit: nothing downloaded again
    assert {p: p.stat().st_ino for p in copy.rglob("*")} == before
    assert committed_children(s3_workdir, "*/filtered") == [uri]


def start_killed_publish(output: Path, uri: str, env: dict) -> subprocess.Popen:
    code = ("import sys; from pathlib import Path; from fineforge.tasks.common.committed import publish; "
            "publish(Path(sys.argv[1]), sys.argv[2], 'killed', {})")
    return subprocess.Popen([sys.executable, "-c", code, str(output), uri], env={**os.environ, **env})


def kill_after_first_upload(process: subprocess.Popen, uri: str) -> None:
    """SIGKILL the publishing process as soon as its attempt holds a file."""
    before = set(attempts(uri))
    deadline = time.monotonic() + 120
    while not set(attempts(uri)) - before:
        assert process.poll() is None, "the publish ended before it was killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_a_killed_attempt_is_never_read_and_is_removed_by_the_next_publish(s3_workdir, s3_server, tmp_path):
    uri = f"{s3_workdir}/dump/scrubbed"
    first = make_output(tmp_path / "first", 3, "first")
    committed = publish(first, uri, "fp1", {})

    killed = start_killed_publish(make_output(tmp_path / "big", 400, "killed"), uri, s3_server.env(tmp_path / "s"))
    kill_after_first_upload(killed, uri)
    stale = [a for a in attempts(uri) if a != committed["attempt"]]
    assert len(stale) == 1  # the killed run left a partial attempt ...
    assert read_commit(uri)["attempt"] == committed["attempt"]  # ... which no reader sees
    copy = tmp_path / "copy"
    pull(uri, copy)
    assert tree(copy) == tree(first)

    second = make_output(tmp_path / "second", 2, "second")
    new = publish(second, uri, "fp2", {})
    assert attempts(uri) == [new["attempt"]]  # the stale attempt and the replaced one are gone
    pull(uri, copy)
    assert tree(copy) == tree(second)


def test_a_killed_first_attempt_leaves_no_output(s3_workdir, s3_server, tmp_path):
    uri = f"{s3_workdir}/dump/filtered"
    killed = start_killed_publish(make_output(tmp_path / "big", 400), uri, s3_server.env(tmp_path / "s"))
    kill_after_first_upload(killed, uri)
    assert read_commit(uri) is None
    assert pull(uri, tmp_path / "copy") is None and not (tmp_path / "copy").exists()
    assert committed_children(s3_workdir, "*/filtered") == []


def test_an_unusable_store_is_refused_naming_the_setting(s3_workdir, s3_server, monkeypatch, tmp_path):
    check_work_dir(s3_workdir)
    with pytest.raises(ObjectStoreError, match="bucket no-such-bucket not found"):
        check_work_dir("s3://no-such-bucket/work")
    monkeypatch.setenv(ENDPOINT_ENV, "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(ObjectStoreError, match=f"does not answer.*{ENDPOINT_ENV}|{ENDPOINT_ENV}.*does not answer"):
        check_work_dir(s3_workdir)
    monkeypatch.setenv(ENDPOINT_ENV, s3_server.endpoint)
    monkeypatch.delenv(SECRET_ENV)
    with pytest.raises(ObjectStoreError, match=f"{KEY_ENV} and {SECRET_ENV}"):
        check_work_dir(s3_workdir)
    monkeypatch.delenv(KEY_ENV)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ObjectStoreError, match="no credentials"):
        check_work_dir(s3_workdir)
