"""`recforge quickstart`: the main job end to end — data, split, train, evaluate, recommend."""

from __future__ import annotations

from pathlib import Path

import typer

from recforge.cli.common import handle_errors, make_console

DEFAULT_MODEL = "ease"


def default_out() -> Path:
    """Where quickstart writes by default: ``quickstart/`` in recforge's cache directory.

    Not the working directory, so that trying recforge inside a checkout leaves nothing
    behind in it; the path is printed at every step.
    """
    from recforge.data.movielens import default_cache_dir

    return default_cache_dir() / "quickstart"


@handle_errors
def quickstart_command(
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Local MovieLens 100K directory (else download once)."
    ),
    synthetic: bool = typer.Option(
        False, "--synthetic/--movielens", help="Use the offline synthetic dataset instead of ML-100K."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Model to train."),
    out: Path | None = typer.Option(
        None, "--out", help="Where to save the split and the model (replaced if present).",
        show_default="quickstart/ in $RECFORGE_DATA_DIR, else ~/.cache/recforge"),
    k: int = typer.Option(10, "--k", min=1, max=1000, help="Recommendations shown per user."),
    seed: int = typer.Option(42, "--seed", help="Seed of the split and the model."),
) -> None:
    """Load ML-100K (or synthetic data), split 80/20 per user, train, evaluate, recommend.

    The split and the model are written to --out (by default outside the working
    directory, in recforge's cache); the last line shows how to use the model.
    """
    from rich.table import Table
    from rich.text import Text

    from recforge.data.datasets import load_dataset
    from recforge.data.splitting import user_ratio_split, write_split
    from recforge.evaluation.evaluate import evaluate_topn
    from recforge.registry import create_model

    console = make_console()
    out = out if out is not None else default_out()
    name = "synthetic" if synthetic else "movielens-100k"
    with console.status(f"loading {name}"):
        data = load_dataset(name, data_dir=None if synthetic else data_dir)
    console.print(f"[bold]1. data[/bold] {name}: {data.n_users} users, {data.n_items} items, {len(data)} interactions")
    train, test = user_ratio_split(data, test_ratio=0.2, seed=seed)
    write_split(train, test, out / "split")
    console.print(f"[bold]2. split[/bold] per-user 80/20: {len(train)} train, {len(test)} test → {out / 'split'}")
    recommender = create_model(model, {"seed": seed})
    with console.status(f"training {model}"):
        recommender.fit(train)
    recommender.save(out / "model")
    console.print(f"[bold]3. train[/bold] {model} in {recommender.fit_seconds_:.1f} s → {out / 'model'}")
    result = evaluate_topn(recommender, test, ks=(10, 20))
    console.print(f"[bold]4. evaluate[/bold] {result.users} test users, full ranking, training items excluded")
    table = Table("metric", "value")
    for metric in ("ndcg@10", "recall@20", "precision@10", "hr@10", "map@10", "mrr@10", "coverage@20"):
        if metric in result.metrics:
            table.add_row(metric, f"{result.metrics[metric]:.4f}")
    console.print(table)
    user = recommender.user_map_.ids[0]
    recs = recommender.recommend([user], k=k)
    console.print(f"[bold]5. recommend[/bold] top-{k} for user {user}")
    shown = recs["item_id"].astype(str).map(recommender.item_titles()).astype(object).fillna("")
    has_titles = bool((shown != "").any())  # no titles in this data: no empty column
    table = Table("rank", "item", *(["title"] if has_titles else []), "score")
    for pos, row in enumerate(recs.itertuples(index=False)):
        title = [Text(shown.iloc[pos])] if has_titles else []
        table.add_row(str(row.rank), str(row.item_id), *title, f"{row.score:.4f}")
    console.print(table)
    console.print(f"next: recforge recommend --model {out / 'model'} --users {user} --k {k}")
