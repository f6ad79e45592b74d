"""The one helper every command builds its config with: `--config FILE`, then the options given."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer

from fineforge.flows.cli_config import command_config, merged_values
from fineforge.tasks.tokens.config import TokenizerTrainingConfig


def test_options_given_override_the_file_and_nest_by_dotted_name():
    values = {"input": "a", "spark": {"master": "spark://x:7077", "ui": True}, "sample_documents": None}
    overrides = {"input": None, "workdir": Path("w"), "spark.master": "local[2]", "filters.language.languages": ["de"],
                 "sample_documents.fraction": 0.1, "limit": [], "mlflow": False}
    assert merged_values(values, overrides) == {
        "input": "a", "workdir": "w", "spark": {"master": "local[2]", "ui": True},
        "filters": {"language": {"languages": ["de"]}}, "sample_documents": {"fraction": 0.1}, "mlflow": False,
    }
    assert values["spark"]["master"] == "spark://x:7077"  # the file's values are not changed


def test_a_command_config_is_validated_with_one_error_line(tmp_path, capsys):
    (tmp_path / "corpus").mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["a document"]}), tmp_path / "corpus" / "part-0.parquet")
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"input": [str(tmp_path / "corpus")], "output": "bpe.json", "vocab_size": 100}))
    trained = command_config(TokenizerTrainingConfig, config, {"vocab_size": 1000, "seed": None})
    assert (trained.vocab_size, trained.seed, trained.output) == (1000, 0, "bpe.json")

    with pytest.raises(typer.Exit) as exit_:
        command_config(TokenizerTrainingConfig, config, {})  # 100 is too small a vocabulary
    assert exit_.value.exit_code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: invalid config: vocab_size: Input should be greater than or equal to")
    assert len(error.splitlines()) == 1

    config.write_text("{not json")
    with pytest.raises(typer.Exit):
        command_config(TokenizerTrainingConfig, config, {})
    assert "is not valid JSON" in capsys.readouterr().err
