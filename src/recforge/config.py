"""Typed configuration bases. The library never reads argv or the environment itself."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticUndefined

from recforge.errors import ConfigError

Task = Literal["topn", "rating"]


class ModelConfig(BaseModel):
    """Base of every model's config: settings only, validated, no unknown keys.

    `task` says what the model is trained for: ``topn`` (implicit feedback, ranking) or
    ``rating`` (explicit ratings, rating prediction). `seed` makes training repeatable.
    """

    # attribute docstrings become the fields' descriptions (shown by `recforge models NAME`)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)

    task: Task = "topn"
    """topn: implicit feedback, ranking; rating: explicit ratings, rating prediction."""
    seed: int = 42
    """Seed of every random choice in training: same seed, same model."""


def describe_validation_error(exc: ValidationError) -> str:
    """Pydantic's report as one line: ``field: problem; other.field: problem``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
    )


def parse_config(cls: type[ModelConfig], values: dict[str, Any]) -> ModelConfig:
    """Validate `values` into `cls`, turning pydantic's report into one ConfigError line.

    The line names each bad key (an unknown one, or the value given) and then lists the
    valid settings of `cls` with their types and defaults.
    """
    try:
        return cls(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "config"
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown setting {key!r}")
            elif err["loc"]:
                problems.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
            else:  # a check across settings: the input is the whole config
                problems.append(err["msg"].removeprefix("Value error, "))
        message = f"invalid {cls.__name__}: {'; '.join(problems)}"
        if any(err["loc"] for err in exc.errors()):
            message += "; valid settings: " + ", ".join(
                f"{row['name']} ({row['type']}, default {row['default']})" for row in config_settings(cls))
        raise ConfigError(message) from None


def config_settings(cls: type[BaseModel]) -> list[dict[str, str]]:
    """Each setting of a config class: name, type, default and description, as display text.

    Derived from the pydantic fields (the description is the field's attribute docstring or
    ``Field(description=...)``), so it cannot drift from what the config accepts.
    """
    rows = []
    for name, field in cls.model_fields.items():
        default = field.get_default(call_default_factory=True)
        rows.append({
            "name": name,
            "type": type_label(field.annotation),
            "default": "required" if default is PydanticUndefined else repr(default),
            "description": " ".join((field.description or "").split()),
        })
    return rows


def type_label(annotation: Any) -> str:
    """A short type name: ``float``, ``int|None``, ``topn|rating``, ``list[int]``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "|".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return "|".join(type_label(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_label(a) for a in args)}]" if args else name
    if annotation is type(None):
        return "None"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


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
