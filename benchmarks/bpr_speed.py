"""BPR seconds per epoch: recforge's `bpr` against implicit's, back to back on one synthetic log.

Generates the seeded synthetic log (`recforge.data.synthetic`, default 1M interactions, 50k
users × 26.7k items), then per repeat trains recforge's `bpr` and implicit's CPU
`BayesianPersonalizedRanking` for `--epochs` epochs each (64 factors, the same threads;
the pair's order alternates between repeats) and prints seconds per epoch (whole `fit`
divided by the epochs: setup included for both) and the ratio. One epoch is one sampled
(user, positive, negative) triple per interaction for both. Needs ``pip install implicit``.

    python benchmarks/bpr_speed.py --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=float, default=1e6)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=26_700)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from implicit.cpu.bpr import BayesianPersonalizedRanking

    from recforge.data.synthetic import make_synthetic
    from recforge.registry import create_model

    data = make_synthetic(args.users, args.items, int(args.interactions), seed=0, with_features=False)
    csr = data.csr(binary=True)
    settings = {"embedding_dim": 64, "epochs": args.epochs, "threads": args.threads}
    create_model("bpr", {**settings, "epochs": 1}).fit(data)  # compile (or load the cached kernel)

    def ours() -> float:
        start = time.perf_counter()
        create_model("bpr", settings).fit(data)
        return (time.perf_counter() - start) / args.epochs

    def theirs() -> float:
        model = BayesianPersonalizedRanking(factors=64, iterations=args.epochs, num_threads=args.threads,
                                            random_state=0)
        start = time.perf_counter()
        model.fit(csr, show_progress=False)
        return (time.perf_counter() - start) / args.epochs

    rows = []
    for rep in range(args.repeats):
        pair = (ours, theirs) if rep % 2 == 0 else (theirs, ours)
        times = {fn.__name__: fn() for fn in pair}
        row = {"recforge_s_per_epoch": round(times["ours"], 4), "implicit_s_per_epoch": round(times["theirs"], 4),
               "ratio": round(times["ours"] / times["theirs"], 3)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    summary = {"interactions": len(data), "users": data.n_users, "items": data.n_items, "threads": args.threads,
               "epochs": args.epochs, "median_ratio": statistics.median(r["ratio"] for r in rows),
               "median_recforge": statistics.median(r["recforge_s_per_epoch"] for r in rows),
               "median_implicit": statistics.median(r["implicit_s_per_epoch"] for r in rows)}
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
