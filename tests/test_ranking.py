"""`recforge.ranking`: the one top-k, its documented order, and one list through every path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from recforge.cli.main import app
from recforge.data.datasets import load_dataset
from recforge.evaluation.evaluate import evaluate_lists, evaluate_topn
from recforge.ranking import CsrRows, top_k, top_k_product, top_k_row
from recforge.registry import create_model, load_model


def reference(scores: np.ndarray, k: int, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """The documented order by a full sort: score desc (as float32), tiebreak desc, index asc."""
    s = np.asarray(scores, np.float32)
    index = np.broadcast_to(np.arange(s.shape[1]), s.shape)
    tie = np.zeros(s.shape) if tiebreak is None else np.broadcast_to(tiebreak, s.shape)
    return np.lexsort((index, -tie, -s), axis=1)[:, :k]


def reference_lists(scores: np.ndarray, k: int, exclude: list[np.ndarray], candidates: np.ndarray | None,
                    tiebreak: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The straightforward top-k: clean the scores, drop ineligible items, full sort, pad."""
    s = np.asarray(scores, np.float32)
    clean = np.where(np.isfinite(s), s, np.finfo(np.float32).min) + np.float32(0.0)
    order = reference(clean, s.shape[1], tiebreak)
    items = np.full((len(s), k), -1, np.int64)
    values = np.full((len(s), k), -np.inf, np.float32)
    allowed = None if candidates is None else set(candidates.tolist())
    for r, row in enumerate(order):
        seen = set(exclude[r].tolist())
        keep = [j for j in row.tolist() if j not in seen and (allowed is None or j in allowed)][:k]
        items[r, :len(keep)] = keep
        values[r, :len(keep)] = clean[r, keep]
    return items, values


@pytest.mark.parametrize("seed", range(8))
def test_the_kernel_equals_the_straightforward_top_k(seed: int):
    """Chunk bounds, exclusions, ties at the bound, NaN/±inf/-0.0, short rows and threads."""
    rng = np.random.default_rng(seed)
    n_rows, n_items = int(rng.integers(1, 40)), int(rng.choice([5, 33, 64 * 20 + 7, 3000, 2048 * 2 + 40]))
    k = int(rng.choice([1, 3, 20, 50]))
    scores = rng.normal(size=(n_rows, n_items)).astype(np.float32)
    if seed % 2:  # heavy ties: few distinct values
        scores = np.round(scores * 2) / 2
    special = rng.random(scores.shape)
    scores[special < 0.01] = np.nan
    scores[(special >= 0.01) & (special < 0.015)] = np.inf
    scores[(special >= 0.015) & (special < 0.02)] = -np.inf
    scores[(special >= 0.02) & (special < 0.03)] = -0.0
    if seed == 6:
        scores[0] = np.nan  # a row with no finite score
        scores[-1, :] = np.finfo(np.float32).min
    n_seen = rng.integers(0, n_items // 2 + 1, n_rows)
    n_seen[0] = n_items if seed == 7 else n_seen[0]  # every item excluded
    seen = [np.sort(rng.choice(n_items, int(m), replace=False)) for m in n_seen]
    # exclude the best items of some rows, so that chunk maxima are excluded items
    top = np.argsort(-np.nan_to_num(scores, nan=-9, posinf=-9), axis=1)[:, :3]
    seen = [np.union1d(e, top[r]) if r % 2 else e for r, e in enumerate(seen)]
    csr = sp.csr_matrix((np.ones(sum(map(len, seen))), np.concatenate(seen),
                         np.concatenate([[0], np.cumsum(list(map(len, seen)))])), shape=scores.shape)
    cands = None if seed % 3 else np.sort(rng.choice(n_items, max(1, n_items // 3), replace=False))
    ties = [None, rng.random(n_items), rng.random(scores.shape)][seed % 3]
    expected = reference_lists(scores, k, seen, cands, ties)
    for threads in (1, 3):
        got = top_k(scores, k, exclude=csr, candidates=cands, tiebreak=ties, threads=threads)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    as_lists = top_k(scores, k, exclude=[rng.permutation(e) for e in seen], candidates=cands, tiebreak=ties)
    np.testing.assert_array_equal(as_lists[0], expected[0])


def test_rows_longer_than_one_piece_of_the_kernel():
    """Chunks live inside pieces of `PIECE` items: two pieces, the second short, ties and exclusions."""
    from recforge._topk import PIECE

    rng = np.random.default_rng(5)
    scores = np.round(rng.normal(size=(4, PIECE + 77)) * 8).astype(np.float32) / 8
    seen = [np.sort(rng.choice(scores.shape[1], 50, replace=False)) for _ in range(4)]
    seen[1] = np.union1d(seen[1], np.argsort(-scores[1])[:40])
    expected = reference_lists(scores, 30, seen, None, None)
    got = top_k(scores, 30, exclude=seen)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("n_items", [7, 700, 2048 * 2 + 45])
def test_the_product_path_equals_top_k_of_the_product(n_items: int):
    """`top_k_product` (pieces, cached chunk maxima, a reused buffer) = `top_k(left @ right.T)`;
    small integer factors make every product exact, with many ties."""
    rng = np.random.default_rng(n_items)
    left = rng.integers(-3, 4, (50, 6)).astype(np.float32)
    right = rng.integers(-3, 4, (n_items, 6)).astype(np.float32)
    seen = sp.random(50, n_items, density=0.05, format="csr", random_state=1)
    buffer = np.full((64, n_items), np.nan, np.float32)
    for k in (1, 20):
        expected = top_k(left @ right.T, k, exclude=seen)
        got = top_k_product(left, right, k, exclude=CsrRows(seen, np.arange(50)), buffer=buffer)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_array_equal(top_k_product(left, right, k, exclude=seen)[0], expected[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_order_equals_a_full_sort_with_many_ties(seed: int):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(30, 50)).astype(np.float64) / 4  # heavy ties
    items, values = top_k(scores, 7)
    np.testing.assert_array_equal(items, reference(scores, 7))
    np.testing.assert_array_equal(values, np.take_along_axis(scores, items, axis=1).astype(np.float32))
    key = rng.random(50)
    np.testing.assert_array_equal(top_k(scores, 7, tiebreak=key)[0], reference(scores, 7, key))
    cells = rng.random(scores.shape)
    np.testing.assert_array_equal(top_k(scores, 7, tiebreak=cells)[0], reference(scores, 7, cells))


def test_known_answer_ties_go_to_the_lower_index():
    items, scores = top_k(np.array([[1.0, 3.0, 3.0, 2.0, 3.0]]), 4)
    assert items.tolist() == [[1, 2, 4, 3]]
    assert scores.tolist() == [[3.0, 3.0, 3.0, 2.0]]
    # a tie at the k-th place is decided by the same rule as inside the list
    assert top_k(np.array([[0.0, 5.0, 0.0, 0.0]]), 2)[0].tolist() == [[1, 0]]
    assert top_k(np.array([[0.0, 0.0, 0.0]]), 2, tiebreak=np.array([1.0, 3.0, 2.0]))[0].tolist() == [[1, 2]]


def test_non_finite_scores_rank_last_but_stay_eligible():
    items, scores = top_k(np.array([[np.nan, -np.inf, 1.0, np.inf, -0.0]]), 5)
    assert items.tolist() == [[2, 4, 0, 1, 3]]
    assert scores[0, 1] == 0.0 and not np.signbit(scores[0, 1])
    assert (scores[0, 2:] == np.finfo(np.float32).min).all()


def test_exclusions_candidates_and_padding():
    scores = np.array([[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    seen = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 0, 0, 1]]))
    items, values = top_k(scores, 3, exclude=seen)
    assert items.tolist() == [[1, 3, -1], [2, 1, 0]]
    assert values[0, 2] == -np.inf
    as_lists = top_k(scores, 3, exclude=[np.array([0, 2]), np.array([3])])
    np.testing.assert_array_equal(as_lists[0], items)
    assert top_k(scores, 3, candidates=np.array([3, 1]))[0].tolist() == [[1, 3, -1], [3, 1, -1]]
    mask = np.array([False, True, True, True])
    assert top_k(scores, 6, candidates=mask, exclude=seen)[0].tolist() == [[1, 3, -1, -1, -1, -1],
                                                                       [2, 1, -1, -1, -1, -1]]
    assert top_k_row(np.array([0.2, 0.7, 0.7]), 5, exclude=np.array([2]))[0].tolist() == [1, 0]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"k": 0}, "k must be at least 1"),
    ({"k": 2, "tiebreak": np.ones(3)}, "tiebreak must have shape"),
    ({"k": 2, "exclude": [np.array([0])]}, "exclusion has 1 rows"),
])
def test_bad_arguments_are_one_line_errors(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        top_k(np.zeros((2, 4)), **kwargs)


# ------------------------------------------------------------------ one list through every path
@pytest.fixture(scope="module", params=["popularity", "itemknn"])
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            ml100k_bench: Path) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("one-path") / request.param
    model = create_model(request.param).fit(load_dataset(ml100k_bench / "topn_train.tsv"))
    model.save(out)
    return request.param, out


def test_library_cli_http_and_evaluator_give_identical_lists(trained: tuple[str, Path], ml100k_bench: Path,
                                                             tmp_path: Path):
    """Popularity ties 11 of its top 50 items (equal counts): every path must break them alike."""
    from fastapi.testclient import TestClient

    from recforge.serving.app import create_app

    _, model_dir = trained
    model = load_model(model_dir)
    users = [str(u) for u in model.user_map_.ids[:25]]
    library = model.recommend(users, k=50)

    out = tmp_path / "recs.tsv"
    result = CliRunner().invoke(app, ["recommend", "--model", str(model_dir), "--users", ",".join(users),
                                      "--k", "50", "--out", str(out)])
    assert result.exit_code == 0, result.output
    cli = pd.read_csv(out, sep="\t", dtype={"user_id": str, "item_id": str})
    assert cli[["user_id", "item_id", "rank"]].equals(library[["user_id", "item_id", "rank"]])

    with TestClient(create_app(model_dir, store_url=f"sqlite:///{tmp_path / 'events.db'}")) as client:
        batch = client.post("/v1/recommendations", json={"user_ids": users, "k": 50}).json()["results"]
        single = client.get(f"/v1/users/{users[3]}/recommendations?k=50").json()["items"]
    for user, res in zip(users, batch, strict=True):
        expected = library.loc[library["user_id"] == user, "item_id"].tolist()
        assert [it["item_id"] for it in res["items"]] == expected, f"HTTP list of user {user}"
    assert [it["item_id"] for it in single] == library.loc[library["user_id"] == users[3], "item_id"].tolist()

    test = load_dataset(ml100k_bench / "topn_test.tsv").to_frame()
    test = test[test["user_id"].isin(users)]
    own = evaluate_topn(model, test, ks=[50], beyond_accuracy=False)
    given = evaluate_lists(library, model.training_interactions(), test, ks=[50], beyond_accuracy=False)
    for metric in ("ndcg@50", "recall@50", "precision@50"):
        np.testing.assert_array_equal(own.per_user[metric], given.per_user[metric], err_msg=metric)
