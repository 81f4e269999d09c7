"""Typed configuration bases. The library never reads argv or the environment itself."""

from __future__ import annotations

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


def parse_config(cls: type[ModelConfig], values: dict[str, Any]) -> ModelConfig:
    """Validate `values` into `cls`, turning pydantic's report into one ConfigError line."""
    try:
        return cls(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid {cls.__name__}: {problems}") from None


def coerce_value(text: str) -> Any:
    """Parse a ``--set key=value`` right-hand side as YAML (numbers, bools, lists, strings)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (dotted keys reach nested dicts) to a config dict."""
    out = dict(values)
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
