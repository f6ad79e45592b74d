"""How every command builds its config: the `--config FILE` JSON, overridden by the options given, validated.

Every check that needs no work lives in the config models themselves, so a command fails exactly as a
Prefect UI run, a schedule or an API call with the same values does: one line naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from fineforge.flows.cli_output import fail, validation_message

Config = TypeVar("Config", bound=BaseModel)


def read_config_file(path: Path | None) -> dict[str, Any]:
    """The JSON config file's values ({} without one)."""
    if path is None:
        return {}
    if not path.is_file():
        fail(f"config file not found: {path}")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        fail(f"config file {path} is not valid JSON: {e}")
    if not isinstance(values, dict):
        fail(f"config file {path} must hold a JSON object")
    return values


def given(value: Any) -> bool:
    """Whether a command-line option was given: not None, and not an empty repeatable option."""
    return value is not None and value != [] and value != ()


def merged_values(values: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with each given override set; a dotted name (`spark.master`) sets a nested value."""
    merged = json.loads(json.dumps(values))  # a deep copy of plain JSON values
    for dotted, value in overrides.items():
        if not given(value):
            continue
        *parents, leaf = dotted.split(".")
        target = merged
        for key in parents:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
        target[leaf] = _plain(value)
    return merged


def _plain(value: Any) -> Any:
    """An option's value as JSON would hold it: paths as strings, sequences as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def command_config(model: type[Config], config_file: Path | None, overrides: Mapping[str, Any]) -> Config:
    """The validated config of a command: `--config FILE`, then the options given; else one error line, exit 2."""
    values = merged_values(read_config_file(config_file), overrides)
    try:
        return model.model_validate(values)
    except ValidationError as e:
        fail(validation_message(e))
