"""Saving and loading models as artifact directories (the persistence half of `Recommender`).

`ArtifactIO` is a base class of `Recommender`: `save` writes the directory described in
`recforge.models.artifact` (config, ID maps, learned arrays from `_get_state`, the training
matrix, feature frames, nested `parts/` of composite models, and meta.json with a checksum
per file, written last); `load` finds the model class by the name in meta.json, rebuilds it
from config.json (renamed settings of older versions upgraded) and restores its state.
"""

from __future__ import annotations

import json
import shutil
from abc import abstractmethod
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge import __version__, ann
from recforge.config import ModelConfig, upgrade_saved_config
from recforge.data.interactions import IdMap
from recforge.errors import ArtifactError, ConfigError, NotFittedError
from recforge.models import artifact
from recforge.privacy.report import privacy_meta

if TYPE_CHECKING:
    from recforge.models.base import Recommender

__all__ = ["ArtifactIO"]


class ArtifactIO:
    """`save` / `load` of a model's artifact directory; subclasses write `_get_state`/`_set_state`."""

    name: ClassVar[str]
    config: ModelConfig
    user_map_: IdMap
    item_map_: IdMap
    seen_: sp.csr_matrix
    item_popularity_: np.ndarray
    rating_scale_: tuple[float, float] | None
    global_mean_: float
    fingerprint_: str
    fit_seconds_: float
    fit_processes_: int
    item_features_: pd.DataFrame | None
    user_features_: pd.DataFrame | None
    _train_ratings: np.ndarray | None
    _fitted: bool
    ann_index_: ann.AnnIndex | None

    @abstractmethod
    def _get_state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (plain numeric numpy arrays)."""

    @abstractmethod
    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore learned arrays; ID maps, `seen_`, config and `parts` are already set."""

    def parts(self) -> dict[str, Recommender]:
        """The fitted sub-models of a composite model (hybrid, ensembles), by part name.

        Each is saved as a nested artifact under ``parts/<name>/`` and loaded back with
        `Recommender.load` before `_set_state`, so a composite uses its parts through their
        public API only. Plain models have none.
        """
        return {}

    def _set_parts(self, parts: dict[str, Recommender]) -> None:
        """Take the loaded sub-models back (composite models override)."""
        if parts:
            raise ValueError(f"{type(self).__name__} has no parts, but the artifact holds {sorted(parts)}")

    def save(self, path: str | Path) -> Path:
        """Write this fitted model as an artifact directory (created or replaced)."""
        if not getattr(self, "_fitted", False):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or load() first")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        for stale in ("meta.json", "items.parquet", "users.parquet", ann.INDEX_FILE):
            (out / stale).unlink(missing_ok=True)
        shutil.rmtree(out / "parts", ignore_errors=True)
        parts = self.parts()
        for part_name, part in parts.items():
            part.save(out / "parts" / part_name)
        artifact.write_json(out / "config.json", self.config.model_dump(mode="json"))
        artifact.write_json(out / "user_ids.json", self.user_map_.ids.tolist())
        artifact.write_json(out / "item_ids.json", self.item_map_.ids.tolist())
        artifact.write_npz(out / "weights.npz", self._get_state())
        train: dict[str, np.ndarray] = {
            "indptr": self.seen_.indptr, "indices": self.seen_.indices,
            "item_popularity": self.item_popularity_,
        }
        if self._train_ratings is not None:
            train["ratings"] = self._train_ratings
        artifact.write_npz(out / "train.npz", train)
        for name, frame in (("items.parquet", self.item_features_), ("users.parquet", self.user_features_)):
            if frame is not None:
                frame.rename_axis("id").reset_index().to_parquet(out / name, index=False)
        index: ann.AnnIndex | None = getattr(self, "ann_index_", None)
        extra: dict[str, Any] = {}
        if index is not None:
            (out / ann.INDEX_FILE).write_bytes(index.to_bytes())
            extra["ann"] = index.meta()
        artifact.finalize(out, {
            "model": self.name,
            "recforge_version": __version__,
            "fingerprint": self.fingerprint_,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "task": self.config.task,
            "n_users": len(self.user_map_),
            "n_items": len(self.item_map_),
            "rating_scale": self.rating_scale_,
            "global_mean": self.global_mean_,
            "fit_seconds": round(getattr(self, "fit_seconds_", 0.0), 3),
            "fit_processes": int(getattr(self, "fit_processes_", 1)),
            "parts": sorted(parts),
            **privacy_meta(self),
            **extra,
        })
        return out

    def _train_user_idx(self) -> np.ndarray:
        return np.repeat(np.arange(self.seen_.shape[0]), np.diff(self.seen_.indptr))

    def _train_item_idx(self) -> np.ndarray:
        return self.seen_.indices

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load an artifact directory saved by `save`; checks format, file checksums, and that
        every learned number is finite (NaN or infinite weights would score every item alike)."""
        from recforge.registry import get_model_class

        directory = Path(path)
        meta = artifact.open_artifact(directory)
        try:
            model_cls = get_model_class(str(meta["model"]))
        except ConfigError as exc:
            raise ArtifactError(f"{directory}: {exc}") from None
        if not issubclass(model_cls, cls):
            raise ArtifactError(f"{directory} holds a {meta['model']!r} model, not {cls.__name__}")
        config = upgrade_saved_config(str(meta["model"]), artifact.read_json(directory / "config.json"))
        try:
            model = model_cls(config)
        except ConfigError as exc:
            raise ArtifactError(f"{directory}: config.json is invalid: {exc}") from None
        try:
            model._restore(directory, meta)
        except (KeyError, ValueError, IndexError, TypeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{directory} is inconsistent: {exc}") from None
        return model

    def _restore(self, directory: Path, meta: dict[str, Any]) -> None:
        self.user_map_ = IdMap(artifact.read_json(directory / "user_ids.json"))
        self.item_map_ = IdMap(artifact.read_json(directory / "item_ids.json"))
        codecs = meta.get("compression", {}).get("arrays", {})
        train = artifact.decode_arrays(artifact.read_npz(directory / "train.npz"), codecs.get("train.npz", {}))
        artifact.check_finite(directory, "train.npz", train)
        shape = (len(self.user_map_), len(self.item_map_))
        if int(meta["n_users"]) != shape[0] or int(meta["n_items"]) != shape[1]:
            raise ValueError("ID maps do not match the recorded sizes")
        self.seen_ = sp.csr_matrix(
            (np.ones(len(train["indices"]), np.float32), train["indices"], train["indptr"]), shape=shape
        )
        self.item_popularity_ = train["item_popularity"]
        self._train_ratings = train.get("ratings")
        scale = meta.get("rating_scale")
        self.rating_scale_ = tuple(scale) if scale else None
        self.global_mean_ = float(meta.get("global_mean", 0.0))
        self.fingerprint_ = meta.get("fingerprint", "")
        self.fit_seconds_ = float(meta.get("fit_seconds", 0.0))
        self.fit_processes_ = int(meta.get("fit_processes", 1))
        self.item_features_ = _read_features(directory / "items.parquet")
        self.user_features_ = _read_features(directory / "users.parquet")
        self._set_parts({str(name): ArtifactIO.load(directory / "parts" / str(name))
                         for name in meta.get("parts", [])})
        weights = artifact.decode_arrays(artifact.read_npz(directory / "weights.npz"), codecs.get("weights.npz", {}))
        artifact.check_finite(directory, "weights.npz", weights)
        self._set_state(weights)
        if "compression" in meta:
            self._restore_compressed(meta["compression"])
        self.ann_index_ = _read_index(directory, meta.get("ann"), len(self.item_map_))
        self._fitted = True

    def _restore_compressed(self, compression: dict[str, Any]) -> None:
        """After loading a compressed artifact (its arrays already decoded): apply what
        changes the model at run time, e.g. int8 layers (`TorchRecommender`)."""


def _read_index(directory: Path, info: dict[str, Any] | None, n_items: int) -> ann.AnnIndex | None:
    """The artifact's ANN index (None without one); ArtifactError when it is damaged or does
    not cover the model's items."""
    if not info:
        return None
    path = directory / str(info.get("file", ann.INDEX_FILE))
    index = ann.AnnIndex.from_bytes(path.read_bytes(), str(info["kind"]), dict(info.get("params", {})),
                                    where=str(path))
    if index.n_items != n_items:
        raise ArtifactError(f"{path} is inconsistent: it indexes {index.n_items} items, the model has {n_items}")
    return index


def _read_features(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    frame = pd.read_parquet(path)
    return frame.set_index("id")
