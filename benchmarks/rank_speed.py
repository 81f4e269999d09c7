"""All-user top-k of a factor model against its floor (the score GEMM alone) and `implicit`.

The same factors are ranked three ways in one process, interleaved and repeated, on the
same threads: the GEMM alone in blocks (the floor: no ranking at all), recforge's
`recommend_idx` for every user (seen items excluded), and implicit's `recommend` for every
user when implicit is installed. Ratios are to the floor and to implicit measured in the same
sitting; the machine's load average is printed with them.

    python benchmarks/rank_speed.py --interactions 1e6 --users 50000 --items 26700 --threads 2
    python benchmarks/rank_speed.py --data log.npz --threads 2 --repeats 5

`speed.py` (or any script) can call `ranking_timings(user_factors, item_factors, seen, ...)`
with a fitted model's factors, or `rank_all_users_timings(model, threads=...)` with a fitted
recforge factor model (``user_factors_`` / ``item_factors_``). `gemm_floor_seconds` is the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

#: users per GEMM block of the floor (the blocks of recforge's ranking pipeline at most)
FLOOR_BLOCK_ROWS = 256


def gemm_floor_seconds(user_factors: np.ndarray, item_factors: np.ndarray, threads: int,
                       block_rows: int = FLOOR_BLOCK_ROWS) -> dict[str, float]:
    """Seconds of the float32 users × items product alone, in row blocks, two ways.

    ``pooled``: blocks on `threads` threads with one BLAS thread each, each thread writing
    into one reused block (how recforge runs it); ``blas``: blocks one after another with
    BLAS on `threads` threads, one reused block. ``floor`` is the faster of the two.
    """
    import threading

    from threadpoolctl import threadpool_limits

    from recforge import resources

    U = np.ascontiguousarray(user_factors, np.float32)
    Vt = np.ascontiguousarray(item_factors, np.float32).T
    starts = range(0, len(U), block_rows)
    buffers = threading.local()

    def block(start: int) -> None:
        rows = U[start:start + block_rows]
        out = getattr(buffers, "out", None)
        if out is None:
            out = buffers.out = np.empty((block_rows, Vt.shape[1]), np.float32)
        np.matmul(rows, Vt, out=out[:len(rows)])

    with threadpool_limits(1, user_api="blas"), resources.limits(threads=threads):
        t0, c0 = time.perf_counter(), time.process_time()
        resources.parallel_map(block, starts, threads)
        pooled, pooled_cpu = time.perf_counter() - t0, time.process_time() - c0
    buffers = threading.local()
    with threadpool_limits(threads, user_api="blas"):
        t0 = time.perf_counter()
        for start in starts:
            block(start)
        blas = time.perf_counter() - t0
    return {"pooled": pooled, "blas": blas, "floor": min(pooled, blas), "pooled_cpu": pooled_cpu}


class FactorModel:
    """Stand-in for a fitted factor model (score = user_factors_[u] @ item_factors_.T).

    It ranks through `Recommender.recommend_idx` like any model that returns its factors from
    `Recommender.score_factors` (iALS does once it overrides it).
    """

    @staticmethod
    def build(user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix) -> Any:
        from recforge.data.interactions import IdMap
        from recforge.models.ials import ImplicitALS

        class _Factors(ImplicitALS):
            def score_factors(self, user_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                return self.user_factors_[user_idx], self.item_factors_

        model = _Factors(embedding_dim=user_factors.shape[1])
        model.user_map_ = IdMap(np.arange(seen.shape[0]).astype(str))
        model.item_map_ = IdMap(np.arange(seen.shape[1]).astype(str))
        model.seen_ = seen
        model.user_factors_ = np.ascontiguousarray(user_factors, np.float32)
        model.item_factors_ = np.ascontiguousarray(item_factors, np.float32)
        model._fitted = True
        return model


def ranking_timings(user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix, k: int = 20,
                    threads: int = 2, repeats: int = 3) -> dict[str, Any]:
    """Floor, recforge and implicit seconds for the top-`k` of every user, interleaved.

    Returns the median seconds of each (and every run), and the ratios recforge / floor and
    recforge / implicit. recforge ranks through `FactorModel` holding these factors.
    """
    return rank_all_users_timings(FactorModel.build(user_factors, item_factors, seen), k=k, threads=threads,
                                  repeats=repeats)


def rank_all_users_timings(model: Any, k: int = 20, threads: int = 2, repeats: int = 3) -> dict[str, Any]:
    """`ranking_timings` for a fitted recforge factor model (``user_factors_``/``item_factors_``)."""
    from threadpoolctl import threadpool_limits

    from recforge import resources

    U, V = model.user_factors_, model.item_factors_
    users = np.arange(model.n_users)
    runs: dict[str, list[float]] = {"floor": [], "floor_pooled": [], "floor_blas": [], "recforge": [],
                                    "floor_pooled_cpu": [], "recforge_cpu": []}
    recommend_implicit = _implicit_recommender(U, V, model.seen_, k, threads)
    if recommend_implicit is not None:
        runs["implicit"] = []

    def recforge() -> None:
        with resources.limits(threads=threads), threadpool_limits(threads, user_api="blas"):
            model.recommend_idx(users, k)

    recforge()  # compiles (or loads) the kernel
    for _ in range(repeats):
        floor = gemm_floor_seconds(U, V, threads)
        runs["floor"].append(floor["floor"])
        runs["floor_pooled"].append(floor["pooled"])
        runs["floor_blas"].append(floor["blas"])
        runs["floor_pooled_cpu"].append(floor["pooled_cpu"])
        c0 = time.process_time()
        runs["recforge"].append(_seconds(recforge))
        runs["recforge_cpu"].append(time.process_time() - c0)
        if recommend_implicit is not None:
            runs["implicit"].append(_seconds(recommend_implicit))
    med = {name: statistics.median(values) for name, values in runs.items()}
    out: dict[str, Any] = {"users": int(model.n_users), "items": int(model.n_items), "k": k,
                           "threads": threads, "factors": int(U.shape[1]), "repeats": repeats,
                           "seconds": med, "runs": runs,
                           "recforge_over_floor": med["recforge"] / med["floor"],
                           "recforge_over_floor_cpu": med["recforge_cpu"] / med["floor_pooled_cpu"],
                           "load_average": os.getloadavg()[0]}
    if "implicit" in med:
        out["recforge_over_implicit"] = med["recforge"] / med["implicit"]
    return out


def _seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _implicit_recommender(U: np.ndarray, V: np.ndarray, seen: sp.csr_matrix, k: int,
                          threads: int) -> Callable[[], Any] | None:
    """implicit's all-user `recommend` on the same factors (None when implicit is missing)."""
    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError:
        return None
    from threadpoolctl import threadpool_limits

    als = AlternatingLeastSquares(factors=U.shape[1], num_threads=threads)
    als.user_factors = np.ascontiguousarray(U, np.float32)
    als.item_factors = np.ascontiguousarray(V, np.float32)
    users = np.arange(U.shape[0])
    liked = sp.csr_matrix(seen, dtype=np.float32)

    def run() -> None:
        with threadpool_limits(threads, user_api="blas"):
            als.recommend(users, liked, N=k, filter_already_liked_items=True)

    return run


def _load(args: argparse.Namespace) -> sp.csr_matrix:
    if args.data:
        arrays = np.load(args.data)
        users, items = arrays["user_idx"], arrays["item_idx"]
        shape = (int(arrays["n_users"]), int(arrays["n_items"]))
    else:
        from recforge.data.synthetic import make_synthetic

        data = make_synthetic(args.users, args.items, int(float(args.interactions)), seed=0, with_features=False)
        users, items, shape = data.user_idx, data.item_idx, (data.n_users, data.n_items)
    seen = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape)
    seen.sum_duplicates()
    seen.data[:] = 1.0
    return seen


def _factors(seen: sp.csr_matrix, dim: int, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random factors, or a few iALS iterations (realistic: seen items score high)."""
    rng = np.random.default_rng(0)
    if how == "random":
        return (rng.normal(0, 0.3, (seen.shape[0], dim)).astype(np.float32),
                rng.normal(0, 0.3, (seen.shape[1], dim)).astype(np.float32))
    from recforge.data.interactions import IdMap, Interactions
    from recforge.models.ials import ImplicitALS

    coo = seen.tocoo()
    data = Interactions(user_map=IdMap(np.arange(seen.shape[0]).astype(str)),
                        item_map=IdMap(np.arange(seen.shape[1]).astype(str)),
                        user_idx=coo.row.astype(np.int32), item_idx=coo.col.astype(np.int32))
    model = ImplicitALS(embedding_dim=dim, epochs=2).fit(data)
    return model.user_factors_, model.item_factors_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="an .npz with user_idx, item_idx, n_users, n_items (else synthetic)")
    parser.add_argument("--interactions", default="1e6")
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=26_700)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--init", choices=["als", "random"], default="als")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the result here too")
    args = parser.parse_args()
    seen = _load(args)
    U, V = _factors(seen, args.factors, args.init)
    result = ranking_timings(U, V, seen, k=args.k, threads=args.threads, repeats=args.repeats)
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
