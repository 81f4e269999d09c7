"""Choose next-item settings on the validation target, never on the test file.

The next-item protocol (shared/PROTOCOL.md) holds out each user's last interaction in
``next_test.tsv``. This script looks at ``next_train.tsv`` only: each user's last training
interaction becomes the validation target (`leave_last_out`; the file is in the protocol's
order, by timestamp then item ID, so its last row per user is that interaction), the models
train on the rest, and every candidate is ranked as in the benchmark (every training item
minus the user's history).

    python benchmarks/tune_next_item.py --candidates '[
      {"name": "transition", "params": {"smoothing": 1.0}},
      {"name": "ease", "params": {"regularization": 400.0}}]'

The defaults in configs/ml100k/transition.yaml and the `ease-val` entry of
benchmarks/ml100k-next-item.yaml come from this search (results in those files).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from recforge.data.files import load_file
from recforge.data.splitting import leave_last_out
from recforge.evaluation.evaluate import evaluate_topn
from recforge.registry import create_model


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(__file__).resolve().parents[2] / "shared"
    parser.add_argument("--train", default=str(shared / "bench/ml-100k/next_train.tsv"))
    parser.add_argument("--candidates", required=True, help='JSON list of {"name", "params"} entries')
    args = parser.parse_args(argv)

    fit, validation = leave_last_out(load_file(args.train), 1)
    fit = fit.compact()
    rows = []
    for cand in json.loads(args.candidates):
        start = time.perf_counter()
        model = create_model(cand["name"], cand.get("params", {})).fit(fit)
        result = evaluate_topn(model, validation.to_frame(), ks=(10, 20), beyond_accuracy=False)
        row = {**cand, **{m: round(result.metrics[m], 4) for m in ("ndcg@10", "hr@10", "ndcg@20", "hr@20")},
               "seconds": round(time.perf_counter() - start, 1)}
        print(json.dumps(row))
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
