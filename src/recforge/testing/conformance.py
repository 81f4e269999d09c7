"""The conformance suite every registered model passes, on tiny known-answer data.

`tiny_interactions` builds a "two communities" matrix: users 0–11 like items 0–9, users
12–23 like items 10–19, and each user misses one item of their own block. A personalized
model must recommend that missing in-block item first (the idea of implicit's checkerboard
test). `check_recommender` then checks the contract of the `Recommender` API.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from recforge.data.interactions import Interactions
from recforge.errors import ArtifactError, UnknownIdError
from recforge.models.base import Recommender

N_USERS, N_ITEMS, BLOCK_USERS, BLOCK_ITEMS = 24, 20, 12, 10


def tiny_interactions(seed: int = 0) -> tuple[Interactions, np.ndarray]:
    """Two-community data with ratings and timestamps, and each user's held-out item.

    Returns (interactions, held_out) where ``held_out[u]`` is the in-block item index that
    user ``u`` has not seen. In-block ratings are 4–5; a few cross-block ratings are 1–2 so
    rating models can tell likes from dislikes.
    """
    rng = np.random.default_rng(seed)
    rows = []
    held = np.empty(N_USERS, np.int64)
    for u in range(N_USERS):
        block = u // BLOCK_USERS
        items = np.arange(block * BLOCK_ITEMS, (block + 1) * BLOCK_ITEMS)
        held[u] = items[u % BLOCK_ITEMS]
        for i in items:
            if i != held[u]:
                rows.append((u, i, float(rng.integers(4, 6))))
        other = (1 - block) * BLOCK_ITEMS + u % BLOCK_ITEMS
        if u % 3 == 0:
            rows.append((u, other, float(rng.integers(1, 3))))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    frame["user_id"] = "u" + frame["user_id"].astype(str).str.zfill(2)
    frame["item_id"] = "i" + frame["item_id"].astype(str).str.zfill(2)
    frame["timestamp"] = np.arange(len(frame), dtype=np.int64) + 1_000_000
    inter = Interactions.from_frame(frame)
    # IDs are zero-padded, so sorted order equals the numeric order used above
    return inter, held


def check_recommender(
    factory: Callable[[], Recommender],
    *,
    personalized: bool = True,
    k: int = 5,
) -> None:
    """Assert the Recommender contract for models made by `factory` (fresh each call).

    Checks shapes, sorted scores, no seen item ever recommended, same seed → same output,
    save → load → identical scores, config round-trip, unknown-ID handling, similar items,
    corrupt-artifact refusal; with `personalized`, the known answer on two communities.
    """
    data, held = tiny_interactions()
    model = factory().fit(data)
    n_users, n_items = data.n_users, data.n_items
    users = np.arange(n_users)

    scores = model.score(users)
    assert scores.shape == (n_users, n_items), f"score shape {scores.shape}"
    assert np.isfinite(scores).all(), "non-finite scores"
    pairs = model.score(users, held)
    assert pairs.shape == (n_users,)
    np.testing.assert_allclose(pairs, scores[users, held], rtol=1e-4, atol=1e-4)

    items, top_scores = model.recommend_idx(users, k)
    assert items.shape == (n_users, k)
    seen = data.csr(binary=True).toarray() > 0
    valid = items >= 0
    assert not seen[np.repeat(users, k).reshape(n_users, k)[valid], items[valid]].any(), \
        "a training item was recommended"
    diffs = np.diff(np.where(valid, top_scores, -np.inf), axis=1)
    assert (np.nan_to_num(diffs, nan=0.0, neginf=-1.0) <= 1e-6).all(), "scores not sorted"

    frame = model.recommend(data.user_map.ids[:3], k=k)
    assert list(frame.columns) == ["user_id", "item_id", "rank", "score"]
    for _, group in frame.groupby("user_id"):
        assert list(group["rank"]) == list(range(1, len(group) + 1))

    if personalized:
        hits = np.mean(items[:, 0] == held)
        assert hits >= 0.75, f"known-answer: only {hits:.0%} of users got their held-out item first"

    again = factory().fit(data).score(users)
    np.testing.assert_array_equal(scores, again, err_msg="same seed gave different scores")

    cfg = model.config
    assert type(cfg)(**cfg.model_dump()) == cfg, "config does not round-trip"

    try:
        model.recommend(["no-such-user"], k=k)
    except UnknownIdError:
        pass
    else:
        raise AssertionError("an unknown user did not raise UnknownIdError")
    cold = model.recommend(["no-such-user"], k=k, unknown="fallback")
    assert len(cold) == k
    assert model.recommend(["no-such-user"], k=k, unknown="skip").empty
    preds = model.predict(["no-such-user", data.user_map.ids[0]], [data.item_map.ids[0], "no-such-item"])
    assert np.isfinite(preds).all()
    if model.config.task == "rating":
        lo, hi = model.rating_scale_
        p = model.predict(np.repeat(data.user_map.ids, n_items), np.tile(data.item_map.ids, n_users))
        assert p.min() >= lo and p.max() <= hi, "predictions outside the rating scale"

    sims = model.similar_items([data.item_map.ids[0]], k=3)
    assert len(sims) == 3 and data.item_map.ids[0] not in set(sims["similar_item_id"])
    assert (np.diff(sims["score"].to_numpy()) <= 1e-6).all()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model"
        model.save(path)
        loaded = type(model).load(path)
        np.testing.assert_array_equal(loaded.score(users), scores, err_msg="save→load changed scores")
        pd.testing.assert_frame_equal(loaded.recommend(data.user_map.ids, k=k),
                                      model.recommend(data.user_map.ids, k=k))
        weights = path / "weights.npz"
        weights.write_bytes(weights.read_bytes()[: max(1, weights.stat().st_size // 2)])
        try:
            Recommender.load(path)
        except ArtifactError:
            pass
        else:
            raise AssertionError("a truncated artifact loaded without ArtifactError")
