"""Federated vs centralized MF on the ML-100K top-N protocol (NDCG@10).

Centralized: the ``mf`` model with its defaults. Federated: `FederatedMF` (FedAvg over
per-user clients; user vectors and interactions stay on the clients, only item-side
changes travel), without and with clipping + Gaussian noise (DP-FedAvg, user-level ε from
the RDP accountant). Torch threads = 1. Writes results.json and results.md under --out::

    PYTHONPATH=src python benchmarks/federated.py --out benchmarks/results/federated
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recforge.data.files import load_file
from recforge.evaluation.evaluate import evaluate_topn
from recforge.models.base import Recommender
from recforge.privacy.federated import FederatedConfig, FederatedMF
from recforge.registry import create_model

ROOT = Path(__file__).resolve().parents[2] / "shared"
#: the federated MF's own settings (dimension 32, wider initialisation than the centralized 0.01)
FED_MF = {"embedding_dim": 32, "init_std": 0.1}
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("FedAvg", {}),
    ("FedAvg, clip 1", {"clip": 1.0}),
    ("DP-FedAvg, clip 1, σ = 1", {"clip": 1.0, "noise_multiplier": 1.0}),
]


def score(label: str, model: Recommender, test: Any, seconds: float) -> dict[str, Any]:
    """NDCG@10 and recall@10 of a fitted model, as a row."""
    result = evaluate_topn(model, test, ks=(10,), beyond_accuracy=False)
    report = getattr(model, "privacy_", None)
    row = {"variant": label, "ndcg@10": round(float(result.metrics["ndcg@10"]), 4),
           "recall@10": round(float(result.metrics["recall@10"]), 4), "fit_seconds": round(seconds, 1),
           "epsilon": None if report is None else round(report.epsilon, 2),
           "delta": None if report is None else report.delta}
    print(row, flush=True)
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench-dir", default=str(ROOT / "bench/ml-100k"))
    parser.add_argument("--rounds", type=int, default=FederatedConfig().rounds)
    parser.add_argument("--central-from", default=None,
                        help="a privacy results.json: reuse its ε = ∞ mf row (same settings)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    bench = Path(args.bench_dir)
    train, test = load_file(bench / "topn_train.tsv"), load_file(bench / "topn_test.tsv")
    if args.central_from:
        done = json.loads(Path(args.central_from).read_text())["rows"]
        row = next(r for r in done if r["model"] == "mf" and r["epsilon"] == "inf")
        rows = [{"variant": "centralized mf (defaults)", "ndcg@10": row["ndcg@10"], "recall@10": row["recall@10"],
                 "fit_seconds": row["fit_seconds"], "epsilon": None, "delta": None}]
    else:
        start = time.perf_counter()
        central = create_model("mf", {"device": "cpu", "threads": 1}).fit(train)
        rows = [score("centralized mf (defaults)", central, test, time.perf_counter() - start)]
    for label, fed in VARIANTS:
        start = time.perf_counter()
        model = FederatedMF(FED_MF, federated=FederatedConfig(rounds=args.rounds, **fed)).fit(train)
        rows.append(score(label, model, test, time.perf_counter() - start))
    cfg = FederatedConfig(rounds=args.rounds)
    info = {"test_users": len(np.unique(test.user_idx)), "rounds": cfg.rounds,
            "clients_per_round": cfg.clients_per_round, "local_steps": cfg.local_steps,
            "client_lr": cfg.client_lr, "torch_threads": 1}
    lines = ["**Federated vs centralized MF on ML-100K (top-N protocol)**", "",
             f"Train topn_train.tsv, test topn_test.tsv ({info['test_users']} users), training items excluded. "
             f"Federated: one client per user, {cfg.rounds} rounds of {cfg.clients_per_round} clients, "
             f"{cfg.local_steps} local full-softmax steps (lr {cfg.client_lr}), dimension 32; only item-side "
             "changes leave a client; each client fits its own final vector locally.", "",
             "| variant | NDCG@10 | recall@10 | user-level ε (δ) | fit s |", "|---|---|---|---|---|"]
    for r in rows:
        eps = "–" if r["epsilon"] is None else f"{r['epsilon']} ({r['delta']:.1g})"
        lines.append(f"| {r['variant']} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | {eps} | {r['fit_seconds']} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"info": info, "rows": rows}
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    main()
