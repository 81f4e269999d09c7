"""Choose `bpr` settings on a validation split carved from the top-N training file, never on test.

Loads `topn_train.tsv` only, holds out 20 % of every user's interactions (seed 123, the carve
configs/ml100k/bpr.yaml's evidence was measured on), trains each candidate on the rest and
records the validation NDCG@10 after every epoch (no early stopping). Prints, per candidate,
the best epoch and its NDCG@10, the NDCG@10 of the final epoch and the training seconds.

    python benchmarks/tune_bpr.py --threads 1 --candidates '[
      {"learning_rate": 0.05}, {"learning_rate": 0.05, "regularization": 0.02}]'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from recforge.data.files import load_file
from recforge.data.splitting import carve_validation
from recforge.registry import create_model


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(__file__).resolve().parents[2] / "shared"
    parser.add_argument("--train", default=str(shared / "bench/ml-100k/topn_train.tsv"))
    parser.add_argument("--candidates", required=True, help="JSON list of parameter dicts for bpr")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", default="42", help="comma-separated training seeds (the carve stays seed 123)")
    args = parser.parse_args(argv)

    fit, validation = carve_validation(load_file(args.train), 0.2, seed=123)
    results = []
    for params in json.loads(args.candidates):
        for seed in (int(s) for s in args.seeds.split(",")):
            model = create_model("bpr", **{"threads": args.threads, "seed": seed, **params, "patience": None})
            start = time.perf_counter()
            model.fit(fit, validation)
            seconds = time.perf_counter() - start
            metrics = model.history_.metrics  # type: ignore[attr-defined]
            best = int(metrics.argmax())
            row = {"params": params, "seed": seed, "best_epoch": best + 1,
                   "best_ndcg10": round(float(metrics[best]), 4), "last_ndcg10": round(float(metrics[-1]), 4),
                   "curve": [round(float(m), 4) for m in metrics[4::5]], "seconds": round(seconds, 1)}
            print(json.dumps(row), flush=True)
            results.append(row)
    return results


if __name__ == "__main__":
    main()
