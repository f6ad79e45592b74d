"""Validation of the stdlib-dataclass configs of `model/` (every training stage's config uses it).

`config_from_dict` / `load_config` turn JSON values into a config: unknown fields, missing required
fields and values of the wrong type are a `ConfigError` whose message names the field. Range checks are
declared next to each config, in its `check_ranges()` method, with `require`. A config's label in the
messages comes from its class name: `PretrainConfig` -> "pretrain".
"""

from __future__ import annotations

import json
import types
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

MAX_CONFIG_BYTES = 1 << 20  # a config file is a few hundred bytes; refuse anything absurd before parsing

C = TypeVar("C")


class ConfigError(ValueError):
    """A config that cannot run; the message names the field."""


def config_label(config: Any) -> str:
    """"pretrain" for a PretrainConfig (class or instance): how messages name the config."""
    cls = config if isinstance(config, type) else type(config)
    return cls.__name__.removesuffix("Config").lower() or cls.__name__


def require(ok: bool, config: Any, name: str, message: str) -> None:
    """Raise a ConfigError naming `config`'s field `name` (and its value) unless `ok`."""
    if not ok:
        value = getattr(config, name, None)
        raise ConfigError(f"{config_label(config)} config field {name!r}: {message}, got {value!r}")


def matches(value: Any, annotation: Any) -> bool:
    """Whether a JSON-like value fits a type annotation: unions, Optional, list[...], dict[str, ...], Any.

    A bool is not an int here, while an int is a float (JSON writes 1.0 as 1).
    """
    origin = get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(matches(value, arg) for arg in get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is list:
        (item,) = get_args(annotation) or (Any,)
        return isinstance(value, list) and all(matches(v, item) for v in value)
    if origin is dict:
        key, item = get_args(annotation) or (str, Any)
        return isinstance(value, dict) and all(matches(k, key) and matches(v, item) for k, v in value.items())
    if isinstance(value, bool):
        return annotation is bool
    if annotation is float:
        return isinstance(value, int | float)
    return isinstance(value, annotation)


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def check_types(config: Any) -> None:
    """Every field's value fits its annotation; else a ConfigError naming the first field that does not."""
    hints = get_type_hints(type(config))
    for f in fields(config):
        value = getattr(config, f.name)
        require(matches(value, hints[f.name]), config, f.name, f"expected {_type_name(hints[f.name])}")


def validate(config: Any) -> None:
    """Types of every field, then the config's own range checks (`check_ranges`, when it declares them)."""
    check_types(config)
    check_ranges = getattr(config, "check_ranges", None)
    if check_ranges is not None:
        check_ranges()


def config_from_dict(cls: type[C], raw: Any, source: str = "") -> C:
    """Build and validate a config from JSON values; unknown or missing fields are errors naming them."""
    where = f" {source}" if source else ""
    label = config_label(cls)
    if not is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(raw, dict):
        raise ConfigError(f"{label} config{where}: expected a JSON object, got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{label} config{where}: unknown fields {unknown}")
    missing = sorted(
        name for name, f in known.items()
        if name not in raw and f.default is MISSING and f.default_factory is MISSING
    )  # fmt: skip
    if missing:
        raise ConfigError(f"{label} config{where}: missing required fields {missing}")
    config = cls(**raw)
    validate(config)
    return config


def load_config(cls: type[C], path: str | Path) -> C:
    """Read a JSON config file (size-limited) and validate it as `cls`."""
    label = config_label(cls)
    try:
        size = Path(path).stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{label} config {path}: {size} bytes, more than a config can be ({MAX_CONFIG_BYTES})")
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {label} config {path}: {exc}") from exc
    return config_from_dict(cls, raw, str(path))
