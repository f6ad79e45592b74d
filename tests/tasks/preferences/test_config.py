"""A ranking session's settings: each wrong value is refused naming its field, before anything is sampled."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from fineforge.tasks.preferences.config import RankingConfig
from testkit.checkpoints import tiny_bytes_checkpoint


@pytest.fixture(scope="module")
def values(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("session")
    (folder / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    return {"checkpoint": str(tiny_bytes_checkpoint(folder / "run")), "prompts": str(folder / "prompts.jsonl"),
            "dataset": str(folder / "out" / "rankings.jsonl")}


def test_defaults_and_the_samples_file_next_to_the_dataset(values):
    config = RankingConfig.model_validate(values)
    assert (config.num_completions, config.mode, config.sampling.temperature) == (4, "order", 1.0)
    assert config.samples_path.name == "rankings.samples.jsonl" and config.samples_path.parent.name == "out"
    assert RankingConfig.model_validate(values | {"samples": "s.jsonl"}).samples_path.name == "s.jsonl"


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"prompts": "missing.jsonl"}, "prompts", "prompts file not found: missing.jsonl"),
        ({"checkpoint": "."}, "checkpoint", "no checkpoint found"),
        ({"dataset": "."}, "dataset", "is a folder"),
        ({"num_completions": 1}, "num_completions", "greater than or equal to 2"),
        ({"mode": "best_of"}, "mode", "'order' or 'best_worst'"),
        ({"sampling": {"temperature": 0}}, "sampling.temperature", "greater than 0"),
        ({"max_prompts": 0}, "max_prompts", "greater than or equal to 1"),
        ({"prompt_file": "x"}, "prompt_file", "Extra inputs are not permitted"),
    ],
)
def test_a_wrong_value_is_refused_naming_its_field(values, change, field, reason):
    with pytest.raises(ValidationError) as error:
        RankingConfig.model_validate(values | change)
    [problem] = error.value.errors()
    assert ".".join(map(str, problem["loc"])) == field and reason in problem["msg"]


def test_a_checkpoint_without_a_tokenizer_is_refused(values, tmp_path):
    copy = shutil.copytree(Path(values["checkpoint"]), tmp_path / "run")
    meta_path = next(copy.glob("checkpoints/step_*/meta.json"))
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "tokenizer"}))
    with pytest.raises(ValidationError, match="names no tokenizer"):
        RankingConfig.model_validate(values | {"checkpoint": str(copy)})
