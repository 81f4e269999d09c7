"""two_tower: conformance (ID-only), cold users and new items through features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.models.two_tower import TwoTower
from recforge.testing import tiny_interactions

FAST = {"epochs": 40, "learning_rate": 0.05, "batch_size": 64, "n_negatives": 4, "threads": 1, "device": "cpu"}


def featured_tiny() -> Interactions:
    data, _ = tiny_interactions()
    items = pd.DataFrame({"genre_A": [1] * 10 + [0] * 10, "genre_B": [0] * 10 + [1] * 10},
                         index=data.item_map.ids)
    users = pd.DataFrame({"gender": ["F"] * 12 + ["M"] * 12}, index=data.user_map.ids)
    return Interactions.from_frame(data.to_frame(), user_features=users, item_features=items)


def test_cold_users_and_new_items(tmp_path):
    model = TwoTower(**FAST).fit(featured_tiny())
    new = pd.DataFrame({"gender": ["F", "M"]}, index=["newF", "newM"])
    recs = model.recommend_cold(new, k=5)
    top = recs.groupby("user_id")["item_id"].apply(list)
    assert sum(int(i[1:]) < 10 for i in top["newF"]) >= 4
    assert sum(int(i[1:]) >= 10 for i in top["newM"]) >= 4
    items = pd.DataFrame({"genre_A": [1, 0], "genre_B": [0, 1]}, index=["nA", "nB"])
    scores = model.score_new_items(items)
    assert (scores["nA"] > scores["nB"]).to_numpy()[:12].mean() >= 0.9
    assert (scores["nB"] > scores["nA"]).to_numpy()[12:].mean() >= 0.9
    assert len(model.similar_new_items(items, k=3)) == 6
    model.save(tmp_path / "m")
    loaded = TwoTower.load(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.recommend_cold(new, k=5), recs)


def test_unknown_categories_do_not_raise():
    model = TwoTower(**{**FAST, "epochs": 2}).fit(featured_tiny())
    recs = model.recommend_cold(pd.DataFrame({"gender": ["??"], "extra": [1]}, index=["z"]), k=3)
    assert len(recs) == 3
    assert len(model.recommend_cold({"id": "empty"}, k=2)) == 2


def test_explain_names_history_items():
    model = TwoTower(**FAST).fit(featured_tiny())
    expl = model.explain("u00", ["i00", "i11"], n=2)
    expl = expl[expl["kind"] == "similar_item"]
    assert len(expl) == 4
    seen = set(model.training_interactions().to_frame().query("user_id == 'u00'")["item_id"])
    assert set(expl["source"]) <= seen
    assert np.all(np.diff(expl[expl["item_id"] == "i00"]["contribution"].to_numpy()) <= 1e-6)


def test_full_softmax_features_only_user_tower_learns_group_preferences():
    data = featured_tiny()
    model = TwoTower(**{**FAST, "loss": "full_softmax", "user_id_dropout": 1.0, "hidden_dim": 0}).fit(data)
    new = pd.DataFrame({"gender": ["F", "M"]}, index=["newF", "newM"])
    top = model.recommend_cold(new, k=5).groupby("user_id")["item_id"].apply(list)
    assert sum(int(i[1:]) < 10 for i in top["newF"]) >= 4
    assert sum(int(i[1:]) >= 10 for i in top["newM"]) >= 4
    # the user tower reads features only, so a known user scores like a new one of their group
    known = model.score(np.array([0]))[0]
    cold = model.score_cold_users(new.loc[["newF"]], [np.zeros(0, np.int64)])[0]
    np.testing.assert_allclose(known, cold, rtol=1e-4, atol=1e-4)


def test_explain_features_by_occlusion():
    data = featured_tiny()
    model = TwoTower(**FAST).fit(data)
    why = model.explain("u00", ["i03", "i15"], n=3)
    feats = why[why["kind"] == "feature"]
    assert len(feats) > 0 and (feats["contribution"] > 0).all()
    assert set(why["kind"]) <= {"similar_item", "feature"}
    # removing the named feature lowers the score by exactly its contribution
    row = feats.iloc[0]
    net = model.network_
    u, i = 0, int(model.item_map_.lookup([row["item_id"]])[0])
    before = float(model.score(np.array([u]), np.array([i]))[0])
    side, label = row["source"].split(": ", 1)
    pipe = model.user_pipeline_ if side == "user" else model.item_pipeline_
    col = pipe.feature_names().index(label)
    buffer = net.user_x if side == "user" else net.item_x
    buffer[u if side == "user" else i, col] = 0.0
    after = float(model.score(np.array([u]), np.array([i]))[0])
    assert after == pytest.approx(before - row["contribution"], abs=1e-4)
