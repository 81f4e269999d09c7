"""hybrid: conformance, the history-length weight, cold users through the feature model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.hybrid import Hybrid
from recforge.testing import tiny_interactions


def featured_tiny() -> Interactions:
    data, _ = tiny_interactions()
    items = pd.DataFrame({"genre_A": [1] * 10 + [0] * 10, "title": [f"w{i}" for i in range(20)]},
                         index=data.item_map.ids)
    users = pd.DataFrame({"gender": ["F"] * 12 + ["M"] * 12}, index=data.user_map.ids)
    return Interactions.from_frame(data.to_frame(), user_features=users, item_features=items)


def test_blend_known_values():
    data = featured_tiny()
    model = Hybrid(cf_model="ease", feature_model="content", shrinkage=5.0, normalize="none",
                   prior_model=None).fit(data)
    users = np.arange(data.n_users)
    n = data.user_counts()
    w = n / (n + 5.0)
    np.testing.assert_allclose(model.cf_weight_, w, rtol=1e-6)
    expected = w[:, None] * model.cf_.score(users) + (1 - w[:, None]) * model.feature_.score(users)
    np.testing.assert_allclose(model.score(users), expected, rtol=1e-5, atol=1e-6)
    # more history → more weight on CF
    assert np.all(np.diff(model.cf_weight_[np.argsort(n, kind="stable")]) >= 0)


def test_cold_user_is_the_feature_model(tmp_path):
    data = featured_tiny()
    model = Hybrid(cf_model="ease", feature_model="content", prior_model=None).fit(data)
    new = pd.DataFrame({"gender": ["M"]}, index=["x"])
    pd.testing.assert_frame_equal(model.recommend_cold(new, k=5), model.feature_.recommend_cold(new, k=5))
    items = pd.DataFrame({"genre_A": [1], "title": ["w3"]}, index=["new"])
    pd.testing.assert_frame_equal(model.score_new_items(items), model.feature_.score_new_items(items))
    model.save(tmp_path / "m")
    loaded = Hybrid.load(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.recommend_cold(new, k=5), model.recommend_cold(new, k=5))
    expl = loaded.explain("u01", ["i05"])
    assert set(expl["part"]) <= {"cf", "feature"} and len(expl) > 0


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)


def test_cold_user_blends_the_feature_model_with_the_demographic_prior(tmp_path):
    data = featured_tiny()
    model = Hybrid(cf_model="ease", feature_model="content", prior_weight=2.0).fit(data)
    new = pd.DataFrame({"gender": ["F", "M"]}, index=["x", "y"])
    got = model.score_cold_users(new, [np.zeros(0, np.int64)] * 2)
    feat = model.feature_.score_cold_users(new, [np.zeros(0, np.int64)] * 2)
    prior = model.prior_.score_cold_users(new, [np.zeros(0, np.int64)] * 2)
    np.testing.assert_allclose(got, (_z(feat) + 2.0 * _z(np.log(prior))) / 3.0, rtol=1e-4, atol=1e-5)
    # the prior separates the groups: women's list leans to the items women interacted with
    top_f = model.recommend_cold(new.loc[["x"]], k=5)["item_id"]
    assert all(int(i[1:]) < 10 for i in top_f)
    model.save(tmp_path / "m")
    loaded = Hybrid.load(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.recommend_cold(new, k=5), model.recommend_cold(new, k=5))
    np.testing.assert_allclose(loaded.score(np.arange(4)), model.score(np.arange(4)), rtol=1e-5)


def test_fold_in_blends_the_cf_fold_in_with_the_feature_part():
    data = featured_tiny()
    model = Hybrid(cf_model="ease", feature_model="content").fit(data)
    histories = [model.seen_[u].indices for u in range(4)]
    folded = model.score_histories(histories)
    # EASE's fold-in is exact, so only the feature part differs (demographics unknown): close to score
    trained = model.score(np.arange(4))
    assert np.corrcoef(folded.ravel(), trained.ravel())[0, 1] > 0.8
    w = np.array([len(h) / (len(h) + model.config.shrinkage) for h in histories])[:, None]
    frame = pd.DataFrame(index=pd.Index([f"history-{i}" for i in range(4)], dtype=object))
    cf = model._norm(model.cf_.score_histories(histories))
    expected = w * cf + (1 - w) * model._cold_feature_part(frame, histories)
    np.testing.assert_allclose(folded, expected, rtol=1e-5, atol=1e-5)


def test_explain_scales_each_part_by_its_blend_weight():
    data = featured_tiny()
    model = Hybrid(cf_model="ease", feature_model="content", shrinkage=5.0, prior_model=None).fit(data)
    u = 0
    why = model.explain("u00", ["i05", "i07"], n=4)
    assert list(why["item_id"].unique()) == ["i05", "i07"]
    assert (why.groupby("item_id")["rank"].apply(list) == pd.Series({"i05": [1, 2, 3, 4], "i07": [1, 2, 3, 4]})).all()
    cf = why[(why["part"] == "cf") & (why["item_id"] == "i05")]
    raw = model.cf_.explain("u00", ["i05"], n=4).set_index("source")["contribution"]
    w = model.cf_weight_[u] / model.cf_.score(np.array([u]))[0].std()
    np.testing.assert_allclose(cf["contribution"].to_numpy(), raw.loc[cf["source"]].to_numpy() * w, rtol=1e-4)
    assert (np.diff(why[why["item_id"] == "i05"]["contribution"].to_numpy()) <= 1e-9).all()


def test_parts_are_nested_artifacts_checked_on_load(tmp_path):
    from recforge.errors import ArtifactError
    from recforge.models.base import Recommender

    data = featured_tiny()
    model = Hybrid(cf_model="ease", feature_model="content").fit(data)
    path = model.save(tmp_path / "m")
    assert sorted(p.name for p in (path / "parts").iterdir()) == ["cf", "feature", "prior"]
    assert Recommender.load(path / "parts" / "cf").name == "ease"
    loaded = Recommender.load(path)
    np.testing.assert_array_equal(loaded.score(np.arange(data.n_users)), model.score(np.arange(data.n_users)))
    weights = path / "parts" / "feature" / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ArtifactError, match="feature"):
        Recommender.load(path)


def test_cold_capabilities_follow_the_parts():
    from recforge.models.capabilities import Capability

    data = featured_tiny()
    assert Hybrid(cf_model="ease", feature_model="content").fit(data).supports(Capability.COLD_ITEMS)
    no_items = Hybrid(cf_model="ease", feature_model="demographic_popularity", prior_model=None).fit(data)
    assert no_items.supports(Capability.COLD_USERS) and not no_items.supports(Capability.COLD_ITEMS)
    with pytest.raises(ConfigError, match="cannot score items unknown to it"):
        no_items.score_new_items(pd.DataFrame({"genre_A": [1]}, index=["new"]))
