"""ANN retrieval on a big synthetic catalog: recall@20 against exact, build time, memory, latency.

Writes a seeded synthetic iALS artifact (clustered user and item factors, `--dim` factors,
item norms spread like popularity, `--seen` training items per user drawn from the user's
own cluster so that exclusions hit items that rank high), adds an index to it
(`Recommender.build_index`, as ``recforge index`` does), saves and loads it back, then measures

- recall@20 of the indexed lists against exact lists (`exact=True`) over `--eval-users` users,
  seen items excluded in both;
- index build time and memory (the serialized index's bytes, and the process's peak RSS
  growth while building);
- single-client latency of one recommendation (`Recommender.recommend` for one raw user ID,
  k=20, seen items excluded), p50/p99 over `--requests` requests, indexed and exact.

    python benchmarks/ann.py --items 1000000 --threads 2
    python benchmarks/ann.py --items 1700 --threads 2

Prints one JSON object (and appends it to `--out` as one line when given).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_artifact(path: Path, n_users: int, n_items: int, dim: int, seen: int, seed: int = 0) -> Path:
    """An iALS artifact with clustered random factors (no training: the catalog is the point)."""
    import scipy.sparse as sp

    from recforge.models import artifact
    from recforge.registry import create_model

    rng = np.random.default_rng(seed)
    clusters = max(8, int(np.sqrt(n_items) / 4))
    centers = rng.normal(0, 1, (clusters, dim)).astype(np.float32)
    item_cluster = rng.integers(0, clusters, n_items)
    items = np.empty((n_items, dim), np.float32)
    for start in range(0, n_items, 1 << 17):
        part = slice(start, start + (1 << 17))
        noise = rng.normal(0, 1, (len(item_cluster[part]), dim)).astype(np.float32)
        norm = rng.lognormal(0, 0.25, len(noise)).astype(np.float32)[:, None]
        items[part] = (centers[item_cluster[part]] + noise) * norm / np.sqrt(dim)
    user_cluster = rng.integers(0, clusters, n_users)
    users = (centers[user_cluster] + rng.normal(0, 1, (n_users, dim))).astype(np.float32) / np.sqrt(dim)
    order = np.argsort(item_cluster, kind="stable")
    bounds = np.searchsorted(item_cluster[order], np.arange(clusters + 1))
    rows = []
    for c in user_cluster:
        pool = order[bounds[c]:bounds[c + 1]]
        rows.append(np.unique(rng.choice(pool, min(seen, len(pool)), replace=False)) if len(pool) else pool)
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    seen_matrix = sp.csr_matrix((np.ones(indptr[-1], np.float32), np.concatenate(rows), indptr),
                                shape=(n_users, n_items))
    model = create_model("ials", embedding_dim=dim)
    path.mkdir(parents=True, exist_ok=True)
    artifact.write_json(path / "config.json", model.config.model_dump(mode="json"))
    artifact.write_json(path / "user_ids.json", [f"u{u}" for u in range(n_users)])
    artifact.write_json(path / "item_ids.json", [f"i{i}" for i in range(n_items)])
    artifact.write_npz(path / "weights.npz", {"user_factors": users, "item_factors": items,
                                              "alpha": np.array(1.0)})
    popularity = np.bincount(seen_matrix.indices, minlength=n_items).astype(np.float32)
    artifact.write_npz(path / "train.npz", {"indptr": seen_matrix.indptr, "indices": seen_matrix.indices,
                                            "item_popularity": popularity})
    artifact.finalize(path, {"model": "ials", "recforge_version": "benchmark", "fingerprint": f"synthetic-{seed}",
                             "created": "", "task": "topn", "n_users": n_users, "n_items": n_items,
                             "rating_scale": None, "global_mean": 0.0, "fit_seconds": 0.0, "parts": []})
    return path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _latency(model, user_ids: list[str], exact: bool) -> dict[str, float]:
    for u in user_ids[:5]:  # warm-up
        model.recommend(u, 20, exact=exact)
    times = []
    for u in user_ids:
        start = time.perf_counter()
        model.recommend(u, 20, exact=exact)
        times.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p99_ms": round(float(np.percentile(times, 99)), 2)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seen", type=int, default=50, help="training items per user (excluded)")
    parser.add_argument("--kind", default="hnsw", choices=["hnsw", "ivf", "flat"])
    parser.add_argument("--m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="faiss/BLAS threads while building")
    parser.add_argument("--eval-users", type=int, default=200)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import faiss
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # ships no types

    from recforge.registry import load_model

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = synthetic_artifact(Path(tmp) / "plain", args.users, args.items, args.dim, args.seen)
        make_seconds = time.perf_counter() - start
        model = load_model(path)
        params = {"hnsw": {"m": args.m, "ef_construction": args.ef_construction, "ef_search": args.ef_search},
                  "ivf": {"nprobe": args.nprobe}, "flat": {}}[args.kind]
        rss_before = _rss_mb()
        start = time.perf_counter()
        index = model.build_index(args.kind, **params)
        build_seconds = time.perf_counter() - start
        rss_growth = _rss_mb() - rss_before
        index_mb = len(index.to_bytes()) / 1e6
        model = load_model(model.save(Path(tmp) / "indexed"))  # what a service loads
        users = rng.choice(args.users, min(args.eval_users, args.users), replace=False)
        with threadpool_limits(args.threads, user_api="blas"):
            exact, _ = model.recommend_idx(users, 20, exact=True)
        approx, _ = model.recommend_idx(users, 20)
        recall = float(np.mean([len(np.intersect1d(a, e)) / 20 for a, e in zip(approx, exact, strict=True)]))
        ids = [f"u{u}" for u in rng.choice(args.users, args.requests)]
        faiss.omp_set_num_threads(1)
        with threadpool_limits(1, user_api="blas"):
            ann_latency = _latency(model, ids, exact=False)
            exact_latency = _latency(model, ids[: max(20, args.requests // 5)], exact=True)
    result = {
        "items": args.items, "users": args.users, "dim": args.dim, "seen_per_user": args.seen, "kind": args.kind,
        "params": index.params, "recall_at_20": round(recall, 4), "build_seconds": round(build_seconds, 1),
        "build_threads": args.threads, "index_mb": round(index_mb, 1),
        "item_vectors_mb": round(args.items * (args.dim * 4) / 1e6, 1),
        "peak_rss_growth_while_building_mb": round(rss_growth, 1),
        "latency_ann_1_thread": ann_latency, "latency_exact_1_thread": exact_latency,
        "requests": args.requests, "artifact_seconds": round(make_seconds, 1),
    }
    print(json.dumps(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as fh:
            fh.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
