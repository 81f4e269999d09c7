"""ANN retrieval (recforge.ann): recall against exact ranking, exclusions after retrieval,
the index in the artifact, and the vectors each factor model indexes."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from recforge.cli.main import app
from recforge.data.synthetic import make_synthetic
from recforge.errors import ArtifactError, ConfigError
from recforge.models import artifact
from recforge.models.base import Recommender
from recforge.registry import create_model, load_model
from recforge.testing import tiny_interactions

pytest.importorskip("faiss")

K = 20


@pytest.fixture(scope="module")
def ials() -> Recommender:
    """iALS on 400 users × 5000 items (seeded): a catalog where HNSW must find the exact top-20."""
    data = make_synthetic(400, 5000, 40000, seed=0, with_features=False)
    return create_model("ials", embedding_dim=16, epochs=3).fit(data)


def _recall(approx: np.ndarray, exact: np.ndarray) -> float:
    hits = [len(np.intersect1d(a[a >= 0], e[e >= 0])) / (e >= 0).sum() for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits))


def test_hnsw_recall_at_20_against_exact(ials: Recommender) -> None:
    users = np.arange(ials.n_users)
    exact_items, exact_scores = ials.recommend_idx(users, K)
    ials.build_index("hnsw")
    try:
        items, scores = ials.recommend_idx(users, K)
        assert _recall(items, exact_items) >= 0.95
        # the scores are the model's own, re-scored exactly: never above the exact k-th best
        assert (scores[:, :1] <= exact_scores[:, :1] + 1e-5).all()
        again, _ = ials.recommend_idx(users, K, exact=True)
        np.testing.assert_array_equal(again, exact_items)
    finally:
        ials.drop_index()


def test_exclusions_never_shorten_or_leak(ials: Recommender) -> None:
    """Each user's 300 best items arrive as request events: the ANN list must still be full,
    hold none of them nor a training item, and (with an exact flat index) equal exact ranking."""
    users = np.arange(50)
    top, _ = ials.recommend_idx(users, 300)
    ids = [str(u) for u in ials.user_map_.to_ids(users)]
    events = {u: list(ials.item_map_.to_ids(row)) for u, row in zip(ids, top, strict=True)}
    exact = ials.rank_users(ids, K, events=events, exact=True)
    ials.build_index("flat")
    try:
        flat = ials.rank_users(ids, K, events=events)
        np.testing.assert_array_equal(flat.items, exact.items)
        ials.build_index("hnsw", ef_search=16)
        lists = ials.rank_users(ids, K, events=events)
    finally:
        ials.drop_index()
    assert (lists.items >= 0).all()
    for row, u in enumerate(users):
        banned = np.union1d(top[row], ials.seen_[u].indices)
        assert not np.isin(lists.items[row], banned).any()
        assert len(np.unique(lists.items[row])) == K


def test_short_rows_fetch_again() -> None:
    """A user who has seen all but 3 items still gets those 3 (the retry reaches the catalog)."""
    data, _ = tiny_interactions()
    model = create_model("ials", embedding_dim=4, epochs=2).fit(data)
    exact_items, _ = model.recommend_idx(np.arange(model.n_users), 5, exact=True)
    model.build_index("hnsw", ef_search=1)
    items, _ = model.recommend_idx(np.arange(model.n_users), 5)
    np.testing.assert_array_equal(np.sort(items, axis=1), np.sort(exact_items, axis=1))


def test_save_load_keeps_index_and_lists(ials: Recommender, tmp_path) -> None:
    ials.build_index("hnsw")
    try:
        before, _ = ials.recommend_idx(np.arange(100), K)
        ials.save(tmp_path / "m")
    finally:
        ials.drop_index()
    meta = artifact.read_json(tmp_path / "m" / "meta.json")
    assert meta["ann"]["kind"] == "hnsw" and "ann.faiss" in meta["files"]
    loaded = load_model(tmp_path / "m")
    assert loaded.ann_index is not None and loaded.ann_index.n_items == ials.n_items
    after, _ = loaded.recommend_idx(np.arange(100), K)
    np.testing.assert_array_equal(after, before)


def test_corrupt_index_is_refused(ials: Recommender, tmp_path) -> None:
    ials.build_index("hnsw")
    try:
        path = ials.save(tmp_path / "m")
    finally:
        ials.drop_index()
    data = bytearray((path / "ann.faiss").read_bytes())
    (path / "ann.faiss").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ArtifactError, match=r"ann\.faiss does not match its checksum"):
        load_model(path)
    # damaged with recomputed checksums: faiss cannot read it, still one clear error
    meta = artifact.read_json(path / "meta.json")
    (path / "meta.json").unlink()
    artifact.finalize(path, {k: v for k, v in meta.items() if k not in ("format", "format_version", "files")})
    with pytest.raises(ArtifactError, match="corrupt"):
        load_model(path)


@pytest.mark.parametrize("name", ["ials", "bpr", "mf", "two_tower"])
def test_indexed_vectors_rank_like_score(name: str) -> None:
    """user vector · item vector = score minus a constant per user (biases folded in)."""
    data, _ = tiny_interactions()
    overrides = {"embedding_dim": 4, "epochs": 1}
    model = create_model(name, **overrides).fit(data)
    users = np.arange(model.n_users)
    items = model.mips_item_vectors()
    assert items is not None
    gap = model.score(users) - model.mips_user_vectors(users) @ items.T
    np.testing.assert_allclose(gap, np.broadcast_to(gap[:, :1], gap.shape), atol=1e-4)


def test_models_without_vectors_refuse_an_index() -> None:
    data, _ = tiny_interactions()
    model = create_model("ease").fit(data)
    with pytest.raises(ConfigError, match="no item vectors"):
        model.build_index()


def test_index_command(tmp_path) -> None:
    data, _ = tiny_interactions()
    create_model("ials", embedding_dim=4, epochs=2).fit(data).save(tmp_path / "m")
    result = CliRunner().invoke(app, ["index", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "i")])
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "i").ann_index is not None
    assert load_model(tmp_path / "m").ann_index is None
    bad = CliRunner().invoke(app, ["index", "--model", str(tmp_path / "m"), "--kind", "lsh"])
    assert bad.exit_code != 0 and "--kind must be one of" in bad.output
