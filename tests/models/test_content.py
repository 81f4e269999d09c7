"""content and demographic_popularity: conformance, cold start, explanations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.models.content import ContentBased
from recforge.models.demographic import DemographicPopularity
from recforge.testing import tiny_interactions


def featured_tiny() -> Interactions:
    """The two-community data with features that mirror the communities."""
    data, _ = tiny_interactions()
    items = pd.DataFrame({
        "genre_A": [1] * 10 + [0] * 10,
        "genre_B": [0] * 10 + [1] * 10,
        "title": [f"space w{i % 5}" for i in range(10)] + [f"love w{i % 5}" for i in range(10)],
    }, index=data.item_map.ids)
    users = pd.DataFrame({"gender": ["F"] * 12 + ["M"] * 12, "age": [20, 30] * 12}, index=data.user_map.ids)
    return Interactions.from_frame(data.to_frame(), user_features=users, item_features=items)


def test_content_with_features_recommends_in_community():
    data = featured_tiny()
    model = ContentBased().fit(data)
    items, _ = model.recommend_idx(np.arange(data.n_users), k=1)
    block = (np.arange(data.n_users) // 12)
    assert (items[:, 0] // 10 == block).all()


def test_autoencoder_option_round_trips(tmp_path):
    data = featured_tiny()
    model = ContentBased(autoencoder_dim=3, autoencoder_hidden_dim=8, autoencoder_epochs=20, threads=1).fit(data)
    assert model.profiles_.shape == (20, 3)
    model.save(tmp_path / "m")
    loaded = ContentBased.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.score(np.arange(4)), model.score(np.arange(4)), rtol=1e-5, atol=1e-6)


def test_cold_user_from_features_and_history():
    model = ContentBased().fit(featured_tiny())
    new = pd.DataFrame({"gender": ["F", "M"], "age": [25, 25]}, index=["newF", "newM"])
    recs = model.recommend_cold(new, k=5)
    top = recs.groupby("user_id")["item_id"].apply(list)
    assert all(int(i[1:]) < 10 for i in top["newF"]) and all(int(i[1:]) >= 10 for i in top["newM"])
    # request-time items personalise and are excluded
    recs = model.recommend_cold(new.iloc[:1], k=3, seen_items=["i15", "i16"])
    assert not {"i15", "i16"} & set(recs["item_id"]) and all(int(i[1:]) >= 10 for i in recs["item_id"])


def test_new_items_scored_and_similar():
    model = ContentBased().fit(featured_tiny())
    new = pd.DataFrame({"genre_A": [1, 0], "genre_B": [0, 1], "title": ["space saga", "love letter"]},
                       index=["nA", "nB"])
    scores = model.score_new_items(new, ["u00", "u20"])
    assert scores.loc["u00", "nA"] > scores.loc["u00", "nB"]
    assert scores.loc["u20", "nB"] > scores.loc["u20", "nA"]
    sims = model.similar_new_items(new, k=3)
    assert all(int(i[1:]) < 10 for i in sims[sims["item_id"] == "nA"]["similar_item_id"])


def test_save_load_keeps_cold_start(tmp_path):
    model = ContentBased().fit(featured_tiny())
    model.save(tmp_path / "m")
    loaded = ContentBased.load(tmp_path / "m")
    new = pd.DataFrame({"gender": ["M"], "age": [40]}, index=["x"])
    pd.testing.assert_frame_equal(loaded.recommend_cold(new, k=4), model.recommend_cold(new, k=4))


def test_explain_removal_lowers_score():
    data = featured_tiny()
    model = ContentBased().fit(data)
    user, item = "u03", "i07"
    expl = model.explain(user, [item])
    top = expl[(expl["kind"] == "item") & (expl["rank"] == 1)].iloc[0]
    assert top["contribution"] > 0
    frame = data.to_frame()
    reduced = frame[~((frame["user_id"] == user) & (frame["item_id"] == top["source"]))]
    refit = ContentBased().fit(Interactions.from_frame(
        reduced, user_features=data.user_features, item_features=data.item_features,
        user_map=data.user_map, item_map=data.item_map))
    before = model.predict([user], [item])[0]
    after = refit.predict([user], [item])[0]
    assert after < before
    np.testing.assert_allclose(before - after, top["contribution"], rtol=1e-3, atol=1e-5)
    assert (expl[expl["kind"] == "feature"]["contribution"] > 0).all()


def test_demographic_popularity_known_values():
    data = featured_tiny()
    model = DemographicPopularity(group_by=["gender"], smoothing=0.0).fit(data)
    scores = model.score(np.array([0, 23]))
    counts = data.csr(binary=True).toarray()
    np.testing.assert_allclose(scores[0], counts[:12].sum(0) / counts[:12].sum(), rtol=1e-6)
    np.testing.assert_allclose(scores[1], counts[12:].sum(0) / counts[12:].sum(), rtol=1e-6)
    cold = model.recommend_cold(pd.DataFrame({"gender": ["F", "?"]}, index=["f", "unknown"]), k=3)
    assert all(int(i[1:]) < 10 for i in cold[cold["user_id"] == "f"]["item_id"])
    assert len(cold[cold["user_id"] == "unknown"]) == 3  # unknown group → global popularity


@pytest.mark.slow
def test_content_cold_items_beat_random(ml100k_raw):
    from recforge.data.cold import cold_item_split
    from recforge.data.movielens import load_movielens

    data = load_movielens("movielens-100k", data_dir=ml100k_raw)
    train, test = cold_item_split(data, 0.2, seed=0)
    model = ContentBased().fit(train.compact())
    frame = test.to_frame()
    new = np.unique(frame["item_id"])
    users = np.unique(frame["user_id"][frame["user_id"].isin(model.user_map_.ids)])
    scores = model.score_new_items(data.item_features.loc[new], users).to_numpy()
    top = new[np.argsort(-scores, axis=1)[:, :20]]
    truth = frame.groupby("user_id")["item_id"].apply(set)
    recall = np.mean([len(set(top[r]) & truth[u]) / len(truth[u]) for r, u in enumerate(users)])
    assert recall > 2 * 20 / len(new)
