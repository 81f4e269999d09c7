"""Typed configuration bases. The library never reads argv or the environment itself."""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticUndefined

from recforge.errors import ConfigError

__all__ = [
    "ADDED_SETTINGS", "RENAMED_SETTINGS", "RETIRED_SETTINGS", "DefaultRule", "ModelConfig", "SameAs", "Task",
    "apply_overrides",
    "coerce_value", "describe_validation_error", "parse_config", "read_yaml_mapping",
    "upgrade_saved_config",
]

Task = Literal["topn", "rating"]


class SameAs(NamedTuple):
    """A rule value meaning "the (resolved) value of that other field", e.g. ``SameAs("id_dropout")``."""

    field: str


class DefaultRule(NamedTuple):
    """When every field of `when` holds the given value, fill `values` into fields left unset.

    A field's value is its input value, else (missing or None) its class default, as filled
    by earlier rules; it is unset while that is None. A value may be a `SameAs`, which
    copies another field's value at that point.
    """

    when: Mapping[str, Any]
    values: Mapping[str, Any]


class ModelConfig(BaseModel):
    """Base of every model's config: settings only, validated, no unknown keys.

    `task` says what the model is trained for: ``topn`` (implicit feedback, ranking) or
    ``rating`` (explicit ratings, rating prediction). `seed` makes training repeatable.

    Defaults that depend on other settings (mostly on `task`) are declared once, as ordered
    `default_rules` on the config class: such a field defaults to None, and the first
    `DefaultRule` that matches and names it fills it. One validator applies the rules of
    the class and then those of its bases (so a subclass's rules take precedence); within a
    class they apply in order, so a rule may test a field that an earlier rule filled. A
    constructed config therefore holds concrete values and a saved ``config.json`` stores
    them; a saved config holding nulls is resolved again when it is loaded. Values given
    explicitly are always kept:

    >>> class SketchConfig(ModelConfig):
    ...     size: int | None = None
    ...     default_rules = (DefaultRule({"task": "topn"}, {"size": 64}),
    ...                      DefaultRule({"task": "rating"}, {"size": 128}))
    >>> SketchConfig().size, SketchConfig(task="rating").size, SketchConfig(size=8).size
    (64, 128, 8)
    """

    # attribute docstrings become the fields' descriptions (shown by `recforge models NAME`)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)

    task: Task = "topn"
    """topn: implicit feedback, ranking; rating: explicit ratings, rating prediction."""
    seed: int = 42
    """Seed of every random choice in training: same seed, same model."""

    default_rules: ClassVar[tuple[DefaultRule, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for rule in cls.__dict__.get("default_rules", ()):
            named = [*rule.when, *rule.values,
                     *(v.field for v in rule.values.values() if isinstance(v, SameAs))]
            unknown = sorted(set(named) - set(cls.model_fields))
            if unknown:
                raise TypeError(f"{cls.__name__}.default_rules name unknown fields {unknown}")

    @classmethod
    def all_default_rules(cls) -> tuple[DefaultRule, ...]:
        """The rules that apply to this class: its own first, then its bases' (nearest first)."""
        return tuple(rule for klass in cls.__mro__ for rule in vars(klass).get("default_rules", ()))

    @model_validator(mode="before")
    @classmethod
    def _apply_default_rules(cls, data: Any) -> Any:
        rules = cls.all_default_rules()
        if not rules or not isinstance(data, dict):
            return data
        out = dict(data)

        def current(name: str) -> Any:
            value = out.get(name)
            if value is None:
                value = cls.model_fields[name].get_default(call_default_factory=True)
            return value

        for rule in rules:
            if all(current(key) == value for key, value in rule.when.items()):
                for key, value in rule.values.items():
                    if current(key) is None:
                        out[key] = current(value.field) if isinstance(value, SameAs) else value
        return out


#: settings renamed since artifacts were first saved: model name -> {old name: new name}.
#: Only `upgrade_saved_config` (used when an artifact is loaded) reads it; configs given by
#: users must use the new names.
RENAMED_SETTINGS: dict[str, dict[str, str]] = {
    "ials": {"factors": "embedding_dim", "iterations": "epochs",
             "reg_exponent": "regularization_exponent"},
    "ease": {"l2": "regularization"},
    "ncf": {"mlp_layers": "hidden_dims"},
    "deepfm": {"hidden": "hidden_dims"},
    "widedeep": {"hidden": "hidden_dims"},
    "two_tower": {"hidden": "hidden_dim"},
    "content": {"user_ridge": "regularization", "autoencoder_hidden": "autoencoder_hidden_dim"},
    "itemknn": {"reg_user": "user_bias_regularization", "reg_item": "item_bias_regularization"},
    "userknn": {"reg_user": "user_bias_regularization", "reg_item": "item_bias_regularization"},
}
#: settings a model no longer has, dropped from saved configs on load: model name -> names.
#: `bpr` was `mf` with the loss fixed to BPR (torch minibatches) before its compiled SGD kernel.
RETIRED_SETTINGS: dict[str, frozenset[str]] = {
    "bpr": frozenset({"loss", "batch_size", "n_negatives", "negative_sampling", "negative_alpha",
                      "logq_correction", "weight_decay", "optimizer", "lr_step_size", "lr_gamma",
                      "grad_clip", "device", "verbose"}),
}

#: settings added since artifacts were first saved whose default changes what a model computes:
#: model name -> {setting: the value that reproduces the older artifacts}. An artifact saved
#: without the setting loads with that value, so it scores exactly as it did when saved.
ADDED_SETTINGS: dict[str, dict[str, Any]] = {
    "sasrec": {"scale_embeddings": False},
}


def upgrade_saved_config(model: str, values: dict[str, Any]) -> dict[str, Any]:
    """A saved model's config dict: settings renamed since then under their new names, the
    settings it no longer has (`RETIRED_SETTINGS`) left out, and settings added since then at
    the values that reproduce the saved model (`ADDED_SETTINGS`)."""
    renamed, retired = RENAMED_SETTINGS.get(model, {}), RETIRED_SETTINGS.get(model, frozenset())
    out = {renamed.get(key, key): value for key, value in values.items() if key not in retired}
    for key, value in ADDED_SETTINGS.get(model, {}).items():
        out.setdefault(key, value)
    for key, value in out.items():  # a composite's parts: ``cf_model`` with its ``cf_config``
        part = out.get(key.removesuffix("_config") + "_model") if key.endswith("_config") else None
        if isinstance(value, dict) and isinstance(part, str):
            out[key] = upgrade_saved_config(part, value)
    return out


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
