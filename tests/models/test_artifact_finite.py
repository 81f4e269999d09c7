"""An artifact whose learned numbers are not finite is refused at load, checksums or not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recforge.cli.main import app
from recforge.data.interactions import Interactions
from recforge.errors import ArtifactError
from recforge.models import artifact
from recforge.models.base import Recommender
from recforge.registry import create_model


@pytest.fixture(scope="module")
def ease_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "c"), ("u3", "b"), ("u3", "c"), ("u4", "d")]
    data = Interactions.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id"]))
    return create_model("ease").fit(data).save(tmp_path_factory.mktemp("finite") / "ease")


def _rewrite(directory: Path, file: str, change: dict[str, object]) -> None:
    """Change arrays of `file` and recompute its checksum, as a careful forger would."""
    arrays = artifact.read_npz(directory / file)
    for key, value in change.items():
        arrays[key] = value(arrays[key]) if callable(value) else value
    artifact.write_npz(directory / file, arrays)
    meta = json.loads((directory / "meta.json").read_text())
    meta["files"][file] = artifact.sha256_file(directory / file)
    (directory / "meta.json").write_text(json.dumps(meta))


def _with_one(value: float):
    def change(arr: np.ndarray) -> np.ndarray:
        out = arr.copy()
        out.flat[out.size // 2] = value
        return out
    return change


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weight_is_refused_with_checksums_recomputed(ease_dir: Path, tmp_path: Path, value: float):
    bad = Path(shutil.copytree(ease_dir, tmp_path / "bad"))
    (key,) = [k for k, v in artifact.read_npz(bad / "weights.npz").items() if v.dtype.kind == "f"][:1]
    _rewrite(bad, "weights.npz", {key: _with_one(value)})
    with pytest.raises(ArtifactError, match=rf"is corrupt: weights\.npz array '{key}' holds 1 non-finite value"):
        Recommender.load(bad)


def test_all_nan_weights_and_non_finite_training_facts_are_refused(ease_dir: Path, tmp_path: Path):
    nan = Path(shutil.copytree(ease_dir, tmp_path / "nan"))
    _rewrite(nan, "weights.npz", {k: (lambda a: np.full_like(a, np.nan)) for k, v in
                                  artifact.read_npz(nan / "weights.npz").items() if v.dtype.kind == "f"})
    with pytest.raises(ArtifactError, match="non-finite"):
        Recommender.load(nan)
    pop = Path(shutil.copytree(ease_dir, tmp_path / "pop"))
    _rewrite(pop, "train.npz", {"item_popularity": lambda a: np.where(np.arange(len(a)) == 0, np.inf, a)})
    with pytest.raises(ArtifactError, match=r"train\.npz array 'item_popularity' holds 1 non-finite"):
        Recommender.load(pop)


def test_the_cli_says_so_in_one_line(ease_dir: Path, tmp_path: Path):
    bad = Path(shutil.copytree(ease_dir, tmp_path / "bad"))
    (key,) = [k for k, v in artifact.read_npz(bad / "weights.npz").items() if v.dtype.kind == "f"][:1]
    _rewrite(bad, "weights.npz", {key: _with_one(np.nan)})
    result = CliRunner().invoke(app, ["recommend", "--model", str(bad), "--users", "u1"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "non-finite" in lines[0] and "Traceback" not in result.output


def test_the_training_record_may_hold_nan(tmp_path: Path):
    """Epochs without validation record a NaN metric (torch models): not a weight, not refused."""
    arrays = {"history.metric": np.full(3, np.nan), "history.loss": np.ones(3), "w": np.zeros(2)}
    artifact.check_finite(tmp_path, "weights.npz", arrays)
    with pytest.raises(ArtifactError, match="'w' holds 1 non-finite"):
        artifact.check_finite(tmp_path, "weights.npz", {**arrays, "w": np.array([0.0, np.nan])})
