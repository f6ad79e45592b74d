"""A stage in a remote work dir (real S3 server on loopback): committed after it runs, skipped from its commit on
another machine (an empty staging copy), published when a run was stopped between its local commit and its
publish, and never committed when it fails."""

import pytest

from fineforge.tasks.common.committed import attempts, read_commit
from fineforge.tasks.common.object_store import STAGING_ENV, work_dir
from fineforge.tasks.common.remote_stage import run_in_work_dir
from fineforge.tasks.common.stage import execute_stage
from tests.tasks.common.test_stage import LinesConfig, LinesStage, text_file  # noqa: F401  (a fixture)


def run(stage: LinesStage, workdir: str):
    return run_in_work_dir(lambda local: execute_stage(stage, local), stage, workdir)


def test_a_stage_is_committed_and_skipped_from_its_commit_elsewhere(s3_workdir, text_file, tmp_path, monkeypatch):  # noqa: F811
    first = run(LinesStage(LinesConfig(min_chars=20), [text_file]), s3_workdir)
    uri = work_dir(s3_workdir).uri_of("dump-1", "lines")
    commit = read_commit(uri)
    assert commit["fingerprint"] == first.fingerprint and commit["statistics"] == first.statistics

    monkeypatch.setenv(STAGING_ENV, str(tmp_path / "another-machine"))
    again = LinesStage(LinesConfig(min_chars=20), [text_file])
    second = run(again, s3_workdir)
    assert second.skipped and not again.runs  # pulled, found complete, not run
    assert second.path.is_relative_to(tmp_path / "another-machine")
    assert attempts(uri) == [commit["attempt"]]  # nothing published again


def test_an_output_committed_locally_but_not_published_is_published(s3_workdir, text_file):  # noqa: F811
    stage = LinesStage(LinesConfig(), [text_file])
    local = execute_stage(stage, work_dir(s3_workdir).local)  # as a run stopped before its publish leaves it
    uri = work_dir(s3_workdir).uri_of("dump-1", "lines")
    assert read_commit(uri) is None
    output = run(LinesStage(LinesConfig(), [text_file]), s3_workdir)
    assert output.skipped and read_commit(uri)["statistics"] == local.statistics


def test_a_failed_stage_commits_nothing(s3_workdir, text_file):  # noqa: F811
    with pytest.raises(RuntimeError, match="failed after writing"):
        run(LinesStage(LinesConfig(fail_after_writing=True), [text_file]), s3_workdir)
    assert read_commit(work_dir(s3_workdir).uri_of("dump-1", "lines")) is None
