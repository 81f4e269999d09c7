"""Typed configuration bases. The library never reads argv or the environment itself."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from recforge.errors import ConfigError

Task = Literal["topn", "rating"]


class ModelConfig(BaseModel):
    """Base of every model's config: settings only, validated, no unknown keys.

    `task` says what the model is trained for: ``topn`` (implicit feedback, ranking) or
    ``rating`` (explicit ratings, rating prediction). `seed` makes training repeatable.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    task: Task = "topn"
    seed: int = 42


def describe_validation_error(exc: ValidationError) -> str:
    """Pydantic's report as one line: ``field: problem; other.field: problem``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
    )


def parse_config(cls: type[ModelConfig], values: dict[str, Any]) -> ModelConfig:
    """Validate `values` into `cls`, turning pydantic's report into one ConfigError line."""
    try:
        return cls(**values)
    except ValidationError as exc:
        raise ConfigError(f"invalid {cls.__name__}: {describe_validation_error(exc)}") from None


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file holding a mapping (an empty file is an empty mapping); one-line errors."""
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of settings")
    return loaded


def coerce_value(text: str) -> Any:
    """Parse a ``--set key=value`` right-hand side as YAML (numbers, bools, lists, strings)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (dotted keys reach nested dicts) to a config dict.

    Values are parsed as YAML; `values` itself is left unchanged.

    >>> base = {"epochs": 20, "optimizer": {"name": "adam"}}
    >>> apply_overrides(base, ["epochs=5", "optimizer.lr=0.01", "layers=[64, 32]"])
    {'epochs': 5, 'optimizer': {'name': 'adam', 'lr': 0.01}, 'layers': [64, 32]}
    >>> base["optimizer"]
    {'name': 'adam'}
    """
    out = copy.deepcopy(values)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, _, raw = item.partition("=")
        parts = key.strip().split(".")
        target = out
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"--set {key}: {part} is not a mapping")
        target[parts[-1]] = coerce_value(raw)
    return out
