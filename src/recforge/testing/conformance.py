"""The conformance suite every registered model passes, on tiny known-answer data.

`tiny_interactions` builds a "two communities" matrix: users 0–11 like items 0–9, users
12–23 like items 10–19, and each user misses one item of their own block. A personalized
model must recommend that missing in-block item first (the idea of implicit's checkerboard
test). Sequence models (`Capability.SEQUENCES`) answer another known question instead: on
`tiny_sequences` the item that follows a user's last item is determined by it.

The contract of the `Recommender` API is split into named, independent properties
(`PROPERTIES`); each takes a `Case` (a model fitted on the tiny data) and raises
AssertionError naming the model and what broke. The project's tests run every property of
every registered model as its own test (tests/models/test_conformance.py), with the small
settings of `TINY_SETTINGS`; `check_recommender` runs them all for a model made elsewhere,
for instance a model of another package.

>>> case = fit_case("popularity")
>>> check_property(case, "no_seen_items")
>>> sorted(name for name in PROPERTIES if not PROPERTIES[name].applies(type(case.model), "topn"))
['known_answer', 'rating_clipping', 'rating_known_answer', 'sequence_known_answer']
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recforge.data.interactions import Interactions
from recforge.errors import ArtifactError, UnknownIdError
from recforge.models.base import EXPLAIN_COLUMNS, Recommender
from recforge.models.capabilities import Capability
from recforge.registry import available_models, create_model, get_model_class
from recforge.testing.sequences import tiny_sequences

__all__ = [
    "PROPERTIES", "TINY_SETTINGS", "TINY_VARIANTS", "Case", "Property", "check_property", "check_recommender",
    "conformance_cases", "fit_case", "tiny_interactions", "tiny_model",
]

N_USERS, N_ITEMS, BLOCK_USERS, BLOCK_ITEMS = 24, 20, 12, 10

_TORCH: dict[str, Any] = {"threads": 1, "device": "cpu"}
#: small, fast settings per registered model for the tiny data (models absent here use defaults)
TINY_SETTINGS: dict[str, dict[str, Any]] = {
    "mf": dict(epochs=20, batch_size=64, learning_rate=0.02, embedding_dim=8, **_TORCH),
    # one kernel thread: Hogwild updates on more threads are not bit-for-bit repeatable
    "bpr": dict(epochs=30, embedding_dim=8, threads=1),
    "ials": dict(embedding_dim=8, epochs=5),
    "ncf": dict(epochs=15, batch_size=32, learning_rate=0.02, embedding_dim=8, mlp_embedding_dim=8,
                hidden_dims=[16, 8], init_std=0.1, pretrain=False, **_TORCH),
    # I-AutoRec folds a user in by ridge regression on 16 item codes: λ must not be ~0 on 20 items
    "autorec": dict(epochs=100, batch_size=8, hidden_dim=16, learning_rate=0.01, regularization=10.0, **_TORCH),
    "multvae": dict(epochs=30, batch_size=8, hidden_dims=[16], latent_dim=8, learning_rate=0.01,
                    total_anneal_steps=50, **_TORCH),
    "two_tower": dict(epochs=40, learning_rate=0.05, batch_size=64, n_negatives=4, embedding_dim=8, **_TORCH),
    "deepfm": dict(epochs=30, learning_rate=0.03, batch_size=512, n_negatives=2, dropout=0.0, **_TORCH),
    "widedeep": dict(epochs=30, learning_rate=0.03, batch_size=512, n_negatives=2, dropout=0.0, **_TORCH),
    "hybrid": dict(cf_model="ease", feature_model="content"),
    "gru4rec": dict(epochs=30, batch_size=8, learning_rate=0.01, embedding_dim=16, hidden_dim=16, max_length=12,
                    dropout=0.0, **_TORCH),
    "sasrec": dict(epochs=60, batch_size=8, learning_rate=0.01, embedding_dim=16, hidden_dim=16, n_layers=1,
                   n_heads=1, max_length=12, dropout=0.2, **_TORCH),
}
#: further configurations the suite runs like registered models: name → label → overrides.
#: A variant runs for every task its model supports, unless its overrides pin a `task`.
TINY_VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "ease": {"explicit": dict(regularization=50.0, implicit=False)},
    "ials": {"exact": dict(solver="exact")},
    # these similarities rank well but do not separate likes from dislikes as rating predictors
    "itemknn": {s: dict(task="topn", similarity=s) for s in ("pearson", "euclidean", "jaccard")},
    # the torch path of BPR (the registered `bpr` is the compiled SGD kernel)
    "mf": {"bpr": dict(task="topn", loss="bpr"), "bce": dict(task="topn", loss="bce"),
           "popularity_softmax": dict(task="topn", loss="softmax", n_negatives=8, negative_sampling="popularity")},
    "ncf": {"gmf": dict(variant="gmf"), "mlp": dict(variant="mlp"),
            "bpr_dropout": dict(loss="bpr", dropout=0.2, regularization=1e-3),
            "pretrained": dict(epochs=2, learning_rate=1e-3, pretrain=True, pretrain_epochs=12,
                               pretrain_learning_rate=0.02)},
    "multvae": {"dae": dict(variant="dae")},
    "autorec": {"user": dict(variant="user")},
    "two_tower": {"bpr": dict(loss="bpr"), "full_softmax": dict(loss="full_softmax")},
    "hybrid": {"two_tower": dict(cf_model="itemknn", feature_model="two_tower",
                                 feature_config=TINY_SETTINGS["two_tower"])},
}
#: known answer: share of users whose held-out in-block item must come first
KNOWN_ANSWER_HITS = 0.75
#: rating known answer: training likes (4–5) must be predicted this much above dislikes (1–2)
RATING_MARGIN = 0.5
#: scores computed by two code paths of one model agree to this (float32 sums in another order)
TOL = 1e-4


def tiny_interactions(seed: int = 0) -> tuple[Interactions, np.ndarray]:
    """Two-community data with ratings and (shuffled) timestamps, and each user's held-out item.

    Returns (interactions, held_out) where ``held_out[u]`` is the in-block item index that
    user ``u`` has not seen. In-block ratings are 4–5; a few cross-block ratings are 1–2 so
    rating models can tell likes from dislikes.
    """
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, int, float]] = []
    held = np.empty(N_USERS, np.int64)
    for u in range(N_USERS):
        block = u // BLOCK_USERS
        items = np.arange(block * BLOCK_ITEMS, (block + 1) * BLOCK_ITEMS)
        held[u] = items[u % BLOCK_ITEMS]
        for i in items:
            if i != held[u]:
                rows.append((u, int(i), float(rng.integers(4, 6))))
        other = (1 - block) * BLOCK_ITEMS + u % BLOCK_ITEMS
        if u % 3 == 0:
            rows.append((u, other, float(rng.integers(1, 3))))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    frame["user_id"] = "u" + frame["user_id"].astype(str).str.zfill(2)
    frame["item_id"] = "i" + frame["item_id"].astype(str).str.zfill(2)
    # each user's items in a seeded random order: the order carries no signal, so a sequence
    # model (`gru4rec`, `sasrec`) learns the community from any prefix, like the others do
    frame["timestamp"] = np.random.default_rng(seed + 1).permutation(len(frame)).astype(np.int64) + 1_000_000
    inter = Interactions.from_frame(frame)
    # IDs are zero-padded, so sorted order equals the numeric order used above
    return inter, held


def tiny_model(name: str, task: str = "topn", **overrides: Any) -> Recommender:
    """The registered model `name` for `task`, with its `TINY_SETTINGS` and `overrides`."""
    return create_model(name, task=task, **{**TINY_SETTINGS.get(name, {}), **overrides})


@dataclass(frozen=True)
class Case:
    """A model fitted on `tiny_interactions`, and how to make another one like it."""

    model: Recommender
    factory: Callable[[], Recommender]
    data: Interactions
    held: np.ndarray
    k: int = 5
    label: str = ""
    _seen: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_seen", self.data.csr(binary=True).toarray() > 0)
        if not self.label:
            object.__setattr__(self, "label", f"{self.model.name} ({self.model.config.task})")

    def __str__(self) -> str:
        return self.label

    @property
    def task(self) -> str:
        return str(self.model.config.task)

    @property
    def users(self) -> np.ndarray:
        """Every user index of the tiny data."""
        return np.arange(self.data.n_users)

    @property
    def seen(self) -> np.ndarray:
        """(n_users, n_items) bool: the training items of each user."""
        return self._seen


def fit_case(name: str, task: str = "topn", variant: str = "", k: int = 5) -> Case:
    """Model `name` (its `TINY_SETTINGS`, plus a `TINY_VARIANTS` entry) fitted on the tiny data."""
    data, held = tiny_interactions()
    overrides = {key: v for key, v in TINY_VARIANTS[name][variant].items() if key != "task"} if variant else {}

    def factory() -> Recommender:
        return tiny_model(name, task, **overrides)

    label = f"{name}.{variant}" if variant else name
    return Case(factory().fit(data), factory, data, held, k, label=f"{label} ({task})")


def conformance_cases() -> list[tuple[str, str, str]]:
    """(model name, variant, task) of every registered model and its `TINY_VARIANTS`, per task.

    The default configuration has variant ``""``; each runs for every task the model supports
    (a variant whose overrides pin a `task`, for that task only).
    """
    cases: list[tuple[str, str, str]] = []
    for name in available_models():
        supported = [t for t in ("topn", "rating") if t in get_model_class(name).tasks]
        for variant, overrides in {"": {}, **TINY_VARIANTS.get(name, {})}.items():
            cases += [(name, variant, t) for t in supported if overrides.get("task", t) == t]
    return cases


# ---------------------------------------------------------------------------- properties
def _shapes_and_finite(case: Case) -> None:
    scores = case.model.score(case.users)
    shape = (case.data.n_users, case.data.n_items)
    assert scores.shape == shape, f"score(users) has shape {scores.shape}, expected {shape}"
    assert scores.dtype == np.float32, f"score(users) is {scores.dtype}, expected float32"
    assert np.isfinite(scores).all(), f"{int((~np.isfinite(scores)).sum())} non-finite scores"


def _scores_independent_of_batch(case: Case) -> None:
    full = case.model.score(case.users)
    subset = np.array([5, 17, 0, 5])
    np.testing.assert_allclose(case.model.score(subset), full[subset], rtol=TOL, atol=TOL,
                               err_msg="a user's scores changed with the other users in the batch")


def _paired_scores_match_rows(case: Case) -> None:
    full = case.model.score(case.users)
    rng = np.random.default_rng(0)
    users = np.concatenate([case.users, rng.integers(0, case.data.n_users, 30)])
    items = np.concatenate([case.held, rng.integers(0, case.data.n_items, 30)])
    pairs = case.model.score(users, items)
    assert pairs.shape == (len(users),), f"paired scores have shape {pairs.shape}, expected ({len(users)},)"
    np.testing.assert_allclose(pairs, full[users, items], rtol=TOL, atol=TOL,
                               err_msg="score(users, items) differs from the full score rows")


def _recommend_idx_shape(case: Case) -> None:
    items, scores = case.model.recommend_idx(case.users, case.k)
    shape = (case.data.n_users, case.k)
    assert items.shape == shape and scores.shape == shape, \
        f"recommend_idx gave shapes {items.shape} and {scores.shape}, expected {shape}"
    assert np.issubdtype(items.dtype, np.integer), f"item indices are {items.dtype}"
    assert ((items >= 0) & (items < case.data.n_items)).all(), \
        "recommend_idx padded or returned an out-of-range item although every user has k unseen items"
    assert np.isfinite(scores).all(), "recommend_idx returned non-finite scores for real items"
    for row in items:
        assert len(set(row.tolist())) == case.k, f"an item was recommended twice: {row.tolist()}"


def _no_seen_items(case: Case) -> None:
    items, _ = case.model.recommend_idx(case.users, case.k)
    users = np.broadcast_to(case.users[:, None], items.shape)
    valid = items >= 0
    hits = case.seen[users[valid], items[valid]]
    assert not hits.any(), f"{int(hits.sum())} training items were recommended"


def _scores_sorted(case: Case) -> None:
    _, scores = case.model.recommend_idx(case.users, case.k)
    assert (np.diff(scores, axis=1) <= 0).all(), "recommend_idx scores are not sorted best first"


def _top_k_are_best_unseen(case: Case) -> None:
    items, scores = case.model.recommend_idx(case.users, case.k)
    full = case.model.score(case.users)
    np.testing.assert_allclose(scores, np.take_along_axis(full, items, axis=1), rtol=TOL, atol=TOL,
                               err_msg="recommend_idx scores differ from score() at those items")
    best = -np.sort(-np.where(case.seen, -np.inf, full), axis=1)[:, :case.k]
    np.testing.assert_allclose(scores, best, rtol=TOL, atol=TOL,
                               err_msg="recommend_idx did not return the k best-scored unseen items")


def _recommend_frame(case: Case) -> None:
    ids = case.data.user_map.ids[[3, 0, 15]]
    frame = case.model.recommend(ids, k=case.k)
    assert list(frame.columns) == ["user_id", "item_id", "rank", "score"], \
        f"recommend columns are {list(frame.columns)}"
    assert list(pd.unique(frame["user_id"])) == list(ids), "recommend did not keep the users' order"
    items, scores = case.model.recommend_idx(case.data.user_map.lookup(ids), case.k)
    for row, (uid, group) in enumerate(frame.groupby("user_id", sort=False)):
        assert list(group["rank"]) == list(range(1, len(group) + 1)), f"{uid}: ranks {list(group['rank'])}"
        assert list(group["item_id"]) == list(case.data.item_map.ids[items[row]]), \
            f"{uid}: recommend and recommend_idx disagree"
        np.testing.assert_allclose(group["score"], scores[row], rtol=1e-6)


def _known_answer(case: Case) -> None:
    items, _ = case.model.recommend_idx(case.users, case.k)
    hits = float(np.mean(items[:, 0] == case.held))
    assert hits >= KNOWN_ANSWER_HITS, \
        f"only {hits:.0%} of users got their held-out in-block item first (need {KNOWN_ANSWER_HITS:.0%})"


def _sequence_known_answer(case: Case) -> None:
    """The known answer of sequence models, on `tiny_sequences` (the next item is determined
    by the last one).

    The two-community known answer does not hold for them: in `tiny_interactions` the latest
    event of every third user is a cross-community item, so after the last item of a block
    the data say a cross-community item comes next — the right first-order answer (and
    `transition`'s), but not the held-out in-block item.
    """
    data, following = tiny_sequences()
    model = case.factory().fit(data)
    items, _ = model.recommend_idx(np.arange(data.n_users), case.k)
    hits = float(np.mean(items[:, 0] == following))
    assert hits >= KNOWN_ANSWER_HITS, \
        f"only {hits:.0%} of users got the item that follows their last item first (need {KNOWN_ANSWER_HITS:.0%})"


def _rating_known_answer(case: Case) -> None:
    frame = case.data.to_frame()
    pred = case.model.predict(frame["user_id"], frame["item_id"])
    likes = pred[frame["rating"].to_numpy() >= 4].mean()
    dislikes = pred[frame["rating"].to_numpy() <= 2].mean()
    assert likes - dislikes >= RATING_MARGIN, \
        f"training likes predicted {likes:.2f} on average, dislikes {dislikes:.2f} (need a gap ≥ {RATING_MARGIN})"


def _deterministic_refit(case: Case) -> None:
    again = case.factory().fit(case.data).score(case.users)
    np.testing.assert_array_equal(again, case.model.score(case.users),
                                  err_msg="a refit with the same seed gave different scores")


def _config_round_trip(case: Case) -> None:
    cfg = case.model.config
    cls = type(cfg)
    assert cls(**cfg.model_dump()) == cfg, "config does not round-trip through model_dump()"
    assert cls.model_validate_json(cfg.model_dump_json()) == cfg, "config does not round-trip through JSON"
    assert type(case.model)(cfg.model_dump(mode="json")).config == cfg, \
        "a model built from the dumped config has another config"


def _unknown_users(case: Case) -> None:
    model, k = case.model, case.k
    known = str(case.data.user_map.ids[0])
    try:
        model.recommend(["no-such-user"], k=k)
    except UnknownIdError:
        pass
    else:
        raise AssertionError("an unknown user did not raise UnknownIdError")
    skipped = model.recommend(["no-such-user", known], k=k, unknown="skip")
    assert set(skipped["user_id"]) == {known} and len(skipped) == k, \
        f"unknown='skip' gave users {sorted(set(skipped['user_id']))} and {len(skipped)} rows"
    cold = model.recommend(["no-such-user", known], k=k, unknown="fallback")
    new = cold[cold["user_id"] == "no-such-user"]
    assert len(new) == k and new["item_id"].is_unique, \
        f"the fallback list has {len(new)} rows ({new['item_id'].nunique()} distinct), expected {k}"
    assert list(new["rank"]) == list(range(1, k + 1)), f"fallback ranks {list(new['rank'])}"
    labels = dict(zip(cold["user_id"], cold["fallback"], strict=True))
    assert labels == {"no-such-user": "popularity", known: None}, f"fallback labels {labels}"
    popular = model.item_map_.ids[np.lexsort((np.arange(model.n_items), -model.item_popularity_))[:k]]
    assert list(new["item_id"]) == [str(i) for i in popular], "the popularity fallback is not the most popular items"
    events = [str(i) for i in case.data.item_map.ids[:2]]
    folded = model.recommend(["no-such-user"], k=k, unknown="fallback", events={"no-such-user": events})
    assert set(folded["fallback"]) == {"fold_in"}, f"a user with events got fallback {set(folded['fallback'])}"
    assert not set(folded["item_id"]) & set(events), "an event item was recommended to its unknown user"


def _predict_unknown_ids(case: Case) -> None:
    users, items = case.data.user_map.ids, case.data.item_map.ids
    preds = case.model.predict(["no-such-user", users[0], "no-such-user"], [items[0], "no-such-item", "nope"])
    assert preds.shape == (3,) and np.isfinite(preds).all(), f"predict with unknown IDs gave {preds}"
    pred = case.model.predict(users[case.users], items[case.held])
    expected = case.model.score(case.users, case.held)
    if case.task == "rating" and case.model.rating_scale_ is not None:
        expected = np.clip(expected, *case.model.rating_scale_)
    np.testing.assert_allclose(pred, expected, rtol=TOL, atol=TOL,
                               err_msg="predict on known IDs differs from score")


def _rating_clipping(case: Case) -> None:
    scale = case.model.rating_scale_
    assert scale == (1.0, 5.0), f"rating scale {scale}, expected (1.0, 5.0) on the tiny data"
    n_users, n_items = case.data.n_users, case.data.n_items
    users = np.append(np.repeat(case.data.user_map.ids, n_items), ["no-such-user"] * 2)
    items = np.append(np.tile(case.data.item_map.ids, n_users), [case.data.item_map.ids[0], "no-such-item"])
    p = case.model.predict(users, items)
    assert p.min() >= scale[0] and p.max() <= scale[1], \
        f"predictions span [{p.min():.3f}, {p.max():.3f}], outside the rating scale {scale}"


def _similar_items(case: Case) -> None:
    ids = [str(case.data.item_map.ids[i]) for i in (0, 7, 15)]
    sims = case.model.similar_items(ids, k=3)
    assert list(sims.columns) == ["item_id", "similar_item_id", "rank", "score"], f"columns {list(sims.columns)}"
    for item in ids:
        group = sims[sims["item_id"] == item]
        assert len(group) == 3 and group["similar_item_id"].is_unique, f"{item}: {len(group)} similar items"
        assert item not in set(group["similar_item_id"]), f"{item} is listed as similar to itself"
        assert (np.diff(group["score"].to_numpy()) <= 0).all(), f"{item}: similar items not sorted"
        assert list(group["rank"]) == [1, 2, 3], f"{item}: ranks {list(group['rank'])}"


def _save_load_identical(case: Case) -> None:
    ids = case.data.user_map.ids
    with tempfile.TemporaryDirectory() as tmp:
        path = case.model.save(Path(tmp) / "model")
        loaded = Recommender.load(path)
    assert type(loaded) is type(case.model), f"loaded a {type(loaded).__name__}"
    assert loaded.config == case.model.config, "the loaded config differs"
    np.testing.assert_array_equal(loaded.score(case.users), case.model.score(case.users),
                                  err_msg="save→load changed the scores")
    pd.testing.assert_frame_equal(loaded.recommend(ids, k=case.k), case.model.recommend(ids, k=case.k))
    pairs = (ids[:4], case.data.item_map.ids[[0, 5, 10, 19]])
    np.testing.assert_array_equal(loaded.predict(*pairs), case.model.predict(*pairs),
                                  err_msg="save→load changed predict")


def _truncated_artifact(case: Case) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = case.model.save(Path(tmp) / "model")
        weights = path / "weights.npz"
        assert weights.is_file(), "the artifact has no weights.npz"
        weights.write_bytes(weights.read_bytes()[: max(1, weights.stat().st_size // 2)])
        try:
            Recommender.load(path)
        except ArtifactError:
            return
    raise AssertionError("a truncated artifact loaded without ArtifactError")


def _candidates_only(case: Case) -> None:
    candidates = np.arange(1, case.data.n_items, 2)  # odd items: 5 per community
    ids = case.data.user_map.ids
    frame = case.model.recommend(ids, k=case.k, candidates=case.data.item_map.ids[candidates])
    full = case.model.score(case.users)
    for u, uid in enumerate(ids):
        got = case.data.item_map.lookup(frame.loc[frame["user_id"] == uid, "item_id"])
        eligible = candidates[~case.seen[u, candidates]]
        assert set(got.tolist()) <= set(eligible.tolist()), \
            f"{uid}: recommended {sorted(set(got.tolist()) - set(eligible.tolist()))}, not unseen candidates"
        assert len(got) == min(case.k, len(eligible)), f"{uid}: {len(got)} of {len(eligible)} eligible candidates"
        best = np.sort(full[u, eligible])[::-1][:len(got)]
        np.testing.assert_allclose(full[u, got], best, rtol=TOL, atol=TOL,
                                   err_msg=f"{uid}: not the best-scored candidates, best first")


def _include_seen(case: Case) -> None:
    items, scores = case.model.recommend_idx(case.users, case.k, exclude_seen=False)
    assert (items >= 0).all(), "exclude_seen=False padded a list although there are enough items"
    assert (np.diff(scores, axis=1) <= 0).all(), "exclude_seen=False scores are not sorted best first"
    full = case.model.score(case.users)
    best = -np.sort(-full, axis=1)[:, :case.k]
    np.testing.assert_allclose(scores, best, rtol=TOL, atol=TOL,
                               err_msg="exclude_seen=False did not return the k best-scored items")
    returned = np.zeros_like(case.seen)
    returned[case.users[:, None], items] = True
    missing = case.seen & (full > best[:, -1:] + TOL) & ~returned
    assert not missing.any(), f"exclude_seen=False left out {int(missing.sum())} seen items that score in the top k"


def _k_larger_than_n_items(case: Case) -> None:
    k = case.data.n_items + 3
    items, scores = case.model.recommend_idx(case.users, k)
    assert items.shape == (case.data.n_users, k), f"shape {items.shape}, expected ({case.data.n_users}, {k})"
    n_valid = case.data.n_items - case.seen.sum(axis=1)
    expected = np.arange(k)[None, :] < n_valid[:, None]
    assert ((items >= 0) == expected).all(), "rows are not the unseen items followed by -1 padding"
    assert np.isfinite(scores[expected]).all() and np.isneginf(scores[~expected]).all(), \
        "padding scores are not -inf, or real items have non-finite scores"
    frame = case.model.recommend(case.data.user_map.ids, k=k)
    assert len(frame) == int(n_valid.sum()), f"recommend gave {len(frame)} rows, expected {int(n_valid.sum())}"
    assert frame["item_id"].notna().all() and np.isfinite(frame["score"]).all(), "recommend kept padding rows"


def _score_histories_shapes(case: Case) -> None:
    empty = case.model.score_histories([])
    assert empty.shape == (0, case.data.n_items), f"score_histories([]) has shape {empty.shape}"
    scores = case.model.score_histories([np.array([0, 1, 2]), np.array([], np.int64)])
    assert scores.shape == (2, case.data.n_items) and scores.dtype == np.float32, \
        f"score_histories of two histories: shape {scores.shape}, dtype {scores.dtype}"
    assert np.isfinite(scores).all(), "score_histories returned non-finite scores"


def _explain_frame(case: Case) -> None:
    u = 2
    uid = case.data.user_map.ids[u]
    items, _ = case.model.recommend_idx(np.array([u]), 1)
    # the held-out item shares its community with the user's items: every model has a reason
    held, top = (str(case.data.item_map.ids[i]) for i in (case.held[u], items[0, 0]))
    wanted = [held] if held == top else [held, top]
    frame = case.model.explain(uid, wanted, n=2)
    assert list(frame.columns[:len(EXPLAIN_COLUMNS)]) == EXPLAIN_COLUMNS, f"explain columns {list(frame.columns)}"
    assert (frame["item_id"] == held).any(), f"explain gave no reason for {held}, an item of the user's community"
    assert set(frame["item_id"]) <= set(wanted), f"explained items {sorted(set(frame['item_id']))}, asked {wanted}"
    history = set(case.data.item_map.ids[case.seen[u]].tolist())
    from_items = frame[frame["kind"].isin(["item", "similar_item"])]
    assert set(from_items["source"]) <= history, "explain named items the user never interacted with"
    assert np.isfinite(frame["contribution"].to_numpy(np.float64)).all(), "non-finite contributions"
    assert (frame["rank"] >= 1).all(), "explain ranks start below 1"


@dataclass(frozen=True)
class Property:
    """One named part of the contract: `check(case)` raises AssertionError when it breaks.

    `tasks`, `personalized_only` and `sequences` say which models the property concerns,
    decided before fitting (see `applies`), so a test suite leaves the other pairs out
    instead of skipping. `sequences`: None for every model, True for sequence models only
    (`Capability.SEQUENCES`), False for order-free models only.
    """

    check: Callable[[Case], None]
    tasks: frozenset[str] = frozenset({"topn", "rating"})
    personalized_only: bool = False
    sequences: bool | None = None

    def __call__(self, case: Case) -> None:
        self.check(case)

    def applies(self, model_class: type[Recommender], task: str, personalized: bool | None = None) -> bool:
        """Whether the property concerns `model_class` fitted for `task`.

        `personalized` overrides the class's own `personalized` declaration.
        """
        personal = model_class.personalized if personalized is None else personalized
        ordered = Capability.SEQUENCES in model_class.capabilities
        return (task in self.tasks and (personal or not self.personalized_only)
                and self.sequences in (None, ordered))


_TOPN, _RATING = frozenset({"topn"}), frozenset({"rating"})

#: every property of the Recommender contract, by name
PROPERTIES: dict[str, Property] = {
    "shapes_and_finite": Property(_shapes_and_finite),
    "scores_independent_of_batch": Property(_scores_independent_of_batch),
    "paired_scores_match_rows": Property(_paired_scores_match_rows),
    "recommend_idx_shape": Property(_recommend_idx_shape),
    "no_seen_items": Property(_no_seen_items),
    "scores_sorted": Property(_scores_sorted),
    "top_k_are_best_unseen": Property(_top_k_are_best_unseen),
    "recommend_frame": Property(_recommend_frame),
    "known_answer": Property(_known_answer, _TOPN, personalized_only=True, sequences=False),
    "sequence_known_answer": Property(_sequence_known_answer, _TOPN, personalized_only=True, sequences=True),
    "rating_known_answer": Property(_rating_known_answer, _RATING, personalized_only=True),
    "deterministic_refit": Property(_deterministic_refit),
    "config_round_trip": Property(_config_round_trip),
    "unknown_users": Property(_unknown_users),
    "predict_unknown_ids": Property(_predict_unknown_ids),
    "rating_clipping": Property(_rating_clipping, _RATING),
    "similar_items": Property(_similar_items),
    "save_load_identical": Property(_save_load_identical),
    "truncated_artifact": Property(_truncated_artifact),
    "candidates_only": Property(_candidates_only),
    "include_seen": Property(_include_seen),
    "k_larger_than_n_items": Property(_k_larger_than_n_items),
    "score_histories_shapes": Property(_score_histories_shapes),
    "explain_frame": Property(_explain_frame),
}


def check_property(case: Case, name: str) -> None:
    """Run property `name` on `case`; a failure names the model, the task and the property."""
    try:
        PROPERTIES[name](case)
    except AssertionError as exc:
        raise AssertionError(f"{case} fails {name!r}: {exc}") from None


def check_recommender(
    factory: Callable[[], Recommender],
    *,
    personalized: bool | None = None,
    k: int = 5,
) -> None:
    """Assert every property that applies to models made by `factory` (fresh each call).

    All properties run, even after a failure; one AssertionError then lists every failing
    property. `personalized` overrides the class's `personalized` declaration (which decides
    whether the known-answer properties apply).
    """
    data, held = tiny_interactions()
    model = factory().fit(data)
    case = Case(model, factory, data, held, k)
    failures = []
    for name, prop in PROPERTIES.items():
        if not prop.applies(type(model), case.task, personalized):
            continue
        try:
            check_property(case, name)
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        raise AssertionError(f"{len(failures)} properties failed:\n" + "\n".join(failures))
