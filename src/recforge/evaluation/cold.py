"""Cold-start benchmark: cold users and cold items, k-fold, with paired significance tests.

The per-user benchmark (`recforge.evaluation.benchmark`) ranks known users only; this one
holds users (or items) out *entirely*. A YAML with ``protocol: cold-start`` selects it in
``recforge benchmark``:

* **cold users** — `cold_user_folds`: each fold holds out a share of the users with all
  their interactions; models train on the rest (``train.compact()``: the held-out users are
  not in the ID space) and rank every training item for each held-out user from their
  features alone (``recommend_cold``; a model without features gives its list for an
  unknown user, e.g. global popularity). Every user is held out once, so the per-user
  vectors of all folds are paired across models.
* **cold items** — `cold_item_folds`: a share of the items leaves training entirely; for
  each training user with test interactions, the held-out items (only those) are ranked
  from their features (``score_new_items``). A model that cannot score an unseen item (CF)
  gives every new item the same score; ties are broken at random, so it lands at chance,
  exactly like the ``random`` entry.

Metrics follow PROTOCOL.md (binary relevance; test items a model cannot reach stay in the
denominator). Each model is compared with the `baseline` of its side by `paired_test`
(Wilcoxon signed-rank and paired t) on per-user NDCG@10 and Recall@20.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recforge.config import read_yaml_mapping
from recforge.data.cold import cold_item_folds, cold_user_folds
from recforge.data.interactions import Interactions
from recforge.evaluation import metrics as mx
from recforge.evaluation.benchmark import ModelEntry, check_model_names, read_config
from recforge.evaluation.stats import paired_test
from recforge.models.capabilities import Capability
from recforge.ranking import top_k

__all__ = ["ColdBenchmarkConfig", "is_cold_config", "load_cold_config", "run_cold_benchmark"]

#: the model name that stands for chance level on cold items
RANDOM = "random"


class ColdSide(BaseModel):
    """The models of one side (cold users or cold items) and the one the others are tested against.

    A model entry is the per-user benchmark's `ModelEntry`; on cold items the name ``random``
    stands for chance level."""

    model_config = ConfigDict(extra="forbid")

    baseline: str
    models: list[ModelEntry] = Field(min_length=1)
    given: list[int] = Field(default_factory=lambda: [0])
    given_order: Literal["random", "first"] = "random"

    @model_validator(mode="after")
    def _baseline_listed(self) -> ColdSide:
        if not self.given or min(self.given) < 0 or 0 not in self.given:
            raise ValueError("given must list 0 and other non-negative counts of request-time items")
        keys = [m.key for m in self.models]
        if len(set(keys)) != len(keys):
            raise ValueError("model labels must be unique within a side")
        if self.baseline not in keys:
            raise ValueError(f"baseline {self.baseline!r} is not one of the models ({', '.join(keys)})")
        return self


class ColdDataset(BaseModel):
    """A built-in dataset with user and item features, read from `data_dir` (relative to the YAML)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "movielens-100k"
    data_dir: str


class ColdBenchmarkConfig(BaseModel):
    """A cold-start benchmark: dataset, folds, and the models of each side."""

    model_config = ConfigDict(extra="forbid")

    protocol: Literal["cold-start"]
    dataset: ColdDataset
    folds: int = Field(5, ge=2)
    max_folds: int | None = Field(None, ge=1)
    seed: int = 42
    threads: int | None = Field(None, ge=1)
    cold_users: ColdSide | None = None
    cold_items: ColdSide | None = None

    @model_validator(mode="after")
    def _some_side(self) -> ColdBenchmarkConfig:
        if self.cold_users is None and self.cold_items is None:
            raise ValueError("give cold_users, cold_items or both")
        if self.cold_users is not None and any(m.name == RANDOM for m in self.cold_users.models):
            raise ValueError(f"{RANDOM!r} is a cold-items entry only")
        if self.cold_items is not None and self.cold_items.given != [0]:
            raise ValueError("given (request-time items) applies to cold_users only")
        return self


KS = (10, 20)


def is_cold_config(path: str | Path) -> bool:
    """Whether a benchmark YAML asks for the cold-start protocol."""
    return read_yaml_mapping(Path(path), "benchmark config").get("protocol") == "cold-start"


def load_cold_config(path: str | Path) -> ColdBenchmarkConfig:
    """Read and validate a cold-start benchmark YAML (one ConfigError line on any problem)."""
    path = Path(path)
    config = read_config(path, ColdBenchmarkConfig)
    sides = [side for side in (config.cold_users, config.cold_items) if side is not None]
    check_model_names(path, [m.name for side in sides for m in side.models if m.name != RANDOM])
    config.dataset.data_dir = str((path.parent / config.dataset.data_dir).resolve())
    return config


# ---------------------------------------------------------------------------------- scoring
def _factory(entry: ModelEntry, seed: int, threads: int | None) -> Callable[[], Any]:
    from recforge.registry import get_model_class

    cls = get_model_class(entry.name)
    params = {"seed": seed, **entry.params}
    if threads is not None and "threads" in cls.config_class.model_fields:
        params.setdefault("threads", threads)
    return lambda: cls(params)


def ranking_metrics(items: np.ndarray, truth: list[set[str]], item_ids: np.ndarray,
                    n_relevant: np.ndarray) -> dict[str, np.ndarray]:
    """Per-user NDCG@K / Recall@K of top lists (indices into `item_ids`, -1 = empty slot)."""
    hits = np.zeros(items.shape, bool)
    for row, rel in enumerate(truth):
        valid = items[row] >= 0
        hits[row, valid] = np.isin(item_ids[items[row, valid]], list(rel))
    out: dict[str, np.ndarray] = {}
    for k in KS:
        out[f"ndcg@{k}"] = mx.ndcg_at_k(hits[:, :k], n_relevant)
        out[f"recall@{k}"] = mx.recall_at_k(hits[:, :k], n_relevant)
    return out


def _truth(test: Interactions, users: np.ndarray) -> tuple[list[set[str]], np.ndarray]:
    groups = test.to_frame().groupby("user_id")["item_id"].apply(set)
    truth = [groups.get(u, set()) for u in users]
    return truth, np.array([len(t) for t in truth])


Log = Callable[[str], None]


def _given_items(test: Interactions, users: np.ndarray, n: int, order: str,
                 rng: np.random.Generator) -> dict[str, list[str]]:
    """Each user's `n` request-time items: `n` of their test interactions at random (the
    Given-n protocol of Breese, Heckerman & Kadie, UAI 1998) or their first `n` by time."""
    frame = test.to_frame()
    frame["_order"] = rng.random(len(frame)) if order == "random" else np.arange(len(frame))
    sort = ["user_id", "timestamp", "_order"] if order == "first" and "timestamp" in frame.columns \
        else ["user_id", "_order"]
    first = frame.sort_values(sort, kind="stable").groupby("user_id", sort=False).head(n)
    groups = first.groupby("user_id")["item_id"].apply(list)
    return {u: groups.get(u, []) for u in users}


def _rank_cold(model: Any, users: np.ndarray, feats: pd.DataFrame | None,
               given: dict[str, list[str]] | None) -> np.ndarray:
    """(n_users, max K) top items (indices of `model.item_map_`) for users unknown to `model`.

    The library's unknown-user chain ranks them: features (feature models), else the fold-in
    of the given items, else popularity; given items are never recommended.
    """
    lists = model.rank_users(users, k=max(KS), unknown="fallback", events=given, user_features=feats)
    return lists.items


def cold_users(data: Interactions, side: ColdSide, config: ColdBenchmarkConfig, log: Log) -> dict[str, Any]:
    """Rank the training items for every held-out user of every fold; paired per-user metrics.

    With ``side.given`` = [0, n, ...], each model is also asked with n of the user's
    interactions given at request time (`given_order`: random, seeded, or the first n by
    time); those items leave the user's truth. Returns the
    n = 0 summary, plus ``"given": {n: summary}`` for the others.
    """
    givens = sorted(set(side.given))
    per_user: dict[int, dict[str, dict[str, list[np.ndarray]]]] = {
        n: {m.key: {} for m in side.models} for n in givens}
    seconds = dict.fromkeys([m.key for m in side.models], 0.0)
    rng = np.random.default_rng(config.seed)
    folds = cold_user_folds(data, config.folds, config.seed)[:config.max_folds]
    for f, (train, test) in enumerate(folds):
        train = train.compact()
        users = np.unique(test.user_map.to_ids(test.user_idx))
        feats = data.user_features.loc[users] if data.user_features is not None else None
        cases = {}
        for n in givens:
            given = _given_items(test, users, n, side.given_order, rng) if n else None
            truth, n_rel = _truth(test, users)
            if given:
                truth = [t - set(given[u]) for t, u in zip(truth, users, strict=True)]
                n_rel = np.array([len(t) for t in truth])
            cases[n] = (given, truth, n_rel)
        for entry in side.models:
            start = time.perf_counter()
            model = _factory(entry, config.seed, config.threads)().fit(train)
            for n, (given, truth, n_rel) in cases.items():
                items = _rank_cold(model, users, feats, given)
                if n == givens[0]:
                    seconds[entry.key] += time.perf_counter() - start
                for metric, values in ranking_metrics(items, truth, model.item_map_.ids, n_rel).items():
                    per_user[n][entry.key].setdefault(metric, []).append(values)
        log(f"cold users: fold {f + 1}/{len(folds)} ({len(users)} users)")
    out = _summary(per_user[givens[0]], seconds, side.baseline)
    if len(givens) > 1:
        out["given"] = {n: _summary(per_user[n], seconds, side.baseline) for n in givens[1:]}
    return out


def cold_items(data: Interactions, side: ColdSide, config: ColdBenchmarkConfig, log: Log) -> dict[str, Any]:
    """Rank the held-out items for every training user with test interactions; paired metrics."""
    per_user: dict[str, dict[str, list[np.ndarray]]] = {m.key: {} for m in side.models}
    seconds = dict.fromkeys(per_user, 0.0)
    rng = np.random.default_rng(config.seed)
    folds = cold_item_folds(data, config.folds, config.seed)[:config.max_folds]
    for f, (train, test) in enumerate(folds):
        train = train.compact()
        new_items = np.unique(test.item_map.to_ids(test.item_idx))
        frame = test.to_frame()
        users = np.unique(frame["user_id"][frame["user_id"].isin(train.user_map.ids)])
        truth, n_rel = _truth(test, users)
        feats = data.item_features.loc[new_items] if data.item_features is not None else None
        for entry in side.models:
            start = time.perf_counter()
            if entry.name == RANDOM:
                scores = rng.random((len(users), len(new_items)))
            else:
                model = _factory(entry, config.seed, config.threads)().fit(train)
                if model.supports(Capability.COLD_ITEMS) and feats is not None:
                    scores = model.score_new_items(feats, users).to_numpy()
                else:
                    scores = np.zeros((len(users), len(new_items)))  # cannot score unseen items
            seconds[entry.key] += time.perf_counter() - start
            # ties broken at random, so a constant scorer is exactly chance level
            order = top_k(scores, max(KS), tiebreak=-rng.random(scores.shape))[0]
            for metric, values in ranking_metrics(order, truth, new_items, n_rel).items():
                per_user[entry.key].setdefault(metric, []).append(values)
        log(f"cold items: fold {f + 1}/{len(folds)} ({len(new_items)} items, {len(users)} users)")
    return _summary(per_user, seconds, side.baseline)


def _summary(per_user: dict[str, dict[str, list[np.ndarray]]], seconds: dict[str, float],
             baseline: str) -> dict[str, Any]:
    joined = {n: {m: np.concatenate(v) for m, v in d.items()} for n, d in per_user.items()}
    table: dict[str, Any] = {}
    for name, metrics in joined.items():
        row: dict[str, Any] = {m: round(float(np.mean(v)), 4) for m, v in metrics.items()}
        row["seconds"] = round(seconds[name], 1)
        if name != baseline:
            for m in ("ndcg@10", "recall@20"):
                t = paired_test(metrics[m], joined[baseline][m])
                row[f"{m} vs baseline"] = {"diff": round(t.mean_diff, 4), "p_wilcoxon": float(f"{t.p_wilcoxon:.3g}"),
                                           "p_ttest": float(f"{t.p_ttest:.3g}")}
        table[name] = row
    return {"users": len(next(iter(joined.values()))["ndcg@10"]), "baseline": baseline, "models": table}


# ---------------------------------------------------------------------------------- output
def _p(value: Any) -> str:
    if value is None:
        return "—"
    return "< 1e-300" if value == 0 else f"{value:.2g}"


def _diff(test: dict[str, Any]) -> str:
    return f"{test['diff']:+.4f}" if test else "—"


def side_markdown(title: str, result: dict[str, Any]) -> str:
    """A side's table: NDCG@10, Recall@20, their paired differences and p-values vs the baseline."""
    base = result["baseline"]
    lines = [f"**{title}** ({result['users']} users; paired tests against `{base}`)", "",
             "| model | NDCG@10 | Recall@20 | ΔNDCG@10 | p (Wilcoxon) | ΔRecall@20 | p (Wilcoxon) | fit+rank s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in result["models"].items():
        a, b = row.get("ndcg@10 vs baseline", {}), row.get("recall@20 vs baseline", {})
        lines.append(f"| {name} | {row['ndcg@10']:.4f} | {row['recall@20']:.4f} | {_diff(a)} | "
                     f"{_p(a.get('p_wilcoxon'))} | {_diff(b)} | {_p(b.get('p_wilcoxon'))} | {row['seconds']} |")
    return "\n".join(lines)


def given_markdown(result: dict[str, Any]) -> str:
    """NDCG@10 (and its paired p vs the baseline) as request-time items are given to cold users."""
    given = {0: result, **{int(n): r for n, r in result["given"].items()}}
    head = " | ".join(f"{n} given" for n in given)
    lines = [f"**Cold users with n of their interactions given at request time** (NDCG@10 on the rest; "
             f"p: paired Wilcoxon against `{result['baseline']}`)", "",
             f"| model | {head} |", "|---|" + "---|" * len(given)]
    for name in result["models"]:
        cells = []
        for r in given.values():
            row = r["models"][name]
            test = row.get("ndcg@10 vs baseline")
            cells.append(f"{row['ndcg@10']:.4f}" + (f" (p {_p(test['p_wilcoxon'])})" if test else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_markdown(results: dict[str, Any]) -> str:
    """Both sides' tables with the protocol line (what `recforge benchmark` writes as results.md)."""
    parts = [f"Cold start on {results['dataset']}: {results['folds']}-fold, seed {results['seed']}, "
             f"{results['threads']} threads; every fold's held-out users (items) are absent from training."]
    if "cold_users" in results:
        parts.append(side_markdown("Cold users", results["cold_users"]))
        if "given" in results["cold_users"]:
            parts.append(given_markdown(results["cold_users"]))
    if "cold_items" in results:
        parts.append(side_markdown("Cold items", results["cold_items"]))
    return "\n\n".join(parts) + "\n"


def run_cold_benchmark(path: str | Path, out: str | Path, log: Log = print) -> dict[str, Any]:
    """Run a cold-start YAML and write ``results.json`` and ``results.md`` under `out`."""
    import json

    import torch

    from recforge.data.movielens import load_movielens

    config = load_cold_config(path)
    if config.threads:
        torch.set_num_threads(config.threads)
    data = load_movielens(config.dataset.name, data_dir=config.dataset.data_dir)
    results: dict[str, Any] = {"protocol": "cold-start", "dataset": config.dataset.name, "folds": config.folds,
                               "max_folds": config.max_folds, "seed": config.seed,
                               "threads": config.threads or torch.get_num_threads()}
    if config.cold_users is not None:
        results["cold_users"] = cold_users(data, config.cold_users, config, log)
    if config.cold_items is not None:
        results["cold_items"] = cold_items(data, config.cold_items, config, log)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(results_markdown(results))
    return results
