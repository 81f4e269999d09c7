"""Speed and memory at scale, side by side with `implicit` (C++/Cython) in the same sitting.

For each size, generates a seeded synthetic log shaped like ML-20M (lognormal user activity,
Zipf-like item popularity; `recforge.data.synthetic`) once, writes it as a TSV too, then runs
every measurement in its own subprocess (so peak RSS is per run), recforge and its peer
alternating, `--repeats` times each; a figure is the median of its repeats.

- iALS seconds per iteration: `create_model("ials")` (CG, 3 steps) against implicit's
  `AlternatingLeastSquares` (its default CG, 3 steps), 64 factors, same confidence c = 1 + α,
  fit time / `--iterations`; then top-20 for all users with seen items excluded
  (`recommend_idx` against implicit's batch `recommend(filter_already_liked_items=True)`);
  the peak RSS of the whole run.
- BPR seconds per epoch (one sampled triple per interaction): `create_model("bpr")` against
  implicit's `BayesianPersonalizedRanking`, 64 factors, fit time / `--bpr-epochs`.
- Loading the TSV: `recforge.data.files.load_file` (what the CLI does: file to
  `Interactions`) against pandas' pyarrow reader on the same file.
- The GEMM floor of top-20: the float32 users × items score products in blocks of 2^24 cells,
  nothing else; "top-20 ≤ 1.2 × GEMM floor" reads off the table.
- `--models`: other registered models, one epoch each (s/epoch) and top-20 for all users, in a
  second table (no peer).

Each worker first fits on a tiny log, so compile or import time is not counted per iteration.
Writes ``speed.json`` and ``results.md`` (Markdown tables; ``python -m
recforge.evaluation.report --section speed`` puts them in the README) to `--out`:

    python benchmarks/speed.py --sizes 1e6,2e7 --threads 2 --out benchmarks/results/speed
    python benchmarks/speed.py --sizes 1e5 --repeats 1 --models popularity --out /tmp/speed   # smoke

Threads: each subprocess gets `--threads` threads: torch, BLAS (OMP/OpenBLAS/MKL variables),
numba and the models' own `threads` settings; implicit gets ``num_threads`` and, as its docs
advise, one BLAS thread during fit. A peer that is not installed shows as "not installed".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: (n_users, n_items) per number of interactions: ML-20M has 138k users × 26.7k items
SHAPES = {
    100_000: (5_000, 2_670),
    1_000_000: (50_000, 26_700),
    20_000_000: (138_000, 26_700),
}
FACTORS = 64
TOP_K = 20
#: the GEMM floor's blocks: this many float32 score cells at a time (64 MiB)
GEMM_BLOCK_CELLS = 1 << 24
#: models of the second table, one epoch each: their settings (validation off)
MODEL_PARAMS: dict[str, dict[str, Any]] = {
    "mf": {"epochs": 1, "validation_ratio": 0.0},
    "multvae": {"epochs": 1, "validation_ratio": 0.0},
    "ncf": {"epochs": 1, "pretrain": False, "validation_ratio": 0.0},
}
#: EASE inverts an items × items matrix: skip it beyond this catalog size
EASE_MAX_ITEMS = 10_000


# ------------------------------------------------------------------------------ workers
def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (ru_maxrss would keep the parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _arrays(path: str) -> tuple[dict[str, np.ndarray], int, int]:
    arrays = dict(np.load(path))
    return arrays, int(arrays["n_users"]), int(arrays["n_items"])


def _interactions(arrays: dict[str, np.ndarray], n_users: int, n_items: int) -> Any:
    from recforge.data.interactions import IdMap, Interactions

    return Interactions(
        user_map=IdMap(np.arange(1, n_users + 1).astype(str)),
        item_map=IdMap(np.arange(1, n_items + 1).astype(str)),
        user_idx=arrays["user_idx"], item_idx=arrays["item_idx"], ratings=arrays["ratings"],
    )


def _user_items(arrays: dict[str, np.ndarray], n_users: int, n_items: int) -> Any:
    import scipy.sparse as sp

    ones = np.ones(len(arrays["user_idx"]), np.float32)
    return sp.csr_matrix((ones, (arrays["user_idx"], arrays["item_idx"])), shape=(n_users, n_items))


def _recforge_model(name: str, params: dict[str, Any], threads: int) -> Any:
    from recforge.registry import create_model, get_model_class

    fields = get_model_class(name).config_class.model_fields
    params = {k: v for k, v in params.items() if k in fields}
    if "threads" in fields:
        params["threads"] = threads
    return create_model(name, params)


def _warm_up_recforge(name: str, params: dict[str, Any], threads: int) -> None:
    """Fit and rank once on a tiny log: compiles numba kernels, imports torch."""
    from recforge.testing import tiny_interactions

    tiny = tiny_interactions()[0]
    model = _recforge_model(name, {**params, "epochs": 1}, threads).fit(tiny)
    model.recommend_idx(np.arange(tiny.n_users), 5)


def _job_recforge_fit(args: argparse.Namespace, name: str, params: dict[str, Any], per: int,
                      rank: bool = True) -> dict:
    _warm_up_recforge(name, params, args.threads)
    if "torch" in sys.modules:  # only torch models import it (and pay its memory)
        sys.modules["torch"].set_num_threads(args.threads)
    arrays, n_users, n_items = _arrays(args.data)
    data = _interactions(arrays, n_users, n_items)
    del arrays
    model = _recforge_model(name, params, args.threads)
    start = time.perf_counter()
    model.fit(data)
    fit = time.perf_counter() - start
    out = {"fit_seconds": fit, "per_epoch": fit / per, "epochs": per, "fit_peak_rss_mb": _peak_rss_mb()}
    if rank:
        start = time.perf_counter()
        model.recommend_idx(np.arange(n_users), TOP_K)
        out["top20_seconds"] = time.perf_counter() - start
    return {**out, "peak_rss_mb": _peak_rss_mb()}


def _job_implicit_ials(args: argparse.Namespace) -> dict:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    def model() -> Any:
        return AlternatingLeastSquares(factors=FACTORS, iterations=args.iterations, alpha=args.alpha,
                                       regularization=0.01, num_threads=args.threads, random_state=0)

    arrays, n_users, n_items = _arrays(args.data)
    user_items = _user_items(arrays, n_users, n_items)
    del arrays
    with threadpool_limits(1, "blas"):  # implicit's advice for its fit
        model().fit(user_items[:200], show_progress=False)
        als = model()
        start = time.perf_counter()
        als.fit(user_items, show_progress=False)
        fit = time.perf_counter() - start
    fit_peak = _peak_rss_mb()
    out = {"fit_seconds": fit, "per_epoch": fit / args.iterations, "epochs": args.iterations,
           "fit_peak_rss_mb": fit_peak}
    if not args.no_top20:
        start = time.perf_counter()
        als.recommend(np.arange(n_users), user_items, N=TOP_K, filter_already_liked_items=True)
        out["top20_seconds"] = time.perf_counter() - start
    return {**out, "peak_rss_mb": _peak_rss_mb()}


def _job_implicit_bpr(args: argparse.Namespace) -> dict:
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    arrays, n_users, n_items = _arrays(args.data)
    user_items = _user_items(arrays, n_users, n_items)
    del arrays
    with threadpool_limits(1, "blas"):
        BayesianPersonalizedRanking(factors=FACTORS, iterations=1, num_threads=args.threads,
                                    random_state=0).fit(user_items[:200], show_progress=False)
        bpr = BayesianPersonalizedRanking(factors=FACTORS, iterations=args.bpr_epochs,
                                          num_threads=args.threads, random_state=0)
        start = time.perf_counter()
        bpr.fit(user_items, show_progress=False)
        fit = time.perf_counter() - start
    return {"fit_seconds": fit, "per_epoch": fit / args.bpr_epochs, "epochs": args.bpr_epochs,
            "peak_rss_mb": _peak_rss_mb()}


def _job_load(args: argparse.Namespace, peer: str) -> dict:
    import pandas as pd

    from recforge.data.files import load_file

    start = time.perf_counter()
    if peer == "recforge":
        rows = len(load_file(args.tsv))
    else:
        rows = len(pd.read_csv(args.tsv, sep="\t", engine="pyarrow"))
    return {"seconds": time.perf_counter() - start, "rows": rows, "peak_rss_mb": _peak_rss_mb()}


def _job_gemm(args: argparse.Namespace) -> dict:
    """The float32 users × items score products in blocks, the floor of all-user top-k."""
    _, n_users, n_items = _arrays(args.data)
    rng = np.random.default_rng(0)
    users = rng.standard_normal((n_users, FACTORS), np.float32)
    items_t = np.ascontiguousarray(rng.standard_normal((n_items, FACTORS), np.float32).T)
    block = max(1, GEMM_BLOCK_CELLS // n_items)
    out = np.empty((block, n_items), np.float32)
    np.matmul(users[:block], items_t, out=out[:min(block, n_users)])  # warm
    start = time.perf_counter()
    for lo in range(0, n_users, block):
        rows = users[lo:lo + block]
        np.matmul(rows, items_t, out=out[:len(rows)])
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": _peak_rss_mb()}


def _worker(args: argparse.Namespace) -> None:
    """Subprocess: one job, one JSON line on stdout."""
    job, _, peer = args.job.partition(":")
    if job == "ials":
        params = {"epochs": args.iterations, "embedding_dim": FACTORS, "solver": "cg", "cg_steps": 3}
        out = (_job_implicit_ials(args) if peer == "implicit"
               else _job_recforge_fit(args, "ials", params, args.iterations, rank=not args.no_top20))
    elif job == "bpr":
        params = {"epochs": args.bpr_epochs, "embedding_dim": FACTORS, "validation_ratio": 0.0}
        out = (_job_implicit_bpr(args) if peer == "implicit"
               else _job_recforge_fit(args, "bpr", params, args.bpr_epochs, rank=False))
    elif job == "load":
        out = _job_load(args, peer)
    elif job == "gemm":
        out = _job_gemm(args)
    else:  # model:NAME
        out = _job_recforge_fit(args, peer, MODEL_PARAMS.get(peer, {}), 1)
    print(json.dumps(out))


# ------------------------------------------------------------------------------ parent
def _generate(n: int, folder: Path) -> dict:
    """The seeded log as an .npz (the fit runs) and a TSV with a header (the load runs)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from recforge.data.synthetic import make_synthetic

    n_users, n_items = SHAPES[n]
    start = time.perf_counter()
    data = make_synthetic(n_users, n_items, n, seed=0, with_features=False)
    npz, tsv = folder / f"synthetic-{n}.npz", folder / f"synthetic-{n}.tsv"
    np.savez(npz, user_idx=data.user_idx, item_idx=data.item_idx, ratings=data.ratings,
             n_users=data.n_users, n_items=data.n_items)
    assert data.timestamps is not None and data.ratings is not None
    table = pa.table({"user_id": data.user_idx + 1, "item_id": data.item_idx + 1,
                      "rating": data.ratings.astype(np.int8), "timestamp": data.timestamps})
    pacsv.write_csv(table, tsv, pacsv.WriteOptions(delimiter="\t", quoting_style="none"))
    return {"size": n, "interactions": len(data), "users": data.n_users, "items": data.n_items,
            "alpha": 0.2 * data.n_users * data.n_items / len(data),
            "tsv_mb": tsv.stat().st_size / 2**20, "generate_seconds": time.perf_counter() - start,
            "npz": str(npz), "tsv": str(tsv)}


def _run(job: str, info: dict, args: argparse.Namespace) -> dict:
    threads = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads,
               MKL_NUM_THREADS=threads, NUMBA_NUM_THREADS=threads)
    cmd = [sys.executable, __file__, "--worker", "--job", job, "--data", info["npz"], "--tsv", info["tsv"],
           "--threads", threads, "--iterations", str(args.iterations), "--bpr-epochs", str(args.bpr_epochs),
           "--alpha", str(1.0 + info["alpha"]), *(["--no-top20"] if args.no_top20 else [])]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {args.timeout} s"}
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return {"error": lines[-1][:200] if lines else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_runs(runs: list[dict]) -> dict:
    """Median of each numeric figure over the successful runs; the runs themselves too."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[-1]["error"], "runs": runs}
    keys = [k for k, v in ok[0].items() if isinstance(v, int | float) and all(k in r for r in ok)]
    return {**{k: statistics.median(r[k] for r in ok) for k in keys}, "runs": runs}


def _installed(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def _wanted(figure: str, size: int, figures: list[str]) -> bool:
    """Whether `--figures` (names, or name@size for one size only) asks for `figure` at `size`."""
    for entry in figures:
        name, _, at = entry.partition("@")
        if name == figure and (not at or int(float(at)) == size):
            return True
    return False


def _measure(info: dict, args: argparse.Namespace, implicit: str | None) -> dict:
    """Every job of one size, recforge and its peer alternating, `repeats` times."""
    pairs = [("ials:recforge", "ials:implicit"), ("bpr:recforge", "bpr:implicit"),
             ("load:recforge", "load:pandas"), ("gemm", None)]
    runs: dict[str, list[dict]] = {}
    for rep in range(args.repeats):
        for ours, peer in pairs:
            if not _wanted(ours.split(":")[0], info["size"], args.figures):
                continue
            for job in (ours, peer):
                if job is None:
                    continue
                if job.endswith(":implicit") and implicit is None:
                    runs[job] = [{"error": "not installed"}]
                    continue
                result = _run(job, info, args)
                runs.setdefault(job, []).append(result)
                print(f"  [{rep + 1}/{args.repeats}] {job}: "
                      f"{ {k: round(v, 3) for k, v in result.items() if isinstance(v, float)} or result}",
                      flush=True)
    return {job: _median_runs(r) for job, r in runs.items()}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _cell(result: dict | None, key: str, scale: float = 1.0, digits: int = 2) -> tuple[str, float | None]:
    if result is None:
        return "–", None
    if "error" in result:
        return str(result["error"]), None
    if key not in result:
        return "–", None
    value = result[key] / scale
    return _fmt(value, digits), value


def _size_label(info: dict) -> str:
    n = info["interactions"]
    count = f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}k"
    return f"{count} ({info['users'] / 1e3:g}k users × {info['items'] / 1e3:g}k items)"


def _peer_table(sizes: list[dict], implicit: str | None) -> list[str]:
    peer = f"implicit {implicit}" if implicit else "implicit"
    rows = [  # figure, recforge job, peer job, key, scale, peer name, goal
        ("iALS s/iteration", "ials:recforge", "ials:implicit", "per_epoch", 1.0, peer, 1.0),
        ("BPR s/epoch", "bpr:recforge", "bpr:implicit", "per_epoch", 1.0, peer, 1.5),
        ("top-20 for all users, s", "ials:recforge", "ials:implicit", "top20_seconds", 1.0, peer, None),
        ("top-20 for all users, s", "ials:recforge", "gemm", "top20_seconds", 1.0, "GEMM floor", 1.2),
        ("load the TSV, s", "load:recforge", "load:pandas", "seconds", 1.0, "pandas (pyarrow)", 2.0),
        ("peak RSS, GB (data + iALS fit)", "ials:recforge", "ials:implicit", "fit_peak_rss_mb", 1024, peer, 1.5),
        ("peak RSS, GB (data + iALS fit + top-20)", "ials:recforge", "ials:implicit", "peak_rss_mb", 1024, peer,
         1.5),
        ("peak RSS, GB (BPR fit)", "bpr:recforge", "bpr:implicit", "peak_rss_mb", 1024, peer, 1.5),
    ]
    lines = ["| log | figure | peer | peer | recforge | ratio | goal |",
             "|---|---|---|---:|---:|---:|---|"]
    for size in sizes:
        res = size["results"]
        for figure, ours, theirs, key, scale, peer_name, goal in rows:
            if ours not in res or ("top-20" in figure and "top20_seconds" not in res[ours]):
                continue
            peer_key = "seconds" if theirs in ("gemm", "load:pandas") else key
            mine, mine_v = _cell(res.get(ours), key, scale)
            other, other_v = _cell(res.get(theirs), peer_key, scale)
            if mine_v is None and other_v is None and mine == other == "–":
                continue
            if mine_v is not None and other_v:
                ratio = mine_v / other_v
                ratio_s = f"{ratio:.2f}×"
                met = "" if goal is None else (f"≤ {goal:g}× ✓" if ratio <= goal else f"≤ {goal:g}× ✗")
            else:
                ratio_s, met = "–", "" if goal is None else f"≤ {goal:g}×"
            lines.append(f"| {_size_label(size['info'])} | {figure} | {peer_name} | {other} | {mine} | "
                         f"{ratio_s} | {met} |")
    return lines


def _model_table(sizes: list[dict]) -> list[str]:
    lines = ["| log | model | fit s/epoch | top-20 s | peak RSS GB |", "|---|---|---:|---:|---:|"]
    for size in sizes:
        for job, r in size["results"].items():
            if not job.startswith("model:"):
                continue
            name = job.split(":", 1)[1]
            if "error" in r:
                lines.append(f"| {_size_label(size['info'])} | {name} | {r['error']} | | |")
            else:
                lines.append(f"| {_size_label(size['info'])} | {name} | {r['per_epoch']:.2f} | "
                             f"{r['top20_seconds']:.2f} | {r['peak_rss_mb'] / 1024:.2f} |")
    return lines


def _markdown(report: dict) -> str:
    c = report["conditions"]
    text = [
        f"`{c['command']}` — {c['cpus']} CPUs ({c['cpu']}), {c['threads']} threads per run, "
        f"{FACTORS} factors, synthetic logs shaped like ML-20M (seed 0); each figure the median of "
        f"{c['repeats']} runs, recforge and the peer alternating, each run in its own process; "
        f"load average {c['load_before']} before, {c['load_after']} after. iALS: CG, 3 steps, "
        f"fit / {c['iterations']} iterations; BPR: fit / {c['bpr_epochs']} epochs; top-20 excludes "
        "each user's training items; peak RSS of the whole run (data, fit, top-20). "
        "Ratio = recforge / peer (lower is better).",
        "",
        *_peer_table(report["sizes"], c["implicit"]),
    ]
    models = _model_table(report["sizes"])
    if len(models) > 2:
        text += ["", "Other models, one epoch each (no peer):", "", *models]
    return "\n".join(text) + "\n"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speed"))
    parser.add_argument("--sizes", default="1e6,2e7", help="comma-separated interaction counts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each job (median reported)")
    parser.add_argument("--iterations", type=int, default=5, help="iALS iterations per timed fit")
    parser.add_argument("--bpr-epochs", type=int, default=3, help="BPR epochs per timed fit")
    parser.add_argument("--figures", default="ials,bpr,load,gemm",
                        help="peer figures to measure: ials, bpr, load, gemm; NAME@SIZE for one size only")
    parser.add_argument("--models", default="", help="other models for the second table, e.g. mf,multvae")
    parser.add_argument("--no-top20", action="store_true", help="iALS runs fit only (no all-user top-20)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per run")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the generated logs")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--tsv", help=argparse.SUPPRESS)
    parser.add_argument("--alpha", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    if any(s not in SHAPES for s in sizes):
        parser.error(f"sizes must be among {sorted(SHAPES)}")
    args.figures = [f.strip() for f in args.figures.split(",") if f.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    implicit = _installed("implicit")
    args.out.mkdir(parents=True, exist_ok=True)
    conditions = {
        "command": "python benchmarks/speed.py " + " ".join(sys.argv[1:]),
        "cpus": os.cpu_count(), "cpu": _cpu_name(), "threads": args.threads, "repeats": args.repeats,
        "iterations": args.iterations, "bpr_epochs": args.bpr_epochs, "implicit": implicit,
        "numpy": np.__version__, "python": platform.python_version(),
        "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    report: dict[str, Any] = {"conditions": conditions, "sizes": []}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for n in sizes:
            info = _generate(n, Path(tmp))
            print(f"{_size_label(info)}: generated in {info['generate_seconds']:.1f} s "
                  f"(TSV {info['tsv_mb']:.0f} MB)", flush=True)
            results = _measure(info, args, implicit)
            for model in models:
                if model == "ease" and info["items"] > EASE_MAX_ITEMS:
                    results[f"model:{model}"] = {"error": f"skipped: {info['items']:,} items > {EASE_MAX_ITEMS:,}"}
                    continue
                results[f"model:{model}"] = _run(f"model:{model}", info, args)
                print(f"  model {model}: {results[f'model:{model}']}", flush=True)
            public = {k: v for k, v in info.items() if k not in ("npz", "tsv")}
            report["sizes"].append({"info": public, "results": results})
            (args.out / "speed.json").write_text(json.dumps(report, indent=2))  # so far
    conditions["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    (args.out / "speed.json").write_text(json.dumps(report, indent=2))
    (args.out / "results.md").write_text(_markdown(report))
    print(_markdown(report))
    print(f"wrote {args.out}/speed.json and results.md")


if __name__ == "__main__":
    main()
