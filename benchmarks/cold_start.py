"""Cold-start benchmark on MovieLens-100K: cold users and cold items, NDCG@10 / Recall@20.

The YAML benchmark runner splits per user and ranks known users only, so it cannot express
cold splits; this script does. Protocol (k-fold over users, then over items; seeded):

* **cold users** — `cold_user_folds`: each fold holds out 20 % of the users with all their
  interactions; models train on the rest (``train.compact()``: the held-out users are not in
  the ID space) and rank every training item for each held-out user from their demographics
  alone (``recommend_cold``; `popularity` gives its global list). Every user is held out once,
  so the per-user vectors of all folds are paired across models (943 users).
* **cold items** — `cold_item_folds`: 20 % of the items leave training entirely; for each
  training user with test interactions, the held-out items (only those) are ranked from their
  features (``score_new_items``). CF models cannot score them at all; `random` is the
  chance level (seeded).

Metrics follow PROTOCOL.md (binary relevance, every rating an interaction, test items
unreachable by the model stay in the denominator). Paired tests: `paired_test` (Wilcoxon
and t) of each model against demographic popularity (users) / random (items).

Run::

    python benchmarks/cold_start.py --data-dir ../shared/data/ml-100k --folds 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recforge.data.cold import cold_item_folds, cold_user_folds
from recforge.data.interactions import Interactions
from recforge.data.movielens import load_movielens
from recforge.evaluation import metrics as mx
from recforge.evaluation.stats import paired_test

KS = (10, 20)


def model_factories(threads: int | None, epochs: int) -> dict[str, Any]:
    """Name → zero-argument factory of the compared models (fixed settings, no tuning on test)."""
    from recforge.models.content import ContentBased, DemographicPopularity
    from recforge.models.hybrid import Hybrid
    from recforge.models.popularity import Popularity
    from recforge.models.two_tower import TwoTower

    tt = {"epochs": epochs, "threads": threads, "device": "cpu"}
    return {
        "popularity": lambda: Popularity(),
        "demographic_popularity": lambda: DemographicPopularity(),
        "content": lambda: ContentBased(),
        "two_tower": lambda: TwoTower(**tt),
        "hybrid": lambda: Hybrid(cf_model="ease", feature_model="two_tower", feature_config=tt),
    }


def ranking(items: np.ndarray, truth: list[set[str]], item_ids: np.ndarray,
            n_relevant: np.ndarray) -> dict[str, np.ndarray]:
    """Per-user NDCG@K / Recall@K of top lists (item indices into `item_ids`, -1 = empty)."""
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
    frame = test.to_frame()
    groups = frame.groupby("user_id")["item_id"].apply(set)
    truth = [groups.get(u, set()) for u in users]
    return truth, np.array([len(t) for t in truth])


def cold_users(data: Interactions, factories: dict[str, Any], folds: int, seed: int,
               max_folds: int | None = None) -> dict[str, Any]:
    per_user: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in factories}
    seconds: dict[str, float] = dict.fromkeys(factories, 0.0)
    for f, (train, test) in enumerate(cold_user_folds(data, folds, seed)[:max_folds]):
        train = train.compact()
        users = np.unique(test.user_map.to_ids(test.user_idx))
        truth, n_rel = _truth(test, users)
        feats = data.user_features.loc[users]
        for name, make in factories.items():
            start = time.perf_counter()
            model = make().fit(train)
            if hasattr(model, "recommend_cold"):
                recs = model.recommend_cold(feats, k=max(KS))
            else:
                recs = model.recommend(users, k=max(KS), unknown="popular")
            seconds[name] += time.perf_counter() - start
            print(f"  {name}: {time.perf_counter() - start:.1f}s", flush=True)
            items = _lists(recs, users, model.item_map_)
            for metric, values in ranking(items, truth, model.item_map_.ids, n_rel).items():
                per_user[name].setdefault(metric, []).append(values)
        print(f"cold users: fold {f + 1}/{folds} done ({len(users)} users)", flush=True)
    return _summary(per_user, seconds, "demographic_popularity")


def cold_items(data: Interactions, factories: dict[str, Any], folds: int, seed: int,
               max_folds: int | None = None) -> dict[str, Any]:
    names = ["random", *[n for n in factories if n != "demographic_popularity"]]
    per_user: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in names}
    seconds: dict[str, float] = dict.fromkeys(names, 0.0)
    rng = np.random.default_rng(seed)
    for f, (train, test) in enumerate(cold_item_folds(data, folds, seed)[:max_folds]):
        train = train.compact()
        new_items = np.unique(test.item_map.to_ids(test.item_idx))
        test_frame = test.to_frame()
        users = np.unique(test_frame["user_id"][test_frame["user_id"].isin(train.user_map.ids)])
        truth, n_rel = _truth(test, users)
        feats = data.item_features.loc[new_items]
        for name in names:
            start = time.perf_counter()
            if name == "random":
                scores = rng.random((len(users), len(new_items)))
            else:
                model = factories[name]().fit(train)
                if not hasattr(model, "score_new_items"):
                    # a CF model has no score for an item it never saw: every new item ties
                    scores = np.zeros((len(users), len(new_items)))
                else:
                    scores = model.score_new_items(feats, users).to_numpy()
            seconds[name] += time.perf_counter() - start
            k = max(KS)
            # ties broken at random so a constant scorer is exactly chance level
            order = np.lexsort((rng.random(scores.shape), -scores), axis=1)[:, :k]
            for metric, values in ranking(order, truth, new_items, n_rel).items():
                per_user[name].setdefault(metric, []).append(values)
        print(f"cold items: fold {f + 1}/{folds} done ({len(new_items)} items, {len(users)} users)", flush=True)
    return _summary(per_user, seconds, "random")


def _lists(recs: pd.DataFrame, users: np.ndarray, item_map: Any) -> np.ndarray:
    items = np.full((len(users), max(KS)), -1, np.int64)
    row = pd.Index(users).get_indexer(recs["user_id"].astype(str))
    items[row, recs["rank"].to_numpy() - 1] = item_map.lookup(recs["item_id"].to_numpy())
    return items


def _summary(per_user: dict[str, dict[str, list[np.ndarray]]], seconds: dict[str, float],
             baseline: str) -> dict[str, Any]:
    joined = {n: {m: np.concatenate(v) for m, v in d.items()} for n, d in per_user.items()}
    table = {}
    for name, metrics in joined.items():
        row: dict[str, Any] = {m: round(float(np.mean(v)), 4) for m, v in metrics.items()}
        row["seconds"] = round(seconds[name], 1)
        if name != baseline:
            for m in ("ndcg@10", "recall@20"):
                t = paired_test(metrics[m], joined[baseline][m])
                row[f"{m} vs {baseline}"] = {"diff": round(t.mean_diff, 4), "p_wilcoxon": float(f"{t.p_wilcoxon:.3g}"),
                                              "p_ttest": float(f"{t.p_ttest:.3g}")}
        table[name] = row
    return {"users": len(next(iter(joined.values()))["ndcg@10"]), "baseline": baseline, "models": table}


def _markdown(title: str, result: dict[str, Any]) -> str:
    base = result["baseline"]
    lines = [f"### {title} ({result['users']} users; paired tests vs {base})", "",
             "| model | NDCG@10 | Recall@20 | p (NDCG@10, Wilcoxon) | p (Recall@20, Wilcoxon) | fit+rank s |",
             "|---|---|---|---|---|---|"]
    for name, row in result["models"].items():
        p1 = row.get(f"ndcg@10 vs {base}", {}).get("p_wilcoxon", "—")
        p2 = row.get(f"recall@20 vs {base}", {}).get("p_wilcoxon", "—")
        lines.append(f"| {name} | {row['ndcg@10']:.4f} | {row['recall@20']:.4f} | {p1} | {p2} | {row['seconds']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/ml-100k"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-folds", type=int, default=None, help="evaluate only the first N folds")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--models", default="", help="comma-separated subset of the models")
    parser.add_argument("--side", choices=["users", "items", "both"], default="both")
    parser.add_argument("--out", default="", help="write the JSON result here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    data = load_movielens("movielens-100k", data_dir=args.data_dir)
    factories = model_factories(args.threads, args.epochs)
    if args.models:
        keep = set(args.models.split(","))
        factories = {n: f for n, f in factories.items() if n in keep or n == "demographic_popularity"}
    result: dict[str, Any] = {"folds": args.folds, "seed": args.seed, "threads": args.threads}
    if args.side in ("users", "both"):
        result["cold_users"] = cold_users(data, factories, args.folds, args.seed, args.max_folds)
        print(_markdown("Cold users", result["cold_users"]), flush=True)
    if args.side in ("items", "both"):
        result["cold_items"] = cold_items(data, factories, args.folds, args.seed, args.max_folds)
        print(_markdown("Cold items", result["cold_items"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
