"""`fineforge train pretrain`: bad input gets one clear error line naming the problem, before anything starts."""

from __future__ import annotations

from typer.testing import CliRunner

from fineforge.flows.cli import app
from testkit.shakespeare import write_shakespeare_shards


def test_pretrain_cli_refuses_bad_input(shared_data, tmp_path, monkeypatch):
    monkeypatch.delenv("FINEFORGE_TOKENIZER_DIR", raising=False)
    data = write_shakespeare_shards(shared_data / "corpora" / "tinyshakespeare.txt", tmp_path / "shards",
                                    limit=20_000)  # 2,000 validation tokens: 31 windows of the tiny model's 64
    run = ["--data", str(data), "--run-dir", str(tmp_path / "r")]
    cases = [
        ([*run, "--set", "lr=-1"], "field 'lr': must be > 0"),
        ([*run, "--set", "top_k=many"], "field 'top_k': expected int | None, got 'many'"),
        ([*run, "--set", "lr_max=1"], "unknown fields ['lr_max']"),
        ([*run, "--model", "huge"], "unknown model preset 'huge'"),
        (["--data", str(tmp_path / "none"), "--run-dir", str(tmp_path / "r")], "no manifest.json"),
        (["--run-dir", str(tmp_path / "r")], "--data is required"),
        ([*run, "--nproc-per-node", "0"], "nproc_per_node: Input should be greater than or equal to 1"),
        ([*run, "--retries", "-1"], "retries: Input should be greater than or equal to 0"),
        ([*run, "--torchrun-arg=--nnodes=1:4"], "launcher_args: Value error, --nnodes is set by the fields"),
        ([*run, "--set", "tokenizer=o200k_base"], "fields 'tokenizer'/'tokenizer_dir': o200k_base needs a folder"),
        ([*run, "--set", "micro_batch_size=32"], "val split: no shard holds one micro-step"),
        ([*run, "--set", "tokens_per_step=1000", "-n", "2"], "'tokens_per_step': 1000 is not a multiple of "
                                                             "micro_batch_size x seq_len x world_size = 12 x 64 x 2"),
    ]
    runner = CliRunner()
    for args, message in cases:
        result = runner.invoke(app, ["train", "pretrain", *args])
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.output)
    assert not (tmp_path / "r").exists()  # no run folder, no MLflow store, nothing launched
