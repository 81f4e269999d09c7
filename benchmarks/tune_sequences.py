"""Choose `gru4rec` / `sasrec` settings on the next-item validation target, never on test.

Loads `next_train.tsv` only and trains each candidate with ``validation_ratio > 0``, which
for sequence models holds out each user's last training interaction (the protocol's
validation target), with early stopping off (``patience: null``) so every epoch's
validation NDCG@10 is recorded. Prints, per candidate, the best epoch and its NDCG@10, the
NDCG@10 of the final epoch and the training seconds.

    python benchmarks/tune_sequences.py --threads 2 --candidates '[
      {"name": "sasrec", "params": {"epochs": 60}},
      {"name": "gru4rec", "params": {"dropout": 0.3}}]'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from recforge.data.files import load_file
from recforge.registry import create_model


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(__file__).resolve().parents[2] / "shared"
    parser.add_argument("--train", default=str(shared / "bench/ml-100k/next_train.tsv"))
    parser.add_argument("--candidates", required=True, help='JSON list of {"name", "params"} entries')
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    data = load_file(args.train)
    results = []
    for cand in json.loads(args.candidates):
        params = {"threads": args.threads, "device": "cpu", **cand.get("params", {}),
                  "validation_ratio": 0.1, "patience": None}
        model = create_model(cand["name"], **params)
        start = time.perf_counter()
        model.fit(data)
        seconds = time.perf_counter() - start
        metrics = model.history_.metrics  # type: ignore[attr-defined]
        best = int(metrics.argmax())
        row = {"name": cand["name"], "params": cand.get("params", {}), "best_epoch": best + 1,
               "best_ndcg10": round(float(metrics[best]), 4), "last_ndcg10": round(float(metrics[-1]), 4),
               "curve": [round(float(m), 4) for m in metrics], "seconds": round(seconds, 1)}
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


if __name__ == "__main__":
    main()
