"""`fineforge train pretrain`: bad input gets one clear error line naming the problem, before any work."""

from __future__ import annotations

from typer.testing import CliRunner

from fineforge.flows.cli import app
from testkit.shakespeare import write_shakespeare_shards


def test_pretrain_cli_refuses_bad_input(shared_data, tmp_path):
    data = write_shakespeare_shards(shared_data / "corpora" / "tinyshakespeare.txt", tmp_path / "shards",
                                    limit=20_000)
    runner = CliRunner()
    cases = [
        (["--data", str(data), "--run-dir", str(tmp_path / "r"), "--set", "lr=-1"], "field 'lr': must be > 0"),
        (["--data", str(data), "--run-dir", str(tmp_path / "r"), "--set", "top_k=many"], "field 'top_k'"),
        (["--data", str(data), "--run-dir", str(tmp_path / "r"), "--set", "lr_max=1"], "unknown trainer fields"),
        (["--data", str(data), "--run-dir", str(tmp_path / "r"), "--model", "huge"], "unknown model preset 'huge'"),
        (["--data", str(tmp_path / "none"), "--run-dir", str(tmp_path / "r")], "no manifest.json"),
        (["--run-dir", str(tmp_path / "r")], "--data is required"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["train", "pretrain", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)
    assert not (tmp_path / "r").exists()
