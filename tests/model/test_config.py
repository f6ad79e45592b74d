"""Generic validation of the stdlib-dataclass configs: every error names the field."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from fineforge.model.config import ConfigError, config_from_dict, load_config, require
from fineforge.model.pretrain import PretrainConfig


@dataclass(kw_only=True)
class ExampleConfig:
    path: str
    steps: int = 10
    rate: float = 0.5
    limit: int | None = None
    names: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    flag: bool = False

    def check_ranges(self) -> None:
        require(self.steps > 0, self, "steps", "must be > 0")


def test_valid_values_of_every_kind_pass():
    config = config_from_dict(ExampleConfig, {"path": "p", "steps": 3, "rate": 1, "limit": None, "names": ["a"],
                                              "weights": {"a": 0.5, "b": 2}, "extra": {"k": [1, "x"]}, "flag": True})
    assert config.rate == 1 and config.weights == {"a": 0.5, "b": 2}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"steps": "3"}, "example config field 'steps': expected int, got '3'"),
        ({"steps": True}, "field 'steps': expected int, got True"),  # a bool is not a number here
        ({"steps": 2.5}, "field 'steps': expected int, got 2.5"),
        ({"rate": "fast"}, "field 'rate': expected float, got 'fast'"),
        ({"limit": "none"}, "field 'limit': expected int | None, got 'none'"),
        ({"names": ["a", 1]}, "field 'names': expected list[str], got ['a', 1]"),
        ({"names": "a"}, "field 'names': expected list[str]"),
        ({"weights": {"a": "heavy"}}, "field 'weights': expected dict[str, float]"),
        ({"flag": 1}, "field 'flag': expected bool, got 1"),
        ({"steps": 0}, "example config field 'steps': must be > 0, got 0"),
    ],
)
def test_a_bad_value_names_its_field(values, message):
    with pytest.raises(ConfigError) as error:
        config_from_dict(ExampleConfig, {"path": "p", **values})
    assert message in str(error.value)


def test_unknown_and_missing_fields_are_named():
    with pytest.raises(ConfigError, match=r"example config: unknown fields \['stepz'\]"):
        config_from_dict(ExampleConfig, {"path": "p", "stepz": 3})
    with pytest.raises(ConfigError, match=r"example config: missing required fields \['path'\]"):
        config_from_dict(ExampleConfig, {"steps": 3})
    with pytest.raises(ConfigError, match="expected a JSON object, got list"):
        config_from_dict(ExampleConfig, [1, 2])


def test_config_files(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"data_dir": "d", "run_dir": "r", "lr": 3e-4, "model_overrides": {"n_layer": 2}}))
    config = load_config(PretrainConfig, good)
    assert config.lr == 3e-4 and config.max_steps == 2000 and config.experiment == "pretrain"
    broken = tmp_path / "broken.json"
    broken.write_text('{"data_dir": ')
    with pytest.raises(ConfigError, match="cannot read pretrain config .*broken.json"):
        load_config(PretrainConfig, broken)
    with pytest.raises(ConfigError, match="cannot read pretrain config .*absent.json"):
        load_config(PretrainConfig, tmp_path / "absent.json")
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"data_dir": "d", "run_dir": "r", "sample_prompts": ["x" * (1 << 20)]}))
    with pytest.raises(ConfigError, match="more than a config can be"):
        load_config(PretrainConfig, huge)


def test_stage_fields_and_shared_fields_are_both_checked():
    with pytest.raises(ConfigError, match="pretrain config field 'min_lr': must be in \\[0, lr=0.001\\]"):
        config_from_dict(PretrainConfig, {"data_dir": "d", "run_dir": "r", "min_lr": 0.1})  # a trainer field
    with pytest.raises(ConfigError, match="pretrain config field 'eval_batches': must be > 0"):
        config_from_dict(PretrainConfig, {"data_dir": "d", "run_dir": "r", "eval_batches": 0})  # a stage field
    with pytest.raises(ConfigError, match="'model_overrides': .*'n_layer': expected int, got '2'"):
        config_from_dict(PretrainConfig, {"data_dir": "d", "run_dir": "r", "model_overrides": {"n_layer": "2"}})
