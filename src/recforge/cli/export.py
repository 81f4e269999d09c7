"""Deployment commands: `export` (a model's scoring graph as ONNX) and `compress`."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import typer

from recforge.cli.common import handle_errors
from recforge.errors import ConfigError


@handle_errors
def export_command(
    model: Path = typer.Option(..., "--model", help="Model artifact directory."),
    out: Path = typer.Option(..., "--out", help="File to write (e.g. model.onnx)."),
    fmt: str = typer.Option("onnx", "--format", help="Export format: onnx."),
) -> None:
    """Export a torch model's scoring graph (users / history rows / sequences / pairs → scores)
    as ONNX, checked against the model's own scores in onnxruntime before writing."""
    from recforge.export.onnx import OPSET, graph_facts, onnx_scorer
    from recforge.registry import load_model

    if fmt != "onnx":
        raise ConfigError(f"--format must be onnx, got {fmt!r}")
    # onnx_scorer refuses a graph whose onnxruntime scores differ from the model's own
    data = onnx_scorer(load_model(model)).data
    out.write_bytes(data)
    facts = graph_facts(data)
    typer.echo(f"wrote {out} ({len(data) / 1e6:.2f} MB, ONNX opset {OPSET}): {facts['family']} → "
               f"{'logits' if facts['family'] == 'pairs' else 'scores'} over {facts['n_items']} items", err=True)


@handle_errors
def compress_command(
    model: Path = typer.Option(..., "--model", help="Model artifact directory."),
    out: Path = typer.Option(..., "--out", help="Directory for the compressed artifact."),
    quantize: str = typer.Option("none", "--quantize", help="none, fp16 or int8 (int8 rows with a scale per "
                                 "row; MLP layers run as int8)."),
    prune: float = typer.Option(0.0, "--prune", help="Fraction of the smallest weights of each MLP (linear) "
                                "layer to zero, e.g. 0.8."),
    prune_rows: float = typer.Option(0.0, "--prune-rows", help="Fraction of the least-used items whose "
                                     "embedding rows are zeroed and not stored."),
    force: bool = typer.Option(False, "--force/--no-force", help="Replace a non-empty --out directory."),
) -> None:
    """Write a smaller copy of an artifact: fp16/int8 weights, pruned MLP weights and rows.

    It loads and serves like any other artifact; meta.json records what was done.
    """
    from recforge.export.compress import QUANTIZE, Quantize, artifact_bytes, compress_artifact

    if quantize not in QUANTIZE:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ConfigError(f"--out {out} exists and is not empty (use --force to replace it)")
    record = compress_artifact(model, out, cast(Quantize, quantize), prune, prune_rows)
    before, after = artifact_bytes(model), artifact_bytes(out)
    done = [f"quantize {quantize}"] if quantize != "none" else []
    if "pruned_layers" in record:
        done.append(f"{record['pruned_layers']['sparsity']:.0%} of the weights of "
                    f"{len(record['pruned_layers']['layers'])} linear layers zero")
    if "pruned_rows" in record:
        done.append(f"embedding rows of {record['pruned_rows']['items']} items dropped")
    typer.echo(f"wrote {out}: {before / 1e6:.2f} MB → {after / 1e6:.2f} MB ({before / max(after, 1):.1f}× smaller; "
               f"{', '.join(done) or 'lossless re-encoding'})", err=True)


@handle_errors
def index_command(
    model: Path = typer.Option(..., "--model", help="Model artifact directory (a factor or two-tower model)."),
    kind: str = typer.Option("hnsw", "--kind", help="hnsw (graph; default), ivf (inverted lists) or flat "
                             "(exact)."),
    out: Path | None = typer.Option(None, "--out", help="Write the indexed artifact here (default: add the "
                                    "index to --model in place)."),
    m: int = typer.Option(32, "--m", help="hnsw: graph neighbours per node."),
    ef_construction: int = typer.Option(80, "--ef-construction", help="hnsw: candidate list while building."),
    ef_search: int = typer.Option(128, "--ef-search", help="hnsw: candidate list while searching (at least "
                                  "the number of items fetched)."),
    nprobe: int = typer.Option(32, "--nprobe", help="ivf: cells searched per query."),
    drop: bool = typer.Option(False, "--drop", help="Remove the artifact's index instead (exact ranking)."),
) -> None:
    """Add an approximate maximum-inner-product index (faiss) to a model artifact.

    `recommend` and the service then retrieve candidates from it, re-score them exactly and
    apply exclusions (with enough over-fetch that seen items never shorten a list); pass
    ``exact=True`` (Python) to score the whole catalog anyway.
    """
    import time

    from recforge.ann import KINDS
    from recforge.registry import load_model

    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    loaded = load_model(model)
    if drop:
        loaded.drop_index()
        typer.echo(f"wrote {loaded.save(out or model)} without an ANN index", err=True)
        return
    params = {"hnsw": {"m": m, "ef_construction": ef_construction, "ef_search": ef_search},
              "ivf": {"nprobe": nprobe}, "flat": {}}[kind]
    start = time.perf_counter()
    index = loaded.build_index(kind, **params)
    seconds = time.perf_counter() - start
    target = loaded.save(out or model)
    typer.echo(f"wrote {target}: {kind} index over {index.n_items} items × {index.dim} dims "
               f"built in {seconds:.1f} s", err=True)
    if index.n_items < 100_000:
        typer.echo("note: below ~100k items exact scoring is as fast or faster than the index "
                   "(benchmarks/results/ann/results.md); `recforge index --drop` removes it", err=True)
