"""Choose cold-user settings without touching the benchmark's held-out users.

`benchmarks/ml100k-cold.yaml` holds out every user once (5 outer folds, seed 42). This
script takes only the *training* users of the first outer fold and runs inner cold-user
folds over them (seed 7), so the settings it picks never saw that fold's held-out users.
Each candidate is compared with demographic popularity, as in the benchmark.

    python benchmarks/tune_cold_users.py --inner-folds 2 --candidates '[
      {"name": "two_tower", "params": {"loss": "full_softmax", "user_id_dropout": 1.0, "hidden_dim": 0,
       "use_item_features": false, "epochs": 5, "batch_size": 4096, "learning_rate": 0.01,
       "weight_decay": 0.001}}]'

The settings in the YAML came from this search (two of five inner folds, 302 users): for the
features-only two-tower, 5 epochs at batch 4096 with weight decay 1e-3 (item biases exempt)
beat 3, 10 and 20 epochs and weight decays 3e-4 and 3e-3; the hybrid's demographic prior
weight 1.0 beat 0.5.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recforge.data.cold import cold_user_folds
from recforge.data.movielens import load_movielens
from recforge.evaluation.benchmark import ModelEntry
from recforge.evaluation.cold import ColdBenchmarkConfig, ColdSide, cold_users


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/ml-100k"))
    parser.add_argument("--candidates", required=True, help='JSON list of {"name", "params"} entries')
    parser.add_argument("--inner-folds", type=int, default=2, help="how many of the 5 inner folds to run")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    data = load_movielens("movielens-100k", data_dir=args.data_dir)
    outer_train, _ = cold_user_folds(data, 5, 42)[0]
    models = [ModelEntry(name="demographic_popularity")]
    models += [ModelEntry(label=f"c{i}", **c) for i, c in enumerate(json.loads(args.candidates))]
    side = ColdSide(baseline="demographic_popularity", models=models)
    config = ColdBenchmarkConfig(protocol="cold-start", dataset={"data_dir": args.data_dir}, folds=5,
                                 max_folds=args.inner_folds, seed=7, threads=args.threads, cold_users=side)
    result = cold_users(outer_train.compact(), side, config, print)
    for label, row in result["models"].items():
        test = row.get("ndcg@10 vs baseline", {})
        print(f"{label}: NDCG@10 {row['ndcg@10']:.4f}  diff {test.get('diff', 0):+.4f}  "
              f"p {test.get('p_wilcoxon', float('nan')):.3g}  {row['seconds']} s")
    return result


if __name__ == "__main__":
    main()
