"""Speed and memory of the scalable models as the data grows (synthetic data).

For each size, generates the seeded synthetic log once (`recforge.data.synthetic`), then
runs every model in its own subprocess (so peak memory is per model): fit with a short
schedule (a few epochs/iterations, reported per epoch/iteration), then top-20 for all users.
Writes `speed.json`, `speed.md` and a log-log plot `speed.png` to `--out`.

    python benchmarks/speed.py --out benchmarks/results/speed              # 1e6, 5e6, 2e7
    python benchmarks/speed.py --sizes 1e5 --models popularity,ease --out /tmp/speed

Threads: each subprocess uses `--threads` torch/BLAS threads (default: all cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: (n_users, n_items) per number of interactions: ~50–500 interactions per user
SHAPES = {
    100_000: (2_000, 1_000),
    1_000_000: (20_000, 5_000),
    5_000_000: (100_000, 10_000),
    20_000_000: (200_000, 20_000),
}
#: short schedules; iterative models report time per epoch (`per` = how many were run)
MODELS: dict[str, tuple[dict, int]] = {
    "popularity": ({}, 1),
    "itemknn": ({}, 1),
    "ease": ({}, 1),
    "ials": ({"epochs": 3}, 3),
    "mf": ({"epochs": 1, "validation_ratio": 0.0}, 1),
    "bpr": ({"epochs": 1, "validation_ratio": 0.0}, 1),
    "multvae": ({"epochs": 1, "validation_ratio": 0.0}, 1),
    "ncf": ({"epochs": 1, "pretrain": False, "validation_ratio": 0.0}, 1),
}
#: EASE inverts an items × items matrix: skip it beyond this catalog size
EASE_MAX_ITEMS = 10_000


def _worker(args: argparse.Namespace) -> None:
    """Subprocess: load the cached data, fit one model, rank all users, print JSON."""
    import torch

    from recforge.data.interactions import IdMap, Interactions
    from recforge.registry import create_model

    torch.set_num_threads(args.threads)
    arrays = np.load(args.data)
    n_users, n_items = int(arrays["n_users"]), int(arrays["n_items"])
    data = Interactions(
        user_map=IdMap(np.arange(1, n_users + 1).astype(str)),
        item_map=IdMap(np.arange(1, n_items + 1).astype(str)),
        user_idx=arrays["user_idx"], item_idx=arrays["item_idx"], ratings=arrays["ratings"],
    )
    params, per = MODELS[args.model]
    model = create_model(args.model, params)
    start = time.perf_counter()
    model.fit(data)
    fit = time.perf_counter() - start
    users = np.arange(n_users)
    start = time.perf_counter()
    model.recommend_idx(users, 20)
    rank = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"fit_seconds": fit, "fit_seconds_per_epoch": fit / per, "epochs": per,
                      "recommend_seconds": rank, "peak_rss_mb": peak_mb}))


def _generate(n: int, path: Path) -> dict:
    from recforge.data.synthetic import make_synthetic

    n_users, n_items = SHAPES[n]
    start = time.perf_counter()
    data = make_synthetic(n_users, n_items, n, seed=0, with_features=False)
    np.savez(path, user_idx=data.user_idx, item_idx=data.item_idx, ratings=data.ratings,
             n_users=data.n_users, n_items=data.n_items)
    return {"interactions": len(data), "users": data.n_users, "items": data.n_items,
            "generate_seconds": time.perf_counter() - start}


def _run(model: str, data: Path, threads: int, timeout: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--worker", "--model", model, "--data", str(data),
           "--threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout} s"}
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _markdown(results: list[dict], threads: int) -> str:
    lines = [f"Threads: {threads} (torch and BLAS) per run; synthetic data, seed 0; "
             "fit = seconds per epoch/iteration; rank = top-20 for all users.", "",
             "| interactions | users × items | model | fit s/epoch | rank s | peak RSS MB |",
             "|---:|---:|---|---:|---:|---:|"]
    for r in results:
        shape = f"{r['users']:,} × {r['items']:,}"
        if "error" in r:
            lines.append(f"| {r['interactions']:,} | {shape} | {r['model']} | {r['error']} | | |")
        else:
            lines.append(f"| {r['interactions']:,} | {shape} | {r['model']} | "
                         f"{r['fit_seconds_per_epoch']:.2f} | {r['recommend_seconds']:.2f} | "
                         f"{r['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for model in dict.fromkeys(r["model"] for r in results):
        rows = [r for r in results if r["model"] == model and "error" not in r]
        if not rows:
            continue
        x = [r["interactions"] for r in rows]
        axes[0].plot(x, [r["fit_seconds_per_epoch"] for r in rows], "o-", label=model)
        axes[1].plot(x, [r["recommend_seconds"] for r in rows], "o-", label=model)
    for ax, title in zip(axes, ("fit seconds per epoch/iteration", "top-20 for all users, seconds"),
                         strict=True):
        ax.set(xscale="log", yscale="log", xlabel="interactions", title=title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speed"))
    parser.add_argument("--sizes", default="1e6,5e6,2e7", help="comma-separated interaction counts")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per model run")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    unknown = [s for s in sizes if s not in SHAPES]
    if unknown:
        parser.error(f"sizes must be among {sorted(SHAPES)}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"synthetic-{n}.npz"
            info = _generate(n, path)
            print(f"{info['interactions']:,} interactions ({info['users']:,} × {info['items']:,}) "
                  f"generated in {info['generate_seconds']:.1f} s", flush=True)
            for model in models:
                if model == "ease" and info["items"] > EASE_MAX_ITEMS:
                    row = {"error": f"skipped: {info['items']:,} items > {EASE_MAX_ITEMS:,}"}
                else:
                    row = _run(model, path, args.threads, args.timeout)
                results.append({"model": model, **info, **row})
                print(f"  {model}: {row}", flush=True)
    (args.out / "speed.json").write_text(json.dumps({"threads": args.threads, "results": results}, indent=2))
    (args.out / "speed.md").write_text(_markdown(results, args.threads))
    _plot(results, args.out / "speed.png")
    print(f"wrote {args.out}/speed.json, speed.md, speed.png")


if __name__ == "__main__":
    main()
