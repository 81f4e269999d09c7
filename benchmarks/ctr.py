"""Feature classifiers on MovieLens-100K u1: "will this user rate this item >= 4?".

DeepFM and Wide&Deep (default settings) train on the rated pairs of ``u1.base`` with the
user demographics and item genres/year/title as feature fields, then give a probability
for every rated pair of ``u1.test``; positives are ratings >= 4. Reports AUC, accuracy (at
p = 0.5), log loss and fit time, and writes ``results.json`` / ``results.md`` for the
README section ``ctr``:

    python benchmarks/ctr.py --out benchmarks/results/ml100k-ctr
    python -m recforge.evaluation.report --readme README.md --results benchmarks/results/ml100k-ctr --section ctr
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recforge.data.interactions import Interactions
from recforge.data.movielens import load_movielens
from recforge.evaluation import metrics as mx

ROOT = Path(__file__).resolve().parents[2] / "shared"
COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT / "data/ml-100k"), help="raw ML-100K (features)")
    parser.add_argument("--bench-dir", default=str(ROOT / "bench/ml-100k"), help="u1.base / u1.test")
    parser.add_argument("--models", default="deepfm,widedeep")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    from recforge.registry import create_model

    raw = load_movielens("movielens-100k", data_dir=args.data_dir)
    base = pd.read_csv(Path(args.bench_dir) / "u1.base", sep="\t", names=COLUMNS)
    test = pd.read_csv(Path(args.bench_dir) / "u1.test", sep="\t", names=COLUMNS)
    train = Interactions.from_frame(base, user_features=raw.user_features, item_features=raw.item_features)
    y = (test["rating"] >= 4).to_numpy()
    rows = {}
    for name in args.models.split(","):
        start = time.perf_counter()
        model = create_model(name, {"threads": args.threads, "device": "cpu"}).fit(train)
        fit_s = time.perf_counter() - start
        prob = np.asarray(model.predict_proba(test["user_id"].astype(str), test["item_id"].astype(str)))
        rows[name] = {"auc": round(mx.auc_roc(y, prob), 4), "accuracy": round(mx.accuracy(y, prob >= 0.5), 4),
                      "log_loss": round(mx.log_loss(y, prob), 4), "fit_s": round(fit_s, 1)}
        print(name, rows[name], flush=True)
    result = {"dataset": "ml-100k u1", "positives": float(y.mean()), "test_pairs": len(y),
              "threads": args.threads, "models": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"u1.test: {len(y)} rated pairs, {y.mean():.1%} rated >= 4; default settings, "
             f"{args.threads} torch threads.", "",
             "| model | AUC | accuracy | log loss | fit s |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {n} | {r['auc']:.4f} | {r['accuracy']:.4f} | {r['log_loss']:.4f} | {r['fit_s']} |"
              for n, r in rows.items()]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    main()
