"""The served model: a loaded, validated artifact plus the scoring the endpoints need.

`LoadedModel` is immutable once built and shared read-only by every request thread.
`ModelHolder` swaps it atomically on reload: a request reads ``holder.current`` once and
works with that snapshot to the end, so a reload never mixes two models in one answer. A new
artifact is loaded and validated completely before the swap; if that fails, the old model
keeps serving and the error is raised to the caller.

The service keeps no ranking logic of its own: every list comes from the model's
`rank_users` (known users, and the unknown-user chain: request features → fold-in of stored
events → popularity, with its ``fallback`` label), `rank_histories` (anonymous sessions) and
`similar_items_idx`, all of which rank through `recforge.ranking`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from recforge.errors import ArtifactError, ConfigError, DataError, RecforgeError
from recforge.models.base import Recommender
from recforge.models.capabilities import Capability
from recforge.ranking import top_k

log = logging.getLogger("recforge.serving")
#: what computes a served model's scores
Runtime = Literal["torch", "onnx"]
#: reason of an explanation by the kind of `Recommender.explain` row it starts with
_REASONS = {"item": "history_contribution", "similar_item": "similar_to_history", "feature": "feature_match"}


@dataclass(frozen=True)
class Ranked:
    """One ranked list: item indices and scores, best first, plus the fallback used (if any)."""

    items: np.ndarray
    scores: np.ndarray
    fallback: str | None = None


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A validated artifact and what the service derives from it once, at load time."""

    model: Recommender
    directory: Path
    info: dict[str, Any]
    titles: np.ndarray  # object array, per item index: title or None
    train_ratings: np.ndarray | None  # aligned with model.seen_.indices
    user_feature_columns: frozenset[str] | None = None  # set when the model ranks cold users by features
    runtime: Runtime = "torch"
    loaded_at: float = 0.0  # Unix time of the load

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, directory: str | Path, runtime: Runtime = "torch") -> LoadedModel:
        """Load and validate an artifact; ArtifactError (one line) if it is unusable.

        ``runtime="onnx"``: a torch model scores known users through its exported graph in
        onnxruntime (`recforge.export.onnx`), checked against torch at load; ranking,
        exclusions and fallbacks stay the model's.
        """
        from recforge import __version__
        from recforge.models import artifact

        path = Path(directory).resolve()
        meta_bytes = _read_meta(path)
        model = Recommender.load(path)
        if runtime == "onnx":
            from recforge.export.onnx import onnx_scorer
            from recforge.models.torch_base import TorchRecommender

            try:
                scorer = onnx_scorer(model)
            except ConfigError as exc:
                raise ArtifactError(f"{path}: cannot serve with the onnx runtime: {exc}") from None
            assert isinstance(model, TorchRecommender)  # onnx_scorer refuses the others
            model.set_scorer(scorer)
        meta = artifact.read_json(path / "meta.json")
        info = {
            "name": str(meta.get("model", model.name)),
            "version": hashlib.sha256(meta_bytes).hexdigest()[:12],
            "fingerprint": str(meta.get("fingerprint", "")),
            "created": str(meta.get("created", "")),
            "task": str(model.config.task),
            "n_users": model.n_users,
            "n_items": model.n_items,
            "recforge_version": str(meta.get("recforge_version", __version__)),
            "runtime": runtime,
        }
        titles = np.full(model.n_items, None, dtype=object)
        features = model.item_features_
        if features is not None and "title" in features.columns:
            col = features["title"].reindex(pd.Index(model.item_map_.ids, dtype=object))
            present = col.notna().to_numpy()
            titles[present] = col[present].astype(str).to_numpy(dtype=object)
        columns = None
        if model.supports(Capability.COLD_USERS) and model.user_features_ is not None:
            columns = frozenset(str(c) for c in model.user_features_.columns) or None
        loaded = cls(model=model, directory=path, info=info, titles=titles,
                     train_ratings=model.training_interactions().ratings, user_feature_columns=columns,
                     runtime=runtime, loaded_at=time.time())
        loaded.validate()
        return loaded

    def validate(self) -> None:
        """Exercise the scoring paths once; a model that cannot score is refused."""
        m = self.model
        try:
            if m.n_items < 1:
                raise ValueError("the model knows no items")
            k = min(5, m.n_items)
            items, scores = m.popular_idx(k)
            if items.shape != (k,):
                raise ValueError("popularity ranking has the wrong shape")
            if m.n_users > 0:
                items, scores = m.recommend_idx(np.array([0]), k, exclude_seen=False)
                if items.shape != (1, k) or np.isnan(scores).any():
                    raise ValueError("scores have the wrong shape or are NaN")
            sims = m.similar_idx(np.array([0]))
            if np.asarray(sims).shape != (1, m.n_items):
                raise ValueError("item similarities have the wrong shape")
        except ArtifactError:
            raise
        except Exception as exc:
            raise ArtifactError(f"{self.directory} failed validation: {type(exc).__name__}: {exc}") from None

    # ------------------------------------------------------------------ facts
    def title(self, idx: int) -> str | None:
        return self.titles[idx] if idx >= 0 else None

    def item_idx(self, item_id: str) -> int:
        """Index of a raw item ID, -1 when unknown."""
        return int(self.model.item_map_.lookup([item_id])[0])

    def user_idx(self, user_id: str) -> int:
        return int(self.model.user_map_.lookup([user_id])[0])

    def known_items(self, item_ids: Sequence[str]) -> np.ndarray:
        """Indices of the known ones among `item_ids` (unknown IDs dropped)."""
        if not item_ids:
            return np.empty(0, np.int64)
        idx = self.model.item_map_.lookup(item_ids)
        return idx[idx >= 0]

    def train_history(self, uidx: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Training items of a known user and their ratings (None for implicit data)."""
        seen = self.model.seen_
        lo, hi = seen.indptr[uidx], seen.indptr[uidx + 1]
        ratings = self.train_ratings[lo:hi] if self.train_ratings is not None else None
        return seen.indices[lo:hi], ratings

    # ------------------------------------------------------------------ ranking
    def check_features(self, features: dict[str, Any] | None) -> None:
        """DataError (a 422) for a feature name the served feature model was not trained with."""
        if not features or self.user_feature_columns is None:
            return
        unknown = sorted(set(features) - self.user_feature_columns)
        if unknown:
            names = ", ".join(repr(f) for f in unknown[:5])
            known = ", ".join(sorted(self.user_feature_columns)[:20])
            raise DataError(f"features: unknown user feature {names} (the model knows: {known})")

    def recommend(self, user_ids: Sequence[str], k: int, exclude_seen: bool,
                  extra_seen: dict[str, list[str]], features: dict[str, Any] | None = None) -> list[Ranked]:
        """Top-`k` per user through the model's `rank_users`; `extra_seen`: user → items of
        events stored since training (excluded with `exclude_seen`, folded in for unknown users).

        Unknown users get the library's chain: `features` (feature models only), the fold-in of
        their event items, or popularity; `Ranked.fallback` says which.
        """
        m = self.model
        lists = m.rank_users(list(user_ids), min(k, m.n_items), exclude_seen, unknown="fallback",
                             events=extra_seen, user_features=features if self.user_feature_columns else None)
        return [_ranked(lists.items[r], lists.scores[r], lists.fallback[r]) for r in range(len(user_ids))]

    def session(self, item_idx: np.ndarray, k: int, features: dict[str, Any] | None = None) -> Ranked:
        """Items for an anonymous session of known item indices (excluded): the model's
        unknown-user chain — request features, else the fold-in of the session, else popularity.

        Folding the session in is what a session asks for, so it carries no fallback label.
        """
        m = self.model
        lists = m.rank_unknown([np.asarray(item_idx, np.int64)], min(k, m.n_items),
                               user_features=features if self.user_feature_columns else None)
        fallback = lists.fallback[0]
        return _ranked(lists.items[0], lists.scores[0], None if fallback == "fold_in" else fallback)

    def similar(self, idx: int, k: int) -> Ranked:
        """The `k` items most similar to item `idx`, itself excluded."""
        items, scores = self.model.similar_items_idx(np.array([idx]), min(k, self.model.n_items))
        return _ranked(items[0], scores[0], None)

    # ------------------------------------------------------------------ explanations
    def explain_known(self, user_id: str, ranked: Ranked) -> list[dict[str, Any]] | None:
        """The model's own `explain` for a known user, per recommended item; None if it has none.

        Exact history contributions (EASE, item-kNN), leave-one-out contributions of liked items
        and per-feature terms (content), or the user's items nearest in embedding space; only
        positive contributions are named, items before features.
        """
        m = self.model
        if len(ranked.items) == 0:
            return []
        if not m.supports(Capability.EXPLAIN):
            return None
        ids = [str(x) for x in m.item_map_.ids[ranked.items]]
        try:
            frame = m.explain(user_id, ids, n=2)
        except RecforgeError:
            return None
        frame = frame[frame["contribution"] > 0]
        frame = frame.assign(order=frame["kind"].map({"item": 0, "similar_item": 0, "feature": 1}).fillna(2))
        frame = frame.sort_values(["item_id", "order", "rank"], kind="stable")
        because: dict[str, list[dict[str, Any]]] = {}
        reason: dict[str, str] = {}
        for item, kind, source, title, value in zip(frame["item_id"], frame["kind"], frame["source"],
                                                    frame["title"], frame["contribution"], strict=True):
            entry: dict[str, Any] = {"contribution": round(float(value), 6)}
            if kind == "feature":
                entry |= {"feature": str(source), "title": None}
            else:
                fallback_title = title if isinstance(title, str) and title else None
                entry |= {"item_id": str(source), "title": self.title(self.item_idx(str(source))) or fallback_title}
                if kind == "similar_item":
                    entry["similarity"] = entry["contribution"]
            because.setdefault(str(item), []).append(entry)
            reason.setdefault(str(item), _REASONS.get(str(kind), "model_score"))
        pops = m.item_popularity_
        return [{"reason": reason.get(i, "model_score"), "because": because.get(i, []),
                 "popularity": int(pops[idx])} for i, idx in zip(ids, ranked.items, strict=True)]

    def explain(self, ranked: Ranked, history: np.ndarray, reason: str) -> list[dict[str, Any]]:
        """Per recommended item: the (up to two) `history` items most similar to it.

        For sessions, folded-in users and feature-ranked cold users; a popularity list says
        "popular", a feature-ranked user without history "user_features".
        """
        m = self.model
        pops = m.item_popularity_
        if ranked.fallback == "popularity" or len(ranked.items) == 0:
            return [{"reason": "popular", "because": [], "popularity": int(pops[i])} for i in ranked.items]
        if len(history) == 0:
            fallback = "user_features" if ranked.fallback == "features" else "model_score"
            return [{"reason": fallback, "because": [], "popularity": int(pops[i])} for i in ranked.items]
        sims = np.asarray(m.similar_idx(ranked.items), np.float64)[:, history]
        sims = np.nan_to_num(sims, nan=0.0, posinf=0.0, neginf=0.0)
        n_top = min(2, sims.shape[1])
        top = top_k(sims, n_top)[0]
        out = []
        for row, item in enumerate(ranked.items):
            because = []
            for j in top[row]:
                if j >= 0 and sims[row, j] > 0:
                    value = round(float(sims[row, j]), 6)
                    because.append({"item_id": str(m.item_map_.ids[history[j]]), "title": self.title(int(history[j])),
                                    "contribution": value, "similarity": value})
            out.append({"reason": reason if because else "model_score", "because": because,
                        "popularity": int(pops[item])})
        return out


def _ranked(items: np.ndarray, scores: np.ndarray, fallback: str | None) -> Ranked:
    """One padded row of a ranking as a `Ranked` list without the padding."""
    keep = items >= 0
    return Ranked(items[keep], scores[keep], fallback)


def _read_meta(path: Path) -> bytes:
    try:
        return (path / "meta.json").read_bytes()
    except FileNotFoundError:
        if not path.is_dir():
            raise ArtifactError(f"model directory {path} does not exist") from None
        raise ArtifactError(f"{path} is not a recforge model: meta.json missing") from None
    except OSError as exc:
        raise ArtifactError(f"cannot read {path / 'meta.json'}: {exc.strerror}") from None


def finite(value: float) -> float | None:
    """A JSON-safe number: None for NaN or infinity."""
    value = float(value)
    return value if math.isfinite(value) else None


class ModelHolder:
    """Holds the live model; `reload` swaps in a new one only after it loaded and validated."""

    def __init__(self, loaded: LoadedModel) -> None:
        self._current = loaded
        self._reload_lock = threading.Lock()

    @property
    def current(self) -> LoadedModel:
        return self._current

    def reload(self, directory: str | Path | None = None) -> tuple[LoadedModel, LoadedModel]:
        """Load `directory` (default: the current artifact's) and swap; returns (new, old).

        Raises ArtifactError and keeps the current model when the new one is unusable.
        """
        with self._reload_lock:
            old = self._current
            new = LoadedModel.load(directory if directory is not None else old.directory, old.runtime)
            self._current = new  # one reference assignment: atomic for readers
            return new, old


class ReloadSync:
    """Carries a reload from the worker that handled it to every worker sharing the store.

    A successful `POST /v1/admin/reload` publishes ``{model_dir, version, launch}`` in the
    store's control row "model" (bumping its generation). Each worker polls that row every
    `interval` seconds in a daemon thread and reloads when the generation moved to a version
    it does not serve. At start a worker adopts the published model only when it belongs to
    the same launch (a worker restarted by the supervisor); a new `recforge serve` launch
    serves its own ``--model``.

    Every worker acknowledges each generation it has acted on in a control row of its own
    (``ack:<launch>:<worker>``: generation, the version it serves, whether loading worked), so
    the worker that published can wait until all `workers` of its launch serve the new model
    (`wait_propagated`) before answering.
    """

    def __init__(self, holder: ModelHolder, store: Any, launch_id: str, interval: float = 1.0,
                 on_swap: Callable[[LoadedModel | None], None] | None = None, workers: int = 1,
                 on_poll: Callable[[Exception | None], None] | None = None) -> None:
        self.holder = holder
        self.store = store
        self.launch_id = launch_id
        self.interval = interval
        self.on_swap = on_swap
        self.on_poll = on_poll
        self.workers = workers
        self.worker_id = uuid.uuid4().hex[:12]
        self.ack_prefix = f"ack:{hashlib.sha256(launch_id.encode()).hexdigest()[:16]}:"
        self.seen = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, loaded: LoadedModel) -> int:
        """Record `loaded` as the model every worker should serve; returns its generation."""
        value = json.dumps({"model_dir": str(loaded.directory), "version": loaded.info["version"],
                            "launch": self.launch_id})
        self.seen = generation = self.store.set_control("model", value)
        self._acknowledge(generation, True)
        return generation

    def wait_propagated(self, generation: int, version: str, timeout: float) -> int:
        """Wait until every worker of this launch acknowledged `generation` (or `timeout`
        seconds passed); returns how many of them serve `version`."""
        deadline = time.monotonic() + timeout
        while True:
            acks = [_parse(v) for v in self.store.list_control(self.ack_prefix).values()]
            current = [a for a in acks if int(a.get("generation", 0)) >= generation]
            serving = sum(1 for a in current if a.get("ok") and a.get("version") == version)
            if len(current) >= self.workers or time.monotonic() >= deadline:
                return serving
            time.sleep(min(0.05, max(self.interval / 4, 0.005)))

    def start(self) -> None:
        generation, value = self.store.get_control("model")
        self.seen = generation
        target = _parse(value)
        ok = self._follow(target) if target.get("launch") == self.launch_id else True
        with contextlib.suppress(Exception):  # old acknowledgements are never read again
            self.store.delete_control("ack:", time.time() - 86400)
        self._acknowledge(generation, ok)
        self._thread = threading.Thread(target=self._run, name="recforge-reload-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def poll(self) -> None:
        """One check of the control row (the thread calls this every `interval` seconds)."""
        generation, value = self.store.get_control("model")
        if generation <= self.seen:
            return
        ok = self._follow(_parse(value))
        self.seen = generation
        self._acknowledge(generation, ok)

    def _acknowledge(self, generation: int, ok: bool) -> None:
        self.store.put_control(self.ack_prefix + self.worker_id, json.dumps(
            {"generation": generation, "version": self.holder.current.info["version"], "ok": ok}))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception as exc:  # the store may be briefly unreachable: try again later
                log.warning("reload sync: %s", exc)
                if self.on_poll is not None:
                    self.on_poll(exc)
            else:
                if self.on_poll is not None:
                    self.on_poll(None)

    def _follow(self, target: dict[str, Any]) -> bool:
        """Serve the published model unless already serving it; False if it failed to load."""
        model_dir, version = target.get("model_dir"), target.get("version")
        if not model_dir or version == self.holder.current.info["version"]:
            return True
        try:
            new, _old = self.holder.reload(model_dir)
        except Exception as exc:
            log.warning("reload sync: cannot load %s, still serving %s: %s", model_dir,
                        self.holder.current.info["version"], exc)
            if self.on_swap is not None:
                self.on_swap(None)
            return False
        log.info("reload sync: now serving %s version %s", new.info["name"], new.info["version"])
        if self.on_swap is not None:
            self.on_swap(new)
        return True


def _parse(value: str) -> dict[str, Any]:
    try:
        out = json.loads(value) if value else {}
    except json.JSONDecodeError:
        return {}
    return out if isinstance(out, dict) else {}
