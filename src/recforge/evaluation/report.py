"""Benchmark outputs: ``results.json``, ``results.md``, a self-contained ``report.html``, and
the README's results section regenerated from ``results.md``.

    python -m recforge.evaluation.report --readme README.md --results DIR --section topn

replaces the text between ``<!-- results:topn:start -->`` and ``<!-- results:topn:end -->``
in README.md with DIR/results.md, so no figure is ever typed by hand.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recforge.errors import DataError, RecforgeError

#: model label -> {"recall": [Recall@1..K], "ndcg": [NDCG@1..K]}
Curves = dict[str, dict[str, list[float]]]

_NAMES = {
    "ndcg": "NDCG", "recall": "Recall", "precision": "Precision", "f1": "F1", "hr": "HR",
    "map": "MAP", "mrr": "MRR", "coverage": "Coverage", "novelty": "Novelty",
    "diversity": "Diversity", "popularity": "AvgPop", "gini": "Gini", "rmse": "RMSE",
    "mae": "MAE", "accuracy": "Accuracy", "auc": "AUC", "log_loss": "LogLoss",
}


def metric_label(name: str) -> str:
    """``"ndcg@10"`` -> ``"NDCG@10"``; ``"sampled_hr@10"`` -> ``"sampled HR@10"``."""
    base, at, k = name.partition("@")
    prefix = ""
    if base.startswith("sampled_"):
        prefix, base = "sampled ", base.removeprefix("sampled_")
    return f"{prefix}{_NAMES.get(base, base)}{at}{k}"


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.1f}×"


def table_metrics(results: dict[str, Any]) -> list[str]:
    """The metric columns of the results table: the benchmark's `table_metrics` when it lists
    them, else the compared (headline) ones, then a few more."""
    proto = results["protocol"]
    if proto.get("table"):
        return list(proto["table"])
    compared = list(proto.get("compared") or [proto["primary"]])
    if proto["task"] == "rating":
        extra = ["rmse", "mae", "accuracy", "precision", "recall", "f1", "auc"]
    else:
        ks = proto["ks"]
        lo, hi = min(ks), max(ks)
        extra = [f"precision@{lo}", f"hr@{lo}", f"map@{lo}", f"mrr@{lo}", f"coverage@{hi}",
                 f"novelty@{hi}"]
    available = set()
    for r in results["models"]:
        available.update(r.get("metrics", {}))
    return [m for m in dict.fromkeys(compared + extra) if m in available or m in compared]


def _baseline(results: dict[str, Any]) -> dict[str, Any] | None:
    name = results["protocol"].get("baseline")
    return next((r for r in results["models"] if r["name"] == name and "error" not in r), None)


def results_markdown(results: dict[str, Any]) -> str:
    """A short caption and one markdown table: metrics, times, speed ratios, threads."""
    proto, ds = results["protocol"], results["dataset"]
    task = proto["task"]
    cols = table_metrics(results)
    base = _baseline(results)
    rank_word = "rank s" if task == "topn" else "predict s"
    primary = proto["primary"]
    p_best = {s["model"]: s["p_wilcoxon"] for s in results.get("significance", []) if s["metric"] == primary}
    header = ["model", *[metric_label(c) for c in cols], "p vs best", "train s", rank_word,
              "train ×", f"{rank_word.split()[0]} ×", "threads"]
    if task == "topn":
        minus = " minus the user's own" if proto.get("exclude_seen", True) else " (the user's own included)"
        what = (f"top-N, full ranking of every training item{minus}, "
                f"{ds.get('test_users')} test users, {ds.get('items')} items")
    else:
        what = f"rating prediction, {ds.get('test_interactions')} test pairs, liked = rating ≥ " \
               f"{proto.get('threshold')}"
    torch_threads = proto.get("torch_threads")
    threads = (f"{proto.get('cpu_count')} CPUs; torch models on the threads column's count, "
               f"{torch_threads} unless set"
               if torch_threads else f"{proto.get('cpu_count')} CPUs; no model used torch")
    lines = [
        f"Dataset **{ds.get('name')}** — {what}. Best by {metric_label(primary)}: "
        f"**{results.get('best')}**; p vs best: paired Wilcoxon test of the users' "
        f"{metric_label(primary)} against it. Speed is a ratio to `{proto.get('baseline')}` in the "
        f"same run ({threads}).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for r in results["models"]:
        name = f"**{r['name']}**" if r["name"] == results.get("best") else r["name"]
        if "error" in r:
            msg = _md_escape(r["error"])[:120]
            cells = [name, f"failed: {msg}"] + [""] * (len(header) - 2)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        m = r["metrics"]
        p_value = "best" if r["name"] == results.get("best") else _p(p_best.get(r["name"]))
        row = [name, *[_fmt(m.get(c)) for c in cols], p_value, _seconds(r.get("train_seconds")),
               _seconds(r.get("recommend_seconds")),
               _ratio(r.get("train_seconds"), base.get("train_seconds") if base else None),
               _ratio(r.get("recommend_seconds"), base.get("recommend_seconds") if base else None),
               _fmt(r.get("threads"))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


# ----------------------------------------------------------------------------- figures


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figures(results: dict[str, Any], curves: Curves) -> list[tuple[str, str]]:
    """(title, base64 PNG) figures; empty when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return []
    ok = [r for r in results["models"] if "error" not in r]
    if not ok:
        return []
    names = [r["name"] for r in ok]
    out: list[tuple[str, str]] = []
    compared = results["protocol"].get("compared") or [results["protocol"]["primary"]]
    level = results["protocol"].get("bootstrap", {}).get("confidence", 0.95)
    fig = Figure(figsize=(4.2 * len(compared), 3.6))
    for i, metric in enumerate(compared):
        ax = fig.add_subplot(1, len(compared), i + 1)
        vals = [r["metrics"].get(metric) or 0.0 for r in ok]
        cis = [(r.get("ci") or {}).get(metric) for r in ok]
        lows = [c[0] if c and c[0] is not None else v for v, c in zip(vals, cis, strict=True)]
        highs = [c[1] if c and c[1] is not None else v for v, c in zip(vals, cis, strict=True)]
        err = [[max(v - lo, 0) for v, lo in zip(vals, lows, strict=True)],
               [max(hi - v, 0) for v, hi in zip(vals, highs, strict=True)]]
        ax.bar(range(len(ok)), vals, yerr=err, capsize=4, color="#4c78a8")
        ax.set_xticks(range(len(ok)), names, rotation=45, ha="right")
        ax.set_title(f"{metric_label(metric)} ({level:.0%} bootstrap CI)")
    out.append((f"Headline metrics with {level:.0%} bootstrap confidence intervals", _png(fig)))
    if curves:
        fig = Figure(figsize=(10, 3.8))
        for i, metric in enumerate(("recall", "ndcg")):
            ax = fig.add_subplot(1, 2, i + 1)
            for name, c in curves.items():
                ys = c.get(metric) or []
                ax.plot(range(1, len(ys) + 1), ys, label=name)
            ax.set_xlabel("K")
            ax.set_title(f"{metric_label(metric)}@K")
            ax.grid(alpha=0.3)
        fig.axes[-1].legend(fontsize=8, loc="best")
        depth = max(len(c.get("recall") or []) for c in curves.values())
        out.append((f"Recall@K and NDCG@K for K = 1…{depth}", _png(fig)))
    fig = Figure(figsize=(9, 3.6))
    rank_word = "recommend" if results["protocol"]["task"] == "topn" else "predict"
    panels = (("train_seconds", "training"), ("recommend_seconds", rank_word))
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.bar(range(len(ok)), [r.get(key) or 0.0 for r in ok], color="#f58518")
        ax.set_xticks(range(len(ok)), names, rotation=45, ha="right")
        ax.set_ylabel("wall seconds")
        ax.set_title(f"{title} time")
    out.append(("Wall time of training and of producing all users' lists", _png(fig)))
    return out


# ----------------------------------------------------------------------------- HTML


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(results: dict[str, Any], curves: Curves | None = None) -> str:
    """A self-contained HTML report: tables, and matplotlib figures embedded as base64 PNG."""
    proto, ds = results["protocol"], results["dataset"]
    compared = proto.get("compared") or [proto["primary"]]
    ok = [r for r in results["models"] if "error" not in r]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>recforge benchmark: {html.escape(str(ds.get('name')))}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%}.err{color:#b00}</style></head><body>",
        f"<h1>recforge benchmark: {html.escape(str(ds.get('name')))}</h1>",
        f"<p>Task <b>{html.escape(proto['task'])}</b>; best by "
        f"{html.escape(metric_label(proto['primary']))}: <b>{html.escape(str(results.get('best')))}"
        f"</b>. Data: {html.escape(json.dumps(ds))}. CPUs: {proto.get('cpu_count')}; torch "
        f"threads: {proto.get('torch_threads') or 'no model used torch'}.</p>",
        "<h2>Results</h2>",
    ]
    header = ["model", *[f"{metric_label(m)} [CI]" for m in compared], "train s", "list s"]
    rows = []
    for r in ok:
        cells = [r["name"]]
        for m in compared:
            ci = (r.get("ci") or {}).get(m)
            band = f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""
            cells.append(_fmt(r["metrics"].get(m)) + band)
        cells += [_seconds(r.get("train_seconds")), _seconds(r.get("recommend_seconds"))]
        rows.append(cells)
    parts.append(_table(header, rows))
    for title, png in _figures(results, curves or {}):
        parts.append(f'<h3>{html.escape(title)}</h3><img src="data:image/png;base64,{png}" '
                     f'alt="{html.escape(title)}">')
    best = html.escape(str(results.get("best")))
    parts.append(f"<h2>Significance of every model vs the best ({best})</h2>")
    sig = [[s["model"], s["vs"], metric_label(s["metric"]), _p(s["p_wilcoxon"]),
            _p(s["p_ttest"])] for s in results.get("significance", [])]
    parts.append(_table(["model", "vs", "metric", "p (Wilcoxon)", "p (paired t)"], sig)
                 if sig else "<p>No other model to compare.</p>")
    failed = [r for r in results["models"] if "error" in r]
    if failed:
        parts.append("<h2>Failed models</h2><ul>")
        parts += [f"<li class='err'><b>{html.escape(r['name'])}</b>: {html.escape(r['error'])}</li>"
                  for r in failed]
        parts.append("</ul>")
    if ok:
        names = list(dict.fromkeys(m for r in ok for m in r["metrics"]))
        parts.append("<h2>All metrics</h2>")
        parts.append(_table(["model", *[metric_label(n) for n in names]],
                            [[r["name"], *[_fmt(r["metrics"].get(n)) for n in names]] for r in ok]))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_all(results: dict[str, Any], out: str | Path, curves: Curves | None = None) -> None:
    """Write results.json, results.md and report.html into directory `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    (out / "results.md").write_text(results_markdown(results))
    (out / "report.html").write_text(report_html(results, curves), encoding="utf-8")


# ----------------------------------------------------------------------------- README


def update_readme(readme: str | Path, results_dir: str | Path, section: str) -> bool:
    """Replace the README text between the `section` markers with ``results_dir/results.md``.

    Returns whether the file changed; raises DataError when a file or marker is missing.
    """
    readme, source = Path(readme), Path(results_dir) / "results.md"
    if not re.fullmatch(r"[A-Za-z0-9_-]+", section):
        raise DataError(f"section name {section!r} must be letters, digits, '-' or '_'")
    for p in (readme, source):
        if not p.is_file():
            raise DataError(f"no such file: {p}")
    text = readme.read_text(encoding="utf-8")
    start, end = f"<!-- results:{section}:start -->", f"<!-- results:{section}:end -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0 or j < i:
        raise DataError(f"{readme} lacks the markers {start} … {end} (in this order)")
    body = source.read_text(encoding="utf-8").strip()
    new = text[: i + len(start)] + "\n" + body + "\n" + text[j:]
    if new == text:
        return False
    readme.write_text(new, encoding="utf-8")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m recforge.evaluation.report --readme README.md --results DIR --section S``."""
    parser = argparse.ArgumentParser(
        prog="python -m recforge.evaluation.report",
        description="Regenerate a README results section from a benchmark's results.md.")
    parser.add_argument("--readme", required=True, type=Path)
    parser.add_argument("--results", required=True, type=Path, help="benchmark output directory")
    parser.add_argument("--section", required=True, help="marker name, e.g. topn or rating")
    args = parser.parse_args(argv)
    try:
        changed = update_readme(args.readme, args.results, args.section)
    except RecforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.readme}: section {args.section} {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
