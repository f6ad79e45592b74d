"""A remote work dir that cannot be used fails the command at once, naming the setting, with nothing written."""

import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.tasks.common.object_store import ENDPOINT_ENV

runner = CliRunner()


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["data", "build", "--input", "{warc}", "--workdir", "s3://no-such-bucket/work"],
         "workdir: Value error, bucket no-such-bucket not found"),
        (["tokens", "build", "--workdir", "{workdir}", "--tokenizer", "bytes"], "no input: pass input, or build"),
        (["tokens", "build", "--input", "{workdir}/local/scrubbed", "--workdir", "{workdir}", "--tokenizer", "bytes"],
         "input: no committed output at s3://"),
        (["train", "pretrain", "--data", "{workdir}/tokens/none", "--run-dir", "{workdir}/runs/r1"],
         "train.data_dir: no committed token shards at s3://"),
    ],
)
def test_an_unusable_remote_work_dir_fails_before_any_work(s3_workdir, shared_data, tmp_path, command, message):
    values = {"warc": str(shared_data / "warc" / "wget-2024-sample-0000.warc.gz"), "workdir": s3_workdir}
    result = runner.invoke(app, [part.format(**values) for part in command])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "staging").exists()  # nothing staged, nothing written


def test_an_object_store_that_does_not_answer_is_named(s3_workdir, monkeypatch):
    monkeypatch.setenv(ENDPOINT_ENV, "http://127.0.0.1:9")
    result = runner.invoke(app, ["tokens", "build", "--workdir", s3_workdir, "--tokenizer", "bytes"])
    assert result.exit_code == 2
    assert "does not answer" in result.output and ENDPOINT_ENV in result.output
