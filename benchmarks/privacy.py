"""Privacy–utility table: NDCG@10 on the ML-100K top-N protocol at ε = 1, 3, 8 and ∞.

DP-SGD models (mf, multvae; user-level, δ = 1/(10·users), RDP accountant) and ε-DP
popularity counts (Laplace) are trained on ``topn_train.tsv`` and ranked for the users of
``topn_test.tsv``, excluding training items. ε = ∞ is the usual (non-private) training with
the same settings. Torch threads = 1. Writes results.json and results.md under --out::

    PYTHONPATH=src python benchmarks/privacy.py --out benchmarks/results/privacy
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recforge.data.files import load_file
from recforge.evaluation.evaluate import evaluate_topn
from recforge.registry import create_model

ROOT = Path(__file__).resolve().parents[2] / "shared"
#: DP runs need no early stopping (refused under DP) and fixed epochs: the non-DP row uses
#: the same settings, so the gap is the price of the noise and clipping alone
SETTINGS: dict[str, dict[str, Any]] = {
    "mf": {"device": "cpu", "threads": 1},
    "multvae": {"device": "cpu", "threads": 1},
    "popularity": {},
}
#: settings of the DP runs only: Opacus materialises a per-user gradient of each Linear layer
#: (256 users × 600 × 1682 floats for Mult-VAE's first and last layer: over 7 s a step on a
#: shared 2-core machine), so Mult-VAE's DP runs take a 100-unit hidden layer, a 50-unit
#: latent and 10 epochs (40 steps; fewer steps also need less noise per step)
DP_SETTINGS: dict[str, dict[str, Any]] = {"multvae": {"epochs": 10, "hidden_dims": [100], "latent_dim": 50}}


def run(name: str, epsilon: float, train: Any, test: Any) -> dict[str, Any]:
    """Fit one model at one ε and score it."""
    params = dict(SETTINGS[name])
    if math.isfinite(epsilon):
        params.update(DP_SETTINGS.get(name, {}), dp_epsilon=epsilon)
    start = time.perf_counter()
    model = create_model(name, params).fit(train)
    seconds = time.perf_counter() - start
    result = evaluate_topn(model, test, ks=(10,), beyond_accuracy=False)
    report = getattr(model, "privacy_", None)
    row = {"model": name, "epsilon": "inf" if not math.isfinite(epsilon) else epsilon,
           "ndcg@10": round(float(result.metrics["ndcg@10"]), 4),
           "recall@10": round(float(result.metrics["recall@10"]), 4), "fit_seconds": round(seconds, 1),
           "spent_epsilon": None if report is None else round(report.epsilon, 3),
           "delta": None if report is None else report.delta,
           "noise": None if report is None else round(report.noise_multiplier, 3)}
    print(row, flush=True)
    return row


def markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """The table: one row per model, one column per ε."""
    eps = ["1.0", "3.0", "8.0", "inf"]
    lines = [
        "**Privacy–utility on ML-100K (top-N protocol, NDCG@10)**", "",
        f"Train topn_train.tsv, test topn_test.tsv ({info['test_users']} users), training items excluded; "
        "torch threads = 1. DP-SGD: user-level, Poisson sampling (256 expected users per step), "
        "clip C = 1, δ = 1/(10·users), RDP accountant. Popularity: Laplace counts, ≤ 50 items per user. "
        "ε = ∞: the model's defaults without DP (Mult-VAE's DP runs: hidden 100, latent 50, 10 epochs).", "",
        "| model | ε = 1 | ε = 3 | ε = 8 | ε = ∞ |", "|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["model"] for r in rows):
        cells = {str(r["epsilon"]): r for r in rows if r["model"] == name}
        lines.append(f"| {name} | " + " | ".join(
            f"{cells[e]['ndcg@10']:.4f}" if e in cells else "–" for e in eps) + " |")
    lines += ["", "Spent ε (accountant) per run is in results.json.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench-dir", default=str(ROOT / "bench/ml-100k"))
    parser.add_argument("--models", default="popularity,mf,multvae")
    parser.add_argument("--epsilons", default="1,3,8,inf")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    bench = Path(args.bench_dir)
    train, test = load_file(bench / "topn_train.tsv"), load_file(bench / "topn_test.tsv")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = args.models.split(",")
    # rows of other models from an earlier run are kept (a table can be completed model by model)
    earlier = json.loads((out / "results.json").read_text())["rows"] if (out / "results.json").exists() else []
    rows = [r for r in earlier if r["model"] not in models]
    info = {"test_users": len(np.unique(test.user_idx)), "torch_threads": 1, "torch": torch.__version__}
    result = {"info": info, "rows": rows}
    for name in models:
        for e in args.epsilons.split(","):
            rows.append(run(name, float(e), train, test))
            (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")  # after each run
            (out / "results.md").write_text(markdown(rows, info))
    return result


if __name__ == "__main__":
    main()
