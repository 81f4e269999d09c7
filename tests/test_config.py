"""Config classes: the one default-rule mechanism, the shipped YAMLs, renamed settings."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from recforge.config import DefaultRule, ModelConfig, SameAs, upgrade_saved_config
from recforge.models.artifact import read_json, sha256_file, write_json
from recforge.registry import available_models, create_model, get_model_class, load_model
from recforge.testing import tiny_interactions

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = sorted((ROOT / "configs" / "ml100k").glob("*.yaml"))


# ------------------------------------------------------------------------- the rules
class _Base(ModelConfig):
    size: int | None = None
    rate: float | None = None
    width: int | None = None
    fixed: str = "kept"

    default_rules = (
        DefaultRule({"task": "topn"}, {"size": 64}),
        DefaultRule({"task": "rating"}, {"size": 128, "rate": 0.5}),
        DefaultRule({"size": 64}, {"rate": 0.1}),          # reads what the first rule filled
        DefaultRule({}, {"width": SameAs("size"), "fixed": "never"}),
    )


class _Child(_Base):
    default_rules = (DefaultRule({"task": "topn"}, {"size": 32}),)


def test_rules_fill_unset_fields_in_order():
    assert (_Base().size, _Base().rate, _Base().width) == (64, 0.1, 64)
    assert (_Base(task="rating").size, _Base(task="rating").rate) == (128, 0.5)
    # a rule reads the value it is given; a value given explicitly (None = unset) is kept
    assert (_Base(size=64, task="rating").rate, _Base(size=64, task="rating").width) == (0.5, 64)
    assert _Base(size=None, rate=0.9).model_dump(include={"size", "rate"}) == {"size": 64, "rate": 0.9}
    assert _Base(size=7).width == 7


def test_rules_never_override_a_non_none_class_default():
    assert _Base().fixed == "kept"


def test_subclass_rules_take_precedence_and_the_bases_still_apply():
    child = _Child()
    assert (child.size, child.width, child.rate) == (32, 32, None)   # size 32 ≠ 64: no rate rule
    assert (_Child(task="rating").size, _Child(task="rating").rate) == (128, 0.5)


def test_rules_naming_unknown_fields_fail_at_class_definition():
    with pytest.raises(TypeError, match="unknown fields"):
        class _Bad(ModelConfig):
            default_rules = (DefaultRule({"colour": "red"}, {"seed": 1}),)


@pytest.mark.parametrize("name", sorted(available_models()))
def test_every_constructed_config_is_concrete(name):
    """After construction no field that a rule fills is left None, for each task."""
    cls = get_model_class(name)
    for task in sorted(cls.tasks):
        config = cls.config_class(task=task)
        filled = {key for rule in config.all_default_rules() for key in rule.values}
        assert {key for key in filled if getattr(config, key) is None} == set(), task


# ------------------------------------------------------------------ the shipped YAMLs
def _model_and_params(path: Path) -> tuple[str, dict]:
    """A flat YAML is named after its model; one with ``model:`` names it (task variants)."""
    loaded = yaml.safe_load(path.read_text())
    if "model" in loaded:
        return loaded["model"], loaded["params"]
    return path.stem, loaded


def test_every_yaml_names_a_registered_model():
    assert DEFAULTS
    for path in DEFAULTS:
        assert _model_and_params(path)[0] in available_models(), path.name


@pytest.mark.parametrize("path", DEFAULTS, ids=[p.stem for p in DEFAULTS])
def test_yaml_documents_exactly_the_class_defaults(path):
    """Every setting listed, each at its default for the YAML's task (resolved, no nulls for rules)."""
    name, params = _model_and_params(path)
    cls = get_model_class(name).config_class
    assert set(params) == set(cls.model_fields), "the YAML lists every setting, nothing else"
    config = cls(**params)
    assert config == cls(task=config.task)
    filled = {key for rule in cls.all_default_rules() for key in rule.values}
    assert {key for key in filled if params[key] is None} == set(), "rule-filled settings written out"


def test_cold_start_hybrid_yaml_matches_the_benchmark():
    """configs/ml100k-cold/hybrid.yaml is the cold benchmark's hybrid, not the class defaults."""
    bench = yaml.safe_load((ROOT / "benchmarks" / "ml100k-cold.yaml").read_text())
    entry = next(m for m in bench["cold_users"]["models"] if m["name"] == "hybrid")
    shipped = yaml.safe_load((ROOT / "configs" / "ml100k-cold" / "hybrid.yaml").read_text())
    cls = get_model_class("hybrid").config_class
    assert cls(**shipped) == cls(**entry["params"]) != cls()


# ------------------------------------------------------------- saved configs and names
def test_renamed_settings_are_refused_from_users_but_mapped_on_load():
    assert upgrade_saved_config("ials", {"factors": 4, "seed": 1}) == {"embedding_dim": 4, "seed": 1}
    nested = upgrade_saved_config("hybrid", {"feature_model": "two_tower", "feature_config": {"hidden": 0}})
    assert nested["feature_config"] == {"hidden_dim": 0}
    with pytest.raises(ValueError, match="factors"):
        create_model("ials", factors=4)


def _rewrite_config(directory: Path, renamed: dict[str, str], nulls: tuple[str, ...] = ()) -> None:
    """Rewrite config.json as an older recforge wrote it: `renamed` new -> old names, `nulls`
    unresolved; the checksum in meta.json updated to match."""
    config = read_json(directory / "config.json")
    config = {renamed.get(key, key): None if key in nulls else value for key, value in config.items()}
    write_json(directory / "config.json", config)
    meta = read_json(directory / "meta.json")
    meta["files"]["config.json"] = sha256_file(directory / "config.json")
    write_json(directory / "meta.json", meta)


def test_an_old_artifact_with_old_names_loads(tmp_path):
    data, _ = tiny_interactions()
    users = np.arange(data.n_users)
    model = create_model("ials", embedding_dim=4, epochs=3).fit(data)
    model.save(tmp_path)
    _rewrite_config(tmp_path, {"embedding_dim": "factors", "epochs": "iterations"})
    assert "factors" in read_json(tmp_path / "config.json")
    loaded = load_model(tmp_path)
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.score(users), model.score(users))


def test_config_json_stores_resolved_values_and_old_nulls_resolve_on_load(tmp_path):
    data, _ = tiny_interactions()
    users = np.arange(data.n_users)
    model = create_model("itemknn", neighbors=5).fit(data)
    model.save(tmp_path)
    saved = read_json(tmp_path / "config.json")
    assert (saved["similarity"], saved["asymmetry"], saved["weighting"]) == ("cosine", 0.7, "idf")
    _rewrite_config(tmp_path, {"user_bias_regularization": "reg_user"},
                    nulls=("similarity", "shrinkage", "asymmetry", "weighting"))
    loaded = load_model(tmp_path)
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.score(users), model.score(users))


def test_an_artifact_saved_before_a_setting_existed_loads_with_its_old_behaviour(tmp_path):
    """sasrec's `scale_embeddings` (default True) did not exist before: such an artifact loads unscaled."""
    data, _ = tiny_interactions()
    users = np.arange(data.n_users)
    model = create_model("sasrec", scale_embeddings=False, embedding_dim=8, hidden_dim=8, max_length=4,
                         epochs=1, batch_size=8).fit(data)
    model.save(tmp_path)
    config = read_json(tmp_path / "config.json")
    del config["scale_embeddings"]
    write_json(tmp_path / "config.json", config)
    meta = read_json(tmp_path / "meta.json")
    meta["files"]["config.json"] = sha256_file(tmp_path / "config.json")
    write_json(tmp_path / "meta.json", meta)
    loaded = load_model(tmp_path)
    assert loaded.config.scale_embeddings is False  # type: ignore[attr-defined]
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    assert create_model("sasrec").config.scale_embeddings is True  # type: ignore[attr-defined]
