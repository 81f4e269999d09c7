"""Compression on ML-100K: artifact size, scoring latency and quality per compression setting.

Each model is trained once with its default settings (torch on 1 thread) and saved; every
variant is made from that artifact with `recforge.export.compress.compress_artifact` and
loaded back with `Recommender.load`, as a service would. Top-N models (mf, ncf, multvae,
two_tower) are scored on the top-N protocol (``topn_train.tsv`` → ``topn_test.tsv``,
NDCG@10, full ranking minus training items); DeepFM on ``u1.base`` → ``u1.test`` with the
user and item features (AUC of "rated ≥ 4", as ``benchmarks/ctr.py``). Variants: float32
(the plain artifact), fp16, int8, the MLP weights pruned by magnitude to 50 / 80 / 90 %
sparsity (models with linear layers), the embedding rows of the 50 / 80 / 90 % least-active
users and items dropped (models with ID tables), and the float32 model scored through its
ONNX graph in onnxruntime (latency only: same scores within 1e-4).

Sizes: the whole artifact directory and its weights.npz (the learned parameters; the rest
is mostly the training matrix kept for seen-item exclusion). Latency: median milliseconds of
one user's top-10 (`recommend_idx`, full catalog scored) over `--latency-users` users, and
the seconds to rank every test user, 1 torch / onnxruntime thread; ratios to float32 in the
same run. Writes ``results.json`` and ``results.md``::

    python benchmarks/compress.py --out benchmarks/results/compress
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from recforge.data.files import load_file
from recforge.data.interactions import Interactions
from recforge.data.movielens import load_movielens
from recforge.evaluation import metrics as mx
from recforge.evaluation.evaluate import evaluate_topn
from recforge.export.compress import artifact_bytes, compress_artifact
from recforge.models.base import Recommender
from recforge.registry import create_model

ROOT = Path(__file__).resolve().parents[2] / "shared"
COLUMNS = ["user_id", "item_id", "rating", "timestamp"]
SPARSITY = (0.5, 0.8, 0.9)


def variants(model: Recommender) -> list[tuple[str, dict[str, Any]]]:
    """(label, compress_artifact options) of the variants that apply to `model`."""
    net = getattr(model, "network_", None)
    has_linear = net is not None and any(isinstance(m, torch.nn.Linear) for m in net.modules())
    has_tables = net is not None and any(isinstance(m, torch.nn.Embedding) for m in net.modules())
    out: list[tuple[str, dict[str, Any]]] = [("float32", {}), ("fp16", {"quantize": "fp16"}),
                                             ("int8", {"quantize": "int8"})]
    if has_linear:
        out += [(f"MLP {s:.0%} pruned", {"prune": s}) for s in SPARSITY]
    if has_tables:
        out += [(f"rows {s:.0%} dropped", {"prune_rows": s}) for s in SPARSITY]
    return out


def latency_ms(model: Recommender, users: np.ndarray) -> float:
    """Median wall time of one user's top-10 over `users` (after one warm-up call)."""
    model.recommend_idx(users[:1], 10)
    times = []
    for u in users:
        start = time.perf_counter()
        model.recommend_idx(np.array([u]), 10)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def quality(model: Recommender, test: Any, task: str) -> tuple[float, float | None, float]:
    """(NDCG@10 or AUC, Coverage@10 (top-N), seconds to rank every test user / score every pair)."""
    start = time.perf_counter()
    if task == "ctr":
        prob = np.asarray(model.predict(test["user_id"].astype(str), test["item_id"].astype(str)))
        return mx.auc_roc((test["rating"] >= 4).to_numpy(), prob), None, time.perf_counter() - start
    result = evaluate_topn(model, test, ks=(10,), beyond_accuracy=False)
    return result.metrics["ndcg@10"], result.metrics["coverage@10"], float(result.info["recommend_seconds"])


def run_model(name: str, train: Interactions, test: Any, task: str, work: Path, n_latency: int,
              log: Any) -> list[dict[str, Any]]:
    start = time.perf_counter()
    model = create_model(name, {"threads": 1, "device": "cpu"}).fit(train)
    log(f"{name}: trained in {time.perf_counter() - start:.0f} s")
    plain = model.save(work / name)
    users = np.random.default_rng(0).choice(model.n_users, min(n_latency, model.n_users), replace=False)
    rows = []
    for label, options in [*variants(model), ("float32, onnxruntime", {"runtime": "onnx"})]:
        directory = plain
        record: dict[str, Any] = {}
        if options and "runtime" not in options:
            directory = work / f"{name}-{label.replace(' ', '_').replace('%', '')}"
            record = compress_artifact(plain, directory, **options)
        loaded = Recommender.load(directory)
        if "runtime" in options:
            from recforge.export.onnx import onnx_scorer

            loaded.set_scorer(onnx_scorer(loaded))  # type: ignore[attr-defined]
        metric, coverage, rank_s = quality(loaded, test, task)
        row = {"model": name, "variant": label, "metric": "AUC" if task == "ctr" else "NDCG@10",
               "value": round(metric, 4), "coverage": None if coverage is None else round(coverage, 4),
               "artifact_bytes": artifact_bytes(directory),
               "weights_bytes": (directory / "weights.npz").stat().st_size,
               "latency_ms": round(latency_ms(loaded, users), 3), "rank_s": round(rank_s, 3),
               "sparsity": record.get("pruned_layers", {}).get("sparsity"),
               "int8_layers": len(record.get("int8_layers", []))}
        rows.append(row)
        log(f"  {label}: {row}")
    base = rows[0]
    for row in rows:
        row["change_pct"] = round(100.0 * (row["value"] - base["value"]) / base["value"], 2)
        row["artifact_x"] = round(base["artifact_bytes"] / row["artifact_bytes"], 2)
        row["weights_x"] = round(base["weights_bytes"] / row["weights_bytes"], 2)
        row["latency_x"] = round(row["latency_ms"] / base["latency_ms"], 2)
    return rows


def floors(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's floors, per model: fp16 ≤ 1 % and int8 ≤ 3 % relative loss, int8 ≥ 3.5× smaller."""
    out = []
    for row in rows:
        if row["variant"] == "fp16":
            out.append(f"{row['model']} fp16 loss {-row['change_pct']:.2f} % ≤ 1 %: "
                       f"{'yes' if row['change_pct'] >= -1 else 'NO'}")
        if row["variant"] == "int8":
            out.append(f"{row['model']} int8 loss {-row['change_pct']:.2f} % ≤ 3 %: "
                       f"{'yes' if row['change_pct'] >= -3 else 'NO'}; weights {row['weights_x']}× "
                       f"(artifact {row['artifact_x']}×) ≥ 3.5×: {'yes' if row['weights_x'] >= 3.5 else 'NO'}")
    return out


def markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [
        f"ML-100K: top-N protocol ({info['topn_test_users']} test users, NDCG@10) for the top-N models; "
        "u1.base → u1.test with user and item features (AUC of rated ≥ 4) for DeepFM. Default settings, "
        "1 torch thread (onnxruntime: 1 thread); latency = median ms of one user's top-10 over "
        f"{info['latency_users']} users (full catalog scored); `×` columns are ratios to float32 in the same run. "
        "Sizes: the whole artifact, and its weights.npz (the parameters; the rest is mostly the training "
        "matrix kept for seen-item exclusion, stored losslessly smaller when compressed).",
        "",
        "| model | variant | quality | change | Coverage@10 | artifact KB | artifact × | weights KB | weights × | "
        "latency ms | latency × | rank all s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['metric']} {r['value']:.4f} | {r['change_pct']:+.2f} % | "
            f"{'–' if r['coverage'] is None else format(r['coverage'], '.4f')} | "
            f"{r['artifact_bytes'] / 1024:.0f} | {r['artifact_x']:.2f} | {r['weights_bytes'] / 1024:.0f} | "
            f"{r['weights_x']:.2f} | {r['latency_ms']:.2f} | {r['latency_x']:.2f} | {r['rank_s']:.2f} |")
    lines += ["", "Floors (issue 13):", ""] + [f"- {line}" for line in floors(rows)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT / "data/ml-100k"), help="raw ML-100K (features)")
    parser.add_argument("--bench-dir", default=str(ROOT / "bench/ml-100k"))
    parser.add_argument("--models", default="mf,ncf,multvae,two_tower,deepfm")
    parser.add_argument("--latency-users", type=int, default=200)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    bench = Path(args.bench_dir)
    train, test = load_file(bench / "topn_train.tsv"), load_file(bench / "topn_test.tsv")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            if name in ("deepfm", "widedeep"):
                raw = load_movielens("movielens-100k", data_dir=args.data_dir)
                base = pd.read_csv(bench / "u1.base", sep="\t", names=COLUMNS)
                u1 = pd.read_csv(bench / "u1.test", sep="\t", names=COLUMNS)
                ctr = Interactions.from_frame(base, user_features=raw.user_features, item_features=raw.item_features)
                rows += run_model(name, ctr, u1, "ctr", Path(tmp), args.latency_users, print)
            else:
                rows += run_model(name, train, test, "topn", Path(tmp), args.latency_users, print)
    info = {"topn_test_users": len(np.unique(test.user_idx)), "latency_users": args.latency_users,
            "torch_threads": 1, "torch": torch.__version__}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"info": info, "rows": rows, "floors": floors(rows)}
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(markdown(rows, info))
    print("\n".join(floors(rows)))
    return result


if __name__ == "__main__":
    main()
